//! The update and rollback scenarios, the same on both platforms, asserted on the
//! serial console (the bootloader's slot marker, the guest's `bg-` markers) and,
//! after every boot, on the disk from the host (the bootloader's env as its own tool
//! lists it, `bascule status` and `history`). What the bootloader's env must hold,
//! and how many tries a new slot gets, is the [`Platform`]'s.
//!
//! - [`update`]: v1 installs v2 in the guest; the next boot runs B through the real
//!   bootloader, the probe passes and confirms it (floor raised to v2's security
//!   version); a later boot keeps B, its tries re-armed.
//! - [`rollback`] (after `update`): v2 installs v3, whose self-test fails; each boot
//!   of A fails its probe and reboots (`on_failure = "reboot"`) until the bootloader
//!   has spent A's tries (U-Boot's 3, GRUB's 1) and boots B again; `bascule status`
//!   and `bascule history` in the guest say why, and the floor did not move.
//!
//! The power cuts are [`super::power_cuts`] (arm64) and [`super::x86::power_cut`].
use bascule::slot::state::SlotState;
use bascule_partitions::SlotName;

use super::console::section;
use super::machine::Instruction;
use super::platform::Platform;
use super::rootfs::{V1, V2, V3};
use super::step::{
    expect, expect_booted, expect_env, expect_floor, expect_slot, Guest, ScenarioError, Step,
};
use super::world::{guest_bundle_path, security_version, World};

/// Checks that the env tool lists each of `vars`.
fn expect_vars(step: &Step, name: &str, vars: &[(String, String)]) -> Result<(), ScenarioError> {
    vars.iter()
        .try_for_each(|(var, value)| expect_env(step, name, var, value))
}

/// Checks that bascule on the host reads `slot` pending with all its tries.
fn expect_pending(step: &Step, name: &str, slot: SlotName) -> Result<(), ScenarioError> {
    let pending = SlotState::Pending {
        tries_left: step.platform.tries(),
    };
    expect_slot(step, name, slot, &pending.to_string(), |st| *st == pending)
}

/// The name of a guest's disk on `platform`.
fn disk_name(platform: Platform, scenario: &str) -> String {
    match platform {
        Platform::Arm64 => scenario.to_string(),
        Platform::X86_64 => format!("x86-{scenario}"),
    }
}

/// Boots with no instruction: the bootloader must run v2 in B, whose probe passes.
fn v2_boots_in_b(g: &mut Guest, name: &str) -> Result<Step, ScenarioError> {
    let s = g.step(name, Instruction::Nothing)?;
    expect_booted(&s, name, SlotName::B, &V2)?;
    let pass = s.markers.health_rc == Some(0);
    expect(pass, &s, name, "v2's probe should pass")?;
    Ok(s)
}

/// The update scenario on a fresh factory disk; returns the guest (v2 confirmed in B).
pub fn update(world: &World) -> Result<Guest, ScenarioError> {
    let p = world.platform;
    let mut g = Guest::new(world, None, &disk_name(p, "update"))?;
    let name = "update 1: v1 installs v2";
    let s = g.step(name, Instruction::Install(guest_bundle_path(&V2)))?;
    expect_booted(&s, name, SlotName::A, &V1)?;
    let m = &s.markers;
    expect(m.health_rc == Some(0), &s, name, "v1's probe should pass")?;
    let installed = m.install_rc == Some(0);
    expect(installed, &s, name, "the install of v2 should succeed")?;
    expect(
        m.powered_off,
        &s,
        name,
        "the init should reach its power-off",
    )?;
    expect_pending(&s, name, SlotName::B)?;
    expect_vars(&s, name, &p.env_installed(SlotName::B))?;
    expect(
        s.host.status.next_boot.slot == Some(SlotName::B),
        &s,
        name,
        "host: bascule should predict B next",
    )?;

    let name = &format!(
        "update 2: {} boots v2 in B and the probe confirms it",
        p.bootloader()
    );
    let s = v2_boots_in_b(&mut g, name)?;
    expect_slot(&s, name, SlotName::B, "good", |st| *st == SlotState::Good)?;
    expect_floor(&s, name, security_version(&V2))?;
    expect_vars(&s, name, &[p.env_armed(SlotName::B)])?;
    let status = section(&s.boot.console, "status").unwrap_or_default();
    expect(
        status.contains("slot B:      good") && status.contains("version 2.0.0"),
        &s,
        name,
        "the guest's status should show B good with 2.0.0",
    )?;

    let name = "update 3: a later boot keeps B";
    let s = v2_boots_in_b(&mut g, name)?;
    expect_slot(&s, name, SlotName::B, "good", |st| *st == SlotState::Good)?;
    let vars = [p.env_order(SlotName::B), p.env_armed(SlotName::B)];
    expect_vars(&s, name, &vars)?;
    Ok(g)
}

