//! Unit tests of the layout file: a valid layout places as expected, and each bad
//! layout is refused by its own error naming the partition.
use std::path::Path;

use super::*;

/// A U-Boot board: env at raw offsets before the first partition, SPL at 32 KiB.
const BOARD: &str = r#"
compatible = "acme,board"
[disk]
size = "64MiB"
alignment = "1MiB"

[[partition]]
name = "rootfs-a"
type = "linux"
size = "16MiB"

[[partition]]
name = "rootfs-b"
type = "linux"
size = "16MiB"

[[partition]]
name = "data"
type = "linux"
size = "rest"
attributes = [60]

[slots.rootfs]
A = "rootfs-a"
B = "rootfs-b"

[data]
partition = "data"

[bootenv]
backend = "uboot"
offset = "512KiB"
redundant_offset = "768KiB"
size = "16KiB"

[[raw]]
image = "spl.bin"
offset = "32KiB"
"#;

fn sizes(path: &Path) -> Option<u64> {
    match path.to_str()? {
        "spl.bin" => Some(100_000),
        "big.img" => Some(20 << 20),
        "small.img" => Some(4096),
        "system.toml" | "boot.scr" => Some(100),
        _ => None,
    }
}

fn plan(text: &str) -> Result<DiskPlan, DiskLayoutError> {
    DiskLayout::parse(text).unwrap().plan(None, &sizes)
}

fn refused(text: &str) -> DiskLayoutError {
    plan(text).unwrap_err()
}

#[test]
fn a_board_layout_places_aligned_partitions_and_the_rest() {
    let p = plan(BOARD).unwrap();
    assert_eq!(p.sectors, 64 << 11);
    let lbas: Vec<_> = p
        .partitions
        .iter()
        .map(|p| (p.first_lba, p.last_lba))
        .collect();
    let mib = 2048;
    assert_eq!(lbas[0], (mib, 17 * mib - 1));
    assert_eq!(lbas[1], (17 * mib, 33 * mib - 1));
    // The rest ends before the backup entries (33 sectors at the end).
    assert_eq!(lbas[2], (33 * mib, 64 * mib - 34));
    assert_eq!(p.partitions[2].attributes, 1 << 60);
    assert_eq!(
        p.partitions[0].type_guid,
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    );
    assert_eq!(p.slots["rootfs"], [0, 1]);
    assert_eq!(p.data, Some((2, "data".into())));
    let env = EnvPlace::Uboot {
        offset: 512 << 10,
        redundant_offset: Some(768 << 10),
        size: 16 << 10,
    };
    assert_eq!(p.env, env);
    assert_eq!(p.raw[0].size, 100_000);
}

#[test]
fn env_in_a_partition_is_placed_from_its_start() {
    let text = BOARD
        .replace(
            "[[partition]]\nname = \"rootfs-a\"",
            "[[partition]]\nname = \"uboot-env\"\ntype = \"u-boot-env\"\nsize = \"1MiB\"\n\n[[partition]]\nname = \"rootfs-a\"",
        )
        .replace("offset = \"512KiB\"", "partition = \"uboot-env\"\noffset = 0")
        .replace("redundant_offset = \"768KiB\"", "redundant_offset = \"64KiB\"");
    let p = plan(&text).unwrap();
    let env = EnvPlace::Uboot {
        offset: 1 << 20,
        redundant_offset: Some((1 << 20) + (64 << 10)),
        size: 16 << 10,
    };
    assert_eq!(p.env, env);
}

#[test]
fn whole_device_size_needs_the_device() {
    let text = BOARD.replace("size = \"64MiB\"", "size = \"device\"");
    let layout = DiskLayout::parse(&text).unwrap();
    assert_eq!(
        layout.plan(None, &sizes).unwrap_err(),
        DiskLayoutError::DeviceSizeUnknown
    );
    assert_eq!(
        layout.plan(Some(128 << 20), &sizes).unwrap().sectors,
        128 << 11
    );
}

