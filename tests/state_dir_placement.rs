//! `state_dir` must be on the data slot and never on a root slot, checked on REAL
//! loop devices (the test runs as root; it fails, never skips, when `losetup`,
//! `mkfs.ext4`, `mount` or root rights are missing).
//!
//! Each test attaches small ext4 images to loop devices and mounts them; a
//! [`LoopMount`] guard unmounts and detaches them when the test ends, also when it
//! panics. Root slot A is a loop device; B stays a window of the fixture's disk image.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Fixture;

/// Runs a system tool; panics naming it when it is missing or fails.
fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is needed by this test (util-linux, e2fsprogs, mount): {e}")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed (this test needs root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An ext4 image on a loop device, mounted; unmounted and detached on drop.
struct LoopMount {
    device: PathBuf,
    mount: PathBuf,
    mounted: bool,
}

impl LoopMount {
    /// Makes an 8 MiB ext4 image `image`, attaches it and mounts it at `mount`.
    fn new(image: &Path, mount: &Path) -> LoopMount {
        std::fs::File::create(image)
            .and_then(|f| f.set_len(8 << 20))
            .expect("create image");
        let device = tool(
            "losetup",
            &["--find", "--show", &image.display().to_string()],
        );
        let mut guard = LoopMount {
            device: PathBuf::from(device),
            mount: mount.to_path_buf(),
            mounted: false,
        };
        tool("mkfs.ext4", &["-q", &guard.device.display().to_string()]);
        std::fs::create_dir_all(mount).expect("create mount point");
        guard.mount();
        guard
    }

    fn mount(&mut self) {
        tool(
            "mount",
            &[
                &self.device.display().to_string(),
                &self.mount.display().to_string(),
            ],
        );
        self.mounted = true;
    }

    fn umount(&mut self) {
        tool("umount", &[&self.mount.display().to_string()]);
        self.mounted = false;
    }

    fn device(&self) -> String {
        self.device.display().to_string()
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        // Best effort, and loud: a leaked mount or loop device must be visible.
        if self.mounted {
            if let Err(e) = Command::new("umount").arg(&self.mount).status() {
                eprintln!("cleanup: umount {}: {e}", self.mount.display());
            }
        }
        if let Err(e) = Command::new("losetup").arg("-d").arg(&self.device).status() {
            eprintln!("cleanup: losetup -d {}: {e}", self.device.display());
        }
    }
}

/// Writes the fixture's config with slot A on `dev_a` and `extra` appended, `state_dir`
/// replaced by `state_dir` (or removed when `None`).
fn configure(fx: &Fixture, dev_a: &str, state_dir: Option<&Path>, extra: &str) {
    let base = fx.system_toml(dev_a, "disk.img");
    let line = match state_dir {
        Some(dir) => format!("state_dir = {:?}\n", dir.display().to_string()),
        None => String::new(),
    };
    let text = base.replace("state_dir = \"state\"\n", &line) + extra;
    std::fs::write(fx.config(), text).expect("write config");
}

#[test]
fn state_dir_on_a_root_slot_is_refused_and_on_another_filesystem_accepted() {
    let fx = Fixture::new();
    let root_a = LoopMount::new(&fx.path("root-a.ext4"), &fx.path("mnt-a"));
    let on_root = fx.path("mnt-a/var/lib/bascule");
    configure(&fx, &root_a.device(), Some(&on_root), "");
    for args in [&["status"][..], &["mark-good"], &["mark-bad", "B"]] {
        fx.run(args).fails_with(&[
            &format!(
                "state_dir {} is on root slot rootfs.A ({})",
                on_root.display(),
                root_a.device()
            ),
            "each root slot would keep its own security floor",
            "[data]",
        ]);
    }
    let elsewhere = fx.path("state");
    configure(&fx, &root_a.device(), Some(&elsewhere), "");
    let run = fx.run(&["status"]).ok();
    assert!(run.stdout.contains("(on no root slot)"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("file {}/security-floor", elsewhere.display())),
        "{}",
        run.stdout
    );
}

#[test]
fn state_dir_defaults_to_the_data_slot_and_is_refused_when_it_is_not_mounted() {
    let fx = Fixture::new();
    let root_a = LoopMount::new(&fx.path("root-a.ext4"), &fx.path("mnt-a"));
    let mut data = LoopMount::new(&fx.path("data.ext4"), &fx.path("data"));
    let table = format!(
        "\n[data]\ndevice = {:?}\nmount = {:?}\n",
        data.device(),
        data.mount.display().to_string()
    );
    configure(&fx, &root_a.device(), None, &table);
    let run = fx.run(&["status"]).ok();
    assert!(
        run.stdout.contains(&format!(
            "on the data slot {} mounted at {}",
            data.device(),
            data.mount.display()
        )),
        "{}",
        run.stdout
    );
    let run = fx.run(&["status", "--json"]).ok();
    assert!(
        run.stdout.contains(&format!(
            "file {}/bascule/security-floor",
            data.mount.display()
        )),
        "{}",
        run.stdout
    );
    data.umount();
    fx.run(&["status"]).fails_with(&[
        &format!(
            "state_dir {}/bascule is not on the data slot",
            data.mount.display()
        ),
        &format!("is {} mounted at {}", data.device(), data.mount.display()),
    ]);
}
