//! Shared fixture for the end-to-end tests: a small file-backed device in a tempdir,
//! driven through the `bascule` binary.
//!
//! The device: `disk.img` holding slots A and B (4 MiB each by default, as windows of
//! one file), a redundant U-Boot environment `uboot.env` (two 16 KiB copies), a keyring
//! with one key made by `bascule keygen`, `system.toml`, and a `cmdline` file naming
//! the booted slot. At the start A holds "v1" (random bytes), is good and booted, and
//! B holds other random bytes and is not in the boot order, as after provisioning.
//!
//! What every failure test checks is [`Fixture::assert_nothing_lost`]: the booted
//! slot's bytes are identical, and the environment is either unchanged or differs only
//! by the target having been marked unbootable; never pending.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bascule::config::SystemConfig;
use bascule::device::Device;
use bascule::slot::{state, BootState, InstalledImage, RaucUboot, SlotState};
use bascule_hal::EnvVars;
use bascule_partitions::SlotName;
use sha2::{Digest, Sha256};

mod bundle_opts;
pub use bundle_opts::BundleOpts;

/// The `compatible` string of the test device.
pub const COMPATIBLE: &str = "bascule-test-board";
/// Default slot size: 4 MiB.
pub const SLOT_SIZE: u64 = 4 << 20;
/// Size of one copy of the U-Boot environment.
pub const ENV_SIZE: u64 = 0x4000;
/// Boot attempts a new slot gets.
pub const ATTEMPTS: u8 = 3;
/// Provisioning fills at most this many leading bytes of each slot with random data;
/// the rest of a large slot stays a hole (zeros).
pub const PROVISION_RANDOM_MAX: u64 = 16 << 20;
/// Version provisioned into slot A.
pub const V1: &str = "1.0.0";

/// The outcome of one `bascule` run.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics unless the run exited 0.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "bascule failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the run exited non-zero and its stderr contains every one of
    /// `needles` (case-insensitive).
    #[track_caller]
    pub fn fails_with(self, needles: &[&str]) -> Run {
        assert_ne!(
            self.code, 0,
            "bascule succeeded but should have failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        let err = self.stderr.to_lowercase();
        for needle in needles {
            assert!(
                err.contains(&needle.to_lowercase()),
                "stderr does not name {needle:?}:\n{}",
                self.stderr
            );
        }
        self
    }
}

/// What "nothing lost" is compared against: slot hashes and the environment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The bytes of slots A and B (compared directly: hashing is slow in debug builds).
    pub slots: [Vec<u8>; 2],
    pub env: EnvVars,
    pub env_file: Vec<u8>,
    pub booted: SlotName,
}

/// A file-backed test device.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub slot_size: u64,
    /// The signing key the device trusts (`.key`).
    pub key: PathBuf,
    counter: std::cell::Cell<u32>,
}

impl Fixture {
    /// A device with 4 MiB slots, A good and booted.
    pub fn new() -> Fixture {
        Fixture::with_slot_size(SLOT_SIZE)
    }

    /// A device with `slot_size`-byte slots, A good and booted.
    pub fn with_slot_size(slot_size: u64) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let fx = Fixture {
            key: dir.path().join("signing/release.key"),
            dir,
            slot_size,
            counter: std::cell::Cell::new(0),
        };
        fx.create_files();
        fx.provision();
        fx
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config(&self) -> PathBuf {
        self.path("system.toml")
    }

    fn create_files(&self) {
        let sized = |name: &str, len: u64| {
            let f = std::fs::File::create(self.path(name)).expect("create");
            f.set_len(len).expect("set_len");
        };
        sized("disk.img", 2 * self.slot_size);
        sized("uboot.env", 2 * ENV_SIZE);
        std::fs::write(self.config(), self.system_toml("disk.img", "disk.img"))
            .expect("write config");
        self.set_cmdline("console=ttyS0 bascule.slot=A\n");
        for sub in ["keyring", "signing", "state", "images", "bundles"] {
            std::fs::create_dir_all(self.path(sub)).expect("mkdir");
        }
        self.keygen(&self.path("signing/release"));
        std::fs::copy(
            self.path("signing/release.pub"),
            self.path("keyring/release.pub"),
        )
        .expect("copy pub");
    }

