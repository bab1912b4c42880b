//! A TLS client that is not a sidecar on a PERMISSIVE inbound port, as pilot's inbound filter
//! chains treat it (pilot/pkg/networking/core/filterchain_options.go): the chains that
//! terminate mTLS match Istio's ALPNs (`allIstioMtlsALPNs`, listener.go), so a ClientHello
//! offering none of them is relayed untouched to a TCP or undeclared port's workload ("sent
//! over one-way TLS (HTTPS for example) by the downstream application ... treat the traffic as
//! just another TCP proxy") and finds no chain on an HTTP port; under STRICT every TLS client
//! is terminated.

use std::sync::Arc;

use bytes::Bytes;

use super::inbound_protocol_tests::{accept, config_with, MYSQL, WEB};
use super::mtls_policy_tests::{settings, tls_client, ENGINE_ID, TD};
use super::tests::{connects, drain, one_connect, sent_to};
use super::transport_tests::{events, feed, open, the_transport_failure, wire_of, T};
use super::*;
use crate::transport::client_hello::tests::client_hello_offering;
use crate::transport::policy::{InboundMode, InboundMtls};
use crate::transport::tls::testca::{Leaf, TestCa};
use crate::transport::tls::MtlsTransports;

/// The inbound capture listener of `inbound_protocol_tests` (3306 TCP, 8080 HTTP, others
/// sniffed), in `mode`, with a workload certificate of `ca`'s.
fn engine(ca: &TestCa, mode: InboundMode) -> Engine {
    let mut config = config_with(None, None);
    config.listeners[0].mtls = InboundMtls::uniform(mode);
    let creds = ca.issue(Leaf::valid(ENGINE_ID, 10), vec![ca.root()], TD);
    let mut engine = Engine::try_new(Arc::new(config), 1).unwrap();
    engine.set_transports(Box::new(MtlsTransports::new(&creds, settings()).unwrap()));
    engine
}

/// What curl or a browser opens an HTTPS connection with: no mesh ALPN, no certificate.
fn https_client_hello() -> Vec<u8> {
    client_hello_offering("db.example.com", &["h2", "http/1.1"])
}

/// Every byte `outputs` send on `conn`, across the given batches.
fn sent_over(batches: &[Vec<Output>], conn: ConnId) -> Vec<u8> {
    batches.iter().flat_map(|out| sent_to(out, conn)).collect()
}

#[test]
fn permissive_relays_a_tls_client_that_is_not_a_sidecar_to_a_tcp_port_untouched() {
    let ca = TestCa::new("mesh root", 1);
    let hello = https_client_hello();
    // Whole, in two reads, and a few bytes at a time (the ClientHello gathered across reads).
    for step in [hello.len(), 7, 1] {
        let mut engine = engine(&ca, InboundMode::Permissive);
        let down = accept(&mut engine, T, MYSQL);
        let (up, addr) = one_connect(&drain(&mut engine));
        assert_eq!(addr, "127.0.0.1:3306");
        engine.handle(T, Input::Connected { conn: up });
        drain(&mut engine);
        let out = feed(&mut engine, down, &hello, step);
        assert_eq!(
            sent_to(&out, up),
            hello,
            "step {step}: the workload's TLS, unread"
        );
        assert!(
            sent_to(&out, down).is_empty(),
            "no ServerHello of the sidecar's"
        );
        // The workload's answer goes back as it came.
        let flight = Bytes::from_static(b"\x16\x03\x03\x00\x02\x02\x00");
        engine.handle(
            T,
            Input::Received {
                conn: up,
                data: flight.clone(),
            },
        );
        assert_eq!(sent_to(&drain(&mut engine), down), flight);
        assert!(events(&mut engine).is_empty(), "{:?}", events(&mut engine));
    }
}

#[test]
fn permissive_still_terminates_a_sidecars_mtls_on_a_tcp_port() {
    let ca = TestCa::new("mesh root", 1);
    let mut engine = engine(&ca, InboundMode::Permissive);
    let down = accept(&mut engine, T, MYSQL);
    let (up, _) = one_connect(&drain(&mut engine));
    engine.handle(T, Input::Connected { conn: up });
    drain(&mut engine);
    let mut client = tls_client(&ca);
    client.seal(b"PING\n");
    let first = feed(&mut engine, down, &wire_of(&mut *client), 4096);
    open(&mut *client, &first, down).unwrap();
    let second = feed(&mut engine, down, &wire_of(&mut *client), 4096);
    assert_eq!(sent_over(&[first, second], up), b"PING\n", "decrypted");
    assert!(events(&mut engine).is_empty());
}

#[test]
fn permissive_relays_a_tls_client_that_is_not_a_sidecar_on_an_undeclared_port() {
    let ca = TestCa::new("mesh root", 1);
    let mut engine = engine(&ca, InboundMode::Permissive);
    let down = accept(&mut engine, T, 8443);
    let hello = https_client_hello();
    let out = feed(&mut engine, down, &hello, hello.len());
    let (up, addr) = one_connect(&out);
    assert_eq!(
        addr, "127.0.0.1:8443",
        "the passthrough chain, to the port it was meant for"
    );
    engine.handle(T, Input::Connected { conn: up });
    assert_eq!(sent_to(&drain(&mut engine), up), hello);
    assert!(events(&mut engine).is_empty());
}

#[test]
fn permissive_closes_a_tls_client_that_is_not_a_sidecar_on_an_http_port() {
    let ca = TestCa::new("mesh root", 1);
    let mut engine = engine(&ca, InboundMode::Permissive);
    let down = accept(&mut engine, T, WEB);
    let hello = https_client_hello();
    let out = feed(&mut engine, down, &hello, 100);
    assert!(connects(&out).is_empty(), "nothing reaches the workload");
    assert!(
        sent_to(&out, down).is_empty(),
        "no certificate shown, no HTTP answer"
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if *conn == down)),
        "{out:?}"
    );
    let error = the_transport_failure(&mut engine, down, false);
    assert!(error.detail.contains("without an Istio ALPN"), "{error}");
    // A sidecar on the same port is still served (the plaintext side is the other tests').
    let down = accept(&mut engine, T, WEB);
    let mut client = tls_client(&ca);
    client.seal(b"GET /x HTTP/1.1\r\nhost: web\r\n\r\n");
    let first = feed(&mut engine, down, &wire_of(&mut *client), 4096);
    open(&mut *client, &first, down).unwrap();
    let second = feed(&mut engine, down, &wire_of(&mut *client), 4096);
    let (_, addr) = one_connect(&second);
    assert_eq!(addr, "127.0.0.1:8080");
}

#[test]
fn strict_terminates_every_tls_client_whatever_it_offers() {
    let ca = TestCa::new("mesh root", 1);
    let mut engine = engine(&ca, InboundMode::Strict);
    let down = accept(&mut engine, T, MYSQL);
    let (up, _) = one_connect(&drain(&mut engine));
    engine.handle(T, Input::Connected { conn: up });
    drain(&mut engine);
    let out = feed(&mut engine, down, &https_client_hello(), 4096);
    assert!(sent_to(&out, up).is_empty(), "never relayed");
    assert!(
        !sent_to(&out, down).is_empty(),
        "the sidecar's own handshake answers it"
    );
}
