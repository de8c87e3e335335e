//! Install planning: from a verified manifest and the device's state to the list of
//! writes, or a refusal naming the problem. Pure: no I/O, so every refusal is a unit
//! test.
//!
//! Checks, in order: the bundle is for this hardware (`compatible`); it carries at
//! least one image and every image names a slot class the device has; the target is
//! not the booted slot; the booted slot is not itself on trial (overwriting the only
//! confirmed slot would leave nothing to fall back to); a slot other than the target
//! stays bootable while it is written ([`state::begin_install`] decides, the same
//! transition the engine commits); the version is not a downgrade (unless allowed)
//! and never below the security floor; the running version is one the bundle upgrades
//! from directly (`min_from_version`); each image fits its slot.
//!
//! `min_from_version` is compared with the booted slot's recorded version. A device
//! whose running version is unknown (no version recorded, or not semver) refuses a
//! bundle that declares one unless `--force` is given: the bundle's author said that
//! older versions must go through an intermediate release (a data migration, a
//! bootloader step), and nothing on the device shows that it did; the operator who
//! knows the running version vouches for it with `--force`. A known running version
//! below `min_from_version` is refused even with `--force`: install the version the
//! error names first.
use bascule_hal::EnvVars;
use bascule_partitions::SlotName;
use semver::Version;

use crate::bundle::Manifest;
use crate::slot::state::{self, NoFallback};
use crate::slot::{BootScheme, BootState, InstalledImage, SchemeError, SlotState};

/// What the device knows when it plans an install.
#[derive(Clone)]
pub struct PlanInput<'a> {
    pub compatible: &'a str,
    pub booted: SlotName,
    /// The slot to write; `None` means the other slot.
    pub requested_target: Option<SlotName>,
    pub scheme: &'a dyn BootScheme,
    /// The boot environment as loaded.
    pub vars: &'a EnvVars,
    /// Tries a new slot gets.
    pub attempts: u8,
    pub security_floor: u32,
    pub allow_downgrade: bool,
    /// Install even while the booted slot is still on trial.
    pub force: bool,
}

/// One image and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedImage {
    pub image: usize,
    pub class: String,
    pub size: u64,
}

/// The decided install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallPlan {
    pub target: SlotName,
    pub images: Vec<PlannedImage>,
    pub installed: InstalledImage,
}

/// Why an install is refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("bundle is for hardware {found:?}, this device is {expected:?} (compatible mismatch)")]
    Incompatible { expected: String, found: String },
    #[error("bundle holds no image")]
    NoImages,
    #[error("bundle image {image} ({class}) is empty: a slot is never marked pending with nothing written")]
    EmptyImage { image: usize, class: String },
    #[error("bundle image {image} is for slot class {class:?}, which this device does not have (known: {known})")]
    UnknownClass {
        image: usize,
        class: String,
        known: String,
    },
    #[error("refusing to write slot {0}: it is the booted slot")]
    TargetIsBooted(SlotName),
    #[error(transparent)]
    NoFallback(#[from] NoFallback),
    #[error("boot environment: {0}")]
    Scheme(#[from] SchemeError),
    #[error(
        "booted slot {0} is still pending (not yet confirmed); installing now would overwrite the only \
         confirmed slot. Confirm it with `bascule mark-good` first, or pass --force"
    )]
    BootedSlotPending(SlotName),
    #[error("downgrade refused: bundle version {bundle} is older than the running version {running} (use --allow-downgrade)")]
    Downgrade { bundle: String, running: String },
    #[error("bundle security version {bundle} is below this device's security floor {floor}; refused even with --allow-downgrade")]
    BelowSecurityFloor { bundle: u32, floor: u32 },
    #[error(
        "bundle {bundle} upgrades only from {min_from} or newer; this device runs {running}: \
         install {min_from} (or newer) first"
    )]
    BelowMinFromVersion {
        bundle: String,
        min_from: String,
        running: String,
    },
    #[error(
        "bundle {bundle} upgrades only from {min_from} or newer, and the running version of \
         slot {booted} is unknown ({recorded}): install {min_from} (or newer) first, or pass \
         --force if the device is known to run {min_from} or newer"
    )]
    RunningVersionUnknown {
        bundle: String,
        min_from: String,
        booted: SlotName,
        /// What the environment records: "none recorded" or the unparsable text.
        recorded: String,
    },
    #[error("bundle version {0:?} is not a semantic version")]
    BadVersion(String),
    #[error("image {image} ({class}) is {size} bytes but slot {class}.{slot} holds only {slot_size} bytes")]
    ImageTooLarge {
        image: usize,
        class: String,
        slot: SlotName,
        size: u64,
        slot_size: u64,
    },
}