    /// The system.toml text with slot A on `dev_a` at 0 and B on `dev_b` after it.
    pub fn system_toml(&self, dev_a: &str, dev_b: &str) -> String {
        let size = self.slot_size;
        format!(
            r#"compatible = "{COMPATIBLE}"
keyring = "keyring"
state_dir = "state"

[boot]
cmdline = "cmdline"
attempts = {ATTEMPTS}

[bootenv]
backend = "uboot"
path = "uboot.env"
size = {ENV_SIZE}
redundant_offset = {ENV_SIZE}

[slots.rootfs.A]
device = "{dev_a}"
offset = 0
size = {size}

[slots.rootfs.B]
device = "{dev_b}"
offset = {size}
size = {size}
"#
        )
    }

    /// Raw-writes random v1 into A and random bytes into B, then writes the env a
    /// provisioning station would: A good with v1, B not bootable.
    fn provision(&self) {
        use std::io::{Seek, SeekFrom};
        let mut disk = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path("disk.img"))
            .expect("open disk");
        let filled = self.slot_size.min(PROVISION_RANDOM_MAX) as usize;
        for (slot, seed) in [(SlotName::A, 0xA1), (SlotName::B, 0xB2)] {
            let start = slot.index() as u64 * self.slot_size;
            disk.seek(SeekFrom::Start(start)).expect("seek disk");
            disk.write_all(&xorshift_bytes(seed, filled))
                .expect("write disk");
        }
        disk.sync_all().expect("sync disk");
        let v1 = InstalledImage {
            version: V1.into(),
            security_version: 0,
        };
        let initial = state::factory_state(
            &RaucUboot,
            &EnvVars::new(),
            SlotName::A,
            Some(&v1),
            ATTEMPTS,
        );
        self.commit_env(&initial);
        assert_eq!(self.slot_state(SlotName::A), SlotState::Good);
    }

    fn device(&self) -> Device {
        let cfg = SystemConfig::load(&self.config()).expect("load config");
        Device::open(cfg).expect("open device")
    }

    /// The boot environment, read through the library.
    pub fn env(&self) -> EnvVars {
        self.device().env.load().expect("load env")
    }

    /// Replaces the boot environment.
    pub fn commit_env(&self, vars: &EnvVars) {
        self.device().env.commit(vars).expect("commit env");
    }

    /// The boot state the env describes.
    pub fn boot_state(&self) -> BootState {
        BootState::read(&RaucUboot, &self.env()).expect("read boot state")
    }

    pub fn slot_state(&self, slot: SlotName) -> SlotState {
        self.boot_state().slot(slot).state.clone()
    }

    pub fn set_cmdline(&self, text: &str) {
        std::fs::write(self.path("cmdline"), text).expect("write cmdline");
    }

    /// The slot named on the cmdline.
    pub fn booted(&self) -> SlotName {
        let text = std::fs::read_to_string(self.path("cmdline")).expect("read cmdline");
        bascule::slot::booted_slot(&text, &["bascule.slot"]).expect("cmdline names a slot")
    }

    /// All bytes of `slot`.
    pub fn slot_bytes(&self, slot: SlotName) -> Vec<u8> {
        let disk = std::fs::read(self.path("disk.img")).expect("read disk");
        let start = (slot.index() as u64 * self.slot_size) as usize;
        disk[start..start + self.slot_size as usize].to_vec()
    }

    /// The first `len` bytes of `slot`, read without loading the whole slot.
    pub fn slot_head(&self, slot: SlotName, len: usize) -> Vec<u8> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(self.path("disk.img")).expect("open disk");
        f.seek(SeekFrom::Start(slot.index() as u64 * self.slot_size))
            .expect("seek");
        let mut buf = vec![0u8; len];
        f.read_exact(&mut buf).expect("read slot head");
        buf
    }

    /// Whether the first bytes of `slot` equal the whole file `image`, compared in
    /// 1 MiB pieces without loading either.
    pub fn slot_holds(&self, slot: SlotName, image: &Path) -> bool {
        use std::io::{Read, Seek, SeekFrom};
        let mut disk = std::fs::File::open(self.path("disk.img")).expect("open disk");
        disk.seek(SeekFrom::Start(slot.index() as u64 * self.slot_size))
            .expect("seek");
        let mut img = std::fs::File::open(image).expect("open image");
        let mut left = img.metadata().expect("stat image").len();
        if left > self.slot_size {
            return false;
        }
        let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
        while left > 0 {
            let n = left.min(a.len() as u64) as usize;
            disk.read_exact(&mut a[..n]).expect("read slot");
            img.read_exact(&mut b[..n]).expect("read image");
            if a[..n] != b[..n] {
                return false;
            }
            left -= n as u64;
        }
        true
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            slots: [self.slot_bytes(SlotName::A), self.slot_bytes(SlotName::B)],
            env: self.env(),
            env_file: std::fs::read(self.path("uboot.env")).expect("read env file"),
            booted: self.booted(),
        }
    }

    /// After a failed install into `target`: the booted slot is byte-identical; the
    /// environment is unchanged or only marks `target` unbootable; `target` is not
    /// pending.
    #[track_caller]
    pub fn assert_nothing_lost(&self, before: &Snapshot, target: SlotName) {
        let booted = before.booted;
        assert_eq!(self.booted(), booted, "cmdline changed");
        assert!(
            self.slot_bytes(booted) == before.slots[booted.index()],
            "booted slot {booted} was modified"
        );
        let env = self.env();
        let marked_bad = state::begin_install(&RaucUboot, &before.env, target, booted, ATTEMPTS)
            .map(|begun| begun.vars)
            .ok();
        assert!(
            env == before.env || Some(&env) == marked_bad.as_ref(),
            "environment changed beyond marking {target} bad:\nbefore: {:?}\nafter:  {env:?}",
            before.env
        );
        let st = BootState::read(&RaucUboot, &env).expect("boot state");
        assert!(
            !matches!(st.slot(target).state, SlotState::Pending { .. }),
            "target {target} is pending after a failed install"
        );
        assert!(
            !st.pending.contains(&target),
            "BASCULE_PENDING names {target}"
        );
        assert_eq!(
            st.slot(booted).state,
            before_state(before, booted),
            "booted slot state changed"
        );
    }

    /// Nothing at all was written: both slots and the env file are byte-identical.
    #[track_caller]
    pub fn assert_untouched(&self, before: &Snapshot) {
        assert!(
            self.slot_bytes(SlotName::A) == before.slots[0],
            "slot A was modified"
        );
        assert!(
            self.slot_bytes(SlotName::B) == before.slots[1],
            "slot B was modified"
        );
        let env_file = std::fs::read(self.path("uboot.env")).expect("read env file");
        assert!(
            env_file == before.env_file,
            "the environment file was written"
        );
    }

    /// A `bascule` command for this device (config set, no terminal progress).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bascule"));
        cmd.args(args)
            .env("BASCULE_CONFIG", self.config())
            .env("RUST_LOG", "info")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `bascule ARGS` and captures its result.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from_output(self.cmd(args).output().expect("spawn bascule"))
    }

    /// Runs `bascule ARGS` with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bascule");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        // A failing install may stop reading early; a broken pipe is expected then.
        let feeder = std::thread::spawn(move || stdin.write_all(&input).is_ok());
        let out = child.wait_with_output().expect("wait bascule");
        feeder.join().expect("feeder thread");
        Run::from_output(out)
    }

    /// `bascule keygen --out PATH` (writes PATH.key and PATH.pub).
    pub fn keygen(&self, out: &Path) {
        self.run(&["keygen", "--out", &out.display().to_string()])
            .ok();
    }

    /// Writes a random image of `len` bytes and returns its path.
    pub fn image(&self, len: usize, seed: u64) -> PathBuf {
        let path = self.path(&format!("images/image-{seed}-{len}.img"));
        std::fs::write(&path, xorshift_bytes(seed, len)).expect("write image");
        path
    }

    /// `bascule bundle create` of `image` with `opts`; returns the bundle path.
    pub fn bundle(&self, image: &Path, opts: &BundleOpts) -> PathBuf {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let out = self.path(&format!(
            "bundles/{n}-{}-{}.bundle",
            opts.version, opts.compress
        ));
        let output = self.bundle_cmd(image, opts, &out).output();
        Run::from_output(output.expect("spawn bascule")).ok();
        out
    }

    /// The `bascule bundle create` command that makes `out` from `image` with `opts`
    /// (the fixture's key unless `opts` names one), not yet run.
    pub fn bundle_cmd(&self, image: &Path, opts: &BundleOpts, out: &Path) -> Command {
        let key = opts.key.clone().unwrap_or_else(|| self.key.clone());
        let args = opts.create_args(&key, image, out);
        self.cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Writes `bytes` as a bundle file named `name` and returns its path.
    pub fn write_bundle(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(&format!("bundles/{name}"));
        std::fs::write(&path, bytes).expect("write bundle");
        path
    }

    /// `bascule install PATH --progress none` plus `extra` arguments.
    pub fn install(&self, bundle: &Path, extra: &[&str]) -> Run {
        let path = bundle.display().to_string();
        let mut args = vec!["install", path.as_str(), "--progress", "none"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `bundle` (signed with the fixture's key) with its manifest replaced by
    /// `manifest` and the header's format version and required features set to
    /// `format` and `features`, signed again with the fixture's key: a bundle whose
    /// signature is good whatever it says.
    pub fn resigned(&self, bundle: &[u8], format: u16, features: u16, manifest: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer;
        let key = bascule::bundle::load_signing_key(&self.key).expect("load signing key");
        let mut out = bundle[..HEADER_LEN].to_vec();
        out[8..10].copy_from_slice(&format.to_le_bytes());
        out[10..12].copy_from_slice(&features.to_le_bytes());
        let len = u32::try_from(manifest.len()).expect("manifest length");
        out[12..16].copy_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&bundle[HEADER_LEN..HEADER_LEN + 8]); // same key id
        out.extend_from_slice(&key.sign(manifest).to_bytes());
        out.extend_from_slice(manifest);
        out.extend_from_slice(&bundle[payload_offset(bundle)..]);
        out
    }

    /// `bascule status --json`, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let run = self.run(&["status", "--json"]).ok();
        serde_json::from_str(&run.stdout).expect("status --json is JSON")
    }

    /// Installs a fresh image of `len` bytes as `opts` into the inactive slot, boots
    /// it and confirms it. Returns the image path.
    pub fn install_boot_confirm(&self, len: usize, seed: u64, opts: &BundleOpts) -> PathBuf {
        let image = self.image(len, seed);
        let bundle = self.bundle(&image, opts);
        let target = self.booted().other();
        self.install(&bundle, &[]).ok();
        self.run(&["simulate-boot"]).ok();
        assert_eq!(
            self.booted(),
            target,
            "bootloader did not boot the new slot"
        );
        self.run(&["mark-good"]).ok();
        assert_eq!(self.slot_state(target), SlotState::Good);
        image
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

/// A fixture with B confirmed and booted (version 2.0.0 of a `len`-byte image from
/// `seed`) and A still good (v1): the next install targets A.
pub fn booted_b_fixture(len: usize, seed: u64) -> Fixture {
    let fx = Fixture::new();
    fx.install_boot_confirm(len, seed, &BundleOpts::default().version("2.0.0"));
    assert_eq!(fx.booted(), SlotName::B);
    assert_eq!(fx.slot_state(SlotName::A), SlotState::Good);
    fx
}

fn before_state(before: &Snapshot, slot: SlotName) -> SlotState {
    BootState::read(&RaucUboot, &before.env)
        .expect("boot state")
        .slot(slot)
        .state
        .clone()
}

/// The bundle's manifest length (header bytes 12..16).
pub fn manifest_len(bundle: &[u8]) -> usize {
    u32::from_le_bytes(bundle[12..16].try_into().expect("4 bytes")) as usize
}

/// Bundle section offsets: (signature block, manifest, payload).
pub const HEADER_LEN: usize = 32;
pub const SIG_BLOCK_END: usize = 104;

pub fn payload_offset(bundle: &[u8]) -> usize {
    SIG_BLOCK_END + manifest_len(bundle)
}

/// `len` pseudo-random bytes from a xorshift64 generator seeded by `seed`.
pub fn xorshift_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = XorShift::new(seed);
    while out.len() < len {
        out.extend_from_slice(&x.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A xorshift64 generator.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `bascule --config CONFIG ARGS`, for tests that lay out their own device.
pub fn bascule_at(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bascule"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run bascule")
}

/// The stdout of a run that must have succeeded.
#[track_caller]
pub fn ok_stdout(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bascule failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `bascule status --json` of the device `config` describes, parsed.
pub fn status_at(config: &Path) -> serde_json::Value {
    serde_json::from_str(&ok_stdout(bascule_at(config, &["status", "--json"])))
        .expect("status json")
}

/// Slot size of the devices that tests lay out themselves (`board_bundle`).
pub const BOARD_SLOT: u64 = 1 << 20;

/// Builds `DIR/VERSION.bundle` for a device of its own (`config`, compatible
/// "board", slots of `BOARD_SLOT` bytes), signed by `DIR/release.key`.
pub fn board_bundle(dir: &Path, config: &Path, version: &str) -> PathBuf {
    let image = dir.join(format!("image-{version}"));
    let bytes: Vec<u8> = (0..BOARD_SLOT / 2 + 123)
        .map(|i| (i * 31 + version.len() as u64) as u8)
        .collect();
    std::fs::write(&image, bytes).unwrap();
    let out = dir.join(format!("{version}.bundle"));
    let key = dir.join("release.key");
    ok_stdout(bascule_at(
        config,
        &[
            "bundle",
            "create",
            "--key",
            key.to_str().unwrap(),
            "--version",
            version,
            "--compatible",
            "board",
            "--image",
            &format!("rootfs={}", image.display()),
            "--chunk-size",
            "65536",
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    out
}
