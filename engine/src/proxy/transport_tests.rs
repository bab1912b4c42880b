//! The transform slot, proved with the framed toy record layer on both sides of the engine:
//! a client and an upstream that speak only records, handshakes that finish at any
//! segmentation, refusals that name their reason, and failures that end only their connection.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::tests::{accept, config, drain, sent_to};
use super::*;
use crate::transport::framed::Framed;
use crate::transport::policy::MeshIdentity;
use crate::transport::{
    ByteTransform, Endpoint, TransformError, TransformErrorKind, Transport, TransportFactory,
};

/// Framed on the downstream side, the upstream side, or both; or a setup failure upstream.
struct TestTransports {
    downstream: bool,
    upstream: Option<u8>,
    upstream_setup_fails: bool,
}

impl TransportFactory for TestTransports {
    fn transport(
        &mut self,
        _now: Instant,
        endpoint: Endpoint<'_>,
        _identity: Option<&MeshIdentity>,
    ) -> Result<Transport, TransformError> {
        match endpoint {
            Endpoint::Downstream { .. } if self.downstream => {
                Ok(Transport::Transformed(Box::new(Framed::server())))
            }
            Endpoint::Upstream { cluster, .. } if self.upstream_setup_fails => Err(
                TransformError::new(TransformErrorKind::Setup, format!("no key for {cluster}")),
            ),
            Endpoint::Upstream { .. } => Ok(match self.upstream {
                Some(key) => Transport::Transformed(Box::new(Framed::client(key))),
                None => Transport::Plain,
            }),
            Endpoint::Downstream { .. } => Ok(Transport::Plain),
        }
    }
}

fn engine(transports: TestTransports) -> Engine {
    let mut engine = Engine::try_new(Arc::new(config()), 1).unwrap();
    engine.set_transports(Box::new(transports));
    engine
}

pub(super) const T: Instant = Instant::ZERO;

/// Hand `bytes` to the engine on `conn` in pieces of `step` bytes.
pub(super) fn feed(engine: &mut Engine, conn: ConnId, bytes: &[u8], step: usize) -> Vec<Output> {
    feed_at(engine, T, conn, bytes, step)
}

/// [`feed`] at engine time `now`.
pub(super) fn feed_at(
    engine: &mut Engine,
    now: Instant,
    conn: ConnId,
    bytes: &[u8],
    step: usize,
) -> Vec<Output> {
    let mut out = Vec::new();
    for chunk in bytes.chunks(step.max(1)) {
        let data = Bytes::copy_from_slice(chunk);
        engine.handle(now, Input::Received { conn, data });
        out.extend(drain(engine));
    }
    out
}

/// Everything `outputs` send on `conn`, through the peer's transform, as plaintext.
pub(super) fn open(
    peer: &mut dyn ByteTransform,
    outputs: &[Output],
    conn: ConnId,
) -> Result<Vec<u8>, TransformError> {
    open_at(peer, T, outputs, conn)
}

/// [`open`] with the peer's clock at `now`.
pub(super) fn open_at(
    peer: &mut dyn ByteTransform,
    now: Instant,
    outputs: &[Output],
    conn: ConnId,
) -> Result<Vec<u8>, TransformError> {
    let mut plain = BytesMut::new();
    for o in outputs {
        if let Output::Send { conn: c, data } = o {
            if *c == conn {
                peer.receive(now, data, &mut plain)?;
            }
        }
    }
    Ok(plain.to_vec())
}

pub(super) fn wire_of(peer: &mut dyn ByteTransform) -> Vec<u8> {
    let mut wire = BytesMut::new();
    peer.poll_wire(&mut wire);
    wire.to_vec()
}

/// The upstream connection `outputs` ask for.
pub(super) fn connect_in(outputs: &[Output]) -> Option<ConnId> {
    outputs.iter().find_map(|o| match o {
        Output::Connect { conn, .. } => Some(*conn),
        _ => None,
    })
}

pub(super) const REQUEST: &[u8] = b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n";

pub(super) fn events(engine: &mut Engine) -> Vec<Event> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}

/// The engine's one event: a transport failure on `conn` (an upstream one or not); its error.
pub(super) fn the_transport_failure(
    engine: &mut Engine,
    conn: ConnId,
    upstream: bool,
) -> TransformError {
    let events = events(engine);
    match events.as_slice() {
        [Event::TransportFailed {
            conn: c,
            upstream: u,
            error,
            ..
        }] if *c == conn && *u == upstream => error.clone(),
        _ => panic!("expected one transport failure on {conn}: {events:?}"),
    }
}

