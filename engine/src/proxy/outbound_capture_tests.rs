//! A sidecar's outbound listener behind capture (`OutboundCapture`), at the engine's outputs:
//! what pilot and Envoy do with a connection iptables redirected to 15001
//! (`buildSidecarOutboundListener` in pilot/pkg/networking/core/listener.go, and
//! `buildOutboundCatchAllNetworkFilterChains` / `buildOutboundCatchAllNetworkFiltersOnly` in
//! listener_builder.go):
//! - a port no service has is TCP at once, to the original destination (ALLOW_ANY's
//!   `PassthroughCluster`) or closed (REGISTRY_ONLY's `BlackHoleCluster`, flag UH), never
//!   parsed;
//! - a port an HTTP service has is sniffed: HTTP is routed (or passed through / 502 by the
//!   listener's catch-all virtual host), anything else falls to the same catch-all chain;
//! - a port a TCP service has takes that service's chain;
//! - a TLS port whose chains name other server names falls to the catch-all, as Envoy's
//!   default filter chain (`PassthroughFilterChain`), not closed;
//! - a connection that was not redirected is HTTP, as before.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::tests::{config, connects, drain, one_connect, sent_to};
use super::*;
use crate::config::{
    Cluster, Endpoint, OutboundCapture, PortProtocol, Route, RouteAction, TcpDestination, TcpRoute,
    VirtualHost,
};

const WEB: u16 = 9080;
const DB: u16 = 27017;
const TLS: u16 = 443;

/// The test config's outbound listener ("out", routing host `svc`) as a capture listener
/// whose services have port 9080 (HTTP) and 27017 (TCP, cluster `db`) and a TLS chain for
/// `api.example.com` on 443; `allow_any` is its outbound traffic policy.
fn engine_with(allow_any: bool) -> Engine {
    let mut c = config();
    let l = &mut c.listeners[0];
    l.passthrough = allow_any;
    l.outbound_capture = Some(Arc::new(OutboundCapture {
        ports: BTreeMap::from([
            (WEB, PortProtocol::Detect),
            (DB, PortProtocol::Tcp),
            (TLS, PortProtocol::Tcp),
        ]),
        detection_timeout: None,
    }));
    if !allow_any {
        // pilot's `block_all` catch-all virtual host (what the control plane adds).
        c.route_tables[0].virtual_hosts.push(VirtualHost {
            name: "block_all".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                name: "block_all".into(),
                action: RouteAction::DirectResponse {
                    status: 502,
                    body: None,
                },
                ..Route::default()
            }],
        });
    }
    for (name, addr) in [("db", "10.0.0.7:27017"), ("api", "10.0.0.8:443")] {
        c.clusters.push(Cluster {
            name: name.into(),
            endpoints: vec![Endpoint {
                sidecar: false,
                address: addr.parse().unwrap(),
                weight: 1,
                labels: Default::default(),
            }],
            ..Default::default()
        });
    }
    c.tcp_routes = vec![
        TcpRoute {
            name: "db".into(),
            port: Some(DB),
            destinations: vec![TcpDestination {
                cluster: "db".into(),
                weight: 1,
            }],
            ..TcpRoute::default()
        },
        TcpRoute {
            name: "api".into(),
            port: Some(TLS),
            sni_hosts: vec!["api.example.com".into()],
            destinations: vec![TcpDestination {
                cluster: "api".into(),
                weight: 1,
            }],
            ..TcpRoute::default()
        },
    ];
    Engine::try_new(Arc::new(c), 1).unwrap()
}

/// The application's connection to `dst`, redirected to the listener; `None`: it dialled
/// the listener itself.
fn accept(engine: &mut Engine, dst: Option<&str>) -> ConnId {
    let mut accepted = Accepted::new(
        "10.1.2.3:40000".parse().unwrap(),
        "127.0.0.1:15001".parse().unwrap(),
    );
    accepted.original_dst = dst.map(|d| d.parse::<SocketAddr>().unwrap());
    engine.accept(Instant::ZERO, accepted)
}

