//! Path normalization at the engine's edge (`crate::path`): the path is normalized once when
//! the head is accepted, so routing, the upstream request and the access log see the same
//! path, as Envoy's connection manager normalizes `:path` before routing
//! (`ConnectionManagerUtility::maybeNormalizePath`, set up by Istio's `listener_builder.go`
//! from `meshConfig.pathNormalization`).

use std::sync::Arc;

use bytes::Bytes;

use super::tests::{accept, config, drain, sent_to};
use super::*;
use crate::config::{Config, RouteMatch, StringMatch};
use crate::path::PathNormalization;

/// The test config with its one route only for paths under `/b`.
fn config_with(mode: PathNormalization) -> Config {
    let mut config = config();
    config.route_tables[0].virtual_hosts[0].routes[0].matches = vec![RouteMatch {
        uri: Some(StringMatch::Prefix("/b".into())),
        ..Default::default()
    }];
    config.http.path_normalization = mode;
    config
}

/// Sends `target` and returns what reached the upstream (empty if nothing was forwarded)
/// and what the client got back.
fn exchange(mode: PathNormalization, target: &str) -> (String, String, Engine) {
    let mut engine = Engine::try_new(Arc::new(config_with(mode)), 1).unwrap();
    let down = accept(&mut engine);
    let t = Instant::from_millis(1);
    let request = format!("GET {target} HTTP/1.1\r\nhost: svc\r\n\r\n");
    engine.handle(
        t,
        Input::Received {
            conn: down,
            data: Bytes::from(request),
        },
    );
    let out = drain(&mut engine);
    let mut downstream = String::from_utf8_lossy(&sent_to(&out, down)).into_owned();
    let mut upstream = String::new();
    if let Some(up) = out.iter().find_map(|o| match o {
        Output::Connect { conn, .. } => Some(*conn),
        _ => None,
    }) {
        engine.handle(t, Input::Connected { conn: up });
        let out = drain(&mut engine);
        upstream = String::from_utf8_lossy(&sent_to(&out, up)).into_owned();
        engine.handle(
            t,
            Input::Received {
                conn: up,
                data: Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            },
        );
    }
    let out = drain(&mut engine);
    downstream.push_str(&String::from_utf8_lossy(&sent_to(&out, down)));
    (upstream, downstream, engine)
}

#[test]
fn a_dot_segment_path_takes_the_route_of_its_normal_form_and_is_forwarded_normalized() {
    let (upstream, downstream, mut engine) = exchange(PathNormalization::Base, "/a/../b?x=/../y");
    assert!(
        upstream.starts_with("GET /b?x=/../y HTTP/1.1\r\n"),
        "{upstream}"
    );
    assert!(
        downstream.starts_with("HTTP/1.1 200 OK\r\n"),
        "{downstream}"
    );
    let logs = engine.drain_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(
        logs[0].path, "/b?x=/../y",
        "the log has the normalized path"
    );
}

#[test]
fn escapes_backslashes_and_climbs_above_the_root_are_resolved_not_refused() {
    for (target, forwarded) in [
        ("/%2e%2E/b/%7e", "/b/~"),
        ("/a/..\\b", "/b"),
        ("/../../b/c/..", "/b/"),
    ] {
        let (upstream, _, _) = exchange(PathNormalization::Base, target);
        assert!(
            upstream.starts_with(&format!("GET {forwarded} HTTP/1.1\r\n")),
            "{target}: {upstream}"
        );
    }
}

#[test]
fn merge_slashes_modes_route_and_forward_merged_paths() {
    let (upstream, _, _) = exchange(PathNormalization::MergeSlashes, "//b//c");
    assert!(upstream.starts_with("GET /b/c HTTP/1.1\r\n"), "{upstream}");
    let (upstream, _, _) = exchange(PathNormalization::DecodeAndMergeSlashes, "/a%2F..%2Fb");
    assert!(upstream.starts_with("GET /b HTTP/1.1\r\n"), "{upstream}");
    // BASE keeps escaped slashes: `/a%2F..%2Fb` is one segment under `/a`, no route.
    let (upstream, downstream, _) = exchange(PathNormalization::Base, "/a%2F..%2Fb");
    assert!(upstream.is_empty(), "{upstream}");
    assert!(downstream.starts_with("HTTP/1.1 404 "), "{downstream}");
}

#[test]
fn a_path_that_cannot_be_normalized_is_answered_400_before_routing() {
    let (upstream, downstream, mut engine) = exchange(PathNormalization::Base, "/b/%00");
    assert!(upstream.is_empty(), "{upstream}");
    assert!(downstream.starts_with("HTTP/1.1 400 "), "{downstream}");
    let logs = engine.drain_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].status, 400);
    assert_eq!(logs[0].cluster, None);
}

#[test]
fn none_routes_and_forwards_the_path_as_received() {
    // `/a/../b` is not under `/b` as received: no route.
    let (upstream, downstream, _) = exchange(PathNormalization::None, "/a/../b");
    assert!(upstream.is_empty(), "{upstream}");
    assert!(downstream.starts_with("HTTP/1.1 404 "), "{downstream}");
    let (upstream, _, _) = exchange(PathNormalization::None, "/b/../%00/./x");
    assert!(
        upstream.starts_with("GET /b/../%00/./x HTTP/1.1\r\n"),
        "{upstream}"
    );
}
