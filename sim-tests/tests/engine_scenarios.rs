//! Engine-level scenarios: one engine, scripted clients and servers, a virtual clock.
//!
//! Each test reads as a small story about what an Istio user configured and what the mesh must
//! do; every instant asserted is virtual, so nothing here depends on the machine's speed.

use sim_tests::build::{self, add_vhost, cluster, header_exact, millis, route, secs, LISTENER};
use sim_tests::world::{Reply, World};
use trellis_engine::config::{
    FaultAbort, FaultDelay, FaultPolicy, Redirect, RetryOn, RetryPolicy, RouteAction,
};
use trellis_engine::proxy::ResponseFlag;

use sim_tests::fixtures::{reviews_world, V1, V2};

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
            grpc_status: None,
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
