//! Install progress: a trait the engine reports through, and its renderings for
//! people (a bar on a terminal, log lines otherwise) and machines (JSON lines).
use std::io::Write;
use std::time::Instant;

/// What the installer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading and checking without writing (`--dry-run`).
    Verify,
    /// Writing the slot.
    Write,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Verify => "verify",
            Phase::Write => "write",
        }
    }
}

/// Receives progress from the install engine.
pub trait Progress {
    fn start(&mut self, phase: Phase, total: u64);
    fn advance(&mut self, done: u64);
    fn finish(&mut self);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _: Phase, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// An indicatif bar with throughput and ETA, for a terminal.
pub struct BarProgress {
    bar: Option<indicatif::ProgressBar>,
}

impl BarProgress {
    pub fn new() -> Self {
        BarProgress { bar: None }
    }
}

impl Default for BarProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for BarProgress {
    fn start(&mut self, phase: Phase, total: u64) {
        let bar = indicatif::ProgressBar::new(total);
        let style = indicatif::ProgressStyle::with_template(
            "{msg:>6} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .map(|s| s.progress_chars("=> "));
        if let Ok(style) = style {
            bar.set_style(style);
        }
        bar.set_message(phase.as_str());
        self.bar = Some(bar);
    }
    fn advance(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

/// Log lines at every tenth of the way, for logs and pipes.
pub struct LogProgress {
    phase: Phase,
    total: u64,
    next_tenth: u64,
    started: Instant,
}

impl LogProgress {
    pub fn new() -> Self {
        LogProgress {
            phase: Phase::Write,
            total: 0,
            next_tenth: 1,
            started: Instant::now(),
        }
    }
}

impl Default for LogProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for LogProgress {
    fn start(&mut self, phase: Phase, total: u64) {
        *self = LogProgress {
            phase,
            total,
            next_tenth: 1,
            started: Instant::now(),
        };
        log::info!("{}: {} bytes", phase.as_str(), total);
    }
    fn advance(&mut self, done: u64) {
        while self.total > 0 && self.next_tenth <= 10 && done * 10 >= self.total * self.next_tenth {
            log::info!(
                "{}: {}% ({} of {} bytes)",
                self.phase.as_str(),
                self.next_tenth * 10,
                done,
                self.total
            );
            self.next_tenth += 1;
        }
    }
    fn finish(&mut self) {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.total as f64 / secs / 1e6
        } else {
            0.0
        };
        log::info!(
            "{}: done in {secs:.2} s ({rate:.0} MB/s)",
            self.phase.as_str()
        );
    }
}

/// One JSON object per line on stdout: phase, bytes done, bytes total, rate.
pub struct JsonProgress {
    phase: Phase,
    total: u64,
    started: Instant,
    last_emit: Option<Instant>,
}

impl JsonProgress {
    pub fn new() -> Self {
        JsonProgress {
            phase: Phase::Write,
            total: 0,
            started: Instant::now(),
            last_emit: None,
        }
    }

    fn emit(&mut self, done: u64, event: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let line = serde_json::json!({
            "event": event, "phase": self.phase.as_str(), "bytes_done": done,
            "bytes_total": self.total, "bytes_per_sec": rate.round() as u64,
        });
        let mut out = std::io::stdout().lock();
        // Progress is advisory: a closed stdout must not fail the install.
        drop(writeln!(out, "{line}"));
        self.last_emit = Some(Instant::now());
    }
}

impl Default for JsonProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for JsonProgress {
    fn start(&mut self, phase: Phase, total: u64) {
        *self = JsonProgress {
            phase,
            total,
            started: Instant::now(),
            last_emit: None,
        };
        self.emit(0, "start");
    }
    fn advance(&mut self, done: u64) {
        let due = self
            .last_emit
            .is_none_or(|t| t.elapsed().as_millis() >= 200);
        if due || done == self.total {
            self.emit(done, "progress");
        }
    }
    fn finish(&mut self) {
        let total = self.total;
        self.emit(total, "done");
    }
}
