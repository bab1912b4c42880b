//! mTLS as the configuration chooses it: PERMISSIVE telling TLS from plaintext on one
//! listener, and `x-forwarded-client-cert` as Envoy's APPEND_FORWARD on inbound mTLS and
//! SANITIZE everywhere else.

use std::sync::Arc;

use super::tests::{accept, config, drain, sent_to};
use super::transport_tests::{connect_in, events, feed, open, wire_of, T};
use super::*;
use crate::config::{Config, Direction};
use crate::transport::policy::{InboundMode, InboundMtls, ResolvedUpstreamTls};
use crate::transport::tls::testca::{Leaf, TestCa, UNIX_BASE};
use crate::transport::tls::{MtlsSettings, MtlsTransports, Randomness};
use crate::transport::{ByteTransform, Endpoint, Transport, TransportFactory};

pub(super) const TD: &str = "cluster.local";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/productpage";
pub(super) const ENGINE_ID: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const FORGED: &[u8] = b"GET /x HTTP/1.1\r\nhost: svc\r\nx-forwarded-client-cert: By=forged\r\n\r\n";

pub(super) fn settings() -> MtlsSettings {
    MtlsSettings {
        unix_base: UNIX_BASE,
        randomness: Randomness::Seeded(7),
    }
}

/// The test config with its listener in `mode` and `direction`; the cluster stays plaintext.
fn engine(ca: &TestCa, mode: InboundMode, direction: Direction) -> Engine {
    let mut config: Config = config();
    config.listeners[0].mtls = InboundMtls::uniform(mode);
    config.listeners[0].direction = direction;
    let creds = ca.issue(Leaf::valid(ENGINE_ID, 10), vec![ca.root()], TD);
    let mut engine = Engine::try_new(Arc::new(config), 1).unwrap();
    engine.set_transports(Box::new(MtlsTransports::new(&creds, settings()).unwrap()));
    engine
}

/// A sidecar's mesh client (ALPN `istio`), with a workload certificate of `ca`'s.
pub(super) fn tls_client(ca: &TestCa) -> Box<dyn ByteTransform> {
    let creds = ca.issue(Leaf::valid(CLIENT_ID, 11), vec![ca.root()], TD);
    let mut factory = MtlsTransports::new(&creds, settings()).unwrap();
    let endpoint = Endpoint::Upstream {
        cluster: "svc",
        addr: "127.0.0.1:15001".parse().unwrap(),
        tls: ResolvedUpstreamTls::Mesh {
            subject_alt_names: &[],
            sni: None,
        },
    };
    match factory.transport(T, endpoint, None).unwrap() {
        Transport::Transformed(t) => t,
        other => panic!("{other:?}"),
    }
}

/// Send `request` over mTLS; the head the upstream receives.
fn through_tls(engine: &mut Engine, ca: &TestCa, request: &[u8]) -> String {
    let down = accept(engine);
    let mut client = tls_client(ca);
    client.seal(request);
    let out = feed(engine, down, &wire_of(&mut *client), 4096);
    open(&mut *client, &out, down).unwrap();
    let out = feed(engine, down, &wire_of(&mut *client), 4096);
    let up = connect_in(&out).expect("routed");
    engine.handle(T, Input::Connected { conn: up });
    let out = drain(engine);
    String::from_utf8(sent_to(&out, up)).unwrap()
}

/// Send `request` in plaintext; the head the upstream receives.
fn through_plaintext(engine: &mut Engine, request: &[u8]) -> String {
    let down = accept(engine);
    let out = feed(engine, down, request, 4096);
    let up = connect_in(&out).expect("routed");
    engine.handle(T, Input::Connected { conn: up });
    let out = drain(engine);
    String::from_utf8(sent_to(&out, up)).unwrap()
}

fn xfcc(head: &str) -> Option<&str> {
    head.lines()
        .find_map(|l| l.strip_prefix("x-forwarded-client-cert: "))
}

#[test]
fn permissive_serves_plaintext_and_mtls_on_one_listener() {
    let ca = TestCa::new("mesh root", 1);
    let mut engine = engine(&ca, InboundMode::Permissive, Direction::Inbound);
    let plain = through_plaintext(&mut engine, FORGED);
    assert!(plain.starts_with("GET /x HTTP/1.1\r\n"), "{plain}");
    assert_eq!(xfcc(&plain), None, "plaintext: the header is removed");
    let tls = through_tls(&mut engine, &ca, FORGED);
    assert!(tls.starts_with("GET /x HTTP/1.1\r\n"), "{tls}");
    assert!(events(&mut engine).is_empty());
}

#[test]
fn inbound_mtls_appends_the_client_certificate_after_what_came() {
    let ca = TestCa::new("mesh root", 1);
    let mut engine = engine(&ca, InboundMode::Strict, Direction::Inbound);
    let head = through_tls(&mut engine, &ca, FORGED);
    let value = xfcc(&head).unwrap_or_else(|| panic!("{head}"));
    let (forwarded, ours) = value.split_once(',').expect("appended");
    assert_eq!(forwarded, "By=forged");
    let parts: Vec<&str> = ours.split(';').collect();
    assert_eq!(parts[0], format!("By={ENGINE_ID}"));
    let hash = parts[1].strip_prefix("Hash=").expect("hash");
    assert_eq!(hash.len(), 64);
    assert!(hash
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    // The test CA's leaves have no subject: Envoy still writes `Subject=""`.
    assert_eq!(parts[2], "Subject=\"\"");
    assert_eq!(parts[3], format!("URI={CLIENT_ID}"));
    assert_eq!(parts.len(), 4, "{ours}");
}

#[test]
fn outbound_listeners_sanitize_even_over_mtls() {
    let ca = TestCa::new("mesh root", 1);
    let mut engine = engine(&ca, InboundMode::Strict, Direction::Outbound);
    let head = through_tls(&mut engine, &ca, FORGED);
    assert_eq!(xfcc(&head), None, "{head}");
    let mut plain = engine_plain();
    let head = through_plaintext(&mut plain, FORGED);
    assert_eq!(xfcc(&head), None, "{head}");
}

fn engine_plain() -> Engine {
    Engine::try_new(Arc::new(config()), 1).unwrap()
}

/// The answer to `Connection: close` goes out before TLS close_notify: a client stops reading
/// at close_notify, so an answer sealed behind it is lost (seen with `openssl s_client`).
#[test]
fn the_last_response_is_sealed_before_close_notify() {
    let ca = TestCa::new("mesh root", 1);
    let mut engine = engine(&ca, InboundMode::Strict, Direction::Inbound);
    let down = accept(&mut engine);
    let mut client = tls_client(&ca);
    client.seal(b"GET /x HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n");
    let out = feed(&mut engine, down, &wire_of(&mut *client), 4096);
    open(&mut *client, &out, down).unwrap();
    let out = feed(&mut engine, down, &wire_of(&mut *client), 4096);
    let up = connect_in(&out).expect("routed");
    engine.handle(T, Input::Connected { conn: up });
    drain(&mut engine);
    let out = feed(
        &mut engine,
        up,
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
        4096,
    );
    let answer = open(&mut *client, &out, down).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(answer.ends_with(b"hi"));
    assert!(
        client.is_peer_closed(),
        "close_notify came after the answer"
    );
}
