//! A power cut of the x86_64 guest, on the FAT ESP that holds `grubenv`: SIGKILL of
//! QEMU a given time into the install's write phase ([`power_cut`]); the next boot must
//! run the slot bascule predicts from the disk, with the version bascule recorded for
//! it, and be healthy (else a brick or a disagreement). What the host could not read
//! (mtools refuses an ESP whose FAT a cut left inconsistent) is reported, not an error.
use std::time::Duration;

use bascule_partitions::SlotName;

use crate::guest::console::{Boot, Kill, Markers};
use crate::guest::machine::Instruction;
use crate::guest::rootfs::V2;
use crate::guest::step::{expect, slot_version, Guest, ScenarioError, Step};
use crate::guest::world::{guest_bundle_path, World};

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
    let boot = g.boot(&Instruction::Install(guest_bundle_path(&V2)), "", &kill)?;
    let landed = boot.killed && Markers::read(&boot.console).install_rc.is_none();
    let after_cut = g.read_host();
    let name = "the boots after the cut";
    let (after, boots) = boot_until_healthy(&mut g)?;
    let markers = Markers::read(&after.console);
    let after_boot = g.read_host();
    let booted = markers.bootloader_slot;
    let version = markers.guest.as_ref().map(|(_, v)| v.clone());
    let predicted = after_cut
        .as_ref()
        .ok()
        .and_then(|h| h.status.next_boot.slot);
    // The first power-on's choice is the one bascule predicted from the disk: compare
    // when the host could read the disk and the healthy boot was that first one.
    if let (Ok(h), 1) = (&after_cut, boots) {
        let step = Step {
            platform: g.platform,
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
        let boot = g.boot(&Instruction::Nothing, "", &Kill::Never)?;
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
