//! `bascule provision` end to end on image files: the table read back by `sfdisk
//! --json` and checked by `sgdisk -v`; the initial U-Boot env read by `fw_printenv`
//! with the board's default variables; the boot and data file systems read by
//! `mtools` and `debugfs`; a re-run is a no-op, and rewrites boot content that differs
//! from the sources; a half-written slot A, a torn table and a cut before the env are
//! completed by a re-run; `--verify` catches a flipped byte in slot A and in the
//! table; GRUB and GPT-attribute layouts; a loop device. Refusals are in
//! `provision_refusals.rs`. A missing tool fails the test (see `tool`).
mod common;
mod provision_station;
#[path = "../hal/tests/tool/mod.rs"]
mod tool;

use std::path::Path;
use std::process::Command;

use common::xorshift_bytes;
use provision_station::*;

const GRUB_LAYOUT: &str = r#"
compatible = "acme,board"
[disk]
size = "64MiB"
[[partition]]
name = "esp"
type = "esp"
size = "8MiB"
[[partition]]
name = "rootfs-a"
type = "root-x86-64"
size = "16MiB"
[[partition]]
name = "rootfs-b"
type = "root-x86-64"
size = "16MiB"
[[partition]]
name = "data"
type = "linux"
size = "rest"
[slots.rootfs]
A = "rootfs-a"
B = "rootfs-b"
[data]
partition = "data"
[bootenv]
backend = "grub"
path = "EFI/BOOT/grubenv"
[boot]
partition = "esp"
filesystem = "vfat"
label = "ESP"
[[boot.file]]
source = "boot.scr"
path = "EFI/BOOT/grub.cfg"
"#;

/// A loop device this test attached; detached when dropped.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let detached = Command::new("losetup").args(["-d", &self.0]).status();
        assert!(detached.is_ok_and(|s| s.success()), "losetup -d {}", self.0);
    }
}

