//! The x86_64 scenarios, asserted on the serial console (GRUB's slot marker, the
//! guest's `bg-` markers) and, after every boot, on the disk from the host
//! (`grub-editenv list` on the ESP's grubenv, `bascule status` and `history`):
//!
//! - [`update`]: v1 installs v2; GRUB boots B (saving `B_TRY=1`), the probe passes and
//!   confirms it (`B_TRY=0`, floor raised to v2's security version); a later boot
//!   keeps B.
//! - [`rollback`] (after `update`): v2 installs v3, whose self-test fails; GRUB boots A
//!   once (`A_TRY=1`), the probe fails and reboots; GRUB then skips A and boots v2 in
//!   B, and bascule reports A rolled back, with the floor unmoved.
//! - [`power_cut`]: SIGKILL of QEMU a given time into the install's write phase; the
//!   next boot must run the slot bascule predicts from the disk, with the version
//!   bascule recorded for it, and be healthy (else a brick or a disagreement).
use std::path::{Path, PathBuf};
use std::time::Duration;

use bascule::slot::state::SlotState;
use bascule_partitions::SlotName;

use crate::guest::error::GuestError;
use crate::guest::host::{HostSnapshot, HostView};
use crate::guest::machine::{section, Boot, Instruction, Kill, Machine, Markers};
use crate::guest::rootfs::{Release, V1, V2, V3};
use crate::guest::world::World;
use crate::guest::world::{guest_bundle_path, security_version};

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
}

/// One boot of a scenario, with what the host read afterwards.
pub struct Step {
    pub boot: Boot,
    pub markers: Markers,
    pub host: HostSnapshot,
}

/// A disk being booted, with its machine and host view.
pub struct Guest {
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
            machine: world.machine(&disk)?,
            host: world.host(&disk)?,
            disk,
            timings: Vec::new(),
        })
    }

    /// Boots once, cut per `kill`, and reads the disk from the host.
    pub fn step(
        &mut self,
        name: &str,
        instruction: Instruction,
        kill: &Kill,
    ) -> Result<Step, ScenarioError> {
        let boot = self
            .machine
            .boot(&instruction, "", kill)
            .map_err(GuestError::from)?;
        self.timings
            .push((name.to_string(), boot.elapsed, boot.to_health_verdict));
        let markers = Markers::read(&boot.console);
        let host = self.host.snapshot()?;
        Ok(Step {
            boot,
            markers,
            host,
        })
    }

    /// The host's view of the disk now.
    pub fn snapshot(&self) -> Result<HostSnapshot, ScenarioError> {
        Ok(self.host.snapshot()?)
    }
}

