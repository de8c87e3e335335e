//! The envs the differential test boots: deterministic (a fixed seed), so a
//! disagreement names a case that the next run has again.
//!
//! U-Boot part: (a) states reached by random walks over bascule's own state changes
//! (`factory_state`, `begin_install`, `mark_pending`, `confirm`, `mark_bad` and the
//! scheme's `boot`), deduplicated; (b) hostile envs a device can meet in the field.
//! Cases the typed [`EnvVars`] cannot express (non-UTF-8 values, duplicate names, an
//! erased or torn env) are [`UbootEnvImage::Raw`] byte images built here and marked
//! as such, to move to the typed API once env values are bytes.
use std::collections::BTreeSet;

use bascule::slot::state::{begin_install, confirm, factory_state, mark_bad, mark_pending};
use bascule::slot::{BootDecision, BootScheme, InstalledImage, RaucUboot};
use bascule_hal::env::codec::crc32;
use bascule_hal::env::uboot::UbootCodec;
use bascule_hal::EnvVars;
use bascule_partitions::SlotName;

use crate::uboot::ENV_SIZE;

/// The seed of every walk corpus.
pub const SEED: u64 = 0x0ba5_c01e_2026_0015;

/// One env to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UbootCase {
    pub name: String,
    pub env: UbootEnvImage,
}

/// An env as variables, or as raw bytes where today's types cannot say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UbootEnvImage {
    Vars(EnvVars),
    /// RAW: built byte by byte; `why` says what the typed API cannot express.
    Raw {
        bytes: Vec<u8>,
        why: &'static str,
    },
}

impl UbootEnvImage {
    /// The [`ENV_SIZE`]-byte single-copy image, as `env export -c -s` lays it out.
    pub fn image(&self) -> Vec<u8> {
        match self {
            UbootEnvImage::Vars(vars) => UbootCodec::new(ENV_SIZE, false)
                .expect("a valid env size")
                .encode(vars, 0)
                .expect("corpus envs fit the env size"),
            UbootEnvImage::Raw { bytes, .. } => bytes.clone(),
        }
    }
}

/// A small deterministic generator (splitmix64): the corpus needs no better.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// What a walk step does.
#[derive(Debug, Clone, Copy)]
enum Step {
    Boot,
    Install,
    InstallCut,
    Confirm,
    MarkBadOther,
    MarkBadBooted,
}

const STEPS: [Step; 6] = [
    Step::Boot,
    Step::Install,
    Step::InstallCut,
    Step::Confirm,
    Step::MarkBadOther,
    Step::MarkBadBooted,
];

/// States reached by `walks` random walks of up to `steps` steps each, deduplicated,
/// in the order first reached.
pub fn uboot_walk_states(seed: u64, walks: usize, steps: usize) -> Vec<UbootCase> {
    let mut rng = Rng(seed);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for walk in 0..walks {
        let mut state = Walker::new(&mut rng);
        for step in 0..=steps {
            if step > 0 {
                state.step(&mut rng);
            }
            if seen.insert(state.vars.clone()) {
                out.push(UbootCase {
                    name: format!("walk {walk} step {step}"),
                    env: UbootEnvImage::Vars(state.vars.clone()),
                });
            }
        }
    }
    out
}

/// One device in a walk: its env and the slot it runs.
struct Walker {
    vars: EnvVars,
    booted: SlotName,
    attempts: u8,
    installs: u32,
}

impl Walker {
    fn new(rng: &mut Rng) -> Self {
        let good = rng.pick(&SlotName::ALL);
        let attempts = rng.pick(&[1u8, 2, 3, 3, 3, 5, 9]);
        let image = image(0);
        let mut vars = factory_state(&RaucUboot, &EnvVars::new(), good, Some(&image), attempts);
        // What init-env will write: the configured attempts, for the script to read.
        vars.insert("BASCULE_ATTEMPTS", attempts.to_string());
        Walker {
            vars,
            booted: good,
            attempts,
            installs: 0,
        }
    }

