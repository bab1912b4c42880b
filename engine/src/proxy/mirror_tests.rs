//! Mirroring on the bytes the engine sends: what the mirror cluster receives, and that nothing
//! of the mirror reaches the client. Envoy's semantics from source/common/router/router.cc
//! (`Filter::decodeHeaders`/`decodeData`/`decodeTrailers`/`onDestroy`) and
//! shadow_writer_impl.cc; pilot's from TranslateRequestMirrorPolicy in
//! pilot/pkg/networking/core/route/route.go.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::tests::{accept, config, drain, sent_to};
use super::*;
use crate::config::{Cluster, Config, Endpoint, MirrorFraction, MirrorPolicy, RetryOn};

const PRIMARY: &str = "10.0.0.1:80";
const MIRROR: &str = "10.0.0.2:80";
const MIRROR2: &str = "10.0.0.3:80";

fn cluster(name: &str, addr: &str) -> Cluster {
    Cluster {
        name: name.into(),
        endpoints: vec![Endpoint {
            sidecar: false,
            address: addr.parse().unwrap(),
            weight: 1,
            labels: Default::default(),
        }],
        ..Default::default()
    }
}

fn policy(cluster: &str, fraction: MirrorFraction, host_suffix: bool) -> MirrorPolicy {
    MirrorPolicy {
        cluster: cluster.into(),
        fraction,
        host_suffix,
    }
}

/// The test config with mirrors on its one route, and clusters `m` and `m2` for them.
fn mirrored(mirrors: Vec<MirrorPolicy>) -> Config {
    let mut c = config();
    c.clusters.push(cluster("m", MIRROR));
    c.clusters.push(cluster("m2", MIRROR2));
    c.route_tables[0].virtual_hosts[0].routes[0].mirrors = mirrors;
    c
}

/// An engine (seed 1) running [`mirrored`] with these mirrors.
fn engine_with(mirrors: Vec<MirrorPolicy>) -> Engine {
    Engine::try_new(Arc::new(mirrored(mirrors)), 1).unwrap()
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn send(engine: &mut Engine, t: Instant, conn: ConnId, bytes: &'static [u8]) {
    let data = Bytes::from_static(bytes);
    engine.handle(t, Input::Received { conn, data });
}

/// The connections the outputs ask to open, by address.
fn connects(out: &[Output]) -> Vec<(ConnId, SocketAddr)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Connect { conn, addr } => Some((*conn, *addr)),
            _ => None,
        })
        .collect()
}

/// A new client sends `request` at `t`: its connection and the outputs that follow.
fn open(engine: &mut Engine, t: Instant, request: &'static [u8]) -> (ConnId, Vec<Output>) {
    let down = accept(engine);
    send(engine, t, down, request);
    (down, drain(engine))
}

/// The primary's and the mirror's connections the outputs ask for.
fn both(out: &[Output]) -> (ConnId, ConnId) {
    (
        conn_to(out, PRIMARY).unwrap(),
        conn_to(out, MIRROR).unwrap(),
    )
}

fn conn_to(out: &[Output], addr: &str) -> Option<ConnId> {
    let addr: SocketAddr = addr.parse().unwrap();
    connects(out)
        .into_iter()
        .find_map(|(c, a)| (a == addr).then_some(c))
}

const POST: &[u8] =
    b"POST /orders?id=7 HTTP/1.1\r\nhost: svc\r\nx-request-id: abc\r\ncontent-length: 10\r\n\r\nhello";
