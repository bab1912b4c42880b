//! Output-level tests of the engine: the exact sequence of outputs a driver sees.
//! (Behavioural scenarios live in `sim-tests/tests/`.)

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::config::{
    Cluster, Config, Direction, Endpoint, Listener, RetryPolicy, Route, RouteAction, RouteTable,
    VirtualHost, WeightedCluster,
};

pub(super) fn config() -> Config {
    Config {
        identity: None,
        tcp_routes: Vec::new(),
        version: "t".into(),
        listeners: vec![Listener {
            tls: None,
            mtls: Default::default(),
            name: "out".into(),
            address: "127.0.0.1:15001".parse().unwrap(),
            route_table: "rt".into(),
            direction: Direction::Outbound,
            passthrough: false,
            authorization: None,
            local_forward: None,
            inbound_protocols: None,
            outbound_capture: None,
            authentication: None,
            edge: None,
        }],
        route_tables: vec![RouteTable {
            name: "rt".into(),
            validate_clusters: true,
            virtual_hosts: vec![VirtualHost {
                name: "svc".into(),
                domains: vec!["svc".into()],
                routes: vec![Route {
                    name: "r".into(),
                    action: RouteAction::Forward(vec![WeightedCluster {
                        cluster: "c".into(),
                        weight: 100,
                        ..Default::default()
                    }]),
                    retries: RetryPolicy::none(),
                    ..Default::default()
                }],
            }],
        }],
        clusters: vec![Cluster {
            name: "c".into(),
            endpoints: vec![Endpoint {
                sidecar: false,
                address: "10.0.0.1:80".parse().unwrap(),
                weight: 1,
                labels: Default::default(),
            }],
            ..Default::default()
        }],
        http: Default::default(),
    }
}

pub(super) fn drain(engine: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| engine.poll_output()).collect()
}

/// Every byte `outputs` send on `conn`, in order.
pub(super) fn sent_to(outputs: &[Output], conn: ConnId) -> Vec<u8> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, data } if *c == conn => Some(data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Every connect in `out`: the upstream connection and its address.
pub(super) fn connects(out: &[Output]) -> Vec<(ConnId, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Connect { conn, addr } => Some((*conn, addr.to_string())),
            _ => None,
        })
        .collect()
}

/// The one connect in `out`.
pub(super) fn one_connect(out: &[Output]) -> (ConnId, String) {
    match connects(out).as_slice() {
        [(conn, addr)] => (*conn, addr.clone()),
        other => panic!("expected one connect, got {other:?} in {out:?}"),
    }
}

pub(super) fn accept(engine: &mut Engine) -> ConnId {
    engine.accept(
        Instant::ZERO,
        Accepted::new(
            "127.0.0.1:5555".parse().unwrap(),
            "127.0.0.1:15001".parse().unwrap(),
        ),
    )
}

