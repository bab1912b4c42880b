//! Istio's answer, area by area, where the translation once departed from pilot or where the
//! answer is easy to get wrong. Each test names the file and function of istio/istio (or
//! envoyproxy/envoy) that gives the answer; RESEARCH.md ("Istio semantics: departures found
//! and fixed") has the table.

use trellis_engine::config::{Redirect, RouteAction};

use super::tests::{forward, run, table, vhost};

/// A VirtualService document called `name` in `default` with this `spec` body.
fn vs(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    )
}

const HOST_EDITS: &str = r#"
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /rule}}]
    headers:
      request:
        set: {host: from-set, x-a: "1"}
        add: {":authority": from-add}
        remove: [host, x-b]
    route:
    - destination: {host: ratings}
  - match: [{uri: {prefix: /dest}}]
    route:
    - destination: {host: ratings}
      headers:
        request: {set: {Host: one-dest}}
  - match: [{uri: {prefix: /both}}]
    rewrite: {authority: from-rewrite}
    headers:
      request: {set: {host: from-header}}
    route:
    - destination: {host: ratings}
      headers:
        request: {set: {host: ignored}}
  - route:
    - destination: {host: ratings}
      weight: 50
      headers:
        request: {add: {host: split-a}}
    - destination: {host: reviews}
      weight: 50
"#;

/// Istio: setting (or adding) `host`/`:authority` in a rule's request headers is an authority
/// rewrite, `set` winning over `add`, and `rewrite.authority` over both; those headers are
/// never edited as headers (TranslateHeadersOperations, translateAppendHeaders, dropInternal
/// and applyHTTPRouteDestination in pilot/pkg/networking/core/route/route.go). A destination's
/// `host` applies when the rule sets none (processDestination), and with several destinations
/// it is that cluster's own rewrite (processWeightedDestination). Before: the engine refused
/// the `host` edit and the rule was left out.
#[test]
fn host_header_edits_are_authority_rewrites() {
    let t = run(&vs("ratings", HOST_EDITS));
    let v = vhost(&t, "ratings.default");
    assert_eq!(v.routes.len(), 4, "{:#?}", t.diagnostics);
    let authority = |i: usize| {
        v.routes[i]
            .rewrite
            .as_ref()
            .and_then(|r| r.authority.clone())
    };
    assert_eq!(authority(0).as_deref(), Some("from-set"));
    let r0 = &v.routes[0].request_headers;
    assert_eq!(r0.set, vec![("x-a".to_string(), "1".to_string())]);
    assert!(r0.add.is_empty());
    assert_eq!(r0.remove, vec!["x-b".to_string()]);
    assert_eq!(authority(1).as_deref(), Some("one-dest"));
    let RouteAction::Forward(one) = &v.routes[1].action else {
        panic!("not a forward")
    };
    assert_eq!(one[0].authority, None);
    assert!(one[0].request_headers.is_empty());
    assert_eq!(authority(2).as_deref(), Some("from-rewrite"));
    assert_eq!(authority(3), None);
    let RouteAction::Forward(split) = &v.routes[3].action else {
        panic!("not a forward")
    };
    assert_eq!(split[0].authority.as_deref(), Some("split-a"));
    assert_eq!(split[1].authority, None);
}

/// Istio: a redirect to port 80 over http (or 443 over https) carries no port, the scheme
/// being `redirect.scheme` or `http` on a sidecar (ApplyRedirect in
/// pilot/pkg/networking/core/route/route.go: "Do not put explicit :80 or :443 when its
/// http/https"); Envoy then keeps the request's host as sent (Utility::newUri and
/// processRequestHost in envoy source/common/http/utility.cc). Before: `:80` was written.
#[test]
fn redirects_omit_the_default_port_of_their_scheme() {
    let spec = r#"
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /a}}]
    redirect: {authority: x, port: 80}
  - match: [{uri: {prefix: /b}}]
    redirect: {scheme: https, port: 443}
  - match: [{uri: {prefix: /c}}]
    redirect: {scheme: https, port: 80}
  - match: [{uri: {prefix: /d}}]
    redirect: {port: 8080}
"#;
    let t = run(&vs("ratings", spec));
    let v = vhost(&t, "ratings.default");
    let port = |i: usize| match &v.routes[i].action {
        RouteAction::Redirect(Redirect { port, .. }) => *port,
        other => panic!("not a redirect: {other:?}"),
    };
    assert_eq!(
        (port(0), port(1), port(2), port(3)),
        (None, None, Some(80), Some(8080))
    );
}

