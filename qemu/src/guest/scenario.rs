//! The scenarios: what the guest must do, asserted on its serial console and, after
//! every boot, on the disk from the host (`fw_printenv` and `bascule status`).
//!
//! - [`update`]: v1 installs v2 in the guest; the next boot runs B through the real
//!   U-Boot, the probe passes and confirms it (floor raised to v2's security
//!   version); a later boot keeps B, the probe re-arming its counter.
//! - [`rollback`] (after `update`): v2 installs v3, whose self-test fails; each boot
//!   of A fails its probe and reboots (`on_failure = "reboot"`) until U-Boot has spent
//!   A's tries and boots B again; `bascule status` and `bascule history` in the guest
//!   say why, and the floor did not move.
//! - [`PowerCuts`]: SIGKILL of QEMU at a seeded random moment in the install's write
//!   window or in the probe's env commit window (widened by the test-build pause
//!   point); the next boots must reach a good slot through the real U-Boot (else a
//!   *brick*), and U-Boot must boot the slot bascule's model predicts from the disk,
//!   `fw_printenv` must read the env bascule reads, and the slot must run the version
//!   bascule recorded for it (else a *disagreement*).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bascule::slot::state::SlotState;
use bascule_partitions::SlotName;

use super::config::ATTEMPTS;
use super::error::GuestError;
use super::host::{HostSnapshot, HostView};
use super::machine::{section, Boot, Instruction, Kill, Machine, Markers};
use super::rootfs::{Release, V1, V2, V3};
use super::world::{guest_bundle_path, security_version, World};

/// A scenario that did not go as stated.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    World(#[from] GuestError),
    #[error("{step}: {what}\n---- console of that boot ----\n{console}")]
    Expectation {
        step: String,
        what: String,
        console: String,
    },
    #[error("{step}: {what}")]
    Host { step: String, what: String },
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

    /// Boots once (no cut) and reads the disk from the host.
    pub fn step(&mut self, name: &str, instruction: Instruction) -> Result<Step, ScenarioError> {
        self.step_with(name, &instruction, "", &Kill::Never)
    }

    fn step_with(
        &mut self,
        name: &str,
        instruction: &Instruction,
        pause: &str,
        kill: &Kill,
    ) -> Result<Step, ScenarioError> {
        let boot = self
            .machine
            .boot(instruction, pause, kill)
            .map_err(GuestError::from)?;
        self.timings
            .push((name.to_string(), boot.elapsed, boot.to_health_verdict));
        let markers = Markers::read(&boot.console);
        let host = self.snapshot(name)?;
        Ok(Step {
            boot,
            markers,
            host,
        })
    }

    /// The host's view of the disk, and whether `fw_printenv` agrees with bascule.
    pub fn snapshot(&self, step: &str) -> Result<HostSnapshot, ScenarioError> {
        self.host.snapshot().map_err(|e| ScenarioError::Host {
            step: step.into(),
            what: e.to_string(),
        })
    }
}

/// Checks `cond`, or fails naming the step, what was expected and the console.
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

/// Differences between `fw_printenv` and bascule over bascule's and RAUC's variables.
pub fn env_disagreement(host: &HostSnapshot) -> Option<String> {
    let ours = |name: &str| name.starts_with("BOOT_") || name.starts_with("BASCULE_");
    let fw: BTreeMap<&str, &str> = host
        .env
        .iter()
        .filter(|(k, _)| ours(k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let bascule: BTreeMap<String, String> = host
        .status
        .env
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k.as_ref()).into_owned(),
                String::from_utf8_lossy(v.as_ref()).into_owned(),
            )
        })
        .filter(|(k, _)| ours(k))
        .collect();
    let bascule: BTreeMap<&str, &str> = bascule
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    (fw != bascule).then(|| format!("fw_printenv reads {fw:?}, bascule reads {bascule:?}"))
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

fn fw(host: &HostSnapshot, name: &str) -> String {
    host.env.get(name).cloned().unwrap_or_default()
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
        format!("U-Boot should boot slot {slot}, chose {:?}", m.uboot_slot),
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
    )?;
    expect(
        env_disagreement(&step.host).is_none(),
        step,
        name,
        env_disagreement(&step.host).unwrap_or_default(),
    )
}

