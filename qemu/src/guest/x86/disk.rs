//! Makes a fresh x86_64 guest disk from [`super::layout`]: the factory image with v1 in
//! slot A.
//!
//! This is the ONE module that knows how the disk is made, so it can be replaced by
//! `bascule provision` from a layout file. Today: `sfdisk` (GPT, the ESP typed as
//! such), bascule's `init-env --good A --version <v1>` into the host's grubenv copy
//! (which writes `grubenv` and `grubenv.good`), the ESP as a FAT image (`mkfs.vfat`,
//! mtools) holding `BOOTX64.EFI`, the board's `grub.cfg` and both env files, then the
//! ESP, the factory rootfs and the data slot (ext4 with an empty `bascule/`) written
//! into their partitions.
use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};

use bascule_partitions::SlotName;

use super::error::{io, run, X86Error};
use super::grub_board::esp_image;
use super::host::HostView;
use super::layout::{Part, DATA, DISK_SIZE, ESP, ESP_TYPE, PARTS, ROOTFS_A, SECTOR};

/// What goes on the factory disk.
pub struct DiskInputs<'a> {
    /// The ext4 image of the factory release, for slot A, and its version.
    pub rootfs: &'a Path,
    pub version: &'a str,
    /// `BOOTX64.EFI` and the board's `grub.cfg`.
    pub efi: &'a Path,
    pub grub_cfg: &'a Path,
    /// For temporary files.
    pub work: &'a Path,
}

/// The `sfdisk` script of the layout.
pub fn sfdisk_script() -> String {
    let mut s = String::from("label: gpt\n");
    for p in PARTS {
        let ty = if p == ESP {
            format!(", type={ESP_TYPE}")
        } else {
            String::new()
        };
        s.push_str(&format!(
            "start={}, size={}, name=\"{}\"{ty}\n",
            p.start / SECTOR,
            p.size / SECTOR,
            p.name
        ));
    }
    s
}

/// Makes the factory disk at `out`.
pub fn build_disk(out: &Path, inputs: &DiskInputs) -> Result<(), X86Error> {
    fs::create_dir_all(inputs.work).map_err(io("creating the disk's work directory"))?;
    let file = fs::File::create(out).map_err(io(format!("creating {}", out.display())))?;
    file.set_len(DISK_SIZE)
        .map_err(io(format!("sizing {}", out.display())))?;
    drop(file);
    partition(out)?;
    let host = HostView::new(out, inputs.work)?;
    host.init_env(SlotName::A, inputs.version)?;
    let esp = inputs.work.join("esp.img");
    let (env, good) = host.env_files();
    esp_image(
        &esp,
        &[
            (inputs.efi, "BOOTX64.EFI"),
            (inputs.grub_cfg, "grub.cfg"),
            (&env, "grubenv"),
            (&good, "grubenv.good"),
        ],
    )?;
    write_file_into(out, "the ESP", ESP, &esp)?;
    write_file_into(out, "the factory rootfs", ROOTFS_A, inputs.rootfs)?;
    let data = inputs.work.join("data.ext4");
    format_data(&data, inputs.work)?;
    write_file_into(out, "the data slot", DATA, &data)?;
    for f in [&esp, &data] {
        fs::remove_file(f).map_err(io(format!("removing {}", f.display())))?;
    }
    Ok(())
}

fn partition(disk: &Path) -> Result<(), X86Error> {
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
        return Err(X86Error::Failed {
            command: "sfdisk".into(),
            status: res.status.to_string(),
            stderr: String::from_utf8_lossy(&res.stderr).into_owned(),
        });
    }
    Ok(())
}

fn write_file_into(disk: &Path, what: &str, part: Part, from: &Path) -> Result<(), X86Error> {
    let bytes = fs::read(from).map_err(io(format!("reading {}", from.display())))?;
    if bytes.len() as u64 > part.size {
        return Err(X86Error::TooLarge {
            what: what.into(),
            len: bytes.len() as u64,
            max: part.size,
        });
    }
    let file = fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .map_err(io(format!("opening {}", disk.display())))?;
    file.write_all_at(&bytes, part.start)
        .and_then(|()| file.sync_all())
        .map_err(io(format!("writing {what} into {}", disk.display())))
}

/// An ext4 image of the data slot's size with an empty `bascule/` directory.
fn format_data(out: &Path, work: &Path) -> Result<(), X86Error> {
    let tree = work.join("data-tree");
    fs::create_dir_all(tree.join("bascule")).map_err(io("staging the data slot"))?;
    let _ = fs::remove_file(out);
    let res = run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "data", "-E", "root_owner=0:0", "-d"])
        .arg(&tree)
        .arg(out)
        .arg(format!("{}k", DATA.size / 1024)));
    fs::remove_dir_all(&tree).map_err(io("removing the data slot's staging tree"))?;
    res.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sfdisk_script_types_the_esp_and_names_every_partition() {
        let s = sfdisk_script();
        assert!(
            s.contains(&format!(
                "start=2048, size=32768, name=\"esp\", type={ESP_TYPE}"
            )),
            "{s}"
        );
        assert_eq!(s.matches("type=").count(), 1);
        assert_eq!(s.lines().count(), 1 + PARTS.len());
    }
}
