//! Each check against the example istio.io gives for its code, plus the edges around it.

use super::*;

/// A message as istio.io prints it (the docs show no file reference).
pub(super) fn plain(m: &Message) -> String {
    Message {
        reference: None,
        ..m.clone()
    }
    .to_string()
}

pub(super) fn lines(a: &Analysis, code: &str) -> Vec<String> {
    a.with_code(code).map(plain).collect()
}

const HTTPBIN_GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: httpbin-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http2
      protocol: HTTP2
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - "*"
  gateways:
  - httpbin-gateway-bogus #  Should have been "httpbin-gateway"
  http:
  - route:
    - destination:
        host: httpbin-gateway
"#;

#[test]
fn ist0101_gateway_not_found_docs_example() {
    let a = analyze_str(HTTPBIN_GATEWAY, "httpbin.yaml");
    // A missing gateway serves no host either: Istio's GatewayAnalyzer adds IST0132.
    assert_eq!(a.messages.len(), 2, "{a}");
    assert_eq!(
        plain(&a.messages[1]),
        r#"Warning [IST0132] (VirtualService httpbin.default) one or more host [*] defined in VirtualService default/httpbin not found in Gateway default/httpbin-gateway-bogus."#
    );
    assert_eq!(
        plain(&a.messages[0]),
        r#"Error [IST0101] (VirtualService httpbin.default) Referenced gateway not found: "httpbin-gateway-bogus""#
    );
    assert_eq!(
        a.messages[0].to_string(),
        r#"Error [IST0101] (VirtualService httpbin.default httpbin.yaml:17) Referenced gateway not found: "httpbin-gateway-bogus""#
    );
    assert_eq!(a.messages[0].field.as_deref(), Some("spec.gateways[0]"));
    assert!(a.fails(Level::Error));
    // Fixed as the docs say: clean (no Service in the input, so hosts are not judged).
    let fixed = HTTPBIN_GATEWAY.replace("httpbin-gateway-bogus", "httpbin-gateway");
    let a = analyze_str(&fixed, "httpbin.yaml");
    assert!(a.messages.is_empty(), "{a}");
    assert_eq!(
        a.to_string(),
        "\u{2714} No validation issues found when analyzing httpbin.yaml.\n"
    );
}

#[test]
fn gateways_by_namespace_and_mesh() {
    let text = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec: {}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: shop}
spec:
  hosts: [a.example.com]
  gateways: [mesh, edge/gw, gw, other/gw]
  http:
  - route:
    - destination: {host: a}
"#;
    let a = analyze_str(text, "g.yaml");
    assert_eq!(
        lines(&a, "IST0101"),
        vec![
            r#"Error [IST0101] (VirtualService a.shop) Referenced gateway not found: "gw""#,
            r#"Error [IST0101] (VirtualService a.shop) Referenced gateway not found: "other/gw""#,
        ]
    );
}

const REVIEWS_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
"#;

#[test]
fn ist0101_hosts_ports_and_subsets() {
    let text = format!(
        "{REVIEWS_SERVICE}---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v9}
      weight: 50
    mirror: {host: ratings}
  - route:
    - destination: {host: reviews, port: {number: 9999}}
"#
    );
    let a = analyze_str(&text, "r.yaml");
    assert_eq!(
        lines(&a, "IST0101"),
        vec![
            r#"Error [IST0101] (VirtualService reviews.default) Referenced host+subset in destinationrule not found: "reviews+v9""#,
            r#"Error [IST0101] (VirtualService reviews.default) Referenced host:port not found: "reviews:9999""#,
            r#"Error [IST0101] (VirtualService reviews.default) Referenced mirror host not found: "ratings""#,
        ],
        "{a}"
    );
    // IST0130: rule #1 after a rule without matches; IST0173: no pod for subset v1.
    assert_eq!(a.messages.len(), 5, "{a}");
    assert_eq!(a.with_code("IST0173").count(), 1, "{a}");
}