    fn step(&mut self, rng: &mut Rng) {
        let s = &RaucUboot;
        let target = self.booted.other();
        match rng.pick(&STEPS) {
            Step::Boot => {
                if let BootDecision::Boot(slot) = s.boot(&mut self.vars) {
                    self.booted = slot;
                }
            }
            Step::Install => {
                self.installs += 1;
                let img = image(self.installs);
                if let Ok(begun) = begin_install(s, &self.vars, target, self.booted, self.attempts)
                {
                    self.vars = mark_pending(s, &begun.vars, &begun.marked, &img, self.attempts);
                }
            }
            Step::InstallCut => {
                if let Ok(begun) = begin_install(s, &self.vars, target, self.booted, self.attempts)
                {
                    self.vars = begun.vars;
                }
            }
            Step::Confirm => {
                if let Some(next) = confirm(s, &self.vars, self.booted, self.attempts) {
                    self.vars = next;
                }
            }
            Step::MarkBadOther => self.mark_bad(target),
            Step::MarkBadBooted => self.mark_bad(self.booted),
        }
    }

    fn mark_bad(&mut self, slot: SlotName) {
        if let Some(next) = mark_bad(&RaucUboot, &self.vars, slot) {
            self.vars = next;
        }
    }
}

fn image(n: u32) -> InstalledImage {
    InstalledImage {
        version: format!("1.{n}.0"),
        security_version: n / 3,
    }
}

/// `count` walk states spread evenly over the whole walk corpus.
pub fn sample(states: Vec<UbootCase>, count: usize) -> Vec<UbootCase> {
    if states.len() <= count || count == 0 {
        return states;
    }
    let stride = states.len() as f64 / count as f64;
    let picks: BTreeSet<usize> = (0..count).map(|i| (i as f64 * stride) as usize).collect();
    states
        .into_iter()
        .enumerate()
        .filter(|(i, _)| picks.contains(i))
        .map(|(_, c)| c)
        .collect()
}

/// Walks and steps of the whole corpus.
pub const FULL_WALKS: (usize, usize) = (300, 16);
/// Walk states the bounded test boots.
pub const BOUNDED_WALK_SAMPLE: usize = 60;

/// Every hostile env plus every walk state.
pub fn uboot_full() -> Vec<UbootCase> {
    let mut cases = uboot_hostile();
    cases.extend(uboot_walk_states(SEED, FULL_WALKS.0, FULL_WALKS.1));
    cases
}

/// Every hostile env plus a sample of the walk states.
pub fn uboot_bounded() -> Vec<UbootCase> {
    let mut cases = uboot_hostile();
    let walks = uboot_walk_states(SEED, FULL_WALKS.0, FULL_WALKS.1);
    cases.extend(sample(walks, BOUNDED_WALK_SAMPLE));
    cases
}

fn vars_case(name: &str, pairs: &[(&str, &str)]) -> UbootCase {
    let vars = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    UbootCase {
        name: name.into(),
        env: UbootEnvImage::Vars(vars),
    }
}

fn raw_case(name: &str, bytes: Vec<u8>, why: &'static str) -> UbootCase {
    UbootCase {
        name: name.into(),
        env: UbootEnvImage::Raw { bytes, why },
    }
}

/// A single-copy image of `entries` (`name=value` byte strings) with a valid CRC:
/// duplicates and any byte allowed.
pub fn raw_env(entries: &[&[u8]]) -> Vec<u8> {
    let mut data = Vec::with_capacity(ENV_SIZE);
    for entry in entries {
        data.extend_from_slice(entry);
        data.push(0);
    }
    data.push(0);
    data.resize(ENV_SIZE - 4, 0);
    let mut image = crc32(&data).to_le_bytes().to_vec();
    image.extend_from_slice(&data);
    image
}

/// Hostile envs: everything a device may carry that bascule did not write itself.
pub fn uboot_hostile() -> Vec<UbootCase> {
    let mut cases = counter_cases();
    cases.extend(order_cases());
    cases.extend(attempts_cases());
    cases.extend(raw_cases());
    cases
}

