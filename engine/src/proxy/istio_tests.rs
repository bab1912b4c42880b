//! Istio's (and Envoy's) answer on what a matched route does to the request and the response,
//! checked on the bytes the engine sends. Each test cites where the answer comes from.

use std::sync::Arc;

use bytes::Bytes;

use super::tests::{accept, config, drain, sent_to};
use super::*;
use crate::config::{HeaderOps, Rewrite, RouteAction, WeightedCluster};

/// Sends `request` on a new downstream connection, lets the upstream connect, and returns
/// what reached the upstream (empty if nothing was forwarded) and what went back downstream.
fn exchange(config: crate::config::Config, request: &'static [u8]) -> (String, String) {
    let mut engine = Engine::try_new(Arc::new(config), 1).unwrap();
    let down = accept(&mut engine);
    let t = Instant::from_millis(1);
    engine.handle(
        t,
        Input::Received {
            conn: down,
            data: Bytes::from_static(request),
        },
    );
    let mut out = drain(&mut engine);
    let up = out.iter().find_map(|o| match o {
        Output::Connect { conn, .. } => Some(*conn),
        _ => None,
    });
    if let Some(up) = up {
        engine.handle(t, Input::Connected { conn: up });
        out.extend(drain(&mut engine));
    }
    let upstream = up.map(|u| sent_to(&out, u)).unwrap_or_default();
    (
        String::from_utf8_lossy(&upstream).into_owned(),
        String::from_utf8_lossy(&sent_to(&out, down)).into_owned(),
    )
}

