//! Real GRUB 2.06 on OVMF runs the shipped `bootloader/grub/grub.cfg` over the bounded
//! GRUB corpus (every hostile env and 8 random-walk states) and must agree with
//! bascule's model on every boot. Fails, never skips, when a tool is missing (install
//! them with `scripts/deps`). The whole corpus: `cargo run --release -p bascule-qemu
//! --bin grub_differential`.
use std::time::Instant;

use bascule_partitions::SlotName;
use bascule_qemu::grub::{GrubChoice, GrubRig};
use bascule_qemu::{grub_corpus, grub_diff};

const WALKS: usize = 8;

fn shipped_cfg() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../bootloader/grub/grub.cfg");
    std::fs::read_to_string(path).expect("read the shipped grub.cfg")
}

#[test]
fn real_grub_agrees_with_the_model_on_the_bounded_corpus() {
    let rig = GrubRig::new(&shipped_cfg()).expect("GRUB rig (run scripts/deps)");
    let start = Instant::now();
    let cases = grub_corpus::bounded(WALKS);
    let mut unreadable = Vec::new();
    let report = grub_diff::run(&rig, &cases, grub_diff::jobs(), |name, choices| {
        eprintln!("{name}: {choices:?}");
        if name.starts_with("main-") {
            unreadable.push((name.to_string(), choices.to_vec()));
        }
    })
    .expect("GRUB differential run");
    for d in &report.disagreements {
        eprintln!("DISAGREE {d}");
    }
    for f in &report.flagged {
        eprintln!("FLAGGED {f}");
    }
    eprintln!("{} in {:.0?}", report.summary(), start.elapsed());
    // Defect 2: an empty, corrupt or missing grubenv boots the confirmed slot A from
    // grubenv.good (never the pending B), or waits at the menu: never a reboot loop.
    for (name, choices) in &unreadable {
        assert!(!choices.contains(&GrubChoice::Reset), "{name}: {choices:?}");
        if name.ends_with("-b-pending") {
            assert_eq!(choices, &[GrubChoice::Boot(SlotName::A)], "{name}");
        }
    }
    assert_eq!(unreadable.len(), 5);
    // The one hostile env bascule cannot predict (a repeated name) it must flag.
    assert_eq!(report.flagged.len(), 1, "{:?}", report.flagged);
    assert!(report.disagreements.is_empty(), "{}", report.summary());
}
