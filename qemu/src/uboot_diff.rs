//! The U-Boot differential: boots each corpus env on the real U-Boot with the shipped
//! script, asks bascule's model ([`RaucUboot::boot`]) what it predicts for the same
//! env, and lists every case where they differ.
//!
//! Compared per boot: the decision (a slot, or no slot and a reset) and every variable
//! the env holds afterwards, except the scratch names in [`SCRATCH_VARS`]. A case whose
//! script took the no-slot path is booted a second time from the env it saved, as a
//! real board does after its reset; both sides start that boot from the same bytes,
//! so one disagreement does not cascade.
//!
//! The model's input is what U-Boot sees: the env's variables when the image passes
//! its CRC, and U-Boot's built-in env (no `BOOT_*` variable) when it does not. The
//! attempts the script resets to come from the env's `BASCULE_ATTEMPTS`, as the
//! model reads them too.
use std::collections::BTreeSet;
use std::fmt;

use bascule::slot::{BootDecision, BootScheme, RaucUboot};
use bascule_hal::env::codec::DecodeError;
use bascule_hal::env::uboot::UbootCodec;
use bascule_hal::env::{EnvName, EnvValue};
use bascule_hal::EnvVars;

use crate::corpus::UbootCase;
use crate::uboot::{UbootBoot, UbootDecision, UbootError, UbootHarness, ENV_SIZE};

/// Variables left out of the comparison: set by the shipped script as scratch
/// (`bascule_slot`, `bascule_load`, `bascule_attempts`, `bootargs`), by the harness (`bascule_load_A`,
/// `bascule_load_B`, `bascule_boot`, `bh_save`), and U-Boot 2023.01's built-in env
/// for qemu_arm64 (what `env default -a` sets: it is saved back when the stored env
/// failed its CRC).
pub const SCRATCH_VARS: &[&str] = &[
    "bascule_slot",
    "bascule_load",
    "bascule_attempts",
    "bootargs",
    "bascule_load_A",
    "bascule_load_B",
    "bascule_boot",
    "bh_save",
    // U-Boot's built-in env (read with `env default -a -f; printenv`).
    "arch",
    "baudrate",
    "board",
    "board_name",
    "boot_a_script",
    "boot_efi_binary",
    "boot_efi_bootmgr",
    "boot_extlinux",
    "boot_net_usb_start",
    "boot_pci_enum",
    "boot_prefixes",
    "boot_script_dhcp",
    "boot_scripts",
    "boot_syslinux_conf",
    "boot_targets",
    "bootcmd",
    "bootcmd_dhcp",
    "bootcmd_nvme0",
    "bootcmd_qfw",
    "bootcmd_scsi0",
    "bootcmd_usb0",
    "bootcmd_virtio0",
    "bootdelay",
    "cpu",
    "distro_bootcmd",
    "efi_dtb_prefixes",
    "fdt_addr",
    "fdt_high",
    "initrd_high",
    "kernel_addr_r",
    "load_efi_dtb",
    "loadaddr",
    "nvme_boot",
    "nvme_init",
    "pxefile_addr_r",
    "ramdisk_addr_r",
    "scan_dev_for_boot",
    "scan_dev_for_boot_part",
    "scan_dev_for_efi",
    "scan_dev_for_extlinux",
    "scan_dev_for_scripts",
    "scriptaddr",
    "scsi_boot",
    "scsi_init",
    "usb_boot",
    "vendor",
    "virtio_boot",
    "virtio_init",
];

/// A case is booted again after a no-slot reset, up to this many boots in all.
pub const MAX_BOOTS_PER_CASE: usize = 2;

/// What the model predicts for one boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prediction {
    Decided {
        decision: BootDecision,
        saved: EnvVars,
    },
    /// The model cannot read an env that U-Boot reads.
    Unreadable(DecodeError),
}

/// The model's prediction for one env image.
pub fn predict(image: &[u8]) -> Prediction {
    let mut vars = match codec().decode(image) {
        Ok(copy) => copy.vars,
        // U-Boot falls back to its built-in env, which has no BOOT_* variable.
        Err(DecodeError::Crc { .. }) => EnvVars::new(),
        Err(e) => return Prediction::Unreadable(e),
    };
    let decision = RaucUboot.boot(&mut vars);
    Prediction::Decided {
        decision,
        saved: vars,
    }
}

