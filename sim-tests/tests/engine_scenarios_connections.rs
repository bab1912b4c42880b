//! Engine-level scenarios, connections and configuration: bodies, pipelining, smuggling,
//! header and idle timeouts, config swaps, passthrough, determinism. One engine, scripted
//! clients and servers, a virtual clock (see `engine_scenarios.rs`).

use std::time::Duration;

use sim_tests::build::{self, add_vhost, cluster, millis, route, secs, LISTENER};
use sim_tests::world::{Reply, World};
use trellis_engine::config::{FaultDelay, FaultPolicy};

use sim_tests::fixtures::{reviews_world, V1, V2};

#[test]
fn chunked_upload_is_relayed_byte_exact_and_connection_reused() {
    let mut config = build::base();
    config.clusters = vec![cluster("echo", &[(V1, &[])])];
    add_vhost(
        &mut config,
        "echo",
        &["echo"],
        vec![route("all", vec![], &[("echo", 100)])],
    );
    let mut w = World::new(config, 1);
    w.server(V1, |req| Reply::Respond {
        status: 200,
        headers: vec![],
        body: req.body.clone(),
        delay: Duration::ZERO,
    });
    let client = w.connect(LISTENER);
    w.send(
        client,
        b"POST /up HTTP/1.1\r\nhost: echo\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
    );
    w.send(client, b"6\r\n world\r\n0\r\n\r\n");
    let r = w.take_response(client, "POST").expect("echo");
    assert_eq!(r.body_str(), "hello world");
    // Same connection, next request (pipelined with the previous one's tail is fine too).
    let r = w
        .exchange(
            client,
            "POST /up HTTP/1.1\r\nhost: echo\r\ncontent-length: 3\r\n\r\nabc",
            secs(1),
        )
        .unwrap();
    assert_eq!(r.body_str(), "abc");
    assert_eq!(w.peak_upstream_conns, 1);
    let via = w.seen[0].headers.get("via").and_then(|v| v.to_str().ok());
    assert_eq!(via, Some("1.1 trellis"));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut w = reviews_world(2);
    let client = w.connect(LISTENER);
    w.send(
        client,
        b"GET /a HTTP/1.1\r\nhost: reviews\r\nend-user: jason\r\n\r\nGET /b HTTP/1.1\r\nhost: reviews\r\nend-user: jason\r\n\r\n",
    );
    let a = w.take_response(client, "GET").expect("first");
    let b = w.take_response(client, "GET").expect("second");
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(w.seen[0].target, "/a");
    assert_eq!(w.seen[1].target, "/b");
}

#[test]
fn smuggling_attempts_are_refused_and_the_connection_closed() {
    let mut w = reviews_world(1);
    for raw in [
        "POST / HTTP/1.1\r\nhost: reviews\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: reviews\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcd",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
    ] {
        let client = w.connect(LISTENER);
        let r = w.exchange(client, raw, secs(1)).expect("an answer");
        assert_eq!(r.status, 400, "{raw:?}");
        assert_eq!(w.client_closed(client), Some(true), "{raw:?}");
    }
    assert!(w.seen.is_empty(), "nothing reached an upstream");
}

#[test]
fn slow_header_gets_408_at_header_timeout() {
    let mut w = reviews_world(1);
    let client = w.connect(LISTENER);
    w.send(client, b"GET / HTTP/1.1\r\nhost: rev");
    w.advance(secs(9));
    assert!(w.take_response(client, "GET").is_none());
    w.advance(secs(1));
    let r = w.take_response(client, "GET").expect("408");
    assert_eq!(r.status, 408);
    assert_eq!(w.client_closed(client), Some(true));
}

#[test]
fn config_swap_keeps_requests_in_flight_on_their_snapshot() {
    let mut w = reviews_world(1);
    w.server(V2, |_| Reply::ok("v2-slow").delayed(secs(2)));
    let client = w.connect(LISTENER);
    w.send(
        client,
        b"GET / HTTP/1.1\r\nhost: reviews\r\nend-user: jason\r\n\r\n",
    );
    // New config: everything goes to v1.
    let mut config = build::base();
    config.clusters = vec![
        cluster("reviews-v1", &[(V1, &[("version", "v1")])]),
        cluster("reviews-v2", &[(V2, &[("version", "v2")])]),
    ];
    add_vhost(
        &mut config,
        "reviews",
        &["reviews"],
        vec![route("all", vec![], &[("reviews-v1", 100)])],
    );
    w.engine
        .apply_config(w.now, std::sync::Arc::new(config))
        .expect("valid config");
    w.pump();
    w.advance(secs(3));
    let r = w
        .take_response(client, "GET")
        .expect("in-flight request finished");
    assert_eq!(r.body_str(), "v2-slow");
    let r = w
        .get(LISTENER, "reviews", "/", &[("end-user", "jason")])
        .unwrap();
    assert_eq!(r.body_str(), "v1", "new requests use the new snapshot");
}