/// Decides the install, or refuses. `slot_size(class, slot)` gives each slot's size
/// (`None` when the class is unknown).
pub fn plan_install(
    manifest: &Manifest,
    input: &PlanInput,
    slot_size: &dyn Fn(&str, SlotName) -> Option<u64>,
    known_classes: &[String],
) -> Result<InstallPlan, PlanError> {
    if manifest.compatible != input.compatible {
        return Err(PlanError::Incompatible {
            expected: input.compatible.to_string(),
            found: manifest.compatible.clone(),
        });
    }
    if manifest.images.is_empty() {
        return Err(PlanError::NoImages);
    }
    let boot_state = BootState::read_running(input.scheme, input.vars, input.booted)?;
    let target = choose_target(input, &boot_state)?;
    state::begin_install(
        input.scheme,
        input.vars,
        target,
        input.booted,
        input.attempts,
    )?;
    check_version(manifest, input, &boot_state)?;
    let mut images = Vec::new();
    for (index, image) in manifest.images.iter().enumerate() {
        let class = image.slot_class.clone();
        let Some(slot_size) = slot_size(&class, target) else {
            return Err(PlanError::UnknownClass {
                image: index,
                class,
                known: known_classes.join(", "),
            });
        };
        if image.size == 0 {
            return Err(PlanError::EmptyImage {
                image: index,
                class,
            });
        }
        if image.size > slot_size {
            return Err(PlanError::ImageTooLarge {
                image: index,
                class,
                slot: target,
                size: image.size,
                slot_size,
            });
        }
        images.push(PlannedImage {
            image: index,
            class,
            size: image.size,
        });
    }
    let installed = InstalledImage {
        version: manifest.version.clone(),
        security_version: manifest.security_version,
    };
    Ok(InstallPlan {
        target,
        images,
        installed,
    })
}

fn choose_target(input: &PlanInput, boot_state: &BootState) -> Result<SlotName, PlanError> {
    let target = input.requested_target.unwrap_or(input.booted.other());
    if target == input.booted {
        return Err(PlanError::TargetIsBooted(target));
    }
    let booted_state = &boot_state.slot(input.booted).state;
    let booted_on_trial = matches!(booted_state, SlotState::Pending { .. })
        || boot_state.pending.contains(&input.booted);
    if booted_on_trial && !input.force {
        return Err(PlanError::BootedSlotPending(input.booted));
    }
    Ok(target)
}

fn check_version(
    manifest: &Manifest,
    input: &PlanInput,
    boot_state: &BootState,
) -> Result<(), PlanError> {
    if manifest.security_version < input.security_floor {
        return Err(PlanError::BelowSecurityFloor {
            bundle: manifest.security_version,
            floor: input.security_floor,
        });
    }
    let bundle = Version::parse(&manifest.version)
        .map_err(|_| PlanError::BadVersion(manifest.version.clone()))?;
    let recorded = boot_state.slot(input.booted).version.as_deref();
    check_upgrade_path(manifest, input, recorded)?;
    let Some(running) = recorded.and_then(|v| Version::parse(v).ok()) else {
        return Ok(()); // nothing known about the running version: no downgrade check possible
    };
    if bundle < running && !input.allow_downgrade {
        return Err(PlanError::Downgrade {
            bundle: bundle.to_string(),
            running: running.to_string(),
        });
    }
    Ok(())
}

