//! L4 routes at the engine's outputs: weighted choice, SNI routing with the ClientHello relayed
//! unchanged, half-close both ways, connect failure (UF), overflow (UO), the idle timeout and
//! the access-log record.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::tests::{config, drain, sent_to};
use super::*;
use crate::config::{Cluster, Endpoint, TcpDestination, TcpRoute};

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

fn tcp_route(name: &str, dests: &[(&str, u32)], sni: &[&str]) -> TcpRoute {
    TcpRoute {
        name: name.into(),
        listener: Some("out".into()),
        port: Some(27017),
        sni_hosts: sni.iter().map(|s| s.to_string()).collect(),
        destinations: dests
            .iter()
            .map(|(c, w)| TcpDestination {
                cluster: c.to_string(),
                weight: *w,
            })
            .collect(),
        ..TcpRoute::default()
    }
}

fn tcp_config(routes: Vec<TcpRoute>) -> Config {
    let mut c = config();
    c.clusters.push(cluster("a", "10.0.0.10:27017"));
    c.clusters.push(cluster("b", "10.0.0.11:27017"));
    c.tcp_routes = routes;
    c
}

/// A client dialled 10.9.9.9:27017 and was captured to the outbound listener.
fn accept_tcp(engine: &mut Engine, at: Instant) -> ConnId {
    let mut accepted = Accepted::new(
        "127.0.0.1:5555".parse().unwrap(),
        "127.0.0.1:15001".parse().unwrap(),
    );
    accepted.original_dst = Some("10.9.9.9:27017".parse().unwrap());
    engine.accept(at, accepted)
}