fn codec() -> UbootCodec {
    UbootCodec::new(ENV_SIZE, false).expect("a valid env size")
}

/// One boot where U-Boot and the model differ.
#[derive(Debug, Clone)]
pub struct Disagreement {
    pub case: String,
    /// 1 for the first boot, 2 for the boot after a reset.
    pub boot: usize,
    /// The env before the boot (without scratch), or why it does not decode.
    pub input: Result<EnvVars, DecodeError>,
    pub uboot: UbootDecision,
    pub uboot_saved: Result<EnvVars, DecodeError>,
    pub model: Prediction,
    /// What differs, one entry per item.
    pub differences: Vec<String>,
    pub console: String,
}

/// The counts of a differential run and its disagreements.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub envs: usize,
    pub boots: usize,
    pub qemu_runs: usize,
    pub disagreements: Vec<Disagreement>,
}

impl Report {
    /// The summary line: `envs N, boots N, disagreements N`.
    pub fn summary(&self) -> String {
        format!(
            "envs {}, boots {}, disagreements {}",
            self.envs,
            self.boots,
            self.disagreements.len()
        )
    }
}

/// Boots every case (twice after a no-slot reset) and compares with the model.
pub fn run(harness: &mut UbootHarness, cases: &[UbootCase]) -> Result<Report, UbootError> {
    let mut report = Report {
        envs: cases.len(),
        ..Report::default()
    };
    let mut pending: Vec<(usize, Vec<u8>)> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c.env.image()))
        .collect();
    let runs_before = harness.runs;
    for boot in 1..=MAX_BOOTS_PER_CASE {
        let images: Vec<Vec<u8>> = pending.iter().map(|(_, img)| img.clone()).collect();
        let results = harness.boot_each(&images)?;
        report.boots += results.len();
        let mut again = Vec::new();
        for ((index, image), real) in pending.iter().zip(results) {
            if let Some(d) = compare(&cases[*index].name, boot, image, &real) {
                report.disagreements.push(d);
            }
            if real.decision == UbootDecision::NoSlotReset {
                again.push((*index, real.saved));
            }
        }
        pending = again;
    }
    report.qemu_runs = harness.runs - runs_before;
    Ok(report)
}

/// Compares one real boot of `image` with the model; `None` when they agree.
pub fn compare(case: &str, boot: usize, image: &[u8], real: &UbootBoot) -> Option<Disagreement> {
    let model = predict(image);
    let uboot_saved = codec().decode(&real.saved).map(|c| without_scratch(c.vars));
    let mut differences = Vec::new();
    match &model {
        Prediction::Unreadable(e) => differences.push(format!("model cannot read the env: {e}")),
        Prediction::Decided { decision, saved } => {
            if !same_decision(*decision, real.decision) {
                differences.push("decision".into());
            }
            match &uboot_saved {
                Ok(theirs) => {
                    differences.extend(var_differences(theirs, &without_scratch(saved.clone())))
                }
                Err(e) => differences.push(format!("U-Boot's saved env does not decode: {e}")),
            }
        }
    }
    if differences.is_empty() {
        return None;
    }
    Some(Disagreement {
        case: case.into(),
        boot,
        input: codec().decode(image).map(|c| without_scratch(c.vars)),
        uboot: real.decision,
        uboot_saved,
        model,
        differences,
        console: real.console.clone(),
    })
}

fn same_decision(model: BootDecision, real: UbootDecision) -> bool {
    match (model, real) {
        (BootDecision::Boot(a), UbootDecision::Boot(b)) => a == b,
        (BootDecision::NoSlotResetCounters, UbootDecision::NoSlotReset) => true,
        _ => false,
    }
}

fn without_scratch(mut vars: EnvVars) -> EnvVars {
    vars.retain(|name, _| !SCRATCH_VARS.iter().any(|s| name == *s));
    vars
}