#[test]
fn an_image_file_is_provisioned_and_read_back_by_the_standard_tools() {
    let tools = [
        ("sfdisk", "fdisk"),
        ("sgdisk", "gdisk"),
        ("fw_printenv", "libubootenv-tool"),
    ];
    let more = [
        ("mcopy", "mtools"),
        ("mkfs.vfat", "dosfstools"),
        ("debugfs", "e2fsprogs"),
    ];
    if !tools.iter().chain(&more).all(|(t, p)| tool::require(t, p)) {
        return;
    }
    let st = Station::new(LAYOUT);
    let run = st.provision(&[]).ok();
    assert!(run.stdout.contains("provisioned"), "{}", run.stdout);
    let disk = st.disk();
    assert_eq!(disk.len(), 64 << 20);
    let a = SLOT_A as usize;
    assert_eq!(&disk[a..a + IMAGE_LEN], &xorshift_bytes(7, IMAGE_LEN)[..]);
    assert_eq!(
        &disk[32 << 10..(32 << 10) + 5000],
        &xorshift_bytes(9, 5000)[..]
    );

    let json: serde_json::Value = serde_json::from_str(&tool_output(
        "sfdisk",
        &["--json", "disk.img"],
        st.dir.path(),
    ))
    .unwrap();
    let table = &json["partitiontable"];
    assert_eq!(table["label"], "gpt");
    let report = st.report();
    assert_eq!(table["id"], report["table"]["disk_guid"]);
    let parts = table["partitions"].as_array().unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["boot", "rootfs-a", "rootfs-b", "data"]);
    let starts: Vec<u64> = parts.iter().map(|p| p["start"].as_u64().unwrap()).collect();
    assert_eq!(starts, [2048, 18432, 51200, 83968]);
    assert_eq!(parts[1]["size"], 32768);
    assert_eq!(parts[3]["attrs"], "GUID:60");
    assert_eq!(parts[0]["type"], "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    for (p, r) in parts
        .iter()
        .zip(report["table"]["partitions"].as_array().unwrap())
    {
        assert_eq!(p["uuid"], r["unique_guid"]);
    }
    let verified = tool_output("sgdisk", &["-v", "disk.img"], st.dir.path());
    assert!(verified.contains("No problems found"), "{verified}");

    std::fs::write(
        st.path("fw_env.config"),
        "disk.img 0x80000 0x4000\ndisk.img 0xC0000 0x4000\n",
    )
    .unwrap();
    let env = tool_output("fw_printenv", &["-c", "fw_env.config"], st.dir.path());
    for line in [
        "bootcmd=run distro_bootcmd",
        "board_name=acme",
        "BOOT_ORDER=A",
        "BOOT_B_LEFT=0",
        "BASCULE_A_VERSION=1.0.0",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in:\n{env}");
    }
    assert_eq!(report["env"]["board_name"], "acme");
    assert_eq!(report["slots"][0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(report["versions"]["rootfs"], "1.0.0");

    let boot = tool_output(
        "mtype",
        &["-i", "disk.img@@1M", "::/extlinux/boot.scr"],
        st.dir.path(),
    );
    assert_eq!(boot, "echo booting\n");
    let data = format!("disk.img?offset={}", 83968 * 512);
    let listing = tool_output(
        "debugfs",
        &["-R", "ls -p /etc/bascule/keyring", &data],
        st.dir.path(),
    );
    assert!(listing.contains("/k.pub/"), "{listing}");
    let config = tool_output(
        "debugfs",
        &["-R", "cat /etc/bascule/system.toml", &data],
        st.dir.path(),
    );
    assert_eq!(config, DEVICE_TOML);
    let state = tool_output("debugfs", &["-R", "ls -p /", &data], st.dir.path());
    assert!(state.contains("/bascule/"), "{state}");
}

#[test]
fn a_rerun_is_a_no_op_and_verify_passes_alone() {
    let st = Station::new(LAYOUT);
    st.provision(&[]).ok();
    let before = st.disk();
    let run = st.provision(&[]).ok();
    assert!(run.stdout.contains("already provisioned"), "{}", run.stdout);
    assert!(st.disk() == before, "a no-op run changed the disk");
    assert_eq!(st.report()["outcome"], "already-provisioned");
    let run = st.verify().ok();
    assert!(run.stdout.contains("matches the report"), "{}", run.stdout);
}

/// A disk whose table, slots and env are in place but whose boot file, raw image or
/// keyring is not what the station now has is not "already provisioned": the run
/// names what differs and writes the content again.
#[test]
fn a_rerun_rewrites_boot_content_that_differs_from_the_sources() {
    let st = Station::new(LAYOUT);
    st.provision(&[]).ok();
    std::fs::write(st.path("boot.scr"), "echo booting v2 script\n").unwrap();
    let mut disk = st.disk();
    disk[32 << 10] ^= 0x01;
    st.set_disk(&disk);
    std::fs::copy(st.path("k.pub"), st.path("keys/second.pub")).unwrap();
    let run = st.provision(&[]).ok();
    assert!(
        !run.stdout.contains("already provisioned"),
        "{}",
        run.stdout
    );
    assert_eq!(st.report()["outcome"], "resumed");
    let steps = st.report()["steps"].to_string();
    for what in [
        "boot.scr on partition boot",
        "extlinux/boot.scr on partition boot",
        "spl.bin at byte 32768",
        "etc/bascule/keyring/second.pub on partition data",
    ] {
        assert!(steps.contains(what), "{what} not in {steps}");
    }
    let image = format!("{}@@{}", st.p("disk.img"), 1 << 20);
    let script = tool_output("mtype", &["-i", &image, "::/boot.scr"], st.dir.path());
    assert_eq!(script, "echo booting v2 script\n");
    assert_eq!(st.disk()[32 << 10], xorshift_bytes(9, 5000)[0]);
    let run = st.provision(&[]).ok();
    assert!(run.stdout.contains("already provisioned"), "{}", run.stdout);
}

#[test]
fn a_half_written_slot_a_is_completed_without_force() {
    let st = Station::new(LAYOUT);
    st.provision(&[]).ok();
    let done = st.disk();
    let mut cut = done.clone();
    // Half of slot A never landed, and the env was never written.
    let a = SLOT_A as usize;
    cut[a + IMAGE_LEN / 2..a + IMAGE_LEN].fill(0);
    cut[ENV_A as usize..(ENV_A + (512 << 10)) as usize].fill(0);
    st.set_disk(&cut);
    let run = st.provision(&["--verify"]).ok();
    assert!(run.stdout.contains("resumed"), "{}", run.stdout);
    assert!(
        run.stdout.contains("slot rootfs.A: v1.0.0 written"),
        "{}",
        run.stdout
    );
    assert_eq!(st.report()["outcome"], "resumed");
    let after = st.disk();
    assert_eq!(&after[a..a + IMAGE_LEN], &done[a..a + IMAGE_LEN]);
    assert_eq!(
        &after[..34 * 512],
        &done[..34 * 512],
        "the table (and its GUIDs) were kept"
    );
}

#[test]
fn a_torn_primary_table_is_repaired_from_the_backup() {
    let st = Station::new(LAYOUT);
    st.provision(&[]).ok();
    let done = st.disk();
    let mut torn = done.clone();
    torn[1024..1024 + 300].fill(0xaa); // the first entries of the primary array
    st.set_disk(&torn);
    st.verify().fails_with(&["primary GPT", "CRC"]);
    let run = st.provision(&[]).ok();
    assert!(run.stdout.contains("already provisioned"), "{}", run.stdout);
    assert!(st.disk() == done, "the primary was not rewritten as it was");
}

#[test]
fn verify_catches_a_flipped_byte_in_slot_a_and_in_the_table() {
    let st = Station::new(LAYOUT);
    st.provision(&[]).ok();
    let done = st.disk();
    let mut flipped = done.clone();
    flipped[SLOT_A as usize + 12345] ^= 1;
    st.set_disk(&flipped);
    st.verify().fails_with(&["slot rootfs.A", "SHA-256"]);

    let mut flipped = done.clone();
    let backup_entries = (64 << 20) - 33 * 512;
    flipped[backup_entries + 128 + 60] ^= 1; // a name byte of the backup's entry 2
    st.set_disk(&flipped);
    st.verify().fails_with(&["backup GPT", "CRC"]);
    st.set_disk(&done);
    st.verify().ok();
}

#[test]
fn a_grub_layout_gets_its_env_in_the_esp() {
    if !tool::require("mtype", "mtools") || !tool::require("grub-editenv", "grub-common") {
        return;
    }
    let st = Station::new(GRUB_LAYOUT);
    let all = ["--report", "report.json"];
    st.provision_disk("disk.img", &all).ok();
    let grub_cfg = tool_output(
        "mtype",
        &["-i", "disk.img@@1M", "::/EFI/BOOT/grub.cfg"],
        st.dir.path(),
    );
    assert_eq!(grub_cfg, "echo booting\n");
    tool_output(
        "mcopy",
        &["-i", "disk.img@@1M", "::/EFI/BOOT/grubenv", "grubenv"],
        st.dir.path(),
    );
    let env = tool_output("grub-editenv", &["grubenv", "list"], st.dir.path());
    for line in ["ORDER=A B", "A_OK=1", "B_OK=0"] {
        assert!(env.lines().any(|l| l == line), "{line} not in:\n{env}");
    }
    assert!(env.lines().any(|l| l == "BASCULE_A_VERSION=1.0.0"), "{env}");
    let run = st.provision_disk("disk.img", &all).ok();
    assert!(run.stdout.contains("already provisioned"), "{}", run.stdout);
}

#[test]
fn a_gpt_attribute_layout_boots_slot_a() {
    let layout = LAYOUT
        .replace(
            "[[partition]]\nname = \"data\"",
            "[[partition]]\nname = \"bascule-env\"\ntype = \"linux-reserved\"\nsize = \"1MiB\"\n[[partition]]\nname = \"data\"",
        )
        .replace(
            "backend = \"uboot\"\noffset = \"512KiB\"\nredundant_offset = \"768KiB\"\nsize = \"16KiB\"",
            "backend = \"gpt\"",
        );
    let st = Station::new(&layout);
    let all = ["--report", "report.json", "--verify"];
    st.provision_disk("disk.img", &all).ok();
    let report = st.report();
    assert_eq!(report["env"]["GPT_A_SUCCESSFUL"], "1");
    assert_eq!(report["env"]["GPT_B_PRIORITY"], "0");
    let a = &report["table"]["partitions"][1];
    assert_eq!(a["attributes"].as_u64().unwrap() >> 56 & 1, 1, "{a}");
    let run = st.provision_disk("disk.img", &all).ok();
    assert!(run.stdout.contains("already provisioned"), "{}", run.stdout);
}

/// The table write cut before each of its writes and syncs, after the last, and in
/// the middle of each write (the hal's campaign, `hal/tests/gpt_create.rs`, cuts at
/// every byte and sector): a re-run without `--force` completes the disk, and
/// `--verify` passes.
#[test]
fn a_run_cut_during_the_table_write_is_completed_by_a_rerun() {
    use bascule_hal::block::{BlockOp, CutPlan};
    use bascule_hal::gpt::create::write_table;
    use bascule_hal::FaultyBlock;
    use bascule_partitions::disk_layout::DiskLayout;

    let st = Station::new(LAYOUT);
    let layout = DiskLayout::load(&st.path("layout.toml")).unwrap();
    let sizes = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
    let plan = layout.plan(None, &sizes).unwrap();
    let table = bascule::provision::table::new_table(&plan, None).unwrap();
    let blank = vec![0u8; 64 << 20];
    let mut clean = FaultyBlock::new("disk", blank.clone());
    write_table(&mut clean, &table).unwrap();
    let mut cuts = Vec::new();
    for (i, op) in clean.ops().iter().enumerate() {
        cuts.push(CutPlan::before(i as u64));
        if let BlockOp::Write { len, .. } = op {
            cuts.push(CutPlan::torn_prefix(i as u64, len / 2));
        }
    }
    cuts.push(CutPlan::before(clean.ops().len() as u64));
    for cut in cuts {
        let mut dev = FaultyBlock::new("disk", blank.clone());
        dev.arm(cut);
        let written = write_table(&mut dev, &table);
        let last = cut.at as usize == clean.ops().len();
        assert!(written.is_err() != last, "cut {cut:?}: {written:?}");
        st.set_disk(dev.after_cut().durable());
        let run = st.provision(&["--verify"]);
        assert_eq!(
            run.code, 0,
            "after cut {cut:?}: {}{}",
            run.stdout, run.stderr
        );
    }
}

#[test]
fn a_loop_device_is_provisioned_like_a_file() {
    if !tool::require("losetup", "mount") || !tool::require("sfdisk", "fdisk") {
        return;
    }
    let st = Station::new(LAYOUT);
    st.set_disk(&vec![0u8; 64 << 20]);
    let out = Command::new("losetup")
        .args(["-f", "--show", &st.p("disk.img")])
        .output()
        .unwrap();
    if !out.status.success() {
        tool::skip_or_fail(&format!(
            "losetup cannot attach a loop device here: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return;
    }
    let dev = Loop(String::from_utf8_lossy(&out.stdout).trim().to_string());
    let all = [
        "--defaults",
        "initial-env",
        "--report",
        "report.json",
        "--verify",
    ];
    let run = st.provision_disk(&dev.0, &all).ok();
    assert!(run.stdout.contains("provisioned"), "{}", run.stdout);
    let json = tool_output("sfdisk", &["--json", &dev.0], st.dir.path());
    assert!(json.contains("\"name\": \"rootfs-a\""), "{json}");
    let run = st.provision_disk(&dev.0, &all).ok();
    assert!(run.stdout.contains("already provisioned"), "{}", run.stdout);
    drop(dev);
    let a = SLOT_A as usize;
    assert_eq!(
        &st.disk()[a..a + IMAGE_LEN],
        &xorshift_bytes(7, IMAGE_LEN)[..]
    );
}

#[test]
fn a_forced_disk_gets_the_board_defaults_not_the_env_it_held() {
    let st = Station::new(LAYOUT);
    std::fs::write(st.path("initial-env"), "bootcmd=old\nold_var=1\n").unwrap();
    st.provision(&[]).ok();
    assert_eq!(st.report()["env"]["old_var"], "1");
    // Another layout (the data partition lost its attribute): the disk is foreign.
    std::fs::write(
        st.path("layout.toml"),
        LAYOUT.replace("attributes = [60]\n", ""),
    )
    .unwrap();
    std::fs::write(
        st.path("initial-env"),
        "bootcmd=run distro_bootcmd\nboard_name=acme\n",
    )
    .unwrap();
    st.provision(&[])
        .fails_with(&["GPT that is not this layout", "--force"]);
    st.provision(&["--force"]).ok();
    let env = &st.report()["env"];
    assert_eq!(env["board_name"], "acme", "{env}");
    assert!(
        env.get("old_var").is_none(),
        "the old env's variables were kept: {env}"
    );
}
