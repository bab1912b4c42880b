//! Traffic mirroring end to end: the real `trellis proxy` binary with a VirtualService that
//! mirrors `orders` to `orders-next`, two real upstream servers on loopback, and real curl as
//! the client. What Istio documents ("Mirroring" task; `mirror`, `mirrorPercentage` in the
//! VirtualService reference) and Envoy does (its router's shadow requests):
//! - the mirror receives a copy of the request, body included, with the client's host (pilot
//!   disables Envoy's `-shadow` suffix by default since Istio 1.28);
//! - the client sees only the primary's answer: a slow mirror answering 500 neither delays it
//!   nor shows in it, and a mirror nobody listens for changes nothing;
//! - a mirror's outcome is logged as a shadow line (`trellis::shadow`), never as a second
//!   access-log line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{curl, spawn_proxy, wait_for};

/// One request as an upstream saw it: request line, host, body.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    line: String,
    host: String,
    body: String,
}

/// An HTTP/1.1 upstream on a free loopback port that records what it receives and answers
/// `status` with `body` after `delay`, keeping connections alive.
fn upstream(status: u16, body: &'static str, delay: Duration) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let record = record.clone();
            std::thread::spawn(move || serve(stream, status, body, delay, &record));
        }
    });
    (port, seen)
}

fn serve(stream: TcpStream, status: u16, body: &str, delay: Duration, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let (mut host, mut length) = (String::new(), 0usize);
        loop {
            let mut field = String::new();
            if reader.read_line(&mut field).unwrap_or(0) == 0 {
                return;
            }
            let field = field.trim_end();
            if field.is_empty() {
                break;
            }
            let (name, value) = field.split_once(':').unwrap_or((field, ""));
            match name.to_ascii_lowercase().as_str() {
                "host" => host = value.trim().to_string(),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        let mut buf = vec![0; length];
        if reader.read_exact(&mut buf).is_err() {
            return;
        }
        seen.lock().expect("lock").push(Seen {
            line: line.trim_end().to_string(),
            host,
            body: String::from_utf8_lossy(&buf).into_owned(),
        });
        std::thread::sleep(delay);
        let answer = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("trellis-mirror-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

/// `trellis proxy` with an outbound listener on `port`, `orders` at `primary` mirrored to
/// `orders-next` at `mirror`.
fn proxy(dir: &Path, port: u16, primary: u16, mirror: u16) -> common::Killed {
    let config = dir.join("mirror.yaml");
    std::fs::write(
        &config,
        format!(
            r#"listeners:
  - {{name: outbound, address: "127.0.0.1:{port}", direction: outbound}}
services:
  - host: orders
    ports: [9080]
    endpoints: [{{address: "127.0.0.1:{primary}"}}]
  - host: orders-next
    ports: [9080]
    endpoints: [{{address: "127.0.0.1:{mirror}"}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: orders}}
      spec:
        hosts: [orders]
        http:
        - route: [{{destination: {{host: orders}}}}]
          mirror: {{host: orders-next}}
          mirrorPercentage: {{value: 100.0}}
"#
        ),
    )
    .expect("config file");
    let proxy = spawn_proxy(&config, &[], &dir.join("proxy.log"));
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    proxy
}

fn post(port: u16) -> (String, Duration) {
    let url = format!("http://127.0.0.1:{port}/orders?id=7");
    let started = Instant::now();
    let out = curl(&["-H", "host: orders:9080", "--data-binary", "item=42", &url]);
    assert!(out.status.success(), "{out:?}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn the_mirror_gets_a_copy_and_the_client_only_the_primary_answer() {
    let dir = scratch("copy");
    let (primary, primary_seen) = upstream(200, "primary", Duration::ZERO);
    // A slow mirror that fails: neither its time nor its status may reach the client.
    let (mirror, mirror_seen) = upstream(500, "mirror", Duration::from_secs(3));
    let port = free_port();
    let _proxy = proxy(&dir, port, primary, mirror);
    let (body, took) = post(port);
    assert_eq!(body, "primary");
    assert!(took < Duration::from_secs(2), "the client waited {took:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while mirror_seen.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "the mirror never got the copy");
        std::thread::sleep(Duration::from_millis(20));
    }
    let expected = Seen {
        line: "POST /orders?id=7 HTTP/1.1".into(),
        host: "orders:9080".into(),
        body: "item=42".into(),
    };
    assert_eq!(
        primary_seen.lock().expect("lock").as_slice(),
        std::slice::from_ref(&expected)
    );
    assert_eq!(mirror_seen.lock().expect("lock").as_slice(), [expected]);
}

#[test]
fn a_mirror_nobody_listens_for_changes_nothing_for_the_client() {
    let dir = scratch("closed");
    let (primary, primary_seen) = upstream(200, "primary", Duration::ZERO);
    let closed = free_port();
    let port = free_port();
    let _proxy = proxy(&dir, port, primary, closed);
    for _ in 0..3 {
        let (body, took) = post(port);
        assert_eq!(body, "primary");
        assert!(took < Duration::from_secs(2), "the client waited {took:?}");
    }
    assert_eq!(primary_seen.lock().expect("lock").len(), 3);
    // The failed mirrors are in the proxy's log as shadow lines, not as access-log lines.
    let log = dir.join("proxy.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let shadows = text
            .lines()
            .filter(|l| l.contains("mirrored request") && l.contains("ConnectFailed"))
            .count();
        // The shadow line of a request may be written before its access-log line: wait for
        // both to be complete.
        let access = text.matches("\"POST /orders?id=7\" 200").count();
        if shadows == 3 && access == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline && shadows <= 3 && access <= 3,
            "{shadows} shadow lines and {access} access-log lines in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
