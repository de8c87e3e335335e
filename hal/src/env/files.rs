//! The few file operations a file-based environment store needs, so that its
//! write-then-rename protocol runs unchanged over a real directory ([`DirFiles`]) or an
//! in-memory, power-cut-injecting model of one ([`MemFiles`]).
//!
//! [`MemFiles`] models what a POSIX filesystem keeps across a power cut, like
//! [`crate::FaultyBlock`] does for a device: file contents are durable only after
//! `sync_file`, directory changes (create, rename) only after `sync_dir`. Each `write`,
//! `append`, `sync_file`, `rename` and `sync_dir` is one numbered operation, and a
//! [`CutPlan`] cuts power at one of them:
//! - a cut `write` of `n` bytes with [`Tear::Prefix`]`(k)` leaves the first `k` bytes in
//!   the file's durable content (as if writeback had flushed them); other tears of a
//!   write land nothing;
//! - a cut `append` with [`Tear::Prefix`]`(k)` makes the file's content before the
//!   append plus the first `k` appended bytes durable (writeback flushed up to there);
//!   other tears of an append land nothing of it;
//! - a cut `rename` with a non-zero [`Tear::Prefix`] makes the rename durable (the
//!   journal committed it) even though the directory was not synced yet;
//! - anything not synced is lost; after the cut every call fails with
//!   [`HalError::PowerCut`] and [`MemFiles::after_cut`] is the filesystem after reboot.
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::block::{CutPlan, Tear};
use crate::HalError;

/// File operations of a directory holding an environment file.
pub trait EnvFiles {
    /// The whole content of `name`, `None` when it does not exist; fails when it is
    /// longer than `max_len` bytes.
    fn read(&mut self, name: &str, max_len: usize) -> Result<Option<Vec<u8>>, HalError>;
    /// Creates or truncates `name` and writes `bytes` to it.
    fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), HalError>;
    /// Creates `name` if it does not exist and adds `bytes` at its end (`O_APPEND`);
    /// durable only after [`EnvFiles::sync_file`] (and, for a new file, `sync_dir`).
    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), HalError>;
    /// Makes the content of `name` durable (fsync).
    fn sync_file(&mut self, name: &str) -> Result<(), HalError>;
    /// Renames `from` over `to`, atomically replacing `to`.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), HalError>;
    /// Makes the directory's entries durable (fsync of the directory).
    fn sync_dir(&mut self) -> Result<(), HalError>;
    /// The path of `name`, for messages.
    fn path_of(&self, name: &str) -> String;
}

/// Replaces file `name` with `bytes` atomically: writes them to `tmp`, syncs it,
/// renames it over `name` and syncs the directory. After a power cut at any of these
/// steps, `name` holds the old bytes or the new ones, whole. The one atomic-file
/// writer of bascule: the GRUB env, the security floor and the simulated kernel
/// command line go through it.
pub fn replace_file(
    files: &mut (impl EnvFiles + ?Sized),
    name: &str,
    tmp: &str,
    bytes: &[u8],
) -> Result<(), HalError> {
    files.write(tmp, bytes)?;
    files.sync_file(tmp)?;
    files.rename(tmp, name)?;
    files.sync_dir()
}

#[cfg(feature = "std")]
pub use dir::DirFiles;

#[cfg(feature = "std")]
mod dir {
    use std::fs::{File, OpenOptions};
    use std::io::{ErrorKind, Read, Write};
    use std::path::{Path, PathBuf};

    use super::EnvFiles;
    use crate::HalError;

    /// The files of a real directory.
    #[derive(Debug, Clone)]
    pub struct DirFiles {
        dir: PathBuf,
    }

    impl DirFiles {
        /// The files in `dir`.
        pub fn new(dir: &Path) -> Self {
            DirFiles {
                dir: dir.to_path_buf(),
            }
        }
    }

    /// Whether `dir` is on a FAT (vfat/msdos) file system.
    fn is_fat(dir: &File) -> bool {
        use nix::sys::statfs::{fstatfs, MSDOS_SUPER_MAGIC};
        fstatfs(dir).is_ok_and(|s| s.filesystem_type() == MSDOS_SUPER_MAGIC)
    }

    impl EnvFiles for DirFiles {
        fn read(&mut self, name: &str, max_len: usize) -> Result<Option<Vec<u8>>, HalError> {
            let path = self.dir.join(name);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(HalError::io("open", &path, e)),
            };
            let mut bytes = Vec::new();
            let limit = max_len as u64 + 1;
            file.take(limit)
                .read_to_end(&mut bytes)
                .map_err(|e| HalError::io("read", &path, e))?;
            if bytes.len() > max_len {
                return Err(HalError::EnvTooLarge {
                    store: path.display().to_string(),
                    needed: bytes.len(),
                    available: max_len,
                });
            }
            Ok(Some(bytes))
        }

        fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), HalError> {
            let path = self.dir.join(name);
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| HalError::io("create", &path, e))?;
            f.write_all(bytes)
                .map_err(|e| HalError::io("write", &path, e))
        }

        fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), HalError> {
            let path = self.dir.join(name);
            let mut f = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|e| HalError::io("open", &path, e))?;
            f.write_all(bytes)
                .map_err(|e| HalError::io("append to", &path, e))
        }

        fn sync_file(&mut self, name: &str) -> Result<(), HalError> {
            let path = self.dir.join(name);
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| HalError::io("open", &path, e))?;
            f.sync_all().map_err(|e| HalError::io("fsync", &path, e))
        }

        fn rename(&mut self, from: &str, to: &str) -> Result<(), HalError> {
            let (from, to) = (self.dir.join(from), self.dir.join(to));
            std::fs::rename(&from, &to).map_err(|e| HalError::io("rename", &from, e))
        }

        /// Syncs the directory. On a FAT file system (a GRUB env on an ESP) that is
        /// not enough: vfat writes a renamed file's new directory entry only with that
        /// file's inode, and neither the file's fsync before the rename nor the
        /// directory's after it writes it, so a cut lost the commit (seen in the x86_64
        /// QEMU guest: `grubenv` still named the old cluster, which the FAT had freed).
        /// There the whole file system is synced (`syncfs`), which writes every dirty
        /// directory entry and the FAT.
        fn sync_dir(&mut self) -> Result<(), HalError> {
            let d = File::open(&self.dir).map_err(|e| HalError::io("open", &self.dir, e))?;
            d.sync_all()
                .map_err(|e| HalError::io("fsync", &self.dir, e))?;
            if is_fat(&d) {
                nix::unistd::syncfs(&d)
                    .map_err(|e| HalError::io("syncfs", &self.dir, std::io::Error::from(e)))?;
            }
            Ok(())
        }

        fn path_of(&self, name: &str) -> String {
            self.dir.join(name).display().to_string()
        }
    }
}

/// One file: what the system reads and what survives a cut.
#[derive(Debug, Clone, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

/// A directory in memory that can lose power at a chosen operation (module docs).
#[derive(Debug, Clone, Default)]
pub struct MemFiles {
    inodes: Vec<Inode>,
    live_dir: BTreeMap<String, usize>,
    durable_dir: BTreeMap<String, usize>,
    ops: u64,
    plan: Option<CutPlan>,
    cut: bool,
}

impl MemFiles {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a durable file `name` holding `bytes`.
    pub fn insert(&mut self, name: &str, bytes: &[u8]) {
        self.inodes.push(Inode {
            live: bytes.to_vec(),
            durable: bytes.to_vec(),
        });
        let id = self.inodes.len() - 1;
        self.live_dir.insert(String::from(name), id);
        self.durable_dir.insert(String::from(name), id);
    }

    /// Arms a power cut (see the module docs for what each operation's tear means).
    pub fn arm(&mut self, plan: CutPlan) {
        self.plan = Some(plan);
    }

    /// Number of operations made so far.
    pub fn ops_count(&self) -> u64 {
        self.ops
    }

    /// The names in the directory as the running system sees it.
    pub fn names(&self) -> Vec<String> {
        self.live_dir.keys().cloned().collect()
    }

    /// The directory after a reboot: durable entries with their durable content.
    pub fn after_cut(&self) -> MemFiles {
        let mut out = MemFiles::new();
        for (name, &id) in &self.durable_dir {
            out.insert(name, &self.inodes[id].durable);
        }
        out
    }

    /// Counts one operation; returns the tear if power is cut during it.
    fn step(&mut self) -> Result<Option<Tear>, HalError> {
        if self.cut {
            return Err(HalError::PowerCut);
        }
        let index = self.ops;
        self.ops += 1;
        match self.plan {
            Some(plan) if plan.at <= index => {
                self.cut = true;
                Ok(Some(plan.tear))
            }
            _ => Ok(None),
        }
    }

    /// The inode of `name`, created empty (a live entry only) when it does not exist.
    fn open_or_create(&mut self, name: &str) -> usize {
        if let Some(&id) = self.live_dir.get(name) {
            return id;
        }
        self.inodes.push(Inode::default());
        self.live_dir
            .insert(String::from(name), self.inodes.len() - 1);
        self.inodes.len() - 1
    }

    fn inode_of(&self, name: &str) -> Result<usize, HalError> {
        self.live_dir
            .get(name)
            .copied()
            .ok_or_else(|| HalError::Io {
                op: "open",
                path: self.path_of(name),
                message: String::from("no such file"),
            })
    }
}

impl EnvFiles for MemFiles {
    fn read(&mut self, name: &str, max_len: usize) -> Result<Option<Vec<u8>>, HalError> {
        if self.cut {
            return Err(HalError::PowerCut);
        }
        let Some(&id) = self.live_dir.get(name) else {
            return Ok(None);
        };
        let bytes = &self.inodes[id].live;
        if bytes.len() > max_len {
            return Err(HalError::EnvTooLarge {
                store: self.path_of(name),
                needed: bytes.len(),
                available: max_len,
            });
        }
        Ok(Some(bytes.clone()))
    }

    fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), HalError> {
        let tear = self.step()?;
        let id = self.open_or_create(name);
        let inode = &mut self.inodes[id];
        match tear {
            None => inode.live = bytes.to_vec(),
            Some(Tear::Prefix(k)) => {
                inode.durable = bytes[..(k as usize).min(bytes.len())].to_vec()
            }
            Some(_) => {}
        }
        if tear.is_some() {
            return Err(HalError::PowerCut);
        }
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), HalError> {
        let tear = self.step()?;
        let id = self.open_or_create(name);
        let inode = &mut self.inodes[id];
        match tear {
            None => inode.live.extend_from_slice(bytes),
            Some(Tear::Prefix(k)) => {
                inode.durable.clone_from(&inode.live);
                inode
                    .durable
                    .extend_from_slice(&bytes[..(k as usize).min(bytes.len())]);
            }
            Some(_) => {}
        }
        if tear.is_some() {
            return Err(HalError::PowerCut);
        }
        Ok(())
    }

    fn sync_file(&mut self, name: &str) -> Result<(), HalError> {
        let id = self.inode_of(name)?;
        if self.step()?.is_some() {
            return Err(HalError::PowerCut);
        }
        let inode = &mut self.inodes[id];
        inode.durable.clone_from(&inode.live);
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), HalError> {
        let id = self.inode_of(from)?;
        let tear = self.step()?;
        if let Some(tear) = tear {
            if matches!(tear, Tear::Prefix(k) if k > 0) {
                self.durable_dir.remove(from);
                self.durable_dir.insert(String::from(to), id);
            }
            return Err(HalError::PowerCut);
        }
        self.live_dir.remove(from);
        self.live_dir.insert(String::from(to), id);
        Ok(())
    }

    fn sync_dir(&mut self) -> Result<(), HalError> {
        if self.step()?.is_some() {
            return Err(HalError::PowerCut);
        }
        self.durable_dir.clone_from(&self.live_dir);
        Ok(())
    }

    fn path_of(&self, name: &str) -> String {
        format!("mem:{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_content_and_entries_are_lost() {
        let mut fs = MemFiles::new();
        fs.write("a", b"123").unwrap();
        fs.sync_file("a").unwrap();
        assert!(fs.after_cut().names().is_empty(), "entry not synced");
        fs.sync_dir().unwrap();
        fs.write("a", b"456").unwrap();
        assert_eq!(fs.after_cut().read("a", 10).unwrap().unwrap(), b"123");
    }

    #[test]
    fn rename_without_file_sync_can_leave_an_empty_file() {
        // The classic bug this model exists to catch: rename before fsync.
        let mut fs = MemFiles::new();
        fs.insert("env", b"old");
        fs.write("env.new", b"new").unwrap();
        fs.arm(CutPlan::torn_prefix(1, 1));
        assert!(matches!(
            fs.rename("env.new", "env"),
            Err(HalError::PowerCut)
        ));
        assert!(matches!(fs.read("env", 10), Err(HalError::PowerCut)));
        assert_eq!(fs.after_cut().read("env", 10).unwrap().unwrap(), b"");
    }

    #[test]
    fn torn_write_lands_a_prefix() {
        let mut fs = MemFiles::new();
        fs.insert("f", b"");
        fs.arm(CutPlan::torn_prefix(0, 2));
        assert!(fs.write("f", b"abcd").is_err());
        assert_eq!(fs.after_cut().read("f", 10).unwrap().unwrap(), b"ab");
    }

    #[test]
    fn an_append_is_live_until_synced_and_a_cut_tears_it() {
        let mut fs = MemFiles::new();
        fs.insert("log", b"ab");
        fs.append("log", b"cd").unwrap();
        assert_eq!(fs.read("log", 10).unwrap().unwrap(), b"abcd");
        assert_eq!(fs.after_cut().read("log", 10).unwrap().unwrap(), b"ab");
        fs.sync_file("log").unwrap();
        fs.arm(CutPlan::torn_prefix(2, 1));
        assert!(fs.append("log", b"ef").is_err());
        assert_eq!(fs.after_cut().read("log", 10).unwrap().unwrap(), b"abcde");
        // A file created by an append has no durable entry until the directory sync.
        let mut fs = MemFiles::new();
        fs.append("new", b"x").unwrap();
        fs.sync_file("new").unwrap();
        assert!(fs.after_cut().names().is_empty());
    }

    #[test]
    fn read_refuses_oversized_files() {
        let mut fs = MemFiles::new();
        fs.insert("f", &[0; 11]);
        assert!(matches!(
            fs.read("f", 10),
            Err(HalError::EnvTooLarge { .. })
        ));
    }
}
