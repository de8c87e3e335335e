//! Where an install's time goes: busy and idle time of each pipeline stage (reader,
//! check workers, writer, final sync), so that the bound of an install is visible.
//!
//! Each stage's threads add up, per chunk, the time they spend working (`busy`),
//! waiting for their input (`starved`) and waiting for the next stage to take their
//! output (`blocked`), into relaxed atomics of a [`StageClock`]: a few
//! `Instant::now()` calls per chunk of a MiB, so it is always on. The writer also
//! measures the time during which at least one write was in flight (`device_busy`):
//! what is left of the wall time is time the slot was given nothing to do.
//!
//! Invariant: for every stage, `busy + starved + blocked ≤ threads × wall` (the rest,
//! `other`, is start-up and hand-over outside the per-chunk loop).
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a stage's thread was doing during a measured interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// Its own work: reading, decoding and hashing, writing, syncing.
    Busy,
    /// Waiting for input from the stage before it.
    Starved,
    /// Waiting for the stage after it to take its output.
    Blocked,
}

/// Running totals of one stage, added to by its threads.
#[derive(Debug, Default)]
pub(super) struct StageClock {
    busy_ns: AtomicU64,
    starved_ns: AtomicU64,
    blocked_ns: AtomicU64,
}

impl StageClock {
    /// Runs `f` and counts its duration as `part`.
    pub(super) fn time<T>(&self, part: Part, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.add(part, start.elapsed());
        out
    }

    /// Counts `d` as `part`.
    pub(super) fn add(&self, part: Part, d: Duration) {
        let total = match part {
            Part::Busy => &self.busy_ns,
            Part::Starved => &self.starved_ns,
            Part::Blocked => &self.blocked_ns,
        };
        total.fetch_add(nanos(d), Ordering::Relaxed);
    }

    /// The totals so far, for a stage of `threads` threads.
    pub(super) fn read(&self, threads: u32) -> StageTime {
        let get = |a: &AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed));
        StageTime {
            threads,
            busy: get(&self.busy_ns),
            starved: get(&self.starved_ns),
            blocked: get(&self.blocked_ns),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Time during which at least one write is in flight, from any number of threads.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    state: Mutex<InFlightState>,
}

#[derive(Debug, Default)]
struct InFlightState {
    writes: u32,
    since: Option<Instant>,
    total: Duration,
}

impl InFlight {
    /// A write starts at `now`.
    pub(super) fn start(&self, now: Instant) {
        if let Ok(mut s) = self.state.lock() {
            if s.writes == 0 {
                s.since = Some(now);
            }
            s.writes += 1;
        }
    }

    /// A write ends at `now`.
    pub(super) fn end(&self, now: Instant) {
        if let Ok(mut s) = self.state.lock() {
            s.writes = s.writes.saturating_sub(1);
            if s.writes == 0 {
                if let Some(since) = s.since.take() {
                    s.total += now.saturating_duration_since(since);
                }
            }
        }
    }

    /// Time with at least one write in flight, up to the last write that ended.
    pub(super) fn total(&self) -> Duration {
        self.state.lock().map(|s| s.total).unwrap_or_default()
    }
}

/// The clocks of one pipeline run.
#[derive(Debug)]
pub(super) struct Clocks {
    pub(super) start: Instant,
    pub(super) read: StageClock,
    pub(super) check: StageClock,
    pub(super) write: StageClock,
    pub(super) lanes: StageClock,
    /// The most write lanes an image was written with (none in a dry run).
    pub(super) lanes_used: AtomicU32,
    pub(super) in_flight: InFlight,
    pub(super) sync: StageClock,
}

impl Clocks {
    pub(super) fn new() -> Self {
        Clocks {
            start: Instant::now(),
            read: StageClock::default(),
            check: StageClock::default(),
            write: StageClock::default(),
            lanes: StageClock::default(),
            lanes_used: AtomicU32::new(0),
            in_flight: InFlight::default(),
            sync: StageClock::default(),
        }
    }

    /// The totals, once every stage has stopped; `buffers` is how many chunk buffers
    /// the run allocated.
    pub(super) fn finish(&self, workers: u32, buffers: u32) -> StageTimes {
        let lanes = self.lanes_used.load(Ordering::Relaxed);
        StageTimes {
            buffers,
            wall: self.start.elapsed(),
            read: self.read.read(1),
            check: self.check.read(workers),
            write: self.write.read(1),
            lanes: self.lanes.read(lanes),
            device_busy: self.in_flight.total(),
            sync: self.sync.read(1).busy,
        }
    }
}

/// One stage's totals over the whole pipeline run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTime {
    /// Threads of the stage; the times are summed over them.
    pub threads: u32,
    pub busy: Duration,
    pub starved: Duration,
    pub blocked: Duration,
}

impl StageTime {
    /// Thread time not accounted for: start-up and hand-over outside the loops.
    pub fn other(&self, wall: Duration) -> Duration {
        (wall * self.threads).saturating_sub(self.busy + self.starved + self.blocked)
    }

    /// `d` as a share of this stage's thread time over `wall`, in percent.
    pub fn percent(&self, d: Duration, wall: Duration) -> f64 {
        percent(d, wall * self.threads)
    }
}

/// `part` as a percentage of `whole` (0 when `whole` is zero).
fn percent(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        return 0.0;
    }
    100.0 * part.as_secs_f64() / whole.as_secs_f64()
}