#[test]
fn overlap_names_both_partitions() {
    let text = BOARD.replace(
        "name = \"rootfs-b\"",
        "name = \"rootfs-b\"\nstart = \"10MiB\"",
    );
    let err = refused(&text);
    assert_eq!(
        err,
        DiskLayoutError::Overlap {
            first: "rootfs-a".into(),
            second: "rootfs-b".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "partition \"rootfs-a\" overlaps partition \"rootfs-b\""
    );
}

#[test]
fn image_larger_than_its_partition_is_refused() {
    let text = BOARD.replace(
        "name = \"rootfs-a\"",
        "name = \"rootfs-a\"\nimage = \"big.img\"",
    );
    let err = refused(&text);
    assert!(
        matches!(&err, DiskLayoutError::PartitionTooSmall { partition, size, .. } if partition == "rootfs-a" && *size == 20 << 20),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("\"rootfs-a\" holds 16777216 bytes, too small"));
    let fits = BOARD.replace(
        "name = \"rootfs-a\"",
        "name = \"rootfs-a\"\nimage = \"small.img\"",
    );
    assert_eq!(
        plan(&fits).unwrap().partitions[0].image.as_ref().unwrap().1,
        4096
    );
}

#[test]
fn misaligned_start_is_refused() {
    let text = BOARD.replace(
        "name = \"rootfs-b\"",
        "name = \"rootfs-b\"\nstart = \"17000KiB\"",
    );
    let err = refused(&text);
    assert!(
        matches!(&err, DiskLayoutError::Misaligned { partition, alignment, .. } if partition == "rootfs-b" && *alignment == 1 << 20),
        "{err}"
    );
}

#[test]
fn duplicate_name_is_refused() {
    let text = BOARD.replace("name = \"rootfs-b\"", "name = \"rootfs-a\"");
    assert_eq!(
        refused(&text),
        DiskLayoutError::DuplicateName {
            partition: "rootfs-a".into()
        }
    );
}

#[test]
fn env_overlapping_a_partition_is_refused() {
    let text = BOARD.replace(
        "redundant_offset = \"768KiB\"",
        "redundant_offset = \"1020KiB\"",
    );
    let err = refused(&text);
    assert!(
        matches!(&err, DiskLayoutError::EnvOverlap { partition, .. } if partition == "rootfs-a"),
        "{err}"
    );
    let in_gpt = BOARD.replace("offset = \"512KiB\"", "offset = \"8KiB\"");
    assert!(matches!(refused(&in_gpt), DiskLayoutError::EnvInGpt { .. }));
}

#[test]
fn env_past_its_partition_is_refused() {
    let text = BOARD
        .replace(
            "[bootenv]\nbackend = \"uboot\"",
            "[bootenv]\nbackend = \"uboot\"\npartition = \"data\"",
        )
        .replace("[data]\npartition = \"data\"\n", "")
        .replace(
            "redundant_offset = \"768KiB\"",
            "redundant_offset = \"64MiB\"",
        );
    let err = refused(&text);
    assert!(
        matches!(&err, DiskLayoutError::EnvOutsidePartition { partition, .. } if partition == "data"),
        "{err}"
    );
}

#[test]
fn raw_image_over_a_partition_or_the_gpt_is_refused() {
    let text = BOARD.replace("offset = \"32KiB\"", "offset = \"1000KiB\"");
    let err = refused(&text);
    assert!(
        err.to_string().contains("overlaps partition \"rootfs-a\""),
        "{err}"
    );
    let text = BOARD.replace("offset = \"32KiB\"", "offset = \"8KiB\"");
    assert!(refused(&text).to_string().contains("overlaps the GPT"));
    let text = BOARD.replace("offset = \"32KiB\"", "offset = \"500KiB\"");
    assert!(refused(&text).to_string().contains("overlaps the boot env"));
}

#[test]
fn partition_past_the_disk_is_refused() {
    let text = BOARD.replace("size = \"rest\"", "size = \"40MiB\"");
    let err = refused(&text);
    assert!(
        matches!(&err, DiskLayoutError::DoesNotFit { partition, .. } if partition == "data"),
        "{err}"
    );
}

#[test]
fn rest_before_the_last_partition_is_refused() {
    let text = BOARD.replacen("size = \"16MiB\"", "size = \"rest\"", 1);
    assert_eq!(
        refused(&text),
        DiskLayoutError::RestNotLast {
            partition: "rootfs-a".into()
        }
    );
}

#[test]
fn unknown_type_names_the_known_ones() {
    let text = BOARD.replacen("type = \"linux\"", "type = \"linx\"", 1);
    let err = refused(&text);
    assert!(
        err.to_string()
            .starts_with("partition \"rootfs-a\": type \"linx\" is neither"),
        "{err}"
    );
    assert!(err.to_string().contains("u-boot-env"), "{err}");
    let guid = BOARD.replacen(
        "type = \"linux\"",
        "type = \"b921b045-1df0-41c3-af44-4c6f280d3fae\"",
        1,
    );
    assert_eq!(
        plan(&guid).unwrap().partitions[0].type_guid,
        "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"
    );
}

#[test]
fn a_role_naming_no_partition_or_a_shared_one_is_refused() {
    let text = BOARD.replace("B = \"rootfs-b\"", "B = \"rootfs-c\"");
    assert!(
        matches!(refused(&text), DiskLayoutError::UnknownPartition { role, .. } if role == "slots.rootfs.B")
    );
    let text = BOARD.replace("B = \"rootfs-b\"", "B = \"rootfs-a\"");
    assert!(
        matches!(refused(&text), DiskLayoutError::SharedPartition { partition, .. } if partition == "rootfs-a")
    );
}

#[test]
fn size_not_in_sectors_and_bad_attribute_are_refused() {
    let text = BOARD.replacen("size = \"16MiB\"", "size = 1000", 1);
    assert!(matches!(
        refused(&text),
        DiskLayoutError::SizeNotSectors { size: 1000, .. }
    ));
    let text = BOARD.replace("attributes = [60]", "attributes = [64]");
    assert!(matches!(
        refused(&text),
        DiskLayoutError::BadAttribute { bit: 64, .. }
    ));
    let text = BOARD.replace("alignment = \"1MiB\"", "alignment = 1000");
    assert!(matches!(
        refused(&text),
        DiskLayoutError::BadAlignment { .. }
    ));
    let text = BOARD.replace("size = \"64MiB\"", "size = \"64MB\"");
    assert!(refused(&text).to_string().contains("disk.size"));
}

#[test]
fn device_config_goes_on_data_or_boot_only() {
    let config = "\n[device_config]\npartition = \"rootfs-a\"\nsystem_toml = \"system.toml\"\n";
    let err = refused(&format!("{BOARD}{config}"));
    assert!(
        matches!(&err, DiskLayoutError::ConfigPartition { partition } if partition == "rootfs-a"),
        "{err}"
    );
    let ok = config.replace("rootfs-a", "data");
    let p = plan(&format!("{BOARD}{ok}")).unwrap();
    assert_eq!(p.device_config.unwrap().1.dir, "etc/bascule");
}

#[test]
fn grub_env_needs_a_boot_partition() {
    let text = BOARD
        .replace(
            "offset = \"512KiB\"\nredundant_offset = \"768KiB\"\nsize = \"16KiB\"\n",
            "path = \"grubenv\"\n",
        )
        .replace("backend = \"uboot\"", "backend = \"grub\"");
    assert_eq!(refused(&text), DiskLayoutError::GrubWithoutBoot);
}

#[test]
fn the_example_layouts_in_the_repository_plan() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let layout = DiskLayout::load(&path).unwrap();
            let any_file = |_: &Path| Some(1024);
            layout
                .plan(Some(1 << 30), &any_file)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 2, "examples: {seen}");
}

#[test]
fn the_layout_doc_example_plans() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/layout.md");
    let text = std::fs::read_to_string(doc).unwrap();
    let start = text.find("```toml\n").unwrap() + 8;
    let end = start + text[start..].find("```").unwrap();
    let layout = DiskLayout::parse(&text[start..end]).unwrap();
    let any_file = |_: &Path| Some(1024);
    let plan = layout.plan(None, &any_file).unwrap();
    assert_eq!(plan.partitions.len(), 4);
    assert_eq!(plan.raw[0].offset, 32 << 10);
}
