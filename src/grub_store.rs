//! The GRUB boot environment as bascule keeps it: the main `grubenv` that GRUB's
//! script loads and saves, and the fallback `grubenv.good` beside it
//! ([`crate::slot::grub_fallback`]) that GRUB loads only when the main one is
//! unreadable.
//!
//! # Write order
//! Every [`EnvStore::commit`] writes the fallback FIRST (only when its content
//! changes), then the main grubenv; each file write is atomic on its own (temp file,
//! fsync, rename, directory fsync). A power cut between the two leaves the new fallback
//! beside the old main env, and that is safe: the fallback only ever names slots that
//! are confirmed in the new state, and a slot stops being confirmed only on
//! `begin_install` or `mark_bad`, i.e. before any byte of it is written. So the
//! fallback never names a slot being written, even for a moment. (The other order would
//! leave the old fallback naming the install target while the target is written.)
//!
//! # Loading an unreadable main env
//! When the main grubenv is corrupt, empty or missing but the fallback loads,
//! [`EnvStore::load`] returns the fallback's state: it is what GRUB boots from, and
//! the next commit (`mark-good`, `install`, ...) writes a whole new main grubenv from
//! it, which repairs the device. [`EnvStore::degraded`] then says that the main env is
//! unreadable, which slot GRUB boots from the fallback, and that the next commit
//! rewrites it, so `bascule status` shows it. The fallback keeps only the confirmed
//! slots, `BASCULE_PENDING` and the versions of other slots are lost with the main env.
//! When neither file loads, `load` fails with the main env's error.
//!
//! # A main env with duplicate names
//! GRUB reads it (the last line of a name wins) but its `save_env` rewrites only the
//! first line, so a try flag it saves never takes effect: a slot would be tried
//! forever. bascule never writes duplicates; when the main env has them, `load`
//! returns what GRUB reads, `degraded` names them, and the next commit rewrites the
//! file without them.
use bascule_hal::env::EnvName;
use bascule_hal::env::{EnvFiles, GrubCodec, GrubEnv};
use bascule_hal::{EnvStore, EnvVars, HalError};
use bascule_partitions::SlotName;

use crate::slot::grub_fallback::{fallback_boot, fallback_vars, FALLBACK_SUFFIX};

/// The main grubenv and its fallback, kept in step.
pub struct GrubStore<F: EnvFiles> {
    main: GrubEnv<F>,
    fallback: GrubEnv<F>,
    fallback_name: String,
    /// Set by `load` when it returned the fallback's state.
    degraded: Option<Degraded>,
}

/// What was wrong with the main env at the last `load`.
#[derive(Debug, Clone)]
enum Degraded {
    /// Unreadable: `load` returned the fallback's state, which GRUB boots from.
    Unreadable {
        main_error: String,
        boots: Option<SlotName>,
    },
    /// Readable, but these names occur on more than one line: GRUB reads the last
    /// line and its `save_env` rewrites the first, so the try flags it saves for them
    /// never take effect. `load` returned what GRUB reads.
    Duplicates(Vec<EnvName>),
}

impl<F: EnvFiles> GrubStore<F> {
    /// The store of `name` in `main_files` and `name.good` in `fallback_files` (two
    /// handles on the same directory).
    pub fn new(main_files: F, fallback_files: F, name: &str) -> Self {
        let fallback_name = format!("{name}{FALLBACK_SUFFIX}");
        let codec = GrubCodec::default();
        let main = GrubEnv::with_names(main_files, name, codec);
        let fallback = GrubEnv::with_names(fallback_files, &fallback_name, codec);
        GrubStore {
            main,
            fallback,
            fallback_name,
            degraded: None,
        }
    }

    /// The two backends back (main, fallback).
    pub fn into_inner(self) -> (F, F) {
        (self.main.into_inner(), self.fallback.into_inner())
    }
}

impl<F: EnvFiles> EnvStore for GrubStore<F> {
    fn load(&mut self) -> Result<EnvVars, HalError> {
        let main_error = match self.main.load_listing_duplicates() {
            Ok((vars, duplicates)) => {
                self.degraded =
                    (!duplicates.is_empty()).then_some(Degraded::Duplicates(duplicates));
                return Ok(vars);
            }
            Err(
                e @ (HalError::EnvCorrupt { .. }
                | HalError::EnvBlank { .. }
                | HalError::EnvMissing { .. }),
            ) => e,
            Err(e) => return Err(e),
        };
        let Ok(vars) = self.fallback.load() else {
            return Err(main_error);
        };
        self.degraded = Some(Degraded::Unreadable {
            main_error: main_error.to_string(),
            boots: fallback_boot(Some(&vars)),
        });
        Ok(vars)
    }

