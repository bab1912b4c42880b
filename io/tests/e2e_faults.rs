//! Upstreams that misbehave, each in one way a real one can, seen through curl: the client gets
//! the mesh's error (Envoy's status and response flag, in `x-trellis-response-flags`) or a
//! visibly truncated response, and after every failure the proxy still serves a healthy
//! service — including while a broken request is still hanging.

mod common;

use std::time::{Duration, Instant};

use common::mesh;
use common::proxy::Proxy;
use common::server::{refused_addr, Behaviour, Server};
use common::tools::{curl, curl_output, split_response};

struct Fixture {
    _servers: Vec<Server>,
    proxy: Proxy,
}

/// `ok` is healthy; the others misbehave; the route timeout is 1 s.
fn fixture() -> Fixture {
    let ok = Server::app("ok");
    let close = Server::start("close", Behaviour::CloseMidBody);
    let garbage = Server::start("garbage", Behaviour::Garbage);
    let silent = Server::start("silent", Behaviour::Silent);
    let config = mesh::services(
        &[
            ("ok", ok.addr()),
            ("close", close.addr()),
            ("garbage", garbage.addr()),
            ("silent", silent.addr()),
            ("refused", refused_addr()),
        ],
        "1s",
    );
    Fixture {
        _servers: vec![ok, close, garbage, silent],
        proxy: Proxy::start(&config),
    }
}

impl Fixture {
    fn get(&self, host: &str) -> std::process::Output {
        curl_output(&["-i", "-H", &format!("host: {host}"), &self.proxy.url("/x")])
    }

    fn assert_healthy(&self) {
        let out = curl(&["-H", "host: ok", &self.proxy.url("/after")]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
        assert!(self.proxy.is_running());
    }
}

fn flags(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix("x-trellis-response-flags:"))
        .map(|v| v.trim().to_ascii_uppercase())
}

#[test]
fn upstream_closing_mid_body_truncates_the_response_visibly() {
    let f = fixture();
    for _ in 0..3 {
        let out = f.get("close");
        // The head (200, content-length 1000) was already relayed: the proxy can only cut the
        // client's connection short (as Envoy does, with a reset), which curl reports as a
        // receive failure (56) or a partial transfer (18), never as success.
        assert!(matches!(out.status.code(), Some(18 | 56)), "{out:?}");
        let (status, head, body) = split_response(&out);
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("content-length: 1000"), "{head}");
        assert!(body.len() < 1000);
        f.assert_healthy();
    }
}

#[test]
fn upstream_answering_garbage_is_502_upe() {
    let f = fixture();
    for _ in 0..3 {
        let out = f.get("garbage");
        let (status, head, _) = split_response(&out);
        assert_eq!(status, 502, "{head}");
        assert_eq!(flags(&head).as_deref(), Some("UPE"), "{head}");
        f.assert_healthy();
    }
}

#[test]
fn upstream_never_answering_is_504_ut_at_the_route_timeout() {
    let f = fixture();
    // Another client keeps being served while the silent request hangs.
    let hanging = {
        let url = f.proxy.url("/hang");
        std::thread::spawn(move || {
            let started = Instant::now();
            let out = curl_output(&["-i", "-H", "host: silent", &url]);
            (started.elapsed(), out)
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    f.assert_healthy();
    assert!(started.elapsed() < Duration::from_millis(700));
    let (took, out) = hanging.join().expect("hanging client");
    let (status, head, _) = split_response(&out);
    assert_eq!(status, 504, "{head}");
    assert_eq!(flags(&head).as_deref(), Some("UT"), "{head}");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "timed out after {took:?}, route timeout is 1s"
    );
    f.assert_healthy();
}

#[test]
fn upstream_refusing_connections_is_503_uf() {
    let f = fixture();
    for _ in 0..3 {
        let started = Instant::now();
        let out = f.get("refused");
        let (status, head, _) = split_response(&out);
        assert_eq!(status, 503, "{head}");
        assert_eq!(flags(&head).as_deref(), Some("UF"), "{head}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        f.assert_healthy();
    }
}
