//! The commands' logic, shared by the CLI and the demo: status, mark-good, mark-bad,
//! install and the simulated boot. Each takes a [`Device`] and returns a value the
//! CLI prints; none prints by itself.
use std::path::Path;

use bascule_hal::env::uboot::parse_initial_env;
use bascule_hal::env::DirFiles;
use bascule_hal::{EnvStore, EnvVars, HalError, SecurityFloorStore};
use bascule_partitions::{Layout, SlotName};
use serde::Serialize;

use crate::bundle::{BundleReader, Keyring};
use crate::config::BootEnvConfig;
use crate::device::{Device, DeviceError};
use crate::health::{self, history::History, history::Record};
use crate::hooks::{Hook, HookEnv, HookFailed, HooksConfig};
use crate::install::lock::{EnvLock, InstallLock};
use crate::install::{
    self, ActivateReport, HookPoint, InstallHooks, InstallOptions, InstallReport, InstallTarget,
    Progress,
};
use crate::slot::state::NextBoot;
use crate::slot::{state, BadReason, BootDecision, BootScheme, BootState, SlotInfo, SlotState};
use crate::source::open_source;
use crate::Error;

/// Which slot a command means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotSelector {
    Booted,
    Other,
    Named(SlotName),
}

impl std::str::FromStr for SlotSelector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "booted" => Ok(SlotSelector::Booted),
            "other" => Ok(SlotSelector::Other),
            name => name
                .parse::<SlotName>()
                .map(SlotSelector::Named)
                .map_err(|_| format!("{name:?} is not booted, other, A or B")),
        }
    }
}

impl SlotSelector {
    fn resolve(self, dev: &Device) -> Result<SlotName, Error> {
        Ok(match self {
            SlotSelector::Booted => dev.booted()?,
            SlotSelector::Other => dev.booted()?.other(),
            SlotSelector::Named(name) => name,
        })
    }
}

/// What `bascule status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub compatible: String,
    pub booted: Option<SlotName>,
    /// Why the booted slot is unknown, when it is.
    pub booted_error: Option<String>,
    pub boot_scheme: String,
    pub bootenv: String,
    /// Set when the main boot environment is unreadable and a fallback was read: what
    /// the bootloader boots now, and that the next commit repairs it.
    pub bootenv_warning: Option<String>,
    pub boot_order: Vec<SlotName>,
    pub slots: Vec<SlotInfo>,
    /// What the bootloader does at the next power-on, if nothing is confirmed first.
    pub next_boot: NextBoot,
    pub security_floor: u32,
    /// Where the floor is kept ("file /data/bascule/security-floor").
    pub security_floor_store: String,
    /// Where `state_dir` is, as checked when the device was opened.
    pub state_dir: String,
    /// Environment writes one ordinary boot of this state costs (bootloader + confirm).
    pub env_writes_per_boot: u32,
    /// Why each slot that is bad now got there, when the health history knows: the
    /// newest failed probe, or revert without one, of the release it holds.
    pub rollbacks: Vec<Record>,
    /// The raw variables, for the curious and for scripts.
    pub env: EnvVars,
}

/// Reads the device's state.
pub fn status(dev: &mut Device) -> Result<StatusReport, Error> {
    let vars = dev.env.load()?;
    let (booted, booted_error) = match dev.booted() {
        Ok(slot) => (Some(slot), None),
        Err(err) => (None, Some(err.to_string())),
    };
    let boot_state = match booted {
        Some(slot) => BootState::read_running(dev.scheme.as_ref(), &vars, slot)?,
        None => BootState::read(dev.scheme.as_ref(), &vars)?,
    };
    let env_writes_per_boot = writes_per_boot(dev, &vars);
    Ok(StatusReport {
        compatible: dev.config.compatible.clone(),
        booted,
        booted_error,
        boot_scheme: dev.scheme.name().to_string(),
        bootenv: dev.env.describe(),
        bootenv_warning: dev.env.degraded(),
        boot_order: boot_state.view.order.clone(),
        slots: boot_state.slots.to_vec(),
        next_boot: state::predict_next_boot(dev.scheme.as_ref(), &vars),
        security_floor: dev.security_floor()?,
        security_floor_store: dev.floor.describe(),
        state_dir: format!("{} ({})", dev.config.state_dir.display(), dev.placement),
        env_writes_per_boot,
        rollbacks: health::rollback_reasons(&mut History::new(&dev.config.state_dir), &boot_state),
        env: vars,
    })
}

