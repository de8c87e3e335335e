//! The serial console of one power-on, read as it comes: [`run_watched`] runs QEMU
//! (its console on stdout) and records each `bg-` marker line with the time it
//! appeared, so a [`Kill`] can SIGKILL QEMU a chosen time after a marker: a power cut
//! at a moment of the boot. [`Markers`] reads what a boot did from its console: the
//! slot the bootloader's script chose, the guest's slot and version, the probe's and
//! the install's exit codes, the failed probe's reboot, the power-off, the errors.
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bascule_partitions::SlotName;

use super::machine::{io, MachineError};

/// A boot that lasts longer than this is a hang.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(420);

/// When to cut the power.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kill {
    Never,
    /// SIGKILL `delay` after the first console line containing `marker`.
    After {
        marker: String,
        delay: Duration,
    },
}

/// What one power-on printed and how it ended.
#[derive(Debug, Clone)]
pub struct Boot {
    pub console: String,
    /// Whether the harness cut the power.
    pub killed: bool,
    /// QEMU's exit status (a signal when killed).
    pub status: Option<ExitStatus>,
    pub elapsed: Duration,
    /// From power-on to the health verdict's marker, when it printed one.
    pub to_health_verdict: Option<Duration>,
    /// Each `bg-` marker line with the time it appeared after power-on.
    pub marks: Vec<(String, Duration)>,
}

impl Boot {
    /// When the first marker line starting with `prefix` appeared.
    pub fn mark(&self, prefix: &str) -> Option<Duration> {
        self.marks
            .iter()
            .find(|(line, _)| line.starts_with(prefix))
            .map(|(_, at)| *at)
    }
}

/// Runs `cmd` (QEMU, its console on stdout) to its end, cutting it per `kill`.
pub fn run_watched(mut cmd: Command, kill: &Kill) -> Result<Boot, MachineError> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(format!(
            "starting {}",
            cmd.get_program().to_string_lossy()
        )))?;
    let rx = stream(child.stdout.take().expect("piped stdout"));
    let errors = stream(child.stderr.take().expect("piped stderr"));
    let run = watch(&mut child, &rx, kill, start)?;
    let mut console = String::from_utf8_lossy(&run.console).replace('\r', "");
    let mut stderr = Vec::new();
    while let Ok(chunk) = errors.recv_timeout(Duration::from_secs(2)) {
        stderr.extend_from_slice(&chunk);
    }
    if !stderr.is_empty() {
        console.push_str("\n[qemu stderr] ");
        console.push_str(&String::from_utf8_lossy(&stderr));
    }
    Ok(Boot {
        console,
        killed: run.killed,
        status: Some(run.status),
        elapsed: start.elapsed(),
        to_health_verdict: run.verdict_at,
        marks: run.marks,
    })
}

/// Reads the console on a thread, in chunks as they arrive.
fn stream(mut out: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

struct Run {
    console: Vec<u8>,
    killed: bool,
    status: ExitStatus,
    verdict_at: Option<Duration>,
    marks: Vec<(String, Duration)>,
}

/// Collects the console until QEMU exits, killing it when `kill` says so.
fn watch(
    child: &mut Child,
    rx: &mpsc::Receiver<Vec<u8>>,
    kill: &Kill,
    start: Instant,
) -> Result<Run, MachineError> {
    let mut console = Vec::new();
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    let mut verdict_at = None;
    let mut marks: Vec<(String, Duration)> = Vec::new();
    let mut scanned = (0, 0);
    loop {
        // Take everything that arrived (the console trickles in small pieces: work
        // per piece must not grow with the console).
        let mut ended = false;
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(chunk) => console.extend_from_slice(&chunk),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => ended = true,
        }
        for chunk in rx.try_iter() {
            console.extend_from_slice(&chunk);
        }
        let seen = marks.len();
        scanned = scan_marks(&console, scanned, start, &mut marks);
        for (line, at) in &marks[seen..] {
            if verdict_at.is_none() && is_verdict(line) {
                verdict_at = Some(*at);
            }
            if let (Kill::After { marker, delay }, None) = (kill, kill_at) {
                if line.starts_with(marker.as_str()) {
                    kill_at = Some(Instant::now() + *delay);
                }
            }
        }
        if ended {
            let status = child.wait().map_err(io("waiting for QEMU"))?;
            return Ok(Run {
                console,
                killed,
                status,
                verdict_at,
                marks,
            });
        }
        if !killed && kill_at.is_some_and(|at| Instant::now() >= at) {
            child.kill().map_err(io("killing QEMU"))?;
            killed = true;
        }
        if start.elapsed() > BOOT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(MachineError::Timeout {
                timeout: BOOT_TIMEOUT,
                console: String::from_utf8_lossy(&console).into_owned(),
            });
        }
    }
}

/// Records the marker lines (the guest's `bg-`, the U-Boot board script's
/// `bh-board:`) completed since line start `from`, searching for
/// line ends only in bytes past `searched`; returns the new `(from, searched)`.
fn scan_marks(
    console: &[u8],
    (mut from, searched): (usize, usize),
    start: Instant,
    marks: &mut Vec<(String, Duration)>,
) -> (usize, usize) {
    let mut at = searched.max(from);
    while let Some(end) = console[at..].iter().position(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(&console[from..at + end]);
        let line = line.trim_end();
        if line.starts_with("bg-") || line.starts_with("bh-board:") {
            marks.push((line.to_string(), start.elapsed()));
        }
        from = at + end + 1;
        at = from;
    }
    (from, console.len())
}

