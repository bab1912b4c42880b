//! The inbound capture listener's per-port protocols (`InboundProtocols`), at the engine's
//! outputs: a TCP port is proxied as bytes at once (server-first protocols work), an HTTP
//! port is parsed, and a port of unknown or undeclared protocol is sniffed as Envoy's
//! `http_inspector` does (pilot: `getFilterChainMatchOptions` and
//! `buildInboundPassthroughChains` in pilot/pkg/networking/core/listener_inbound.go), with
//! MeshConfig `protocolDetectionTimeout` deciding what waiting for the first bytes ends in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::tests::{config, connects, drain, one_connect, sent_to};
use super::*;
use crate::authz::{Action, Authorization, Permission, Policy, Principal, Rbac, RbacFilter};
use crate::config::{
    Cluster, Direction, Endpoint, InboundProtocols, PortProtocol, RouteTable, TcpDestination,
    TcpRoute,
};

pub(super) const MYSQL: u16 = 3306;
pub(super) const WEB: u16 = 8080;

/// A capture listener (`forwardTo: 127.0.0.1`) whose workload declares 3306 as TCP (with its
/// own `inbound|3306||` chain) and 8080 as HTTP; other ports are sniffed and passed through.
fn engine_with(timeout: Option<Duration>, authz: Option<Arc<Authorization>>) -> Engine {
    Engine::try_new(Arc::new(config_with(timeout, authz)), 1).unwrap()
}

/// [`engine_with`]'s configuration.
pub(super) fn config_with(
    timeout: Option<Duration>,
    authz: Option<Arc<Authorization>>,
) -> crate::config::Config {
    let mut c = config();
    let l = &mut c.listeners[0];
    l.name = "virtualInbound".into();
    l.address = "0.0.0.0:15006".parse().unwrap();
    l.route_table = "inbound|passthrough".into();
    l.direction = Direction::Inbound;
    l.passthrough = true;
    l.local_forward = Some("127.0.0.1".parse().unwrap());
    l.inbound_protocols = Some(Arc::new(InboundProtocols {
        ports: BTreeMap::from([(MYSQL, PortProtocol::Tcp), (WEB, PortProtocol::Http)]),
        detection_timeout: timeout,
    }));
    c.route_tables.push(RouteTable {
        name: "inbound|passthrough".into(),
        validate_clusters: true,
        virtual_hosts: Vec::new(),
    });
    c.clusters.push(Cluster {
        name: "inbound|3306||".into(),
        endpoints: vec![Endpoint {
            sidecar: false,
            address: "127.0.0.1:3306".parse().unwrap(),
            weight: 1,
            labels: Default::default(),
        }],
        ..Default::default()
    });
    c.tcp_routes = vec![
        TcpRoute {
            name: "inbound|3306||".into(),
            listener: Some("virtualInbound".into()),
            port: Some(MYSQL),
            destinations: vec![TcpDestination {
                cluster: "inbound|3306||".into(),
                weight: 1,
            }],
            authorization: authz.clone(),
            ..TcpRoute::default()
        },
        TcpRoute {
            name: "InboundPassthroughCluster".into(),
            listener: Some("virtualInbound".into()),
            passthrough: true,
            authorization: authz,
            ..TcpRoute::default()
        },
    ];
    c
}

/// A client's connection to pod 10.1.2.3:`port`, redirected to 15006.
pub(super) fn accept(engine: &mut Engine, at: Instant, port: u16) -> ConnId {
    let mut accepted = Accepted::new(
        "10.9.9.9:40000".parse().unwrap(),
        "10.1.2.3:15006".parse().unwrap(),
    );
    accepted.original_dst = Some(std::net::SocketAddr::new("10.1.2.3".parse().unwrap(), port));
    engine.accept(at, accepted)
}

fn received(engine: &mut Engine, at: Instant, conn: ConnId, data: &'static [u8]) {
    let data = Bytes::from_static(data);
    engine.handle(at, Input::Received { conn, data });
}

/// A declared TCP port (MySQL: the server speaks first) connects to the workload at accept,
/// before the client sent a byte, and relays the greeting unparsed.
#[test]
fn a_tcp_port_is_proxied_at_once_and_server_first_bytes_flow() {
    let mut engine = engine_with(None, None);
    let t0 = Instant::ZERO;
    let down = accept(&mut engine, t0, MYSQL);
    let out = drain(&mut engine);
    let (up, addr) = one_connect(&out);
    assert_eq!(addr, "127.0.0.1:3306");
    engine.handle(t0, Input::Connected { conn: up });
    drain(&mut engine);
    received(&mut engine, t0, up, b"\x4a\x00\x00\x00\x0a8.0.36\x00");
    assert_eq!(
        sent_to(&drain(&mut engine), down),
        b"\x4a\x00\x00\x00\x0a8.0.36\x00"
    );
    assert_eq!(engine.stats().downstream_cx_tcp, 1);
}

