//! The engine with real mutual TLS on both hops: a client sidecar's request crosses the
//! engine's TLS server and the engine's TLS client to an upstream sidecar, at any
//! segmentation; each refused peer (expired, foreign CA, wrong trust domain, no SPIFFE SAN,
//! unexpected identity, plaintext) gets its own named reason; seeded runs replay byte for byte.

use std::sync::Arc;
use std::time::Duration;

use super::tests::{accept, config, drain};
use super::transport_tests::{
    connect_in, events, feed, feed_at, open, open_at, the_transport_failure, wire_of, REQUEST, T,
};
use super::*;
use crate::config::Config;
use crate::transport::policy::{InboundMode, InboundMtls, ResolvedUpstreamTls, UpstreamTls};
use crate::transport::tls::testca::{Leaf, TestCa, UNIX_BASE};
use crate::transport::tls::{MeshCredentials, MtlsSettings, MtlsTransports, Randomness};
use crate::transport::{
    ByteTransform, Endpoint, TransformError, TransformErrorKind, Transport, TransportFactory,
};

const TD: &str = "cluster.local";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const ENGINE_ID: &str = "spiffe://cluster.local/ns/default/sa/sidecar";
const UPSTREAM_ID: &str = "spiffe://cluster.local/ns/default/sa/reviews";

fn settings(randomness: Randomness) -> MtlsSettings {
    MtlsSettings {
        unix_base: UNIX_BASE,
        randomness,
    }
}

/// The test config with mTLS asked for: STRICT on the listener, ISTIO_MUTUAL to every cluster,
/// expecting the given SPIFFE id from the named clusters.
fn mtls_config(expected: &[(&str, &str)]) -> Config {
    let mut config = config();
    for l in &mut config.listeners {
        l.mtls = InboundMtls::uniform(InboundMode::Strict);
    }
    for c in &mut config.clusters {
        c.tls = UpstreamTls::IstioMutual {
            sni: None,
            subject_alt_names: expected
                .iter()
                .filter(|(cluster, _)| *cluster == c.name)
                .map(|(_, id)| id.to_string())
                .collect(),
        };
    }
    config
}

/// An engine whose every connection is mTLS with the mesh CA's certificate for `ENGINE_ID`.
fn engine(ca: &TestCa, randomness: Randomness, expected: &[(&str, &str)]) -> Engine {
    let creds = ca.issue(Leaf::valid(ENGINE_ID, 10), vec![ca.root()], TD);
    let factory = MtlsTransports::new(&creds, settings(randomness)).unwrap();
    let mut engine = Engine::try_new(Arc::new(mtls_config(expected)), 1).unwrap();
    engine.set_transports(Box::new(factory));
    engine
}

/// A peer's TLS transform, made by its own factory for `endpoint`.
fn peer(
    creds: &MeshCredentials,
    randomness: Randomness,
    endpoint: Endpoint<'_>,
) -> Box<dyn ByteTransform> {
    let mut factory = MtlsTransports::new(creds, settings(randomness)).unwrap();
    match factory.transport(T, endpoint, None).unwrap() {
        Transport::Transformed(t) | Transport::Sniffing { tls: t, .. } => t,
        other => panic!("{other:?}"),
    }
}

/// The calling sidecar, dialling the engine's outbound listener.
fn client(creds: &MeshCredentials, randomness: Randomness) -> Box<dyn ByteTransform> {
    let endpoint = Endpoint::Upstream {
        cluster: "svc",
        addr: "127.0.0.1:15001".parse().unwrap(),
        tls: ResolvedUpstreamTls::Mesh {
            subject_alt_names: &[],
            sni: None,
        },
    };
    peer(creds, randomness, endpoint)
}

/// The upstream sidecar, accepting the engine's connection to cluster c.
fn upstream(creds: &MeshCredentials, randomness: Randomness) -> Box<dyn ByteTransform> {
    let endpoint = Endpoint::Downstream {
        terminate: None,
        listener: "inbound",
        peer: "127.0.0.1:40000".parse().unwrap(),
        local: "10.0.0.1:80".parse().unwrap(),
        mode: InboundMode::Strict,
    };
    peer(creds, randomness, endpoint)
}

/// An engine with a request on its way: both hops' handshakes done and the request read by
/// the upstream sidecar.
struct Hops {
    engine: Engine,
    down: ConnId,
    up: ConnId,
    client: Box<dyn ByteTransform>,
    upstream: Box<dyn ByteTransform>,
    /// Everything the engine sent, in order.
    transcript: Vec<u8>,
}