const POST_REST: &[u8] = b"world";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[test]
fn the_mirror_gets_the_primary_request_with_a_shadow_host_and_its_whole_body() {
    let mut engine = engine_with(vec![policy("m", MirrorFraction::ALL, true)]);
    let (down, mut out) = open(&mut engine, at(1), POST);
    let (up, mirror) = both(&out);
    engine.handle(at(1), Input::Connected { conn: up });
    engine.handle(at(1), Input::Connected { conn: mirror });
    out.extend(drain(&mut engine));
    // The rest of the body arrives after both connected: it is streamed to both.
    send(&mut engine, at(2), down, POST_REST);
    out.extend(drain(&mut engine));
    let primary = String::from_utf8(sent_to(&out, up)).unwrap();
    let shadow = String::from_utf8(sent_to(&out, mirror)).unwrap();
    assert!(primary.ends_with("\r\n\r\nhelloworld"), "{primary}");
    assert!(primary.contains("host: svc\r\n"), "{primary}");
    // shadowAppendedHost: the only difference is the host.
    assert_eq!(
        shadow,
        primary.replace("host: svc\r\n", "host: svc-shadow\r\n")
    );
    // The mirror answers first, with an error: the client never sees it.
    send(
        &mut engine,
        at(3),
        mirror,
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 3\r\n\r\nbad",
    );
    send(&mut engine, at(4), up, OK);
    let out = drain(&mut engine);
    let client = String::from_utf8(sent_to(&out, down)).unwrap();
    assert!(client.starts_with("HTTP/1.1 200 OK\r\n"), "{client}");
    assert!(
        !client.contains("bad") && !client.contains("500"),
        "{client}"
    );
    let stats = engine.stats();
    assert_eq!(
        (
            stats.mirror_rq_total,
            stats.mirror_rq_completed,
            stats.mirror_rq_by_class[5]
        ),
        (1, 1, 1)
    );
    let logs = engine.drain_mirror_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(
        (logs[0].status, logs[0].outcome, logs[0].authority.as_str()),
        (500, MirrorOutcome::Completed, "svc-shadow")
    );
    assert_eq!(logs[0].path, "/orders?id=7");
    // One access-log record: the client's request.
    let access = engine.drain_logs();
    assert_eq!(access.len(), 1);
    assert_eq!(access[0].status, 200);
}

#[test]
fn without_the_suffix_the_mirror_keeps_the_host_as_pilot_writes_it_by_default() {
    // DISABLE_SHADOW_HOST_SUFFIX defaults to true in pilot/pkg/features/pilot.go.
    let mut engine = engine_with(vec![policy("m", MirrorFraction::ALL, false)]);
    let (_, mut out) = open(
        &mut engine,
        at(1),
        b"GET /a HTTP/1.1\r\nhost: svc:9080\r\n\r\n",
    );
    let mirror = conn_to(&out, MIRROR).unwrap();
    engine.handle(at(1), Input::Connected { conn: mirror });
    out.extend(drain(&mut engine));
    let shadow = String::from_utf8(sent_to(&out, mirror)).unwrap();
    assert!(
        shadow.starts_with("GET /a HTTP/1.1\r\nhost: svc:9080\r\n"),
        "{shadow}"
    );
}

/// How the mirror misbehaves in [`client_view`].
#[derive(Clone, Copy, Debug)]
enum MirrorFault {
    ConnectFails,
    Resets,
    Answers5xx,
    NeverAnswers,
    ConnectHangs,
}

/// What the client receives and the access log says for one GET with a body-less 200, with
/// the mirror (if any) misbehaving as `fault`; the mirror's last outcome.
fn client_view(fault: Option<MirrorFault>) -> (Vec<u8>, (u16, Vec<ResponseFlag>, Duration)) {
    let mirrors = match fault {
        Some(_) => vec![policy("m", MirrorFraction::ALL, true)],
        None => Vec::new(),
    };
    let mut engine = Engine::try_new(Arc::new(mirrored(mirrors)), 9).unwrap();
    let (down, mut out) = open(&mut engine, at(1), b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    let up = conn_to(&out, PRIMARY).unwrap();
    let mirror = conn_to(&out, MIRROR);
    assert_eq!(mirror.is_some(), fault.is_some());
    engine.handle(at(2), Input::Connected { conn: up });
    if let (Some(mirror), Some(fault)) = (mirror, fault) {
        match fault {
            MirrorFault::ConnectFails => {
                engine.handle(at(2), Input::ConnectFailed { conn: mirror });
            }
            MirrorFault::ConnectHangs => {}
            _ => engine.handle(at(2), Input::Connected { conn: mirror }),
        }
        match fault {
            MirrorFault::Resets => engine.handle(at(3), Input::Closed { conn: mirror }),
            MirrorFault::Answers5xx => send(
                &mut engine,
                at(3),
                mirror,
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            ),
            _ => {}
        }
    }
    out.extend(drain(&mut engine));
    send(&mut engine, at(5), up, OK);
    out.extend(drain(&mut engine));
    let logs = engine.drain_logs();
    assert_eq!(logs.len(), 1, "one record, the client's");
    let log = &logs[0];
    // A mirror that is still out ends by its own deadlines, later, without the client.
    engine.handle_timeout(at(1) + Duration::from_secs(301));
    assert_eq!(engine.live().1, 0, "no request left");
    if fault.is_some() {
        let stats = engine.stats();
        assert_eq!(stats.mirror_rq_total, 1);
        assert_eq!(
            stats.mirror_rq_completed + stats.mirror_rq_failed,
            1,
            "{fault:?}: {stats:?}"
        );
    }
    (
        sent_to(&out, down),
        (log.status, log.flags.clone(), log.duration),
    )
}

#[test]
fn whatever_the_mirror_does_the_client_gets_the_same_bytes_at_the_same_time() {
    let baseline = client_view(None);
    assert!(baseline.0.starts_with(b"HTTP/1.1 200 OK\r\n"));
    for fault in [
        MirrorFault::ConnectFails,
        MirrorFault::Resets,
        MirrorFault::Answers5xx,
        MirrorFault::NeverAnswers,
        MirrorFault::ConnectHangs,
    ] {
        assert_eq!(client_view(Some(fault)), baseline, "{fault:?}");
    }
}

#[test]
fn a_silent_mirror_ends_at_the_route_timeout() {
    // Envoy gives the shadow the route's global timeout (`setTimeout(timeout_.global_timeout_)`).
    let mut c = mirrored(vec![policy("m", MirrorFraction::ALL, true)]);
    c.route_tables[0].virtual_hosts[0].routes[0].timeout = Some(Duration::from_secs(2));
    let mut engine = Engine::try_new(Arc::new(c), 1).unwrap();
    let (_, out) = open(&mut engine, at(0), b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    let (up, mirror) = both(&out);
    engine.handle(at(1), Input::Connected { conn: up });
    engine.handle(at(1), Input::Connected { conn: mirror });
    send(&mut engine, at(5), up, OK);
    drain(&mut engine);
    engine.handle_timeout(at(1999));
    assert_eq!(engine.stats().mirror_rq_failed, 0);
    engine.handle_timeout(at(2000));
    let out = drain(&mut engine);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close { conn, graceful: false } if *conn == mirror)),
        "{out:?}"
    );
    assert_eq!(
        engine.drain_mirror_logs()[0].outcome,
        MirrorOutcome::Timeout
    );
}