/// A declared HTTP port never goes through the L4 chains: the request is parsed and passed
/// through to the workload at its port.
#[test]
fn an_http_port_is_parsed_as_http() {
    let mut engine = engine_with(None, None);
    let t0 = Instant::ZERO;
    let down = accept(&mut engine, t0, WEB);
    assert!(
        connects(&drain(&mut engine)).is_empty(),
        "HTTP waits for a request"
    );
    received(
        &mut engine,
        t0,
        down,
        b"GET /x HTTP/1.1\r\nhost: web\r\n\r\n",
    );
    let out = drain(&mut engine);
    let (_, addr) = one_connect(&out);
    assert_eq!(addr, "127.0.0.1:8080");
    assert_eq!(engine.stats().downstream_cx_tcp, 0);
}

/// An undeclared port: an HTTP request line (even split over reads) goes to the HTTP
/// connection manager with every byte; the upstream sees a parsed and re-encoded request.
#[test]
fn an_undeclared_port_that_sends_http_is_http() {
    let mut engine = engine_with(None, None);
    let t0 = Instant::ZERO;
    let down = accept(&mut engine, t0, 9000);
    received(&mut engine, t0, down, b"GET /y HT");
    assert!(connects(&drain(&mut engine)).is_empty(), "still undecided");
    received(&mut engine, t0, down, b"TP/1.1\r\nhost: svc:9000\r\n\r\n");
    let out = drain(&mut engine);
    let (up, addr) = one_connect(&out);
    assert_eq!(addr, "127.0.0.1:9000");
    engine.handle(t0, Input::Connected { conn: up });
    let sent = sent_to(&drain(&mut engine), up);
    let head = String::from_utf8_lossy(&sent).to_ascii_lowercase();
    assert!(head.starts_with("get /y http/1.1\r\n"), "{head}");
    assert!(head.contains("x-request-id"), "the HTTP path ran: {head}");
    received(
        &mut engine,
        t0,
        up,
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    );
    let answer = sent_to(&drain(&mut engine), down);
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert_eq!(engine.stats().downstream_cx_tcp, 0);
}

/// An undeclared port that sends something else (a Redis command) is TCP to the workload at
/// that port through the passthrough chain: the bytes arrive unchanged.
#[test]
fn an_undeclared_port_that_sends_something_else_is_tcp() {
    let mut engine = engine_with(None, None);
    let t0 = Instant::ZERO;
    let down = accept(&mut engine, t0, 6379);
    received(&mut engine, t0, down, b"*1\r\n$4\r\nPING\r\n");
    let out = drain(&mut engine);
    let (up, addr) = one_connect(&out);
    assert_eq!(addr, "127.0.0.1:6379");
    engine.handle(t0, Input::Connected { conn: up });
    assert_eq!(sent_to(&drain(&mut engine), up), b"*1\r\n$4\r\nPING\r\n");
    received(&mut engine, t0, up, b"+PONG\r\n");
    assert_eq!(sent_to(&drain(&mut engine), down), b"+PONG\r\n");
    assert_eq!(engine.stats().downstream_cx_tcp, 1);
    engine.handle(t0, Input::ReadClosed { conn: down });
    engine.handle(t0, Input::ReadClosed { conn: up });
    drain(&mut engine);
    let log = engine.drain_logs().pop().expect("one record");
    assert_eq!(log.route.as_deref(), Some("InboundPassthroughCluster"));
    assert_eq!(log.upstream_host, Some("127.0.0.1:6379".parse().unwrap()));
}

/// `protocolDetectionTimeout` set: a client that waits for the server (server-first on an
/// undeclared port) is taken as TCP when it elapses, so the greeting reaches it.
#[test]
fn with_a_detection_timeout_a_silent_client_becomes_tcp() {
    let mut engine = engine_with(Some(Duration::from_secs(5)), None);
    let t0 = Instant::ZERO;
    let down = accept(&mut engine, t0, 3307);
    assert!(connects(&drain(&mut engine)).is_empty());
    engine.handle_timeout(Instant::from_millis(4_999));
    assert!(connects(&drain(&mut engine)).is_empty(), "not yet");
    let t1 = Instant::from_millis(5_000);
    engine.handle_timeout(t1);
    let out = drain(&mut engine);
    let (up, addr) = one_connect(&out);
    assert_eq!(addr, "127.0.0.1:3307");
    engine.handle(t1, Input::Connected { conn: up });
    received(&mut engine, t1, up, b"greeting");
    assert_eq!(sent_to(&drain(&mut engine), down), b"greeting");
}

