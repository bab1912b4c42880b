//! CORS end to end: the real `trellis proxy` binary with a VirtualService `corsPolicy`, an
//! upstream nobody here wrote (Python's `http.server`, which answers no OPTIONS: 501), and real
//! curl as the browser. What Istio documents (`corsPolicy` in the VirtualService reference) and
//! Envoy's CORS filter does (source/extensions/filters/http/cors/cors_filter.cc):
//! - a preflight from an allowed origin is answered by the proxy (200 with the allow headers),
//!   so the upstream, which would say 501, never sees it;
//! - a preflight from another origin is forwarded (`unmatchedPreflights` FORWARD): the 501 is
//!   the upstream's;
//! - an actual request from an allowed origin gets `access-control-allow-origin` (its own
//!   origin) and the exposed headers on the upstream's answer; from another origin, nothing.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{curl_i, spawn_proxy, wait_for, Killed};

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("trellis-cors-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

/// `python3 -m http.server` on `port` serving `root` (python3 is required: a missing one fails
/// the test).
fn python_upstream(root: &Path, port: u16) -> Killed {
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is required for this test");
    let upstream = Killed(child);
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    upstream
}

fn proxy(dir: &Path, port: u16, upstream: u16) -> Killed {
    let config = dir.join("cors.yaml");
    std::fs::write(
        &config,
        format!(
            r#"listeners:
  - {{name: outbound, address: "127.0.0.1:{port}", direction: outbound}}
services:
  - host: files
    ports: [8000]
    endpoints: [{{address: "127.0.0.1:{upstream}"}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: files}}
      spec:
        hosts: [files]
        http:
        - route: [{{destination: {{host: files}}}}]
          corsPolicy:
            allowOrigins:
            - exact: https://app.example
            - regex: "https://.*\\.corp\\.example"
            allowMethods: [GET, POST]
            allowHeaders: [x-token]
            exposeHeaders: [x-trace]
            maxAge: 10m
            allowCredentials: true
"#
        ),
    )
    .expect("config file");
    let proxy = spawn_proxy(&config, &[], &dir.join("proxy.log"));
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    proxy
}

/// The head in lower case, every field line ending in CRLF (curl_i cuts the last one's).
fn lower(head: &str) -> String {
    format!("{}\r\n", head.to_ascii_lowercase())
}

#[test]
fn preflights_are_answered_by_the_proxy_and_responses_decorated() {
    let dir = scratch("e2e");
    let root = dir.join("www");
    std::fs::create_dir_all(&root).expect("www");
    std::fs::write(root.join("hello.txt"), "hello from python\n").expect("file");
    let upstream_port = free_port();
    let _upstream = python_upstream(&root, upstream_port);
    let port = free_port();
    let _proxy = proxy(&dir, port, upstream_port);
    let url = format!("http://127.0.0.1:{port}/hello.txt");
    let host = "host: files:8000";

    // The upstream itself refuses OPTIONS: what a forwarded preflight gets.
    let direct = format!("http://127.0.0.1:{upstream_port}/hello.txt");
    let (status, _, _) = curl_i(&["-X", "OPTIONS", &direct]);
    assert_eq!(status, 501, "python's http.server answers OPTIONS with 501");

    // Allowed origin (regex): the proxy answers the preflight.
    let (status, head, body) = curl_i(&[
        "-X",
        "OPTIONS",
        "-H",
        host,
        "-H",
        "origin: https://web.corp.example",
        "-H",
        "access-control-request-method: POST",
        "-H",
        "access-control-request-headers: x-token",
        &url,
    ]);
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, "");
    let h = lower(&head);
    for line in [
        "access-control-allow-origin: https://web.corp.example\r\n",
        "access-control-allow-credentials: true\r\n",
        "access-control-allow-methods: get,post\r\n",
        "access-control-allow-headers: x-token\r\n",
        "access-control-max-age: 600\r\n",
    ] {
        assert!(h.contains(line), "{line:?} missing from {head}");
    }

    // Another origin: forwarded, so the upstream's 501, with no CORS headers.
    let (status, head, _) = curl_i(&[
        "-X",
        "OPTIONS",
        "-H",
        host,
        "-H",
        "origin: https://evil.example",
        "-H",
        "access-control-request-method: POST",
        &url,
    ]);
    assert_eq!(status, 501, "{head}");
    assert!(!lower(&head).contains("access-control-"), "{head}");

    // An actual request from an allowed origin: the upstream's answer, decorated.
    let (status, head, body) = curl_i(&["-H", host, "-H", "origin: https://app.example", &url]);
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, "hello from python\n");
    let h = lower(&head);
    for line in [
        "access-control-allow-origin: https://app.example\r\n",
        "access-control-allow-credentials: true\r\n",
        "access-control-expose-headers: x-trace\r\n",
    ] {
        assert!(h.contains(line), "{line:?} missing from {head}");
    }
    assert!(!h.contains("access-control-allow-methods"), "{head}");

    // From another origin, or with no origin at all: the answer is left alone.
    for origin in ["origin: https://evil.example", "x-no-origin: 1"] {
        let (status, head, body) = curl_i(&["-H", host, "-H", origin, &url]);
        assert_eq!(status, 200, "{head}");
        assert_eq!(body, "hello from python\n");
        assert!(!lower(&head).contains("access-control-"), "{head}");
    }
}
