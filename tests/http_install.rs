//! Installing over HTTP: a tiny_http server on 127.0.0.1 serves the bundle; a raw TCP
//! server that promises the full Content-Length and then hangs up mid-body stands in
//! for a dropped connection, and one that stops sending but keeps the connection open
//! for a stalled server.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bascule::slot::SlotState;
use bascule_partitions::SlotName;
use common::{payload_offset, BundleOpts, Fixture};

const IMAGE_LEN: usize = (768 << 10) + 4321;

/// A tiny_http server serving `bundle` at `/bundle` and 404 elsewhere; stopped on drop.
struct BundleServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    port: u16,
}

impl BundleServer {
    fn start(bundle: Vec<u8>) -> BundleServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind tiny_http"));
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let srv = Arc::clone(&server);
        let thread = std::thread::spawn(move || {
            for request in srv.incoming_requests() {
                let response = if request.url() == "/bundle" {
                    tiny_http::Response::from_data(bundle.clone())
                } else {
                    tiny_http::Response::from_data(b"no such bundle".to_vec()).with_status_code(404)
                };
                // The client may hang up early; that is its business.
                drop(request.respond(response));
            }
        });
        BundleServer {
            server,
            thread: Some(thread),
            port,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for BundleServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            drop(t.join());
        }
    }
}

/// Serves one request: headers announcing all of `bundle`, then only its first
/// `cut` bytes, then closes the connection. Returns the URL and the server thread.
fn hang_up_server(bundle: Vec<u8>, cut: usize) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/bundle", listener.local_addr().expect("addr"));
    let thread = std::thread::spawn(move || {
        let stream = send_partial(&listener, &bundle, Some(cut));
        drop(stream.shutdown(std::net::Shutdown::Both));
    });
    (url, thread)
}

/// Accepts one request and answers with headers announcing all of `bundle`, then its
/// first `cut` bytes (`None`: not even the headers). Returns the open connection.
fn send_partial(listener: &TcpListener, bundle: &[u8], cut: Option<usize>) -> TcpStream {
    let (mut stream, _) = listener.accept().expect("accept");
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
        line.clear();
    }
    let Some(cut) = cut else { return stream };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        bundle.len()
    );
    // The client may give up before all of this arrives.
    drop(stream.write_all(head.as_bytes()));
    drop(stream.write_all(&bundle[..cut]));
    drop(stream.flush());
    stream
}

/// Like [`hang_up_server`], but after the first `cut` bytes (`None`: before the
/// headers) it keeps the connection open and silent until the returned sender is
/// dropped.
fn stalling_server(
    bundle: Vec<u8>,
    cut: Option<usize>,
) -> (String, mpsc::Sender<()>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/bundle", listener.local_addr().expect("addr"));
    let (release, released) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let stream = send_partial(&listener, &bundle, cut);
        // The test drops the sender when it is done; a minute is the backstop.
        if released.recv_timeout(Duration::from_secs(60)) == Err(mpsc::RecvTimeoutError::Timeout) {
            eprintln!("stalling server: not released after 60 s, closing");
        }
        drop(stream);
    });
    (url, release, thread)
}

/// Read timeout the stalling tests configure, in seconds.
const READ_TIMEOUT_SECS: u64 = 1;

/// Adds an `[http]` table with short timeouts to the fixture's config.
fn short_http_timeouts(fx: &Fixture) {
    let mut config = std::fs::read_to_string(fx.config()).unwrap();
    config.push_str(&format!(
        "\n[http]\nconnect_timeout_secs = 2\nread_timeout_secs = {READ_TIMEOUT_SECS}\n"
    ));
    std::fs::write(fx.config(), config).unwrap();
}