/// Istio: a destination without a port on a service with several goes to the port the request
/// came on (GetDestinationCluster in pilot/pkg/networking/core/route/route.go: `port :=
/// listenerPort` unless the destination names one or the service has only one). Before: the
/// first port, whatever the request's.
#[test]
fn multi_port_destination_follows_the_request_port() {
    let spec = r#"
  hosts: [multi]
  http:
  - match: [{headers: {x: {exact: "1"}}}, {port: 8080, uri: {prefix: /p}}]
    route:
    - destination: {host: multi}
  - route:
    - destination: {host: multi}
"#;
    let t = run(&vs("multi", spec));
    let v = vhost(&t, "multi.default");
    let summary: Vec<(Vec<Option<u16>>, String)> = v
        .routes
        .iter()
        .map(|r| {
            (
                r.matches.iter().map(|m| m.port).collect(),
                forward(r)[0].0.clone(),
            )
        })
        .collect();
    let c = |p: u16| format!("outbound|{p}||multi.default.svc.cluster.local");
    assert_eq!(
        summary,
        vec![
            (vec![Some(80)], c(80)),
            (vec![Some(8080), Some(8080)], c(8080)),
            (vec![None, Some(8080)], c(80)),
            (vec![Some(80)], c(80)),
            (vec![Some(8080)], c(8080)),
            (vec![], c(80)),
        ]
    );
    assert_eq!(
        t.virtual_hosts["multi.default"].rule_indices,
        [0, 0, 0, 1, 1, 1]
    );
}

/// Istio: when two VirtualServices claim a host, a sidecar gets the routes of the oldest one
/// (configCompareByCreationTime in pilot/pkg/model/config.go, via
/// sortMergedVirtualServicesByCreationTime in pilot/pkg/model/virtualservice_controller.go:
/// creation time, then name, then namespace), the later one's domains being dropped
/// (dedupeDomains in pilot/pkg/networking/core/httproute.go). Before: file order.
#[test]
fn the_oldest_virtual_service_wins_a_shared_host() {
    let doc = |name: &str, created: &str, subset: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}{created}}}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: reviews, subset: {subset}}}\n"
        )
    };
    let winner = |docs: [String; 2]| {
        let t = run(&format!(
            "{}\n---\n{}\n---\n{}",
            super::tests::DR,
            docs[0],
            docs[1]
        ));
        let owner = table(&t)
            .virtual_hosts
            .iter()
            .find(|v| v.domains.iter().any(|d| d == "reviews"))
            .map(|v| v.name.clone());
        owner.unwrap_or_default()
    };
    let newer = doc(
        "a-newer",
        ", creationTimestamp: \"2024-05-02T00:00:00Z\"",
        "v1",
    );
    let older = doc(
        "z-older",
        ", creationTimestamp: \"2024-05-01T00:00:00Z\"",
        "v2",
    );
    assert_eq!(winner([newer.clone(), older.clone()]), "z-older.default");
    assert_eq!(winner([older, newer]), "z-older.default");
    // Same (or no) creation time: by name.
    assert_eq!(
        winner([doc("b", "", "v1"), doc("a", "", "v2")]),
        "a.default"
    );
}

/// Istio: a route without `retries`, and `retries` without `retryOn`, retry twice on
/// `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes` with no
/// status code, so a 503 is not retried (`defaultRetryOn`, DefaultPolicy and ConvertPolicy in
/// pilot/pkg/networking/core/route/retry/retry.go). Before: 503 was retried, as in Istio 1.23
/// and older.
#[test]
fn default_retry_on_does_not_retry_503() {
    let spec = r#"
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /a}}]
    retries: {attempts: 5}
    route:
    - destination: {host: ratings}
  - route:
    - destination: {host: ratings}
"#;
    let t = run(&vs("ratings", spec));
    let v = vhost(&t, "ratings.default");
    for r in &v.routes {
        let on = &r.retries.retry_on;
        assert!(on.connect_failure && on.refused_stream, "{on:?}");
        assert!(on.retriable_status_codes.is_empty(), "{on:?}");
        assert!(!on.server_error && !on.gateway_error && !on.reset, "{on:?}");
    }
    assert_eq!(
        (v.routes[0].retries.attempts, v.routes[1].retries.attempts),
        (5, 2)
    );
    let default = vhost(&t, "reviews.default.svc.cluster.local");
    assert!(default.routes[0]
        .retries
        .retry_on
        .retriable_status_codes
        .is_empty());
}

/// Istio: when `port` or `sourceLabels` filters leave a client with no rule of a
/// VirtualService, its host falls back to the service's default route (TranslateRoute,
/// BuildHTTPRoutesForVirtualService and buildSidecarVirtualHostsForVirtualService in
/// pilot/pkg/networking/core/route/route.go); a gateway-only rule is never there for a
/// sidecar (sourceMatchHTTP). `sourceLabels` are decided for the sidecar's own workload when
/// its config is generated. Before: 404 NR.
#[test]
fn a_host_left_without_rules_falls_back_to_the_default_route() {
    let spec = r#"
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {app: web}}, {gateways: [edge]}]
    route:
    - destination: {host: reviews, subset: v2}