#[test]
fn zero_percent_never_mirrors_and_fifty_percent_is_a_seeded_draw() {
    let run = |fraction: MirrorFraction, seed: u64| -> Vec<bool> {
        let mut engine =
            Engine::try_new(Arc::new(mirrored(vec![policy("m", fraction, true)])), seed).unwrap();
        (0..200)
            .map(|_| {
                let down = accept(&mut engine);
                send(
                    &mut engine,
                    at(1),
                    down,
                    b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n",
                );
                conn_to(&drain(&mut engine), MIRROR).is_some()
            })
            .collect()
    };
    let none = MirrorFraction {
        numerator: 0,
        denominator: 100,
    };
    assert!(run(none, 3).iter().all(|m| !m));
    // mirrorPercentage 50 is written per million (translatePercentToFractionalPercent).
    let half = MirrorFraction {
        numerator: 500_000,
        denominator: 1_000_000,
    };
    let a = run(half, 3);
    assert_eq!(a, run(half, 3), "same seed, same requests mirrored");
    assert_ne!(a, run(half, 4), "another seed, another draw");
    let mirrored = a.iter().filter(|m| **m).count();
    assert!((70..=130).contains(&mirrored), "{mirrored} of 200");
}

#[test]
fn every_mirror_of_a_route_gets_its_copy() {
    let mut engine = engine_with(vec![
        policy("m", MirrorFraction::ALL, true),
        policy("m2", MirrorFraction::ALL, false),
    ]);
    let (down, mut out) = open(&mut engine, at(1), POST);
    let (m1, m2) = (
        conn_to(&out, MIRROR).unwrap(),
        conn_to(&out, MIRROR2).unwrap(),
    );
    engine.handle(at(1), Input::Connected { conn: m1 });
    send(&mut engine, at(2), down, POST_REST);
    engine.handle(at(3), Input::Connected { conn: m2 });
    out.extend(drain(&mut engine));
    let (a, b) = (sent_to(&out, m1), sent_to(&out, m2));
    assert!(a.ends_with(b"host: svc-shadow\r\n") || a.ends_with(b"helloworld"));
    assert!(a.ends_with(b"helloworld") && b.ends_with(b"helloworld"));
    assert_eq!(
        String::from_utf8(a).unwrap(),
        String::from_utf8(b)
            .unwrap()
            .replace("host: svc\r\n", "host: svc-shadow\r\n")
    );
}

