//! `install` and `activate` over a [`Device`]: the source opened, a quarantined
//! release refused, the configured hooks handed to the install engine.

use bascule_hal::env::DirFiles;
use bascule_partitions::Layout;

use crate::bundle::{BundleReader, Keyring};
use crate::device::Device;
use crate::health::{self, history::History};
use crate::hooks::{Hook, HookEnv, HookFailed, HooksConfig};
use crate::install::lock::InstallLock;
use crate::install::{
    self, ActivateReport, HookPoint, InstallHooks, InstallOptions, InstallReport, InstallTarget,
    Progress,
};
use crate::source::open_source;
use crate::Error;

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
