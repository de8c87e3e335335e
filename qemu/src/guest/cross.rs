//! The static bascule that runs inside a guest: `cargo zigbuild` of this checkout for
//! the platform's musl target ([`ARM64`], [`X86_64`]; zig as the C cross compiler for
//! zstd and xz), in a target directory of its own outside the clone, then stripped.
//!
//! It is built with the `test-pause` feature: the power-cut scenario arms its pause
//! point (`BASCULE_TEST_PAUSE`) to widen the env commit window. Without that variable
//! the pause point does nothing, so the other scenarios run the same code as a release
//! build. Cargo rebuilds only what changed, so a warm build takes seconds.
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cache::cache_dir;

/// The cargo profile of the guest build: the one place to change it (for example to
/// a size-optimised `device` profile).
pub const GUEST_PROFILE: &str = "release";
/// The guest's Rust target.
pub const GUEST_TARGET: &str = "aarch64-unknown-linux-musl";
/// Features of the guest build (see the module docs).
pub const GUEST_FEATURES: &str = "test-pause";
const STRIP: &str = "aarch64-linux-gnu-strip";
/// The variables the guest build keeps from ours (tools, homes, proxies).
const KEPT_ENV: [&str; 11] = [
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "TMPDIR",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "PYENV_ROOT",
    "PYENV_VERSION",
    "HTTPS_PROXY",
    "https_proxy",
];

/// One guest platform's build: its Rust target, its `strip` and its target directory.
#[derive(Debug, Clone, Copy)]
pub struct CrossTarget {
    pub target: &'static str,
    pub strip: &'static str,
    /// Overrides [`CrossTarget::default_dir`] when set.
    pub dir_var: &'static str,
    pub default_dir: &'static str,
}

/// The arm64 guest's build.
pub const ARM64: CrossTarget = CrossTarget {
    target: GUEST_TARGET,
    strip: STRIP,
    dir_var: "BASCULE_GUEST_TARGET_DIR",
    default_dir: "/var/cache/bascule/target-guest",
};

/// The x86_64 guest's build (the host's `strip` reads x86_64 ELF).
pub const X86_64: CrossTarget = CrossTarget {
    target: "x86_64-unknown-linux-musl",
    strip: "strip",
    dir_var: "BASCULE_GUEST_X86_TARGET_DIR",
    default_dir: "/var/cache/bascule/target-guest-x86_64",
};

impl CrossTarget {
    /// Its target directory (the variable [`CrossTarget::dir_var`] or the default).
    pub fn target_dir(&self) -> PathBuf {
        std::env::var_os(self.dir_var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(self.default_dir))
    }
}

/// Why the guest's bascule could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CrossError {
    #[error("cannot run {program}: {source} (scripts/deps --test installs it)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cargo zigbuild for {target} failed ({status}); its log: {log}")]
    Build {
        target: &'static str,
        status: String,
        log: PathBuf,
    },
    #[error("{strip} failed on {path}: {stderr}")]
    Strip {
        strip: &'static str,
        path: PathBuf,
        stderr: String,
    },
    #[error("the build left no binary at {0}")]
    Missing(PathBuf),
}

/// Builds (or finds up to date) bascule for `t` and returns the stripped binary.
pub fn build_bascule_for(t: &CrossTarget) -> Result<PathBuf, CrossError> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let log = cache_dir().join(if t.target == GUEST_TARGET {
        "guest-build.log".to_string()
    } else {
        format!("guest-build-{}.log", t.target)
    });
    let log_file = std::fs::File::create(&log).map_err(|source| spawn_err("log", source))?;
    let err_file = log_file
        .try_clone()
        .map_err(|source| spawn_err("log", source))?;
    // A clean environment: under `cargo test` the variables cargo sets for the test
    // (and flags meant for the host build) would differ from a run from the shell and
    // make build scripts (ring's, cc's) run again, rebuilding for minutes.
    let mut cmd = Command::new("cargo");
    cmd.env_clear();
    for (name, value) in std::env::vars_os() {
        if KEPT_ENV.iter().any(|k| name == *k) {
            cmd.env(name, value);
        }
    }
    let status = cmd
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", t.target_dir())
        .args(["zigbuild", "--profile", GUEST_PROFILE, "--target", t.target])
        .args([
            "-p",
            "bascule",
            "--bin",
            "bascule",
            "--features",
            GUEST_FEATURES,
        ])
        .stdout(log_file)
        .stderr(err_file)
        .status()
        .map_err(|source| spawn_err("cargo zigbuild", source))?;
    if !status.success() {
        return Err(CrossError::Build {
            target: t.target,
            status: status.to_string(),
            log,
        });
    }
    let profile_dir = if GUEST_PROFILE == "dev" {
        "debug"
    } else {
        GUEST_PROFILE
    };
    let built = t
        .target_dir()
        .join(t.target)
        .join(profile_dir)
        .join("bascule");
    if !built.is_file() {
        return Err(CrossError::Missing(built));
    }
    strip(t.strip, &built)
}

/// A stripped copy of `built` beside it (`bascule.stripped`).
fn strip(tool: &'static str, built: &Path) -> Result<PathBuf, CrossError> {
    let out = built.with_extension("stripped");
    let res = Command::new(tool)
        .arg("-o")
        .arg(&out)
        .arg(built)
        .output()
        .map_err(|source| spawn_err(tool, source))?;
    if !res.status.success() {
        return Err(CrossError::Strip {
            strip: tool,
            path: built.to_path_buf(),
            stderr: String::from_utf8_lossy(&res.stderr).into_owned(),
        });
    }
    Ok(out)
}

fn spawn_err(program: &str, source: std::io::Error) -> CrossError {
    CrossError::Spawn {
        program: program.into(),
        source,
    }
}
