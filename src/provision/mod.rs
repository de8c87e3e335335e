//! `bascule provision`: from a blank disk to a device that boots, repeatably.
//!
//! Steps, each refusing before the next starts:
//! 1. read the layout (`layout.toml`, [`bascule_partitions::disk_layout`]) and place
//!    it on the target ([`target`]: image file, created sparse when missing; loop or
//!    block device, refused when mounted or when it holds the running root);
//! 2. read and check every bundle in full, as `install` does ([`slots`]); a bad
//!    bundle leaves the disk untouched;
//! 3. the table ([`table`]): a disk whose GPT already matches the layout is resumed
//!    (a damaged copy is rewritten, GUIDs kept); any other partition table or file
//!    system signature is refused unless `--force`; else the hal's one GPT writer
//!    writes a new table, backup first, each copy synced, then the protective MBR;
//! 4. each bundle into slot A (and B with `--both-slots`) through the install
//!    pipeline, unless the slot already hashes to the signed image;
//! 5. raw images, the data slot (ext4 with bascule's state directory), the boot
//!    partition ([`content`]); the device's `system.toml` and keyring go to the data
//!    or boot partition, as `[device_config]` says (never into a root slot: those
//!    hold signed images only);
//! 6. the boot env, last: slot A good at the bundle's version, B bad, keeping the
//!    board's default variables ([`mod@env`], the code of `init-env`).
//!
//! The env is the commit point: a disk whose table matches, whose slots hold the
//! images, whose raw images, boot files and device config read back as their sources
//! ([`in_place`]) and whose env holds that first state is already provisioned, and a
//! run writes nothing and says so. A run cut anywhere earlier is completed by running it
//! again. `--verify` re-reads the table and the slots and compares them with the
//! report ([`verify`]), after provisioning or alone.
use std::path::{Path, PathBuf};

use bascule_hal::gpt::create::write_table;
use bascule_hal::{FileBlock, HalError};
use bascule_partitions::disk_layout::{
    BootFs, DiskLayout, DiskLayoutError, DiskPlan, EnvPlace, LayoutFileError,
};
use bascule_partitions::SlotName;

use crate::bundle::Keyring;
use crate::install::{PlanError, StageTimes};

pub mod content;
pub mod env;
pub mod in_place;
pub mod report;
pub mod slots;
pub mod table;
pub mod target;
mod verify;

pub use report::{Outcome, Report};
pub use verify::verify;

use slots::CheckedBundle;
use target::Target;