/// Counts the writes of one boot from this state: the bootloader's own save, then
/// bascule's confirm of the slot it booted (none if that changes nothing).
fn writes_per_boot(dev: &Device, vars: &EnvVars) -> u32 {
    let mut booted_vars = vars.clone();
    let attempts = dev.config.boot.attempts;
    let bootloader = match dev.scheme.boot(&mut booted_vars) {
        BootDecision::Boot(slot) => (slot, u32::from(booted_vars != *vars)),
        BootDecision::NoSlotResetCounters => return 1,
    };
    let confirm = state::confirm(dev.scheme.as_ref(), &booted_vars, bootloader.0, attempts);
    bootloader.1 + u32::from(confirm.is_some())
}

/// What `mark-good` did to a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoodOutcome {
    /// The booted slot confirmed itself. The security floor went from `floor.0` to
    /// `floor.1` (equal when it did not rise).
    Confirmed { floor: (u32, u32) },
    /// A slot that is not booted and was already good: at most its tries re-armed.
    /// The floor is untouched (the slot did not prove itself by booting now).
    AlreadyGood,
    /// A slot that is not booted and was not good went back on trial (`--force`):
    /// primary with `tries` fresh tries. The floor stays at `floor` until it boots and
    /// confirms itself.
    Revived {
        was: SlotState,
        version: String,
        tries: u8,
        floor: u32,
    },
}

/// The result of `mark-good`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedGood {
    pub slot: SlotName,
    /// Whether the environment was written.
    pub written: bool,
    pub outcome: GoodOutcome,
    /// The `post-commit` hook's failure, when the confirmation committed a release and
    /// the hook failed (recorded in the history; the confirmation stands).
    pub post_commit: Option<HookFailed>,
}

/// Marks a slot good. The booted slot is confirmed, and only then (after the env
/// commit) the security floor rises to its security version: the only way a slot
/// raises the floor is by booting and confirming itself. Any other slot never raises
/// it; one that is not good (rolled back, marked bad, pending) goes back on trial
/// with fresh tries, and only with `force`.
pub fn mark_good(dev: &mut Device, which: SlotSelector, force: bool) -> Result<MarkedGood, Error> {
    let slot = which.resolve(dev)?;
    if dev.booted().ok() == Some(slot) {
        return confirm_booted(dev, slot);
    }
    // Installs never write the booted slot; any other slot may be mid-write.
    let _install = InstallLock::acquire(&dev.config.state_dir)?;
    let _guard = EnvLock::acquire(&dev.config.state_dir)?;
    let vars = dev.env.load()?;
    let boot_state = BootState::read(dev.scheme.as_ref(), &vars)?;
    let info = boot_state.slot(slot);
    if info.state == SlotState::Good {
        let next = state::confirm(dev.scheme.as_ref(), &vars, slot, dev.config.boot.attempts);
        let written = commit_change(dev.env.as_mut(), &vars, next)?;
        let outcome = GoodOutcome::AlreadyGood;
        return Ok(MarkedGood {
            slot,
            written,
            outcome,
            post_commit: None,
        });
    }
    revive(dev, &vars, info, force)
}

/// Confirms the booted slot, then raises the floor to its security version.
fn confirm_booted(dev: &mut Device, slot: SlotName) -> Result<MarkedGood, Error> {
    let _guard = EnvLock::acquire(&dev.config.state_dir)?;
    let attempts = dev.config.boot.attempts;
    let done = confirm_and_raise_floor(
        dev.env.as_mut(),
        dev.floor.as_mut(),
        dev.scheme.as_ref(),
        slot,
        attempts,
    )?;
    let post_commit = health::post_commit(dev, slot, &done);
    Ok(MarkedGood {
        slot,
        written: done.written,
        outcome: GoodOutcome::Confirmed { floor: done.floor },
        post_commit,
    })
}