#[test]
fn a_request_crosses_two_transformed_hops_at_any_segmentation() {
    for step in [1, 3, 7, 64, 4096] {
        let mut engine = engine(TestTransports {
            downstream: true,
            upstream: Some(9),
            upstream_setup_fails: false,
        });
        let down = accept(&mut engine);
        let mut client = Framed::client(5);
        client.seal(REQUEST);
        let hello = wire_of(&mut client);
        // The HELLO arrives; the engine answers OK before the codec sees a byte.
        let out = feed(&mut engine, down, &hello, step);
        let ok = open(&mut client, &out, down).unwrap();
        assert!(ok.is_empty(), "step {step}: {ok:?}");
        assert!(
            client.is_established(),
            "step {step}: the server's OK went out"
        );
        assert!(!out.iter().any(|o| matches!(o, Output::Connect { .. })));
        // The request, sealed once the handshake is done.
        let records = wire_of(&mut client);
        let out = feed(&mut engine, down, &records, step);
        let up = connect_in(&out).expect("the decoded request is routed");
        // Connected: the engine's client transform speaks first; the request waits inside it.
        engine.handle(T, Input::Connected { conn: up });
        let out = drain(&mut engine);
        let mut upstream = Framed::server();
        let plain = open(&mut upstream, &out, up).unwrap();
        assert!(plain.is_empty(), "step {step}: nothing before OK");
        assert_eq!(upstream.peer_identity(), Some("framed-client-9"));
        let ok = wire_of(&mut upstream);
        let out = feed(&mut engine, up, &ok, step);
        let plain = open(&mut upstream, &out, up).unwrap();
        let text = String::from_utf8(plain).unwrap();
        assert!(
            text.starts_with("GET /x HTTP/1.1\r\nhost: svc\r\n"),
            "step {step}: {text}"
        );
        // The answer comes back through both transforms.
        upstream.seal(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi");
        let answer = wire_of(&mut upstream);
        let out = feed(&mut engine, up, &answer, step);
        let plain = open(&mut client, &out, down).unwrap();
        let text = String::from_utf8(plain).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n"),
            "step {step}: {text}"
        );
        assert!(text.ends_with("\r\n\r\nhi"), "step {step}: {text}");
        assert!(events(&mut engine).is_empty());
    }
}

#[test]
fn a_refused_client_gets_an_alert_a_close_and_one_event_naming_why() {
    let mut engine = engine(TestTransports {
        downstream: true,
        upstream: None,
        upstream_setup_fails: false,
    });
    let down = accept(&mut engine);
    let mut client = Framed::client(0);
    let hello = wire_of(&mut client);
    let out = feed(&mut engine, down, &hello, 4096);
    let err = open(&mut client, &out, down).unwrap_err();
    assert_eq!(err.kind, TransformErrorKind::Protocol, "the alert arrived");
    assert!(out.contains(&Output::Close {
        conn: down,
        graceful: true
    }));
    let error = the_transport_failure(&mut engine, down, false);
    assert_eq!(error.kind, TransformErrorKind::PeerRefused);
    assert!(error.to_string().contains("key 0"), "{error}");
    assert_eq!(engine.stats().transport_failures, 1);
}

#[test]
fn plaintext_on_a_transformed_port_is_refused_without_an_http_answer() {
    let mut engine = engine(TestTransports {
        downstream: true,
        upstream: None,
        upstream_setup_fails: false,
    });
    let down = accept(&mut engine);
    let out = feed(&mut engine, down, REQUEST, 4096);
    // Only the alert record goes out: the codec never saw the plaintext request.
    let sent = sent_to(&out, down);
    assert_eq!(sent, vec![0x16, 0, 0]);
    assert!(!out.iter().any(|o| matches!(o, Output::Connect { .. })));
    assert!(engine.drain_logs().is_empty(), "no request was ever read");
    // Another client on the same engine is served normally.
    let other = accept(&mut engine);
    let mut client = Framed::client(3);
    client.seal(REQUEST);
    let mut bytes = wire_of(&mut client);
    let out = feed(&mut engine, other, &bytes, 4096);
    open(&mut client, &out, other).unwrap();
    bytes = wire_of(&mut client);
    let out = feed(&mut engine, other, &bytes, 4096);
    assert!(out.iter().any(|o| matches!(o, Output::Connect { .. })));
}

#[test]
fn an_upstream_transport_that_cannot_be_set_up_is_a_connect_failure() {
    let mut engine = engine(TestTransports {
        downstream: false,
        upstream: None,
        upstream_setup_fails: true,
    });
    let down = accept(&mut engine);
    let out = feed(&mut engine, down, REQUEST, 4096);
    let up = connect_in(&out).expect("connect");
    let events = events(&mut engine);
    assert!(
        matches!(events.as_slice(), [Event::TransportFailed { conn, upstream: true, error, .. }]
            if *conn == up && error.to_string().contains("no key for c")),
        "{events:?}"
    );
    engine.handle(T, Input::Connected { conn: up });
    let out = drain(&mut engine);
    assert!(out.contains(&Output::Close {
        conn: up,
        graceful: false
    }));
    let logs = engine.drain_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].status, 503);
    assert_eq!(logs[0].flags, vec![ResponseFlag::UpstreamConnectionFailure]);
}

#[test]
fn the_clients_close_record_is_end_of_input() {
    let mut engine = engine(TestTransports {
        downstream: true,
        upstream: None,
        upstream_setup_fails: false,
    });
    let down = accept(&mut engine);
    let mut client = Framed::client(4);
    let hello = wire_of(&mut client);
    let out = feed(&mut engine, down, &hello, 4096);
    open(&mut client, &out, down).unwrap();
    // The client closes without a request: the engine closes too, gracefully, with its own
    // close record.
    client.close();
    let bye = wire_of(&mut client);
    let out = feed(&mut engine, down, &bye, 4096);
    assert!(out.contains(&Output::Close {
        conn: down,
        graceful: true
    }));
    let sent = sent_to(&out, down);
    assert_eq!(sent, vec![0x15, 0, 0], "the engine's own close record");
}