/// Istio's default (`protocolDetectionTimeout: 0s`, no detection timeout): a silent client
/// on a sniffed port is never connected; it is closed as an idle HTTP connection would be
/// (`HttpSettings::idle_timeout`), not kept forever.
#[test]
fn without_a_detection_timeout_a_silent_client_is_closed_when_idle() {
    let mut engine = engine_with(None, None);
    let idle = config().http.idle_timeout;
    let t0 = Instant::ZERO;
    let down = accept(&mut engine, t0, 3307);
    engine.handle_timeout(t0 + (idle - Duration::from_millis(1)));
    let out = drain(&mut engine);
    assert!(connects(&out).is_empty() && !out.iter().any(|o| matches!(o, Output::Close { .. })));
    engine.handle_timeout(t0 + idle);
    let out = drain(&mut engine);
    assert!(connects(&out).is_empty(), "{out:?}");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if *conn == down)),
        "{out:?}"
    );
}

/// A client that closes before sending anything on a sniffed port: not HTTP (Envoy's
/// inspector on EOF), so the workload sees the connection and its FIN.
#[test]
fn an_eof_before_any_byte_is_tcp() {
    let mut engine = engine_with(None, None);
    let t0 = Instant::ZERO;
    let down = accept(&mut engine, t0, 7000);
    engine.handle(t0, Input::ReadClosed { conn: down });
    let out = drain(&mut engine);
    let (up, _) = one_connect(&out);
    engine.handle(t0, Input::Connected { conn: up });
    assert!(drain(&mut engine).contains(&Output::Shutdown { conn: up }));
}

/// A DENY-all network RBAC on the chains: a TCP port's connection is closed on its first
/// bytes with nothing relayed; HTTP on a sniffed port is the HTTP path's, not the L4 RBAC's.
#[test]
fn network_rbac_guards_the_tcp_ports_only() {
    let deny = Arc::new(Authorization {
        filters: vec![RbacFilter {
            rules: Some(Rbac {
                action: Action::Deny,
                policies: vec![Policy {
                    name: "ns[default]-policy[deny-db]-rule[0]".into(),
                    permissions: vec![Permission::DestinationPort(MYSQL)],
                    principals: vec![Principal::Any],
                }],
            }),
            shadow: None,
        }],
    });
    let mut engine = engine_with(None, Some(deny));
    let t0 = Instant::ZERO;
    let down = accept(&mut engine, t0, MYSQL);
    let (up, _) = one_connect(&drain(&mut engine));
    engine.handle(t0, Input::Connected { conn: up });
    drain(&mut engine);
    received(&mut engine, t0, down, b"select 1");
    let out = drain(&mut engine);
    assert!(sent_to(&out, up).is_empty(), "{out:?}");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if *conn == down)),
        "{out:?}"
    );
    assert_eq!(engine.stats().rbac_denied, 1);
    // Another port, not denied by the rule's port: relayed.
    let other = accept(&mut engine, t0, 6379);
    received(&mut engine, t0, other, b"PING\r\n");
    let (up, _) = one_connect(&drain(&mut engine));
    engine.handle(t0, Input::Connected { conn: up });
    assert_eq!(sent_to(&drain(&mut engine), up), b"PING\r\n");
}

/// Not redirected: the port is the one the connection was accepted on (a capture listener
/// bound on the workload port), and a target that is the listener itself is dropped, as
/// Istio's inbound blackhole chain (`buildInboundBlackhole`) stops that loop, for TCP and
/// HTTP alike.
#[test]
fn without_an_original_destination_the_local_port_is_used_and_loops_are_dropped() {
    let mut engine = engine_with(None, None);
    let t0 = Instant::ZERO;
    let direct = |engine: &mut Engine, local: &str| {
        let accepted = Accepted::new("10.9.9.9:40000".parse().unwrap(), local.parse().unwrap());
        engine.accept(t0, accepted)
    };
    // Accepted on the pod address: the workload at the accepting port.
    let bound = direct(&mut engine, "10.1.2.3:15006");
    received(&mut engine, t0, bound, b"PING\r\n");
    let (_, addr) = one_connect(&drain(&mut engine));
    assert_eq!(addr, "127.0.0.1:15006");
    // The workload address at the listener's own port is the listener: dropped.
    let looped = direct(&mut engine, "127.0.0.1:15006");
    received(&mut engine, t0, looped, b"PING\r\n");
    let out = drain(&mut engine);
    assert!(connects(&out).is_empty(), "{out:?}");
    assert!(
        out.contains(&Output::Close {
            conn: looped,
            graceful: true
        }),
        "{out:?}"
    );
    let http = direct(&mut engine, "127.0.0.1:15006");
    received(&mut engine, t0, http, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    let out = drain(&mut engine);
    assert!(connects(&out).is_empty(), "{out:?}");
    assert!(sent_to(&out, http).starts_with(b"HTTP/1.1 404"), "{out:?}");
}