/// Runs `install URL`, killing it (and failing the test) if it has not ended after
/// `limit`. Returns the run and how long it took.
fn install_within(fx: &Fixture, url: &str, limit: Duration) -> (common::Run, Duration) {
    let start = Instant::now();
    let mut child = fx
        .cmd(&["install", url, "--progress", "none"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn bascule");
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            drop(child.kill());
            let out = child.wait_with_output().expect("wait killed install");
            panic!(
                "install still running after {limit:?} against a stalled server:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("collect install");
    (common::Run::from_output(out), start.elapsed())
}

fn bundle_bytes(fx: &Fixture, compress: &'static str) -> (std::path::PathBuf, Vec<u8>) {
    let image = fx.image(IMAGE_LEN, 41);
    let bundle = fx.bundle(&image, &BundleOpts::default().compress(compress));
    let bytes = std::fs::read(&bundle).unwrap();
    (image, bytes)
}

#[test]
fn install_over_http_works() {
    for compress in ["zstd", "none"] {
        let fx = Fixture::new();
        let (image, bytes) = bundle_bytes(&fx, compress);
        let server = BundleServer::start(bytes);
        let before = fx.snapshot();
        let url = server.url("/bundle");
        fx.run(&["install", &url, "--progress", "none"]).ok();
        assert!(
            fx.slot_holds(SlotName::B, &image),
            "{compress}: slot B does not hold the image"
        );
        assert!(
            fx.slot_bytes(SlotName::A) == before.slots[0],
            "booted slot A was modified"
        );
        assert_eq!(
            fx.slot_state(SlotName::B),
            SlotState::Pending {
                tries_left: common::ATTEMPTS
            }
        );
        fx.run(&["simulate-boot"]).ok();
        assert_eq!(fx.booted(), SlotName::B);
    }
}

#[test]
fn connection_dropped_mid_payload_fails_cleanly_and_leaves_target_bad() {
    let fx = Fixture::new();
    let (_, bytes) = bundle_bytes(&fx, "zstd");
    let cut = payload_offset(&bytes) + (bytes.len() - payload_offset(&bytes)) / 2;
    let (url, server) = hang_up_server(bytes, cut);
    let before = fx.snapshot();
    let run = fx.run(&["install", &url, "--progress", "none"]);
    server.join().expect("server thread");
    eprintln!("install stderr:\n{}", run.stderr);
    assert_ne!(
        run.code, 0,
        "install succeeded on a truncated body:\n{}",
        run.stdout
    );
    assert_eq!(
        run.code, 1,
        "not a clean error exit (crash or signal?):\n{}",
        run.stderr
    );
    let err = run.stderr.to_lowercase();
    assert!(
        [
            "truncat",
            "connection",
            "disconnect",
            "eof",
            "closed",
            "incomplete"
        ]
        .iter()
        .any(|w| err.contains(w)),
        "stderr does not name truncation or the connection:\n{}",
        run.stderr
    );
    assert!(!err.contains("panick"), "bascule panicked:\n{}", run.stderr);
    fx.assert_nothing_lost(&before, SlotName::B);
    assert!(
        matches!(fx.slot_state(SlotName::B), SlotState::Bad { .. }),
        "target not marked bad after a partial write"
    );
}

#[test]
fn connection_dropped_before_the_payload_writes_nothing() {
    let fx = Fixture::new();
    let (_, bytes) = bundle_bytes(&fx, "none");
    let cut = payload_offset(&bytes) - 10;
    let (url, server) = hang_up_server(bytes, cut);
    let before = fx.snapshot();
    let run = fx.run(&["install", &url, "--progress", "none"]);
    server.join().expect("server thread");
    eprintln!("install stderr:\n{}", run.stderr);
    let run = run.fails_with(&["manifest"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    fx.assert_nothing_lost(&before, SlotName::B);
    fx.assert_untouched(&before);
}

#[test]
fn http_404_is_a_clear_error() {
    let fx = Fixture::new();
    let (_, bytes) = bundle_bytes(&fx, "zstd");
    let server = BundleServer::start(bytes);
    let before = fx.snapshot();
    let url = server.url("/no-such.bundle");
    fx.run(&["install", &url, "--progress", "none"])
        .fails_with(&["cannot fetch bundle", "404", "no-such.bundle"]);
    fx.assert_untouched(&before);
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let fx = Fixture::new();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let before = fx.snapshot();
    let url = format!("http://127.0.0.1:{port}/bundle");
    fx.run(&["install", &url, "--progress", "none"])
        .fails_with(&["cannot fetch bundle", &port.to_string()]);
    fx.assert_untouched(&before);
}

#[test]
fn server_stalling_mid_payload_times_out_naming_the_url() {
    let fx = Fixture::new();
    short_http_timeouts(&fx);
    let (image, bytes) = bundle_bytes(&fx, "none");
    let cut = payload_offset(&bytes) + (bytes.len() - payload_offset(&bytes)) / 2;
    let (url, release, server) = stalling_server(bytes.clone(), Some(cut));
    let before = fx.snapshot();
    let (run, took) = install_within(&fx, &url, Duration::from_secs(20));
    drop(release);
    server.join().expect("server thread");
    eprintln!("install took {took:?}, stderr:\n{}", run.stderr);
    let run = run.fails_with(&[&url, "stalled", "read_timeout_secs"]);
    assert_eq!(run.code, 1, "not a clean error exit:\n{}", run.stderr);
    assert!(
        took < Duration::from_secs(READ_TIMEOUT_SECS + 8),
        "the stall was noticed only after {took:?}"
    );
    fx.assert_nothing_lost(&before, SlotName::B);
    assert!(
        matches!(fx.slot_state(SlotName::B), SlotState::Bad { .. }),
        "target not marked bad after a partial write"
    );
    // The lock was released: the next install, from a file, goes through.
    let file = fx.write_bundle("after-stall.bundle", &bytes);
    fx.install(&file, &[]).ok();
    assert!(fx.slot_holds(SlotName::B, &image));
}

#[test]
fn server_that_never_answers_times_out_before_anything_is_written() {
    let fx = Fixture::new();
    short_http_timeouts(&fx);
    let (_, bytes) = bundle_bytes(&fx, "none");
    let (url, release, server) = stalling_server(bytes, None);
    let before = fx.snapshot();
    let (run, took) = install_within(&fx, &url, Duration::from_secs(20));
    drop(release);
    server.join().expect("server thread");
    eprintln!("install took {took:?}, stderr:\n{}", run.stderr);
    let run = run.fails_with(&[&url, "1 s read timeout", "read_timeout_secs"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    fx.assert_untouched(&before);
}
