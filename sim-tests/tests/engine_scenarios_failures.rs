//! Engine-level scenarios, failures: outlier ejection, connect failures and timeouts, pool
//! overflow, broken upstreams and stale keep-alive connections. One engine, scripted clients
//! and servers, a virtual clock (see `engine_scenarios.rs`).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use sim_tests::build::{self, add_vhost, cluster, millis, route, secs, LISTENER};
use sim_tests::world::{Reachability, Reply, World};
use trellis_engine::config::{ConnectionPool, OutlierDetection, RetryOn, RetryPolicy};
use trellis_engine::Instant;

use sim_tests::fixtures::{V1, V2};

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
