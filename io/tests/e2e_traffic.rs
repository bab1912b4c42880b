//! End to end with real clients: curl (and python3's http.server as an upstream nobody here
//! wrote) through a Trellis proxy configured from a `trellis proxy` config file, on loopback.
//! Keep-alive reuse on both sides, header routing, a weighted split counted over 1,000
//! requests, and `Expect: 100-continue`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::content::{content_sha256, Content};
use common::mesh;
use common::proxy::Proxy;
use common::server::Server;
use common::tools::{curl, require, split_response, text};

struct App {
    v1: Server,
    v2: Server,
    v3: Server,
    proxy: Proxy,
}

fn app(v1_weight: u32) -> App {
    let (v1, v2, v3) = (Server::app("v1"), Server::app("v2"), Server::app("v3"));
    let proxy = Proxy::start(&mesh::app(v1.addr(), v2.addr(), v3.addr(), v1_weight));
    App { v1, v2, v3, proxy }
}

#[test]
fn keep_alive_is_reused_downstream_and_upstream() {
    let a = app(80);
    let urls: Vec<String> = (0..5).map(|i| a.proxy.url(&format!("/k/{i}"))).collect();
    let mut args = vec![
        "-H",
        "host: app",
        "-H",
        "end-user: jason",
        "-w",
        "[%{num_connects}]\n",
    ];
    args.extend(urls.iter().map(String::as_str));
    let out = curl(&args);
    // curl opened one connection for five requests...
    assert_eq!(text(&out), "v2\n[1]\nv2\n[0]\nv2\n[0]\nv2\n[0]\nv2\n[0]\n");
    // ...and so did the proxy towards the upstream.
    assert_eq!(a.v2.requests(), 5);
    assert_eq!(a.v2.connections(), 1, "upstream connection reused");
    // A second client later still reuses the pooled upstream connection.
    curl(&["-H", "host: app", "-H", "end-user: jason", &urls[0]]);
    assert_eq!(a.v2.connections(), 1, "pooled upstream connection reused");
    a.proxy.shutdown().expect("clean shutdown");
}

#[test]
fn header_routing_sends_jason_to_v2_only() {
    let a = app(80);
    let url = a.proxy.url("/reviews/1");
    for _ in 0..10 {
        let out = curl(&["-i", "-H", "host: app", "-H", "end-user: jason", &url]);
        let (status, head, body) = split_response(&out);
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("x-upstream: v2"), "{head}");
        assert_eq!(body, b"v2\n");
    }
    // A different user, or none, never reaches v2.
    for args in [
        vec!["-H", "host: app", "-H", "end-user: mallory", &url],
        vec!["-H", "host: app", &url],
    ] {
        let body = text(&curl(&args));
        assert!(body == "v1\n" || body == "v3\n", "{body:?}");
    }
    assert_eq!(a.v2.requests(), 10);
    drop(a);
}

#[test]
fn weighted_split_over_1000_requests() {
    let a = app(80);
    // One curl, 1,000 URLs (curl's globbing) over one keep-alive connection.
    let url = a.proxy.url("/split/[1-1000]");
    let out = curl(&["-H", "host: app", &url]);
    let mut counts = BTreeMap::new();
    for line in text(&out).lines() {
        *counts.entry(line.to_string()).or_insert(0u32) += 1;
    }
    let v1 = counts.get("v1").copied().unwrap_or(0);
    let v3 = counts.get("v3").copied().unwrap_or(0);
    assert_eq!(v1 + v3, 1000, "{counts:?}");
    // 80/20 within 4 percentage points (3 standard deviations of a binomial is 3.8).
    assert!((760..=840).contains(&v1), "v1 got {v1} of 1000: {counts:?}");
    // The upstreams agree with what curl saw.
    assert_eq!(a.v1.requests(), u64::from(v1));
    assert_eq!(a.v3.requests(), u64::from(v3));
    assert_eq!(a.v2.requests(), 0);
}

#[test]
fn expect_100_continue_is_answered_and_the_body_flows() {
    let a = app(80);
    let len = 4 * 1024 * 1024;
    let path = std::env::temp_dir().join(format!("trellis-e2e-expect-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&path).expect("temp file");
        std::io::copy(&mut Content::new(len), &mut f).expect("write temp file");
        f.flush().expect("flush");
    }
    let data = format!("@{}", path.display());
    let url = a.proxy.url("/sha256");
    let started = Instant::now();
    // curl waits up to --expect100-timeout for the 100 before sending the body anyway: with a
    // long wait, a quick transfer proves the proxy sent `100 Continue`.
    let out = curl(&[
        "-v",
        "-H",
        "host: app",
        "-H",
        "end-user: jason",
        "-H",
        "expect: 100-continue",
        "--expect100-timeout",
        "20",
        "--data-binary",
        &data,
        &url,
    ]);
    let took = started.elapsed();
    let _ = std::fs::remove_file(&path);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("HTTP/1.1 100 Continue"), "{log}");
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}: no 100 Continue?"
    );
    assert_eq!(text(&out), format!("{} {len}\n", content_sha256(len)));
}

#[test]
fn python_http_server_upstream_serves_a_file_through_the_proxy() {
    require("python3");
    let dir = std::env::temp_dir().join(format!("trellis-e2e-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let len = 8 * 1024 * 1024 + 123;
    {
        let mut f = std::fs::File::create(dir.join("blob.bin")).expect("file");
        std::io::copy(&mut Content::new(len), &mut f).expect("write");
    }
    let port = common::server::refused_addr().port();
    let py = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 http.server starts");
    let _py = KillOnDrop(py);
    let addr = format!("127.0.0.1:{port}").parse().expect("address");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "python3 http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let proxy = Proxy::start(&mesh::services(&[("files", addr)], "10s"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; curl -sS --fail -H 'host: files' {} | sha256sum",
            proxy.url("/blob.bin")
        ))
        .output()
        .expect("curl | sha256sum");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = common::content::digest_of(&out.stdout).expect("digest");
    // Twice more on a directory listing, which python answers with HTTP/1.0 framing too.
    for _ in 0..2 {
        let listing = text(&curl(&["-H", "host: files", &proxy.url("/")]));
        assert!(listing.contains("blob.bin"), "{listing}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got, content_sha256(len));
}

/// Stops a child process however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
