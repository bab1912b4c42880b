//! TCP and TLS servers at the ingress gateway, end to end (Istio's "Ingress Gateway without TLS
//! Termination" task, and the tcp-echo sample through a `TCP` Gateway server), following
//! createGatewayTCPFilterChainOpts, buildGatewayNetworkFiltersFromTCPRoutes and
//! buildGatewayNetworkFiltersFromTLSRoutes in pilot/pkg/networking/core/gateway.go:
//! - a `TCP` server proxies the bytes of every connection to the bound VirtualService's `tcp`
//!   route;
//! - a `TLS` server with `tls.mode: PASSTHROUGH` routes by the ClientHello's SNI with the
//!   VirtualService's `tls` rules, never terminating: each client completes its handshake with
//!   the backend its SNI chose (real `openssl s_server`/`s_client`, curl), an unknown SNI finds
//!   no chain and is closed;
//! - a `TLS` server with `tls.mode: SIMPLE` terminates with its certificate files, then proxies
//!   the plaintext to the `tcp` route (Python's `ssl` as the client).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

mod common;
use common::l4_peers::{certificate, s_server, scratch, subject_for};
use common::{curl, free_offset, spawn_gateway, wait_for};

/// A line-echo TCP backend answering each line with `<tag>:<line>`.
fn line_echo(tag: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(mut out) = stream.try_clone() else {
                    return;
                };
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if out.write_all(format!("{tag}:{line}\n").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn tcp_passthrough_and_terminated_tls_servers() {
    let dir = scratch("gw-l4", "servers");
    let echo = line_echo("echo");
    let tls_echo = line_echo("tls-echo");
    let (a, _server_a, cert_a) = s_server(&dir, "a.example.com");
    let (b, _server_b, _) = s_server(&dir, "b.example.com");
    let (tcp_cert, tcp_key) = certificate(&dir, "db.example.com");
    let offset = free_offset(&[31400, 443, 9443]);
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            r#"services:
  - host: tcp-echo
    ports: [{{number: 9000, name: tcp}}]
    endpoints: [{{address: "{echo}"}}]
  - host: tls-echo
    ports: [{{number: 9000, name: tcp}}]
    endpoints: [{{address: "{tls_echo}"}}]
  - host: a-backend
    ports: [{{number: 8443, name: tls}}]
    endpoints: [{{address: "127.0.0.1:{a}"}}]
  - host: b-backend
    ports: [{{number: 8443, name: tls}}]
    endpoints: [{{address: "127.0.0.1:{b}"}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: Gateway
      metadata: {{name: edge}}
      spec:
        selector: {{istio: ingressgateway}}
        servers:
          - port: {{number: 31400, name: tcp, protocol: TCP}}
            hosts: ["*"]
          - port: {{number: 443, name: tls, protocol: TLS}}
            hosts: [a.example.com, b.example.com]
            tls: {{mode: PASSTHROUGH}}
          - port: {{number: 9443, name: tls-db, protocol: TLS}}
            hosts: [db.example.com]
            tls: {{mode: SIMPLE, serverCertificate: {tcp_cert}, privateKey: {tcp_key}}}
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: tcp-echo}}
      spec:
        hosts: ["*"]
        gateways: [edge]
        tcp:
          - match: [{{port: 31400}}]
            route: [{{destination: {{host: tcp-echo, port: {{number: 9000}}}}}}]
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: db}}
      spec:
        hosts: [db.example.com]
        gateways: [edge]
        tcp:
          - match: [{{port: 9443}}]
            route: [{{destination: {{host: tls-echo, port: {{number: 9000}}}}}}]
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: passthrough}}
      spec:
        hosts: [a.example.com, b.example.com]
        gateways: [edge]
        tls:
          - match: [{{port: 443, sniHosts: [a.example.com]}}]
            route: [{{destination: {{host: a-backend, port: {{number: 8443}}}}}}]
          - match: [{{port: 443, sniHosts: [b.example.com]}}]
            route: [{{destination: {{host: b-backend, port: {{number: 8443}}}}}}]
"#,
            tcp_cert = tcp_cert.display(),
            tcp_key = tcp_key.display(),
        ),
    )
    .expect("config");
    let log = dir.join("gateway.log");
    let _gateway = spawn_gateway(&config, offset, &log);
    let (tcp, tls, simple) = (offset + 31400, offset + 443, offset + 9443);
    for port in [tcp, tls, simple] {
        wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();

    // TCP: bytes that are no HTTP go through as they are.
    let mut s = TcpStream::connect(("127.0.0.1", tcp)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"\x00hello\n").expect("write");
    let mut answer = [0u8; 12];
    s.read_exact(&mut answer).expect("echo answer");
    assert_eq!(&answer, b"echo:\x00hello\n", "{}", logged());

    // PASSTHROUGH: each SNI reaches its own backend's handshake.
    assert!(
        subject_for(tls, "a.example.com").contains("a.example.com"),
        "{}",
        logged()
    );
    assert!(subject_for(tls, "b.example.com").contains("b.example.com"));
    assert!(subject_for(tls, "c.example.com").starts_with("no handshake"));
    // curl trusts a's certificate only, and reaches a through the gateway by name.
    let resolve = format!("a.example.com:{tls}:127.0.0.1");
    let url = format!("https://a.example.com:{tls}/");
    let cacert = cert_a.display().to_string();
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        &cacert,
        "--resolve",
        &resolve,
        &url,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{out:?}\n{}",
        logged()
    );

    // SIMPLE on a TLS server: terminated here with db.example.com's certificate, then TCP.
    let script = format!(
        r#"
import socket, ssl
ctx = ssl.create_default_context(cafile={cafile:?})
raw = socket.create_connection(("127.0.0.1", {simple}), timeout=10)
tls = ctx.wrap_socket(raw, server_hostname="db.example.com")
tls.sendall(b"ping\n")
data = b""
while not data.endswith(b"\n"):
    chunk = tls.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode().strip())
"#,
        cafile = tcp_cert.display().to_string(),
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{out:?}\n{}", logged());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "tls-echo:ping");
}
