//! 100 MB through the proxy in each direction with chunked transfer-coding, checked by SHA-256
//! on the far side. Nothing holds the body: the content is generated as it is sent, and hashed
//! by `sha256sum` as it arrives (in the upstream for uploads, behind curl for downloads).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::content::{content_sha256, Content, Hasher};
use common::mesh;
use common::proxy::Proxy;
use common::server::Server;
use common::tools::require;

const LEN: u64 = 100 * 1000 * 1000;

fn proxy_to(server: &Server) -> Proxy {
    Proxy::start(&mesh::services(&[("bulk", server.addr())], "120s"))
}

#[test]
fn chunked_upload_of_100_mb_arrives_intact() {
    require("curl");
    let server = Server::app("bulk");
    let proxy = proxy_to(&server);
    // `-T -` reads standard input of unknown length: curl sends it chunked, with
    // `Expect: 100-continue`.
    let mut child = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "120",
            "-H",
            "host: bulk",
            "-T",
            "-",
        ])
        .arg(proxy.url("/sha256"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl starts");
    let mut stdin = child.stdin.take().expect("curl stdin");
    let feeder = std::thread::spawn(move || {
        let sent = std::io::copy(&mut Content::new(LEN), &mut stdin);
        drop(stdin);
        sent
    });
    let expected = content_sha256(LEN);
    let out = child.wait_with_output().expect("curl finishes");
    assert_eq!(feeder.join().expect("feeder").expect("fed curl"), LEN);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{expected} {LEN}\n")
    );
    proxy.shutdown().expect("clean shutdown");
}

#[test]
fn chunked_download_of_100_mb_arrives_intact() {
    require("curl");
    let server = Server::app("bulk");
    let proxy = proxy_to(&server);
    let mut curl = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "120", "-H", "host: bulk"])
        .arg(proxy.url(&format!("/bytes/{LEN}")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl starts");
    let mut body = curl.stdout.take().expect("curl stdout");
    let mut hasher = Hasher::new();
    let received = std::io::copy(&mut body, &mut hasher).expect("body streams");
    hasher.flush().expect("flush");
    let got = hasher.finish().expect("digest");
    let out = curl.wait_with_output().expect("curl finishes");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(received, LEN);
    assert_eq!(got, content_sha256(LEN));
    proxy.shutdown().expect("clean shutdown");
}

/// Regression: when the client reads slower than the upstream writes, the proxy pauses the
/// upstream and must resume as soon as the client drained. The epoll driver used to queue that
/// `WriteDrained` without feeding it, so every pause lasted until the engine's next timer
/// (10 s, the header-read timeout): an 8 MB download through `curl | sha256sum` took 10 s.
#[test]
fn download_behind_a_slower_reader_does_not_stall() {
    require("curl");
    let server = Server::app("bulk");
    let proxy = proxy_to(&server);
    let len = 8 * 1000 * 1000;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; curl -sS --fail --max-time 60 -H 'host: bulk' {} | sha256sum",
                proxy.url(&format!("/bytes/{len}"))
            ))
            .output()
            .expect("curl | sha256sum");
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            common::content::digest_of(&out.stdout).expect("digest"),
            content_sha256(len)
        );
        assert!(took < std::time::Duration::from_secs(4), "took {took:?}");
    }
}
