//! The commands' logic, shared by the CLI and the demo: status, mark-good, mark-bad,
//! install and the simulated boot. Each takes a [`Device`] and returns a value the
//! CLI prints; none prints by itself.
use bascule_hal::EnvVars;
use bascule_partitions::SlotName;
use serde::Serialize;

use crate::bundle::{BundleReader, Keyring};
use crate::device::Device;
use crate::install::lock::{EnvLock, InstallLock};
use crate::install::{self, InstallOptions, InstallReport, InstallTarget, Progress};
use crate::slot::{state, BootDecision, BootState, SlotInfo, SlotState};
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
    pub security_floor: u32,
    /// Environment writes one ordinary boot of this state costs (bootloader + confirm).
    pub env_writes_per_boot: u32,
    /// The raw variables, for the curious and for scripts.
    pub env: EnvVars,
}

/// Reads the device's state.
pub fn status(dev: &mut Device) -> Result<StatusReport, Error> {
    let vars = dev.env.load()?;
    let boot_state = BootState::read(dev.scheme.as_ref(), &vars)?;
    let (booted, booted_error) = match dev.booted() {
        Ok(slot) => (Some(slot), None),
        Err(err) => (None, Some(err.to_string())),
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
        security_floor: dev.security_floor()?,
        env_writes_per_boot,
        env: vars,
    })
}

/// Counts the writes of one boot from this state: the bootloader's own save, then
/// bascule's confirm of the slot it booted (none if that changes nothing).
fn writes_per_boot(dev: &Device, vars: &EnvVars) -> u32 {
    let mut booted_vars = vars.clone();
    let attempts = dev.config.boot.attempts;
    let bootloader = match dev.scheme.boot(&mut booted_vars, attempts) {
        BootDecision::Boot(slot) => (slot, u32::from(booted_vars != *vars)),
        BootDecision::NoSlotResetCounters => return 1,
    };
    let confirm = state::confirm(dev.scheme.as_ref(), &booted_vars, bootloader.0, attempts);
    bootloader.1 + u32::from(confirm.is_some())
}

/// Marks a slot good; raises the security floor to what it holds. Returns whether
/// the environment was written.
pub fn mark_good(dev: &mut Device, which: SlotSelector) -> Result<(SlotName, bool), Error> {
    let slot = which.resolve(dev)?;
    // Installs never write the booted slot; any other slot may be mid-write, and on
    // schemes where mark-good makes a slot bootable (GRUB, GPT) that must not happen.
    let _install = match dev.booted() {
        Ok(booted) if booted == slot => None,
        _ => Some(InstallLock::acquire(&dev.config.state_dir)?),
    };
    let _guard = EnvLock::acquire(&dev.config.state_dir)?;
    let vars = dev.env.load()?;
    let boot_state = BootState::read(dev.scheme.as_ref(), &vars)?;
    let next = state::confirm(dev.scheme.as_ref(), &vars, slot, dev.config.boot.attempts);
    let after = BootState::read(dev.scheme.as_ref(), next.as_ref().unwrap_or(&vars))?;
    if after.slot(slot).state != SlotState::Good {
        return Err(Error::Refused(format!(
            "cannot mark slot {slot} good: it is {} and the bootloader would still not boot it; \
             install a bundle into it instead",
            boot_state.slot(slot).state
        )));
    }
    let written = commit_change(dev, &vars, next)?;
    if let Some(secver) = boot_state.slot(slot).security_version {
        dev.raise_security_floor(secver)?;
    }
    Ok((slot, written))
}

/// Commits `next`; with no change, still rewrites `vars` when the store read them from
/// a fallback (the main copy is unreadable and this commit repairs it). Returns
/// whether the environment was written.
fn commit_change(dev: &mut Device, vars: &EnvVars, next: Option<EnvVars>) -> Result<bool, Error> {
    let next = match next {
        Some(next) => next,
        None if dev.env.degraded().is_some() => vars.clone(),
        None => return Ok(false),
    };
    dev.env.commit(&next)?;
    Ok(true)
}

/// Marks a slot bad. Returns whether the environment was written.
pub fn mark_bad(dev: &mut Device, which: SlotSelector) -> Result<(SlotName, bool), Error> {
    let slot = which.resolve(dev)?;
    let _guard = EnvLock::acquire(&dev.config.state_dir)?;
    let vars = dev.env.load()?;
    BootState::read(dev.scheme.as_ref(), &vars)?;
    let next = state::mark_bad(dev.scheme.as_ref(), &vars, slot);
    if let Some(next) = &next {
        let after = BootState::read(dev.scheme.as_ref(), next)?;
        if !SlotName::ALL.iter().any(|s| after.view.bootable(*s)) {
            return Err(Error::Refused(format!(
                "refusing to mark slot {slot} bad: no other slot is bootable, the device would not boot"
            )));
        }
    }
    let written = commit_change(dev, &vars, next)?;
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
    let reader = BundleReader::open(open_source(source)?, &keyring)?;
    let security_floor = dev.security_floor()?;
    let mut slots = dev.slots();
    let target = InstallTarget {
        env: dev.env.as_mut(),
        scheme: dev.scheme.as_ref(),
        slots: &mut slots,
        compatible: &dev.config.compatible,
        booted,
        attempts: dev.config.boot.attempts,
        security_floor,
        env_lock_dir: Some(&dev.config.state_dir),
    };
    Ok(install::install(reader, target, opts, progress)?)
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
    let decision = dev.scheme.boot(&mut vars, dev.config.boot.attempts);
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
    crate::device::write_atomic(&cmdline, line.as_bytes())
        .map_err(Error::io(format!("write {}", cmdline.display())))?;
    Ok(decision)
}

/// Writes a complete first boot state: `good` confirmed (holding `version`, if
/// known), the other slot bad. Refuses to replace a readable state unless `force`:
/// a factory step, never an update step.
pub fn init_env(
    dev: &mut Device,
    good: SlotName,
    version: Option<&str>,
    force: bool,
) -> Result<(), Error> {
    let _install = InstallLock::acquire(&dev.config.state_dir)?;
    let _guard = EnvLock::acquire(&dev.config.state_dir)?;
    let current = dev.env.load();
    if let Ok(vars) = &current {
        let bootable = BootState::read(dev.scheme.as_ref(), vars)
            .is_ok_and(|st| SlotName::ALL.iter().any(|s| st.view.bootable(*s)));
        if !force && bootable {
            return Err(Error::Usage(format!(
                "{} already holds a boot state; pass --force to replace it",
                dev.env.describe()
            )));
        }
    }
    let image = version.map(|v| state::InstalledImage {
        version: v.to_string(),
        security_version: 0,
    });
    let vars = state::factory_state(
        dev.scheme.as_ref(),
        &current.unwrap_or_default(),
        good,
        image.as_ref(),
        dev.config.boot.attempts,
    );
    dev.env.commit(&vars)?;
    Ok(())
}