fn record(transcript: &mut Vec<u8>, out: &[Output]) {
    for o in out {
        if let Output::Send { data, .. } = o {
            transcript.extend_from_slice(data);
        }
    }
}

/// A client's request through the engine to the upstream sidecar, `step` bytes at a time.
fn request_through(ca: &TestCa, randomness: Randomness, step: usize) -> Hops {
    let mut engine = engine(ca, randomness, &[("c", UPSTREAM_ID)]);
    let mut transcript = Vec::new();
    let down = accept(&mut engine);
    let creds = ca.issue(Leaf::valid(CLIENT_ID, 11), vec![ca.root()], TD);
    let mut client = client(&creds, randomness);
    client.seal(REQUEST);
    // ClientHello in; the engine's server flight out.
    let out = feed(&mut engine, down, &wire_of(&mut *client), step);
    record(&mut transcript, &out);
    assert!(open(&mut *client, &out, down).unwrap().is_empty());
    assert!(client.is_established(), "step {step}");
    // The client's certificate, Finished and the request.
    let out = feed(&mut engine, down, &wire_of(&mut *client), step);
    record(&mut transcript, &out);
    let up = connect_in(&out).expect("the decrypted request is routed");
    engine.handle(T, Input::Connected { conn: up });
    let out = drain(&mut engine);
    record(&mut transcript, &out);
    let creds = ca.issue(Leaf::valid(UPSTREAM_ID, 12), vec![ca.root()], TD);
    let mut upstream = upstream(&creds, randomness);
    assert!(open(&mut *upstream, &out, up).unwrap().is_empty());
    let out = feed(&mut engine, up, &wire_of(&mut *upstream), step);
    record(&mut transcript, &out);
    let text = String::from_utf8(open(&mut *upstream, &out, up).unwrap()).unwrap();
    assert!(
        text.starts_with("GET /x HTTP/1.1\r\n"),
        "step {step}: {text}"
    );
    assert_eq!(upstream.peer_identity(), Some(ENGINE_ID), "step {step}");
    assert_eq!(client.peer_identity(), Some(ENGINE_ID));
    Hops {
        engine,
        down,
        up,
        client,
        upstream,
        transcript,
    }
}

/// Everything one request and its answer across both hops put on the wire, in order.
fn two_hops(ca: &TestCa, randomness: Randomness, step: usize) -> Vec<u8> {
    let mut h = request_through(ca, randomness, step);
    h.upstream
        .seal(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi");
    let out = feed(&mut h.engine, h.up, &wire_of(&mut *h.upstream), step);
    record(&mut h.transcript, &out);
    let text = String::from_utf8(open(&mut *h.client, &out, h.down).unwrap()).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n"),
        "step {step}: {text}"
    );
    assert!(text.ends_with("\r\n\r\nhi"), "step {step}: {text}");
    assert!(events(&mut h.engine).is_empty(), "step {step}");
    h.transcript
}

#[test]
fn backpressure_holds_across_the_tls_layer() {
    let ca = TestCa::new("mesh root", 1);
    let mut h = request_through(&ca, Randomness::System, 4096);
    const BODY: usize = 4 << 20;
    h.upstream
        .seal(format!("HTTP/1.1 200 OK\r\ncontent-length: {BODY}\r\n\r\n").as_bytes());
    let chunk = vec![b'z'; 64 * 1024];
    let (mut sent_down, mut paused, mut at_client) = (0, false, 0);
    // The client's writes are never acknowledged: the engine must stop reading the upstream
    // once about a connection buffer (1 MiB) of TLS records waits for the client.
    for _ in 0..BODY / chunk.len() {
        h.upstream.seal(&chunk);
        let out = feed(&mut h.engine, h.up, &wire_of(&mut *h.upstream), 1 << 20);
        at_client += open(&mut *h.client, &out, h.down).unwrap().len();
        sent_down += super::tests::sent_to(&out, h.down).len();
        let pause = Output::ReadInterest {
            conn: h.up,
            enabled: false,
        };
        if out.contains(&pause) {
            paused = true;
            break;
        }
    }
    assert!(
        paused,
        "the upstream was never paused ({sent_down} bytes sent down)"
    );
    assert!(
        (1 << 20..(1 << 20) + (256 << 10)).contains(&sent_down),
        "{sent_down}"
    );
    assert!(at_client > 1 << 20, "the client decrypted what was sent");
    // The client drains: reading resumes.
    h.engine.handle(T, Input::WriteDrained { conn: h.down });
    let resume = Output::ReadInterest {
        conn: h.up,
        enabled: true,
    };
    assert!(drain(&mut h.engine).contains(&resume));
}