fn connect_of(out: &[Output]) -> (ConnId, String) {
    out.iter()
        .find_map(|o| match o {
            Output::Connect { conn, addr } => Some((*conn, addr.to_string())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no connect in {out:?}"))
}

fn received(engine: &mut Engine, at: Instant, conn: ConnId, data: &'static [u8]) {
    let data = Bytes::from_static(data);
    engine.handle(at, Input::Received { conn, data });
}

/// buildOutboundNetworkFiltersWithWeightedClusters: `route[]` weights become tcp_proxy's
/// weighted_clusters, and each connection draws one.
#[test]
fn weighted_destinations_split_connections_by_weight() {
    let routes = vec![tcp_route("mongo.default", &[("a", 80), ("b", 20)], &[])];
    let mut engine = Engine::try_new(Arc::new(tcp_config(routes)), 7).unwrap();
    let mut to_a = 0;
    for _ in 0..1000 {
        accept_tcp(&mut engine, Instant::ZERO);
        let (up, addr) = connect_of(&drain(&mut engine));
        if addr == "10.0.0.10:27017" {
            to_a += 1;
        }
        engine.handle(Instant::ZERO, Input::Closed { conn: up });
        drain(&mut engine);
    }
    assert!((740..=860).contains(&to_a), "80% to a, got {to_a}/1000");
    assert_eq!(engine.stats().downstream_cx_tcp, 1000);
}

#[test]
fn bytes_relay_both_ways_and_half_closes_pass_on() {
    let routes = vec![tcp_route("mongo.default", &[("a", 100)], &[])];
    let mut engine = Engine::try_new(Arc::new(tcp_config(routes)), 1).unwrap();
    let t0 = Instant::ZERO;
    let down = accept_tcp(&mut engine, t0);
    // The client speaks first, before the upstream connection is up: its bytes wait.
    received(&mut engine, t0, down, b"hello");
    let (up, _) = connect_of(&drain(&mut engine));
    let t1 = Instant::from_millis(3);
    engine.handle(t1, Input::Connected { conn: up });
    let out = drain(&mut engine);
    assert_eq!(sent_to(&out, up), b"hello");
    received(&mut engine, t1, up, b"world");
    assert_eq!(sent_to(&drain(&mut engine), down), b"world");
    // The client is done sending: the upstream gets a FIN after its last bytes, and the
    // upstream may still answer.
    received(&mut engine, t1, down, b"!");
    engine.handle(t1, Input::ReadClosed { conn: down });
    let out = drain(&mut engine);
    let send = out
        .iter()
        .position(|o| matches!(o, Output::Send { conn, .. } if *conn == up));
    let fin = out.iter().position(|o| *o == Output::Shutdown { conn: up });
    assert!(send.is_some() && fin > send, "bytes, then FIN: {out:?}");
    assert!(
        !out.iter().any(|o| matches!(o, Output::Close { .. })),
        "{out:?}"
    );
    received(&mut engine, t1, up, b"late answer");
    assert_eq!(sent_to(&drain(&mut engine), down), b"late answer");
    // Both sides done: both close, and one record says what moved.
    let t2 = Instant::from_millis(10);
    engine.handle(t2, Input::ReadClosed { conn: up });
    let out = drain(&mut engine);
    assert!(
        out.contains(&Output::Close {
            conn: down,
            graceful: true
        }),
        "{out:?}"
    );
    assert!(
        out.contains(&Output::Close {
            conn: up,
            graceful: true
        }),
        "{out:?}"
    );
    let logs = engine.drain_logs();
    let [log] = logs.as_slice() else {
        panic!("one record: {logs:?}")
    };
    assert_eq!((log.request_body_bytes, log.response_body_bytes), (6, 16));
    assert_eq!(log.duration, Duration::from_millis(10));
    assert_eq!(log.upstream_host, Some("10.0.0.10:27017".parse().unwrap()));
    assert_eq!(log.cluster.as_deref(), Some("a"));
    assert_eq!(log.route.as_deref(), Some("mongo.default"));
    assert!(log.flags.is_empty());
    assert_eq!(engine.live(), (0, 0));
}

/// Envoy's tcp_proxy: a refused upstream closes the client and the record says UF; the host's
/// outlier detector counts it.
#[test]
fn a_refused_upstream_closes_the_client_with_uf() {
    let routes = vec![tcp_route("mongo.default", &[("a", 100)], &[])];
    let mut engine = Engine::try_new(Arc::new(tcp_config(routes)), 1).unwrap();
    let down = accept_tcp(&mut engine, Instant::ZERO);
    let (up, _) = connect_of(&drain(&mut engine));
    engine.handle(Instant::ZERO, Input::ConnectFailed { conn: up });
    let out = drain(&mut engine);
    assert!(
        out.contains(&Output::Close {
            conn: down,
            graceful: true
        }),
        "{out:?}"
    );
    let logs = engine.drain_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].flags_string(), "UF");
    assert_eq!(engine.stats().upstream_cx_connect_fail, 1);
}

/// The connect timeout (DestinationRule `tcp.connectTimeout`) is a connect failure too.
#[test]
fn a_connect_timeout_is_uf() {
    let routes = vec![tcp_route("mongo.default", &[("a", 100)], &[])];
    let mut config = tcp_config(routes);
    config.clusters[1].pool.connect_timeout = Duration::from_millis(50);
    let mut engine = Engine::try_new(Arc::new(config), 1).unwrap();
    accept_tcp(&mut engine, Instant::ZERO);
    drain(&mut engine);
    engine.handle_timeout(Instant::from_millis(50));
    let logs = engine.drain_logs();
    assert_eq!(logs[0].flags_string(), "UF", "{logs:?}");
}

/// `connectionPool.tcp.maxConnections` full: Envoy's tcp_proxy refuses with UO.
#[test]
fn max_connections_full_is_uo() {
    let routes = vec![tcp_route("mongo.default", &[("a", 100)], &[])];
    let mut config = tcp_config(routes);
    config.clusters[1].pool.max_connections = 1;
    let mut engine = Engine::try_new(Arc::new(config), 1).unwrap();
    accept_tcp(&mut engine, Instant::ZERO);
    let (up, _) = connect_of(&drain(&mut engine));
    engine.handle(Instant::ZERO, Input::Connected { conn: up });
    let second = accept_tcp(&mut engine, Instant::ZERO);
    let out = drain(&mut engine);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Connect { .. })),
        "{out:?}"
    );
    assert!(out.contains(&Output::Close {
        conn: second,
        graceful: true
    }));
    let logs = engine.drain_logs();
    assert_eq!(logs[0].flags_string(), "UO");
}

/// tcp_proxy `idle_timeout` (DestinationRule `tcp.idleTimeout`): no byte either way for that
/// long closes both sides; every byte pushes it back.
#[test]
fn the_idle_timeout_closes_both_sides() {
    let mut route = tcp_route("mongo.default", &[("a", 100)], &[]);
    route.idle_timeout = Some(Duration::from_secs(5));
    let mut engine = Engine::try_new(Arc::new(tcp_config(vec![route])), 1).unwrap();
    let down = accept_tcp(&mut engine, Instant::ZERO);
    let (up, _) = connect_of(&drain(&mut engine));
    engine.handle(Instant::ZERO, Input::Connected { conn: up });
    received(&mut engine, Instant::from_millis(4000), up, b"x");
    drain(&mut engine);
    engine.handle_timeout(Instant::from_millis(5000));
    assert!(
        drain(&mut engine).is_empty(),
        "pushed back by the byte at 4 s"
    );
    engine.handle_timeout(Instant::from_millis(9000));
    let out = drain(&mut engine);
    assert!(
        out.contains(&Output::Close {
            conn: down,
            graceful: true
        }),
        "{out:?}"
    );
    assert!(
        out.contains(&Output::Close {
            conn: up,
            graceful: true
        }),
        "{out:?}"
    );
    assert_eq!(engine.stats().tcp_idle_timeouts, 1);
}

