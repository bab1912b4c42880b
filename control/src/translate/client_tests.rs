//! Istio's answer for what depends on the client a sidecar serves: `sourceNamespace`,
//! `sourceLabels`, short names from another namespace, and `exportTo` precedence. Each test
//! names the istio/istio function that gives the answer.

use std::sync::Arc;

use trellis_engine::config::RouteAction;
use trellis_engine::route::{RouteOutcome, RouteRequest, Router};

use super::tests::{forward, ip};
use super::*;
use crate::istio::parse_str;

/// The cluster a request for `authority` on `port` reaches through `t`'s route table (no
/// runtime source labels: a sidecar's are decided at translation), or `"none"`.
pub(super) fn cluster_for(t: &Translation, authority: &str, port: u16) -> String {
    let router = Router::new(Arc::new(t.config.clone())).expect("compiles");
    let table = router.table(OUTBOUND_ROUTE_TABLE).expect("table");
    let headers = trellis_engine::http1::Fields::new();
    let labels = BTreeMap::new();
    let req = RouteRequest {
        authority,
        path: "/",
        method: "GET",
        scheme: "http",
        headers: &headers,
        port,
        source_labels: &labels,
    };
    match router.route(table, &req) {
        RouteOutcome::Matched(m) => match &m.route.action {
            RouteAction::Forward(_) => forward(m.route)[0].0.clone(),
            other => format!("{other:?}"),
        },
        _ => "none".to_string(),
    }
}

/// `reviews` in `default` and in `shop`, one port each.
fn two_namespaces() -> Registry {
    Registry {
        services: vec![
            Service::kubernetes("reviews", "default", &[9080])
                .with_endpoint(ServiceEndpoint::new(ip(1), &[])),
            Service::kubernetes("reviews", "shop", &[9080])
                .with_endpoint(ServiceEndpoint::new(ip(2), &[])),
        ],
        ..Default::default()
    }
}

fn client(ns: &str, labels: &[(&str, &str)]) -> Workload {
    Workload::new(ns, labels)
}

fn vs(name: &str, ns: &str, rest: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{rest}\n---\n"
    )
}

const DEFAULT_REVIEWS: &str = "outbound|9080||reviews.default.svc.cluster.local";
const SHOP_REVIEWS: &str = "outbound|9080||reviews.shop.svc.cluster.local";

/// Istio: a sidecar in namespace N reaches `reviews` of N by its bare name, and a service of
/// another namespace M only as `reviews.M`, `reviews.M.svc` or the FQDN
/// (generateAltVirtualHostsForKubernetesService in pilot/pkg/networking/core/httproute.go).
/// Before: every sidecar got every bare name, the first service listed won `reviews` and a
/// client in `shop` reached `default`'s.
#[test]
fn short_names_resolve_in_the_client_namespace() {
    let set = ResourceSet::default();
    let shop = translate_for(&set, &two_namespaces(), &client("shop", &[]));
    assert_eq!(cluster_for(&shop, "reviews", 9080), SHOP_REVIEWS);
    assert_eq!(cluster_for(&shop, "reviews.default", 9080), DEFAULT_REVIEWS);
    assert_eq!(
        cluster_for(&shop, "reviews.shop.svc:9080", 9080),
        SHOP_REVIEWS
    );
    let default = translate_for(&set, &two_namespaces(), &client("default", &[]));
    assert_eq!(cluster_for(&default, "reviews", 9080), DEFAULT_REVIEWS);
    assert_eq!(cluster_for(&default, "reviews.shop", 9080), SHOP_REVIEWS);
    let other = translate_for(&set, &two_namespaces(), &client("other", &[]));
    assert_eq!(cluster_for(&other, "reviews", 9080), "none");
}

/// Istio: a VirtualService's short host names resolve in the VirtualService's own namespace
/// (ResolveShortnameToFQDN in pilot/pkg/model/service.go, used by the VirtualService
/// controller), and the sidecar's domains for that host then follow the client's namespace.
#[test]
fn virtual_service_hosts_resolve_in_its_namespace() {
    let yaml = vs(
        "to-default",
        "shop",
        "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews.default.svc.cluster.local}",
    );
    let set = parse_str(&yaml, "t.yaml").expect("parses");
    let shop = translate_for(&set, &two_namespaces(), &client("shop", &[]));
    // `reviews` in `shop` is shop's service, routed by the VirtualService to default's.
    assert_eq!(cluster_for(&shop, "reviews", 9080), DEFAULT_REVIEWS);
    let default = translate_for(&set, &two_namespaces(), &client("default", &[]));
    assert_eq!(cluster_for(&default, "reviews", 9080), DEFAULT_REVIEWS);
    assert_eq!(cluster_for(&default, "reviews.shop", 9080), DEFAULT_REVIEWS);
}

