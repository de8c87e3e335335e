//! The x86_64 UEFI guest end to end: OVMF, the real GRUB running the shipped
//! `grub.cfg`, a Debian cloud-amd64 kernel and a static x86_64 bascule update the guest
//! from v1 to v2 (confirmed), then v3 fails its probe and GRUB falls back to v2
//! (`src/guest/x86/scenario.rs`). Needs `scripts/deps --test`; a missing tool or
//! package fails the test.
use std::time::Instant;

use bascule_qemu::guest::x86::scenario::{rollback, update};
use bascule_qemu::guest::x86::world::World;

#[test]
fn x86_update_then_rollback_in_the_guest() {
    let world = World::build().unwrap_or_else(|e| panic!("building the x86_64 guest: {e}"));
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
}