/// A ClientHello record per the TLS 1.2 layout with only a server_name extension.
pub(super) fn client_hello(name: &str) -> Vec<u8> {
    let mut sni = vec![0u8];
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name.as_bytes());
    let mut ext = Vec::new();
    ext.extend_from_slice(&0u16.to_be_bytes());
    ext.extend_from_slice(&((sni.len() + 2) as u16).to_be_bytes());
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// buildSidecarOutboundTLSFilterChainOpts: `tls[].match[].sniHosts` become server_names; the
/// ClientHello is read, never terminated, and reaches the chosen upstream byte for byte.
#[test]
fn sni_routes_pick_the_upstream_and_relay_the_hello_unchanged() {
    let routes = vec![
        tcp_route("tls.a", &[("a", 100)], &["a.example.com"]),
        tcp_route("tls.b", &[("b", 100)], &["*.example.com"]),
    ];
    let mut engine = Engine::try_new(Arc::new(tcp_config(routes)), 1).unwrap();
    for (name, want) in [
        ("a.example.com", "10.0.0.10:27017"),
        ("x.example.com", "10.0.0.11:27017"),
    ] {
        let hello = client_hello(name);
        let down = accept_tcp(&mut engine, Instant::ZERO);
        assert!(drain(&mut engine).is_empty(), "waits for the hello");
        // Split in two: the first part is not enough to decide.
        let (first, rest) = hello.split_at(7);
        let data = Bytes::copy_from_slice(first);
        engine.handle(Instant::ZERO, Input::Received { conn: down, data });
        assert!(drain(&mut engine).is_empty());
        let data = Bytes::copy_from_slice(rest);
        engine.handle(Instant::ZERO, Input::Received { conn: down, data });
        let (up, addr) = connect_of(&drain(&mut engine));
        assert_eq!(addr, want, "{name}");
        engine.handle(Instant::ZERO, Input::Connected { conn: up });
        assert_eq!(sent_to(&drain(&mut engine), up), hello);
        engine.handle(Instant::ZERO, Input::Closed { conn: down });
        drain(&mut engine);
    }
    // No chain for this name: closed, NR, nothing dialled.
    let down = accept_tcp(&mut engine, Instant::ZERO);
    let data = Bytes::from(client_hello("db.other.org"));
    engine.handle(Instant::ZERO, Input::Received { conn: down, data });
    let out = drain(&mut engine);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Connect { .. })),
        "{out:?}"
    );
    let logs = engine.drain_logs();
    let last = logs.last().unwrap();
    assert_eq!(
        (last.flags_string().as_str(), last.authority.as_str()),
        ("NR", "db.other.org")
    );
}

#[test]
fn other_ports_stay_http_and_unknown_clusters_are_refused() {
    let routes = vec![tcp_route("mongo.default", &[("a", 100)], &[])];
    let mut engine = Engine::try_new(Arc::new(tcp_config(routes)), 1).unwrap();
    let down = super::tests::accept(&mut engine);
    received(
        &mut engine,
        Instant::ZERO,
        down,
        b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n",
    );
    let (_, addr) = connect_of(&drain(&mut engine));
    assert_eq!(addr, "10.0.0.1:80", "HTTP as before");
    let bad = vec![tcp_route("x", &[("missing", 100)], &[])];
    assert!(matches!(
        Engine::try_new(Arc::new(tcp_config(bad)), 1),
        Err(ConfigError::MissingCluster { .. })
    ));
}

/// Backpressure as for tunnels: while the upstream has not taken a buffer's worth, the client
/// is not read; once it drains, reading resumes.
#[test]
fn a_slow_upstream_pauses_the_client() {
    let routes = vec![tcp_route("mongo.default", &[("a", 100)], &[])];
    let mut config = tcp_config(routes);
    config.http.connection_buffer_bytes = 1024;
    let mut engine = Engine::try_new(Arc::new(config), 1).unwrap();
    let down = accept_tcp(&mut engine, Instant::ZERO);
    let (up, _) = connect_of(&drain(&mut engine));
    engine.handle(Instant::ZERO, Input::Connected { conn: up });
    drain(&mut engine);
    let data = Bytes::from(vec![b'x'; 4096]);
    engine.handle(Instant::ZERO, Input::Received { conn: down, data });
    let out = drain(&mut engine);
    assert_eq!(sent_to(&out, up).len(), 4096);
    let paused = Output::ReadInterest {
        conn: down,
        enabled: false,
    };
    assert!(out.contains(&paused), "{out:?}");
    engine.handle(Instant::ZERO, Input::WriteDrained { conn: up });
    let resumed = Output::ReadInterest {
        conn: down,
        enabled: true,
    };
    assert!(drain(&mut engine).contains(&resumed));
}
