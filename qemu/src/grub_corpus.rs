//! The GRUB corpus: boot environments the differential run feeds to real GRUB.
//!
//! Two deterministic parts:
//! - [`walk_cases`]: states reached by seeded random walks over bascule's own state
//!   changes (`factory_state`, `begin_install`, `mark_pending`, `confirm`, `mark_bad`
//!   and the scheme's `boot`), each with the fallback file bascule writes beside it;
//! - [`hostile_cases`]: envs bascule never writes but a device may hold: a missing,
//!   empty or unknown `ORDER`, missing flags, flags like `" 1"`, `01`, `true`,
//!   duplicate names, non-UTF-8 values, and an empty, corrupt or missing grubenv;
//! - in the [`full`] corpus only, [`lost_main_cases`]: every walk state with its main
//!   grubenv emptied, so GRUB boots from the fallback bascule wrote beside it.
//!
//! Cases whose bytes the current `EnvVars` (UTF-8 strings) cannot hold are built as raw
//! blocks and marked [`GrubCase::byte_values`], to move to the byte-valued API.
use bascule::slot::grub_fallback::{confirmed_slots, fallback_vars};
use bascule::slot::state::{begin_install, confirm, factory_state, mark_bad, mark_pending};
use bascule::slot::{BootDecision, BootScheme, InstalledImage, RaucGrub};
use bascule_hal::env::GrubCodec;
use bascule_hal::EnvVars;
use bascule_partitions::SlotName;

use crate::grub_env::raw_block;

/// Attempts passed to the model (GRUB's scheme gives one try whatever this is).
pub const ATTEMPTS: u8 = 3;

/// One env file as the case writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvFile {
    /// The file does not exist.
    Missing,
    /// The file holds these bytes.
    Bytes(Vec<u8>),
}

/// One env to boot: the main grubenv and the fallback `grubenv.good`.
#[derive(Debug, Clone)]
pub struct GrubCase {
    pub name: String,
    pub main: EnvFile,
    pub fallback: EnvFile,
    /// Holds a value that is not UTF-8 (needs byte-valued `EnvVars` to be built there).
    pub byte_values: bool,
    /// When set, the only slots GRUB may boot from this env (the confirmed slots of the
    /// state bascule wrote), checked apart from the model.
    pub may_boot: Option<Vec<SlotName>>,
}

fn encode(vars: &EnvVars) -> EnvFile {
    EnvFile::Bytes(GrubCodec::default().encode(vars).expect("corpus env fits"))
}

fn vars(pairs: &[(&str, &str)]) -> EnvVars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A case bascule could have written: `main` and the fallback computed from it.
pub fn written_case(name: &str, main: &EnvVars) -> GrubCase {
    GrubCase {
        name: name.into(),
        main: encode(main),
        fallback: encode(&fallback_vars(main)),
        byte_values: false,
        may_boot: None,
    }
}

/// A small seeded generator (xorshift64*), so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// One random walk of `steps` state changes from a factory state.
fn walk(rng: &mut Rng, steps: u64) -> EnvVars {
    let scheme = RaucGrub;
    let start = if rng.below(2) == 0 {
        SlotName::A
    } else {
        SlotName::B
    };
    let mut env = factory_state(&scheme, &EnvVars::new(), start, None, ATTEMPTS);
    let mut booted = start;
    for i in 0..steps {
        let target = booted.other();
        env = match rng.below(5) {
            0 => match scheme.boot(&mut env) {
                BootDecision::Boot(slot) => {
                    booted = slot;
                    env
                }
                BootDecision::NoSlotResetCounters => env,
            },
            1 => confirm(&scheme, &env, booted, ATTEMPTS).unwrap_or(env),
            2 => match begin_install(&scheme, &env, target, booted, ATTEMPTS) {
                Ok(writing) => writing.vars,
                Err(_) => env,
            },
            3 => match begin_install(&scheme, &env, target, booted, ATTEMPTS) {
                Ok(writing) => {
                    let image = InstalledImage {
                        version: format!("1.{i}"),
                        security_version: 1,
                    };
                    mark_pending(&scheme, &writing.vars, &writing.marked, &image, ATTEMPTS)
                }
                Err(_) => env,
            },
            _ => mark_bad(&scheme, &env, target).unwrap_or(env),
        };
    }
    env
}

