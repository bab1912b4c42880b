//! pilot's gateway binding rules, one test each, with the function each follows.

use std::collections::BTreeMap;
use std::sync::Arc;

use trellis_engine::config::{RouteAction, RouteTable};
use trellis_engine::route::{RouteOutcome, RouteRequest, Router};

use super::binding::{intersect, resolve_gateway_name, server_hosts_for, subset_of};
use super::*;
use crate::diag::Severity;
use crate::istio::parse_str;
use crate::translate::{translate, Service, ServiceEndpoint, OUTBOUND_ROUTE_TABLE};

fn registry() -> Registry {
    let ip = |last| IpAddr::V4(Ipv4Addr::new(10, 0, 0, last));
    let svc = |name: &str, last| {
        Service::kubernetes(name, "default", &[9080])
            .with_endpoint(ServiceEndpoint::new(ip(last), &[("version", "v1")]))
    };
    Registry {
        services: vec![svc("productpage", 1), svc("reviews", 2), svc("ratings", 3)],
        ..Default::default()
    }
}

fn ingress() -> GatewayOptions {
    GatewayOptions {
        labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
        ..GatewayOptions::default()
    }
}

fn run(yaml: &str) -> Translation {
    let set = parse_str(yaml, "test.yaml").expect("parses");
    translate_gateway(&set, &registry(), &ingress())
}

fn gateway(name: &str, namespace: &str, servers: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{servers}\n---\n"
    )
}

fn http_server(port: u16, hosts: &str) -> String {
    format!("  - port: {{number: {port}, name: http, protocol: HTTP}}\n    hosts: {hosts}\n")
}

fn vs(name: &str, namespace: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}\n---\n"
    )
}

/// The cluster a GET of `path` with `host` reaches on route table `table`, or why not.
fn route(t: &Translation, table: &str, host: &str, path: &str) -> Result<String, &'static str> {
    let router = Router::new(Arc::new(t.config.clone())).expect("router compiles");
    let id = router.table(table).ok_or("no such table")?;
    let headers = trellis_engine::http1::Fields::new();
    let labels = BTreeMap::new();
    let req = RouteRequest {
        authority: host,
        path,
        method: "GET",
        scheme: "http",
        headers: &headers,
        port: 80,
        source_labels: &labels,
    };
    match router.route(id, &req) {
        RouteOutcome::Matched(m) => match &m.route.action {
            RouteAction::Forward(w) => Ok(w[0].cluster.clone()),
            _ => Err("not a forward"),
        },
        RouteOutcome::NoVirtualHost => Err("no virtual host"),
        RouteOutcome::NoRoute { .. } => Err("no route"),
    }
}

fn domains(table: &RouteTable) -> Vec<&str> {
    table
        .virtual_hosts
        .iter()
        .flat_map(|v| v.domains.iter().map(String::as_str))
        .collect()
}

const PRODUCTPAGE: &str = "outbound|9080||productpage.default.svc.cluster.local";
const REVIEWS: &str = "outbound|9080||reviews.default.svc.cluster.local";

/// resolveGatewayName (pilot/pkg/model/config.go).
#[test]
fn gateway_names_resolve_in_the_namespace_of_the_resource() {
    assert_eq!(resolve_gateway_name("gw", "default"), "default/gw");
    assert_eq!(resolve_gateway_name("./gw", "shop"), "shop/gw");
    assert_eq!(
        resolve_gateway_name("istio-system/gw", "shop"),
        "istio-system/gw"
    );
    assert_eq!(
        resolve_gateway_name("gw.edge.svc.cluster.local", "shop"),
        "edge/gw"
    );
    assert_eq!(resolve_gateway_name("gw.edge", "shop"), "edge/gw");
    assert_eq!(resolve_gateway_name("mesh", "shop"), "mesh");
}