fn received(engine: &mut Engine, conn: ConnId, data: &'static [u8]) {
    let data = Bytes::from_static(data);
    engine.handle(Instant::ZERO, Input::Received { conn, data });
}

fn closed(out: &[Output], conn: ConnId) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Close { conn: c, .. } if *c == conn))
}

/// ALLOW_ANY, a port no service has: connected to the original destination at accept, before
/// the client sent a byte (an SMTP server speaks first), and its greeting relayed unparsed.
#[test]
fn allow_any_passes_an_undeclared_port_through_as_tcp_at_once() {
    let mut engine = engine_with(true);
    let down = accept(&mut engine, Some("203.0.113.5:25"));
    let (up, addr) = one_connect(&drain(&mut engine));
    assert_eq!(addr, "203.0.113.5:25");
    engine.handle(Instant::ZERO, Input::Connected { conn: up });
    drain(&mut engine);
    received(&mut engine, up, b"220 mail ESMTP\r\n");
    assert_eq!(sent_to(&drain(&mut engine), down), b"220 mail ESMTP\r\n");
    // Even an HTTP request on that port is bytes: no header is added.
    received(&mut engine, down, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(
        sent_to(&drain(&mut engine), up),
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
    );
    engine.handle(Instant::ZERO, Input::ReadClosed { conn: down });
    engine.handle(Instant::ZERO, Input::ReadClosed { conn: up });
    drain(&mut engine);
    let log = engine.drain_logs().pop().expect("one record");
    assert_eq!(log.route.as_deref(), Some("PassthroughCluster"));
    // Envoy's UPSTREAM_CLUSTER is the one ORIGINAL_DST cluster, the address its host.
    assert_eq!(log.cluster.as_deref(), Some("PassthroughCluster"));
    assert_eq!(log.upstream_host, Some("203.0.113.5:25".parse().unwrap()));
}

/// REGISTRY_ONLY, a port no service has: BlackHoleCluster, no upstream connection, the
/// client closed, flag UH.
#[test]
fn registry_only_closes_an_undeclared_port_without_connecting() {
    let mut engine = engine_with(false);
    let down = accept(&mut engine, Some("203.0.113.5:25"));
    let out = drain(&mut engine);
    assert!(connects(&out).is_empty(), "{out:?}");
    assert!(closed(&out, down), "{out:?}");
    let log = engine.drain_logs().pop().expect("one record");
    assert_eq!(log.route.as_deref(), Some("BlackHoleCluster"));
    assert_eq!(log.cluster.as_deref(), Some("BlackHoleCluster"));
    assert_eq!(log.flags, vec![ResponseFlag::NoHealthyUpstream]);
}

/// A port an HTTP service has, to an address the mesh does not know: HTTP is sniffed and
/// parsed (the `allow_any` virtual host passes it to its original destination with the
/// proxy's headers), and a non-HTTP client there is passed through as bytes.
#[test]
fn an_http_port_is_sniffed_then_routed_or_passed_through() {
    let mut engine = engine_with(true);
    let down = accept(&mut engine, Some("203.0.113.9:9080"));
    assert!(connects(&drain(&mut engine)).is_empty(), "sniffing waits");
    received(
        &mut engine,
        down,
        b"GET /a HTTP/1.1\r\nhost: unknown\r\n\r\n",
    );
    let (up, addr) = one_connect(&drain(&mut engine));
    assert_eq!(addr, "203.0.113.9:9080");
    engine.handle(Instant::ZERO, Input::Connected { conn: up });
    let head = String::from_utf8(sent_to(&drain(&mut engine), up)).unwrap();
    assert!(head.contains("x-request-id"), "parsed as HTTP: {head}");

    let known = accept(&mut engine, Some("203.0.113.9:9080"));
    received(&mut engine, known, b"GET /b HTTP/1.1\r\nhost: svc\r\n\r\n");
    let (_, addr) = one_connect(&drain(&mut engine));
    assert_eq!(addr, "10.0.0.1:80", "a known host is routed by its Host");

    let other = accept(&mut engine, Some("203.0.113.9:9080"));
    received(&mut engine, other, b"\x00\x01binary");
    let (up, addr) = one_connect(&drain(&mut engine));
    assert_eq!(addr, "203.0.113.9:9080");
    engine.handle(Instant::ZERO, Input::Connected { conn: up });
    assert_eq!(sent_to(&drain(&mut engine), up), b"\x00\x01binary");
    assert_eq!(engine.stats().downstream_cx_tcp, 1);
}

/// REGISTRY_ONLY on a sniffed port: HTTP to an unknown host is answered 502 by the
/// `block_all` virtual host; anything else goes to BlackHoleCluster and is closed.
#[test]
fn registry_only_on_an_http_port_answers_502_or_closes() {
    let mut engine = engine_with(false);
    let down = accept(&mut engine, Some("203.0.113.9:9080"));
    received(
        &mut engine,
        down,
        b"GET / HTTP/1.1\r\nhost: unknown\r\n\r\n",
    );
    let out = drain(&mut engine);
    assert!(connects(&out).is_empty(), "{out:?}");
    let answer = String::from_utf8(sent_to(&out, down)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");

    let other = accept(&mut engine, Some("203.0.113.9:9080"));
    received(&mut engine, other, b"\x00\x01binary");
    let out = drain(&mut engine);
    assert!(connects(&out).is_empty() && closed(&out, other), "{out:?}");
}

/// A TCP service's port takes its chain at accept (no sniffing), whatever the address.
#[test]
fn a_tcp_service_port_takes_its_chain() {
    let mut engine = engine_with(false);
    accept(&mut engine, Some("10.96.0.20:27017"));
    let (_, addr) = one_connect(&drain(&mut engine));
    assert_eq!(addr, "10.0.0.7:27017");
}

/// A TLS port: the chain's server name goes to its cluster; another server name is not
/// closed but falls to the catch-all, as Envoy's default filter chain.
#[test]
fn tls_to_another_server_name_falls_to_the_catch_all() {
    let hello = |sni: &str| Bytes::from(super::tcp_tests::client_hello(sni));
    let mut engine = engine_with(true);
    let known = accept(&mut engine, Some("198.51.100.1:443"));
    let data = hello("api.example.com");
    engine.handle(Instant::ZERO, Input::Received { conn: known, data });
    let (_, addr) = one_connect(&drain(&mut engine));
    assert_eq!(addr, "10.0.0.8:443");

    let other = accept(&mut engine, Some("198.51.100.1:443"));
    let data = hello("www.example.org");
    engine.handle(Instant::ZERO, Input::Received { conn: other, data });
    let (_, addr) = one_connect(&drain(&mut engine));
    assert_eq!(
        addr, "198.51.100.1:443",
        "passed through to where it was going"
    );

    let mut closed_engine = engine_with(false);
    let other = accept(&mut closed_engine, Some("198.51.100.1:443"));
    let data = hello("www.example.org");
    closed_engine.handle(Instant::ZERO, Input::Received { conn: other, data });
    let out = drain(&mut closed_engine);
    assert!(connects(&out).is_empty() && closed(&out, other), "{out:?}");
}

/// A connection that dialled the listener itself is HTTP, as on any listener: the table is
/// for redirected connections only.
#[test]
fn a_connection_that_was_not_redirected_is_http() {
    let mut engine = engine_with(false);
    let down = accept(&mut engine, None);
    assert!(drain(&mut engine).is_empty());
    received(&mut engine, down, b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n");
    let (_, addr) = one_connect(&drain(&mut engine));
    assert_eq!(addr, "10.0.0.1:80");
    assert_eq!(engine.stats().downstream_cx_tcp, 0);
}
