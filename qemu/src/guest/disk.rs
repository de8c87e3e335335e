//! Makes a fresh guest disk from [`super::layout`]: the factory image with v1 in slot A.
//!
//! This is the ONE module that knows how the disk is made, so it can be replaced by
//! `bascule provision` from a layout file: [`build_disk`] takes the parts and leaves a
//! disk image that boots. Today it runs `sfdisk` (GPT), writes the images into their
//! partitions (the `dd` step, done with positioned writes), formats the data slot
//! (`mkfs.ext4 -d` with an empty `bascule/` directory), and runs bascule's `init-env
//! --good A --version <v1> --defaults <board's default env>` against the image
//! (through [`super::host`]'s config, the same code path as the CLI).
use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};

use bascule_partitions::SlotName;

use super::host::{HostError, HostView};
use super::layout::{DATA, DISK_SIZE, PARTS, ROOTFS_A, SCRIPTS, SECTOR};

/// What goes on the factory disk.
pub struct DiskInputs<'a> {
    /// The ext4 image of the factory release, for slot A.
    pub rootfs: &'a Path,
    /// Its version, recorded by `init-env`.
    pub version: &'a str,
    /// The `boot-scripts` partition's content (`super::board::scripts_partition`).
    pub scripts: &'a [u8],
    /// For temporary files.
    pub work: &'a Path,
}

/// Why the disk could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{tool} failed: {stderr}")]
    Tool { tool: &'static str, stderr: String },
    #[error("{what} is {len} bytes, larger than its partition ({max} bytes)")]
    TooLarge { what: String, len: u64, max: u64 },
    #[error(transparent)]
    Host(#[from] HostError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DiskError {
    let what = what.into();
    move |source| DiskError::Io { what, source }
}

/// The `sfdisk` script of the layout.
pub fn sfdisk_script() -> String {
    let mut s = String::from("label: gpt\n");
    for p in PARTS {
        s.push_str(&format!(
            "start={}, size={}, name=\"{}\"\n",
            p.start / SECTOR,
            p.size / SECTOR,
            p.name
        ));
    }
    s
}

/// Makes the factory disk at `out`.
pub fn build_disk(out: &Path, inputs: &DiskInputs) -> Result<(), DiskError> {
    let file = fs::File::create(out).map_err(io(format!("creating {}", out.display())))?;
    file.set_len(DISK_SIZE)
        .map_err(io(format!("sizing {}", out.display())))?;
    drop(file);
    partition(out)?;
    let rootfs =
        fs::read(inputs.rootfs).map_err(io(format!("reading {}", inputs.rootfs.display())))?;
    write_part(
        out,
        "the factory rootfs",
        ROOTFS_A.start,
        ROOTFS_A.size,
        &rootfs,
    )?;
    write_part(
        out,
        "the boot scripts",
        SCRIPTS.start,
        SCRIPTS.size,
        inputs.scripts,
    )?;
    let data = inputs.work.join("data.ext4");
    format_data(&data, inputs.work)?;
    let data_bytes = fs::read(&data).map_err(io("reading the data slot image"))?;
    write_part(out, "the data slot", DATA.start, DATA.size, &data_bytes)?;
    fs::remove_file(&data).map_err(io("removing the data slot image"))?;
    let host = HostView::new(out, inputs.work)?;
    host.init_env(SlotName::A, inputs.version)?;
    Ok(())
}

fn partition(disk: &Path) -> Result<(), DiskError> {
    let mut child = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("running sfdisk (package fdisk)"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(sfdisk_script().as_bytes())
        .map_err(io("writing sfdisk's script"))?;
    let res = child.wait_with_output().map_err(io("waiting for sfdisk"))?;
    if !res.status.success() {
        return Err(DiskError::Tool {
            tool: "sfdisk",
            stderr: String::from_utf8_lossy(&res.stderr).into_owned(),
        });
    }
    Ok(())
}

fn write_part(
    disk: &Path,
    what: &str,
    start: u64,
    max: u64,
    bytes: &[u8],
) -> Result<(), DiskError> {
    if bytes.len() as u64 > max {
        return Err(DiskError::TooLarge {
            what: what.into(),
            len: bytes.len() as u64,
            max,
        });
    }
    let file = fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .map_err(io(format!("opening {}", disk.display())))?;
    file.write_all_at(bytes, start)
        .and_then(|()| file.sync_all())
        .map_err(io(format!("writing {what} into {}", disk.display())))
}

/// An ext4 image of the data slot's size with an empty `bascule/` directory.
fn format_data(out: &Path, work: &Path) -> Result<(), DiskError> {
    let tree = work.join("data-tree");
    fs::create_dir_all(tree.join("bascule")).map_err(io("staging the data slot"))?;
    let _ = fs::remove_file(out);
    let res = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "data", "-E", "root_owner=0:0", "-d"])
        .arg(&tree)
        .arg(out)
        .arg(format!("{}k", DATA.size / 1024))
        .output()
        .map_err(io("running mkfs.ext4 (e2fsprogs)"))?;
    fs::remove_dir_all(&tree).map_err(io("removing the data slot's staging tree"))?;
    if !res.status.success() {
        return Err(DiskError::Tool {
            tool: "mkfs.ext4",
            stderr: String::from_utf8_lossy(&res.stderr).into_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sfdisk_script_names_every_partition_in_sectors() {
        let s = sfdisk_script();
        assert!(s.starts_with("label: gpt\n"));
        assert!(
            s.contains("start=2048, size=128, name=\"uboot-env\""),
            "{s}"
        );
        assert_eq!(s.lines().count(), 1 + PARTS.len());
    }
}