    fn commit(&mut self, vars: &EnvVars) -> Result<(), HalError> {
        let fallback = fallback_vars(vars);
        if self.fallback.load().ok().as_ref() != Some(&fallback) {
            self.fallback.commit(&fallback)?;
        }
        self.main.commit(vars)?;
        self.degraded = None;
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "{}, fallback {} (confirmed slots only)",
            self.main.describe(),
            self.fallback_name
        )
    }

    fn degraded(&self) -> Option<String> {
        let (main_error, boots) = match self.degraded.as_ref()? {
            Degraded::Unreadable { main_error, boots } => (main_error, boots),
            Degraded::Duplicates(names) => {
                let names: Vec<String> = names.iter().map(ToString::to_string).collect();
                return Some(format!(
                    "the main GRUB env holds {} on more than one line: GRUB reads the last \
                     line and its save_env rewrites only the first, so the try flags it saves \
                     do not take effect; the next bascule commit (mark-good, mark-bad, \
                     install) rewrites it without duplicates",
                    names.join(", ")
                ));
            }
        };
        let boots = match boots {
            Some(slot) => format!("GRUB boots slot {slot} from {}", self.fallback_name),
            None => format!(
                "{} names no confirmed slot: GRUB waits at its menu",
                self.fallback_name
            ),
        };
        Some(format!(
            "the main GRUB env is unreadable ({main_error}); {boots}; the next bascule \
             commit (mark-good, mark-bad, install) rewrites it"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bascule_hal::block::{CutPlan, Tear};
    use bascule_hal::env::MemFiles;

    use crate::slot::state::{begin_install, factory_state};
    use crate::slot::RaucGrub;

    fn store(main: MemFiles, fallback: MemFiles) -> GrubStore<MemFiles> {
        GrubStore::new(main, fallback, "grubenv")
    }

    fn factory() -> EnvVars {
        factory_state(&RaucGrub, &EnvVars::new(), SlotName::A, None, 3)
    }

    #[test]
    fn commit_writes_both_and_load_prefers_the_main_env() {
        let mut s = store(MemFiles::new(), MemFiles::new());
        s.commit(&factory()).unwrap();
        assert_eq!(s.load().unwrap(), factory());
        assert_eq!(s.degraded(), None);
        let (_, mut fb) = s.into_inner();
        let bytes = fb.read("grubenv.good", 4096).unwrap().unwrap();
        let fb_vars = GrubCodec::decode(&bytes).unwrap();
        assert_eq!(fb_vars, fallback_vars(&factory()));
    }

    #[test]
    fn corrupt_main_env_loads_the_fallback_and_says_so() {
        let mut s = store(MemFiles::new(), MemFiles::new());
        s.commit(&factory()).unwrap();
        let (mut main, fb) = s.into_inner();
        main.insert("grubenv", b"");
        let mut s = store(main, fb);
        assert_eq!(s.load().unwrap(), fallback_vars(&factory()));
        let text = s.degraded().expect("degraded");
        assert!(text.contains("main GRUB env is unreadable"), "{text}");
        assert!(
            text.contains("GRUB boots slot A from grubenv.good"),
            "{text}"
        );
        s.commit(&factory()).unwrap();
        assert_eq!(s.degraded(), None);
        assert_eq!(s.load().unwrap(), factory());
    }

    #[test]
    fn neither_file_readable_is_the_main_env_error() {
        let mut s = store(MemFiles::new(), MemFiles::new());
        assert!(matches!(s.load(), Err(HalError::EnvMissing { .. })));
    }

    #[test]
    fn cut_before_the_main_write_leaves_a_fallback_without_the_target() {
        let mut s = store(MemFiles::new(), MemFiles::new());
        s.commit(&factory()).unwrap();
        let both = crate::slot::state::confirm(&RaucGrub, &factory(), SlotName::B, 3).unwrap();
        s.commit(&both).unwrap();
        let (mut main, fb) = s.into_inner();
        main.arm(CutPlan {
            at: main.ops_count(),
            tear: Tear::None,
        });
        let mut s = store(main, fb);
        let writing = begin_install(&RaucGrub, &both, SlotName::B, SlotName::A, 3)
            .unwrap()
            .vars;
        assert!(matches!(s.commit(&writing), Err(HalError::PowerCut)));
        let (main, fb) = s.into_inner();
        let mut s = store(main.after_cut(), fb.after_cut());
        assert_eq!(s.load().unwrap(), both, "the main env is the old state");
        let (_, mut fb) = s.into_inner();
        let bytes = fb.read("grubenv.good", 4096).unwrap().unwrap();
        assert_eq!(GrubCodec::decode(&bytes).unwrap()["ORDER"], "A");
    }

    #[test]
    fn a_main_env_with_a_repeated_name_is_flagged_and_the_next_commit_rewrites_it() {
        let mut main = MemFiles::new();
        let mut block = b"# GRUB Environment Block\nORDER=A B\nA_OK=1\nA_TRY=1\nA_TRY=0\n".to_vec();
        block.resize(1024, b'#');
        main.insert("grubenv", &block);
        let mut s = store(main, MemFiles::new());
        let vars = s.load().unwrap();
        assert_eq!(vars["A_TRY"], "0", "GRUB reads the last line");
        let warning = s.degraded().expect("flagged");
        assert!(warning.contains("A_TRY on more than one line"), "{warning}");
        s.commit(&vars).unwrap();
        s.load().unwrap();
        assert_eq!(s.degraded(), None);
    }
}