/// Why provisioning stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    LayoutFile(#[from] LayoutFileError),
    #[error("layout: {0}")]
    Layout(#[from] DiskLayoutError),
    #[error("{path} does not exist and the layout's disk size is \"device\": give a size or an existing device")]
    TargetMissing { path: PathBuf },
    #[error("{path} is neither a regular file nor a block device")]
    TargetKind { path: PathBuf },
    #[error("{disk} is {found} bytes, the layout's disk is {expected} bytes")]
    SizeMismatch {
        disk: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error(
        "refusing to provision {disk}: {device} is mounted on {mount} (refused even with --force)"
    )]
    Mounted {
        disk: PathBuf,
        device: String,
        mount: String,
    },
    #[error("refusing to provision {disk}: the running system's root file system is on it (refused even with --force)")]
    BootDisk { disk: PathBuf },
    #[error("refusing to provision {disk}: it holds {found}; pass --force to overwrite it")]
    Foreign { disk: PathBuf, found: String },
    #[error("--keyring DIR is required to verify the bundles")]
    NoKeyring,
    #[error("keyring: {0}")]
    Keyring(crate::bundle::BundleError),
    #[error("no bundle for slot class {class:?} (give --bundle {class}=FILE)")]
    MissingBundle { class: String },
    #[error("--bundle {named}=...: the bundle's first image is for slot class {found:?}")]
    BundleClass { named: String, found: String },
    #[error("bundle {path}: {source}")]
    BundleInvalid {
        path: PathBuf,
        source: Box<crate::Error>,
    },
    #[error("bundle for {class}: {source}")]
    BundlePlan { class: String, source: PlanError },
    #[error("writing slot {slot}: {source}")]
    SlotWrite {
        slot: String,
        source: Box<crate::install::InstallError>,
    },
    #[error("device config {path}: {message}")]
    DeviceConfig { path: PathBuf, message: String },
    #[error("boot env: {0}")]
    Env(Box<crate::Error>),
    #[error("boot env: after init-env it does not hold slot A good at version {version}")]
    EnvNotInitialised { version: String },
    #[error("{disk}: no valid GPT after writing it")]
    TableUnreadable { disk: PathBuf },
    #[error("--verify alone needs --report FILE (the report to compare the disk with)")]
    VerifyWithoutReport,
    #[error("verify: {0}")]
    Verify(String),
    #[error("{tool}: {message}")]
    Tool { tool: String, message: String },
    #[error(transparent)]
    Hal(#[from] HalError),
    #[error("{context}: {message}")]
    Io { context: String, message: String },
}

impl From<crate::config::ConfigError> for ProvisionError {
    fn from(e: crate::config::ConfigError) -> Self {
        ProvisionError::Env(Box::new(e.into()))
    }
}

impl From<crate::device::DeviceError> for ProvisionError {
    fn from(e: crate::device::DeviceError) -> Self {
        ProvisionError::Env(Box::new(e.into()))
    }
}

/// What the operator asked for.
#[derive(Debug, Clone, Default)]
pub struct ProvisionOptions {
    pub layout: PathBuf,
    pub disk: PathBuf,
    /// (slot class, bundle path).
    pub bundles: Vec<(String, PathBuf)>,
    pub keyring: Option<PathBuf>,
    /// The board's default U-Boot env (`u-boot-initial-env`).
    pub defaults: Option<PathBuf>,
    pub both_slots: bool,
    pub force: bool,
    pub verify: bool,
    pub report: Option<PathBuf>,
}

/// The size of a file, for the layout's checks.
fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// Opens the target and places the layout on it.
fn place(opts: &ProvisionOptions) -> Result<(Target, DiskPlan), ProvisionError> {
    let layout = DiskLayout::load(&opts.layout)?;
    let target = Target::open(&opts.disk, layout.disk.size.bytes())?;
    let plan = layout.plan(Some(target.size), &file_size)?;
    if plan.disk_bytes() != target.size {
        return Err(ProvisionError::SizeMismatch {
            disk: target.path.clone(),
            found: target.size,
            expected: plan.disk_bytes(),
        });
    }
    Ok((target, plan))
}

/// Runs `bascule provision`; with only `--verify`, checks a provisioned disk.
pub fn run(opts: &ProvisionOptions) -> Result<Report, ProvisionError> {
    if opts.bundles.is_empty() && opts.verify {
        let path = opts
            .report
            .as_ref()
            .ok_or(ProvisionError::VerifyWithoutReport)?;
        let report = Report::load(path)?;
        let (target, plan) = place(opts)?;
        verify(&plan, &target.path, &report)?;
        return Ok(report);
    }
    let (target, plan) = place(opts)?;
    fixed_mmap_threshold();
    let keyring = Keyring::load_dir(opts.keyring.as_deref().ok_or(ProvisionError::NoKeyring)?)
        .map_err(ProvisionError::Keyring)?;
    let bundles = slots::check_bundles(&opts.bundles, &keyring, &plan)?;
    for class in plan.slots.keys() {
        if !bundles
            .iter()
            .any(|b| b.manifest.images.iter().any(|i| &i.slot_class == class))
        {
            return Err(ProvisionError::MissingBundle {
                class: class.clone(),
            });
        }
    }
    let resumed = write_table_step(&plan, &target, opts.force)?;
    let scratch = tempfile::tempdir().map_err(|e| ProvisionError::Io {
        context: "scratch directory".into(),
        message: e.to_string(),
    })?;
    let run = Run {
        opts,
        plan: &plan,
        disk: &target.path,
        scratch: scratch.path(),
        keyring: &keyring,
        bundles: &bundles,
    };
    let report = run.complete(resumed)?;
    if let Some(path) = &opts.report {
        report.save(path)?;
    }
    if opts.verify {
        verify(&plan, &target.path, &report)?;
    }
    Ok(report)
}

/// The bundles go through the pipeline twice (checked, then written): keep glibc
/// from raising its mmap threshold after the first pass frees its chunk buffers, so
/// that they go back to the system instead of staying in the heap for the second.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; no memory is touched.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

/// Writes the table unless the disk's already matches; returns whether it did match.
fn write_table_step(plan: &DiskPlan, target: &Target, force: bool) -> Result<bool, ProvisionError> {
    let tables = table::read(&target.path, plan.sector_size)?;
    let mut dev = FileBlock::open(&target.path, 0, None, true)?;
    if let Some(current) = table::in_use(&tables).filter(|t| table::matches(plan, t)) {
        if !table::both_copies_agree(&tables) {
            write_table(&mut dev, &table::new_table(plan, Some(current))?)?;
        }
        return Ok(true);
    }
    let found = foreign(&tables, &target.path)?;
    if let (Some(found), false) = (found, force) {
        return Err(ProvisionError::Foreign {
            disk: target.path.clone(),
            found,
        });
    }
    // Before the table: a cut between the two leaves a disk that is still not this
    // layout (or blank), never a matching one with a stale env that a resume keeps.
    env::erase(plan, &target.path)?;
    write_table(&mut dev, &table::new_table(plan, None)?)?;
    Ok(false)
}

/// What a disk that does not match the layout holds, if anything.
fn foreign(
    tables: &bascule_hal::gpt::table::Tables,
    disk: &Path,
) -> Result<Option<String>, ProvisionError> {
    if let Some(t) = tables.primary.as_ref().ok().or(tables.backup.as_ref().ok()) {
        let names: Vec<String> = (0..t.entry_count())
            .filter(|&i| t.is_used(i))
            .map(|i| t.name(i))
            .collect();
        return Ok(Some(format!(
            "a GPT that is not this layout (partitions: {})",
            names.join(", ")
        )));
    }
    let found = target::signatures(disk)?;
    Ok((!found.is_empty()).then(|| format!("signatures {}", found.join(", "))))
}

/// One provisioning run after the table is in place.
struct Run<'a> {
    opts: &'a ProvisionOptions,
    plan: &'a DiskPlan,
    disk: &'a Path,
    scratch: &'a Path,
    keyring: &'a Keyring,
    bundles: &'a [CheckedBundle],
}

