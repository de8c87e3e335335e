//! Errors of the hardware layer: one variant per thing that can go wrong, naming the
//! object and the place.
use alloc::string::String;

/// What went wrong in a block device or an environment store.
#[derive(Debug, thiserror::Error)]
pub enum HalError {
    /// An operating-system I/O call failed.
    #[error("{op} {path}: {message}")]
    Io {
        op: &'static str,
        path: String,
        message: String,
    },
    /// A read or write past the end of the device.
    #[error("{what}: access at offset {offset} length {len} is beyond the device size {size}")]
    OutOfRange {
        what: String,
        offset: u64,
        len: u64,
        size: u64,
    },
    /// The device refuses writes (opened read-only, or a read-only medium).
    #[error("{0} is read-only")]
    ReadOnly(String),
    /// A previous write failed; the handle refuses further use until reopened.
    #[error("{0}: an earlier I/O error poisoned this handle; reopen it")]
    Poisoned(String),
    /// No copy of an environment could be read (all CRCs or headers bad).
    #[error("{store}: no valid copy of the environment ({detail})")]
    EnvCorrupt { store: String, detail: String },
    /// Every copy of the environment is erased (each all 0x00 or all 0xff bytes): it
    /// was never written. U-Boot then runs on its built-in default environment.
    #[error("{store}: the environment is blank (every copy erased, all 0x00 or 0xff bytes)")]
    EnvBlank { store: String },
    /// The environment does not exist at all (a file-based store never provisioned).
    #[error("{store}: environment does not exist (not provisioned yet?)")]
    EnvMissing { store: String },
    /// The environment does not fit in the space the layout gives it.
    #[error("{store}: environment needs {needed} bytes but only {available} are available")]
    EnvTooLarge {
        store: String,
        needed: usize,
        available: usize,
    },
    /// A variable name or value the format cannot store.
    #[error("{store}: cannot store variable {name:?}: {reason}")]
    EnvInvalidVar {
        store: String,
        name: String,
        reason: &'static str,
    },
    /// The security floor store holds something that is not a floor (a floor is never
    /// guessed: reading it as 0 would re-admit what it keeps out).
    #[error("security floor {store} is unreadable: {detail}")]
    FloorCorrupt { store: String, detail: String },
    /// A layout (offsets, sizes) that cannot work.
    #[error("invalid layout for {what}: {reason}")]
    BadLayout { what: String, reason: String },
    /// A simulated power cut (test backends only).
    #[error("power cut")]
    PowerCut,
}

#[cfg(feature = "std")]
impl HalError {
    /// Wraps an `std::io::Error` with the operation and path it happened on.
    pub fn io(op: &'static str, path: &std::path::Path, err: std::io::Error) -> Self {
        HalError::Io {
            op,
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }
}