/// Name.SubsetOf and Names.Intersection (pkg/config/host), as buildGatewayHTTPRouteConfig
/// (pilot/pkg/networking/core/gateway.go) uses them: the narrower host of each pair.
#[test]
fn hosts_intersect_to_the_narrower_of_each_pair() {
    assert!(subset_of("a.example.com", "*.example.com"));
    assert!(subset_of("*.a.example.com", "*.example.com"));
    assert!(!subset_of("*.example.com", "a.example.com"));
    assert!(subset_of("anything", "*"));
    let s = |v: &[&str]| v.iter().map(|h| h.to_string()).collect::<Vec<_>>();
    assert_eq!(
        intersect(
            &s(&["*.example.com"]),
            &s(&["a.example.com", "b.other.org"])
        ),
        s(&["a.example.com"])
    );
    assert_eq!(
        intersect(
            &s(&["a.example.com", "B.example.com"]),
            &s(&["*.example.com"])
        ),
        s(&["a.example.com", "b.example.com"])
    );
    assert_eq!(intersect(&s(&["*"]), &s(&["*"])), s(&["*"]));

    // End to end: a server for *.example.com and a VirtualService for one name and one
    // elsewhere: only the shared name gets a virtual host; another host gets 404.
    let t = run(&format!(
        "{}{}",
        gateway("gw", "default", &http_server(80, "[\"*.example.com\"]")),
        vs(
            "pp",
            "default",
            "  hosts: [shop.example.com, shop.other.org]\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: productpage}}]"
        )
    ));
    let table = t.config.route_table("http.80").expect("http.80");
    assert_eq!(domains(table), ["shop.example.com"]);
    assert_eq!(
        route(&t, "http.80", "shop.example.com", "/"),
        Ok(PRODUCTPAGE.into())
    );
    assert_eq!(
        route(&t, "http.80", "shop.example.com:80", "/"),
        Ok(PRODUCTPAGE.into())
    );
    assert_eq!(
        route(&t, "http.80", "shop.other.org", "/"),
        Err("no virtual host")
    );
}

/// sanitizeServerHostNamespace (pilot/pkg/model/gateway.go) and NamesForNamespace
/// (pkg/config/host/names.go): `ns/host` is visible to VirtualServices of `ns` only, `./host`
/// to the Gateway's namespace, `*/host` to all.
#[test]
fn namespaced_server_hosts_are_visible_to_that_namespace_only() {
    let s = |v: &[&str]| v.iter().map(|h| h.to_string()).collect::<Vec<_>>();
    let hosts = s(&[
        "shop/a.example.com",
        "./b.example.com",
        "*/c.example.com",
        "d.example.com",
    ]);
    assert_eq!(
        server_hosts_for(&hosts, "istio-system", "shop"),
        s(&["a.example.com", "c.example.com", "d.example.com"])
    );
    assert_eq!(
        server_hosts_for(&hosts, "istio-system", "istio-system"),
        s(&["b.example.com", "c.example.com", "d.example.com"])
    );

    let t = run(&format!(
        "{}{}{}",
        gateway("gw", "istio-system", &http_server(80, "[\"shop/*\"]")),
        vs(
            "mine",
            "shop",
            "  hosts: [\"*\"]\n  gateways: [istio-system/gw]\n  http:\n  - route: [{destination: {host: productpage.default.svc.cluster.local}}]"
        ),
        vs(
            "theirs",
            "other",
            "  hosts: [x.example.com]\n  gateways: [istio-system/gw]\n  http:\n  - route: [{destination: {host: reviews.default.svc.cluster.local}}]"
        )
    ));
    let table = t.config.route_table("http.80").expect("http.80");
    assert_eq!(domains(table), ["*"]);
    assert_eq!(
        route(&t, "http.80", "x.example.com", "/"),
        Ok(PRODUCTPAGE.into())
    );
}

