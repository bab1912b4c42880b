//! Engine-level scenarios: one engine, scripted clients and servers, a virtual clock.
//!
//! Each test reads as a small story about what an Istio user configured and what the mesh must
//! do; every instant asserted is virtual, so nothing here depends on the machine's speed.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use sim_tests::build::{self, add_vhost, cluster, header_exact, millis, route, secs, LISTENER};
use sim_tests::world::{Reachability, Reply, World};
use trellis_engine::config::{
    ConnectionPool, FaultAbort, FaultDelay, FaultPolicy, OutlierDetection, Redirect, RetryOn,
    RetryPolicy, RouteAction,
};
use trellis_engine::proxy::ResponseFlag;
use trellis_engine::Instant;

const V1: &str = "10.0.0.1:9080";
const V2: &str = "10.0.0.2:9080";
const V3: &str = "10.0.0.3:9080";

fn reviews_world(seed: u64) -> World {
    let mut config = build::base();
    config.clusters = vec![
        cluster("reviews-v1", &[(V1, &[("version", "v1")])]),
        cluster("reviews-v2", &[(V2, &[("version", "v2")])]),
        cluster("reviews-v3", &[(V3, &[("version", "v3")])]),
    ];
    add_vhost(
        &mut config,
        "reviews",
        &["reviews", "reviews:9080"],
        vec![
            route(
                "jason",
                vec![header_exact("end-user", "jason")],
                &[("reviews-v2", 100)],
            ),
            route("split", vec![], &[("reviews-v1", 80), ("reviews-v3", 20)]),
        ],
    );
    let mut w = World::new(config, seed);
    w.server(V1, |_| Reply::ok("v1"));
    w.server(V2, |_| Reply::ok("v2"));
    w.server(V3, |_| Reply::ok("v3"));
    w
}

#[test]
fn header_match_routes_to_subset() {
    let mut w = reviews_world(1);
    let r = w
        .get(LISTENER, "reviews", "/", &[("end-user", "jason")])
        .unwrap();
    assert_eq!((r.status, r.body_str()), (200, "v2"));
    let r = w
        .get(LISTENER, "reviews:9080", "/", &[("end-user", "bob")])
        .unwrap();
    assert_ne!(r.body_str(), "v2", "only jason goes to v2");
    let log = w.logs.last().unwrap();
    assert_eq!(log.route.as_deref(), Some("split"));
}