/// Istio: `sourceNamespace` and `sourceLabels` are decided against the sidecar's own workload
/// when its routes are generated (sourceMatchHTTP and TranslateRoute in
/// pilot/pkg/networking/core/route/route.go); an entry naming `gateways` is decided by them
/// alone. Before: `sourceNamespace` was ignored with a warning, so every client matched.
#[test]
fn source_namespace_and_labels_are_decided_for_the_sidecar() {
    let yaml = vs(
        "reviews",
        "default",
        r#"  hosts: [reviews]
  http:
  - match: [{sourceNamespace: shop, sourceLabels: {app: web}}]
    route: [{destination: {host: reviews.shop.svc.cluster.local}}]
  - match: [{sourceNamespace: default}, {gateways: [mesh], sourceNamespace: nowhere}]
    directResponse: {status: 204}
  - route: [{destination: {host: reviews}}]"#,
    );
    let set = parse_str(&yaml, "t.yaml").expect("parses");
    let at = |w: Workload| {
        let t = translate_for(&set, &two_namespaces(), &w);
        assert!(
            !t.diagnostics
                .iter()
                .any(|d| d.message.contains("sourceNamespace")),
            "{:?}",
            t.diagnostics
        );
        cluster_for(&t, "reviews.default", 9080)
    };
    assert_eq!(at(client("shop", &[("app", "web")])), SHOP_REVIEWS);
    // The second rule's `gateways: [mesh]` entry holds for every sidecar.
    let direct = format!(
        "{:?}",
        RouteAction::DirectResponse {
            status: 204,
            body: None
        }
    );
    assert_eq!(at(client("shop", &[("app", "cli")])), direct);
    assert_eq!(at(client("default", &[("app", "web")])), direct);
}

/// Istio: a VirtualService none of whose rules applies to this sidecar gives it no virtual
/// host (buildSidecarVirtualHostsForVirtualService returns nothing), so the host goes to the
/// next VirtualService that claims it, or to its default route.
#[test]
fn a_virtual_service_with_no_rule_for_the_client_leaves_its_host() {
    let mut yaml = vs(
        "old",
        "default",
        "  hosts: [reviews]\n  http:\n  - match: [{sourceLabels: {app: web}}]\n    route: [{destination: {host: reviews.shop.svc.cluster.local}}]",
    );
    yaml = yaml.replace(
        "namespace: default}",
        "namespace: default, creationTimestamp: '2020-01-01T00:00:00Z'}",
    );
    yaml.push_str(
        &vs(
            "new",
            "default",
            "  hosts: [reviews]\n  http:\n  - directResponse: {status: 418}",
        )
        .replace(
            "namespace: default}",
            "namespace: default, creationTimestamp: '2021-01-01T00:00:00Z'}",
        ),
    );
    let set = parse_str(&yaml, "t.yaml").expect("parses");
    let web = translate_for(
        &set,
        &two_namespaces(),
        &client("default", &[("app", "web")]),
    );
    assert_eq!(cluster_for(&web, "reviews", 9080), SHOP_REVIEWS);
    let other = translate_for(&set, &two_namespaces(), &client("default", &[]));
    assert!(cluster_for(&other, "reviews", 9080).contains("418"));
}

/// Istio: a sidecar sees the VirtualServices of its namespace that are private to it first,
/// then those exported to it by name, then the public ones, and the first to claim a domain
/// keeps it (initVirtualServices and VirtualServicesForGateway in
/// pilot/pkg/model/push_context.go; dedupeDomains in pilot/pkg/networking/core/httproute.go).
/// One with `exportTo` that leaves out the client's namespace is not there at all. Before:
/// `exportTo` was ignored on sidecars and the oldest VirtualService won everywhere.
#[test]
fn private_virtual_services_win_over_public_ones_and_hidden_ones_are_absent() {
    let old = |name: &str, ns: &str, export: &str, status: u16| {
        vs(
            name,
            ns,
            &format!("  hosts: [reviews.default.svc.cluster.local]\n  exportTo: {export}\n  http:\n  - directResponse: {{status: {status}}}"),
        )
    };
    let yaml = [
        old("public", "other", "['*']", 200),
        old("private", "default", "['.']", 201),
        old("to-shop", "other", "[shop]", 202),
    ]
    .concat()
    // The public one is the oldest: without exportTo precedence it would win everywhere.
    .replace(
        "name: public, namespace: other}",
        "name: public, namespace: other, creationTimestamp: '2020-01-01T00:00:00Z'}",
    );
    let set = parse_str(&yaml, "t.yaml").expect("parses");
    let status = |ns: &str| {
        let t = translate_for(&set, &two_namespaces(), &client(ns, &[]));
        cluster_for(&t, "reviews.default", 9080)
    };
    assert!(status("default").contains("201"), "{}", status("default"));
    assert!(status("shop").contains("202"), "{}", status("shop"));
    assert!(status("other").contains("200"), "{}", status("other"));
    let yaml = old("hidden", "other", "['.']", 203);
    let set = parse_str(&yaml, "t.yaml").expect("parses");
    let t = translate_for(&set, &two_namespaces(), &client("default", &[]));
    assert_eq!(cluster_for(&t, "reviews.default", 9080), DEFAULT_REVIEWS);
    assert!(t.diagnostics.iter().any(|d| d.message.contains("exportTo")));
}
