//! The x86_64 UEFI guest end to end: OVMF, the real GRUB running the shipped
//! `grub.cfg`, a Debian cloud-amd64 kernel and a static x86_64 bascule update the guest
//! from v1 to v2 (confirmed), then v3 fails its probe and GRUB falls back to v2
//! (`src/guest/scenario.rs`); then two power cuts during an install
//! (`src/guest/x86/power_cut.rs`). Needs `scripts/deps --test`; a missing tool or
//! package fails the test.
use std::time::{Duration, Instant};

use bascule_qemu::guest::platform::Platform;
use bascule_qemu::guest::scenario::{rollback, update};
use bascule_qemu::guest::world::World;
use bascule_qemu::guest::x86::power_cut::power_cut;

#[test]
fn x86_update_then_rollback_in_the_guest() {
    let world =
        World::build(Platform::X86_64).unwrap_or_else(|e| panic!("building the x86_64 guest: {e}"));
    println!(
        "x86_64 guest parts built in {:.1?} (cross build {:.1?})",
        world.build_time, world.cross_build_time
    );
    let t = Instant::now();
    let mut g = update(&world).unwrap_or_else(|e| panic!("{e}"));
    println!("update scenario: {:.1?}", t.elapsed());
    let t = Instant::now();
    rollback(&mut g).unwrap_or_else(|e| panic!("{e}"));
    println!("rollback scenario: {:.1?}", t.elapsed());
    for (step, boot, verdict) in &g.timings {
        println!("{boot:>8.1?} boot, {verdict:>10.1?} to the health verdict: {step}");
    }
    world.remove(&g.disk).unwrap();
    cuts_leave_a_readable_esp_and_the_predicted_slot(&world);
}

/// Power cuts during an install, on the FAT ESP that holds `grubenv`: the host reads
/// the ESP right after the cut (mtools refuses an inconsistent FAT), and the first
/// power-on boots the slot bascule predicted from it and passes its probe. Before
/// `DirFiles::sync_dir` synced a FAT file system whole, every cut lost bascule's last
/// env commits: the ESP was unreadable and GRUB found no slot on the first power-on.
/// Run in sequence after the scenarios: a cut's window is timed, two guests at once
/// on two cores would blur it. The install of v2 took 1.7-2.0 s after `bg-install
/// begin` on an idle 2-core machine (cuts at 2.0 s and later found it finished), so
/// both delays stay well inside it.
fn cuts_leave_a_readable_esp_and_the_predicted_slot(world: &World) {
    for delay in [0.2, 0.6] {
        let c = power_cut(world, Duration::from_secs_f64(delay)).unwrap_or_else(|e| panic!("{e}"));
        println!("cut {delay}s: {c:?}");
        assert!(
            c.landed,
            "the cut {delay}s in landed after the install ended"
        );
        assert_eq!(c.host_after_cut, None, "the ESP after the cut {delay}s in");
        assert_eq!(
            c.host_after_boot, None,
            "the ESP after the boot that followed"
        );
        assert_eq!(
            c.boots, 1,
            "power-ons after the cut {delay}s in up to a healthy one"
        );
        assert_eq!(
            c.booted, c.predicted,
            "GRUB's slot against bascule's prediction"
        );
    }
}
