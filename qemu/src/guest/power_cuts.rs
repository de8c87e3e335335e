//! Power cuts of the arm64 guest ([`PowerCuts`]): SIGKILL of QEMU at a seeded random
//! moment in the install's write window, in the probe's env commit window (widened
//! by the test-build pause point), or in U-Boot's own save of the env on the first
//! boot of the pending slot (widened by the campaign's board, whose save pauses
//! between the copy's first sector and the rest, so the cut tears the copy); the next
//! boots must reach a good slot through the real U-Boot (else a *brick*), and U-Boot must boot the slot bascule's model
//! predicts from the disk, `fw_printenv` must read the env bascule reads, and the slot
//! must run the version bascule recorded for it (else a *disagreement*).
use std::path::PathBuf;
use std::time::Duration;

use bascule::slot::state::SlotState;

use super::board::{SAVED_MARKER, TORN_SAVE_MARKER};
use super::config::ATTEMPTS;
use super::console::Kill;
use super::machine::Instruction;
use super::rootfs::V2;
use super::step::{env_disagreement, expect, slot_state, slot_version, span, Guest, ScenarioError};
use super::world::{guest_bundle_path, World};

/// Where a power cut lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// While `bascule install` writes v2 into slot B (from `bg-install begin`).
    InstallWrite,
    /// While the probe of the pending B commits its confirmation (from `bg-health
    /// begin`, with the pause point armed between the env write and its sync).
    ProbeCommit,
    /// While U-Boot saves the env it changed to try the pending B (from the board's
    /// [`TORN_SAVE_MARKER`]: the copy's first sector written, the rest not yet).
    BootloaderSave,
}

impl Window {
    /// The windows in the order a campaign takes them, round after round.
    pub const ALL: [Window; 3] = [
        Window::InstallWrite,
        Window::ProbeCommit,
        Window::BootloaderSave,
    ];

    /// The console lines that open and close the window.
    fn markers(self) -> (&'static str, &'static str) {
        match self {
            Window::InstallWrite => ("bg-install begin", "bg-install end"),
            Window::ProbeCommit => ("bg-health begin", "bg-health end"),
            Window::BootloaderSave => (TORN_SAVE_MARKER, SAVED_MARKER),
        }
    }
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

/// A power-cut campaign: seeded, over three reference disks made by calibration boots.
pub struct PowerCuts<'a> {
    world: &'a World,
    rng: SplitMix,
    /// The factory disk (v1 in A) and its install window.
    install_window: Duration,
    /// A disk with v2 pending in B, and its commit window.
    pending: PathBuf,
    commit_window: Duration,
    /// That disk with the torn-save board, and its save window.
    pending_torn_save: PathBuf,
    save_window: Duration,
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
        let boot = g.boot(&Instruction::Nothing, COMMIT_PAUSE, &Kill::Never)?;
        let commit_window = span(&boot, "bg-health begin", "bg-health end", name)?;
        world.remove(&g.disk)?;
        let pending_torn_save = world.disk_copy(Some(&pending), "pending-torn-save")?;
        world.use_torn_save_board(&pending_torn_save)?;
        let mut g = Guest::new(world, Some(&pending_torn_save), "calibrate-save")?;
        let name = "calibrate: U-Boot saves the env in two writes";
        let boot = g.boot(&Instruction::Nothing, "", &Kill::Never)?;
        let save_window = span(&boot, TORN_SAVE_MARKER, SAVED_MARKER, name)?;
        world.remove(&g.disk)?;
        Ok(PowerCuts {
            world,
            rng: SplitMix(seed),
            install_window,
            pending,
            commit_window,
            pending_torn_save,
            save_window,
            counts: CutCounts::default(),
            findings: Vec::new(),
        })
    }

    /// The install, commit and bootloader-save windows, as calibrated.
    pub fn windows(&self) -> [Duration; 3] {
        Window::ALL.map(|w| *self.window(w).1)
    }

    /// The disk a cut in `window` starts from (the factory disk when `None`) and the
    /// window's calibrated width.
    fn window(&self, window: Window) -> (Option<&PathBuf>, &Duration) {
        match window {
            Window::InstallWrite => (None, &self.install_window),
            Window::ProbeCommit => (Some(&self.pending), &self.commit_window),
            Window::BootloaderSave => (Some(&self.pending_torn_save), &self.save_window),
        }
    }

    /// One cut in `window` at a random moment, then recovery; updates the counts.
    pub fn cut(&mut self, index: usize, window: Window) -> Result<(), ScenarioError> {
        let (instruction, pause) = match window {
            Window::InstallWrite => (Instruction::Install(guest_bundle_path(&V2)), ""),
            Window::ProbeCommit => (Instruction::Nothing, COMMIT_PAUSE),
            Window::BootloaderSave => (Instruction::Nothing, ""),
        };
        let (marker, end) = window.markers();
        let (from, width) = self.window(window);
        let from = from.cloned();
        let delay = Duration::from_millis(self.rng.below(width.as_millis() as u64 + 1));
        let mut g = Guest::new(self.world, from.as_deref(), &format!("cut-{index}"))?;
        let kill = Kill::After {
            marker: marker.into(),
            delay,
        };
        let boot = g.boot(&instruction, pause, &kill)?;
        if !boot.killed {
            // The window was wider than this boot's phase (the machine got faster
            // since the calibration): narrow it to what this boot took.
            self.counts.missed += 1;
            if let Ok(took) = span(&boot, marker, end, "a missed cut") {
                let width = match window {
                    Window::InstallWrite => &mut self.install_window,
                    Window::ProbeCommit => &mut self.commit_window,
                    Window::BootloaderSave => &mut self.save_window,
                };
                *width = (*width).min(took);
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
            if let Some(d) = env_disagreement(g.platform, &host) {
                disagreed |= self.finding(format!("{what}: {d}"));
            }
            let predicted = host.status.next_boot;
            let step = g.step(
                &format!("{what}: recovery boot {}", n + 1),
                Instruction::Nothing,
            )?;
            let m = &step.markers;
            let chose = if m.bootloader_reset {
                None
            } else {
                m.bootloader_slot
            };
            let expected = if predicted.after_reset && n == 0 {
                None
            } else {
                predicted.slot
            };
            if chose != expected && !(predicted.after_reset && m.bootloader_reset) {
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
    /// tried again, at most `n` times in all), taking the windows in turn.
    pub fn run(
        &mut self,
        n: usize,
        mut progress: impl FnMut(usize, &CutCounts),
    ) -> Result<CutCounts, ScenarioError> {
        let mut i = 0;
        while self.counts.kills < n && self.counts.missed <= n {
            let window = Window::ALL[self.counts.kills % Window::ALL.len()];
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
        let _ = std::fs::remove_file(&self.pending_torn_save);
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