/// mergeGateways (pilot/pkg/model/gateway.go): two Gateways' HTTP servers on one port share
/// one listener and route table `http.<port>`; a Gateway whose selector names other labels does
/// not apply (PushContext.mergeGateways, pilot/pkg/model/push_context.go).
#[test]
fn two_gateways_on_one_port_merge_and_selectors_choose() {
    let other = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: egress}\nspec:\n  selector: {istio: egressgateway}\n  servers:\n  - port: {number: 9000, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n---\n";
    let t = run(&format!(
        "{}{}{}{}{}",
        gateway("gw-a", "default", &http_server(80, "[a.example.com]")),
        gateway("gw-b", "default", &http_server(80, "[b.example.com]")),
        other,
        vs(
            "a",
            "default",
            "  hosts: [a.example.com]\n  gateways: [gw-a]\n  http:\n  - route: [{destination: {host: productpage}}]"
        ),
        vs(
            "b",
            "default",
            "  hosts: [b.example.com]\n  gateways: [gw-b]\n  http:\n  - route: [{destination: {host: reviews}}]"
        ),
    ));
    assert_eq!(t.config.listeners.len(), 1, "{:?}", t.config.listeners);
    let l = &t.config.listeners[0];
    assert_eq!(l.address, "0.0.0.0:80".parse().expect("address"));
    assert_eq!(l.route_table, "http.80");
    assert_eq!(
        route(&t, "http.80", "a.example.com", "/"),
        Ok(PRODUCTPAGE.into())
    );
    assert_eq!(
        route(&t, "http.80", "b.example.com", "/"),
        Ok(REVIEWS.into())
    );
    // gw-a's hosts are not gw-b's: VirtualService a is bound to gw-a only.
    assert_eq!(
        route(&t, "http.80", "c.example.com", "/"),
        Err("no virtual host")
    );
}

/// getGatewayNames (pilot/pkg/model/push_context.go): no `gateways` means `mesh` only; a list
/// of gateways means those only, unless `mesh` is listed too.
#[test]
fn mesh_and_gateway_binding() {
    let yaml = format!(
        "{}{}{}{}",
        gateway("gw", "default", &http_server(80, "[\"*\"]")),
        vs("mesh-only", "default", "  hosts: [ratings]\n  http:\n  - route: [{destination: {host: ratings}}]"),
        vs(
            "gw-only",
            "default",
            "  hosts: [reviews]\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: reviews}}]"
        ),
        vs(
            "both",
            "default",
            "  hosts: [productpage]\n  gateways: [gw, mesh]\n  http:\n  - route: [{destination: {host: productpage}}]"
        ),
    );
    let t = run(&yaml);
    let table = t.config.route_table("http.80").expect("http.80");
    let mut d = domains(table);
    d.sort_unstable();
    assert_eq!(
        d,
        [
            "productpage.default.svc.cluster.local",
            "reviews.default.svc.cluster.local"
        ]
    );
    assert_eq!(
        route(&t, "http.80", "ratings.default.svc.cluster.local", "/"),
        Err("no virtual host")
    );
    // The sidecar's table: mesh-only and both, not gw-only (reviews keeps its default route).
    let set = parse_str(&yaml, "test.yaml").expect("parses");
    let sidecar = translate(&set, &registry());
    let names: Vec<&str> = sidecar
        .config
        .route_table(OUTBOUND_ROUTE_TABLE)
        .expect("outbound")
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert!(names.contains(&"mesh-only.default"), "{names:?}");
    assert!(names.contains(&"both.default"), "{names:?}");
    assert!(!names.contains(&"gw-only.default"), "{names:?}");
}

/// TranslateRoute and sourceMatchHTTP (pilot/pkg/networking/core/route/route.go): a match
/// entry with `gateways` applies only at those gateways; one without applies when its
/// `sourceLabels` are the gateway proxy's; `port` must be the server's.
#[test]
fn match_gateways_restrict_a_rule() {
    let t = run(&format!(
        "{}{}",
        gateway("gw", "default", &http_server(80, "[\"*\"]")),
        vs(
            "r",
            "default",
            r#"  hosts: ["*"]
  gateways: [gw, mesh]
  http:
  - match: [{uri: {prefix: /mesh}, gateways: [mesh]}]
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /other-port}, port: 81}]
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /sidecar}, sourceLabels: {app: sleep}}]
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /gw}, gateways: [default/gw]}, {uri: {prefix: /ingress}, sourceLabels: {istio: ingressgateway}}]
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: productpage}}]"#
        )
    ));
    for (path, want) in [
        ("/gw", REVIEWS),
        ("/ingress", REVIEWS),
        ("/mesh", PRODUCTPAGE),
        ("/other-port", PRODUCTPAGE),
        ("/sidecar", PRODUCTPAGE),
    ] {
        assert_eq!(route(&t, "http.80", "any", path), Ok(want.into()), "{path}");
    }
}