/// `count` distinct states from seeded walks of 1 to 8 steps.
pub fn walk_cases(seed: u64, count: usize) -> Vec<GrubCase> {
    let mut rng = Rng(seed | 1);
    let mut seen: Vec<EnvVars> = Vec::new();
    let mut tries = 0;
    while seen.len() < count && tries < count * 50 {
        tries += 1;
        let steps = 1 + rng.below(8);
        let env = walk(&mut rng, steps);
        if !seen.contains(&env) {
            seen.push(env);
        }
    }
    seen.iter()
        .enumerate()
        .map(|(i, env)| written_case(&format!("walk-{seed}-{i}"), env))
        .collect()
}

/// Hostile envs in the main grubenv, with a valid fallback naming slot A.
fn hostile_main_vars() -> Vec<(&'static str, EnvVars)> {
    let ok = |order: Option<&str>, a: (&str, &str), b: (&str, &str)| {
        let mut v = vars(&[("A_OK", a.0), ("A_TRY", a.1), ("B_OK", b.0), ("B_TRY", b.1)]);
        if let Some(order) = order {
            v.insert("ORDER", order);
        }
        v
    };
    let both = ("1", "0");
    vec![
        ("order-missing", ok(None, both, both)),
        ("order-empty", ok(Some(""), both, both)),
        ("order-unknown", ok(Some("C D"), both, both)),
        ("order-unknown-then-b", ok(Some("X B"), both, both)),
        ("order-b-twice", ok(Some("B B A"), ("1", "0"), ("1", "1"))),
        (
            "flags-missing-a-ok",
            vars(&[("ORDER", "A B"), ("B_OK", "1")]),
        ),
        (
            "flags-missing-a-try",
            vars(&[("ORDER", "A B"), ("A_OK", "1")]),
        ),
        ("ok-space-1", ok(Some("A B"), (" 1", "0"), both)),
        ("ok-01", ok(Some("A B"), ("01", "0"), both)),
        ("ok-true", ok(Some("A B"), ("true", "0"), both)),
        ("try-space-0", ok(Some("A B"), ("1", " 0"), both)),
        ("both-tried", ok(Some("A B"), ("1", "1"), ("1", "1"))),
    ]
}

/// Hostile raw blocks: duplicates and non-UTF-8 values.
fn hostile_raw() -> Vec<(&'static str, Vec<u8>, bool)> {
    vec![
        (
            "duplicate-a-try",
            raw_block(&[b"ORDER=A B", b"A_OK=1", b"A_TRY=1", b"A_TRY=0", b"B_OK=1"]),
            false,
        ),
        (
            "non-utf8-note",
            raw_block(&[b"ORDER=B A", b"A_OK=1", b"B_OK=1", b"note=caf\xe9"]),
            true,
        ),
        (
            "non-utf8-order",
            raw_block(&[b"ORDER=A\xff B", b"A_OK=1", b"B_OK=1"]),
            true,
        ),
    ]
}

/// The hostile cases of the module docs.
pub fn hostile_cases() -> Vec<GrubCase> {
    let good_a = factory_state(&RaucGrub, &EnvVars::new(), SlotName::A, None, ATTEMPTS);
    let fallback = encode(&fallback_vars(&good_a));
    let mut cases: Vec<GrubCase> = hostile_main_vars()
        .into_iter()
        .map(|(name, main)| GrubCase {
            name: name.into(),
            main: encode(&main),
            fallback: fallback.clone(),
            byte_values: false,
            may_boot: None,
        })
        .collect();
    for (name, bytes, byte_values) in hostile_raw() {
        cases.push(GrubCase {
            name: name.into(),
            main: EnvFile::Bytes(bytes),
            fallback: fallback.clone(),
            byte_values,
            may_boot: None,
        });
    }
    cases.extend(unreadable_cases());
    cases
}

