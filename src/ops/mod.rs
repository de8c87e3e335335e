//! The commands' logic, shared by the CLI and the demo: status, mark-good, mark-bad,
//! install and the simulated boot. Each takes a [`Device`] and returns a value the
//! CLI prints; none prints by itself.
//!
//! - this module: [`status`] and the [`SlotSelector`] the commands take;
//! - `confirm`: `mark-good` (confirming the booted slot raises the floor), `mark-bad`;
//! - `update`: `install` and `activate` with the configured hooks and the
//!   quarantine of releases that failed here;
//! - `boot`: the factory's `init-env` and the simulated power-on of demos and tests.

use bascule_hal::EnvVars;
use bascule_partitions::SlotName;
use serde::Serialize;

use crate::device::Device;
use crate::health::{self, history::History, history::Record};
use crate::slot::state::NextBoot;
use crate::slot::{state, BootDecision, BootState, SlotInfo};
use crate::Error;

mod boot;
mod confirm;
mod update;

pub use boot::{init_env, simulate_boot, InitEnv};
pub use confirm::{
    confirm_and_raise_floor, mark_bad, mark_good, Confirmation, GoodOutcome, MarkedGood,
};
pub use update::{activate, install};

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
