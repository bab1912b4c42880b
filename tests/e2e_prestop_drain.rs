//! A native sidecar's preStop drain, end to end with a real `trellis proxy` in a private
//! network namespace (so Istio's fixed ports 15000/15020 are free; needs root, as CI runs):
//! the hook Istio's injection template gives it, `pilot-agent request --debug-port=15020 POST
//! drain` (here `trellis request ...`, what `trellis inject` writes), reaches the status
//! port's `/drain` (pilot-agent's `handleDrain`), which drains the inbound listeners as
//! Envoy's `drain_listeners?inboundonly&graceful&skip_exit` does with Istio's `immediate`
//! drain strategy:
//!
//! - an idle inbound keep-alive connection is closed at once; a new one is still accepted
//!   during the drain period and gets `connection: close` on its answer, and one is refused
//!   after it;
//! - the outbound side keeps serving keep-alive, as the application may still call out while
//!   it shuts down;
//! - the sidecar keeps running until its SIGTERM, then exits 0;
//! - `trellis request` refuses ports pilot-agent would not reach, and Envoy's admin form of
//!   the drain answers on 15000 too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod capture_support;
use capture_support::{enter_pod_netns, wait_ready, Proc, TRELLIS};

/// An application answering every request `200 app` and keeping its connections.
fn app() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    let mut head_done = false;
                    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                        if line == "\r\n" {
                            head_done = true;
                            break;
                        }
                        line.clear();
                    }
                    if !head_done
                        || stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\napp")
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// One keep-alive exchange on `conn`: the status line and whether the answer said
/// `connection: close`; `None` when the connection was closed instead.
fn exchange(conn: &mut BufReader<TcpStream>, host: &str) -> Option<(String, bool)> {
    let request = format!("GET / HTTP/1.1\r\nhost: {host}\r\n\r\n");
    conn.get_mut().write_all(request.as_bytes()).ok()?;
    let mut status = String::new();
    if conn.read_line(&mut status).ok()? == 0 {
        return None;
    }
    let (mut close, mut length) = (false, 0usize);
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let lower = line.trim_end().to_ascii_lowercase();
        if lower.is_empty() {
            break;
        }
        close |= lower == "connection: close";
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).ok()?;
    Some((status.trim_end().to_string(), close))
}

fn connect(port: u16) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    BufReader::new(stream)
}

/// Whether the peer closed `conn` (EOF within a few seconds).
fn closed_by_peer(conn: &mut BufReader<TcpStream>) -> bool {
    let mut byte = [0u8; 1];
    matches!(conn.read(&mut byte), Ok(0))
}

fn trellis_request(args: &[&str]) -> std::process::Output {
    Command::new(TRELLIS)
        .arg("request")
        .args(args)
        .output()
        .expect("trellis runs")
}

#[test]
fn the_prestop_drain_closes_inbound_connections_and_keeps_outbound_serving() {
    enter_pod_netns();
    let app_port = app();
    let dir = std::env::temp_dir().join(format!("trellis-prestop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("sidecar.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  - {{name: outbound, address: \"127.0.0.1:15001\", direction: outbound}}\n  - {{name: inbound, address: \"127.0.0.1:15006\", direction: inbound, forwardTo: \"127.0.0.1:{app_port}\"}}\nservices:\n  - host: app\n    ports: [80]\n    endpoints:\n      - {{address: \"127.0.0.1:{app_port}\"}}\n"
        ),
    )
    .expect("config");
    let log_path = dir.join("proxy.log");
    let mut proxy = Proc(
        Command::new(TRELLIS)
            .args(["proxy", "--config"])
            .arg(&config)
            .args([
                "--cores",
                "1",
                "--no-pin",
                "--no-watch",
                "--drain-seconds",
                "2",
            ])
            .args(["--admin-port", "15000", "--status-port", "15020"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("log"))
            .spawn()
            .expect("trellis starts"),
    );
    wait_ready(15021);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Keep-alive connections on both sides, and an idle inbound one.
    let mut inbound = connect(15006);
    let mut outbound = connect(15001);
    let mut idle = connect(15006);
    for (conn, host) in [
        (&mut inbound, "app"),
        (&mut outbound, "app"),
        (&mut idle, "app"),
    ] {
        let (status, close) = exchange(conn, host).expect("answered");
        assert_eq!(
            (status.as_str(), close),
            ("HTTP/1.1 200 OK", false),
            "{}",
            log()
        );
    }

    // Ports pilot-agent would not reach are refused before any request.
    let refused = trellis_request(&["--debug-port", "9999", "POST", "drain"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not in allowed list"));

    // The hook, as `trellis inject` writes it.
    let hook = trellis_request(&["--debug-port=15020", "POST", "drain"]);
    assert!(
        hook.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&hook.stderr),
        log()
    );
    assert_eq!(String::from_utf8_lossy(&hook.stdout).trim(), "OK");

    // Inbound: idle keep-alive connections are closed (one with a request in flight would
    // get its answer first, saying close: engine/src/proxy/drain_tests.rs).
    assert!(
        closed_by_peer(&mut inbound),
        "an idle inbound connection is closed"
    );
    assert!(
        closed_by_peer(&mut idle),
        "an idle inbound connection is closed"
    );
    // A newcomer during the drain period is still served, and told to go.
    let mut newcomer = connect(15006);
    let (status, close) = exchange(&mut newcomer, "app").expect("accepted while draining");
    assert_eq!((status.as_str(), close), ("HTTP/1.1 200 OK", true));
    // Outbound: untouched.
    let (status, close) = exchange(&mut outbound, "app").expect("answered");
    assert_eq!(
        (status.as_str(), close),
        ("HTTP/1.1 200 OK", false),
        "{}",
        log()
    );

    // After the drain period the inbound listener is closed; outbound still serves.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], 15006))).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the inbound listener stayed open\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, close) = exchange(&mut outbound, "app").expect("still served");
    assert_eq!((status.as_str(), close), ("HTTP/1.1 200 OK", false));
    let mut fresh = connect(15001);
    assert!(
        exchange(&mut fresh, "app").is_some(),
        "new outbound connections too"
    );
    assert!(proxy.0.try_wait().expect("wait").is_none(), "still running");

    // Envoy's admin form answers too (already draining: nothing more happens).
    let admin = trellis_request(&["POST", "drain_listeners?inboundonly&graceful&skip_exit"]);
    assert!(
        admin.status.success(),
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );

    // SIGTERM, once the application is gone: the sidecar exits 0.
    let pid = libc::pid_t::try_from(proxy.0.id()).expect("pid");
    // SAFETY: a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = proxy.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(log().contains("draining inbound listeners"), "{}", log());
    let _ = std::fs::remove_dir_all(&dir);
}