/// What [`confirm_and_raise_floor`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    /// Whether the environment was written.
    pub written: bool,
    /// The floor before and after.
    pub floor: (u32, u32),
    /// Whether the slot was pending before: this confirmation committed its release
    /// (the `post-commit` hook runs).
    pub committed: bool,
}

/// Confirms `slot`, which booted and proved healthy, then raises the security floor
/// to its security version. The one order every confirmation takes: the env commit
/// is durable before the floor rises, so a power cut between the two leaves a
/// confirmed slot and the old floor (the next confirmation raises it), never a floor
/// raised for a slot that is not confirmed. Refuses when the scheme would still not
/// boot `slot`. The caller holds the env lock and knows `slot` is the booted one.
pub fn confirm_and_raise_floor(
    env: &mut dyn EnvStore,
    floor: &mut dyn SecurityFloorStore,
    scheme: &dyn BootScheme,
    slot: SlotName,
    attempts: u8,
) -> Result<Confirmation, Error> {
    let vars = env.load()?;
    let boot_state = BootState::read(scheme, &vars)?;
    let next = state::confirm(scheme, &vars, slot, attempts);
    let after = BootState::read(scheme, next.as_ref().unwrap_or(&vars))?;
    if after.slot(slot).state != SlotState::Good {
        return Err(Error::Refused(format!(
            "cannot mark slot {slot} good: it is {} and the bootloader would still not boot it; \
             install a bundle into it instead",
            boot_state.slot(slot).state
        )));
    }
    let floor_err = |e| Error::Device(DeviceError::Floor(e));
    let before = floor.read().map_err(floor_err)?;
    let written = commit_change(env, &vars, next)?;
    let mut now = before;
    if let Some(secver) = boot_state.slot(slot).security_version {
        if floor.raise(secver).map_err(floor_err)? {
            now = secver;
        }
    }
    Ok(Confirmation {
        written,
        floor: (before, now),
        committed: matches!(boot_state.slot(slot).state, SlotState::Pending { .. }),
    })
}

/// Puts a slot that is not booted and not good back on trial, with `force` only.
fn revive(
    dev: &mut Device,
    vars: &EnvVars,
    info: &SlotInfo,
    force: bool,
) -> Result<MarkedGood, Error> {
    let slot = info.slot;
    let (Some(version), Some(security_version)) = (&info.version, info.security_version) else {
        return Err(Error::Refused(format!(
            "cannot mark slot {slot} good: it is {} and bascule does not know what it holds \
             (an install into it did not finish); install a bundle into it instead",
            info.state
        )));
    };
    let tries = dev.config.boot.attempts;
    let floor = dev.security_floor()?;
    let what = format!(
        "slot {slot} (v{version}) {}; --force makes it primary with {tries} fresh tries; the \
         security floor ({floor}) is not raised until it boots and confirms itself",
        why_not_good(&info.state)
    );
    if !force {
        return Err(Error::Refused(format!("refusing to mark-good: {what}")));
    }
    let image = state::InstalledImage {
        version: version.clone(),
        security_version,
    };
    let next = state::retry(dev.scheme.as_ref(), vars, slot, &image, tries);
    let after = BootState::read(dev.scheme.as_ref(), &next)?;
    if !matches!(after.slot(slot).state, SlotState::Pending { .. }) {
        return Err(Error::Refused(format!(
            "cannot put slot {slot} back on trial: the boot scheme would leave it {}",
            after.slot(slot).state
        )));
    }
    dev.env.commit(&next)?;
    let outcome = GoodOutcome::Revived {
        was: info.state.clone(),
        version: version.clone(),
        tries,
        floor,
    };
    Ok(MarkedGood {
        slot,
        written: true,
        outcome,
        post_commit: None,
    })
}

