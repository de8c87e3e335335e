//! The factory's `init-env` (a complete first boot state, keeping the board's
//! default env) and the simulated power-on that demos and tests use in place of a
//! real bootloader.
use std::path::Path;

use bascule_hal::env::uboot::parse_initial_env;
use bascule_hal::{EnvVars, HalError};
use bascule_partitions::SlotName;

use crate::config::BootEnvConfig;
use crate::device::Device;
use crate::install::lock::{EnvLock, InstallLock};
use crate::slot::{state, BootDecision, BootState};
use crate::Error;

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