#[test]
fn hosts_are_not_judged_without_a_registry_but_subsets_are() {
    let text = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: x}
spec:
  hosts: [x]
  http:
  - route:
    - destination: {host: nowhere, subset: v1}
"#;
    let a = analyze_str(text, "x.yaml");
    assert_eq!(
        lines(&a, "IST0101"),
        vec![
            r#"Error [IST0101] (VirtualService x.default) Referenced host+subset in destinationrule not found: "nowhere+v1""#
        ]
    );
}

#[test]
fn service_entry_hosts_are_known_with_export_and_wildcards() {
    let text = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: google, namespace: egress}
spec:
  hosts: ["*.googleapis.com"]
  ports: [{number: 443, name: https, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: private, namespace: egress}
spec:
  hosts: [private.example.com]
  exportTo: ["."]
  ports: [{number: 80, name: http}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: out, namespace: shop}
spec:
  hosts: [www.googleapis.com]
  tls:
  - match: [{port: 443, sniHosts: [www.googleapis.com]}]
    route:
    - destination: {host: www.googleapis.com}
  http:
  - route:
    - destination: {host: private.example.com}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: missing}
spec:
  host: ghost
"#;
    let a = analyze_str(text, "se.yaml");
    assert_eq!(
        lines(&a, "IST0101"),
        vec![
            r#"Error [IST0101] (VirtualService out.shop) Referenced host not found: "private.example.com""#,
        ],
        "{a}"
    );
    assert_eq!(
        lines(&a, "IST0174"),
        vec!["Warning [IST0174] (DestinationRule missing.default) The host ghost defined in the DestinationRule does not match any services in the mesh."]
    );
}

#[test]
fn loader_errors_become_ist0106_and_do_not_hide_other_documents() {
    let text = format!(
        "{HTTPBIN_GATEWAY}---\n{}",
        r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: lb}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: FASTEST}
"#
    );
    let a = analyze_str(&text, "mixed.yaml");
    let codes: Vec<&str> = a.messages.iter().map(|m| m.code).collect();
    assert_eq!(codes, vec!["IST0101", "IST0106", "IST0132"], "{a}");
    let m = &a.messages[1];
    assert_eq!(m.resource.as_deref(), Some("DestinationRule lb.default"));
    assert_eq!(
        m.field.as_deref(),
        Some("spec.trafficPolicy.loadBalancer.simple")
    );
    assert!(m.message.contains("FASTEST"), "{m}");
    let bad_line = text.lines().position(|l| l.contains("FASTEST")).unwrap() + 1;
    assert_eq!(m.reference, Some(format!("mixed.yaml:{bad_line}")));
}

const PRODUCTPAGE_CONFLICT: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: productpage
  namespace: team-1
spec:
  hosts:
  - productpage.default.svc.cluster.local
  http:
  - route:
    - destination:
        host: productpage
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: custom
  namespace: team-2
spec:
  hosts:
  - productpage.default.svc.cluster.local
  http:
  - route:
    - destination:
        host: productpage.team-2.svc.cluster.local
"#;

#[test]
fn ist0109_docs_example_and_its_export_to_fix() {
    let a = analyze_str(PRODUCTPAGE_CONFLICT, "pp.yaml");
    let text = "associated with mesh gateway define the same host */productpage.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.";
    assert_eq!(
        lines(&a, "IST0109"),
        vec![
            format!("Error [IST0109] (VirtualService custom.team-2) The VirtualServices team-1/productpage,team-2/custom {text}"),
            format!("Error [IST0109] (VirtualService productpage.team-1) The VirtualServices team-1/productpage,team-2/custom {text}"),
        ]
    );
    let fixed = PRODUCTPAGE_CONFLICT.replace("spec:\n", "spec:\n  exportTo:\n  - \".\"\n");
    let a = analyze_str(&fixed, "pp.yaml");
    assert_eq!(a.with_code("IST0109").count(), 0, "{a}");
}