/// Why a slot that is not good is not, in words for `mark-good`'s messages.
fn why_not_good(state: &SlotState) -> String {
    match state {
        SlotState::Bad {
            reason: BadReason::TriesExhausted,
        } => "rolled back after its tries ran out".into(),
        SlotState::Pending { tries_left } => {
            format!("is on trial ({tries_left} tries left) and has not confirmed itself by booting")
        }
        other => format!("is {other}"),
    }
}

/// Commits `next`; with no change, still rewrites `vars` when the store read them from
/// a fallback (the main copy is unreadable and this commit repairs it). Returns
/// whether the environment was written.
fn commit_change(
    env: &mut dyn EnvStore,
    vars: &EnvVars,
    next: Option<EnvVars>,
) -> Result<bool, Error> {
    let next = match next {
        Some(next) => next,
        None if env.degraded().is_some() => vars.clone(),
        None => return Ok(false),
    };
    env.commit(&next)?;
    Ok(true)
}

/// Marks a slot bad. Returns whether the environment was written.
pub fn mark_bad(dev: &mut Device, which: SlotSelector) -> Result<(SlotName, bool), Error> {
    let slot = which.resolve(dev)?;
    let _guard = EnvLock::acquire(&dev.config.state_dir)?;
    let vars = dev.env.load()?;
    BootState::read(dev.scheme.as_ref(), &vars)?;
    let next = state::mark_bad_keeping_one(dev.scheme.as_ref(), &vars, slot, dev.booted().ok())
        .map_err(|e| Error::Refused(e.to_string()))?;
    let written = commit_change(dev.env.as_mut(), &vars, next)?;
    Ok((slot, written))
}

/// Installs the bundle at `source` (path, `-` or URL) into the inactive slot.
pub fn install(
    dev: &mut Device,
    source: &str,
    opts: &InstallOptions,
    progress: &mut dyn Progress,
) -> Result<InstallReport, Error> {
    let _lock = InstallLock::acquire(&dev.config.state_dir)?;
    let booted = dev.booted()?;
    dev.check_root_is_not(opts.target.unwrap_or(booted.other()))?;
    let keyring = Keyring::load_dir(&dev.config.keyring)?;
    let reader = BundleReader::open(open_source(source, &dev.config.http)?, &keyring)?;
    if !opts.force {
        refuse_quarantined(dev, &reader)?;
    }
    let security_floor = dev.security_floor()?;
    let hooks = DeviceHooks {
        config: &dev.config.hooks,
        layout: &dev.config.layout,
    };
    let mut slots = dev.slots();
    let mut state_files = DirFiles::new(&dev.config.state_dir);
    let target = InstallTarget {
        env: dev.env.as_mut(),
        scheme: dev.scheme.as_ref(),
        slots: &mut slots,
        compatible: &dev.config.compatible,
        booted,
        attempts: dev.config.boot.attempts,
        security_floor,
        env_lock_dir: Some(&dev.config.state_dir),
        hooks: Some(&hooks),
        state_files: Some(&mut state_files),
    };
    Ok(install::install(reader, target, opts, progress)?)
}

/// Marks the slot `install --no-activate` wrote pending, after checking it still holds
/// what was written and may still boot ([`install::activate()`]). Runs no hook.
pub fn activate(dev: &mut Device) -> Result<ActivateReport, Error> {
    let _lock = InstallLock::acquire(&dev.config.state_dir)?;
    let booted = dev.booted()?;
    dev.check_root_is_not(booted.other())?;
    let keyring = Keyring::load_dir(&dev.config.keyring)?;
    let security_floor = dev.security_floor()?;
    let mut slots = dev.slots();
    let mut state_files = DirFiles::new(&dev.config.state_dir);
    let target = InstallTarget {
        env: dev.env.as_mut(),
        scheme: dev.scheme.as_ref(),
        slots: &mut slots,
        compatible: &dev.config.compatible,
        booted,
        attempts: dev.config.boot.attempts,
        security_floor,
        env_lock_dir: Some(&dev.config.state_dir),
        hooks: None,
        state_files: Some(&mut state_files),
    };
    Ok(install::activate(target, &keyring)?)
}

