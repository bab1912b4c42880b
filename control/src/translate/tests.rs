//! Translation tests on the Config structure itself.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use trellis_engine::config::{
    FaultAbort, FaultDelay, HeaderMatch, LbPolicy, Redirect, RetryPolicy, RouteAction, StringMatch,
};

use super::*;
use crate::diag::{Severity, IST0101};
use crate::istio::parse_str;

pub(super) fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

pub(super) fn registry() -> Registry {
    let reviews = Service::kubernetes("reviews", "default", &[9080])
        .with_endpoint(ServiceEndpoint::new(
            ip(1),
            &[("app", "reviews"), ("version", "v1")],
        ))
        .with_endpoint(ServiceEndpoint::new(
            ip(2),
            &[("app", "reviews"), ("version", "v2")],
        ))
        .with_endpoint(ServiceEndpoint::new(
            ip(3),
            &[("app", "reviews"), ("version", "v3")],
        ));
    let ratings = Service::kubernetes("ratings", "default", &[9080])
        .with_endpoint(ServiceEndpoint::new(ip(4), &[("version", "v1")]));
    let multi = Service::kubernetes("multi", "default", &[80, 8080])
        .with_endpoint(ServiceEndpoint::new(ip(5), &[]));
    Registry {
        services: vec![reviews, ratings, multi],
        ..Default::default()
    }
}

pub(super) const DR: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
"#;

pub(super) fn run(yaml: &str) -> Translation {
    let set = parse_str(yaml, "test.yaml").unwrap();
    translate(&set, &registry())
}

pub(super) fn table(t: &Translation) -> &RouteTable {
    t.config.route_table(OUTBOUND_ROUTE_TABLE).unwrap()
}

pub(super) fn vhost<'a>(t: &'a Translation, name: &str) -> &'a VirtualHost {
    table(t)
        .virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no vhost {name}"))
}

pub(super) fn forward(route: &Route) -> Vec<(String, u32)> {
    match &route.action {
        RouteAction::Forward(w) => w.iter().map(|w| (w.cluster.clone(), w.weight)).collect(),
        other => panic!("not a forward: {other:?}"),
    }
}

#[test]
fn clusters_are_flattened_per_port_and_subset_with_policy() {
    let t = run(DR);
    let names: Vec<&str> = t.config.clusters.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"outbound|9080||reviews.default.svc.cluster.local"));
    assert!(names.contains(&"outbound|9080|v1|reviews.default.svc.cluster.local"));
    assert!(names.contains(&"outbound|9080|v2|reviews.default.svc.cluster.local"));
    assert!(names.contains(&"outbound|80||multi.default.svc.cluster.local"));
    assert!(names.contains(&"outbound|8080||multi.default.svc.cluster.local"));
    let all = t
        .config
        .cluster("outbound|9080||reviews.default.svc.cluster.local")
        .unwrap();
    assert_eq!(all.endpoints.len(), 3);
    assert_eq!(all.lb, LbPolicy::RoundRobin);
    let v1 = t
        .config
        .cluster("outbound|9080|v1|reviews.default.svc.cluster.local")
        .unwrap();
    assert_eq!(v1.endpoints.len(), 1);
    assert_eq!(v1.endpoints[0].address.ip(), ip(1));
    assert_eq!(v1.endpoints[0].address.port(), 9080);
    assert_eq!(v1.subset.as_deref(), Some("v1"));
    assert_eq!(v1.lb, LbPolicy::RoundRobin);
    let v2 = t
        .config
        .cluster("outbound|9080|v2|reviews.default.svc.cluster.local")
        .unwrap();
    assert_eq!(v2.lb, LbPolicy::Random);
    let ratings = t
        .config
        .cluster("outbound|9080||ratings.default.svc.cluster.local")
        .unwrap();
    assert_eq!(ratings.lb, LbPolicy::Default);
    assert_eq!(ratings.outlier, None);
    assert_eq!(ratings.pool.connect_timeout, Duration::from_secs(10));
    let origin = &t.clusters["outbound|9080|v2|reviews.default.svc.cluster.local"];
    assert_eq!(origin.destination_rule.as_ref().unwrap().name, "reviews");
    assert_eq!(
        origin.subset_labels.get("version").map(String::as_str),
        Some("v2")
    );
}

