//! TCP services and VirtualService `tcp`/`tls` routes end to end: the real `trellis proxy`
//! binary, real TCP peers on loopback, and real `openssl s_server`/`s_client` for SNI. What
//! Istio documents ("TCP Traffic Shifting" with the tcp-echo sample; `tcp[]`, `tls[].sniHosts`
//! in the VirtualService reference) and Envoy's tcp_proxy does:
//! - a weighted `tcp` rule splits connections between subsets by weight;
//! - a `tls` rule routes by the ClientHello's SNI without terminating TLS: each client
//!   completes its handshake with the server the SNI chose;
//! - half-close: a client that shuts its write side still gets the answer the upstream sends
//!   after seeing that EOF;
//! - a refused upstream closes the client, and the access log says UF.
//!
//! The proxy has no capture here, so each L4 listener listens on its service's port (a free
//! port picked per test, declared as the service port), as a sidecar's outbound listener for
//! that port would.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::l4_peers::{free_port, s_server, scratch, subject_for};
use common::{spawn_proxy, wait_for};

/// A TCP upstream that reads until the client's EOF, then answers `<tag>:<what it read>` and
/// closes: it only answers once the proxy passed the client's half-close on.
fn echo_after_eof(tag: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut got = Vec::new();
                if stream.read_to_end(&mut got).is_err() {
                    return;
                }
                let answer = format!("{tag}:{}", String::from_utf8_lossy(&got));
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    port
}

/// Send `what`, half-close, read the answer to EOF.
fn exchange(port: u16, what: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the proxy");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(what.as_bytes()).expect("write");
    s.shutdown(Shutdown::Write).expect("half-close");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read to EOF");
    answer
}

fn wait_for_log(log: &Path, what: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if what(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "not in the log:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn weighted_tcp_routes_half_close_and_refused_upstreams() {
    let dir = scratch("tcp", "weighted");
    let (v1, v2) = (echo_after_eof("v1"), echo_after_eof("v2"));
    let (echo_port, dead_port, dead_upstream) = (free_port(), free_port(), free_port());
    let config = dir.join("tcp.yaml");
    std::fs::write(
        &config,
        format!(
            r#"listeners:
  - {{name: echo, address: "127.0.0.1:{echo_port}"}}
  - {{name: dead, address: "127.0.0.1:{dead_port}"}}
services:
  - host: tcp-echo
    ports: [{{number: {echo_port}, name: tcp}}]
    endpoints:
      - {{address: "127.0.0.1:{v1}", labels: {{version: v1}}}}
      - {{address: "127.0.0.1:{v2}", labels: {{version: v2}}}}
  - host: dead
    ports: [{{number: {dead_port}, name: mongo}}]
    endpoints: [{{address: "127.0.0.1:{dead_upstream}"}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: DestinationRule
      metadata: {{name: tcp-echo}}
      spec:
        host: tcp-echo
        subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: tcp-echo}}
      spec:
        hosts: [tcp-echo]
        tcp:
        - match: [{{port: {echo_port}}}]
          route:
          - {{destination: {{host: tcp-echo, subset: v1}}, weight: 80}}
          - {{destination: {{host: tcp-echo, subset: v2}}, weight: 20}}
"#
        ),
    )
    .expect("config file");
    let log = dir.join("proxy.log");
    let _proxy = spawn_proxy(&config, &[], &log);
    wait_for(SocketAddr::from(([127, 0, 0, 1], echo_port)));
    // Weighted split, and each answer came after the client's FIN reached the upstream.
    let (mut to_v1, mut to_v2) = (0, 0);
    for i in 0..100 {
        let answer = exchange(echo_port, &format!("ping{i}"));
        match answer.split_once(':') {
            Some(("v1", rest)) if rest == format!("ping{i}") => to_v1 += 1,
            Some(("v2", rest)) if rest == format!("ping{i}") => to_v2 += 1,
            _ => panic!("unexpected answer {answer:?}"),
        }
    }
    assert!(
        (65..=93).contains(&to_v1),
        "80/20 split: v1 {to_v1}, v2 {to_v2}"
    );
    // A refused upstream: the client's connection is closed, and the log says UF.
    let mut s = TcpStream::connect(("127.0.0.1", dead_port)).expect("the proxy accepts");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    let text = wait_for_log(&log, |t| t.contains(" UF ") && t.contains("dead"));
    let uf = text
        .lines()
        .find(|l| l.contains(" UF "))
        .expect("a UF line");
    assert!(uf.contains(&format!("127.0.0.1:{dead_upstream}")), "{uf}");
    // One record per echo connection, with the bytes each way (ping0: 5 in, 8 out).
    let text = wait_for_log(&log, |t| t.matches("route=tcp-echo.default").count() >= 100);
    assert!(
        text.lines()
            .any(|l| l.contains(" - 5 8 ") && l.contains("tcp-echo")),
        "{text}"
    );
}

#[test]
fn tls_passthrough_routes_by_sni() {
    let dir = scratch("tcp", "sni");
    let (a, _server_a, _) = s_server(&dir, "server-a");
    let (b, _server_b, _) = s_server(&dir, "server-b");
    let port = free_port();
    let config = dir.join("tls.yaml");
    std::fs::write(
        &config,
        format!(
            r#"listeners:
  - {{name: tls, address: "127.0.0.1:{port}"}}
services:
  - host: db
    ports: [{{number: {port}, name: tls}}]
    endpoints: [{{address: "127.0.0.1:{a}"}}]
  - host: db-b
    ports: [{{number: {port}, name: tls}}]
    endpoints: [{{address: "127.0.0.1:{b}"}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: db}}
      spec:
        hosts: [db]
        tls:
        - match: [{{port: {port}, sniHosts: [a.example.com]}}]
          route: [{{destination: {{host: db}}}}]
        - match: [{{port: {port}, sniHosts: ["*.example.com"]}}]
          route: [{{destination: {{host: db-b}}}}]
"#
        ),
    )
    .expect("config file");
    let log = dir.join("proxy.log");
    let _proxy = spawn_proxy(&config, &[], &log);
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    assert!(subject_for(port, "a.example.com").contains("server-a"));
    assert!(subject_for(port, "other.example.com").contains("server-b"));
    // db-b's own chain answers its host name; an unknown name finds no chain (NR).
    assert!(subject_for(port, "db-b.default.svc.cluster.local").contains("server-b"));
    assert!(subject_for(port, "nobody.org").starts_with("no handshake"));
    let text = wait_for_log(&log, |t| t.contains(" NR "));
    assert!(
        text.contains("\"a.example.com\""),
        "the SNI is logged: {text}"
    );
}