"#;
    let yaml = format!("{}\n---\n{}", super::tests::DR, vs("reviews", spec));
    let set = crate::istio::parse_str(&yaml, "test.yaml").expect("parses");
    let cluster = |labels: &[(&str, &str)]| {
        let workload = super::Workload::new("default", labels);
        let t = super::translate_for(&set, &super::tests::registry(), &workload);
        super::client_tests::cluster_for(&t, "reviews:9080", 9080)
    };
    let c = |subset: &str| format!("outbound|9080|{subset}|reviews.default.svc.cluster.local");
    assert_eq!(cluster(&[("app", "web")]), c("v2"));
    assert_eq!(cluster(&[("app", "cli")]), c(""));
    let t = run(&yaml);
    assert!(t.virtual_hosts["reviews.default.svc.cluster.local"]
        .virtual_service
        .is_none());
}

/// Istio: `redirect.prefixRewrite` becomes Envoy's `prefix_rewrite` and wins over `uri`;
/// `derivePort: FROM_REQUEST_PORT` is the port the request came on, `FROM_PROTOCOL_DEFAULT` no
/// port (ApplyRedirect in pilot/pkg/networking/core/route/route.go); `port` and `derivePort`
/// are a `oneOf` (HTTPRedirect in the CRD schema). Before: both ignored with a warning.
#[test]
fn redirect_prefix_rewrite_and_derive_port_are_translated() {
    let spec = r#"
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /a}}]
    redirect: {uri: /ignored, prefixRewrite: /b, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {prefix: /c}}]
    redirect: {derivePort: FROM_PROTOCOL_DEFAULT}
  - match: [{uri: {prefix: /d}}]
    redirect: {port: 8080, derivePort: FROM_REQUEST_PORT}
"#;
    let t = run(&vs("ratings", spec));
    let v = vhost(&t, "ratings.default");
    let redirect = |i: usize| match &v.routes[i].action {
        RouteAction::Redirect(r) => r.clone(),
        other => panic!("not a redirect: {other:?}"),
    };
    assert_eq!(v.routes.len(), 2, "{:#?}", t.diagnostics);
    assert_eq!(redirect(0).prefix_rewrite.as_deref(), Some("/b"));
    assert!(redirect(0).port_from_request);
    assert_eq!(redirect(1).port, None);
    assert!(!redirect(1).port_from_request);
    assert!(t
        .diagnostics
        .iter()
        .any(|d| d.field.as_deref() == Some("spec.http[2].redirect")));
    assert!(!t.diagnostics.iter().any(|d| d.message.contains("ignored")));
}

/// Istio: `directResponse.body.bytes` is base64 (protobuf JSON `bytes`) and becomes Envoy's
/// `inline_bytes` (ApplyDirectResponse in pilot/pkg/networking/core/route/route.go); `string`
/// and `bytes` are a `oneOf`. Before: bytes ignored with a warning, so the body was empty.
#[test]
fn direct_response_bytes_are_decoded() {
    let spec = r#"
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /a}}]
    directResponse: {status: 503, body: {bytes: "dW5hdmFpbGFibGU="}}
  - match: [{uri: {prefix: /b}}]
    directResponse: {status: 200, body: {bytes: "_-8"}}
  - match: [{uri: {prefix: /c}}]
    directResponse: {status: 200, body: {string: x, bytes: eA==}}
"#;
    let t = run(&vs("ratings", spec));
    let v = vhost(&t, "ratings.default");
    assert_eq!(
        v.routes[0].action,
        RouteAction::DirectResponse {
            status: 503,
            body: Some("unavailable".into())
        }
    );
    // `_-8` is URL-safe base64 for bytes that are not UTF-8: refused, as is the `oneOf`.
    assert_eq!(v.routes.len(), 1, "{:#?}", t.diagnostics);
    let fields: Vec<_> = t
        .diagnostics
        .iter()
        .filter_map(|d| d.field.clone())
        .collect();
    assert!(fields.contains(&"spec.http[1].directResponse.body.bytes".to_string()));
    assert!(fields.contains(&"spec.http[2].directResponse.body".to_string()));
}

/// Istio: `fault.abort.grpcStatus` names a gRPC status (SupportedGRPCStatus in
/// pkg/util/grpc/codes.go) that becomes the fault filter's numeric `grpc_status`
/// (translateFault in pilot/pkg/networking/core/route/route.go), answered with HTTP 200
/// (Envoy's FaultFilter::abortStatus); `http2Error` gives no abort at all. Before: ignored.
#[test]
fn grpc_status_aborts_are_translated() {
    let spec = r#"
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /a}}]
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 50}}}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /b}}]
    fault: {abort: {grpcStatus: NOPE, percentage: {value: 50}}}
    route: [{destination: {host: ratings}}]
"#;
    let t = run(&vs("ratings", spec));
    let v = vhost(&t, "ratings.default");
    let abort = v.routes[0].fault.as_ref().and_then(|f| f.abort.clone());
    assert_eq!(
        abort,
        Some(trellis_engine::config::FaultAbort {
            status: 200,
            percent: 50.0,
            grpc_status: Some(14),
        })
    );
    assert!(v.routes[1].fault.is_none());
    assert!(t
        .diagnostics
        .iter()
        .any(|d| d.field.as_deref() == Some("spec.http[1].fault.abort.grpcStatus")));
}
