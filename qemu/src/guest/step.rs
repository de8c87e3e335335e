//! The layer the scenarios of both platforms are written in: a [`Guest`] (a disk
//! copy with its machine and host view) boots in [`Step`]s, each the boot's console,
//! its markers and what the host read from the disk afterwards; the `expect*`
//! functions check one thing of a step and fail naming the step, what was expected
//! and the console of that boot.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bascule::slot::state::SlotState;
use bascule_partitions::SlotName;

use super::console::{Boot, Kill, Markers};
use super::error::GuestError;
use super::host::{HostSnapshot, HostView};
use super::machine::{Instruction, Machine};
use super::platform::Platform;
use super::rootfs::Release;
use super::world::World;

/// A scenario that did not go as stated.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Guest(#[from] GuestError),
    #[error("{step}: {what}\n---- console of that boot ----\n{console}")]
    Expectation {
        step: String,
        what: String,
        console: String,
    },
    #[error("{step}: {what}")]
    Host { step: String, what: String },
}

/// One boot of a scenario, with what the host read afterwards.
pub struct Step {
    pub platform: Platform,
    pub boot: Boot,
    pub markers: Markers,
    pub host: HostSnapshot,
}

/// A disk being booted, with its machine and host view.
pub struct Guest {
    pub platform: Platform,
    pub disk: PathBuf,
    machine: Machine,
    host: HostView,
    /// (step, time of the boot, time to the health verdict) per boot.
    pub timings: Vec<(String, Duration, Option<Duration>)>,
}

impl Guest {
    /// A guest over a copy of `from` (the factory disk when `None`).
    pub fn new(world: &World, from: Option<&Path>, name: &str) -> Result<Guest, GuestError> {
        let disk = world.disk_copy(from, name)?;
        Ok(Guest {
            platform: world.platform,
            machine: world.machine(&disk)?,
            host: world.host(&disk)?,
            disk,
            timings: Vec::new(),
        })
    }

    /// Boots once (no cut) and reads the disk from the host.
    pub fn step(&mut self, name: &str, instruction: Instruction) -> Result<Step, ScenarioError> {
        let boot = self.boot(&instruction, "", &Kill::Never)?;
        self.timings
            .push((name.to_string(), boot.elapsed, boot.to_health_verdict));
        let markers = Markers::read(&boot.console);
        let host = self.snapshot(name)?;
        Ok(Step {
            platform: self.platform,
            boot,
            markers,
            host,
        })
    }

    /// Boots once, cut per `kill`, with the pause points `pause` armed; the host does
    /// not read the disk.
    pub fn boot(
        &mut self,
        instruction: &Instruction,
        pause: &str,
        kill: &Kill,
    ) -> Result<Boot, ScenarioError> {
        let boot = self.machine.boot(instruction, pause, kill);
        Ok(boot.map_err(GuestError::from)?)
    }

    /// The host's view of the disk now, or why the host could not read it.
    pub fn read_host(&self) -> Result<HostSnapshot, GuestError> {
        self.host.snapshot()
    }

    /// The host's view of the disk now; an error names `step`.
    pub fn snapshot(&self, step: &str) -> Result<HostSnapshot, ScenarioError> {
        self.read_host().map_err(|e| ScenarioError::Host {
            step: step.into(),
            what: e.to_string(),
        })
    }
}

/// Checks `cond`, or fails naming the step, what was expected and the console.
pub fn expect(
    cond: bool,
    step: &Step,
    name: &str,
    what: impl Into<String>,
) -> Result<(), ScenarioError> {
    if cond {
        return Ok(());
    }
    Err(ScenarioError::Expectation {
        step: name.into(),
        what: what.into(),
        console: step.boot.console.clone(),
    })
}

/// The state bascule on the host reads for `slot`.
pub fn slot_state(host: &HostSnapshot, slot: SlotName) -> SlotState {
    host.status
        .slots
        .iter()
        .find(|s| s.slot == slot)
        .map(|s| s.state.clone())
        .expect("status lists both slots")
}