impl Run<'_> {
    fn slot_list(&self) -> Vec<SlotName> {
        if self.opts.both_slots {
            vec![SlotName::A, SlotName::B]
        } else {
            vec![SlotName::A]
        }
    }

    /// The version the env records for slot A: the rootfs bundle's (or the first's).
    fn version(&self) -> &str {
        let rootfs = self.bundles.iter().find(|b| b.class == "rootfs");
        &rootfs.unwrap_or(&self.bundles[0]).manifest.version
    }

    fn complete(&self, resumed: bool) -> Result<Report, ProvisionError> {
        let mut dev = env::station_device(self.plan, self.disk, self.scratch)?;
        env::fetch_grub_env(self.plan, self.disk, self.scratch);
        let mut steps = Vec::new();
        let mut stages = Vec::new();
        for bundle in self.bundles {
            for slot in self.slot_list() {
                let written = slots::write_slot(bundle, self.keyring, self.plan, self.disk, slot)?;
                let how = if written.is_some() {
                    "written"
                } else {
                    "already in place"
                };
                steps.push(format!(
                    "slot {}.{slot}: v{} {how}",
                    bundle.class, bundle.manifest.version
                ));
                stages.extend(written);
            }
        }
        let untouched = resumed && stages.is_empty();
        let differs = if untouched {
            in_place::differing(self.plan, self.disk, self.scratch, &self.content()?)?
        } else {
            Vec::new()
        };
        steps.extend(
            differs
                .iter()
                .map(|d| format!("{d}: not as the layout says")),
        );
        let done =
            untouched && differs.is_empty() && env::initialised(&mut dev, self.version()).is_some();
        if !done {
            self.write_content(&mut dev, &mut steps)?;
        }
        let vars = env::initialised(&mut dev, self.version()).ok_or_else(|| {
            ProvisionError::Verify(
                "the boot env does not hold the first boot state after init".into(),
            )
        })?;
        let outcome = match (done, resumed) {
            (true, _) => Outcome::AlreadyProvisioned,
            (false, true) => Outcome::Resumed,
            (false, false) => Outcome::Provisioned,
        };
        self.report(outcome, vars, steps, stages)
    }

    fn write_content(
        &self,
        dev: &mut crate::device::Device,
        steps: &mut Vec<String>,
    ) -> Result<(), ProvisionError> {
        let count = content::write_raw_images(self.plan, self.disk)?;
        if count > 0 {
            steps.push(format!("{count} raw image(s) written"));
        }
        let data_root = self.scratch.join("data-root");
        let boot_root = self.scratch.join("boot-root");
        for dir in [&data_root, &boot_root] {
            std::fs::create_dir_all(dir).map_err(|e| ProvisionError::Io {
                context: format!("create {}", dir.display()),
                message: e.to_string(),
            })?;
        }
        if let Some(place) = self.stage_device_config(&data_root, &boot_root)? {
            steps.push(place);
        }
        if let Some(name) = content::make_data(self.plan, self.disk, &data_root)? {
            steps.push(format!("data slot {name}: ext4 made"));
        }
        let grub = matches!(self.plan.env, EnvPlace::Grub { .. });
        if grub {
            env::init(dev, self.version(), self.opts.defaults.as_deref())?;
            content::stage(&boot_root, &env::grub_files(self.plan, self.scratch))?;
        }
        if let Some(name) = content::make_boot(self.plan, self.disk, &boot_root)? {
            steps.push(format!(
                "boot partition {name}: file system made, files copied"
            ));
        }
        if !grub {
            env::init(dev, self.version(), self.opts.defaults.as_deref())?;
        }
        steps.push("boot env: slot A good, slot B bad".into());
        Ok(())
    }

    /// Everything besides the table, the slots and the env that a finished run leaves
    /// on the disk: raw images, boot files, the device config and keyring.
    fn content(&self) -> Result<Vec<in_place::Expected>, ProvisionError> {
        let mut expected = in_place::raw_images(self.plan);
        if let Some((index, spec)) = &self.plan.boot {
            let files = content::boot_files(spec);
            expected.extend(in_place::files_in(*index, spec.filesystem, &files));
        }
        if let Some((index, spec)) = &self.plan.device_config {
            let on_data = self.plan.data.as_ref().is_some_and(|(d, _)| d == index);
            let fs = match &self.plan.boot {
                Some((_, boot)) if !on_data => boot.filesystem,
                _ => BootFs::Ext4,
            };
            let files = self.device_config_files(spec)?;
            expected.extend(in_place::files_in(*index, fs, &files));
        }
        Ok(expected)
    }

    /// Stages `system.toml` and the keyring where `[device_config]` says.
    fn stage_device_config(
        &self,
        data_root: &Path,
        boot_root: &Path,
    ) -> Result<Option<String>, ProvisionError> {
        let Some((index, spec)) = &self.plan.device_config else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&spec.system_toml).map_err(|e| {
            ProvisionError::DeviceConfig {
                path: spec.system_toml.clone(),
                message: e.to_string(),
            }
        })?;
        let config = crate::config::SystemConfig::parse(&text, &spec.system_toml).map_err(|e| {
            ProvisionError::DeviceConfig {
                path: spec.system_toml.clone(),
                message: e.to_string(),
            }
        })?;
        if config.compatible != self.plan.compatible {
            return Err(ProvisionError::DeviceConfig {
                path: spec.system_toml.clone(),
                message: format!(
                    "compatible {:?} is not the layout's {:?}",
                    config.compatible, self.plan.compatible
                ),
            });
        }
        let on_data = self.plan.data.as_ref().is_some_and(|(d, _)| d == index);
        let root = if on_data { data_root } else { boot_root };
        content::stage(root, &self.device_config_files(spec)?)?;
        Ok(Some(format!(
            "device config: {}/system.toml and keyring/ on {}",
            spec.dir, self.plan.partitions[*index].name
        )))
    }

    /// `system.toml` and the keyring's `*.pub`: (source, path in the file system).
    fn device_config_files(
        &self,
        spec: &bascule_partitions::disk_layout::DeviceConfigSpec,
    ) -> Result<Vec<(PathBuf, String)>, ProvisionError> {
        let mut files = vec![(
            spec.system_toml.clone(),
            format!("{}/system.toml", spec.dir),
        )];
        files.extend(self.keyring_files(&spec.dir)?);
        Ok(files)
    }

    fn keyring_files(&self, dir: &str) -> Result<Vec<(PathBuf, String)>, ProvisionError> {
        let keyring = self
            .opts
            .keyring
            .as_ref()
            .ok_or(ProvisionError::NoKeyring)?;
        let entries = std::fs::read_dir(keyring).map_err(|e| ProvisionError::Io {
            context: format!("list {}", keyring.display()),
            message: e.to_string(),
        })?;
        Ok(entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pub"))
            .map(|e| {
                (
                    e.path(),
                    format!("{dir}/keyring/{}", e.file_name().to_string_lossy()),
                )
            })
            .collect())
    }

    fn report(
        &self,
        outcome: Outcome,
        vars: bascule_hal::EnvVars,
        steps: Vec<String>,
        stages: Vec<StageTimes>,
    ) -> Result<Report, ProvisionError> {
        let tables = table::read(self.disk, self.plan.sector_size)?;
        let current = table::in_use(&tables).ok_or_else(|| ProvisionError::TableUnreadable {
            disk: self.disk.to_path_buf(),
        })?;
        let mut slots = Vec::new();
        for bundle in self.bundles {
            slots.extend(slots::records(bundle, self.plan, &self.slot_list()));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Report {
            tool: format!("bascule {}", env!("CARGO_PKG_VERSION")),
            time: crate::health::history::format_time(now),
            disk: self.disk.display().to_string(),
            layout: self.opts.layout.display().to_string(),
            outcome,
            table: table::record(current, self.plan.sector_size, self.plan.sectors),
            slots,
            versions: slots::versions(self.bundles),
            env: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            steps,
            stages,
        })
    }
}
