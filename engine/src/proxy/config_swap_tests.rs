//! A configuration swap leaves requests in flight on the snapshot they started with: their
//! stream idle timeout, retry buffer and response limits do not change under them.

use std::sync::Arc;

use bytes::Bytes;

use super::tests::{accept, config, drain, sent_to};
use super::*;
use crate::config::RetryPolicy;

/// Accept a client, send `request` and connect its upstream: (downstream, upstream).
fn forwarded(engine: &mut Engine, t: Instant, request: &'static [u8]) -> (ConnId, ConnId) {
    let down = accept(engine);
    engine.handle(
        t,
        Input::Received {
            conn: down,
            data: Bytes::from_static(request),
        },
    );
    let out = drain(engine);
    let [Output::Connect { conn: up, .. }] = out.as_slice() else {
        panic!("expected one connect, got {out:?}");
    };
    let up = *up;
    engine.handle(t, Input::Connected { conn: up });
    drain(engine);
    (down, up)
}

/// A config swap does not change the stream idle timeout of a request in flight: it finishes
/// on the snapshot it started with (found while building config churn in the simulator: every
/// byte that moved re-armed the idle deadline from the running snapshot instead).
#[test]
fn config_swap_keeps_in_flight_stream_idle_timeout() {
    let mut cfg = config();
    cfg.http.stream_idle_timeout = std::time::Duration::from_secs(10);
    let mut engine = Engine::try_new(Arc::new(cfg.clone()), 1).unwrap();
    let t = Instant::from_millis(1);
    let (down, up) = forwarded(&mut engine, t, b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    engine.handle(
        t,
        Input::Received {
            conn: up,
            data: Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab"),
        },
    );
    drain(&mut engine);
    // The new snapshot gives streams only 100 ms of idleness; the request in flight keeps 10 s.
    let mut swapped = cfg;
    swapped.version = "t2".into();
    swapped.http.stream_idle_timeout = std::time::Duration::from_millis(100);
    engine.handle(Instant::from_millis(2), Input::Config(Arc::new(swapped)));
    assert_eq!(engine.config().version, "t2");
    let out = drain(&mut engine);
    assert!(
        out.is_empty(),
        "a config swap leaves requests alone: {out:?}"
    );
    // More body bytes move the idle deadline back: by the request's own snapshot.
    engine.handle(
        Instant::from_millis(50),
        Input::Received {
            conn: up,
            data: Bytes::from_static(b"c"),
        },
    );
    drain(&mut engine);
    // The request's first idle deadline (10 s after its start) comes; it has moved since.
    engine.handle_timeout(Instant::from_millis(10_020));
    let out = drain(&mut engine);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if *conn == down)),
        "the in-flight response was cut by the new snapshot's idle timeout: {out:?}"
    );
    engine.handle(
        Instant::from_millis(10_030),
        Input::Received {
            conn: up,
            data: Bytes::from_static(b"d"),
        },
    );
    let out = drain(&mut engine);
    let body = sent_to(&out, down);
    assert_eq!(body, b"d", "{out:?}");
    assert_eq!(engine.live().1, 0, "the request finished");
}

/// A config swap does not shrink the retry buffer of a request in flight: a body that fit the
/// buffer of the request's snapshot stays replayable, and the request is retried.
#[test]
fn config_swap_keeps_in_flight_retry_buffer() {
    let mut cfg = config();
    cfg.route_tables[0].virtual_hosts[0].routes[0].retries = RetryPolicy {
        attempts: 1,
        retry_on: crate::config::RetryOn {
            reset: true,
            ..Default::default()
        },
        ..RetryPolicy::none()
    };
    let mut engine = Engine::try_new(Arc::new(cfg.clone()), 1).unwrap();
    let t = Instant::from_millis(1);
    let (down, up) = forwarded(
        &mut engine,
        t,
        b"POST /x HTTP/1.1\r\nhost: svc\r\ncontent-length: 4\r\n\r\nab",
    );
    // The new snapshot keeps no body for retries; the request in flight keeps its 64 KiB.
    let mut swapped = cfg;
    swapped.version = "t2".into();
    swapped.http.retry_buffer_bytes = 1;
    engine.handle(t, Input::Config(Arc::new(swapped)));
    assert!(drain(&mut engine).is_empty());
    engine.handle(
        t,
        Input::Received {
            conn: down,
            data: Bytes::from_static(b"cd"),
        },
    );
    drain(&mut engine);
    // The upstream resets before answering: the request is retried, body and all.
    engine.handle(Instant::from_millis(2), Input::Closed { conn: up });
    let mut out = drain(&mut engine);
    engine.handle_timeout(Instant::from_millis(1_000));
    out.extend(drain(&mut engine));
    assert!(
        out.iter().any(|o| matches!(o, Output::Connect { .. })),
        "the request was not retried: {out:?}"
    );
    assert!(
        !out.iter().any(
            |o| matches!(o, Output::Send { conn, .. } | Output::Close { conn, .. } if *conn == down)
        ),
        "{out:?}"
    );
}

/// A config swap does not change the limits a request in flight reads its response under.
#[test]
fn config_swap_keeps_in_flight_response_limits() {
    let cfg = config();
    let mut engine = Engine::try_new(Arc::new(cfg.clone()), 1).unwrap();
    let t = Instant::from_millis(1);
    let (down, up) = forwarded(&mut engine, t, b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    // The new snapshot allows only tiny heads; the request in flight keeps the old limits.
    let mut swapped = cfg;
    swapped.version = "t2".into();
    swapped.http.max_header_bytes = 16;
    engine.handle(t, Input::Config(Arc::new(swapped)));
    assert!(drain(&mut engine).is_empty());
    engine.handle(
        t,
        Input::Received {
            conn: up,
            data: Bytes::from_static(
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-some-header: some value\r\n\r\nhi",
            ),
        },
    );
    let out = drain(&mut engine);
    let sent = out
        .iter()
        .find_map(|o| match o {
            Output::Send { conn, data } if *conn == down => Some(data.clone()),
            _ => None,
        })
        .expect("a response downstream");
    assert!(sent.starts_with(b"HTTP/1.1 200 OK\r\n"), "{sent:?}");
}