/// The rollback scenario, on the guest `update` left (v2 confirmed in B).
pub fn rollback(g: &mut Guest) -> Result<(), ScenarioError> {
    let p = g.platform;
    let floor = security_version(&V2);
    let name = "rollback 1: v2 installs v3";
    let s = g.step(name, Instruction::Install(guest_bundle_path(&V3)))?;
    expect_booted(&s, name, SlotName::B, &V2)?;
    let installed = s.markers.install_rc == Some(0);
    expect(installed, &s, name, "the install of v3 should succeed")?;
    expect_pending(&s, name, SlotName::A)?;
    expect_vars(&s, name, &p.env_installed(SlotName::A))?;
    for attempt in 1..=p.tries() {
        try_fails(g, attempt, floor)?;
    }
    fallback(g, floor)
}

/// Try `attempt` of v3 in A: its probe fails and reboots, the floor stays `floor`.
fn try_fails(g: &mut Guest, attempt: u8, floor: u32) -> Result<(), ScenarioError> {
    let name = &format!(
        "rollback {}: v3's try {attempt} fails its probe",
        attempt + 1
    );
    let s = g.step(name, Instruction::Nothing)?;
    expect_booted(&s, name, SlotName::A, &V3)?;
    expect(
        s.markers.health_rebooted && !s.markers.powered_off,
        &s,
        name,
        "the failed probe should reboot per on_failure",
    )?;
    expect_vars(&s, name, &[g.platform.env_tried(SlotName::A, attempt)])?;
    expect_floor(&s, name, floor)
}

/// The boot after A's last try: v2 in B, A bad, and both the host and the guest say
/// why.
fn fallback(g: &mut Guest, floor: u32) -> Result<(), ScenarioError> {
    let p = g.platform;
    let name = &format!(
        "rollback {}: {} falls back to v2 in B",
        p.tries() + 2,
        p.bootloader()
    );
    let s = v2_boots_in_b(g, name)?;
    expect_slot(&s, name, SlotName::A, "bad", |st| {
        matches!(st, SlotState::Bad { .. })
    })?;
    expect_slot(&s, name, SlotName::B, "good", |st| *st == SlotState::Good)?;
    expect_floor(&s, name, floor)?;
    let failed = s
        .host
        .history
        .iter()
        .filter(|r| {
            r.slot == SlotName::A
                && r.version.as_deref() == Some(V3.version)
                && r.outcome.to_string() == "failed"
        })
        .count();
    expect(
        failed == usize::from(p.tries()),
        &s,
        name,
        format!(
            "host: history should hold {} failed probes of 3.0.0, holds {failed}",
            p.tries()
        ),
    )?;
    expect(
        s.host
            .status
            .rollbacks
            .iter()
            .any(|r| r.version.as_deref() == Some(V3.version)),
        &s,
        name,
        "host: status should say why A rolled back",
    )?;
    expect_guest_says_v3_rolled_back(&s, name)
}

/// The guest's own `bascule status` and `history` of the fallback boot.
fn expect_guest_says_v3_rolled_back(s: &Step, name: &str) -> Result<(), ScenarioError> {
    let status = section(&s.boot.console, "status").unwrap_or_default();
    expect(
        status.contains("rolled back:") && status.contains("3.0.0"),
        s,
        name,
        "the guest's status should say v3 rolled back and why",
    )?;
    let history = section(&s.boot.console, "history").unwrap_or_default();
    expect(
        history.contains("v3.0.0")
            && history.contains("failed")
            && history.contains("cannot start its service"),
        s,
        name,
        "the guest's history should list v3's failed probes with the self-test's output",
    )
}