/// `NAME: U-Boot "x", model "y"` for every variable whose value differs.
fn var_differences(uboot: &EnvVars, model: &EnvVars) -> Vec<String> {
    let names: BTreeSet<&EnvName> = uboot.keys().chain(model.keys()).collect();
    let show = |v: Option<&EnvValue>| v.map_or("missing".to_string(), |v| format!("{v:?}"));
    names
        .into_iter()
        .filter(|n| uboot.get(*n) != model.get(*n))
        .map(|n| {
            format!(
                "{n}: U-Boot {}, model {}",
                show(uboot.get(n)),
                show(model.get(n))
            )
        })
        .collect()
}

fn show_vars(vars: &Result<EnvVars, DecodeError>) -> String {
    match vars {
        Ok(vars) => {
            let pairs: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!("{{{}}}", pairs.join(", "))
        }
        Err(e) => format!("(does not decode: {e})"),
    }
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "case {:?}, boot {}: env {}",
            self.case,
            self.boot,
            show_vars(&self.input)
        )?;
        writeln!(
            f,
            "  U-Boot: {}, saved {}",
            self.uboot,
            show_vars(&self.uboot_saved)
        )?;
        match &self.model {
            Prediction::Decided { decision, saved } => writeln!(
                f,
                "  model : {}, saved {}",
                show_decision(*decision),
                show_vars(&Ok(without_scratch(saved.clone())))
            )?,
            Prediction::Unreadable(e) => writeln!(f, "  model : cannot read the env: {e}")?,
        }
        write!(f, "  differs: {}", self.differences.join("; "))
    }
}

fn show_decision(decision: BootDecision) -> String {
    match decision {
        BootDecision::Boot(slot) => format!("boot {slot}"),
        BootDecision::NoSlotResetCounters => "no slot, reset".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bascule_partitions::SlotName;

    fn image(pairs: &[(&str, &str)]) -> Vec<u8> {
        let vars = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        codec().encode(&vars, 0).unwrap()
    }

    fn real(decision: UbootDecision, saved: &[(&str, &str)]) -> UbootBoot {
        UbootBoot {
            decision,
            saved: image(saved),
            console: String::new(),
        }
    }

    #[test]
    fn an_agreeing_boot_is_no_disagreement_and_scratch_is_ignored() {
        let env = image(&[
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "3"),
        ]);
        let uboot = real(
            UbootDecision::Boot(SlotName::A),
            &[
                ("BOOT_ORDER", "A B"),
                ("BOOT_A_LEFT", "2"),
                ("BOOT_B_LEFT", "3"),
                ("bootargs", "x"),
            ],
        );
        assert!(compare("fresh", 1, &env, &uboot).is_none());
    }

    #[test]
    fn a_different_slot_and_counter_are_reported() {
        let env = image(&[
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "3"),
        ]);
        let uboot = real(
            UbootDecision::Boot(SlotName::B),
            &[
                ("BOOT_ORDER", "A B"),
                ("BOOT_A_LEFT", "3"),
                ("BOOT_B_LEFT", "2"),
            ],
        );
        let d = compare("fresh", 1, &env, &uboot).unwrap();
        assert_eq!(d.differences.len(), 3, "{d}");
        let text = d.to_string();
        assert!(
            text.contains("U-Boot: boot B") && text.contains("model : boot A"),
            "{text}"
        );
        assert!(
            text.contains("BOOT_A_LEFT: U-Boot \"3\", model \"2\""),
            "{text}"
        );
    }

    #[test]
    fn a_bad_crc_is_predicted_from_an_empty_env() {
        let prediction = predict(&vec![0xff; ENV_SIZE]);
        let Prediction::Decided { saved, decision } = prediction else {
            panic!("an erased env is U-Boot's default env, not unreadable");
        };
        // The script then fills in the order and the counters, and boots A.
        assert_eq!(saved.get_str("BOOT_ORDER"), Some("A B"));
        assert_eq!(
            decision,
            BootDecision::Boot(bascule_partitions::SlotName::A)
        );
    }

    #[test]
    fn no_scratch_name_hides_a_boot_or_bascule_variable() {
        for name in SCRATCH_VARS {
            assert!(
                !name.starts_with("BOOT_") && !name.starts_with("BASCULE_"),
                "{name}"
            );
        }
    }
}
