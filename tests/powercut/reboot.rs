//! The reboot after a cut: the bootloader model boots the board from what survived,
//! with no confirmation ever, and every invariant of the campaign (tests/power_cut.rs's
//! module docs) is checked on the env, on the security floor, on the health history,
//! and on every slot the chain boots or could boot.
use bascule::health::history::{History, Outcome, Record};
use bascule::slot::{BootDecision, BootState};
use bascule_partitions::SlotName;

use bascule::slot::SlotState;
use bascule_hal::EnvVars;

use super::{
    fixture, floor_of, probe_record, slot_device, version_var, EnvBackend, Image, ATTEMPTS, DATA,
    ENV,
};

/// The floor after the cut reads (never garbage), is not below `start` (never lost),
/// and is above it only at the security version of a slot the env shows confirmed
/// (never raised before the confirmation).
fn check_floor(
    backend: EnvBackend,
    durable: &[Image],
    vars: &EnvVars,
    start: u32,
) -> Result<(), String> {
    let floor = floor_of(durable).map_err(|e| format!("floor after the cut: {e}"))?;
    if floor < start {
        return Err(format!(
            "security floor lost: {floor} after the cut, {start} before"
        ));
    }
    if floor == start {
        return Ok(());
    }
    let st = BootState::read(backend.scheme(), vars).map_err(|e| e.to_string())?;
    let confirmed = SlotName::ALL.iter().any(|&s| {
        let info = st.slot(s);
        info.state == SlotState::Good && info.security_version == Some(floor)
    });
    if confirmed {
        return Ok(());
    }
    Err(format!(
        "security floor raised to {floor} (from {start}) but no slot holding security version \
         {floor} is confirmed: raised before the confirmation"
    ))
}

/// Checks that a slot the bootloader boots holds the image its env version names.
fn check_booted(
    slot: SlotName,
    vars: &bascule_hal::EnvVars,
    durable: &[Image],
) -> Result<String, String> {
    let version = vars.get_str(&version_var(slot)).ok_or_else(|| {
        format!("bootloader boots slot {slot} but the env records no version for it")
    })?;
    let release = fixture().release(version).ok_or_else(|| {
        format!("bootloader boots slot {slot}, env says unknown version {version:?}")
    })?;
    if !release.is_in(durable[slot_device(slot)].bytes()) {
        return Err(format!(
            "bootloader boots slot {slot}, env says {version}, but the slot does not hold that image (SHA-256 differs)"
        ));
    }
    Ok(format!("{slot} v{version}"))
}

/// The health records in a board's data slot directory; an error when they do not read.
fn history_of(images: &[Image]) -> Result<Vec<Record>, String> {
    let Some(Image::Files(files)) = images.get(DATA) else {
        return Err("the board has no data slot directory".into());
    };
    History::over(files.clone())
        .read()
        .map(|read| read.records)
        .map_err(|e| format!("health history: {e}"))
}

/// The health history after the cut reads (never an error), keeps every record it
/// held before, and adds only whole records the scenarios write (never a half one); a
/// confirmation recorded during the scenario is one the env kept (the record is
/// appended after the confirm).
fn check_history(durable: &[Image], start: &[Image], after_cut: &BootState) -> Result<(), String> {
    let before = history_of(start).expect("the start board's history");
    let after = history_of(durable).map_err(|e| format!("after the cut: {e}"))?;
    if !after.starts_with(&before) {
        return Err(format!(
            "health history lost records: {} after the cut, {} before",
            after.len(),
            before.len()
        ));
    }
    let written = [
        probe_record(SlotName::A, Outcome::Failed),
        probe_record(SlotName::B, Outcome::Confirmed),
    ];
    for record in &after[before.len()..] {
        if !written.contains(record) {
            return Err(format!(
                "health history holds a record never written: {record:?}"
            ));
        }
        let kept = after_cut.slot(record.slot).state == SlotState::Good;
        if record.outcome == Outcome::Confirmed && !kept {
            return Err(format!(
                "health history records slot {} confirmed, but the env does not",
                record.slot
            ));
        }
    }
    Ok(())
}