fn expect(
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

fn slot_state(host: &HostSnapshot, slot: SlotName) -> SlotState {
    host.status
        .slots
        .iter()
        .find(|s| s.slot == slot)
        .map(|s| s.state.clone())
        .expect("status lists both slots")
}

fn slot_version(host: &HostSnapshot, slot: SlotName) -> Option<String> {
    host.status
        .slots
        .iter()
        .find(|s| s.slot == slot)
        .and_then(|s| s.version.clone())
}

/// Checks that `grub-editenv` lists `name=value`.
/// Checks that bascule on the host sees `slot` in a state `ok` accepts (`what`).
fn expect_slot(
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

fn expect_env(step: &Step, name: &str, var: &str, value: &str) -> Result<(), ScenarioError> {
    let got = step.host.env.get(var).map(String::as_str);
    expect(
        got == Some(value),
        step,
        name,
        format!("grub-editenv: {var} should be {value:?}, is {got:?}"),
    )
}

/// Checks the serial console of a boot that should run `slot` with `release`.
fn expect_booted(
    step: &Step,
    name: &str,
    slot: SlotName,
    release: &Release,
) -> Result<(), ScenarioError> {
    let m = &step.markers;
    expect(
        m.uboot_slot == Some(slot),
        step,
        name,
        format!("GRUB should boot slot {slot}, chose {:?}", m.uboot_slot),
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
    )
}

/// The update scenario on a fresh factory disk; returns the guest (v2 confirmed in B).
pub fn update(world: &World) -> Result<Guest, ScenarioError> {
    let mut g = Guest::new(world, None, "x86-update")?;
    let name = "update 1: v1 installs v2";
    let s = g.step(
        name,
        Instruction::Install(guest_bundle_path(&V2)),
        &Kill::Never,
    )?;
    expect_booted(&s, name, SlotName::A, &V1)?;
    expect(
        s.markers.health_rc == Some(0),
        &s,
        name,
        "v1's probe should pass",
    )?;
    expect(
        s.markers.install_rc == Some(0),
        &s,
        name,
        "the install of v2 should succeed",
    )?;
    expect(
        s.markers.powered_off,
        &s,
        name,
        "the init should reach its power-off",
    )?;
    expect_slot(&s, name, SlotName::B, "pending", |st| {
        matches!(st, SlotState::Pending { .. })
    })?;
    expect_env(&s, name, "ORDER", "B A")?;
    expect_env(&s, name, "B_OK", "1")?;
    expect_env(&s, name, "B_TRY", "0")?;
    expect(
        s.host.status.next_boot.slot == Some(SlotName::B),
        &s,
        name,
        "host: bascule should predict B next",
    )?;

    let name = "update 2: GRUB boots v2 in B and the probe confirms it";
    let s = g.step(name, Instruction::Nothing, &Kill::Never)?;
    expect_booted(&s, name, SlotName::B, &V2)?;
    expect(
        s.markers.health_rc == Some(0),
        &s,
        name,
        "v2's probe should pass",
    )?;
    expect_slot(&s, name, SlotName::B, "good", |st| *st == SlotState::Good)?;
    expect(
        s.host.status.security_floor == security_version(&V2),
        &s,
        name,
        format!(
            "host: the floor should be {}, is {}",
            security_version(&V2),
            s.host.status.security_floor
        ),
    )?;
    expect_env(&s, name, "B_TRY", "0")?;
    let status = section(&s.boot.console, "status").unwrap_or_default();
    expect(
        status.contains("slot B:      good") && status.contains("version 2.0.0"),
        &s,
        name,
        "the guest's status should show B good with 2.0.0",
    )?;

    let name = "update 3: a later boot keeps B";
    let s = g.step(name, Instruction::Nothing, &Kill::Never)?;
    expect_booted(&s, name, SlotName::B, &V2)?;
    expect(
        s.markers.health_rc == Some(0),
        &s,
        name,
        "v2's probe should pass again",
    )?;
    expect_env(&s, name, "ORDER", "B A")?;
    expect_env(&s, name, "B_TRY", "0")?;
    Ok(g)
}

/// The rollback scenario, after [`update`].
pub fn rollback(g: &mut Guest) -> Result<(), ScenarioError> {
    let floor = security_version(&V2);
    let name = "rollback 1: v2 installs v3";
    let s = g.step(
        name,
        Instruction::Install(guest_bundle_path(&V3)),
        &Kill::Never,
    )?;
    expect_booted(&s, name, SlotName::B, &V2)?;
    expect(
        s.markers.install_rc == Some(0),
        &s,
        name,
        "the install of v3 should succeed",
    )?;
    expect_env(&s, name, "ORDER", "A B")?;
    expect_env(&s, name, "A_OK", "1")?;
    expect_env(&s, name, "A_TRY", "0")?;

    let name = "rollback 2: GRUB tries v3 once, its probe fails and reboots";
    let s = g.step(name, Instruction::Nothing, &Kill::Never)?;
    expect_booted(&s, name, SlotName::A, &V3)?;
    expect(
        s.markers.health_rebooted && !s.markers.powered_off,
        &s,
        name,
        "the failed probe should reboot per on_failure",
    )?;
    expect_env(&s, name, "A_TRY", "1")?;

    let name = "rollback 3: GRUB skips A and boots v2 in B";
    let s = g.step(name, Instruction::Nothing, &Kill::Never)?;
    expect_booted(&s, name, SlotName::B, &V2)?;
    expect(
        s.markers.health_rc == Some(0),
        &s,
        name,
        "v2's probe should pass",
    )?;
    expect_slot(&s, name, SlotName::A, "bad", |st| {
        matches!(st, SlotState::Bad { .. })
    })?;
    expect_slot(&s, name, SlotName::B, "good", |st| *st == SlotState::Good)?;
    expect(
        s.host.status.security_floor == floor,
        &s,
        name,
        format!(
            "host: the floor should stay {floor}, is {}",
            s.host.status.security_floor
        ),
    )?;
    expect(
        s.host.history.iter().any(|r| {
            r.slot == SlotName::A
                && r.version.as_deref() == Some(V3.version)
                && r.outcome.to_string() == "failed"
        }),
        &s,
        name,
        "host: history should hold the failed probe of 3.0.0",
    )?;
    let status = section(&s.boot.console, "status").unwrap_or_default();
    expect(
        status.contains("rolled back:") && status.contains("3.0.0"),
        &s,
        name,
        "the guest's status should say v3 rolled back",
    )
}

/// What one power cut left.
#[derive(Debug, Clone)]
pub struct CutOutcome {
    /// Whether the cut landed before the install ended.
    pub landed: bool,
    /// What the host could not read from the disk right after the cut (mtools refuses
    /// an ESP whose FAT a cut left inconsistent); `None` when it read it.
    pub host_after_cut: Option<String>,
    /// The slot bascule predicted from the disk after the cut (when the host read it),
    /// and the one GRUB booted.
    pub predicted: Option<SlotName>,
    pub booted: Option<SlotName>,
    /// The version the healthy boot ran.
    pub version: Option<String>,
    /// Power-ons after the cut up to the first healthy one (GRUB's own `reboot`, when
    /// it found no slot to try, ends a power-on).
    pub boots: usize,
    /// What the host could not read after that boot, if anything.
    pub host_after_boot: Option<String>,
}

/// Cuts the power `delay` after the install of v2 began on a fresh factory disk, then
/// boots once. That boot must pass its probe (else a *brick*); when the host could read
/// the disk after the cut, GRUB must boot the slot bascule predicted and the slot must
/// run the version bascule recorded for it (else a *disagreement*): both are errors.
/// A disk the host cannot read is reported in the outcome, not an error: it is the
/// finding this scenario exists for.
pub fn power_cut(world: &World, delay: Duration) -> Result<CutOutcome, ScenarioError> {
    let mut g = Guest::new(world, None, "x86-cut")?;
    let kill = Kill::After {
        marker: "bg-install begin".into(),
        delay,
    };
    let boot = g
        .machine
        .boot(&Instruction::Install(guest_bundle_path(&V2)), "", &kill)
        .map_err(GuestError::from)?;
    let landed = boot.killed && Markers::read(&boot.console).install_rc.is_none();
    let after_cut = g.host.snapshot();
    let name = "the boots after the cut";
    let (after, boots) = boot_until_healthy(&mut g)?;
    let markers = Markers::read(&after.console);
    let after_boot = g.host.snapshot();
    let booted = markers.uboot_slot;
    let version = markers.guest.as_ref().map(|(_, v)| v.clone());
    let predicted = after_cut
        .as_ref()
        .ok()
        .and_then(|h| h.status.next_boot.slot);
    // The first power-on's choice is the one bascule predicted from the disk: compare
    // when the host could read the disk and the healthy boot was that first one.
    if let (Ok(h), 1) = (&after_cut, boots) {
        let step = Step {
            boot: after,
            markers,
            host: h.clone(),
        };
        expect(
            booted == predicted,
            &step,
            name,
            format!("GRUB booted {booted:?}, bascule predicted {predicted:?}"),
        )?;
        let recorded = booted.and_then(|slot| slot_version(h, slot));
        expect(
            version == recorded,
            &step,
            name,
            format!("the slot ran {version:?}, bascule recorded {recorded:?}"),
        )?;
    }
    let host_after_boot = after_boot.err().map(|e| e.to_string());
    world.remove(&g.disk)?;
    Ok(CutOutcome {
        landed,
        host_after_cut: after_cut.err().map(|e| e.to_string()),
        predicted,
        booted,
        version,
        boots,
        host_after_boot,
    })
}

/// Boots with no instruction until a probe passes, at most [`MAX_BOOTS_AFTER_CUT`]
/// times; returns that boot and the number of power-ons. None passing is a brick.
fn boot_until_healthy(g: &mut Guest) -> Result<(Boot, usize), ScenarioError> {
    let mut last = None;
    for n in 1..=MAX_BOOTS_AFTER_CUT {
        let boot = g
            .machine
            .boot(&Instruction::Nothing, "", &Kill::Never)
            .map_err(GuestError::from)?;
        if Markers::read(&boot.console).healthy() {
            return Ok((boot, n));
        }
        last = Some(boot);
    }
    Err(ScenarioError::Expectation {
        step: "the boots after the cut".into(),
        what: format!("a brick: no probe passed in {MAX_BOOTS_AFTER_CUT} boots"),
        console: last.map(|b| b.console).unwrap_or_default(),
    })
}

/// Boots after a cut before it counts as a brick: GRUB's one try per slot, plus its
/// reset-and-reboot when no slot is left, twice over.
pub const MAX_BOOTS_AFTER_CUT: usize = 4;