#[test]
fn a_retried_request_is_mirrored_once() {
    let mut c = mirrored(vec![policy("m", MirrorFraction::ALL, true)]);
    let route = &mut c.route_tables[0].virtual_hosts[0].routes[0];
    route.retries.attempts = 2;
    route.retries.retry_on = RetryOn {
        server_error: true,
        ..RetryOn::default()
    };
    let mut engine = Engine::try_new(Arc::new(c), 1).unwrap();
    let (_, mut out) = open(&mut engine, at(1), b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    let up = conn_to(&out, PRIMARY).unwrap();
    engine.handle(at(1), Input::Connected { conn: up });
    send(
        &mut engine,
        at(2),
        up,
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
    );
    engine.handle_timeout(at(1000));
    out.extend(drain(&mut engine));
    let primaries = connects(&out)
        .iter()
        .filter(|(_, a)| *a == PRIMARY.parse().unwrap())
        .count();
    assert_eq!(primaries, 2, "retried: {out:?}");
    assert_eq!(engine.stats().mirror_rq_total, 1);
}

#[test]
fn a_mirror_that_cannot_keep_up_is_abandoned_and_the_client_is_never_held_back() {
    let mut c = mirrored(vec![policy("m", MirrorFraction::ALL, true)]);
    c.http.connection_buffer_bytes = 4096;
    let mut engine = Engine::try_new(Arc::new(c), 1).unwrap();
    let down = accept(&mut engine);
    let head = b"POST /big HTTP/1.1\r\nhost: svc\r\ncontent-length: 12000\r\n\r\n";
    send(&mut engine, at(1), down, head);
    let mut out = drain(&mut engine);
    let (up, mirror) = both(&out);
    engine.handle(at(1), Input::Connected { conn: up });
    // The mirror's connection never completes: its copy piles up until it is given up.
    for i in 0..4u64 {
        send(&mut engine, at(2 + i), down, &[b'x'; 3000]);
        out.extend(drain(&mut engine));
        engine.handle(at(2 + i), Input::WriteDrained { conn: up });
        out.extend(drain(&mut engine));
    }
    assert!(
        sent_to(&out, up).ends_with(&[b'x'; 12000]),
        "the primary got it all"
    );
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::ReadInterest { conn, enabled: false } if *conn == down)),
        "the client is never paused for the mirror: {out:?}"
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Close { conn, .. } if *conn == mirror)));
    assert_eq!(engine.stats().mirror_rq_abandoned, 1);
}

#[test]
fn a_mirror_still_copying_the_body_ends_with_its_primary() {
    // Envoy's Filter::onDestroy cancels the shadow streams whose body is not whole.
    let mut engine = engine_with(vec![policy("m", MirrorFraction::ALL, true)]);
    let (down, out) = open(&mut engine, at(1), POST);
    let mirror = conn_to(&out, MIRROR).unwrap();
    engine.handle(at(1), Input::Connected { conn: mirror });
    engine.handle(at(2), Input::Closed { conn: down });
    let out = drain(&mut engine);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if *conn == mirror)),
        "{out:?}"
    );
    assert_eq!(engine.stats().mirror_rq_abandoned, 1);
    assert_eq!(engine.live().1, 0, "no request left over");
}

#[test]
fn a_finished_mirror_goes_back_to_the_pool_and_the_next_one_reuses_it() {
    let mut engine = engine_with(vec![policy("m", MirrorFraction::ALL, true)]);
    let (down, out) = open(&mut engine, at(1), b"GET /1 HTTP/1.1\r\nhost: svc\r\n\r\n");
    let (up, mirror) = both(&out);
    engine.handle(at(1), Input::Connected { conn: up });
    engine.handle(at(1), Input::Connected { conn: mirror });
    send(&mut engine, at(2), mirror, OK);
    send(&mut engine, at(2), up, OK);
    drain(&mut engine);
    send(
        &mut engine,
        at(3),
        down,
        b"GET /2 HTTP/1.1\r\nhost: svc\r\n\r\n",
    );
    let out = drain(&mut engine);
    assert!(connects(&out).is_empty(), "both pooled: {out:?}");
    assert!(String::from_utf8(sent_to(&out, mirror))
        .unwrap()
        .starts_with("GET /2 HTTP/1.1\r\nhost: svc-shadow\r\n"));
}

#[test]
fn an_unknown_mirror_cluster_or_a_full_breaker_drops_only_the_mirror() {
    let mut c = mirrored(vec![
        policy("gone", MirrorFraction::ALL, true),
        policy("m", MirrorFraction::ALL, true),
    ]);
    c.clusters[1].pool.max_requests = 0;
    let mut engine = Engine::try_new(Arc::new(c), 1).unwrap();
    let (_, out) = open(&mut engine, at(1), b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    assert_eq!(connects(&out).len(), 1, "{out:?}");
    assert_eq!(engine.stats().mirror_rq_dropped, 2);
}
