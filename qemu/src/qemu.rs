//! Runs one QEMU process with a deadline and captures its serial console.
//!
//! The guest's serial port is QEMU's stdout (`-nographic`); stdin is closed so nothing
//! interrupts autoboot. A run that outlives its deadline is killed (SIGKILL) and
//! reported with the console it printed so far, so a hung bootloader names itself.
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What one finished QEMU run printed.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The serial console (QEMU's stdout), bytes as the guest sent them.
    pub console: Vec<u8>,
    /// QEMU's own messages.
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
    pub elapsed: Duration,
}

impl RunOutput {
    /// The console as text (invalid UTF-8 replaced), carriage returns dropped.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&self.console).replace('\r', "")
    }
}

/// A QEMU run that did not finish normally.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot wait for {program}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} still ran after {timeout:?}; killed. Console so far:\n{console}")]
    Timeout {
        program: String,
        timeout: Duration,
        console: String,
    },
}

/// Runs `cmd` to its end or until `timeout`, capturing stdout and stderr.
pub fn run(mut cmd: Command, timeout: Duration) -> Result<RunOutput, QemuError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| QemuError::Spawn {
            program: program.clone(),
            source,
        })?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_until(&mut child, start + timeout).map_err(|source| QemuError::Wait {
        program: program.clone(),
        source,
    })?;
    let console = join(stdout);
    let stderr = join(stderr);
    match status {
        Some(status) => Ok(RunOutput {
            console,
            stderr,
            status,
            elapsed: start.elapsed(),
        }),
        None => Err(QemuError::Timeout {
            program,
            timeout,
            console: String::from_utf8_lossy(&console).into_owned(),
        }),
    }
}

/// Reads a pipe to its end on a thread (so a full pipe never blocks the guest).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error ends the capture; what was read so far is kept.
            if pipe.read_to_end(&mut out).is_err() {
                out.extend_from_slice(b"\n[console capture: read error]\n");
            }
        }
        out
    })
}

fn join(handle: JoinHandle<Vec<u8>>) -> Vec<u8> {
    handle
        .join()
        .unwrap_or_else(|_| b"[console capture thread panicked]".to_vec())
}

/// Waits for `child`; at `deadline` kills it and returns `None`.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_of_a_finished_process() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf 'hello\\r\\n'; echo err >&2"]);
        let out = run(cmd, Duration::from_secs(10)).unwrap();
        assert!(out.status.success());
        assert_eq!(out.console_text(), "hello\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn kills_a_process_past_its_deadline() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; exec sleep 30"]);
        let err = run(cmd, Duration::from_millis(300)).unwrap_err();
        match err {
            QemuError::Timeout { console, .. } => assert_eq!(console, "started\n"),
            other => panic!("expected a timeout, got {other}"),
        }
    }
}
