//! Running an external command within a timeout: the one runner that health checks
//! and hooks share. The command runs in its own process group with stdin closed,
//! stdout and stderr into one pipe; at the timeout the whole group is killed, so a
//! command's children die with it.
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How often a running command is polled for its exit.
const POLL: Duration = Duration::from_millis(5);

/// Why a command (or a health check) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFailed {
    /// One line: the exit status, the timeout, the connection or HTTP error.
    pub reason: String,
    /// What the command printed (stdout and stderr), or the HTTP body; may be empty.
    pub output: String,
}

impl From<String> for CommandFailed {
    fn from(reason: String) -> Self {
        CommandFailed {
            reason,
            output: String::new(),
        }
    }
}

/// Runs `argv` with `env` added to bascule's environment, for at most `timeout`.
/// Returns what it printed when it exits 0.
pub fn run(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<String, CommandFailed> {
    let pipe_err = |e| CommandFailed::from(format!("cannot make a pipe: {e}"));
    let (mut reader, writer) = std::io::pipe().map_err(pipe_err)?;
    let writer2 = writer.try_clone().map_err(pipe_err)?;
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0)
        .spawn()
        .map_err(|e| CommandFailed::from(format!("cannot run {}: {e}", argv[0])))?;
    let collector = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = reader.read_to_end(&mut out);
        out
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() >= timeout => break None,
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Err(format!("cannot wait for {}: {e}", argv[0]).into()),
        }
    };
    // The group: a command's children die with it, and the pipe closes.
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    let output = String::from_utf8_lossy(&collector.join().unwrap_or_default()).into_owned();
    let reason = match status {
        Some(status) if status.success() => return Ok(output),
        Some(status) => format!("{} {status}", argv[0]),
        None => format!(
            "{} did not finish within {} s (killed)",
            argv[0],
            timeout.as_secs_f32()
        ),
    };
    Err(CommandFailed { reason, output })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn passes_its_environment_and_returns_its_output() {
        let env = [("BASCULE_X".to_string(), "42".to_string())];
        let out = run(
            &argv(&["sh", "-c", "echo x=$BASCULE_X"]),
            &env,
            Duration::from_secs(5),
        );
        assert_eq!(out, Ok("x=42\n".to_string()));
    }
}