#[test]
fn ist0109_short_names_expand_and_gateway_services_merge() {
    let text = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b}
spec:
  hosts: [reviews.default.svc.cluster.local]
  gateways: [mesh]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec: {}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: c}
spec:
  hosts: [reviews]
  gateways: [gw]
  http: [{route: [{destination: {host: reviews}}]}]
"#;
    let a = analyze_str(text, "c.yaml");
    let got = lines(&a, "IST0109");
    assert_eq!(got.len(), 2, "{a}");
    assert!(got[0].contains("default/a,default/b"), "{got:?}");
    assert!(got[0].contains("*/reviews.default.svc.cluster.local"));
}

#[test]
fn ist0112_multi_port_service_needs_a_port() {
    let text = r#"
apiVersion: v1
kind: Service
metadata: {name: multi}
spec:
  ports: [{name: http, port: 8080}, {name: grpc, port: 9090}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: multi}
spec:
  hosts: [multi]
  http:
  - match: [{uri: {prefix: /grpc}}]
    route: [{destination: {host: multi, port: {number: 9090}}}]
  - route: [{destination: {host: multi}}]
"#;
    let a = analyze_str(text, "m.yaml");
    assert_eq!(
        lines(&a, "IST0112"),
        vec![
            r#"Error [IST0112] (VirtualService multi.default) This VirtualService routes to a service "multi" that exposes multiple ports [8080 9090]. Specifying a port in the destination is required to disambiguate."#
        ]
    );
    assert_eq!(a.messages.len(), 1, "{a}");
    assert_eq!(
        a.messages[0].field.as_deref(),
        Some("spec.http[1].route[0].destination")
    );
}

#[test]
fn sidecar_selectors_need_workloads_when_workloads_are_known() {
    let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1}
spec:
  template:
    metadata:
      labels: {app: reviews, version: v1}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ok}
spec:
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: typo}
spec:
  workloadSelector:
    labels: {app: reveiws, version: v1}
"#;
    let a = analyze_str(text, "sc.yaml");
    // Istio's sidecar.SelectorAnalyzer reports a Sidecar's as a missing "selector".
    let got = lines(&a, "IST0101");
    assert_eq!(
        got,
        vec![
            r#"Error [IST0101] (Sidecar typo.default) Referenced selector not found: "app=reveiws,version=v1""#
        ],
        "{a}"
    );
}

#[test]
fn unknown_fields_are_schema_warnings() {
    let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: d\n  subset: []\n";
    let a = analyze_str(text, "d.yaml");
    assert_eq!(
        a.to_string(),
        // The host names no service of the input: IST0174, as Istio's `PodNotSelectedAnalyzer`.
        "Warning [IST0133] (DestinationRule d.default d.yaml:1) Schema validation warning: unknown field \"spec.subset\"\n\
         Warning [IST0174] (DestinationRule d.default d.yaml:1) The host d defined in the DestinationRule does not match any services in the mesh.\n"
    );
    assert!(!a.fails(Level::Error));
    assert!(a.fails(Level::Warning));
}

#[test]
fn sorted_by_level_code_resource_and_deduplicated() {
    let text = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: z}
spec:
  hosts: [z]
  gateways: [nope, nope]
  http:
  - route: [{destination: {host: z}}]
  - route: [{destination: {host: z}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [a]
  gateways: [nope]
  http:
  - route: [{destination: {host: a}, weight: 101}]
"#;
    let a = analyze_str(text, "s.yaml");
    let got: Vec<String> = a.messages.iter().map(plain).collect();
    assert_eq!(
        got,
        vec![
            r#"Error [IST0101] (VirtualService a.default) Referenced gateway not found: "nope""#,
            r#"Error [IST0101] (VirtualService z.default) Referenced gateway not found: "nope""#,
            "Error [IST0106] (VirtualService a.default) Schema validation error: percentage 101 is not in range 0..100",
            "Warning [IST0130] (VirtualService z.default) VirtualService rule #1 not used (only the last rule can have no matches).",
            "Warning [IST0132] (VirtualService a.default) one or more host [a] defined in VirtualService default/a not found in Gateway default/nope.",
            "Warning [IST0132] (VirtualService z.default) one or more host [z] defined in VirtualService default/z not found in Gateway default/nope.",
        ]
    );
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(6));
    assert_eq!(json[0]["code"], "IST0101");
    assert_eq!(json[0]["origin"], "VirtualService a.default");
}