/// SortVHostRoutes (pilot/pkg/networking/core/route/route.go): two VirtualServices on one host
/// share its virtual host, catch-alls last, so the first's catch-all does not hide the second's
/// rule; BuildHTTPRoutesForVirtualService stops a VirtualService at its first catch-all.
#[test]
fn virtual_services_sharing_a_host_merge_with_catch_alls_last() {
    let t = run(&format!(
        "{}{}{}",
        gateway("gw", "default", &http_server(80, "[\"*\"]")),
        vs(
            "a",
            "default",
            "  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: productpage}}]\n  - match: [{uri: {prefix: /never}}]\n    route: [{destination: {host: ratings}}]"
        ),
        vs(
            "b",
            "default",
            "  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - match: [{uri: {prefix: /reviews}}]\n    route: [{destination: {host: reviews}}]"
        ),
    ));
    let table = t.config.route_table("http.80").expect("http.80");
    assert_eq!(table.virtual_hosts.len(), 1);
    assert_eq!(
        table.virtual_hosts[0].routes.len(),
        2,
        "a stops at its catch-all"
    );
    assert_eq!(route(&t, "http.80", "x", "/reviews/1"), Ok(REVIEWS.into()));
    assert_eq!(route(&t, "http.80", "x", "/never"), Ok(PRODUCTPAGE.into()));
}

/// buildGatewayHTTPRouteConfig: a port whose servers no VirtualService serves gets a `*`
/// virtual host without routes: Envoy's 404 NR.
#[test]
fn a_port_without_virtual_services_answers_404() {
    let t = run(&gateway("gw", "default", &http_server(80, "[\"*\"]")));
    let table = t.config.route_table("http.80").expect("http.80");
    assert_eq!(domains(table), ["*"]);
    assert!(table.virtual_hosts[0].routes.is_empty());
    assert_eq!(route(&t, "http.80", "anything", "/"), Err("no route"));
}

/// A TLS server that cannot be terminated here (its certificate is a Kubernetes Secret) is
/// refused with one error naming it, never served in plain text; the plain HTTP server of the
/// same Gateway is still served.
#[test]
fn tls_servers_are_refused_not_served_in_plain_text() {
    let servers = format!(
        "{}  - port: {{number: 443, name: https, protocol: HTTPS}}\n    name: secure\n    hosts: [\"*\"]\n    tls: {{mode: SIMPLE, credentialName: bookinfo-secret}}\n",
        http_server(80, "[\"*\"]")
    );
    let t = run(&gateway("gw", "default", &servers));
    let ports: Vec<u16> = t
        .config
        .listeners
        .iter()
        .map(|l| l.address.port())
        .collect();
    assert_eq!(ports, [80]);
    let refused: Vec<_> = t
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(
        refused[0].message.contains("\"secure\""),
        "{}",
        refused[0].message
    );
    assert!(
        refused[0].message.contains("credentialName"),
        "{}",
        refused[0].message
    );
}

