//! The arm64 guest end to end: real U-Boot, a Debian kernel and a static aarch64
//! bascule update the guest from v1 to v2 (confirmed), then v3 fails its probe and
//! rolls back to v2 (`src/guest/scenario.rs`). Needs `scripts/deps --test`; a
//! missing tool or package fails the test.
use bascule_qemu::guest::platform::Platform;
use bascule_qemu::guest::scenario::{rollback, update};
use bascule_qemu::guest::world::World;

#[test]
fn update_then_rollback_in_the_guest() {
    let world = World::build(Platform::Arm64).unwrap_or_else(|e| panic!("building the guest: {e}"));
    println!("guest parts built in {:.1?}", world.build_time);
    let mut g = update(&world).unwrap_or_else(|e| panic!("{e}"));
    rollback(&mut g).unwrap_or_else(|e| panic!("{e}"));
    for (step, boot, verdict) in &g.timings {
        println!("{boot:>8.1?} boot, {verdict:>10.1?} to the health verdict: {step}");
    }
    world.remove(&g.disk).unwrap();
}