/// The version bascule on the host records for `slot`.
pub fn slot_version(host: &HostSnapshot, slot: SlotName) -> Option<String> {
    host.status
        .slots
        .iter()
        .find(|s| s.slot == slot)
        .and_then(|s| s.version.clone())
}

/// Checks that bascule on the host sees `slot` in a state `ok` accepts (`what`).
pub fn expect_slot(
    step: &Step,
    name: &str,
    slot: SlotName,
    what: &str,
    ok: impl Fn(&SlotState) -> bool,
) -> Result<(), ScenarioError> {
    let state = slot_state(&step.host, slot);
    expect(
        ok(&state),
        step,
        name,
        format!("host: {slot} should be {what}, is {state}"),
    )
}

/// Checks that the bootloader's env tool lists `var=value`.
pub fn expect_env(step: &Step, name: &str, var: &str, value: &str) -> Result<(), ScenarioError> {
    let got = step.host.env.get(var).map(String::as_str);
    expect(
        got == Some(value),
        step,
        name,
        format!(
            "{}: {var} should be {value:?}, is {got:?}",
            step.platform.env_tool()
        ),
    )
}

/// Checks that the host reads the security floor `floor`.
pub fn expect_floor(step: &Step, name: &str, floor: u32) -> Result<(), ScenarioError> {
    let got = step.host.status.security_floor;
    expect(
        got == floor,
        step,
        name,
        format!("host: the floor should be {floor}, is {got}"),
    )
}

/// The variables of bascule's scheme on `platform` (what the comparison of the
/// env tool and bascule covers).
fn ours(platform: Platform, name: &str) -> bool {
    match platform {
        Platform::Arm64 => name.starts_with("BOOT_") || name.starts_with("BASCULE_"),
        Platform::X86_64 => name == "ORDER" || name.ends_with("_OK") || name.ends_with("_TRY"),
    }
}

/// Differences between the env tool and bascule over bascule's scheme's variables.
pub fn env_disagreement(platform: Platform, host: &HostSnapshot) -> Option<String> {
    let tool: BTreeMap<&str, &str> = host
        .env
        .iter()
        .filter(|(k, _)| ours(platform, k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let bascule: BTreeMap<String, String> = host
        .status
        .env
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k.as_ref()).into_owned(),
                String::from_utf8_lossy(v.as_ref()).into_owned(),
            )
        })
        .filter(|(k, _)| ours(platform, k))
        .collect();
    let bascule: BTreeMap<&str, &str> = bascule
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    (tool != bascule).then(|| {
        format!(
            "{} reads {tool:?}, bascule reads {bascule:?}",
            platform.env_tool()
        )
    })
}

/// Checks the serial console of a boot that should run `slot` with `release`, and
/// that the env tool reads the env bascule reads.
pub fn expect_booted(
    step: &Step,
    name: &str,
    slot: SlotName,
    release: &Release,
) -> Result<(), ScenarioError> {
    let m = &step.markers;
    let bootloader = step.platform.bootloader();
    expect(
        m.bootloader_slot == Some(slot),
        step,
        name,
        format!(
            "{bootloader} should boot slot {slot}, chose {:?}",
            m.bootloader_slot
        ),
    )?;
    expect(
        m.guest == Some((slot, release.version.to_string())),
        step,
        name,
        format!(
            "the guest should run {} in slot {slot}, ran {:?}",
            release.version, m.guest
        ),
    )?;
    expect(
        m.errors.is_empty(),
        step,
        name,
        format!("the guest reported {:?}", m.errors),
    )?;
    let disagreement = env_disagreement(step.platform, &step.host);
    expect(
        disagreement.is_none(),
        step,
        name,
        disagreement.unwrap_or_default(),
    )
}

/// The time between two markers of an uncut boot.
pub fn span(boot: &Boot, from: &str, to: &str, step: &str) -> Result<Duration, ScenarioError> {
    match (boot.mark(from), boot.mark(to)) {
        (Some(a), Some(b)) if b > a => Ok(b - a),
        _ => Err(ScenarioError::Expectation {
            step: step.into(),
            what: format!("the console should show {from:?} then {to:?}"),
            console: boot.console.clone(),
        }),
    }
}
