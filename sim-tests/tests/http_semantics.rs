//! HTTP/1.1 semantics through the engine: message framing for HEAD/204/304, close-delimited
//! upstream bodies, HTTP/1.0 clients, 100-continue, upgrades, Max-Forwards, and arbitrary
//! segmentation of the byte stream.

use std::time::Duration;

use bytes::Bytes;
use quickcheck::{QuickCheck, TestResult};
use sim_tests::build::{self, add_vhost, cluster, route, secs, LISTENER};
use sim_tests::world::{Reply, World};

const UP: &str = "10.0.0.1:80";

fn world(reply: impl FnMut(&sim_tests::world::SeenRequest) -> Reply + 'static) -> World {
    let mut config = build::base();
    config.clusters = vec![cluster("svc", &[(UP, &[])])];
    add_vhost(
        &mut config,
        "svc",
        &["svc"],
        vec![route("all", vec![], &[("svc", 100)])],
    );
    let mut w = World::new(config, 1);
    w.server(UP, reply);
    w
}

fn raw(bytes: &'static [u8]) -> Reply {
    Reply::Raw {
        bytes: Bytes::from_static(bytes),
        delay: Duration::ZERO,
    }
}

#[test]
fn head_response_keeps_content_length_and_has_no_body() {
    let mut w = world(|_| raw(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n"));
    let c = w.connect(LISTENER);
    let r = w
        .exchange(c, "HEAD / HTTP/1.1\r\nhost: svc\r\n\r\n", secs(1))
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1234"));
    assert!(r.body.is_empty());
    // The connection is still usable: no phantom body bytes were expected.
    let r = w
        .exchange(c, "HEAD / HTTP/1.1\r\nhost: svc\r\n\r\n", secs(1))
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(w.client_closed(c), None);
}

#[test]
fn no_content_and_not_modified_have_no_body() {
    for status in ["204 No Content", "304 Not Modified"] {
        let bytes: &'static [u8] = Box::leak(
            format!("HTTP/1.1 {status}\r\netag: \"x\"\r\n\r\n")
                .into_bytes()
                .into_boxed_slice(),
        );
        let mut w = world(move |_| raw(bytes));
        let c = w.connect(LISTENER);
        let r = w
            .exchange(c, "GET / HTTP/1.1\r\nhost: svc\r\n\r\n", secs(1))
            .unwrap();
        assert!(r.body.is_empty());
        assert_eq!(r.header("transfer-encoding"), None, "{status}");
        let r2 = w.exchange(c, "GET / HTTP/1.1\r\nhost: svc\r\n\r\n", secs(1));
        assert!(r2.is_some(), "{status}: keep-alive survives");
    }
}

#[test]
fn close_delimited_upstream_body_is_rechunked_for_http11_clients() {
    let mut w = world(|_| raw(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nstreamed until close"));
    // The scripted server closes after the raw bytes only if told; emulate EOF explicitly.
    let c = w.connect(LISTENER);
    w.send(c, b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n");
    w.advance(secs(1));
    assert!(
        w.take_response(c, "GET").is_none(),
        "not complete before the upstream closes"
    );
    w.close_upstreams();
    let r = w.take_response(c, "GET").expect("complete at upstream EOF");
    assert_eq!(r.body_str(), "streamed until close");
    assert_eq!(
        w.client_closed(c),
        None,
        "client connection kept: body was chunked"
    );
}

#[test]
fn http10_client_gets_close_delimited_and_connection_closed() {
    let mut w = world(|_| {
        raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    });
    let c = w.connect(LISTENER);
    w.send(c, b"GET / HTTP/1.0\r\nhost: svc\r\n\r\n");
    assert_eq!(w.client_closed(c), Some(true));
    let r = w.take_response(c, "GET").unwrap();
    assert_eq!(r.body_str(), "abc");
    assert_eq!(
        r.header("transfer-encoding"),
        None,
        "no chunked to a 1.0 client"
    );
}

#[test]
fn expect_100_continue_is_answered_by_the_proxy() {
    let mut w = world(|req| Reply::ok(std::str::from_utf8(&req.body).unwrap()));
    let c = w.connect(LISTENER);
    w.send(
        c,
        b"PUT /x HTTP/1.1\r\nhost: svc\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n",
    );
    assert!(w.received(c).starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));
    w.send(c, b"data");
    let r = w.take_response(c, "PUT").unwrap();
    assert_eq!(r.body_str(), "data");
    assert!(
        w.seen[0].headers.get("expect").is_none(),
        "expectation not forwarded"
    );
}

#[test]
fn websocket_upgrade_becomes_a_raw_tunnel() {
    let mut w = world(|_| {
        raw(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nserver-hello")
    });
    let c = w.connect(LISTENER);
    w.send(
        c,
        b"GET /ws HTTP/1.1\r\nhost: svc\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-key: x\r\nsec-websocket-version: 13\r\n\r\n",
    );
    let got = String::from_utf8_lossy(w.received(c)).to_string();
    assert!(got.starts_with("HTTP/1.1 101"), "{got}");
    assert!(
        got.to_ascii_lowercase().contains("upgrade: websocket"),
        "{got}"
    );
    assert!(got.ends_with("server-hello"), "{got}");
    let up_headers = &w.seen[0].headers;
    assert_eq!(up_headers.get("upgrade").unwrap(), "websocket");
    w.send(c, b"\x81\x05hello");
    assert_eq!(w.upstream_received_raw(), b"\x81\x05hello".to_vec());
}

#[test]
fn max_forwards_zero_is_answered_here() {
    let mut w = world(|_| Reply::ok("upstream"));
    let c = w.connect(LISTENER);
    let r = w
        .exchange(
            c,
            "OPTIONS * HTTP/1.1\r\nhost: svc\r\nmax-forwards: 0\r\n\r\n",
            secs(1),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("allow").is_some());
    let r = w
        .exchange(
            c,
            "TRACE / HTTP/1.1\r\nhost: svc\r\nmax-forwards: 0\r\n\r\n",
            secs(1),
        )
        .unwrap();
    assert_eq!(r.header("content-type"), Some("message/http"));
    assert!(w.seen.is_empty());
    let r = w
        .exchange(
            c,
            "OPTIONS / HTTP/1.1\r\nhost: svc\r\nmax-forwards: 3\r\n\r\n",
            secs(1),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(w.seen[0].headers.get("max-forwards").unwrap(), "2");
}

#[test]
fn hop_by_hop_fields_are_not_forwarded() {
    let mut w = world(|_| {
        raw(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nkeep-alive: timeout=5\r\nconnection: x-secret\r\nx-secret: 1\r\n\r\n")
    });
    let c = w.connect(LISTENER);
    let r = w
        .exchange(c, "GET / HTTP/1.1\r\nhost: svc\r\nconnection: x-hop, keep-alive\r\nx-hop: 1\r\nkeep-alive: 300\r\nte: trailers\r\n\r\n", secs(1))
        .unwrap();
    let up = &w.seen[0].headers;
    for name in ["x-hop", "keep-alive", "te", "connection"] {
        assert!(up.get(name).is_none(), "{name} forwarded upstream");
    }
    assert!(r.header("x-secret").is_none());
    assert!(r.header("keep-alive").is_none());
}

/// Any segmentation of the client's bytes gives the upstream the same requests.
#[test]
fn arbitrary_segmentation_gives_the_same_upstream_requests() {
    fn prop(cuts: Vec<u16>) -> TestResult {
        let stream: &[u8] = b"POST /a HTTP/1.1\r\nhost: svc\r\ncontent-length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nGET /c HTTP/1.1\r\nhost: svc\r\n\r\n";
        let mut points: Vec<usize> = cuts.iter().map(|c| *c as usize % stream.len()).collect();
        points.sort_unstable();
        points.dedup();
        let mut w = world(|req| Reply::ok(std::str::from_utf8(&req.body).unwrap()));
        let c = w.connect(LISTENER);
        let mut last = 0;
        for p in points.into_iter().chain([stream.len()]) {
            if p > last {
                w.send(c, &stream[last..p]);
                last = p;
            }
        }
        let bodies: Vec<_> = ["POST", "POST", "GET"]
            .iter()
            .filter_map(|m| w.take_response(c, m).map(|r| r.body_str().to_string()))
            .collect();
        let targets: Vec<_> = w.seen.iter().map(|s| s.target.clone()).collect();
        TestResult::from_bool(bodies == ["hello", "abcde", ""] && targets == ["/a", "/b", "/c"])
    }
    QuickCheck::new()
        .tests(200)
        .quickcheck(prop as fn(Vec<u16>) -> TestResult);
}

/// What an upstream sends back is validated like what a client sends: anything that could
/// desynchronise the connection is a 502, and the connection is not reused.
#[test]
fn invalid_upstream_responses_are_502_and_never_reused() {
    for (name, bytes) in [
        (
            "cl+te",
            &b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
                [..],
        ),
        (
            "two lengths",
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        ),
        (
            "bad length",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        ),
        (
            "bad status",
            b"HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n",
        ),
        ("bare lf", b"HTTP/1.1 200 OK\ncontent-length: 0\n\n"),
        (
            "obs-fold",
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\n  folded\r\ncontent-length: 0\r\n\r\n",
        ),
        ("not http", b"220 smtp.example.com ESMTP\r\n\r\n"),
    ] {
        let mut w = world(move |_| Reply::Raw {
            bytes: Bytes::from_static(bytes),
            delay: Duration::ZERO,
        });
        let c = w.connect(LISTENER);
        let r = w
            .exchange(c, "GET / HTTP/1.1\r\nhost: svc\r\n\r\n", secs(1))
            .unwrap_or_else(|| panic!("{name}: no answer"));
        assert_eq!(r.status, 502, "{name}");
        assert_eq!(r.header("x-trellis-response-flags"), Some("UPE"), "{name}");
        // The client connection survives a bad upstream, and a new upstream connection is used.
        let r = w
            .exchange(c, "GET / HTTP/1.1\r\nhost: svc\r\n\r\n", secs(1))
            .unwrap();
        assert_eq!(r.status, 502, "{name} (second request)");
        assert!(
            w.peak_upstream_conns <= 1,
            "{name}: bad connections are closed, not pooled"
        );
    }
}

#[test]
fn bytes_beyond_the_declared_length_are_not_taken_for_the_next_response() {
    let mut w = world(|_| {
        raw(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged")
    });
    let c = w.connect(LISTENER);
    let r = w
        .exchange(c, "GET /1 HTTP/1.1\r\nhost: svc\r\n\r\n", secs(1))
        .unwrap();
    assert_eq!(r.body_str(), "ok");
    let r = w
        .exchange(c, "GET /2 HTTP/1.1\r\nhost: svc\r\n\r\n", secs(1))
        .unwrap();
    assert_eq!(
        r.body_str(),
        "ok",
        "the second answer comes from a fresh connection"
    );
    assert_eq!(w.seen.len(), 2);
}

#[test]
fn upstream_cut_mid_body_cuts_the_client_and_others_keep_working() {
    let mut w = world(|req| {
        if req.target == "/cut" {
            Reply::Raw {
                bytes: Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"),
                delay: Duration::ZERO,
            }
        } else {
            Reply::ok("fine")
        }
    });
    let c = w.connect(LISTENER);
    w.send(c, b"GET /cut HTTP/1.1\r\nhost: svc\r\n\r\n");
    w.close_upstreams();
    assert_eq!(
        w.client_closed(c),
        Some(false),
        "reset: the client must see the truncation"
    );
    assert!(w
        .logs
        .last()
        .unwrap()
        .flags
        .contains(&trellis_engine::proxy::ResponseFlag::UpstreamConnectionTermination));
    let c2 = w.connect(LISTENER);
    let r = w
        .exchange(c2, "GET /ok HTTP/1.1\r\nhost: svc\r\n\r\n", secs(1))
        .unwrap();
    assert_eq!(r.body_str(), "fine");
}

#[test]
fn http10_keep_alive_clients_are_told_and_kept() {
    let mut w = world(|_| Reply::ok("hi"));
    let c = w.connect(LISTENER);
    let r = w
        .exchange(
            c,
            "GET / HTTP/1.0\r\nhost: svc\r\nconnection: keep-alive\r\n\r\n",
            secs(1),
        )
        .unwrap();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(w.client_closed(c), None);
    let r = w
        .exchange(c, "GET / HTTP/1.0\r\nhost: svc\r\n\r\n", secs(1))
        .unwrap();
    assert_eq!(r.body_str(), "hi");
    assert_eq!(
        w.client_closed(c),
        Some(true),
        "no keep-alive asked: closed"
    );
}

#[test]
fn content_codings_sent_as_transfer_codings_reach_the_client() {
    let mut w = world(|_| {
        raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\n\x1f\x8b\x08\r\n0\r\n\r\n")
    });
    let c = w.connect(LISTENER);
    w.send(c, b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n");
    let text = String::from_utf8_lossy(w.received(c)).to_ascii_lowercase();
    assert!(text.contains("transfer-encoding: gzip\r\n"), "{text}");
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
}

#[test]
fn connect_is_refused_and_the_connection_closed() {
    let mut w = world(|_| Reply::ok("never"));
    let c = w.connect(LISTENER);
    let r = w
        .exchange(
            c,
            "CONNECT svc:443 HTTP/1.1\r\nhost: svc:443\r\n\r\n",
            secs(1),
        )
        .unwrap();
    assert_eq!(r.status, 405);
    assert!(r.header("allow").is_some());
    assert_eq!(w.client_closed(c), Some(true));
    assert!(w.seen.is_empty());
}