#[test]
fn services_without_virtual_service_get_a_default_host() {
    let t = run(DR);
    let v = vhost(&t, "ratings.default.svc.cluster.local");
    assert!(v.domains.contains(&"ratings".to_string()));
    assert!(v.domains.contains(&"ratings.default:9080".to_string()));
    assert_eq!(v.routes.len(), 1);
    assert_eq!(
        forward(&v.routes[0]),
        vec![(
            "outbound|9080||ratings.default.svc.cluster.local".to_string(),
            100
        )]
    );
    assert_eq!(v.routes[0].retries, RetryPolicy::default());
    // A multi-port service routes by the request's port, falling back to the first port.
    let m = vhost(&t, "multi.default.svc.cluster.local");
    assert_eq!(m.routes.len(), 3);
    assert_eq!(m.routes[1].matches[0].port, Some(8080));
    assert_eq!(
        forward(&m.routes[1])[0].0,
        "outbound|8080||multi.default.svc.cluster.local"
    );
    assert!(m.routes[2].matches.is_empty());
}

const VS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: reviews, subset: v2}
      headers:
        response:
          set: {x-version: v2}
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,gateway-error,connect-failure,reset,retriable-4xx,refused-stream,retriable-status-codes,418"}
    headers:
      request:
        add: {x-user: jason}
        remove: [x-debug]
  - match:
    - uri: {prefix: /old}
    redirect: {uri: /new, redirectCode: 302}
  - match:
    - uri: {exact: /teapot}
    directResponse: {status: 418, body: {string: short and stout}}
  - match:
    - uri: {prefix: /slow}
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 100.0}}
      abort: {httpStatus: 555, percentage: {value: 10}}
    retries: {attempts: 0}
    route:
    - destination: {host: reviews, subset: v1}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v2}
      weight: 20
"#;

#[test]
fn http_rules_are_mapped_faithfully() {
    let t = run(&format!("{DR}\n---\n{VS}"));
    let v = vhost(&t, "reviews.default");
    assert!(v
        .domains
        .contains(&"reviews.default.svc.cluster.local:9080".to_string()));
    assert_eq!(v.routes.len(), 5);
    let r0 = &v.routes[0];
    assert_eq!(r0.name, "reviews.default#jason");
    assert_eq!(
        r0.matches[0].headers,
        vec![HeaderMatch {
            name: "end-user".into(),
            value: Some(StringMatch::Exact("jason".into()))
        }]
    );
    assert_eq!(
        forward(r0),
        vec![(
            "outbound|9080|v2|reviews.default.svc.cluster.local".into(),
            100
        )]
    );
    let RouteAction::Forward(w) = &r0.action else {
        unreachable!()
    };
    // A lone destination's headers join the route's (processDestination).
    assert!(w[0].response_headers.is_empty());
    assert_eq!(
        r0.response_headers.set,
        vec![("x-version".to_string(), "v2".to_string())]
    );
    assert_eq!(
        r0.request_headers.add,
        vec![("x-user".to_string(), "jason".to_string())]
    );
    assert_eq!(r0.request_headers.remove, vec!["x-debug".to_string()]);
    assert_eq!(r0.timeout, Some(Duration::from_secs(2)));
    assert_eq!(r0.retries.attempts, 3);
    assert_eq!(r0.retries.per_try_timeout, Some(Duration::from_millis(500)));
    let on = &r0.retries.retry_on;
    assert!(on.server_error && on.gateway_error && on.connect_failure && on.reset);
    assert!(on.retriable_4xx && on.refused_stream);
    assert_eq!(on.retriable_status_codes, vec![418]);

    assert_eq!(
        v.routes[1].action,
        RouteAction::Redirect(Redirect {
            uri: Some("/new".into()),
            status: 302,
            ..Redirect::default()
        })
    );
    assert_eq!(v.routes[1].name, "reviews.default#1");
    assert_eq!(v.routes[1].retries, RetryPolicy::default());
    assert_eq!(v.routes[1].timeout, None);
    assert_eq!(
        v.routes[2].action,
        RouteAction::DirectResponse {
            status: 418,
            body: Some("short and stout".into())
        }
    );
    let fault = v.routes[3].fault.as_ref().unwrap();
    assert_eq!(
        fault.delay,
        Some(FaultDelay {
            fixed: Duration::from_secs(7),
            percent: 100.0
        })
    );
    assert_eq!(
        fault.abort,
        Some(FaultAbort {
            status: 555,
            percent: 10.0,
            grpc_status: None,
        })
    );
    assert_eq!(v.routes[3].retries, RetryPolicy::none());
    assert_eq!(
        forward(&v.routes[4]),
        vec![
            (
                "outbound|9080|v1|reviews.default.svc.cluster.local".into(),
                80
            ),
            (
                "outbound|9080|v2|reviews.default.svc.cluster.local".into(),
                20
            )
        ]
    );
    // The VirtualService covers reviews: no default vhost for it.
    assert!(!table(&t)
        .virtual_hosts
        .iter()
        .any(|v| v.name == "reviews.default.svc.cluster.local"));
    assert!(
        t.diagnostics.iter().all(|d| d.severity != Severity::Error),
        "{:#?}",
        t.diagnostics
    );
    let origin = &t.virtual_hosts["reviews.default"];
    assert_eq!(origin.rule_indices, vec![0, 1, 2, 3, 4]);
    assert_eq!(origin.rule_names[0].as_deref(), Some("jason"));
}

