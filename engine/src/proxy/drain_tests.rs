//! `Input::DrainListeners` at the engine's outputs: Envoy's `drain_listeners?graceful` with the
//! `immediate` strategy pilot-agent gives it (pkg/envoy/admin.go `DrainListeners`; Envoy's
//! `ConnectionManagerImpl` closes a draining connection after its response, saying
//! `connection: close`).

use std::sync::Arc;

use bytes::Bytes;

use super::tests::{config, connects, drain, sent_to};
use super::*;
use crate::config::{Direction, Listener};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n";
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// The test config's outbound listener ("out", 127.0.0.1:15001) and an inbound one
/// ("in", 127.0.0.1:15006) on the same route table.
fn engine() -> Engine {
    let mut c = config();
    let inbound = Listener {
        name: "in".into(),
        address: "127.0.0.1:15006".parse().unwrap(),
        direction: Direction::Inbound,
        ..c.listeners[0].clone()
    };
    c.listeners.push(inbound);
    Engine::try_new(Arc::new(c), 1).unwrap()
}

fn accept(engine: &mut Engine, port: u16) -> ConnId {
    let accepted = Accepted::new(
        "127.0.0.1:5555".parse().unwrap(),
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
    );
    engine.accept(Instant::ZERO, accepted)
}

/// One request on `down` answered by a fresh upstream: what the client received, and
/// whether the engine closed `down` afterwards. `midway` runs once the request is upstream,
/// before the answer.
fn exchange_with(
    engine: &mut Engine,
    down: ConnId,
    midway: impl FnOnce(&mut Engine),
) -> (String, bool) {
    let t = Instant::ZERO;
    let data = Bytes::from_static(REQUEST);
    engine.handle(t, Input::Received { conn: down, data });
    let sent = drain(engine);
    // A new upstream connection, or a pooled one the request was written to.
    let up = match connects(&sent).first() {
        Some(&(up, _)) => {
            engine.handle(t, Input::Connected { conn: up });
            up
        }
        None => sent
            .iter()
            .find_map(|o| match o {
                Output::Send { conn, .. } if *conn != down => Some(*conn),
                _ => None,
            })
            .expect("the request went upstream"),
    };
    let mut out = drain(engine);
    midway(engine);
    out.extend(drain(engine));
    let data = Bytes::from_static(ANSWER);
    engine.handle(t, Input::Received { conn: up, data });
    out.extend(drain(engine));
    engine.handle(t, Input::WriteDrained { conn: down });
    out.extend(drain(engine));
    let answer = String::from_utf8(sent_to(&out, down))
        .unwrap()
        .to_ascii_lowercase();
    (answer, closes(&out, down))
}

fn exchange(engine: &mut Engine, down: ConnId) -> (String, bool) {
    exchange_with(engine, down, |_| {})
}

fn closes(out: &[Output], conn: ConnId) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Close { conn: c, .. } if *c == conn))
}

#[test]
fn an_inbound_drain_closes_inbound_connections_after_their_next_response() {
    let mut engine = engine();
    let busy = accept(&mut engine, 15006);
    let idle = accept(&mut engine, 15006);
    let outbound = accept(&mut engine, 15001);
    let (answer, closed) = exchange(&mut engine, idle);
    assert!(!answer.contains("connection: close") && !closed, "{answer}");
    let (answer, closed) = exchange(&mut engine, outbound);
    assert!(!answer.contains("connection: close") && !closed, "{answer}");

    // The drain comes while busy's request is upstream.
    let mut seen = Vec::new();
    let (answer, closed) = exchange_with(&mut engine, busy, |engine| {
        engine.handle(Instant::ZERO, Input::DrainListeners { inbound_only: true });
        seen = drain(engine);
    });
    assert!(
        closes(&seen, idle),
        "an idle inbound connection closes now: {seen:?}"
    );
    assert!(!closes(&seen, busy) && !closes(&seen, outbound), "{seen:?}");
    assert!(answer.starts_with("http/1.1 200 ok"), "{answer}");
    assert!(answer.contains("connection: close") && closed, "{answer}");

    // One accepted during the drain is served, and told to go.
    let newcomer = accept(&mut engine, 15006);
    let (answer, closed) = exchange(&mut engine, newcomer);
    assert!(answer.starts_with("http/1.1 200 ok"), "{answer}");
    assert!(answer.contains("connection: close") && closed, "{answer}");

    // The outbound side keeps its connections.
    let (answer, closed) = exchange(&mut engine, outbound);
    assert!(!answer.contains("connection: close") && !closed, "{answer}");
    let (_, closed) = exchange(&mut engine, outbound);
    assert!(!closed);
}

#[test]
fn a_full_drain_takes_every_listener_and_is_never_narrowed() {
    let mut engine = engine();
    let idle = accept(&mut engine, 15001);
    engine.handle(
        Instant::ZERO,
        Input::DrainListeners {
            inbound_only: false,
        },
    );
    engine.handle(Instant::ZERO, Input::DrainListeners { inbound_only: true });
    assert!(
        closes(&drain(&mut engine), idle),
        "an idle outbound one closes too"
    );
    let outbound = accept(&mut engine, 15001);
    let (answer, closed) = exchange(&mut engine, outbound);
    assert!(answer.contains("connection: close") && closed, "{answer}");
}

/// A mesh-generated answer (no route: 404) on a draining connection says close as well.
#[test]
fn local_replies_on_a_draining_connection_say_close() {
    let mut engine = engine();
    engine.handle(Instant::ZERO, Input::DrainListeners { inbound_only: true });
    let down = accept(&mut engine, 15006);
    let data = Bytes::from_static(b"GET / HTTP/1.1\r\nhost: nowhere\r\n\r\n");
    engine.handle(Instant::ZERO, Input::Received { conn: down, data });
    let out = drain(&mut engine);
    let answer = String::from_utf8(sent_to(&out, down))
        .unwrap()
        .to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 404"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
}