#[test]
fn bookinfo_samples() {
    let dir = crate::shared_dir().join("istio/samples/bookinfo");
    let a = analyze_dir(&dir).unwrap();
    // The networking samples are alternatives (all-v1, 80/20, v3 ...) for the same hosts, so
    // together they conflict on the mesh; each alone does not.
    assert!(a.with_code("IST0109").count() > 0, "{a}");
    assert_eq!(
        a.with_code("IST0106").count(),
        0,
        "the samples are valid: {a}"
    );
    // Every gateway they name exists, and every subset is defined.
    assert_eq!(
        a.with_code("IST0101")
            .filter(|m| m.message.contains("gateway") || m.message.contains("subset"))
            .count(),
        0,
        "{a}"
    );
    let single =
        crate::shared_dir().join("istio/samples/bookinfo/networking/virtual-service-all-v1.yaml");
    let text = std::fs::read_to_string(&single).unwrap();
    let rules = std::fs::read_to_string(dir.join("networking/destination-rule-all.yaml")).unwrap();
    let services = std::fs::read_to_string(dir.join("platform/kube/bookinfo.yaml")).unwrap();
    let mut inputs = Inputs::read_str(&services, "bookinfo.yaml");
    inputs.add_str(&rules, "destination-rule-all.yaml");
    inputs.add_str(&text, "virtual-service-all-v1.yaml");
    let a = analyze_resources(&inputs, "bookinfo");
    // destination-rule-all.yaml also names versions that bookinfo.yaml does not deploy (their
    // Deployments are other sample files): Istio's IST0173 for those, and nothing else.
    let got: Vec<String> = a.messages.iter().map(plain).collect();
    let subset = |dr: &str, name: &str| {
        format!("Error [IST0173] (DestinationRule {dr}.default) The Subset {name} defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).")
    };
    assert_eq!(
        got,
        vec![
            subset("details", "v2"),
            subset("ratings", "v2"),
            subset("ratings", "v2-mysql"),
            subset("ratings", "v2-mysql-vm"),
        ],
        "{a}"
    );
}

/// A VirtualService without hosts is a delegate, valid as such; what a delegate or a rule that
/// delegates may not carry is a schema error (ValidateVirtualService and
/// validateHTTPRouteConflict in pkg/config/validation/).
#[test]
fn delegates_are_validated_as_istio_does() {
    let text = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root}
spec:
  hosts: [root]
  http:
  - name: both
    delegate: {name: leaf}
    route: [{destination: {host: root}}]
  - delegate: {name: leaf}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: leaf}
spec:
  http:
  - route: [{destination: {host: root}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad-leaf}
spec:
  gateways: [mesh]
  http:
  - delegate: {name: leaf}
"#;
    let a = analyze_str(text, "d.yaml");
    assert_eq!(
        lines(&a, "IST0106"),
        vec![
            "Error [IST0106] (VirtualService bad-leaf.default) Schema validation error: HTTP route, redirect or direct response is required",
            "Error [IST0106] (VirtualService bad-leaf.default) Schema validation error: delegate HTTP route cannot contain delegate",
            "Error [IST0106] (VirtualService bad-leaf.default) Schema validation error: delegate virtual service must have no gateways specified",
            "Error [IST0106] (VirtualService root.default) Schema validation error: root HTTP route both must not specify route",
        ],
        "{a}"
    );
}
