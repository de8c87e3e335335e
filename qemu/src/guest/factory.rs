//! The guests' factory disks, made by `bascule provision` (the library code behind
//! the CLI command) from a layout in `qemu/layouts/`: the table by the hal's GPT
//! writer, the factory bundle streamed into slot A through the install pipeline,
//! the boot content, the data slot, and the env last (slot A good at the bundle's
//! version, keeping the board's default variables), then `--verify`.
//!
//! The layout names its sources relative to itself, so it is copied into the work
//! directory beside the files the harness built (the boot scripts, GRUB, grub.cfg).
//! [`placed`] reads a layout's partitions back for the unit tests that keep the
//! harness's constants (`layout.rs`) equal to the file.
use std::fs;
use std::path::{Path, PathBuf};

use bascule::provision::{self, ProvisionError, ProvisionOptions, Report};
use bascule_partitions::disk_layout::{DiskLayout, DiskPlan};

/// What goes on a factory disk.
pub struct Factory<'a> {
    /// The layout's file name in `qemu/layouts/`.
    pub layout: &'a str,
    /// The files the layout names as sources: (name beside the layout, file).
    pub files: &'a [(&'a str, &'a Path)],
    /// The factory release's signed bundle, for the `rootfs` slots.
    pub bundle: &'a Path,
    /// A directory of trusted `*.pub` keys.
    pub keyring: &'a Path,
    /// The board's default U-Boot env (`u-boot-initial-env`).
    pub defaults: Option<&'a Path>,
    /// For the layout's copy, its sources and the report.
    pub work: &'a Path,
}

/// Why the factory disk could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FactoryError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("bascule provision {disk}: {source}")]
    Provision {
        disk: PathBuf,
        source: Box<ProvisionError>,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FactoryError {
    let what = what.into();
    move |source| FactoryError::Io { what, source }
}

/// `qemu/layouts/<name>`.
pub fn layout_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("layouts")
        .join(name)
}

/// Provisions `out` (created) and returns the report, also saved as
/// `work/factory-report.json`.
pub fn provision_disk(out: &Path, f: &Factory) -> Result<Report, FactoryError> {
    fs::create_dir_all(f.work).map_err(io("creating the factory's work directory"))?;
    let layout = f.work.join(f.layout);
    fs::copy(layout_path(f.layout), &layout)
        .map_err(io(format!("copying qemu/layouts/{}", f.layout)))?;
    for (name, from) in f.files {
        fs::copy(from, f.work.join(name)).map_err(io(format!("placing {name}")))?;
    }
    let _ = fs::remove_file(out);
    let opts = ProvisionOptions {
        layout,
        disk: out.to_path_buf(),
        bundles: vec![("rootfs".into(), f.bundle.to_path_buf())],
        keyring: Some(f.keyring.to_path_buf()),
        defaults: f.defaults.map(Path::to_path_buf),
        verify: true,
        report: Some(f.work.join("factory-report.json")),
        ..ProvisionOptions::default()
    };
    provision::run(&opts).map_err(|e| FactoryError::Provision {
        disk: out.to_path_buf(),
        source: Box::new(e),
    })
}

/// The layout `name` placed on its disk; images and files are taken to be
/// `image_size` bytes.
pub fn placed(name: &str, image_size: u64) -> DiskPlan {
    let layout = DiskLayout::load(&layout_path(name)).expect("a layout in qemu/layouts/");
    layout
        .plan(None, &|_| Some(image_size))
        .expect("the layout places")
}

/// (name, first byte, length) of each partition of `plan`.
pub fn windows(plan: &DiskPlan) -> Vec<(String, u64, u64)> {
    (0..plan.partitions.len())
        .map(|i| {
            let (start, len) = plan.window(i);
            (plan.partitions[i].name.clone(), start, len)
        })
        .collect()
}