/// What each server's protocol and `tls.mode` gives (buildGatewayListenerTLSContext's modes,
/// createGatewayTCPFilterChainOpts in pilot/pkg/networking/core/gateway.go): SIMPLE and
/// MUTUAL terminate (then HTTP, or TCP on a TLS/TCP server), PASSTHROUGH routes by SNI, a TCP
/// server without `tls` is opaque TCP, the rest is refused with its reason.
#[test]
fn server_modes_follow_protocol_and_tls_mode() {
    use super::tls::{mode, ServerMode, Termination};
    let server = |yaml: &str| -> crate::istio::gateway::Server {
        serde_yaml::from_str(yaml).expect("server")
    };
    let https = |m: &str| {
        server(&format!(
            "{{port: {{number: 443, name: s, protocol: HTTPS}}, hosts: [a], tls: {{mode: {m}}}}}"
        ))
    };
    assert_eq!(
        mode(&https("SIMPLE")),
        ServerMode::Https(Termination::Simple)
    );
    assert_eq!(
        mode(&https("MUTUAL")),
        ServerMode::Https(Termination::Mutual)
    );
    assert_eq!(mode(&https("PASSTHROUGH")), ServerMode::Passthrough);
    // The modes once refused: OPTIONAL_MUTUAL and ISTIO_MUTUAL terminate (then HTTP),
    // AUTO_PASSTHROUGH is a passthrough server (gateway.IsPassThroughServer).
    assert_eq!(
        mode(&https("OPTIONAL_MUTUAL")),
        ServerMode::Https(Termination::OptionalMutual)
    );
    assert_eq!(
        mode(&https("ISTIO_MUTUAL")),
        ServerMode::Https(Termination::IstioMutual {
            subject_alt_names: vec![]
        })
    );
    assert_eq!(
        mode(&https("AUTO_PASSTHROUGH")),
        ServerMode::AutoPassthrough
    );
    let http_auto = server(
        "{port: {number: 80, name: h, protocol: HTTP}, hosts: [a], tls: {mode: AUTO_PASSTHROUGH}}",
    );
    assert!(
        matches!(mode(&http_auto), ServerMode::Refused(why) if why.contains("AUTO_PASSTHROUGH"))
    );
    let plain = server(
        "{port: {number: 80, name: h, protocol: HTTP}, hosts: [a], tls: {httpsRedirect: true}}",
    );
    assert_eq!(mode(&plain), ServerMode::Http);
    let no_mode = server("{port: {number: 443, name: s, protocol: HTTPS}, hosts: [a]}");
    assert!(matches!(mode(&no_mode), ServerMode::Refused(_)));
    let tls = server(
        "{port: {number: 443, name: t, protocol: TLS}, hosts: [a], tls: {mode: PASSTHROUGH}}",
    );
    assert_eq!(mode(&tls), ServerMode::Passthrough);
    let tls_simple =
        server("{port: {number: 443, name: t, protocol: TLS}, hosts: [a], tls: {mode: SIMPLE}}");
    assert_eq!(mode(&tls_simple), ServerMode::TlsTcp(Termination::Simple));
    let tls_istio = server(
        "{port: {number: 15443, name: t, protocol: TLS}, hosts: [a], tls: {mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://cluster.local/ns/a/sa/b]}}",
    );
    assert_eq!(
        mode(&tls_istio),
        ServerMode::TlsTcp(Termination::IstioMutual {
            subject_alt_names: vec!["spiffe://cluster.local/ns/a/sa/b".into()]
        })
    );
    let tls_none = server("{port: {number: 443, name: t, protocol: TLS}, hosts: [a]}");
    assert!(matches!(mode(&tls_none), ServerMode::Refused(why) if why.contains("tls.mode")));
    let tcp = server("{port: {number: 27017, name: m, protocol: MONGO}, hosts: [a]}");
    assert_eq!(mode(&tcp), ServerMode::Tcp);
    let udp = server("{port: {number: 53, name: d, protocol: UDP}, hosts: [a]}");
    assert!(matches!(mode(&udp), ServerMode::Refused(_)));
}

/// One port is plain text or TLS, not both (canMergeProtocols in pilot's MergeGateways): a
/// later server that differs is refused and the port keeps serving as its first server does.
#[test]
fn a_port_does_not_mix_plain_text_and_tls() {
    let servers = format!(
        "{}  - port: {{number: 80, name: https, protocol: HTTPS}}\n    name: clash\n    hosts: [\"*\"]\n    tls: {{mode: SIMPLE, serverCertificate: /nonexistent, privateKey: /nonexistent}}\n",
        http_server(80, "[\"*\"]")
    );
    let t = run(&gateway("gw", "default", &servers));
    assert_eq!(t.config.listeners.len(), 1);
    assert!(t.config.listeners[0].tls.is_none());
    assert!(t
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error && d.message.contains("never both")));
}