#[test]
fn a_request_crosses_two_mtls_hops_at_any_segmentation() {
    let ca = TestCa::new("mesh root", 1);
    for step in [1, 3, 64, 1500, 1 << 16] {
        two_hops(&ca, Randomness::System, step);
    }
}

#[test]
fn seeded_mtls_runs_replay_byte_for_byte() {
    let ca = TestCa::new("mesh root", 1);
    let a = two_hops(&ca, Randomness::Seeded(7), 1500);
    assert_eq!(a, two_hops(&ca, Randomness::Seeded(7), 1500));
    assert_ne!(a, two_hops(&ca, Randomness::Seeded(8), 1500));
}

/// A client with `creds` calls the engine at engine time `now`: the engine's one
/// TransportFailed event, after checking the connection was closed.
fn refused_client(ca: &TestCa, creds: &MeshCredentials, now: Instant) -> TransformError {
    let mut engine = engine(ca, Randomness::System, &[]);
    let down = accept(&mut engine);
    let mut client = client(creds, Randomness::System);
    let out = feed_at(&mut engine, now, down, &wire_of(&mut *client), 4096);
    open(&mut *client, &out, down).unwrap();
    let out = feed_at(&mut engine, now, down, &wire_of(&mut *client), 4096);
    let close = Output::Close {
        conn: down,
        graceful: true,
    };
    assert!(out.contains(&close), "{out:?}");
    assert!(!out.iter().any(|o| matches!(o, Output::Connect { .. })));
    let error = the_transport_failure(&mut engine, down, false);
    assert_eq!(error.kind, TransformErrorKind::PeerRefused, "{error}");
    let text = error.to_string();
    assert!(text.contains("client 127.0.0.1:5555"), "{text}");
    error
}

#[test]
fn an_expired_client_certificate_is_refused_at_engine_time() {
    let ca = TestCa::new("mesh root", 1);
    let mut leaf = Leaf::valid(CLIENT_ID, 11);
    leaf.not_after = UNIX_BASE + Duration::from_secs(3600);
    let creds = ca.issue(leaf, vec![ca.root()], TD);
    // Valid an hour in: the handshake passes.
    accepted_at(&ca, &creds, Instant::from_millis(1_800_000));
    // Two hours in, by the engine's clock alone.
    let error = refused_client(&ca, &creds, Instant::from_millis(7_200_000));
    let text = error.to_string();
    assert!(text.contains("certificate expired"), "{text}");
    assert!(text.contains(CLIENT_ID), "{text}");
}

/// The handshake with `creds` succeeds at `now`.
fn accepted_at(ca: &TestCa, creds: &MeshCredentials, now: Instant) {
    let mut engine = engine(ca, Randomness::System, &[]);
    let down = accept(&mut engine);
    let mut client = client(creds, Randomness::System);
    let out = feed_at(&mut engine, now, down, &wire_of(&mut *client), 4096);
    open(&mut *client, &out, down).unwrap();
    feed_at(&mut engine, now, down, &wire_of(&mut *client), 4096);
    assert!(events(&mut engine).is_empty());
}

#[test]
fn a_certificate_from_a_foreign_ca_is_refused() {
    let ca = TestCa::new("mesh root", 1);
    let foreign = TestCa::new("someone else's root", 2);
    let creds = foreign.issue(Leaf::valid(CLIENT_ID, 11), vec![ca.root()], TD);
    let text = refused_client(&ca, &creds, T).to_string();
    assert!(text.contains("unknown CA"), "{text}");
    assert!(text.contains(CLIENT_ID), "{text}");
}

#[test]
fn a_certificate_from_another_trust_domain_is_refused() {
    let ca = TestCa::new("mesh root", 1);
    let other = "spiffe://other.example/ns/default/sa/productpage";
    let creds = ca.issue(Leaf::valid(other, 11), vec![ca.root()], TD);
    let text = refused_client(&ca, &creds, T).to_string();
    assert!(text.contains("wrong trust domain"), "{text}");
    assert!(text.contains(other) && text.contains(TD), "{text}");
}

#[test]
fn a_certificate_without_a_spiffe_san_is_refused() {
    let ca = TestCa::new("mesh root", 1);
    let mut leaf = Leaf::valid(CLIENT_ID, 11);
    leaf.san = None;
    let creds = ca.issue(leaf, vec![ca.root()], TD);
    let text = refused_client(&ca, &creds, T).to_string();
    assert!(text.contains("no SPIFFE SAN"), "{text}");
}