/// An empty, corrupt or missing main grubenv: GRUB must boot the fallback's confirmed
/// slot, never a pending one, and never loop through reboots.
pub fn unreadable_cases() -> Vec<GrubCase> {
    let scheme = RaucGrub;
    let good_a = factory_state(&scheme, &EnvVars::new(), SlotName::A, None, ATTEMPTS);
    let image = InstalledImage {
        version: "2.0".into(),
        security_version: 1,
    };
    let writing = begin_install(&scheme, &good_a, SlotName::B, SlotName::A, ATTEMPTS)
        .expect("A stays bootable");
    let pending_b = mark_pending(&scheme, &writing.vars, &writing.marked, &image, ATTEMPTS);
    let fb_a = encode(&fallback_vars(&pending_b));
    let corrupt = EnvFile::Bytes(b"# GRUB Environment Blo\x00\x00garbage".to_vec());
    let case = |name: &str, main: EnvFile, fallback: EnvFile| GrubCase {
        name: name.into(),
        main,
        may_boot: Some(match fallback {
            EnvFile::Missing => Vec::new(),
            EnvFile::Bytes(_) => confirmed_slots(&pending_b),
        }),
        fallback,
        byte_values: false,
    };
    vec![
        case(
            "main-empty-b-pending",
            EnvFile::Bytes(Vec::new()),
            fb_a.clone(),
        ),
        case("main-corrupt-b-pending", corrupt.clone(), fb_a.clone()),
        case("main-missing-b-pending", EnvFile::Missing, fb_a),
        case(
            "main-corrupt-no-fallback",
            corrupt.clone(),
            EnvFile::Missing,
        ),
        case("main-and-fallback-corrupt", corrupt.clone(), corrupt),
    ]
}

/// Walk states as bascule wrote them, with the main grubenv then emptied (a torn
/// `save_env`): GRUB must boot one of the state's confirmed slots from the fallback.
pub fn lost_main_cases(seed: u64, count: usize) -> Vec<GrubCase> {
    let mut cases = walk_cases(seed, count);
    for case in &mut cases {
        let EnvFile::Bytes(bytes) = &case.main else {
            continue;
        };
        let state = GrubCodec::decode(bytes).expect("walk states decode");
        case.may_boot = Some(confirmed_slots(&state));
        case.main = EnvFile::Bytes(Vec::new());
        case.name = case.name.replace("walk-", "lost-main-");
    }
    cases
}

/// The bounded corpus the test runs: every hostile case and `walks` walk states.
pub fn bounded(walks: usize) -> Vec<GrubCase> {
    let mut cases = hostile_cases();
    cases.extend(walk_cases(15, walks));
    cases
}

/// The whole corpus: [`bounded`] plus each of the `walks` states with its main
/// grubenv lost.
pub fn full(walks: usize) -> Vec<GrubCase> {
    let mut cases = bounded(walks);
    cases.extend(lost_main_cases(15, walks));
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_are_deterministic_and_distinct() {
        let a = walk_cases(7, 12);
        let b = walk_cases(7, 12);
        assert_eq!(a.len(), 12);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.main, y.main);
        }
        for (i, x) in a.iter().enumerate() {
            assert!(a[i + 1..].iter().all(|y| y.main != x.main), "{}", x.name);
        }
    }

    #[test]
    fn unreadable_cases_never_offer_the_pending_slot() {
        for case in unreadable_cases() {
            if let EnvFile::Bytes(bytes) = &case.fallback {
                if let Ok(fb) = GrubCodec::decode(bytes) {
                    assert_eq!(fb["ORDER"], "A", "{}", case.name);
                    assert_eq!(fb["B_OK"], "0", "{}", case.name);
                }
            }
        }
    }
}