fn is_verdict(line: &str) -> bool {
    line.starts_with("bg-health end") || line == "bg-reboot on_failure"
}

/// The markers of one boot, read from its console.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Markers {
    /// The slot the shipped script chose (`bascule: booting slot X`).
    pub bootloader_slot: Option<SlotName>,
    /// The script found no slot and reset the board.
    pub bootloader_reset: bool,
    /// The guest's init started: its slot and version.
    pub guest: Option<(SlotName, String)>,
    /// `bascule health`'s exit code, when it returned.
    pub health_rc: Option<i32>,
    /// The probe failed and rebooted per `on_failure`.
    pub health_rebooted: bool,
    /// `bascule install`'s exit code, when it ran to the end.
    pub install_rc: Option<i32>,
    /// The init reached its power-off.
    pub powered_off: bool,
    /// Lines the guest flagged as errors (`bg-error ...`).
    pub errors: Vec<String>,
}

impl Markers {
    /// Reads the markers of `console`.
    pub fn read(console: &str) -> Markers {
        let mut m = Markers::default();
        for line in console.lines().map(str::trim_end) {
            if let Some(rest) = line.strip_prefix("bascule: booting slot ") {
                m.bootloader_slot = rest.get(..1).and_then(|s| s.parse().ok());
            } else if line.starts_with("bascule: no slot has attempts left") {
                m.bootloader_reset = true;
            } else if let Some(rest) = line.strip_prefix("bg-boot slot=") {
                m.guest = parse_guest(rest);
            } else if let Some(rc) = line.strip_prefix("bg-health end rc=") {
                m.health_rc = rc.parse().ok();
            } else if line == "bg-reboot on_failure" {
                m.health_rebooted = true;
            } else if let Some(rc) = line.strip_prefix("bg-install end rc=") {
                m.install_rc = rc.parse().ok();
            } else if line == "bg-poweroff" {
                m.powered_off = true;
            } else if line.starts_with("bg-error") {
                m.errors.push(line.to_string());
            }
        }
        m
    }

    /// The guest booted and its probe passed.
    pub fn healthy(&self) -> bool {
        self.guest.is_some() && self.health_rc == Some(0)
    }
}

fn parse_guest(rest: &str) -> Option<(SlotName, String)> {
    let (slot, version) = rest.split_once(" version=")?;
    Some((slot.parse().ok()?, version.to_string()))
}

/// The text between the `bg-<what> begin` and `bg-<what> end` lines.
pub fn section<'a>(console: &'a str, what: &str) -> Option<&'a str> {
    let begin = format!("bg-{what} begin\n");
    let end = format!("bg-{what} end");
    let from = console.find(&begin)? + begin.len();
    let to = console[from..].find(&end)? + from;
    Some(&console[from..to])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A console that trickles in byte by byte (as a UART does) must not delay the
    /// marker: before the fix every piece rescanned the whole console, so markers,
    /// and the cuts timed from them, came seconds late.
    #[test]
    fn a_kill_lands_soon_after_its_marker_on_a_trickling_console() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "i=0; while [ $i -lt 40000 ]; do printf x; i=$((i+1)); done; echo; \
             echo bg-install begin; i=0; while [ $i -lt 40000 ]; do printf y; i=$((i+1)); done; \
             echo; echo bg-late; exec sleep 30",
        ]);
        let kill = Kill::After {
            marker: "bg-install begin".into(),
            delay: Duration::ZERO,
        };
        let boot = run_watched(cmd, &kill).unwrap();
        assert!(boot.killed);
        let marked = boot.mark("bg-install begin").expect("the marker was seen");
        assert!(
            boot.mark("bg-late").is_none(),
            "killed only at the end: {:?}",
            boot.marks
        );
        assert!(
            boot.elapsed < marked + Duration::from_secs(3),
            "{:?} after {marked:?}",
            boot.elapsed
        );
    }

    #[test]
    fn markers_read_a_boot_that_installed() {
        let console = "U-Boot 2023.01\nbascule: booting slot A, 2 attempts left after this one\n\
                       bg-boot slot=A version=1.0.0\nbg-health begin\nbg-health end rc=0\n\
                       bg-install begin\nbg-install end rc=0\nbg-status begin\nbooted: A\n\
                       bg-status end\nbg-poweroff\n";
        let m = Markers::read(console);
        assert_eq!(m.bootloader_slot, Some(SlotName::A));
        assert_eq!(m.guest, Some((SlotName::A, "1.0.0".into())));
        assert!(m.healthy() && m.powered_off && !m.health_rebooted);
        assert_eq!(m.install_rc, Some(0));
        assert_eq!(section(console, "status"), Some("booted: A\n"));
    }

    #[test]
    fn markers_read_a_failed_probe_and_a_reset() {
        let m = Markers::read("bascule: no slot has attempts left; resetting\n");
        assert!(m.bootloader_reset && m.guest.is_none());
        let m =
            Markers::read("bg-boot slot=B version=3.0.0\nbg-health begin\nbg-reboot on_failure\n");
        assert!(m.health_rebooted && !m.healthy());
    }
}