#[test]
fn request_flows_connect_send_response_close() {
    let mut engine = Engine::try_new(Arc::new(config()), 1).unwrap();
    let down = accept(&mut engine);
    let t = Instant::from_millis(1);
    engine.handle(
        t,
        Input::Received {
            conn: down,
            data: Bytes::from_static(b"GET /x HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n"),
        },
    );
    let out = drain(&mut engine);
    let [Output::Connect { conn: up, addr }] = out.as_slice() else {
        panic!("expected one connect, got {out:?}");
    };
    assert_eq!(addr.to_string(), "10.0.0.1:80");
    let up = *up;
    engine.handle(t, Input::Connected { conn: up });
    let out = drain(&mut engine);
    let sent = out
        .iter()
        .find_map(|o| match o {
            Output::Send { conn, data } if *conn == up => Some(data.clone()),
            _ => None,
        })
        .expect("request sent upstream");
    let text = std::str::from_utf8(&sent).unwrap();
    assert!(
        text.starts_with("GET /x HTTP/1.1\r\nhost: svc\r\n"),
        "{text}"
    );
    assert!(
        !text.to_ascii_lowercase().contains("connection: close"),
        "hop-by-hop stripped: {text}"
    );
    engine.handle(
        t,
        Input::Received {
            conn: up,
            data: Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"),
        },
    );
    let out = drain(&mut engine);
    // The whole response leaves in one write, then the client connection closes gracefully.
    let down_outputs: Vec<_> = out
        .iter()
        .filter(|o| matches!(o, Output::Send { conn, .. } | Output::Close { conn, .. } if *conn == down))
        .collect();
    assert_eq!(down_outputs.len(), 2, "{out:?}");
    match (down_outputs[0], down_outputs[1]) {
        (Output::Send { data, .. }, Output::Close { graceful: true, .. }) => {
            let text = std::str::from_utf8(data).unwrap();
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
            assert!(text.ends_with("\r\n\r\nhi"), "{text}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let logs = engine.drain_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].status, 200);
    assert_eq!(logs[0].attempts, 1);
    assert_eq!(logs[0].cluster.as_deref(), Some("c"));
    assert_eq!(
        logs[0].upstream_host,
        Some("10.0.0.1:80".parse().unwrap()),
        "the access log names the host that answered"
    );
    // The upstream connection went back to the pool: nothing else is live.
    assert_eq!(engine.live(), (1, 0));
}

#[test]
fn a_failed_connect_is_logged_with_the_host_it_tried() {
    let mut engine = Engine::try_new(Arc::new(config()), 1).unwrap();
    let down = accept(&mut engine);
    let t = Instant::from_millis(1);
    let data = Bytes::from_static(b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n");
    engine.handle(t, Input::Received { conn: down, data });
    let out = drain(&mut engine);
    let [Output::Connect { conn: up, .. }] = out.as_slice() else {
        panic!("expected one connect, got {out:?}");
    };
    engine.handle(t, Input::ConnectFailed { conn: *up });
    let logs = engine.drain_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].status, 503);
    assert_eq!(logs[0].flags, [ResponseFlag::UpstreamConnectionFailure]);
    assert_eq!(logs[0].upstream_host, Some("10.0.0.1:80".parse().unwrap()));
}

#[test]
fn cluster_index_names_the_same_state_as_the_name() {
    let mut two = config();
    let mut other = two.clusters[0].clone();
    other.name = "d".into();
    other.endpoints[0].address = "10.0.0.2:80".parse().unwrap();
    two.clusters.push(other);
    let mut engine = Engine::try_new(Arc::new(two.clone()), 1).unwrap();
    for name in ["c", "d"] {
        let i = engine.inspect().cluster_index(name).unwrap();
        let by_index = engine.inspect().cluster_state_at(i).unwrap();
        let by_name = engine.inspect().cluster_state(name).unwrap();
        assert!(std::ptr::eq(by_index, by_name));
    }
    assert_eq!(engine.inspect().cluster_index("nope"), None);
    assert!(engine.inspect().cluster_state_at(99).is_none());
    // A swap that drops "d" retires its slot: the old index no longer answers, and the
    // counter that tells a driver to look indices up again moved.
    let d = engine.inspect().cluster_index("d").unwrap();
    let applied = engine.stats().config_applied;
    let mut one = two;
    one.clusters.truncate(1);
    one.version = "t2".into();
    engine.apply_config(Instant::ZERO, Arc::new(one)).unwrap();
    assert_ne!(engine.stats().config_applied, applied);
    assert!(engine.inspect().cluster_state_at(d).is_none());
    assert!(engine.inspect().cluster_state("d").is_none());
    let c = engine.inspect().cluster_index("c").unwrap();
    assert!(std::ptr::eq(
        engine.inspect().cluster_state_at(c).unwrap(),
        engine.inspect().cluster_state("c").unwrap()
    ));
}

#[test]
fn ejected_host_count_follows_ejections() {
    let mut cfg = config();
    cfg.clusters[0].endpoints.push(Endpoint {
        sidecar: false,
        address: "10.0.0.2:80".parse().unwrap(),
        weight: 1,
        labels: Default::default(),
    });
    cfg.clusters[0].outlier = Some(crate::config::OutlierDetection {
        consecutive_5xx: 1,
        max_ejection_percent: 100,
        ..Default::default()
    });
    let mut engine = Engine::try_new(Arc::new(cfg), 1).unwrap();
    assert_eq!(engine.inspect().ejected_host_count(), 0);
    let t = Instant::from_millis(1);
    let down = accept(&mut engine);
    engine.handle(
        t,
        Input::Received {
            conn: down,
            data: Bytes::from_static(b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n"),
        },
    );
    let Some(Output::Connect { conn: up, .. }) = drain(&mut engine).into_iter().next() else {
        panic!("expected a connect");
    };
    engine.handle(t, Input::Connected { conn: up });
    drain(&mut engine);
    engine.handle(
        t,
        Input::Received {
            conn: up,
            data: Bytes::from_static(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            ),
        },
    );
    drain(&mut engine);
    let state = engine.inspect().cluster_state("c").unwrap();
    assert_eq!(state.ejected_count(), 1);
    assert_eq!(engine.inspect().ejected_host_count(), 1);
}

#[test]
fn bad_config_keeps_engine_alive_with_error() {
    let mut bad = config();
    bad.clusters.clear();
    let engine = Engine::new(Arc::new(bad), 1);
    assert!(engine.last_config_error().is_some());
    assert!(engine.config().listeners.is_empty());
}

#[test]
fn a_refused_config_input_is_reported_as_an_event() {
    let mut engine = Engine::try_new(Arc::new(config()), 1).unwrap();
    let mut bad = config();
    bad.version = "v2".into();
    bad.clusters.clear();
    engine.handle(Instant::ZERO, Input::Config(Arc::new(bad)));
    let event = engine.poll_event();
    let Some(Event::ConfigRejected { version, error }) = event else {
        panic!("expected a rejection, got {event:?}");
    };
    assert_eq!(version, "v2");
    assert!(
        matches!(error, ConfigError::MissingCluster { .. }),
        "{error}"
    );
    assert!(engine.poll_event().is_none());
    assert_eq!(
        engine.config().version,
        "t",
        "the last good config keeps serving"
    );
    assert_eq!(engine.stats().config_rejected, 1);
    // Unpolled events are bounded.
    for _ in 0..3 * MAX_EVENTS {
        let mut bad = config();
        bad.clusters.clear();
        engine.handle(Instant::ZERO, Input::Config(Arc::new(bad)));
    }
    assert_eq!(
        std::iter::from_fn(|| engine.poll_event()).count(),
        MAX_EVENTS
    );
}

#[test]
fn timeouts_are_reported_through_poll_timeout() {
    let mut engine = Engine::try_new(Arc::new(config()), 1).unwrap();
    let _down = accept(&mut engine);
    // The idle timer of the new connection.
    let idle = engine.config().http.idle_timeout;
    assert_eq!(engine.poll_timeout(), Some(Instant::ZERO + idle));
}

/// Finished requests must not leave their timer entries behind: the heap stays proportional to
/// what is alive, however many requests passed (each arms a 5-minute stream idle deadline).
#[test]
fn timer_heap_stays_bounded_under_many_requests() {
    let mut engine = Engine::try_new(Arc::new(config()), 1).unwrap();
    let down = accept(&mut engine);
    let now = Instant::from_millis(1);
    let mut up = None;
    for _ in 0..20_000 {
        engine.handle(
            now,
            Input::Received {
                conn: down,
                data: Bytes::from_static(b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n"),
            },
        );
        for o in drain(&mut engine) {
            match o {
                Output::Connect { conn, .. } => {
                    up = Some(conn);
                    engine.handle(now, Input::Connected { conn });
                }
                Output::Send { conn, .. } => engine.handle(now, Input::WriteDrained { conn }),
                _ => {}
            }
        }
        drain(&mut engine);
        let up = up.expect("upstream");
        engine.handle(
            now,
            Input::Received {
                conn: up,
                data: Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
            },
        );
        // The client takes its answer (else, past the connection buffer, the engine would
        // rightly stop reading its next request).
        for o in drain(&mut engine) {
            if let Output::Send { conn, .. } = o {
                engine.handle(now, Input::WriteDrained { conn });
            }
        }
    }
    assert_eq!(engine.drain_logs().len(), 20_000);
    assert!(
        engine.timers.len() <= 2048,
        "{} timer entries for 2 live connections",
        engine.timers.len()
    );
}

/// Ten thousand pipelined requests that the mesh answers itself (404 NR), in one read, on a
/// small stack: answering one request and reading the next goes through the engine's work
/// queue, not through a recursion per request. Answers the client has not taken bound how
/// far the engine reads ahead: they go out in rounds of at most the connection buffer, each
/// released by the client draining the last (`WriteDrained`).
#[test]
fn pipelined_local_answers_keep_the_stack_flat() {
    const REQUESTS: usize = 10_000;
    const BUFFER: usize = 512 * 1024;
    let run = || {
        let mut config = config();
        config.http.connection_buffer_bytes = BUFFER;
        let mut engine = Engine::try_new(Arc::new(config), 1).unwrap();
        let down = accept(&mut engine);
        let mut wire = Vec::new();
        for i in 0..REQUESTS {
            wire.extend_from_slice(
                format!("GET /{i} HTTP/1.1\r\nhost: nowhere\r\n\r\n").as_bytes(),
            );
        }
        let now = Instant::from_millis(1);
        let data = Bytes::from(wire);
        engine.handle(now, Input::Received { conn: down, data });
        let (mut answered, mut rounds) = (0, 0);
        loop {
            let out = drain(&mut engine);
            assert!(
                !out.iter().any(|o| matches!(o, Output::Close { .. })),
                "{:?}",
                out.last()
            );
            let sent = sent_to(&out, down);
            if sent.is_empty() {
                break;
            }
            // One answer may cross the bound: the one that reached it.
            assert!(
                sent.len() < BUFFER + 512,
                "{} bytes in one round",
                sent.len()
            );
            answered += String::from_utf8(sent)
                .unwrap()
                .matches("HTTP/1.1 404 ")
                .count();
            rounds += 1;
            engine.handle(now, Input::WriteDrained { conn: down });
        }
        assert_eq!(answered, REQUESTS);
        assert!(rounds > 1, "the answers were paced by the client");
        let logs = engine.drain_logs();
        assert_eq!(logs.len(), REQUESTS);
        assert!(logs.iter().all(|l| l.flags == [ResponseFlag::NoRouteFound]));
        assert_eq!(logs.last().map(|l| l.path.as_str()), Some("/9999"));
        assert_eq!(engine.live(), (1, 0));
    };
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(run)
        .unwrap()
        .join()
        .expect("10,000 pipelined local answers fit a 256 KiB stack");
}

/// Inbound capture: a connection redirected to the inbound listener (original destination
/// pod-ip:8080) reaches the workload at 127.0.0.1:8080; without `local_forward`, passthrough
/// goes to the original destination itself.
#[test]
fn inbound_capture_forwards_to_the_workload_at_the_original_port() {
    for (local_forward, expected) in [
        (Some("127.0.0.1".parse().unwrap()), "127.0.0.1:8080"),
        (None, "10.1.2.3:8080"),
    ] {
        let mut cfg = config();
        cfg.listeners = vec![Listener {
            authentication: None,
            edge: None,
            tls: None,
            mtls: Default::default(),
            name: "virtualInbound".into(),
            address: "0.0.0.0:15006".parse().unwrap(),
            route_table: "inbound".into(),
            direction: Direction::Inbound,
            passthrough: true,
            authorization: None,
            local_forward,
            inbound_protocols: None,
            outbound_capture: None,
        }];
        cfg.route_tables.push(RouteTable {
            name: "inbound".into(),
            validate_clusters: true,
            virtual_hosts: vec![],
        });
        let mut engine = Engine::try_new(Arc::new(cfg), 1).unwrap();
        let mut accepted = Accepted::new(
            "10.9.9.9:40000".parse().unwrap(),
            "10.1.2.3:15006".parse().unwrap(),
        );
        accepted.original_dst = Some("10.1.2.3:8080".parse().unwrap());
        let down = engine.accept(Instant::ZERO, accepted);
        engine.handle(
            Instant::from_millis(1),
            Input::Received {
                conn: down,
                data: Bytes::from_static(b"GET / HTTP/1.1\r\nhost: reviews:9080\r\n\r\n"),
            },
        );
        let out = drain(&mut engine);
        let [Output::Connect { addr, .. }] = out.as_slice() else {
            panic!("expected one connect, got {out:?}");
        };
        assert_eq!(addr.to_string(), expected);
    }
}

/// A body framed by neither length nor chunks ends where its connection does, but only at the
/// server's FIN (`ReadClosed`): a connection that is gone (`Closed`: a reset or an error) cut
/// it, and the client must not get a clean end for a body that may be short (RFC 9112 §8,
/// "MUST record the message as incomplete"; Envoy's HTTP/1 client ends it on any remote
/// close, as its connection event does not tell a reset from a FIN).
#[test]
fn a_close_delimited_body_ends_at_the_fin_and_is_cut_by_a_reset() {
    for (end, finished) in [(0, true), (1, false)] {
        let mut engine = Engine::try_new(Arc::new(config()), 1).unwrap();
        let down = accept(&mut engine);
        let t = Instant::from_millis(1);
        let request = Bytes::from_static(b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
        engine.handle(
            t,
            Input::Received {
                conn: down,
                data: request,
            },
        );
        let (up, _) = one_connect(&drain(&mut engine));
        engine.handle(t, Input::Connected { conn: up });
        drain(&mut engine);
        let head = Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\nhello");
        engine.handle(
            t,
            Input::Received {
                conn: up,
                data: head,
            },
        );
        let gone = if end == 0 {
            Input::ReadClosed { conn: up }
        } else {
            Input::Closed { conn: up }
        };
        let mut out = drain(&mut engine);
        engine.handle(t, gone);
        out.extend(drain(&mut engine));
        let text = String::from_utf8(sent_to(&out, down)).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("transfer-encoding: chunked"), "{text}");
        assert!(text.contains("5\r\nhello\r\n"), "{text}");
        assert_eq!(text.ends_with("0\r\n\r\n"), finished, "{text}");
        let closes: Vec<bool> = (out.iter())
            .filter_map(|o| match o {
                Output::Close { conn, graceful } if *conn == down => Some(*graceful),
                _ => None,
            })
            .collect();
        let logs = engine.drain_logs();
        assert_eq!(logs.len(), 1);
        let cut = logs[0]
            .flags
            .contains(&ResponseFlag::UpstreamConnectionTermination);
        if finished {
            assert!(
                closes.is_empty(),
                "the client's connection stays open: {out:?}"
            );
            assert!(!cut, "{:?}", logs[0].flags);
        } else {
            assert_eq!(closes, [false], "the client's connection is reset: {out:?}");
            assert!(cut, "{:?}", logs[0].flags);
        }
    }
}