/// The local bind address and port offset move the listeners; route tables keep the Gateway's
/// port numbers.
#[test]
fn bind_address_and_port_offset_apply_to_listeners_only() {
    let set = parse_str(
        &gateway("gw", "default", &http_server(8080, "[\"*\"]")),
        "t.yaml",
    )
    .expect("parses");
    let opts = GatewayOptions {
        bind_address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        port_offset: 10000,
        ..ingress()
    };
    let t = translate_gateway(&set, &registry(), &opts);
    assert_eq!(
        t.config.listeners[0].address,
        "127.0.0.1:18080".parse().expect("address")
    );
    assert_eq!(t.config.listeners[0].route_table, "http.8080");
    let too_far = GatewayOptions {
        port_offset: 60000,
        ..opts
    };
    let t = translate_gateway(&set, &registry(), &too_far);
    assert!(t.config.listeners.is_empty());
    assert!(t
        .diagnostics
        .iter()
        .any(|d| d.message.contains("past 65535")));
}

/// bookinfo's own `bookinfo-gateway.yaml`: port 8080, `/productpage` to productpage, other
/// paths 404 NR. `virtual-service-all-v1.yaml` binds to `mesh` only, so it changes nothing at
/// the gateway.
#[test]
fn bookinfo_gateway_sample() {
    let dir = crate::shared_dir().join("istio/samples/bookinfo/networking");
    let mut set = crate::istio::load_file(&dir.join("bookinfo-gateway.yaml")).expect("loads");
    let t = translate_gateway(&set, &registry(), &ingress());
    assert!(
        t.diagnostics.iter().all(|d| d.severity == Severity::Info),
        "{:#?}",
        t.diagnostics
    );
    assert_eq!(t.config.listeners.len(), 1);
    assert_eq!(t.config.listeners[0].address.port(), 8080);
    assert_eq!(
        route(&t, "http.8080", "localhost", "/productpage"),
        Ok(PRODUCTPAGE.into())
    );
    assert_eq!(
        route(&t, "http.8080", "localhost", "/static/x.css"),
        Ok(PRODUCTPAGE.into())
    );
    assert_eq!(
        route(&t, "http.8080", "localhost", "/reviews/1"),
        Err("no route")
    );
    let before = t.config.route_tables.clone();
    set.extend(crate::istio::load_file(&dir.join("virtual-service-all-v1.yaml")).expect("loads"));
    let t = translate_gateway(&set, &registry(), &ingress());
    assert_eq!(t.config.route_tables, before);
    // Another workload's labels select nothing.
    let none = translate_gateway(&set, &registry(), &GatewayOptions::default());
    assert!(none.config.listeners.is_empty());
}

/// Delegation at the ingress, Istio's documented use: the gateway-bound root in
/// `istio-system` hands `/reviews` to a delegate owned by the service's team
/// (mergeVirtualServices in pilot/pkg/model/virtualservice_controller.go); the delegate's short
/// host names resolve in its own namespace, and a path outside the root's prefix is not routed.
#[test]
fn gateway_routes_merge_delegates() {
    let yaml = gateway("edge", "istio-system", &http_server(80, "[\"*\"]"))
        + &vs(
            "root",
            "istio-system",
            "  hosts: [\"*\"]\n  gateways: [edge]\n  http:\n  - match: [{uri: {prefix: /reviews}}]\n    delegate: {name: reviews-leaf, namespace: default}\n  - route: [{destination: {host: productpage.default.svc.cluster.local}}]",
        )
        + &vs(
            "reviews-leaf",
            "default",
            "  http:\n  - match: [{uri: {prefix: /reviews/v1}}]\n    route: [{destination: {host: reviews}}]\n  - match: [{uri: {prefix: /ratings}}]\n    route: [{destination: {host: ratings}}]",
        );
    let t = run(&yaml);
    assert_eq!(
        route(&t, "http.80", "any.example.com", "/reviews/v1/1"),
        Ok(REVIEWS.to_string())
    );
    assert_eq!(
        route(&t, "http.80", "any.example.com", "/ratings"),
        Ok(PRODUCTPAGE.to_string()),
        "the delegate's /ratings rule conflicts with the root's /reviews: left out"
    );
    assert_eq!(
        route(&t, "http.80", "any.example.com", "/reviews/v2"),
        Ok(PRODUCTPAGE.to_string()),
        "nothing in the delegate matches: the root's next rule"
    );
}