/// Reboots the board from `durable` bytes and checks every invariant of the module
/// docs of tests/power_cut.rs. Returns what the first boot ran ("B v2.0.0").
pub fn check_reboot(
    backend: EnvBackend,
    durable: &[Image],
    confirmed: (SlotName, &str),
    start: &[Image],
) -> Result<String, String> {
    let floor_at_start = floor_of(start).expect("the start board's floor");
    let scheme = backend.scheme();
    let mut env = backend
        .open_image(&durable[ENV])
        .map_err(|e| format!("env does not open after the cut: {e}"))?;
    let mut vars = env
        .load()
        .map_err(|e| format!("env does not load after the cut: {e}"))?;
    let after_cut = BootState::read(scheme, &vars)
        .map_err(|e| format!("env loads but the scheme cannot read it: {e}"))?;
    let (cslot, cversion) = confirmed;
    let release = fixture().release(cversion).expect("confirmed release");
    if !release.is_in(durable[slot_device(cslot)].bytes()) {
        return Err(format!(
            "previously confirmed slot {cslot} no longer holds v{cversion}"
        ));
    }
    if vars.get_str(&version_var(cslot)) != Some(cversion) {
        return Err(format!(
            "env no longer says slot {cslot} holds v{cversion}: {:?}",
            vars.get(&version_var(cslot))
        ));
    }
    check_floor(backend, durable, &vars, floor_at_start)?;
    check_history(durable, start, &after_cut)?;
    let vars_after_cut = vars.clone();
    // Boot with no confirmation ever: the worst case for a new image.
    let mut first = None;
    let mut confirmed_boots = false;
    let mut last_boot = None;
    let mut resets_in_a_row = 0;
    // RAUC's U-Boot script resets every counter when no slot is left, then the board
    // resets and boots again: one such boot is allowed, a second in a row is a brick.
    // RAUC's grub.cfg does the same with every `<x>_TRY` (`RaucGrub::boot`); as each
    // slot has one try there, every other boot of an unconfirmed chain is such a
    // reset, which is the scheme working as documented, not a brick.
    // The ChromeOS scheme documents that `boot` with no bootable slot enters recovery
    // and changes nothing, so the next power-on decides the same: there the first
    // such boot is already a brick.
    let resets_allowed = usize::from(backend.no_slot_resets_counters());
    for n in 0..2 * usize::from(ATTEMPTS) + 3 {
        let decision = scheme.boot(&mut vars);
        env.commit(&vars)
            .map_err(|e| format!("boot {n}: bootloader saveenv failed: {e}"))?;
        match decision {
            BootDecision::NoSlotResetCounters => {
                resets_in_a_row += 1;
                if resets_in_a_row > resets_allowed {
                    return Err(format!(
                        "BRICK: boot {n}: no bootable slot{}",
                        if resets_allowed > 0 {
                            " even after the counter reset"
                        } else {
                            " (the firmware enters recovery mode)"
                        }
                    ));
                }
            }
            BootDecision::Boot(slot) => {
                resets_in_a_row = 0;
                let ran =
                    check_booted(slot, &vars, durable).map_err(|e| format!("boot {n}: {e}"))?;
                first.get_or_insert(ran);
                confirmed_boots |= slot == cslot;
                last_boot = Some(slot);
            }
        }
    }
    // The ChromeOS scheme documents that the firmware takes no try from a successful
    // slot: once bascule confirmed the new slot (successful=1, after its health check
    // passed), it boots on every power-on and the previous slot is never tried again.
    // There the chain must settle on a successful slot: the previously confirmed one,
    // or one confirmed during the scenario. RAUC's U-Boot and GRUB schemes take a try
    // from every slot (GRUB sets `TRY=1` on a confirmed slot too), so there the
    // previously confirmed slot must boot within the chain.
    let settled_on_successful = backend == EnvBackend::Gpt
        && last_boot.is_some_and(|s| vars.get_str(&format!("GPT_{s}_SUCCESSFUL")) == Some("1"));
    if !confirmed_boots && !settled_on_successful {
        return Err(format!(
            "previously confirmed slot {cslot} (v{cversion}) never boots when nothing is confirmed"
        ));
    }
    // Slots in the boot order right after the cut (RAUC's counter reset makes any of
    // them bootable again), whether or not this chain reached them: under ChromeOS a
    // successful slot never loses its priority, so the slot behind it only boots when
    // it fails to start, which this model never does.
    // Under GRUB a slot stays in `ORDER` when it is marked bad, and only `<x>_OK=1`
    // makes it bootable again (`EnvBackend::can_boot_later`).
    for slot in SlotName::ALL {
        if backend.can_boot_later(&vars_after_cut, &after_cut.view.order, slot) {
            check_booted(slot, &vars_after_cut, durable)
                .map_err(|e| format!("after the cut (slot {slot} is in the boot order): {e}"))?;
        }
    }
    first.ok_or_else(|| "BRICK: nothing ever boots".to_string())
}
