//! A plain-text server's `tls.httpsRedirect`, as buildGatewayHTTPRouteConfig in
//! pilot/pkg/networking/core/gateway.go builds it: every virtual host the server touches gets
//! `require_tls: ALL` (also one another server of the port created first), and each of the
//! server's hosts without a virtual host gets one of its own with no routes but that flag.
//! Envoy answers a plain-text request for such a host with `SslRedirector`:
//! `https://<Host as received><path>` (createSslRedirectPath in
//! source/common/http/utility.cc), a port in `Host` kept. Found by the simulator's gateway world
//! (sim-tests/src/sim/gateway), where Trellis answered 404 for a redirecting server's host that
//! no VirtualService named, and routed a host a non-redirecting server had given a virtual host.

use std::collections::BTreeMap;
use std::sync::Arc;

use trellis_engine::config::RouteAction;
use trellis_engine::route::{RouteOutcome, RouteRequest, Router};

use super::*;
use crate::istio::parse_str;

/// The gateway `gw` with `servers` (YAML list items), the VirtualService `vs` bound to it with
/// `hosts` routing everything to `backend`, and the backend's ServiceEntry.
fn run(servers: &str, hosts: &str) -> Translation {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: istio-system}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{servers}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: istio-system}}\nspec:\n  hosts: {hosts}\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: backend.test, port: {{number: 8080}}}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: backend, namespace: istio-system}}\nspec:\n  hosts: [backend.test]\n  ports: [{{number: 8080, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 10.30.0.1}}]\n"
    );
    let set = parse_str(&yaml, "test.yaml").expect("parses");
    let opts = GatewayOptions {
        labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
        ..GatewayOptions::default()
    };
    translate_gateway(&set, &Registry::default(), &opts)
}

/// What port 80 answers a GET of `path` with `host`: `Ok(cluster)` forwarded, `Err(location)`
/// redirected, `Err("404")` not routed.
fn answer(t: &Translation, host: &str, path: &str) -> Result<String, String> {
    let router = Router::new(Arc::new(t.config.clone())).expect("router compiles");
    let id = router.table("http.80").expect("the port's table");
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
            RouteAction::Redirect(r) => Err(Router::redirect_location(&m, r, host, path, 80)),
            other => panic!("unexpected action {other:?}"),
        },
        _ => Err("404".to_string()),
    }
}

const REDIRECT_ALL: &str =
    "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n    tls: {httpsRedirect: true}\n";

/// A redirecting `*` server and a VirtualService for one host: that host and every other
/// redirect (the second through the server's own `*` virtual host), `Host` kept as sent.
#[test]
fn a_redirecting_server_redirects_hosts_no_virtual_service_names() {
    let t = run(REDIRECT_ALL, "[shop.example.com]");
    assert_eq!(
        answer(&t, "shop.example.com", "/cart"),
        Err("https://shop.example.com/cart".into())
    );
    assert_eq!(
        answer(&t, "other.example.com", "/x?q=1"),
        Err("https://other.example.com/x?q=1".into())
    );
    // Unlike a VirtualService's scheme redirect, the port in Host stays.
    assert_eq!(
        answer(&t, "other.example.com:80", "/x"),
        Err("https://other.example.com:80/x".into())
    );
}

/// Two servers of port 80: `*.example.com` plain, `a.example.com` redirecting; the
/// VirtualService's `a.example.com` gets its virtual host from the first server, and the
/// second marks it: redirected. `c.example.com` is the first server's alone: routed.
/// `b.example.com`, which the VirtualService does not name, has no virtual host: 404.
#[test]
fn a_redirecting_server_marks_a_virtual_host_another_server_made() {
    let servers = "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*.example.com\"]\n  - port: {number: 80, name: http-r, protocol: HTTP}\n    hosts: [a.example.com]\n    tls: {httpsRedirect: true}\n";
    let t = run(servers, "[a.example.com, c.example.com]");
    assert_eq!(
        answer(&t, "a.example.com", "/"),
        Err("https://a.example.com/".into())
    );
    assert_eq!(
        answer(&t, "c.example.com", "/"),
        Ok("outbound|8080||backend.test".into())
    );
    assert_eq!(answer(&t, "b.example.com", "/"), Err("404".into()));
}
