//! The capture inbound listener (`forwardTo: IP`) picks each port's protocol as Istio's
//! virtual inbound listener does (`buildInboundChainConfigs`, `getFilterChainMatchOptions`
//! and `buildInboundPassthroughChains` in pilot/pkg/networking/core/listener_inbound.go),
//! end to end over mTLS between two real sidecars:
//! - a `tcp-` Service port is proxied as bytes (a line-echo workload, which no HTTP parser
//!   would accept) behind the network RBAC: an AuthorizationPolicy DENY on that port stops
//!   the principal it names before any byte reaches the workload;
//! - an `http-` port of the same workload is served as HTTP (its request reaches the HTTP
//!   server, and the DENY, which names the TCP port only, does not apply);
//! - a port no Service declares is sniffed (Envoy's `http_inspector`): a non-HTTP line goes
//!   through as bytes.
//!
//! How the capture listener learns the port: from the connection's original destination
//! (`SO_ORIGINAL_DST` after `trellis init`'s redirect), else its local address. Without a
//! network namespace (`tests/e2e_capture.rs` does the real redirect as root), this test
//! binds one capture listener per workload port on 127.0.0.1, each forwarding to the
//! workload on 127.0.0.2 at the port the client dialled, so the engine takes the same path
//! (protocol by destination port, then the workload at `IP:port`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

mod common;
use common::l4_peers::{
    identity_yaml, issue, line_echo, mtls_exchange, plain_exchange, scratch, wait_for_log,
};
use common::{spawn_proxy, wait_for};

/// An HTTP/1.1 workload on 127.0.0.2: answers every request with `web:<request line>`.
fn http_workload() -> u16 {
    let listener = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let line = text.lines().next().unwrap_or_default();
                let body = format!("web:{line}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    port
}

/// One HTTP/1.1 GET to `at` with `host`; the whole answer.
fn http_get(at: SocketAddr, host: &str, path: &str) -> String {
    let mut s = TcpStream::connect(at).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

fn at(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

#[test]
fn tcp_http_and_undeclared_ports_of_one_captured_workload_over_mtls() {
    let dir = scratch("in-proto", "mtls");
    let certs = issue(&dir, &["db", "sleep", "mallory"]);
    let (db, sleep, mallory) = (&certs[0], &certs[1], &certs[2]);
    let root = db.join("root-cert.pem");
    let (echo, seen) = line_echo("127.0.0.2", "db");
    let (raw, raw_seen) = line_echo("127.0.0.2", "raw");
    let (tcp, web, undeclared) = (echo.port(), http_workload(), raw.port());

    // The server sidecar: one capture listener per workload port, STRICT mTLS, and a DENY
    // for mallory on the TCP port. `services:` says which ports are TCP and HTTP.
    let server = dir.join("db.yaml");
    let captures: String = [tcp, web, undeclared]
        .iter()
        .map(|p| {
            format!(
                "  - {{name: inbound-{p}, address: \"127.0.0.1:{p}\", direction: inbound, forwardTo: \"127.0.0.2\"}}\n"
            )
        })
        .collect();
    std::fs::write(
        &server,
        format!(
            r#"workload: {{namespace: default, serviceAccount: db, labels: {{app: db}}}}
{identity}listeners:
{captures}services:
  - host: db
    ports: [{{number: {tcp}, name: tcp-echo}}, {{number: {web}, name: http-web}}]
    endpoints:
      - {{address: "127.0.0.2", serviceAccount: db, labels: {{app: db}}}}
istio:
  resources:
    - apiVersion: security.istio.io/v1
      kind: PeerAuthentication
      metadata: {{name: default, namespace: default}}
      spec: {{mtls: {{mode: STRICT}}}}
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {{name: no-db-for-mallory, namespace: default}}
      spec:
        selector: {{matchLabels: {{app: db}}}}
        action: DENY
        rules:
          - from: [{{source: {{principals: ["cluster.local/ns/default/sa/mallory"]}}}}]
            to: [{{operation: {{ports: ["{tcp}"]}}}}]
"#,
            identity = identity_yaml(db),
        ),
    )
    .expect("server config");
    let server_log = dir.join("db.log");
    let _server = spawn_proxy(&server, &[], &server_log);

    // The client sidecar (`sleep`): outbound listeners on 127.0.0.3 at the service ports, and
    // auto mTLS to the db endpoint, the server sidecar on 127.0.0.1.
    let client = dir.join("sleep.yaml");
    std::fs::write(
        &client,
        format!(
            r#"workload: {{namespace: default, serviceAccount: sleep, labels: {{app: sleep}}}}
{identity}listeners:
  - {{name: out-tcp, address: "127.0.0.3:{tcp}", direction: outbound}}
  - {{name: out-web, address: "127.0.0.3:{web}", direction: outbound}}
services:
  - host: db
    ports: [{{number: {tcp}, name: tcp-echo}}, {{number: {web}, name: http-web}}]
    endpoints:
      - {{address: "127.0.0.1", serviceAccount: db, labels: {{app: db, security.istio.io/tlsMode: istio}}}}
"#,
            identity = identity_yaml(sleep),
        ),
    )
    .expect("client config");
    let client_log = dir.join("sleep.log");
    let _client = spawn_proxy(&client, &[], &client_log);
    for port in [tcp, web, undeclared] {
        wait_for(at([127, 0, 0, 1], port));
    }
    wait_for(at([127, 0, 0, 3], tcp));
    wait_for(at([127, 0, 0, 3], web));

    // TCP port, sidecar to sidecar over mTLS: raw bytes both ways.
    assert_eq!(
        plain_exchange(at([127, 0, 0, 3], tcp), "\u{1}PING").as_deref(),
        Some("db:\u{1}PING")
    );
    // HTTP port of the same workload: parsed and served as HTTP.
    let answer = http_get(at([127, 0, 0, 3], web), &format!("db:{web}"), "/hello");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("web:GET /hello HTTP/1.1"), "{answer}");
    // mallory: denied on the TCP port (network RBAC), before its bytes reach the workload.
    let to = |p| at([127, 0, 0, 1], p);
    assert_eq!(
        mtls_exchange(to(tcp), mallory, &root, "DROP TABLE"),
        "CLOSED"
    );
    wait_for_log(
        &server_log,
        "rbac_access_denied_matched_policy[ns[default]-policy[no-db-for-mallory]-rule[0]]",
    );
    assert_eq!(*seen.lock().expect("lock"), vec!["\u{1}PING".to_string()]);
    // ... sleep is not.
    assert_eq!(
        mtls_exchange(to(tcp), sleep, &root, "SELECT 1"),
        "db:SELECT 1"
    );
    // A port no Service declares: sniffed, not HTTP, so bytes to the workload at that port.
    assert_eq!(
        mtls_exchange(to(undeclared), mallory, &root, "*1 PING"),
        "raw:*1 PING"
    );
    assert_eq!(*raw_seen.lock().expect("lock"), vec!["*1 PING".to_string()]);
    // STRICT: plaintext never gets through, whatever the port's protocol.
    assert_eq!(plain_exchange(to(tcp), "hello"), None);
    assert_eq!(plain_exchange(to(undeclared), "hello"), None);
}