#[test]
fn missing_subset_and_unknown_host_are_ist0101_and_translation_goes_on() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /a}}]
    route:
    - destination: {host: reviews, subset: v9}
  - match: [{uri: {prefix: /b}}]
    route:
    - destination: {host: nowhere}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 70
    - destination: {host: reviews, subset: v2}
      weight: 20
"#;
    let t = run(&format!("{DR}\n---\n{vs}"));
    let ist: Vec<&Diagnostic> = t
        .diagnostics
        .iter()
        .filter(|d| d.code.as_deref() == Some(IST0101))
        .collect();
    assert_eq!(ist.len(), 2, "{:#?}", t.diagnostics);
    assert_eq!(
        ist[0].field.as_deref(),
        Some("spec.http[0].route[0].destination.subset")
    );
    assert_eq!(
        ist[0].resource.as_deref(),
        Some("VirtualService default/reviews")
    );
    assert_eq!(ist[0].file.as_deref(), Some("test.yaml"));
    assert!(ist[1].message.contains("nowhere.default.svc.cluster.local"));
    assert!(t.diagnostics.iter().any(
        |d| d.message.contains("sum to 90") && d.field.as_deref() == Some("spec.http[2].route")
    ));
    // Pilot routes to the cluster it names whether or not it exists (GetDestinationCluster),
    // and Envoy answers 503 NC for it: the destinations stay, with their weights, in tables
    // that do not validate their clusters (ValidateClusters: false).
    let v = vhost(&t, "reviews.default");
    assert_eq!(v.routes.len(), 3);
    assert_eq!(
        forward(&v.routes[0]),
        vec![(
            "outbound|9080|v9|reviews.default.svc.cluster.local".into(),
            100
        )]
    );
    assert_eq!(
        forward(&v.routes[1]),
        vec![("outbound|0||nowhere.default.svc.cluster.local".into(), 100)]
    );
    assert_eq!(forward(&v.routes[2]).len(), 2);
    assert!(!table(&t).validate_clusters);
    assert!(t.config.cluster(&forward(&v.routes[0])[0].0).is_none());
}

/// A lone destination's header operations are appended to the rule's (pilot's
/// processDestination): one Envoy HeaderParser, every remove first, then the rule's set and
/// add, then the destination's, so the destination's `set` overwrites the rule's `add`.
/// Several destinations keep their own, applied before the rule's (Envoy's
/// WeightedClusterEntry::finalizeRequestHeaders: the cluster weight's parser, then the route's).
#[test]
fn a_lone_destination_s_header_edits_join_the_rule_s_in_envoy_s_order() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /one}}]
    headers:
      request:
        set: {x-a: rule}
        add: {x-b: rule}
        remove: [x-c]
    route:
    - destination: {host: reviews, subset: v1}
      headers:
        request:
          set: {x-b: dest}
          add: {x-a: dest}
          remove: [x-d]
  - headers:
      request: {set: {x-a: rule}}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 50
      headers: {request: {set: {x-a: v1}}}
    - destination: {host: reviews, subset: v2}
      weight: 50
"#;
    let t = run(&format!("{DR}\n---\n{vs}"));
    let v = vhost(&t, "reviews.default");
    let one = &v.routes[0];
    let RouteAction::Forward(w) = &one.action else {
        unreachable!()
    };
    assert!(w[0].request_headers.is_empty());
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    assert_eq!(
        one.request_headers.set,
        vec![pair("x-a", "rule"), pair("x-b", "dest")]
    );
    // The rule's `add: x-b` is overwritten by the destination's later `set: x-b`.
    assert_eq!(one.request_headers.add, vec![pair("x-a", "dest")]);
    assert_eq!(
        one.request_headers.remove,
        vec!["x-c".to_string(), "x-d".to_string()]
    );
    let split = &v.routes[1];
    let RouteAction::Forward(w) = &split.action else {
        unreachable!()
    };
    assert_eq!(w[0].request_headers.set, vec![pair("x-a", "v1")]);
    assert_eq!(split.request_headers.set, vec![pair("x-a", "rule")]);
}