#[test]
fn an_upstream_with_an_unexpected_identity_is_refused_before_the_request_leaves() {
    let ca = TestCa::new("mesh root", 1);
    let mut engine = engine(&ca, Randomness::System, &[("c", UPSTREAM_ID)]);
    let down = accept(&mut engine);
    let mut client = client(
        &ca.issue(Leaf::valid(CLIENT_ID, 11), vec![ca.root()], TD),
        Randomness::System,
    );
    client.seal(REQUEST);
    let out = feed(&mut engine, down, &wire_of(&mut *client), 4096);
    open(&mut *client, &out, down).unwrap();
    let out = feed(&mut engine, down, &wire_of(&mut *client), 4096);
    let up = connect_in(&out).expect("routed");
    engine.handle(T, Input::Connected { conn: up });
    let out = drain(&mut engine);
    let impostor = "spiffe://cluster.local/ns/default/sa/ratings";
    let mut upstream = upstream(
        &ca.issue(Leaf::valid(impostor, 12), vec![ca.root()], TD),
        Randomness::System,
    );
    open(&mut *upstream, &out, up).unwrap();
    let out = feed(&mut engine, up, &wire_of(&mut *upstream), 4096);
    // The engine alerts and closes; the upstream never sees the request.
    let err = open(&mut *upstream, &out, up).unwrap_err();
    assert_eq!(err.kind, TransformErrorKind::Handshake, "{err}");
    let error = the_transport_failure(&mut engine, up, true);
    let text = error.to_string();
    assert!(
        text.contains("unexpected identity") && text.contains(impostor),
        "{text}"
    );
    assert!(text.contains("upstream c at 10.0.0.1:80"), "{text}");
}

#[test]
fn plaintext_on_an_mtls_port_is_refused_without_an_http_answer() {
    let ca = TestCa::new("mesh root", 1);
    let mut engine = engine(&ca, Randomness::System, &[]);
    let down = accept(&mut engine);
    let out = feed(&mut engine, down, REQUEST, 4096);
    assert!(!out.iter().any(|o| matches!(o, Output::Connect { .. })));
    // STRICT knows a plaintext client by its first byte: nothing is answered, the
    // connection just closes (as Envoy's inbound listener has no filter chain for it).
    let sent = super::tests::sent_to(&out, down);
    assert!(sent.is_empty(), "nothing, not HTTP: {sent:?}");
    assert!(out.contains(&Output::Close {
        conn: down,
        graceful: true
    }));
    let events = events(&mut engine);
    assert!(
        matches!(events.as_slice(), [Event::TransportFailed { error, .. }]
            if error.kind == TransformErrorKind::PeerRefused
                && error.detail.contains("plaintext connection refused")
                && error.detail.contains("STRICT")),
        "{events:?}"
    );
    assert!(engine.drain_logs().is_empty(), "no request was ever read");
}

