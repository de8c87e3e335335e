//! The error of a bascule command: which part failed, with that part's own error
//! naming what went wrong and where.
use crate::bundle::BundleError;
use crate::config::ConfigError;
use crate::device::DeviceError;
use crate::health::HealthError;
use crate::install::InstallError;
use crate::slot::SchemeError;
use crate::source::SourceError;

/// Any failure of a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error(transparent)]
    Activate(#[from] crate::install::ActivateError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Health(#[from] HealthError),
    #[error(transparent)]
    Provision(#[from] crate::provision::ProvisionError),
    #[error("boot environment is not usable: {0}")]
    Scheme(#[from] SchemeError),
    #[error("cannot read the boot environment: {0}")]
    Env(#[from] bascule_hal::HalError),
    #[error("{0}")]
    Usage(String),
    /// A command that would break the device, refused.
    #[error("{0}")]
    Refused(String),
    #[error("{context}: {message}")]
    Io { context: String, message: String },
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |e| Error::Io {
            context,
            message: e.to_string(),
        }
    }
}