#[test]
fn invalid_config_is_refused_and_the_last_good_one_keeps_serving() {
    let mut w = reviews_world(1);
    let mut bad = build::base();
    add_vhost(
        &mut bad,
        "x",
        &["x"],
        vec![route("r", vec![], &[("missing-cluster", 100)])],
    );
    let err = w
        .engine
        .apply_config(w.now, std::sync::Arc::new(bad))
        .unwrap_err();
    assert!(err.to_string().contains("missing-cluster"), "{err}");
    let r = w
        .get(LISTENER, "reviews", "/", &[("end-user", "jason")])
        .unwrap();
    assert_eq!(r.body_str(), "v2");
}

#[test]
fn same_seed_same_decisions() {
    let run = |seed| {
        let mut w = reviews_world(seed);
        (0..200)
            .map(|_| {
                w.get(LISTENER, "reviews", "/", &[])
                    .unwrap()
                    .body_str()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12), "different seeds split differently");
}

#[test]
fn unknown_hosts_pass_through_to_the_original_destination_when_allowed() {
    let mut w = reviews_world(1);
    w.server("10.9.9.9:8080", |_| Reply::ok("outside the mesh"));
    // Default listener: REGISTRY_ONLY-like, unknown host is 404 NR.
    let c = w.connect_redirected(LISTENER, "10.9.9.9:8080");
    let r = w
        .exchange(c, "GET / HTTP/1.1\r\nhost: example.org\r\n\r\n", secs(1))
        .unwrap();
    assert_eq!(r.status, 404);
    // ALLOW_ANY: the same request goes where it was headed.
    let mut config = w.engine.config().as_ref().clone();
    config.listeners[0].passthrough = true;
    w.engine
        .apply_config(w.now, std::sync::Arc::new(config))
        .unwrap();
    let c = w.connect_redirected(LISTENER, "10.9.9.9:8080");
    for _ in 0..3 {
        let r = w
            .exchange(c, "GET / HTTP/1.1\r\nhost: example.org\r\n\r\n", secs(1))
            .unwrap();
        assert_eq!((r.status, r.body_str()), (200, "outside the mesh"));
    }
    let log = w.logs.last().unwrap();
    // Envoy's one ORIGINAL_DST cluster, the address its host.
    assert_eq!(log.cluster.as_deref(), Some("PassthroughCluster"));
    assert_eq!(log.upstream_host, Some("10.9.9.9:8080".parse().unwrap()));
    assert_eq!(
        w.peak_upstream_conns, 1,
        "passthrough connections are pooled too"
    );
    // Known hosts still route by the mesh's rules.
    let c = w.connect_redirected(LISTENER, "10.9.9.9:8080");
    let r = w
        .exchange(
            c,
            "GET / HTTP/1.1\r\nhost: reviews\r\nend-user: jason\r\n\r\n",
            secs(1),
        )
        .unwrap();
    assert_eq!(r.body_str(), "v2");
}

#[test]
fn stream_idle_timeout_ends_requests_nobody_moves() {
    let mut config = build::base();
    config.clusters = vec![cluster("svc", &[(V1, &[])])];
    add_vhost(
        &mut config,
        "svc",
        &["svc"],
        vec![route("all", vec![], &[("svc", 100)])],
    );
    let idle = config.http.stream_idle_timeout;
    let mut w = World::new(config, 1);
    w.server(V1, |_| Reply::Hang);
    // The upstream never answers and the route has no timeout: 504 after the idle timeout.
    let c = w.connect(LISTENER);
    let start = w.now;
    w.send(c, b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n");
    w.advance(idle - millis(1));
    assert!(w.take_response(c, "GET").is_none());
    w.advance(millis(1));
    let r = w.take_response(c, "GET").expect("504 at the idle timeout");
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-trellis-response-flags"), Some("SI"));
    assert_eq!(w.logs.last().unwrap().duration, w.now - start);
    // A client that stops sending its body: 408, and the connection closes.
    let c = w.connect(LISTENER);
    w.send(
        c,
        b"POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 10\r\n\r\nabc",
    );
    w.advance(idle / 2);
    w.send(c, b"de"); // progress pushes the deadline back
    w.advance(idle / 2 + millis(1));
    assert!(
        w.take_response(c, "POST").is_none(),
        "progress resets the idle clock"
    );
    w.advance(idle / 2);
    let r = w.take_response(c, "POST").expect("408");
    assert_eq!(r.status, 408);
    assert_eq!(w.client_closed(c), Some(true));
}

#[test]
fn idle_timeout_still_guards_a_request_after_a_fault_delay() {
    let mut config = build::base();
    config.clusters = vec![cluster("svc", &[(V1, &[])])];
    let mut r = route("all", vec![], &[("svc", 100)]);
    r.fault = Some(FaultPolicy {
        delay: Some(FaultDelay {
            fixed: secs(1),
            percent: 100.0,
        }),
        abort: None,
    });
    add_vhost(&mut config, "svc", &["svc"], vec![r]);
    config.http.stream_idle_timeout = secs(10);
    let mut w = World::new(config, 1);
    w.server(V1, |_| Reply::Hang);
    let c = w.connect(LISTENER);
    // The body is still coming when the delay ends; then everything stalls.
    w.send(
        c,
        b"POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 4\r\n\r\nab",
    );
    w.advance(secs(30));
    let r = w.take_response(c, "POST").expect("the stall is ended");
    assert_eq!(r.status, 408);
}