/// Where the time of one pipeline run went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// From the start of the pipeline until every stage stopped.
    pub wall: Duration,
    pub read: StageTime,
    /// The check workers (decode and SHA-256).
    pub check: StageTime,
    /// The writer: takes checked chunks in order and has them written.
    pub write: StageTime,
    /// The threads that write to the slot for the writer (as many as the slot has
    /// handles for, up to the write lanes; none in a dry run): their busy time is time
    /// in write calls.
    pub lanes: StageTime,
    /// Time with at least one write to the slot in flight.
    pub device_busy: Duration,
    /// The final sync(s) of the slot(s).
    pub sync: Duration,
    /// Chunk buffers allocated: the most chunks in memory at once.
    pub buffers: u32,
}

impl StageTimes {
    /// Wall time in which the slot was neither written nor synced: the gaps that
    /// writes in flight back to back would close.
    pub fn device_idle(&self) -> Duration {
        self.wall.saturating_sub(self.device_busy + self.sync)
    }

    /// One JSON object: seconds and percentages of each stage's thread time.
    pub fn to_json(&self) -> serde_json::Value {
        let stage = |s: &StageTime| {
            serde_json::json!({
                "threads": s.threads,
                "busy_s": secs(s.busy),
                "starved_s": secs(s.starved),
                "blocked_s": secs(s.blocked),
                "other_s": secs(s.other(self.wall)),
                "busy_pct": round1(s.percent(s.busy, self.wall)),
                "starved_pct": round1(s.percent(s.starved, self.wall)),
                "blocked_pct": round1(s.percent(s.blocked, self.wall)),
            })
        };
        let mut json = serde_json::json!({
            "wall_s": secs(self.wall),
            "buffers": self.buffers,
            "read": stage(&self.read),
            "check": stage(&self.check),
            "write": stage(&self.write),
            "device": {
                "busy_s": secs(self.device_busy),
                "idle_s": secs(self.device_idle()),
                "busy_pct": round1(percent(self.device_busy, self.wall)),
                "idle_pct": round1(percent(self.device_idle(), self.wall)),
            },
            "sync": { "busy_s": secs(self.sync), "busy_pct": round1(percent(self.sync, self.wall)) },
        });
        if self.lanes.threads > 0 {
            json["lanes"] = stage(&self.lanes);
        }
        json
    }
}

/// Seconds, to the microsecond.
fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn clock_adds_each_part_apart_and_over_threads() {
        let clock = StageClock::default();
        clock.add(Part::Busy, 30 * MS);
        clock.add(Part::Busy, 20 * MS);
        clock.add(Part::Starved, 7 * MS);
        clock.add(Part::Blocked, 3 * MS);
        std::thread::scope(|s| {
            s.spawn(|| clock.add(Part::Busy, 50 * MS));
        });
        let t = clock.read(2);
        assert_eq!((t.busy, t.starved, t.blocked), (100 * MS, 7 * MS, 3 * MS));
        // Two threads over 100 ms: 200 ms of thread time, 110 accounted for.
        assert_eq!(t.other(100 * MS), 90 * MS);
        assert_eq!(t.percent(t.busy, 100 * MS), 50.0);
        assert_eq!(t.percent(t.starved, 100 * MS), 3.5);
    }

    #[test]
    fn other_never_goes_below_zero_and_zero_wall_gives_zero_percent() {
        let t = StageTime {
            threads: 1,
            busy: 10 * MS,
            starved: 5 * MS,
            blocked: Duration::ZERO,
        };
        assert_eq!(t.other(12 * MS), Duration::ZERO);
        assert_eq!(t.percent(t.busy, Duration::ZERO), 0.0);
    }

    #[test]
    fn time_counts_the_closures_duration_and_returns_its_value() {
        let clock = StageClock::default();
        let v = clock.time(Part::Blocked, || {
            std::thread::sleep(5 * MS);
            42
        });
        assert_eq!(v, 42);
        let t = clock.read(1);
        assert!(t.blocked >= 5 * MS && t.busy.is_zero() && t.starved.is_zero());
    }

    #[test]
    fn overlapping_writes_count_once_and_gaps_not_at_all() {
        let flight = InFlight::default();
        let t0 = Instant::now();
        // [0, 10) and [5, 20) overlap: 20 ms busy; a gap; then [30, 35).
        flight.start(t0);
        flight.start(t0 + 5 * MS);
        flight.end(t0 + 10 * MS);
        flight.end(t0 + 20 * MS);
        flight.start(t0 + 30 * MS);
        flight.end(t0 + 35 * MS);
        assert_eq!(flight.total(), 25 * MS);
    }

    #[test]
    fn device_idle_is_wall_less_writes_in_flight_and_sync() {
        let times = StageTimes {
            wall: 100 * MS,
            device_busy: 60 * MS,
            sync: 15 * MS,
            ..StageTimes::default()
        };
        assert_eq!(times.device_idle(), 25 * MS);
        let json = times.to_json();
        assert_eq!(json["device"]["idle_s"], 0.025);
        assert_eq!(json["device"]["busy_pct"], 60.0);
        assert_eq!(json["sync"]["busy_pct"], 15.0);
        assert_eq!(json["wall_s"], 0.1);
    }
}