/// The configured hooks with the device's layout, for the install engine.
struct DeviceHooks<'a> {
    config: &'a HooksConfig,
    layout: &'a Layout,
}

impl DeviceHooks<'_> {
    fn run(&self, hook: Hook, at: &HookPoint) -> Result<(), HookFailed> {
        let env = HookEnv {
            target: at.target,
            booted: at.booted,
            version: Some(at.version.clone()),
            classes: at.classes.clone(),
        };
        self.config.run(hook, &env.vars(hook, self.layout))
    }
}

impl InstallHooks for DeviceHooks<'_> {
    fn pre_install(&self, at: &HookPoint) -> Result<(), HookFailed> {
        self.run(Hook::PreInstall, at)
    }
    fn post_install(&self, at: &HookPoint) -> Result<(), HookFailed> {
        self.run(Hook::PostInstall, at)
    }
}

/// Refuses a release that failed its health probe on this device, or that the
/// bootloader rolled back, unless the quarantine was lifted since.
fn refuse_quarantined<R: std::io::Read>(
    dev: &Device,
    reader: &BundleReader<R>,
) -> Result<(), Error> {
    let hash = install::manifest_sha256(reader.manifest_bytes());
    let records = History::new(&dev.config.state_dir)
        .read()
        .map_err(health::HealthError::from)?
        .records;
    let Some(failed) = health::quarantine(&records, &hash) else {
        return Ok(());
    };
    let how = match (&failed.check, &failed.reason) {
        (Some(check), Some(reason)) => format!(
            "its health probe failed (stage {:?}, check {check:?}: {reason})",
            failed.stage.as_deref().unwrap_or("?")
        ),
        _ => "the bootloader rolled it back without a probe (kernel panic, hang)".into(),
    };
    Err(Error::Refused(format!(
        "refusing to install v{} (manifest sha256 {hash}): it is quarantined: on this device \
         {how} in slot {} at {}; install --force installs it anyway, and bascule history \
         --clear-quarantine lifts the refusal",
        reader.manifest().version,
        failed.slot,
        health::history::format_time(failed.time),
    )))
}

/// Simulates a power-on: runs the bootloader script's decision on the environment,
/// saves it, and writes the kernel command line the bootloader would pass. For demos
/// and tests on file-backed devices; refuses a real `/proc/cmdline`.
pub fn simulate_boot(dev: &mut Device) -> Result<BootDecision, Error> {
    let cmdline = dev.config.boot.cmdline.clone();
    if cmdline.starts_with("/proc") {
        return Err(Error::Usage(format!(
            "simulate-boot writes the kernel command line file, but the config reads the real one ({})",
            cmdline.display()
        )));
    }
    let _guard = EnvLock::acquire(&dev.config.state_dir)?;
    let mut vars = dev.env.load()?;
    let decision = dev.scheme.boot(&mut vars);
    // Booting from a fallback env (GRUB's grubenv.good) the script saves nothing.
    if dev.env.degraded().is_none() {
        dev.env.commit(&vars)?;
    }
    let line = match decision {
        BootDecision::Boot(slot) => {
            format!("console=ttyS0 {}={slot}\n", dev.config.boot.cmdline_keys[0])
        }
        BootDecision::NoSlotResetCounters => "console=ttyS0\n".to_string(),
    };
    crate::device::write_atomic(&cmdline, line.as_bytes()).map_err(|e| Error::Io {
        context: format!("write {}", cmdline.display()),
        message: e.to_string(),
    })?;
    Ok(decision)
}

/// What `init-env` is asked to write.
#[derive(Debug, Clone, Default)]
pub struct InitEnv<'a> {
    /// The version installed in the good slot, if known.
    pub version: Option<&'a str>,
    /// Replace a readable boot state, or rewrite a corrupt env.
    pub force: bool,
    /// The board's default env (`u-boot-initial-env`); overrides the config's.
    pub defaults: Option<&'a Path>,
}