#[test]
fn renewal_keeps_established_connections_and_new_ones_get_the_new_certificate() {
    let ca = TestCa::new("mesh root", 1);
    let hour = Duration::from_secs(3600);
    let peer_creds = |id, seed| {
        let mut leaf = Leaf::valid(id, seed);
        leaf.not_after = UNIX_BASE + 72 * hour;
        ca.issue(leaf, vec![ca.root()], TD)
    };
    let transports = |creds: &MeshCredentials| {
        let factory = MtlsTransports::new(creds, settings(Randomness::System));
        Box::new(factory.unwrap())
    };
    // The engine's first certificate lasts until 24 h.
    let first = ca.issue(Leaf::valid(ENGINE_ID, 10), vec![ca.root()], TD);
    let mut engine = Engine::try_new(Arc::new(mtls_config(&[])), 1).unwrap();
    engine.set_transports(transports(&first));
    let down = accept(&mut engine);
    let mut caller = client(&peer_creds(CLIENT_ID, 11), Randomness::System);
    caller.seal(REQUEST);
    let out = feed(&mut engine, down, &wire_of(&mut *caller), 4096);
    open(&mut *caller, &out, down).unwrap();
    let out = feed(&mut engine, down, &wire_of(&mut *caller), 4096);
    let up = connect_in(&out).expect("routed");
    engine.handle(T, Input::Connected { conn: up });
    let out = drain(&mut engine);
    let mut upstream = upstream(&peer_creds(UPSTREAM_ID, 12), Randomness::System);
    open(&mut *upstream, &out, up).unwrap();
    let out = feed(&mut engine, up, &wire_of(&mut *upstream), 4096);
    assert!(!open(&mut *upstream, &out, up).unwrap().is_empty());
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi";
    upstream.seal(ANSWER);
    let out = feed(&mut engine, up, &wire_of(&mut *upstream), 4096);
    assert!(open(&mut *caller, &out, down).unwrap().ends_with(b"hi"));
    // Renewed at 12 h; 30 h in, the first certificate has expired.
    let mut leaf = Leaf::valid(ENGINE_ID, 20);
    leaf.not_before = UNIX_BASE + 12 * hour;
    leaf.not_after = UNIX_BASE + 36 * hour;
    engine.set_transports(transports(&ca.issue(leaf, vec![ca.root()], TD)));
    let later = Instant::from_millis(30 * 3_600_000);
    // The established connections carry a second request, on the pooled upstream connection.
    caller.seal(REQUEST);
    let out = feed_at(&mut engine, later, down, &wire_of(&mut *caller), 4096);
    assert!(
        connect_in(&out).is_none(),
        "the upstream connection is reused"
    );
    let request = open_at(&mut *upstream, later, &out, up).unwrap();
    assert!(request.starts_with(b"GET /x HTTP/1.1\r\n"));
    upstream.seal(ANSWER);
    let out = feed_at(&mut engine, later, up, &wire_of(&mut *upstream), 4096);
    assert!(open_at(&mut *caller, later, &out, down)
        .unwrap()
        .ends_with(b"hi"));
    // A new client gets the renewed certificate and accepts it.
    let accepted = Accepted::new(
        "127.0.0.1:5556".parse().unwrap(),
        "127.0.0.1:15001".parse().unwrap(),
    );
    let fresh = engine.accept(later, accepted.clone());
    let mut newcomer = client(&peer_creds(CLIENT_ID, 13), Randomness::System);
    let out = feed_at(&mut engine, later, fresh, &wire_of(&mut *newcomer), 4096);
    open_at(&mut *newcomer, later, &out, fresh).unwrap();
    assert!(newcomer.is_established());
    assert!(events(&mut engine).is_empty());
    // Without the renewal, the same newcomer would have refused the expired certificate.
    let mut stale = Engine::try_new(Arc::new(mtls_config(&[])), 1).unwrap();
    stale.set_transports(transports(&first));
    let conn = stale.accept(later, accepted);
    let mut refuser = client(&peer_creds(CLIENT_ID, 14), Randomness::System);
    let out = feed_at(&mut stale, later, conn, &wire_of(&mut *refuser), 4096);
    let err = open_at(&mut *refuser, later, &out, conn).unwrap_err();
    assert!(err.to_string().contains("certificate expired"), "{err}");
}

/// A sidecar's mesh ClientHello carries what Istio's sidecars send (pilot's
/// `buildUpstreamTLSSettings` and `applyUpstreamTLSSettings` in
/// pilot/pkg/networking/core/cluster_tls.go): the server name `outbound_.<port>_.<subset>_.<host>`
/// of the cluster (or the DestinationRule's `sni`), and the in-mesh ALPN `istio`
/// (`ALPNInMesh`), which AUTO_PASSTHROUGH gateway chains match on. A cluster not named as
/// pilot names them sends no server name.
#[test]
fn the_mesh_client_hello_names_the_cluster_and_offers_istio() {
    let ca = TestCa::new("root", 1);
    let creds = ca.issue(Leaf::valid(CLIENT_ID, 2), vec![ca.root()], TD);
    let hello = |cluster: &str, sni: Option<&str>| {
        let endpoint = Endpoint::Upstream {
            cluster,
            addr: "10.0.0.2:9080".parse().unwrap(),
            tls: ResolvedUpstreamTls::Mesh {
                subject_alt_names: &[],
                sni,
            },
        };
        let mut client = peer(&creds, Randomness::System, endpoint);
        match super::sni::peek(&wire_of(&mut *client)) {
            super::sni::Peek::ClientHello { sni, alpn } => (sni, alpn),
            other => panic!("not a ClientHello: {other:?}"),
        }
    };
    let istio = vec!["istio".to_string(), "trellis-http/1.1".to_string()];
    assert_eq!(
        hello("outbound|9080|v1|reviews.default.svc.cluster.local", None),
        (
            Some("outbound_.9080_.v1_.reviews.default.svc.cluster.local".into()),
            istio.clone()
        )
    );
    assert_eq!(
        hello(
            "outbound|9080||reviews.default.svc.cluster.local",
            Some("gw.example.com")
        ),
        (Some("gw.example.com".into()), istio.clone())
    );
    assert_eq!(hello("reviews", None), (None, istio));
}