#[test]
fn gateway_bound_virtual_services_are_not_in_the_sidecar_table() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - route:
    - destination: {host: reviews}
"#;
    let t = run(vs);
    assert!(!table(&t)
        .virtual_hosts
        .iter()
        .any(|v| v.name == "bookinfo.default"));
    assert!(t
        .diagnostics
        .iter()
        .any(|d| d.message.contains("gateways only")));
}

#[test]
fn service_entry_hosts_become_clusters_and_domains() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: STATIC
  endpoints:
  - address: 192.0.2.7
    ports: {http: 8080}
"#;
    let t = run(yaml);
    let c = t.config.cluster("outbound|80||api.example.com").unwrap();
    assert_eq!(c.endpoints[0].address.to_string(), "192.0.2.7:8080");
    let v = vhost(&t, "api.example.com");
    assert_eq!(v.domains, vec!["api.example.com", "api.example.com:80"]);
}

#[test]
fn duplicate_hosts_across_virtual_services_are_reported_not_duplicated() {
    let a = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings}\n";
    let b = a.replace("name: a", "name: b");
    let t = run(&format!("{a}---\n{b}"));
    let mut all: Vec<&String> = table(&t)
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.domains)
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a domain appears in two virtual hosts");
    assert!(t.diagnostics.iter().any(|d| d
        .message
        .contains("already routed by VirtualService a.default")));
}

#[test]
fn version_is_stable_and_content_addressed() {
    let a = run(DR);
    let b = run(DR);
    assert_eq!(a.config.version, b.config.version);
    let c = run(VS);
    assert_ne!(a.config.version, c.config.version);
}

#[test]
fn rules_the_router_rejects_are_reported_and_left_out() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /a}}]
    headers:
      request:
        set: {"bad header": evil}
    route:
    - destination: {host: ratings}
  - route:
    - destination: {host: ratings}
"#;
    let t = run(vs);
    let v = vhost(&t, "ratings.default");
    assert_eq!(v.routes.len(), 1);
    assert_eq!(t.virtual_hosts["ratings.default"].rule_indices, vec![1]);
    assert!(t
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error && d.field.as_deref() == Some("spec.http[0]")));
    let router = trellis_engine::route::Router::new(std::sync::Arc::new(t.config.clone()));
    assert!(router.is_ok());
}

/// Whatever a VirtualService says (odd weights, header names/values, regexes), the translated
/// snapshot always compiles in the engine's router: bad rules are left out and reported.
#[quickcheck_macros::quickcheck]
fn translated_config_always_compiles(
    weights: Vec<u8>,
    header: String,
    value: String,
    regex: String,
) -> bool {
    // YAML can only carry its printable set (YAML 1.2 §5.1); everything else is fair game.
    let printable = |c: &char| {
        matches!(*c as u32, 0x20..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
            && *c != '\u{FEFF}'
    };
    let clean = |s: String| -> String { s.chars().filter(printable).collect() };
    let (header, value, regex) = (clean(header), clean(value), clean(regex));
    let dests: Vec<serde_json::Value> = weights
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, w)| {
            serde_json::json!({
                "destination": {"host": "reviews", "subset": if i % 2 == 0 { "v1" } else { "v2" }},
                "weight": w,
                "headers": {"request": {"set": {header.clone(): value.clone()}}}
            })
        })
        .collect();
    let vs = serde_json::json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews"},
        "spec": {
            "hosts": ["reviews"],
            "http": [
                {"match": [{"uri": {"regex": regex}, "headers": {header.clone(): {"exact": value}}}],
                 "route": dests},
                {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}
            ]
        }
    });
    let vs = serde_yaml::to_string(&vs).unwrap();
    let t = run(&format!("{DR}\n---\n{vs}"));
    let compiled =
        trellis_engine::route::Router::new(std::sync::Arc::new(t.config.clone())).is_ok();
    // The catch-all rule always survives.
    let survived = vhost(&t, "reviews.default")
        .routes
        .last()
        .map(|r| r.matches.is_empty());
    compiled && survived == Some(true)
}