fn counter_cases() -> Vec<UbootCase> {
    let mut cases = vec![
        vars_case(
            "missing BOOT_A_LEFT",
            &[("BOOT_ORDER", "A B"), ("BOOT_B_LEFT", "3")],
        ),
        vars_case(
            "missing BOOT_B_LEFT",
            &[("BOOT_ORDER", "B A"), ("BOOT_A_LEFT", "3")],
        ),
        vars_case(
            "missing BOOT_A_LEFT, B first",
            &[("BOOT_ORDER", "B A"), ("BOOT_B_LEFT", "0")],
        ),
        vars_case("both counters missing", &[("BOOT_ORDER", "A B")]),
    ];
    for value in [
        "10", "15", "0x3", "a", "-1", "", " ", "08", "010", "1a", "0",
    ] {
        cases.push(vars_case(
            &format!("BOOT_A_LEFT={value:?}"),
            &[
                ("BOOT_ORDER", "A B"),
                ("BOOT_A_LEFT", value),
                ("BOOT_B_LEFT", "3"),
            ],
        ));
    }
    for value in ["10", "0x3", "a", ""] {
        cases.push(vars_case(
            &format!("BOOT_B_LEFT={value:?}, B first, A at 0"),
            &[
                ("BOOT_ORDER", "B A"),
                ("BOOT_A_LEFT", "0"),
                ("BOOT_B_LEFT", value),
            ],
        ));
    }
    cases
}

fn order_cases() -> Vec<UbootCase> {
    let counters = [("BOOT_A_LEFT", "2"), ("BOOT_B_LEFT", "3")];
    let mut cases = vec![vars_case("BOOT_ORDER missing", &counters)];
    for order in [
        "", " ", "A C", "C A", "X", "A A B", "B B A", "a b", "A,B", "B",
    ] {
        let mut pairs = vec![("BOOT_ORDER", order)];
        pairs.extend(counters);
        cases.push(vars_case(&format!("BOOT_ORDER={order:?}"), &pairs));
    }
    cases.push(vars_case(
        "BOOT_ORDER=\"A A B\", A at 0",
        &[
            ("BOOT_ORDER", "A A B"),
            ("BOOT_A_LEFT", "0"),
            ("BOOT_B_LEFT", "1"),
        ],
    ));
    cases.push(vars_case(
        "BOOT_ORDER=\"X\", both at 0",
        &[
            ("BOOT_ORDER", "X"),
            ("BOOT_A_LEFT", "0"),
            ("BOOT_B_LEFT", "0"),
        ],
    ));
    cases.push(vars_case("empty env", &[]));
    cases
}

fn attempts_cases() -> Vec<UbootCase> {
    let mut cases = Vec::new();
    // Out-of-range and non-numeric values too: the script may copy the value as it is.
    for attempts in [
        None,
        Some("1"),
        Some("5"),
        Some("9"),
        Some("0"),
        Some("10"),
        Some("x"),
    ] {
        let label = attempts.unwrap_or("absent");
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut pairs = pairs.to_vec();
            pairs.extend(attempts.map(|a| ("BASCULE_ATTEMPTS", a)));
            pairs
        };
        cases.push(vars_case(
            &format!("both at 0, BASCULE_ATTEMPTS {label}"),
            &with(&[
                ("BOOT_ORDER", "A B"),
                ("BOOT_A_LEFT", "0"),
                ("BOOT_B_LEFT", "0"),
            ]),
        ));
        cases.push(vars_case(
            &format!("BOOT_A_LEFT missing, BASCULE_ATTEMPTS {label}"),
            &with(&[("BOOT_ORDER", "A B"), ("BOOT_B_LEFT", "3")]),
        ));
        cases.push(vars_case(
            &format!("fresh A B 3 3, BASCULE_ATTEMPTS {label}"),
            &with(&[
                ("BOOT_ORDER", "A B"),
                ("BOOT_A_LEFT", "3"),
                ("BOOT_B_LEFT", "3"),
            ]),
        ));
    }
    cases
}