#[test]
fn weighted_split_80_20_over_10k_requests() {
    let mut w = reviews_world(42);
    let client = w.connect(LISTENER);
    let (mut v1, mut v3) = (0u32, 0u32);
    for _ in 0..10_000 {
        let r = w
            .exchange(
                client,
                "GET /reviews HTTP/1.1\r\nhost: reviews\r\n\r\n",
                secs(1),
            )
            .expect("response");
        match r.body_str() {
            "v1" => v1 += 1,
            "v3" => v3 += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let share = f64::from(v1) / 10_000.0;
    assert!(
        (0.78..=0.82).contains(&share),
        "v1 share {share} (v1 {v1}, v3 {v3})"
    );
    // One keep-alive client connection; upstream connections are pooled and reused.
    assert!(w.peak_upstream_conns <= 1, "{}", w.peak_upstream_conns);
}

#[test]
fn retries_recover_from_a_failing_endpoint() {
    let mut config = build::base();
    config.clusters = vec![cluster("svc", &[(V1, &[]), (V2, &[])])];
    let mut r = route("all", vec![], &[("svc", 100)]);
    r.retries = RetryPolicy {
        attempts: 3,
        per_try_timeout: None,
        retry_on: RetryOn {
            server_error: true,
            ..Default::default()
        },
        backoff_base: millis(25),
    };
    add_vhost(&mut config, "svc", &["svc"], vec![r]);
    let mut w = World::new(config, 7);
    w.server(V1, |_| Reply::status(500, "broken"));
    w.server(V2, |_| Reply::ok("fine"));
    for _ in 0..50 {
        let r = w.get(LISTENER, "svc", "/", &[]).unwrap();
        assert_eq!((r.status, r.body_str()), (200, "fine"));
    }
    assert!(
        w.logs.iter().any(|l| l.attempts == 2),
        "some requests needed a retry"
    );
    assert!(
        w.logs.iter().all(|l| l.attempts <= 2),
        "a retry avoids the host that failed"
    );
}

#[test]
fn retries_give_up_after_attempts_and_forward_the_last_answer() {
    let mut config = build::base();
    config.clusters = vec![cluster("svc", &[(V1, &[])])];
    let mut r = route("all", vec![], &[("svc", 100)]);
    r.retries = RetryPolicy {
        attempts: 2,
        retry_on: RetryOn {
            gateway_error: true,
            ..Default::default()
        },
        ..RetryPolicy::default()
    };
    add_vhost(&mut config, "svc", &["svc"], vec![r]);
    let mut w = World::new(config, 7);
    w.server(V1, |_| Reply::status(503, "down"));
    let r = w.get(LISTENER, "svc", "/", &[]).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(w.seen.len(), 3, "1 try + 2 retries");
}

#[test]
fn route_timeout_fires_at_the_right_virtual_instant() {
    let mut config = build::base();
    config.clusters = vec![cluster("slow", &[(V1, &[])])];
    let mut r = route("all", vec![], &[("slow", 100)]);
    r.timeout = Some(millis(1500));
    add_vhost(&mut config, "slow", &["slow"], vec![r]);
    let mut w = World::new(config, 1);
    w.server(V1, |_| Reply::ok("late").delayed(secs(10)));
    let client = w.connect(LISTENER);
    w.send(client, b"GET / HTTP/1.1\r\nhost: slow\r\n\r\n");
    w.advance(millis(1499));
    assert!(w.take_response(client, "GET").is_none(), "not before 1.5 s");
    w.advance(millis(1));
    let r = w
        .take_response(client, "GET")
        .expect("504 at exactly 1.5 s");
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-trellis-response-flags"), Some("UT"));
    let log = w.logs.last().unwrap();
    assert_eq!(log.duration, millis(1500));
    assert_eq!(log.flags, vec![ResponseFlag::UpstreamRequestTimeout]);
}

#[test]
fn per_try_timeout_retries_then_succeeds() {
    let mut config = build::base();
    config.clusters = vec![cluster("svc", &[(V1, &[]), (V2, &[])])];
    let mut r = route("all", vec![], &[("svc", 100)]);
    r.retries = RetryPolicy {
        attempts: 2,
        per_try_timeout: Some(millis(100)),
        retry_on: RetryOn {
            gateway_error: true,
            ..Default::default()
        },
        backoff_base: millis(25),
    };
    add_vhost(&mut config, "svc", &["svc"], vec![r]);
    let mut w = World::new(config, 3);
    w.server(V1, |_| Reply::Hang);
    w.server(V2, |_| Reply::ok("quick"));
    for _ in 0..10 {
        let r = w.get(LISTENER, "svc", "/", &[]).unwrap();
        assert_eq!(r.body_str(), "quick");
    }
}

fn outlier_world(seed: u64, hosts: usize) -> (World, Vec<String>) {
    let addrs: Vec<String> = (0..hosts).map(|i| format!("10.0.1.{}:80", i + 1)).collect();
    let endpoints: Vec<(&str, &[(&str, &str)])> =
        addrs.iter().map(|a| (a.as_str(), &[][..])).collect();
    let mut c = cluster("svc", &endpoints);
    c.outlier = Some(OutlierDetection {
        consecutive_5xx: 3,
        interval: secs(10),
        base_ejection_time: secs(30),
        max_ejection_percent: 100,
        ..OutlierDetection::default()
    });
    c.lb = trellis_engine::config::LbPolicy::RoundRobin;
    let mut config = build::base();
    config.clusters = vec![c];
    add_vhost(
        &mut config,
        "svc",
        &["svc"],
        vec![route("all", vec![], &[("svc", 100)])],
    );
    (World::new(config, seed), addrs)
}

#[test]
fn endpoint_ejected_after_consecutive_5xx_and_back_after_base_ejection_time() {
    let (mut w, addrs) = outlier_world(5, 2);
    let bad = addrs[0].clone();
    let failing = Rc::new(Cell::new(true));
    let f = failing.clone();
    w.server(&bad, move |_| {
        if f.get() {
            Reply::status(500, "bad")
        } else {
            Reply::ok("healed")
        }
    });
    w.server(&addrs[1], |_| Reply::ok("good"));
    // Round robin alternates: the bad host sees every other request until its 3rd 5xx.
    let mut fives = 0;
    for _ in 0..6 {
        if w.get(LISTENER, "svc", "/", &[]).unwrap().status == 500 {
            fives += 1;
        }
    }
    assert_eq!(fives, 3);
    let ejected_at = w.now;
    assert!(w
        .engine
        .inspect()
        .cluster_state("svc")
        .unwrap()
        .is_ejected(0));
    for _ in 0..20 {
        assert_eq!(w.get(LISTENER, "svc", "/", &[]).unwrap().body_str(), "good");
    }
    failing.set(false);
    // Sweeps run every 10 s from t=0; the host returns on the first sweep at or after 30 s.
    w.advance_to(ejected_at + secs(29));
    assert!(
        w.engine
            .inspect()
            .cluster_state("svc")
            .unwrap()
            .is_ejected(0),
        "still out before 30 s"
    );
    w.advance_to(Instant::ZERO + secs(30));
    assert!(
        !w.engine
            .inspect()
            .cluster_state("svc")
            .unwrap()
            .is_ejected(0),
        "back at the 30 s sweep"
    );
    let bodies: Vec<String> = (0..4)
        .map(|_| {
            w.get(LISTENER, "svc", "/", &[])
                .unwrap()
                .body_str()
                .to_string()
        })
        .collect();
    assert!(bodies.iter().any(|b| b == "healed"), "{bodies:?}");
}

#[test]
fn connect_failure_answers_503_uf_and_counts_toward_ejection() {
    let (mut w, addrs) = outlier_world(9, 1);
    w.server(&addrs[0], |_| Reply::ok("never"));
    w.set_reachability(&addrs[0], Reachability::Refused);
    let r = w.get(LISTENER, "svc", "/", &[]).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-trellis-response-flags"), Some("UF"));
    w.get(LISTENER, "svc", "/", &[]).unwrap();
    w.get(LISTENER, "svc", "/", &[]).unwrap();
    // Three local-origin failures eject the only host (max 100 %): now no healthy upstream.
    let r = w.get(LISTENER, "svc", "/", &[]).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-trellis-response-flags"), Some("UH"));
    assert_eq!(r.body_str(), "no healthy upstream");
}

#[test]
fn connect_timeout_answers_503_at_the_connect_timeout() {
    let mut config = build::base();
    let mut c = cluster("svc", &[(V1, &[])]);
    c.pool.connect_timeout = millis(250);
    config.clusters = vec![c];
    add_vhost(
        &mut config,
        "svc",
        &["svc"],
        vec![route("all", vec![], &[("svc", 100)])],
    );
    let mut w = World::new(config, 1);
    w.server(V1, |_| Reply::ok("x"));
    w.set_reachability(V1, Reachability::Blackhole);
    let r = w.get(LISTENER, "svc", "/", &[]).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(w.logs.last().unwrap().duration, millis(250));
}

#[test]
fn pool_overflow_answers_503_with_overload_marker() {
    let mut config = build::base();
    let mut c = cluster("svc", &[(V1, &[])]);
    c.pool = ConnectionPool {
        max_connections: 1,
        max_pending_requests: 1,
        ..ConnectionPool::default()
    };
    config.clusters = vec![c];
    add_vhost(
        &mut config,
        "svc",
        &["svc"],
        vec![route("all", vec![], &[("svc", 100)])],
    );
    let mut w = World::new(config, 1);
    w.server(V1, |_| Reply::ok("slow").delayed(secs(1)));
    let clients: Vec<_> = (0..3).map(|_| w.connect(LISTENER)).collect();
    for c in &clients {
        w.send(*c, b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n");
    }
    // First holds the connection, second waits, third overflows immediately.
    let r = w
        .take_response(clients[2], "GET")
        .expect("immediate overflow");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-envoy-overloaded"), Some("true"));
    assert_eq!(r.header("x-trellis-response-flags"), Some("UO"));
    w.advance(secs(3));
    assert_eq!(w.take_response(clients[0], "GET").unwrap().status, 200);
    assert_eq!(w.take_response(clients[1], "GET").unwrap().status, 200);
    assert_eq!(w.peak_upstream_conns, 1, "maxConnections held");
}

#[test]
fn garbage_from_upstream_is_502_and_others_keep_working() {
    let mut config = build::base();
    config.clusters = vec![cluster("bad", &[(V1, &[])]), cluster("good", &[(V2, &[])])];
    add_vhost(
        &mut config,
        "bad",
        &["bad"],
        vec![route("bad", vec![], &[("bad", 100)])],
    );
    add_vhost(
        &mut config,
        "good",
        &["good"],
        vec![route("good", vec![], &[("good", 100)])],
    );
    let mut w = World::new(config, 1);
    w.server(V1, |_| Reply::Raw {
        bytes: bytes::Bytes::from_static(b"SMTP READY\r\n\r\n"),
        delay: Duration::ZERO,
    });
    w.server(V2, |_| Reply::ok("ok"));
    let r = w.get(LISTENER, "bad", "/", &[]).unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-trellis-response-flags"), Some("UPE"));
    assert_eq!(w.get(LISTENER, "good", "/", &[]).unwrap().status, 200);
}

#[test]
fn upstream_closing_before_answer_is_503_uc() {
    let mut config = build::base();
    config.clusters = vec![cluster("svc", &[(V1, &[])])];
    add_vhost(
        &mut config,
        "svc",
        &["svc"],
        vec![route("all", vec![], &[("svc", 100)])],
    );
    let mut w = World::new(config, 1);
    w.server(V1, |_| Reply::Close);
    let r = w.get(LISTENER, "svc", "/", &[]).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-trellis-response-flags"), Some("UC"));
}

#[test]
fn unknown_host_is_404_nr() {
    let mut w = reviews_world(1);
    let r = w.get(LISTENER, "nowhere", "/", &[]).unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-trellis-response-flags"), Some("NR"));
}

#[test]
fn fault_injection_abort_and_delay() {
    let mut config = build::base();
    config.clusters = vec![cluster("svc", &[(V1, &[])])];
    let mut abort = route(
        "abort",
        vec![header_exact("x-test", "abort")],
        &[("svc", 100)],
    );
    abort.fault = Some(FaultPolicy {
        delay: None,
        abort: Some(FaultAbort {
            status: 555,
            percent: 100.0,
        }),
    });
    let mut delay = route("delay", vec![], &[("svc", 100)]);
    delay.fault = Some(FaultPolicy {
        delay: Some(FaultDelay {
            fixed: secs(7),
            percent: 100.0,
        }),
        abort: None,
    });
    add_vhost(&mut config, "svc", &["svc"], vec![abort, delay]);
    let mut w = World::new(config, 1);
    w.server(V1, |_| Reply::ok("hi"));
    let r = w.get(LISTENER, "svc", "/", &[("x-test", "abort")]).unwrap();
    assert_eq!(r.status, 555);
    assert!(
        w.seen.is_empty(),
        "aborted requests never reach the upstream"
    );
    let start = w.now;
    let r = w.get(LISTENER, "svc", "/", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(w.seen[0].at - start, secs(7), "delayed by exactly 7 s");
    assert_eq!(
        w.logs.last().unwrap().flags,
        vec![ResponseFlag::DelayInjected]
    );
}

#[test]
fn redirect_and_direct_response() {
    let mut config = build::base();
    let mut redirect = route("r", vec![header_exact("x-go", "away")], &[]);
    redirect.action = RouteAction::Redirect(Redirect {
        uri: Some("/new".into()),
        authority: Some("elsewhere".into()),
        status: 308,
        ..Default::default()
    });
    let mut direct = route("d", vec![], &[]);
    direct.action = RouteAction::DirectResponse {
        status: 418,
        body: Some("teapot".into()),
    };
    add_vhost(&mut config, "x", &["x"], vec![redirect, direct]);
    let mut w = World::new(config, 1);
    let r = w.get(LISTENER, "x", "/old", &[("x-go", "away")]).unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("http://elsewhere/new"));
    let r = w.get(LISTENER, "x", "/", &[]).unwrap();
    assert_eq!((r.status, r.body_str()), (418, "teapot"));
}

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
    assert_eq!(
        log.cluster.as_deref(),
        Some("PassthroughCluster|10.9.9.9:8080")
    );
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

/// A pooled connection the server closed as the next request went out: Envoy's HTTP/1 codec
/// reports a connection termination (a reset), never HTTP/2's REFUSED_STREAM, so Istio's
/// default `retryOn` (`connect-failure,refused-stream,…,503`) does not retry it (the "503 UC
/// upstream reset before headers" Istio users meet) and `reset` does, whatever the method.
fn stale_connection_world(retry_on: RetryOn) -> World {
    let mut config = build::base();
    config.clusters = vec![cluster("svc", &[(V1, &[])])];
    let mut r = route("all", vec![], &[("svc", 100)]);
    r.retries = RetryPolicy {
        retry_on,
        ..RetryPolicy::default()
    };
    add_vhost(&mut config, "svc", &["svc"], vec![r]);
    let mut w = World::new(config, 1);
    // Every second request arrives on a pooled connection the server has given up on.
    let n = Rc::new(Cell::new(0));
    let seen = n.clone();
    w.server(V1, move |_| {
        seen.set(seen.get() + 1);
        if seen.get() % 2 == 0 {
            Reply::Close
        } else {
            Reply::ok("fresh")
        }
    });
    w
}

#[test]
fn stale_keep_alive_connections_are_resets_not_refused_streams() {
    // Istio's default policy: not retried, the client sees the reset.
    let mut w = stale_connection_world(RetryPolicy::default().retry_on);
    let first = w.get(LISTENER, "svc", "/", &[]).unwrap();
    assert_eq!((first.status, first.body_str()), (200, "fresh"));
    let second = w.get(LISTENER, "svc", "/", &[]).unwrap();
    assert_eq!(second.status, 503);
    assert_eq!(second.header("x-trellis-response-flags"), Some("UC"));
    assert!(w.logs.iter().all(|l| l.attempts == 1), "nothing retried");
    // Stale connections are not the host's fault: nothing was reported to outlier detection.
    assert_eq!(
        w.engine
            .inspect()
            .cluster_state("svc")
            .unwrap()
            .ejected_count(),
        0
    );

    // `retryOn: reset`: retried on a fresh connection, a POST as well as a GET.
    let reset = RetryOn {
        reset: true,
        ..RetryOn::default()
    };
    let mut w = stale_connection_world(reset);
    for _ in 0..3 {
        let r = w.get(LISTENER, "svc", "/", &[]).unwrap();
        assert_eq!((r.status, r.body_str()), (200, "fresh"));
    }
    assert!(
        w.logs.iter().any(|l| l.attempts == 2),
        "the stale connection was retried"
    );
    let c = w.connect(LISTENER);
    let r = w
        .exchange(
            c,
            "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 1\r\n\r\nx",
            secs(1),
        )
        .unwrap();
    assert_eq!((r.status, r.body_str()), (200, "fresh"));
}