/// The running version (`recorded`, the booted slot's) is one the bundle upgrades from
/// directly: at least `min_from_version`, when the bundle declares one.
fn check_upgrade_path(
    manifest: &Manifest,
    input: &PlanInput,
    recorded: Option<&str>,
) -> Result<(), PlanError> {
    let Some(min_from) = &manifest.min_from_version else {
        return Ok(());
    };
    let min = Version::parse(min_from).map_err(|_| PlanError::BadVersion(min_from.clone()))?;
    match recorded.map(|v| (v, Version::parse(v))) {
        Some((_, Ok(running))) if running >= min => Ok(()),
        Some((_, Ok(running))) => Err(PlanError::BelowMinFromVersion {
            bundle: manifest.version.clone(),
            min_from: min.to_string(),
            running: running.to_string(),
        }),
        _ if input.force => Ok(()),
        unknown => Err(PlanError::RunningVersionUnknown {
            bundle: manifest.version.clone(),
            min_from: min.to_string(),
            booted: input.booted,
            recorded: match unknown {
                Some((text, _)) => format!("{text:?} is not semver"),
                None => "none recorded".into(),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{ChunkEntry, Compression, ImageEntry, FORMAT_VERSION};
    use crate::slot::{state, RaucUboot};
    use bascule_hal::EnvVars;

    fn manifest(version: &str, secver: u32, size: u64) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            required_features: 0,
            version: version.into(),
            compatible: "acme".into(),
            security_version: secver,
            build_id: "b".into(),
            created_unix: 0,
            min_from_version: None,
            images: vec![ImageEntry {
                slot_class: "rootfs".into(),
                size,
                sha256: [0; 32],
                compression: Compression::None,
                chunk_size: 4096,
                chunks: vec![ChunkEntry {
                    sha256: [0; 32],
                    stored_len: 4096,
                }],
            }],
        }
    }

    fn env(booted_version: &str) -> EnvVars {
        let base: EnvVars = [
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "3"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let image = InstalledImage {
            version: booted_version.into(),
            security_version: 1,
        };
        state::factory_state(&RaucUboot, &base, SlotName::A, Some(&image), 3)
    }

    fn plan(
        m: &Manifest,
        vars: &EnvVars,
        tweak: impl Fn(&mut PlanInput),
    ) -> Result<InstallPlan, PlanError> {
        let mut input = PlanInput {
            compatible: "acme",
            booted: SlotName::A,
            requested_target: None,
            scheme: &RaucUboot,
            vars,
            attempts: 3,
            security_floor: 1,
            allow_downgrade: false,
            force: false,
        };
        tweak(&mut input);
        let size = |class: &str, _| (class == "rootfs").then_some(8192);
        plan_install(m, &input, &size, &["rootfs".to_string()])
    }

    #[test]
    fn plans_the_other_slot() {
        let p = plan(&manifest("2.0.0", 1, 4096), &env("1.0.0"), |_| {}).unwrap();
        assert_eq!(p.target, SlotName::B);
        assert_eq!(p.installed.version, "2.0.0");
    }

    #[test]
    fn refuses_each_bad_input() {
        let e = env("1.0.0");
        let m = manifest("2.0.0", 1, 4096);
        assert!(matches!(
            plan(&m, &e, |i| i.compatible = "other"),
            Err(PlanError::Incompatible { .. })
        ));
        assert_eq!(
            plan(&m, &e, |i| i.requested_target = Some(SlotName::A)),
            Err(PlanError::TargetIsBooted(SlotName::A))
        );
        assert!(matches!(
            plan(&manifest("0.9.0", 1, 4096), &e, |_| {}),
            Err(PlanError::Downgrade { .. })
        ));
        assert!(matches!(
            plan(&manifest("3.0.0", 0, 4096), &e, |_| {}),
            Err(PlanError::BelowSecurityFloor { .. })
        ));
        assert!(matches!(
            plan(&manifest("3.0.0", 1, 9000), &e, |_| {}),
            Err(PlanError::ImageTooLarge { .. })
        ));
        assert!(matches!(
            plan(&manifest("3.0.0", 1, 0), &e, |_| {}),
            Err(PlanError::EmptyImage { .. })
        ));
    }

    #[test]
    fn downgrade_allowed_only_above_the_floor() {
        let e = env("1.0.0");
        assert!(
            plan(&manifest("0.9.0", 1, 4096), &e, |i| i.allow_downgrade =
                true)
            .is_ok()
        );
        let below = plan(&manifest("0.9.0", 0, 4096), &e, |i| {
            i.allow_downgrade = true
        });
        assert!(matches!(below, Err(PlanError::BelowSecurityFloor { .. })));
    }

    #[test]
    fn unknown_class_names_known_ones() {
        let mut m = manifest("2.0.0", 1, 4096);
        m.images[0].slot_class = "appfs".into();
        let err = plan(&m, &env("1.0.0"), |_| {}).unwrap_err();
        assert!(err.to_string().contains("known: rootfs"), "{err}");
    }

    #[test]
    fn refuses_while_booted_slot_is_pending_unless_forced() {
        let base = env("1.0.0");
        let image = InstalledImage {
            version: "2.0.0".into(),
            security_version: 1,
        };
        let mut pending_a = base.clone();
        RaucUboot.set_primary(&mut pending_a, SlotName::A, 3);
        pending_a.insert("BASCULE_PENDING", "A");
        pending_a.insert("BASCULE_A_VERSION", image.version.clone());
        let m = manifest("2.1.0", 1, 4096);
        assert_eq!(
            plan(&m, &pending_a, |_| {}),
            Err(PlanError::BootedSlotPending(SlotName::A))
        );
        assert!(plan(&m, &pending_a, |i| i.force = true).is_ok());
    }

    fn upgrading_from(version: &str, min_from: &str) -> Manifest {
        let mut m = manifest(version, 1, 4096);
        m.min_from_version = Some(min_from.into());
        m
    }

    #[test]
    fn refuses_a_bundle_the_running_version_cannot_reach_naming_the_one_needed() {
        let m = upgrading_from("3.0.0", "2.0.0");
        let err = plan(&m, &env("1.0.0"), |_| {}).unwrap_err();
        assert_eq!(
            err,
            PlanError::BelowMinFromVersion {
                bundle: "3.0.0".into(),
                min_from: "2.0.0".into(),
                running: "1.0.0".into(),
            }
        );
        assert_eq!(
            err.to_string(),
            "bundle 3.0.0 upgrades only from 2.0.0 or newer; this device runs 1.0.0: \
             install 2.0.0 (or newer) first"
        );
        // Neither --force nor --allow-downgrade skips a known, too old running version.
        let forced = plan(&m, &env("1.0.0"), |i| {
            i.force = true;
            i.allow_downgrade = true;
        });
        assert!(matches!(forced, Err(PlanError::BelowMinFromVersion { .. })));
    }

    #[test]
    fn accepts_the_min_from_version_itself_and_newer() {
        let m = upgrading_from("3.0.0", "2.0.0");
        for running in ["2.0.0", "2.5.1", "3.0.0-rc.1"] {
            assert!(plan(&m, &env(running), |_| {}).is_ok(), "{running}");
        }
        assert!(matches!(
            plan(&m, &env("2.0.0-rc.1"), |_| {}),
            Err(PlanError::BelowMinFromVersion { .. })
        ));
        // Without the field, any running version goes (the downgrade rule aside).
        assert!(plan(&manifest("3.0.0", 1, 4096), &env("0.0.1"), |_| {}).is_ok());
    }

    #[test]
    fn an_unknown_running_version_is_refused_unless_forced() {
        let m = upgrading_from("3.0.0", "2.0.0");
        let mut none = env("1.0.0");
        none.remove("BASCULE_A_VERSION");
        let err = plan(&m, &none, |_| {}).unwrap_err();
        assert!(
            matches!(&err, PlanError::RunningVersionUnknown { recorded, .. } if recorded == "none recorded"),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("install 2.0.0 (or newer) first"),
            "{err}"
        );
        assert!(plan(&m, &none, |i| i.force = true).is_ok());
        let mut garbled = env("1.0.0");
        garbled.insert("BASCULE_A_VERSION", "one");
        let err = plan(&m, &garbled, |_| {}).unwrap_err();
        assert!(err.to_string().contains("\"one\" is not semver"), "{err}");
        assert!(plan(&m, &garbled, |i| i.force = true).is_ok());
    }
}