/// Istio: with several destinations, a destination's `host` header is that cluster's own
/// `host_rewrite_literal` (processWeightedDestination in
/// pilot/pkg/networking/core/route/route.go), and Envoy applies the chosen cluster's rewrite
/// after the route's, so it wins.
#[test]
fn a_destination_authority_wins_over_the_route_rewrite() {
    let mut c = config();
    let route = &mut c.route_tables[0].virtual_hosts[0].routes[0];
    route.rewrite = Some(Rewrite {
        authority: Some("from-route".into()),
        ..Rewrite::default()
    });
    route.action = RouteAction::Forward(vec![WeightedCluster {
        cluster: "c".into(),
        weight: 100,
        authority: Some("from-dest".into()),
        ..WeightedCluster::default()
    }]);
    let (up, _) = exchange(c.clone(), b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    assert!(up.contains("host: from-dest\r\n"), "{up}");
    if let RouteAction::Forward(d) = &mut c.route_tables[0].virtual_hosts[0].routes[0].action {
        d[0].authority = None;
    }
    let (up, _) = exchange(c, b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    assert!(up.contains("host: from-route\r\n"), "{up}");
}

/// Istio puts a rule's `headers.response` on its Envoy route whatever the action
/// (TranslateRoute in pilot/pkg/networking/core/route/route.go), and Envoy's router applies
/// them to a direct response (Filter::decodeHeaders in envoy source/common/router/router.cc:
/// `direct_response->finalizeResponseHeaders(...)` inside the `sendLocalReply` callback).
#[test]
fn direct_responses_carry_the_rule_response_header_edits() {
    let mut c = config();
    let route = &mut c.route_tables[0].virtual_hosts[0].routes[0];
    route.action = RouteAction::DirectResponse {
        status: 418,
        body: Some("tea".into()),
    };
    route.response_headers = HeaderOps {
        set: vec![("x-set".into(), "1".into())],
        add: vec![("x-add".into(), "2".into())],
        remove: vec![],
    };
    let (up, down) = exchange(c, b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    assert!(up.is_empty(), "{up}");
    assert!(down.starts_with("HTTP/1.1 418"), "{down}");
    assert!(
        down.contains("x-set: 1\r\n") && down.contains("x-add: 2\r\n"),
        "{down}"
    );
}

/// Istio: `fault.abort.grpcStatus` becomes the fault filter's `grpc_status` (translateFault in
/// pilot/pkg/networking/core/route/route.go, the name mapped by SupportedGRPCStatus in
/// pkg/util/grpc/codes.go). Envoy then answers HTTP 200 (FaultFilter::abortStatus), and
/// sendLocalReply makes that a trailers-only gRPC answer for a gRPC request (`content-type:
/// application/grpc`, `grpc-status`, `grpc-message` from the body text), a plain 200 with the
/// body otherwise (Utility::sendLocalReply, source/common/http/utility.cc).
#[test]
fn grpc_aborts_answer_trailers_only_to_grpc_requests() {
    let mut c = config();
    c.route_tables[0].virtual_hosts[0].routes[0].fault = Some(crate::config::FaultPolicy {
        delay: None,
        abort: Some(crate::config::FaultAbort {
            status: 200,
            percent: 100.0,
            grpc_status: Some(14),
        }),
    });
    let (up, down) = exchange(
        c.clone(),
        b"POST /pkg.Svc/Call HTTP/1.1\r\nhost: svc\r\ncontent-type: application/grpc+proto\r\ncontent-length: 0\r\n\r\n",
    );
    assert!(up.is_empty(), "{up}");
    assert!(down.starts_with("HTTP/1.1 200"), "{down}");
    for field in [
        "content-type: application/grpc\r\n",
        "grpc-status: 14\r\n",
        "grpc-message: fault filter abort\r\n",
        "content-length: 0\r\n",
    ] {
        assert!(down.contains(field), "{field} in {down}");
    }
    let (_, down) = exchange(c, b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    assert!(down.starts_with("HTTP/1.1 200"), "{down}");
    assert!(!down.contains("grpc-status"), "{down}");
    assert!(down.ends_with("fault filter abort"), "{down}");
}

/// Istio: `redirect.prefixRewrite` swaps the matched prefix and `derivePort:
/// FROM_REQUEST_PORT` uses the port the request came on (ApplyRedirect in
/// pilot/pkg/networking/core/route/route.go), on the bytes the client gets.
#[test]
fn redirects_rewrite_the_matched_prefix_and_derive_the_request_port() {
    let mut c = config();
    let route = &mut c.route_tables[0].virtual_hosts[0].routes[0];
    route.matches = vec![crate::config::RouteMatch {
        uri: Some(crate::config::StringMatch::Prefix("/old".into())),
        ..Default::default()
    }];
    route.action = RouteAction::Redirect(crate::config::Redirect {
        prefix_rewrite: Some("/new".into()),
        port_from_request: true,
        status: 302,
        ..Default::default()
    });
    let (up, down) = exchange(c, b"GET /old/page?a=1 HTTP/1.1\r\nhost: svc\r\n\r\n");
    assert!(up.is_empty(), "{up}");
    assert!(down.starts_with("HTTP/1.1 302"), "{down}");
    assert!(
        down.contains("location: http://svc:15001/new/page?a=1\r\n"),
        "{down}"
    );
}

/// Istio: a destination whose cluster does not exist (a subset no DestinationRule defines)
/// is still routed to (GetDestinationCluster in pilot/pkg/networking/core/route/route.go,
/// tables with `ValidateClusters: false`), and Envoy's router answers 503 with an empty body
/// and the flag NC (Filter::decodeHeaders in source/common/router/router.cc:
/// `NoClusterFound`, `clusterNotFoundResponseCode()`). The router runs after the fault
/// filter, so an abort answers first.
#[test]
fn a_destination_without_a_cluster_is_answered_503_nc_after_the_fault_filter() {
    let mut c = config();
    c.route_tables[0].validate_clusters = false;
    let route = &mut c.route_tables[0].virtual_hosts[0].routes[0];
    route.action = RouteAction::Forward(vec![WeightedCluster {
        cluster: "outbound|80|v9|svc".into(),
        weight: 100,
        ..WeightedCluster::default()
    }]);
    let (up, down) = exchange(c.clone(), b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    assert!(up.is_empty(), "{up}");
    assert!(down.starts_with("HTTP/1.1 503"), "{down}");
    assert!(down.contains("x-trellis-response-flags: NC\r\n"), "{down}");
    assert!(down.contains("content-length: 0\r\n"), "{down}");
    c.route_tables[0].virtual_hosts[0].routes[0].fault = abort_always(418);
    let (_, down) = exchange(c.clone(), b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    assert!(down.starts_with("HTTP/1.1 418"), "{down}");
    assert!(down.contains("x-trellis-response-flags: FI\r\n"), "{down}");
    // A table that validates its clusters (Envoy's default for its own config) refuses it.
    c.route_tables[0].validate_clusters = true;
    assert!(matches!(
        Engine::try_new(Arc::new(c), 1),
        Err(ConfigError::MissingCluster { .. })
    ));
}

/// A fault that aborts every request with `status`.
fn abort_always(status: u16) -> Option<crate::config::FaultPolicy> {
    Some(crate::config::FaultPolicy {
        delay: None,
        abort: Some(crate::config::FaultAbort {
            status,
            percent: 100.0,
            grpc_status: None,
        }),
    })
}

/// Istio: several destinations keep their own header operations on the cluster weight
/// (processWeightedDestination in pilot/pkg/networking/core/route/route.go), and Envoy's
/// WeightedClusterEntry evaluates them before the route's (`finalizeRequestHeaders`,
/// `finalizeResponseHeaders` in source/common/router/config_impl.h), so the rule's `set` and
/// `remove` of a name win over its destination's.
#[test]
fn a_rule_s_header_edits_apply_after_its_destination_s() {
    let mut c = config();
    let route = &mut c.route_tables[0].virtual_hosts[0].routes[0];
    route.request_headers = HeaderOps {
        set: vec![("x-a".into(), "rule".into())],
        add: vec![],
        remove: vec!["x-b".into()],
    };
    let dest_ops = HeaderOps {
        set: vec![("x-a".into(), "dest".into()), ("x-b".into(), "dest".into())],
        add: vec![("x-c".into(), "dest".into())],
        remove: vec![],
    };
    route.action = RouteAction::Forward(vec![WeightedCluster {
        cluster: "c".into(),
        weight: 100,
        request_headers: dest_ops,
        ..WeightedCluster::default()
    }]);
    let (up, _) = exchange(c, b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    assert!(up.contains("x-a: rule\r\n"), "{up}");
    assert!(!up.contains("x-a: dest"), "{up}");
    assert!(!up.contains("x-b:"), "{up}");
    assert!(up.contains("x-c: dest\r\n"), "{up}");
}

/// Envoy: every local reply sent once a route with a route entry (one that forwards) was
/// chosen carries that entry's response header edits, the chosen cluster's then the route's:
/// the filter manager's local-reply path calls `routeEntry()->finalizeResponseHeaders`
/// (`DownstreamFilterManager::sendLocalReplyViaFilterChain`,
/// source/common/http/filter_manager.cc). So a fault's abort and the router's own 503 carry a
/// VirtualService rule's `headers.response`; a request no route took (404 NR) carries none.
#[test]
fn local_replies_after_a_forwarding_route_carry_its_response_header_edits() {
    let mut c = config();
    c.route_tables[0].validate_clusters = false;
    let route = &mut c.route_tables[0].virtual_hosts[0].routes[0];
    route.response_headers = HeaderOps {
        set: vec![
            ("x-rule".into(), "r".into()),
            ("x-both".into(), "rule".into()),
        ],
        add: vec![],
        remove: vec![],
    };
    route.action = RouteAction::Forward(vec![WeightedCluster {
        cluster: "outbound|80|gone|svc".into(),
        weight: 100,
        response_headers: HeaderOps {
            set: vec![
                ("x-both".into(), "dest".into()),
                ("x-dest".into(), "d".into()),
            ],
            add: vec![],
            remove: vec![],
        },
        ..WeightedCluster::default()
    }]);
    // The router's own answer: no such cluster, 503 NC.
    let (_, down) = exchange(c.clone(), b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    assert!(down.starts_with("HTTP/1.1 503"), "{down}");
    for field in ["x-rule: r\r\n", "x-both: rule\r\n", "x-dest: d\r\n"] {
        assert!(down.contains(field), "{field} in {down}");
    }
    // The fault filter's abort.
    c.route_tables[0].virtual_hosts[0].routes[0].fault = abort_always(418);
    let (_, down) = exchange(c.clone(), b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    assert!(down.starts_with("HTTP/1.1 418"), "{down}");
    assert!(down.contains("x-rule: r\r\n"), "{down}");
    // No route: nothing to edit with.
    let (_, down) = exchange(c, b"GET /x HTTP/1.1\r\nhost: elsewhere\r\n\r\n");
    assert!(down.starts_with("HTTP/1.1 404"), "{down}");
    assert!(!down.contains("x-rule"), "{down}");
}