/// Writes a complete first boot state: `good` confirmed (holding `version`, if
/// known), the other slot bad. A factory step, never an update step:
/// - a valid env keeps every variable; one that already has a bootable slot is
///   replaced only with `force`;
/// - a blank env (every copy erased) starts from the board's default env on U-Boot
///   (`defaults`), which U-Boot needs to find its `bootcmd`; other backends need only
///   bascule's variables (GRUB's and the native bootloader's logic is their script);
/// - a corrupt env (not blank, unreadable) is rewritten only with `force`, and on
///   U-Boot from the defaults too.
pub fn init_env(dev: &mut Device, good: SlotName, opts: &InitEnv) -> Result<(), Error> {
    let _install = InstallLock::acquire(&dev.config.state_dir)?;
    let _guard = EnvLock::acquire(&dev.config.state_dir)?;
    let base = match dev.env.load() {
        Ok(vars) => {
            refuse_bootable(dev, &vars, opts.force)?;
            vars
        }
        Err(HalError::EnvBlank { .. } | HalError::EnvMissing { .. }) => {
            initial_env(dev, opts.defaults, "blank")?
        }
        Err(err @ HalError::EnvCorrupt { .. }) if !opts.force => {
            return Err(Error::Refused(format!(
                "{err}; init-env rewrites a corrupt environment only with --force (it drops \
                 every variable in it)"
            )))
        }
        Err(HalError::EnvCorrupt { .. }) => initial_env(dev, opts.defaults, "corrupt")?,
        Err(err) => return Err(err.into()),
    };
    let image = opts.version.map(|v| state::InstalledImage {
        version: v.to_string(),
        security_version: 0,
    });
    let vars = state::factory_state(
        dev.scheme.as_ref(),
        &base,
        good,
        image.as_ref(),
        dev.config.boot.attempts,
    );
    dev.env.commit(&vars)?;
    Ok(())
}

/// Refuses to replace a state with a bootable slot unless `force`.
fn refuse_bootable(dev: &Device, vars: &EnvVars, force: bool) -> Result<(), Error> {
    let bootable = BootState::read(dev.scheme.as_ref(), vars)
        .is_ok_and(|st| SlotName::ALL.iter().any(|s| st.view.bootable(*s)));
    if !force && bootable {
        return Err(Error::Usage(format!(
            "{} already holds a boot state; pass --force to replace it",
            dev.env.describe()
        )));
    }
    Ok(())
}

/// The variables a rewritten `what` (blank or corrupt) env starts from: the board's
/// default env on U-Boot (`cli` or the config's `defaults`), none elsewhere.
fn initial_env(dev: &Device, cli: Option<&Path>, what: &str) -> Result<EnvVars, Error> {
    let BootEnvConfig::Uboot { defaults, .. } = &dev.config.bootenv else {
        return match cli {
            Some(_) => Err(Error::Usage(
                "--defaults is for the U-Boot backend; GRUB, native and GPT envs need only \
                 bascule's variables"
                    .into(),
            )),
            None => Ok(EnvVars::new()),
        };
    };
    let Some(path) = cli.or(defaults.as_deref()) else {
        return Err(Error::Refused(format!(
            "{} is {what}: U-Boot needs the board's default environment (bootcmd, ...) \
             besides bascule's variables, or it stops at its prompt; pass --defaults FILE \
             (the board's u-boot-initial-env, name=value lines) or set defaults in [bootenv]",
            dev.env.describe()
        )));
    };
    let text = std::fs::read(path).map_err(Error::io(format!("read {}", path.display())))?;
    let vars = parse_initial_env(&text);
    if !vars.contains_key("bootcmd") {
        return Err(Error::Refused(format!(
            "default environment {} sets no bootcmd: U-Boot would stop at its prompt",
            path.display()
        )));
    }
    Ok(vars)
}