/// The update scenario on a fresh factory disk; returns the guest (v2 confirmed in B).
pub fn update(world: &World) -> Result<Guest, ScenarioError> {
    let mut g = Guest::new(world, None, "update")?;
    let name = "update 1: v1 installs v2";
    let s = g.step(name, Instruction::Install(guest_bundle_path(&V2)))?;
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
    let pending = SlotState::Pending {
        tries_left: ATTEMPTS,
    };
    expect(
        slot_state(&s.host, SlotName::B) == pending,
        &s,
        name,
        format!(
            "host: B should be pending with {ATTEMPTS} tries, is {}",
            slot_state(&s.host, SlotName::B)
        ),
    )?;
    expect(
        fw(&s.host, "BOOT_ORDER") == "B A",
        &s,
        name,
        format!(
            "fw_printenv: BOOT_ORDER should be \"B A\", is {:?}",
            fw(&s.host, "BOOT_ORDER")
        ),
    )?;
    expect(
        s.host.status.next_boot.slot == Some(SlotName::B),
        &s,
        name,
        "host: bascule should predict B next",
    )?;

    let name = "update 2: the reboot runs v2 in B and confirms it";
    let s = g.step(name, Instruction::Nothing)?;
    expect_booted(&s, name, SlotName::B, &V2)?;
    expect(
        s.markers.health_rc == Some(0),
        &s,
        name,
        "v2's probe should pass",
    )?;
    expect(
        slot_state(&s.host, SlotName::B) == SlotState::Good,
        &s,
        name,
        format!(
            "host: B should be good, is {}",
            slot_state(&s.host, SlotName::B)
        ),
    )?;
    expect(
        s.host.status.security_floor == security_version(&V2),
        &s,
        name,
        format!(
            "host: the floor should be v2's {}, is {}",
            security_version(&V2),
            s.host.status.security_floor
        ),
    )?;
    expect(
        fw(&s.host, "BOOT_B_LEFT") == ATTEMPTS.to_string(),
        &s,
        name,
        "fw_printenv: the probe should re-arm BOOT_B_LEFT",
    )?;
    let status = section(&s.boot.console, "status").unwrap_or_default();
    expect(
        status.contains("slot B:      good") && status.contains("version 2.0.0"),
        &s,
        name,
        "the guest's status should show B good with 2.0.0",
    )?;

    let name = "update 3: a later boot keeps B";
    let s = g.step(name, Instruction::Nothing)?;
    expect_booted(&s, name, SlotName::B, &V2)?;
    expect(
        s.markers.health_rc == Some(0),
        &s,
        name,
        "v2's probe should pass again",
    )?;
    expect(
        slot_state(&s.host, SlotName::B) == SlotState::Good,
        &s,
        name,
        "host: B should stay good",
    )?;
    expect(
        fw(&s.host, "BOOT_B_LEFT") == ATTEMPTS.to_string(),
        &s,
        name,
        "fw_printenv: BOOT_B_LEFT re-armed",
    )?;
    expect(
        fw(&s.host, "BOOT_ORDER") == "B A",
        &s,
        name,
        "fw_printenv: BOOT_ORDER stays \"B A\"",
    )?;
    Ok(g)
}

/// The rollback scenario, on the guest `update` left (v2 confirmed in B).
pub fn rollback(g: &mut Guest) -> Result<(), ScenarioError> {
    let floor = security_version(&V2);
    let name = "rollback 1: v2 installs v3";
    let s = g.step(name, Instruction::Install(guest_bundle_path(&V3)))?;
    expect_booted(&s, name, SlotName::B, &V2)?;
    expect(
        s.markers.install_rc == Some(0),
        &s,
        name,
        "the install of v3 should succeed",
    )?;
    expect(
        slot_state(&s.host, SlotName::A)
            == SlotState::Pending {
                tries_left: ATTEMPTS,
            },
        &s,
        name,
        "host: A should be pending",
    )?;
    for attempt in 1..=ATTEMPTS {
        let name = format!(
            "rollback {}: v3's try {attempt} fails its probe",
            attempt + 1
        );
        let s = g.step(&name, Instruction::Nothing)?;
        expect_booted(&s, &name, SlotName::A, &V3)?;
        expect(
            s.markers.health_rebooted && !s.markers.powered_off,
            &s,
            &name,
            "the failed probe should reboot per on_failure",
        )?;
        let left = ATTEMPTS - attempt;
        expect(
            fw(&s.host, "BOOT_A_LEFT") == left.to_string(),
            &s,
            &name,
            format!(
                "fw_printenv: BOOT_A_LEFT should be {left}, is {:?}",
                fw(&s.host, "BOOT_A_LEFT")
            ),
        )?;
        expect(
            s.host.status.security_floor == floor,
            &s,
            &name,
            "host: the floor must not move",
        )?;
    }
    let name = format!("rollback {}: U-Boot falls back to v2 in B", ATTEMPTS + 2);
    let s = g.step(&name, Instruction::Nothing)?;
    expect_booted(&s, &name, SlotName::B, &V2)?;
    expect(
        s.markers.health_rc == Some(0),
        &s,
        &name,
        "v2's probe should pass",
    )?;
    expect(
        matches!(slot_state(&s.host, SlotName::A), SlotState::Bad { .. }),
        &s,
        &name,
        format!(
            "host: A should be bad, is {}",
            slot_state(&s.host, SlotName::A)
        ),
    )?;
    expect(
        slot_state(&s.host, SlotName::B) == SlotState::Good,
        &s,
        &name,
        "host: B should be good",
    )?;
    expect(
        s.host.status.security_floor == floor,
        &s,
        &name,
        format!(
            "host: the floor should stay {floor}, is {}",
            s.host.status.security_floor
        ),
    )?;
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
        failed == usize::from(ATTEMPTS),
        &s,
        &name,
        format!("host: history should hold {ATTEMPTS} failed probes of 3.0.0, holds {failed}"),
    )?;
    expect(
        s.host
            .status
            .rollbacks
            .iter()
            .any(|r| r.version.as_deref() == Some(V3.version)),
        &s,
        &name,
        "host: status should say why A rolled back",
    )?;
    let status = section(&s.boot.console, "status").unwrap_or_default();
    expect(
        status.contains("rolled back:") && status.contains("3.0.0"),
        &s,
        &name,
        "the guest's status should say v3 rolled back and why",
    )?;
    let history = section(&s.boot.console, "history").unwrap_or_default();
    expect(
        history.contains("v3.0.0")
            && history.contains("failed")
            && history.contains("cannot start its service"),
        &s,
        &name,
        "the guest's history should list v3's failed probes with the self-test's output",
    )?;
    Ok(())
}

