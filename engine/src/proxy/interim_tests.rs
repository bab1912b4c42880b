//! Interim (1xx) and bodiless upstream answers, as Envoy's HTTP/1 codec and router treat them:
//! 100, 102 and 103 are interim answers (`HeaderUtility::isSpecial1xx`), 102 and 103 passed on
//! to HTTP/1.1 clients, any other 1xx dropped; once one came, the router retries no more
//! (`Filter::onUpstream1xxHeaders` resets its retry state); a 1xx or 204 that frames a body is
//! a protocol error (`ClientConnectionImpl::onHeadersCompleteBase`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::tests::{accept, config, drain, one_connect, sent_to};
use super::*;
use crate::config::{RetryOn, RetryPolicy, RouteAction};

/// `config()` with `attempts` retries on 5xx for its one route.
fn retrying_config(attempts: u32) -> Config {
    let mut c = config();
    let route = &mut c.route_tables[0].virtual_hosts[0].routes[0];
    assert!(matches!(route.action, RouteAction::Forward(_)));
    route.retries = RetryPolicy {
        attempts,
        per_try_timeout: None,
        retry_on: RetryOn {
            server_error: true,
            ..RetryOn::default()
        },
        backoff_base: Duration::from_millis(1),
    };
    c
}

/// Send `request` on a fresh client connection, let the engine connect, and answer the first
/// attempt with `answer`: the client connection, the upstream one, the outputs after the
/// answer.
fn exchange(
    engine: &mut Engine,
    request: &'static [u8],
    answer: &'static [u8],
) -> (ConnId, ConnId, Vec<Output>) {
    let down = accept(engine);
    let t = Instant::from_millis(1);
    engine.handle(
        t,
        Input::Received {
            conn: down,
            data: Bytes::from_static(request),
        },
    );
    let (up, _) = one_connect(&drain(engine));
    engine.handle(t, Input::Connected { conn: up });
    drain(engine);
    engine.handle(
        t,
        Input::Received {
            conn: up,
            data: Bytes::from_static(answer),
        },
    );
    (down, up, drain(engine))
}

#[test]
fn early_hints_go_to_http11_clients_and_end_retrying() {
    let mut engine = Engine::try_new(Arc::new(retrying_config(2)), 1).unwrap();
    let (down, _, out) = exchange(
        &mut engine,
        b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 150 Odd\r\n\r\nHTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
    );
    let text = String::from_utf8(sent_to(&out, down)).unwrap();
    // The 103 went on, the 150 did not, and the 503 that followed is the answer: no retry.
    assert!(
        text.starts_with("HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n"),
        "{text}"
    );
    assert!(!text.contains("150"), "{text}");
    assert!(text.contains("HTTP/1.1 503 "), "{text}");
    assert!(
        !out.iter().any(|o| matches!(o, Output::Connect { .. })),
        "a retry after an interim answer: {out:?}"
    );
    let logs = engine.drain_logs();
    assert_eq!((logs[0].status, logs[0].attempts), (503, 1));
}

#[test]
fn without_an_interim_answer_the_503_is_retried() {
    let mut engine = Engine::try_new(Arc::new(retrying_config(2)), 1).unwrap();
    let (down, _, out) = exchange(
        &mut engine,
        b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n",
        b"HTTP/1.1 150 Odd\r\n\r\nHTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
    );
    // A 1xx Envoy drops is no interim answer: nothing reached the client yet, and the retry
    // (after its backoff) is on its way.
    assert!(sent_to(&out, down).is_empty(), "{out:?}");
    engine.handle_timeout(Instant::from_millis(100));
    let later = drain(&mut engine);
    assert!(
        later
            .iter()
            .any(|o| matches!(o, Output::Connect { .. } | Output::Send { .. })),
        "the 503 was not retried: {later:?}"
    );
}

#[test]
fn http10_clients_get_no_interim_answer() {
    let mut engine = Engine::try_new(Arc::new(config()), 1).unwrap();
    let (down, _, out) = exchange(
        &mut engine,
        b"GET /x HTTP/1.0\r\nhost: svc\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
    );
    let text = String::from_utf8(sent_to(&out, down)).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nhi"), "{text}");
}

#[test]
fn a_204_framing_a_body_is_refused_and_its_bytes_never_read_as_a_response() {
    let mut engine = Engine::try_new(Arc::new(config()), 1).unwrap();
    let (down, up, out) = exchange(
        &mut engine,
        b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    let text = String::from_utf8(sent_to(&out, down)).unwrap();
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if *conn == up)),
        "the upstream connection must not be reused: {out:?}"
    );
    let logs = engine.drain_logs();
    assert_eq!(logs[0].status, 502);
    assert!(logs[0].flags.contains(&ResponseFlag::UpstreamProtocolError));
}
