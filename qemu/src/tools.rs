//! The host tools and firmware files the real boot chain needs, found at run time.
//!
//! Every lookup either returns a path or fails with the Debian package to install
//! (`scripts/deps` installs them all): a missing tool is an error, never a skipped test.
use std::path::{Path, PathBuf};

/// A program looked up in `PATH`, with the Debian package that ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

/// A file at a fixed path, with the Debian package that ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firmware {
    pub path: &'static str,
    pub package: &'static str,
}

pub const QEMU_AARCH64: Tool = Tool {
    program: "qemu-system-aarch64",
    package: "qemu-system-arm",
};
pub const MKIMAGE: Tool = Tool {
    program: "mkimage",
    package: "u-boot-tools",
};
pub const FW_PRINTENV: Tool = Tool {
    program: "fw_printenv",
    package: "libubootenv-tool",
};
/// Debian 12's U-Boot 2023.01 for `qemu-system-aarch64 -M virt`.
pub const UBOOT_QEMU_ARM64: Firmware = Firmware {
    path: "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
    package: "u-boot-qemu",
};
/// `qemu-system-x86_64`.
pub const QEMU_X86_64: Tool = Tool {
    program: "qemu-system-x86_64",
    package: "qemu-system-x86",
};
/// OVMF's code (read-only pflash) and the vars template copied for every boot.
pub const OVMF_CODE: Firmware = Firmware {
    path: crate::grub::OVMF_CODE,
    package: "ovmf",
};
pub const OVMF_VARS: Firmware = Firmware {
    path: crate::grub::OVMF_VARS,
    package: "ovmf",
};

/// A required tool or file is not installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error("{program} is not in PATH: install the Debian package {package} (scripts/deps)")]
    MissingProgram {
        program: &'static str,
        package: &'static str,
    },
    #[error("{path} does not exist: install the Debian package {package} (scripts/deps)")]
    MissingFile {
        path: &'static str,
        package: &'static str,
    },
}

impl Tool {
    /// The program's path in `PATH`.
    pub fn find(&self) -> Result<PathBuf, ToolError> {
        let missing = ToolError::MissingProgram {
            program: self.program,
            package: self.package,
        };
        let path = std::env::var_os("PATH").ok_or(missing.clone())?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(self.program))
            .find(|candidate| is_executable(candidate))
            .ok_or(missing)
    }
}

impl Firmware {
    /// The file's path, when it exists.
    pub fn find(&self) -> Result<PathBuf, ToolError> {
        let path = Path::new(self.path);
        if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(ToolError::MissingFile {
                path: self.path,
                package: self.package,
            })
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_its_package() {
        let tool = Tool {
            program: "bascule-no-such-program",
            package: "bascule-no-such-package",
        };
        let err = tool.find().unwrap_err().to_string();
        assert!(err.contains("bascule-no-such-package"), "{err}");
    }

    #[test]
    fn a_missing_file_names_its_package() {
        let fw = Firmware {
            path: "/nonexistent/u-boot.bin",
            package: "u-boot-qemu",
        };
        let err = fw.find().unwrap_err().to_string();
        assert!(
            err.contains("u-boot-qemu") && err.contains("/nonexistent"),
            "{err}"
        );
    }

    #[test]
    fn sh_is_found() {
        let sh = Tool {
            program: "sh",
            package: "dash",
        };
        assert!(sh.find().unwrap().ends_with("sh"));
    }
}