/// Where a power cut lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// While `bascule install` writes v2 into slot B (from `bg-install begin`).
    InstallWrite,
    /// While the probe of the pending B commits its confirmation (from `bg-health
    /// begin`, with the pause point armed between the env write and its sync).
    ProbeCommit,
}

/// The pause the commit window arms in the guest (`BASCULE_TEST_PAUSE`).
pub const COMMIT_PAUSE: &str = "uboot-commit:1500";

/// Counts of a power-cut campaign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutCounts {
    pub kills: usize,
    pub bricks: usize,
    pub disagreements: usize,
    /// Cuts tried whose moment came after the boot had ended on its own.
    pub missed: usize,
}

impl std::fmt::Display for CutCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kills {}, bricks {}, disagreements {}",
            self.kills, self.bricks, self.disagreements
        )
    }
}

/// A power-cut campaign: seeded, over two reference disks made by calibration boots.
pub struct PowerCuts<'a> {
    world: &'a World,
    rng: SplitMix,
    /// The factory disk (v1 in A) and its install window.
    install_window: Duration,
    /// A disk with v2 pending in B, and its commit window.
    pending: PathBuf,
    commit_window: Duration,
    pub counts: CutCounts,
    /// One line per problem found.
    pub findings: Vec<String>,
}

impl<'a> PowerCuts<'a> {
    /// Calibrates both windows with two boots without a cut.
    pub fn new(world: &'a World, seed: u64) -> Result<PowerCuts<'a>, ScenarioError> {
        let mut g = Guest::new(world, None, "calibrate")?;
        let name = "calibrate: v1 installs v2";
        let s = g.step(name, Instruction::Install(guest_bundle_path(&V2)))?;
        expect(
            s.markers.install_rc == Some(0),
            &s,
            name,
            "the calibration install should succeed",
        )?;
        let install_window = span(&s.boot, "bg-install begin", "bg-install end", name)?;
        let pending = world.disk_copy(Some(&g.disk), "pending")?;
        let name = "calibrate: the probe confirms v2 (pause armed)";
        let boot = g
            .machine
            .boot(&Instruction::Nothing, COMMIT_PAUSE, &Kill::Never)
            .map_err(GuestError::from)?;
        let commit_window = span(&boot, "bg-health begin", "bg-health end", name)?;
        world.remove(&g.disk)?;
        Ok(PowerCuts {
            world,
            rng: SplitMix(seed),
            install_window,
            pending,
            commit_window,
            counts: CutCounts::default(),
            findings: Vec::new(),
        })
    }

    /// The two windows, as calibrated.
    pub fn windows(&self) -> (Duration, Duration) {
        (self.install_window, self.commit_window)
    }

    /// One cut in `window` at a random moment, then recovery; updates the counts.
    pub fn cut(&mut self, index: usize, window: Window) -> Result<(), ScenarioError> {
        let (from, instruction, pause, marker, width) = match window {
            Window::InstallWrite => (
                None,
                Instruction::Install(guest_bundle_path(&V2)),
                "",
                "bg-install begin",
                self.install_window,
            ),
            Window::ProbeCommit => (
                Some(self.pending.clone()),
                Instruction::Nothing,
                COMMIT_PAUSE,
                "bg-health begin",
                self.commit_window,
            ),
        };
        let delay = Duration::from_millis(self.rng.below(width.as_millis() as u64 + 1));
        let mut g = Guest::new(self.world, from.as_deref(), &format!("cut-{index}"))?;
        let kill = Kill::After {
            marker: marker.into(),
            delay,
        };
        let boot = g
            .machine
            .boot(&instruction, pause, &kill)
            .map_err(GuestError::from)?;
        if !boot.killed {
            // The window was wider than this boot's phase (the machine got faster
            // since the calibration): narrow it to what this boot took.
            self.counts.missed += 1;
            let end = marker.replace("begin", "end");
            if let Ok(took) = span(&boot, marker, &end, "a missed cut") {
                match window {
                    Window::InstallWrite => self.install_window = self.install_window.min(took),
                    Window::ProbeCommit => self.commit_window = self.commit_window.min(took),
                }
            }
        } else {
            self.counts.kills += 1;
            self.recover(&mut g, &format!("cut {index} ({window:?}, +{delay:?})"))?;
        }
        self.world.remove(&g.disk)?;
        Ok(())
    }

    /// Boots after a cut until a probe passes; counts a brick or disagreements.
    fn recover(&mut self, g: &mut Guest, what: &str) -> Result<(), ScenarioError> {
        let mut host = g.snapshot(what)?;
        let max_boots = 2 * (usize::from(ATTEMPTS) + 1);
        let mut disagreed = false;
        for n in 0..max_boots {
            if let Some(d) = env_disagreement(&host) {
                disagreed |= self.finding(format!("{what}: {d}"));
            }
            let predicted = host.status.next_boot;
            let step = g.step(
                &format!("{what}: recovery boot {}", n + 1),
                Instruction::Nothing,
            )?;
            let m = &step.markers;
            let chose = if m.uboot_reset { None } else { m.uboot_slot };
            let expected = if predicted.after_reset && n == 0 {
                None
            } else {
                predicted.slot
            };
            if chose != expected && !(predicted.after_reset && m.uboot_reset) {
                disagreed |= self.finding(format!(
                    "{what}: bascule predicts {predicted:?}, U-Boot chose {chose:?}"
                ));
            }
            if let Some((slot, version)) = &m.guest {
                if slot_version(&host, *slot).as_deref() != Some(version.as_str()) {
                    disagreed |= self.finding(format!(
                        "{what}: slot {slot} runs {version}, bascule records {:?}",
                        slot_version(&host, *slot)
                    ));
                }
            }
            host = step.host;
            if m.healthy() {
                let slot = m
                    .guest
                    .as_ref()
                    .map(|(s, _)| *s)
                    .expect("a healthy boot ran a slot");
                if slot_state(&host, slot) != SlotState::Good {
                    disagreed |= self.finding(format!(
                        "{what}: the probe passed in {slot}, bascule reads it as {}",
                        slot_state(&host, slot)
                    ));
                }
                if disagreed {
                    self.counts.disagreements += 1;
                }
                return Ok(());
            }
        }
        self.counts.bricks += 1;
        self.findings.push(format!(
            "{what}: BRICK: no probe passed in {max_boots} boots"
        ));
        if disagreed {
            self.counts.disagreements += 1;
        }
        Ok(())
    }

    fn finding(&mut self, line: String) -> bool {
        self.findings.push(line);
        true
    }

    /// Cuts until `n` kills landed (a cut whose moment came after the boot ended is
    /// tried again, at most `n` times in all), alternating the windows.
    pub fn run(
        &mut self,
        n: usize,
        mut progress: impl FnMut(usize, &CutCounts),
    ) -> Result<CutCounts, ScenarioError> {
        let mut i = 0;
        while self.counts.kills < n && self.counts.missed <= n {
            let window = if self.counts.kills.is_multiple_of(2) {
                Window::InstallWrite
            } else {
                Window::ProbeCommit
            };
            self.cut(i, window)?;
            progress(i, &self.counts);
            i += 1;
        }
        Ok(self.counts)
    }
}

impl Drop for PowerCuts<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pending);
    }
}

/// The time between two markers of an uncut boot.
fn span(boot: &Boot, from: &str, to: &str, step: &str) -> Result<Duration, ScenarioError> {
    match (boot.mark(from), boot.mark(to)) {
        (Some(a), Some(b)) if b > a => Ok(b - a),
        _ => Err(ScenarioError::Expectation {
            step: step.into(),
            what: format!("the console should show {from:?} then {to:?}"),
            console: boot.console.clone(),
        }),
    }
}

/// A small seeded generator (SplitMix64): the same seed gives the same cut moments.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_seeded_and_bounded() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = SplitMix(7);
                move |_| r.below(100)
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = SplitMix(7);
                move |_| r.below(100)
            })
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|&x| x < 100));
        assert_ne!(
            a,
            (0..5)
                .map({
                    let mut r = SplitMix(8);
                    move |_| r.below(100)
                })
                .collect::<Vec<_>>()
        );
    }
}