fn raw_cases() -> Vec<UbootCase> {
    const NON_UTF8: &str = "non-UTF-8 value (EnvVars holds String today)";
    const DUPLICATE: &str = "duplicate names (EnvVars is a map)";
    let good: [&[u8]; 3] = [b"BOOT_ORDER=B A", b"BOOT_A_LEFT=3", b"BOOT_B_LEFT=2"];
    let with = |extra: &[u8]| -> Vec<u8> {
        let mut entries = good.to_vec();
        entries.push(extra);
        raw_env(&entries)
    };
    let mut torn = raw_env(&good);
    torn[100] ^= 0x55;
    vec![
        raw_case(
            "RAW vendor note with Latin-1 0xe9",
            with(b"vendor_note=caf\xe9"),
            NON_UTF8,
        ),
        raw_case(
            "RAW BASCULE_A_VERSION with 0xe9",
            with(b"BASCULE_A_VERSION=1.0-\xe9"),
            NON_UTF8,
        ),
        raw_case(
            "RAW BOOT_ORDER with 0xe9",
            raw_env(&[b"BOOT_ORDER=B\xe9 A", b"BOOT_A_LEFT=3", b"BOOT_B_LEFT=2"]),
            NON_UTF8,
        ),
        raw_case(
            "RAW BOOT_A_LEFT twice, 0 then 3",
            raw_env(&[
                b"BOOT_ORDER=A B",
                b"BOOT_A_LEFT=0",
                b"BOOT_B_LEFT=2",
                b"BOOT_A_LEFT=3",
            ]),
            DUPLICATE,
        ),
        raw_case(
            "RAW BOOT_ORDER twice, \"A B\" then \"B A\"",
            raw_env(&[
                b"BOOT_ORDER=A B",
                b"BOOT_A_LEFT=3",
                b"BOOT_B_LEFT=2",
                b"BOOT_ORDER=B A",
            ]),
            DUPLICATE,
        ),
        raw_case(
            "RAW erased env (all 0xff)",
            vec![0xff; ENV_SIZE],
            "an image that fails its CRC",
        ),
        raw_case(
            "RAW zeroed env (all 0x00)",
            vec![0; ENV_SIZE],
            "an image that fails its CRC",
        ),
        raw_case(
            "RAW torn env (one byte flipped)",
            torn,
            "an image that fails its CRC",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_are_deterministic_and_deduplicated() {
        let a = uboot_walk_states(SEED, 20, 8);
        let b = uboot_walk_states(SEED, 20, 8);
        assert_eq!(a, b);
        let distinct: BTreeSet<_> = a.iter().map(|c| c.env.image()).collect();
        assert_eq!(distinct.len(), a.len());
        assert!(a.len() > 20, "walks reach more than their start states");
    }

    #[test]
    fn walks_reach_pending_exhausted_and_no_slot_states() {
        let states = uboot_walk_states(SEED, FULL_WALKS.0, FULL_WALKS.1);
        let has = |f: &dyn Fn(&EnvVars) -> bool| {
            states.iter().any(|c| match &c.env {
                UbootEnvImage::Vars(v) => f(v),
                UbootEnvImage::Raw { .. } => false,
            })
        };
        assert!(has(&|v| v.contains_key("BASCULE_PENDING")));
        assert!(has(
            &|v| v.get_str("BOOT_A_LEFT") == Some("0") && v.get_str("BOOT_B_LEFT") == Some("0")
        ));
    }

    #[test]
    fn raw_env_has_a_valid_crc_and_keeps_duplicates() {
        let image = raw_env(&[b"X=1", b"X=2"]);
        let copy = UbootCodec::new(ENV_SIZE, false)
            .unwrap()
            .decode(&image)
            .unwrap();
        assert_eq!(copy.vars["X"], "2");
    }

    #[test]
    fn sample_spreads_over_the_corpus() {
        let states = uboot_walk_states(SEED, 50, 8);
        let picked = sample(states.clone(), 10);
        assert_eq!(picked.len(), 10);
        assert_eq!(picked[0], states[0]);
        assert_ne!(picked[9], states[9]);
    }
}
