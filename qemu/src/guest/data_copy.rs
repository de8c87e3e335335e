//! The host's read of the guest's data slot after QEMU stopped: the ext4 window is
//! copied out of the disk image, its journal replayed as the guest kernel would at
//! its next mount (`e2fsck -E journal_only`), then `bascule/` is copied out with
//! `debugfs rdump`. Without the replay a power cut leaves the last commits in the
//! journal only, and the host would read an older `bascule/`, or none at all.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why the data slot's `bascule/` directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataCopyError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{tool} failed on the data slot of {disk} ({status}): {stderr}")]
    Failed {
        tool: &'static str,
        disk: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("the data slot of {0} holds no bascule/ directory")]
    NoStateDir(PathBuf),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DataCopyError {
    let what = what.into();
    move |source| DataCopyError::Io { what, source }
}

/// The data slot at `start..start + size` of `disk`, read into `dir/bascule/`
/// (replaced); uses `dir/data.ext4` as scratch.
pub fn copy_state_dir(
    disk: &Path,
    start: u64,
    size: u64,
    dir: &Path,
) -> Result<PathBuf, DataCopyError> {
    let data = dir.join("data.ext4");
    copy_window(disk, start, size, &data)?;
    let state = dir.join("bascule");
    if state.exists() {
        fs::remove_dir_all(&state).map_err(io("clearing the host's state_dir"))?;
    }
    let res = replay_journal(disk, &data).and_then(|()| rdump(disk, &data, dir));
    fs::remove_file(&data).map_err(io("removing the data slot's copy"))?;
    res?;
    if !state.is_dir() {
        return Err(DataCopyError::NoStateDir(disk.to_path_buf()));
    }
    Ok(state)
}

fn copy_window(disk: &Path, start: u64, size: u64, to: &Path) -> Result<(), DataCopyError> {
    use std::os::unix::fs::FileExt;
    let file = fs::File::open(disk).map_err(io(format!("opening {}", disk.display())))?;
    let mut buf = vec![0u8; size as usize];
    file.read_exact_at(&mut buf, start)
        .map_err(io(format!("reading the data slot of {}", disk.display())))?;
    fs::write(to, buf).map_err(io("writing the data slot's copy"))
}

/// `e2fsck -y -E journal_only`: exit 0 (nothing to do) or 1 (replayed) is success.
fn replay_journal(disk: &Path, data: &Path) -> Result<(), DataCopyError> {
    let out = Command::new("e2fsck")
        .args(["-y", "-E", "journal_only"])
        .arg(data)
        .output()
        .map_err(io("running e2fsck (e2fsprogs, scripts/deps)"))?;
    match out.status.code() {
        Some(0 | 1) => Ok(()),
        _ => Err(failed("e2fsck -E journal_only", disk, &out)),
    }
}

fn rdump(disk: &Path, data: &Path, dir: &Path) -> Result<(), DataCopyError> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump /bascule {}", dir.display()))
        .arg(data)
        .output()
        .map_err(io("running debugfs (e2fsprogs, scripts/deps)"))?;
    if !out.status.success() {
        return Err(failed("debugfs rdump", disk, &out));
    }
    Ok(())
}

fn failed(tool: &'static str, disk: &Path, out: &std::process::Output) -> DataCopyError {
    DataCopyError::Failed {
        tool,
        disk: disk.to_path_buf(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cmd: &mut Command) {
        let out = cmd
            .output()
            .expect("e2fsprogs and mount are installed (scripts/deps)");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn fsync(path: &Path) {
        fs::File::open(path).unwrap().sync_all().unwrap();
    }

    /// What a power cut leaves: an ext4 whose last commit is in the journal only. A
    /// loop-mounted file system gets `bascule/history` written and fsynced, and its
    /// image is copied while still mounted, before the kernel checkpoints the
    /// journal. Read without the replay, that image has no `bascule/`: the CI failure
    /// this module fixes ("debugfs rdump left no bascule/ directory").
    #[test]
    fn reads_the_commits_a_power_cut_left_in_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.ext4");
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .arg("16M"));
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt));
        fs::create_dir(mnt.join("bascule")).unwrap();
        fs::write(mnt.join("bascule/history"), b"one line\n").unwrap();
        for p in ["bascule/history", "bascule", ""] {
            fsync(&mnt.join(p));
        }
        let mut disk = vec![0xa5u8; 4096];
        disk.extend(fs::read(&img).unwrap());
        run(Command::new("umount").arg(&mnt));
        let disk_path = dir.path().join("disk.img");
        fs::write(&disk_path, &disk).unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let state = copy_state_dir(&disk_path, 4096, 16 << 20, &out).unwrap();
        assert_eq!(fs::read(state.join("history")).unwrap(), b"one line\n");
        assert!(!out.join("data.ext4").exists());
    }

    #[test]
    fn a_data_slot_without_bascule_dir_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&disk)
            .arg("8M"));
        let err = copy_state_dir(&disk, 0, 8 << 20, dir.path()).unwrap_err();
        assert!(matches!(err, DataCopyError::NoStateDir(_)), "{err}");
    }
}
