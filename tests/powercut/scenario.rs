//! The update scenarios the campaign cuts: their steps (install, boot, confirm, run
//! through the real engine and stores), the board each starts from, and the slot and
//! version that must survive any cut of them.
use bascule::slot::{state, BootDecision};
use bascule_partitions::SlotName;

use bascule::health::history::Outcome;

use super::{
    activate, boot, confirm, env_store, factory_board, fixture, install, install_no_activate,
    record_probe, EnvBackend, Image, PowerRail, DATA,
};

/// The steps of a scenario, run on a board's rail; an error ends the run (a power
/// cut, or a step that went wrong).
pub type Steps = fn(&PowerRail, EnvBackend) -> Result<(), String>;

/// A scenario's own check of the rebooted board's durable images, after the common
/// ones (`check_reboot`).
pub type AfterCut = fn(EnvBackend, &[Image]) -> Result<(), String>;

pub struct Scenario {
    pub name: String,
    pub backend: EnvBackend,
    /// Durable image of each rail member when the scenario starts.
    pub start: Vec<Image>,
    /// The slot confirmed before the scenario, and its version.
    pub confirmed: (SlotName, &'static str),
    pub steps: Steps,
    pub after_cut: Option<AfterCut>,
}

fn expect_boot(rail: &PowerRail, backend: EnvBackend, want: SlotName) -> Result<(), String> {
    match boot(rail, backend)? {
        BootDecision::Boot(slot) if slot == want => Ok(()),
        other => Err(format!("bootloader chose {other:?}, expected slot {want}")),
    }
}

/// Install v2 into B, boot it, health passes, confirm.
pub fn update_and_confirm(rail: &PowerRail, backend: EnvBackend) -> Result<(), String> {
    install(rail, backend, &fixture().releases[1], SlotName::A)?;
    expect_boot(rail, backend, SlotName::B)?;
    confirm(rail, backend, SlotName::B)
}

/// Install v3 into A, its health fails (and is recorded) on every try, fall back to
/// B, confirm B.
/// RAUC's GRUB scheme gives the pending slot one try (`RaucGrub::boot` saves
/// `A_TRY=1` and nothing resets it but a confirm or a boot with no slot left), so
/// there the second boot already falls back to B; the other schemes count down
/// `ATTEMPTS`.
pub fn update_and_roll_back(rail: &PowerRail, backend: EnvBackend) -> Result<(), String> {
    install(rail, backend, &fixture().releases[2], SlotName::B)?;
    for _ in 0..backend.pending_tries() {
        expect_boot(rail, backend, SlotName::A)?;
        record_probe(rail, SlotName::A, Outcome::Failed)?;
    }
    expect_boot(rail, backend, SlotName::B)?;
    confirm(rail, backend, SlotName::B)
}

/// Install v2 into B with `--no-activate` (written, verified, its record in the data
/// slot's `state_dir`, staged in the env, unbootable), `activate` it (read back, one
/// env commit), boot B, health passes, confirm.
pub fn stage_activate_and_confirm(rail: &PowerRail, backend: EnvBackend) -> Result<(), String> {
    let v2 = &fixture().releases[1];
    install_no_activate(rail, backend, v2, SlotName::A, rail.files(DATA))?;
    activate(rail, backend, SlotName::A)?;
    expect_boot(rail, backend, SlotName::B)?;
    confirm(rail, backend, SlotName::B)
}

/// bascule and the boot scheme agree on a staged slot after any cut: when the env
/// names a slot staged, the slot running then (the other one) boots, `activate` on the
/// rebooted board succeeds (the record is whole, verifies, matches the env, and the
/// slot holds what it describes) and the next boot tries the staged slot.
pub fn staged_slot_activates(backend: EnvBackend, durable: &[Image]) -> Result<(), String> {
    let rail = new_rail(backend, durable);
    let vars = env_store(&rail, backend)?
        .load()
        .map_err(|e| format!("env load: {e}"))?;
    let Some(slot) = state::staged_slot(&vars) else {
        return Ok(());
    };
    let staged = |e: String| format!("the env shows slot {slot} staged, but {e}");
    expect_boot(&rail, backend, slot.other()).map_err(staged)?;
    activate(&rail, backend, slot.other()).map_err(staged)?;
    expect_boot(&rail, backend, slot).map_err(staged)
}

/// A fresh, unarmed board of `backend` whose members start as `start`.
pub fn new_rail(backend: EnvBackend, start: &[Image]) -> PowerRail {
    let named: Vec<(&str, Image)> = backend
        .device_names()
        .iter()
        .copied()
        .zip(start.iter().cloned())
        .collect();
    PowerRail::new(&named)
}

/// The board at the end of a clean run of `steps` from `start`.
pub fn end_state(backend: EnvBackend, start: &[Image], steps: Steps) -> Vec<Image> {
    let rail = new_rail(backend, start);
    steps(&rail, backend).expect("clean run");
    rail.durable()
}

/// The three scenarios on `backend`.
pub fn scenarios(backend: EnvBackend) -> [Scenario; 3] {
    let factory = factory_board(backend);
    let confirmed_v2 = end_state(backend, &factory, update_and_confirm);
    [
        Scenario {
            name: "scenario 1 (install v2 into B, boot, health pass, confirm)".into(),
            backend,
            start: factory,
            confirmed: (SlotName::A, "1.0.0"),
            steps: update_and_confirm,
            after_cut: None,
        },
        Scenario {
            name: format!(
                "scenario 2 (install v3 into A, boot, health fail x{}, fall back to B, confirm B)",
                backend.pending_tries()
            ),
            backend,
            start: confirmed_v2,
            confirmed: (SlotName::B, "2.0.0"),
            steps: update_and_roll_back,
            after_cut: None,
        },
        Scenario {
            name: "scenario 3 (install v2 into B --no-activate, activate, boot, health pass, \
                   confirm)"
                .into(),
            backend,
            start: factory_board(backend),
            confirmed: (SlotName::A, "1.0.0"),
            steps: stage_activate_and_confirm,
            after_cut: Some(staged_slot_activates),
        },
    ]
}
