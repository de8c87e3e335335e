//! The install lock: one install at a time per device.
//!
//! An exclusive, non-blocking `flock` on `state_dir/install.lock`, held for the life
//! of [`InstallLock`]. The kernel drops it when the process dies (even by SIGKILL),
//! so a crashed install never leaves a stale lock. The holder's pid is written into
//! the file only to make the refusal message useful.
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::InstallError;

/// A held install lock; released on drop.
pub struct InstallLock {
    _lock: Flock<File>,
}

impl InstallLock {
    /// Takes the lock in `state_dir` (created if missing), or fails at once with
    /// [`InstallError::Locked`] naming the holder.
    pub fn acquire(state_dir: &Path) -> Result<InstallLock, InstallError> {
        let (file, path) = open_lock_file(state_dir, "install.lock")?;
        let io_err = lock_io_err(&path);
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, _errno)) => {
                let mut pid = String::new();
                // The pid is only for the message; an unreadable file leaves it empty.
                drop(file.read_to_string(&mut pid));
                let pid = pid.trim();
                let holder = if pid.is_empty() {
                    String::new()
                } else {
                    format!(" by pid {pid}")
                };
                return Err(InstallError::Locked {
                    path: path.display().to_string(),
                    holder,
                });
            }
        };
        lock.set_len(0).map_err(&io_err)?;
        lock.rewind().map_err(&io_err)?;
        write!(lock, "{}", std::process::id()).map_err(&io_err)?;
        Ok(InstallLock { _lock: lock })
    }
}

/// Opens (creating it and `state_dir` if missing) the lock file `name`.
fn open_lock_file(state_dir: &Path, name: &str) -> Result<(File, PathBuf), InstallError> {
    let path = state_dir.join(name);
    let opened = std::fs::create_dir_all(state_dir).and_then(|()| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
    });
    match opened {
        Ok(file) => Ok((file, path)),
        Err(e) => Err(lock_io_err(&path)(e)),
    }
}

fn lock_io_err(path: &Path) -> impl Fn(std::io::Error) -> InstallError + '_ {
    move |e| InstallError::LockIo {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// A held boot-environment lock; released on drop.
///
/// Every read-modify-write of the environment (install's two commits, mark-good,
/// mark-bad, init-env, the simulated boot) holds it, so a change made by one
/// process is never overwritten by another working from a stale copy. It is
/// blocking and held only for one load and one commit.
pub struct EnvLock {
    _lock: Flock<File>,
}

impl EnvLock {
    /// Takes the lock in `state_dir` (created if missing), waiting for its holder.
    pub fn acquire(state_dir: &Path) -> Result<EnvLock, InstallError> {
        let (file, path) = open_lock_file(state_dir, "env.lock")?;
        let io_err = lock_io_err(&path);
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io_err(errno.into()))?;
        Ok(EnvLock { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = InstallLock::acquire(dir.path()).unwrap();
        let err = InstallLock::acquire(dir.path()).err().unwrap();
        assert!(
            err.to_string().contains("another install is running"),
            "{err}"
        );
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        assert!(InstallLock::acquire(dir.path()).is_ok());
    }
}
