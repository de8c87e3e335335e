//! Power cuts of the arm64 guest (`src/guest/power_cuts.rs`, `PowerCuts`): QEMU is
//! SIGKILLed at seeded random moments of the install's write phase, of the probe's
//! env commit and of U-Boot's own env save (torn between two writes); the following boots must reach a good slot through the real U-Boot,
//! with U-Boot, `fw_printenv` and bascule agreeing. `BASCULE_QEMU_CUTS` (default 10)
//! and `BASCULE_QEMU_SEED` (default 1) change the campaign.
use bascule_qemu::guest::platform::Platform;
use bascule_qemu::guest::power_cuts::PowerCuts;
use bascule_qemu::guest::world::World;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

#[test]
fn power_cuts_in_the_guest_never_brick_or_disagree() {
    let cuts = env_or("BASCULE_QEMU_CUTS", 10) as usize;
    let seed = env_or("BASCULE_QEMU_SEED", 1);
    let world = World::build(Platform::Arm64).unwrap_or_else(|e| panic!("building the guest: {e}"));
    let mut campaign = PowerCuts::new(&world, seed).unwrap_or_else(|e| panic!("{e}"));
    let [install, commit, save] = campaign.windows();
    println!(
        "seed {seed}; windows: install write {install:.1?}, probe commit {commit:.1?}, \
         U-Boot's env save {save:.1?}"
    );
    let counts = campaign
        .run(cuts, |i, c| println!("cut {i}: {c}"))
        .unwrap_or_else(|e| panic!("{e}"));
    for f in &campaign.findings {
        println!("finding: {f}");
    }
    println!("{counts} (missed {})", counts.missed);
    assert_eq!(
        (counts.bricks, counts.disagreements),
        (0, 0),
        "{:#?}",
        campaign.findings
    );
    assert_eq!(counts.kills, cuts, "cuts that landed in their window");
}
