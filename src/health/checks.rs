//! Running one check: a command within its timeout (through [`crate::command`], the
//! runner hooks share), or a built-in (systemd unit active, TCP port accepting, HTTP GET
//! answering 2xx, file existing). A failure carries what explains it: the command's output
//! or the built-in's error.
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use super::config::CheckKind;
use crate::command;

/// Why a check failed: the reason on one line, and what it printed.
pub type CheckFailed = crate::command::CommandFailed;

/// Runs `kind` for at most `timeout`.
pub fn run(kind: &CheckKind, timeout: Duration) -> Result<(), CheckFailed> {
    match kind {
        CheckKind::Command(argv) => run_command(argv, timeout),
        CheckKind::UnitActive(unit) => {
            let argv = ["systemctl", "is-active", unit.as_str()].map(String::from);
            run_command(&argv, timeout)
        }
        CheckKind::TcpPort(addr) => tcp_port(addr, timeout).map_err(CheckFailed::from),
        CheckKind::HttpGet(url) => http_get(url, timeout),
        CheckKind::FileExists(path) => match Path::new(path).try_exists() {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("{path} does not exist").into()),
            Err(e) => Err(format!("cannot check {path}: {e}").into()),
        },
    }
}

/// Runs `argv` through the shared runner ([`crate::command`]).
fn run_command(argv: &[String], timeout: Duration) -> Result<(), CheckFailed> {
    command::run(argv, &[], timeout).map(drop)
}

fn tcp_port(addr: &str, timeout: Duration) -> Result<(), String> {
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .collect();
    let mut last = format!("{addr} resolves to no address");
    for sock in addrs {
        match TcpStream::connect_timeout(&sock, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("cannot connect to {sock}: {e}"),
        }
    }
    Err(last)
}

fn http_get(url: &str, timeout: Duration) -> Result<(), CheckFailed> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .get(url)
        .call()
        .map_err(|e| CheckFailed::from(format!("GET {url}: {e}")))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut body = String::new();
    let _ = response
        .into_body()
        .into_reader()
        .take(4096)
        .read_to_string(&mut body);
    Err(CheckFailed {
        reason: format!("GET {url}: {status}"),
        output: body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn cmd(args: &[&str]) -> CheckKind {
        CheckKind::Command(args.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn command_passes_on_exit_zero_and_fails_with_its_output() {
        assert_eq!(run(&cmd(&["true"]), Duration::from_secs(5)), Ok(()));
        let err = run(
            &cmd(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(err.reason, "sh exit status: 3");
        assert_eq!(err.output, "out\nerr\n");
    }

    #[test]
    fn command_is_killed_at_its_timeout_with_its_children() {
        let start = Instant::now();
        let err = run(
            &cmd(&["sh", "-c", "echo started; sleep 30 & sleep 30"]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(err.reason.contains("did not finish"), "{err:?}");
        assert_eq!(err.output, "started\n");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn tcp_port_and_file_exists() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        assert_eq!(
            run(&CheckKind::TcpPort(addr.clone()), Duration::from_secs(2)),
            Ok(())
        );
        drop(listener);
        assert!(run(&CheckKind::TcpPort(addr), Duration::from_secs(2)).is_err());
        assert_eq!(
            run(&CheckKind::FileExists("/".into()), Duration::from_secs(1)),
            Ok(())
        );
        let err = run(
            &CheckKind::FileExists("/no/such".into()),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(err.reason, "/no/such does not exist");
    }

    #[test]
    fn http_get_passes_on_2xx_and_fails_with_the_status_and_body() {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let serve = std::thread::spawn(move || {
            for _ in 0..2 {
                let request = server.recv().unwrap();
                let response = match request.url() {
                    "/ok" => tiny_http::Response::from_string("fine"),
                    _ => tiny_http::Response::from_string("db down").with_status_code(503),
                };
                request.respond(response).unwrap();
            }
        });
        let url = |path: &str| CheckKind::HttpGet(format!("http://127.0.0.1:{port}{path}"));
        assert_eq!(run(&url("/ok"), Duration::from_secs(5)), Ok(()));
        let err = run(&url("/health"), Duration::from_secs(5)).unwrap_err();
        assert!(err.reason.contains("503"), "{err:?}");
        assert_eq!(err.output, "db down");
        serve.join().unwrap();
        let closed = run(&url("/ok"), Duration::from_secs(2)).unwrap_err();
        assert!(
            closed.reason.starts_with("GET http://127.0.0.1:"),
            "{closed:?}"
        );
    }
}
