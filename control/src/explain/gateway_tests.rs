//! `explain --gateway`, against the gateway translation the proxy runs: the server a request
//! falls to and how its TLS is terminated (buildGatewayListenerTLSContext in
//! pilot/pkg/networking/core/gateway.go), the bound VirtualService rule (or 404 NR), and on L4
//! ports the chain (builtAutoPassthroughFilterChains, buildGatewayNetworkFiltersFromTLSRoutes).

use std::collections::BTreeMap;

use super::*;
use crate::explain::l4::ConnectionOutcome;
use crate::explain::report::ActionReport;
use crate::explain::Outcome;
use crate::istio::parse_str;

const YAML: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [bookinfo.example]
  - port: {number: 443, name: https, protocol: HTTPS}
    name: mesh
    hosts: [bookinfo.example]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*.local"]
    tls: {mode: AUTO_PASSTHROUGH}
  - port: {number: 8443, name: pass, protocol: TLS}
    hosts: [db.example]
    tls: {mode: PASSTHROUGH}
  - port: {number: 443, name: vault, protocol: TLS}
    hosts: [vault.example]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: [bookinfo.example]
  gateways: [istio-system/edge]
  http:
  - name: pages
    match: [{uri: {prefix: /productpage}}]
    route: [{destination: {host: productpage, port: {number: 9080}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db.example]
  gateways: [istio-system/edge]
  tls:
  - match: [{port: 8443, sniHosts: [db.example]}]
    route: [{destination: {host: db, port: {number: 5432}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vault, namespace: default}
spec:
  hosts: [vault.example]
  gateways: [istio-system/edge]
  tls:
  - match: [{port: 443, sniHosts: [vault.example]}]
    route: [{destination: {host: vault, port: {number: 8200}}}]
"#;

fn explain(host: &str, port: u16, path: &str, sni: Option<&str>) -> GatewayReport {
    explain_offering(host, port, path, sni, &[])
}

/// [`explain`] for a ClientHello that offers the ALPN protocols `alpn`.
fn explain_offering(
    host: &str,
    port: u16,
    path: &str,
    sni: Option<&str>,
    alpn: &[&str],
) -> GatewayReport {
    let set = parse_str(YAML, "t.yaml").expect("parses");
    let opts = GatewayOptions {
        labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
        ..GatewayOptions::default()
    };
    let mut req = ExplainRequest::new(host);
    req.port = Some(port);
    req.path = path.to_string();
    let alpn: Vec<String> = alpn.iter().map(|p| p.to_string()).collect();
    explain_gateway(&set, &opts, &req, (sni, &alpn)).expect("explains")
}

/// An ISTIO_MUTUAL HTTPS server: the report names the server and its mesh termination, and
/// the bound rule routes `/productpage`; another path is 404 NR, another host no virtual host.
#[test]
fn an_https_request_names_its_server_termination_and_rule() {
    let r = explain("bookinfo.example", 443, "/productpage", None);
    let server = r.server.as_ref().expect("server");
    assert_eq!(
        (server.gateway.as_str(), server.index),
        ("istio-system/edge", 1)
    );
    assert_eq!(server.name.as_deref(), Some("mesh"));
    assert!(server.mode.contains("IstioMutual"), "{}", server.mode);
    assert!(
        r.tls.as_deref().is_some_and(|t| t.starts_with("Mesh")),
        "{:?}",
        r.tls
    );
    let request = r.request.as_ref().expect("an HTTP port");
    assert_eq!(request.outcome, Outcome::Matched);
    let matched = request.matched.as_ref().expect("matched");
    assert_eq!(matched.name.as_deref(), Some("pages"));
    match &matched.action {
        ActionReport::Forward { destinations } => assert_eq!(
            destinations[0].cluster,
            "outbound|9080||productpage.default.svc.cluster.local"
        ),
        other => panic!("{other:?}"),
    }
    let text = r.to_string();
    assert!(
        text.contains("Server: istio-system/edge servers[1]"),
        "{text}"
    );
    let other_path = explain("bookinfo.example", 443, "/admin", None);
    assert_eq!(
        other_path.request.as_ref().map(|r| r.outcome),
        Some(Outcome::NoRoute)
    );
    let other_host = explain("other.example", 80, "/productpage", None);
    assert_eq!(
        other_host.request.as_ref().map(|r| r.outcome),
        Some(Outcome::NoVirtualHost)
    );
    assert!(other_host.tls.is_none(), "port 80 is plain text");
}

/// A port no Gateway server is on: no listener, the connection is refused.
#[test]
fn a_port_without_a_server_has_no_listener() {
    let r = explain("bookinfo.example", 9999, "/", None);
    assert!(r.listener.is_none() && r.server.is_none() && r.request.is_none());
    assert!(r.to_string().contains("connection is refused"));
}

/// AUTO_PASSTHROUGH: the outbound_ SNI with one of Istio's mTLS ALPNs names its chain and
/// cluster; any other SNI has none, and neither has the right SNI without a mesh ALPN
/// (builtAutoPassthroughFilterChains' `applicationProtocols: allIstioMtlsALPNs`).
#[test]
fn auto_passthrough_connections_are_explained_by_sni_and_alpn() {
    let sni = "outbound_.9080_._.productpage.default.svc.cluster.local";
    let host = "productpage.default.svc.cluster.local";
    let r = explain_offering(host, 15443, "/", Some(sni), &["h2", "istio-h2"]);
    assert_eq!(
        r.server.as_ref().map(|s| s.mode.as_str()),
        Some("AutoPassthrough")
    );
    let conn = r.connection.as_ref().expect("an L4 port");
    assert_eq!(conn.outcome, ConnectionOutcome::Matched);
    let chain = conn.chain.as_ref().expect("chain");
    assert_eq!(chain.destinations[0].cluster, sni);
    assert!(chain.application_protocols.iter().any(|p| p == "istio"));
    let text = r.to_string();
    assert!(
        text.contains("ALPN (one of): istio, istio-peer-exchange"),
        "{text}"
    );
    let unknown = explain_offering(
        "x.local",
        15443,
        "/",
        Some("outbound_.1_._.nowhere.local"),
        &["istio"],
    );
    let unknown = unknown.connection.as_ref().expect("an L4 port");
    assert_eq!(unknown.outcome, ConnectionOutcome::NoChain);
    assert_eq!(
        unknown.alpn_required, None,
        "no chain takes that SNI at all"
    );
    for alpn in [&[][..], &["h2", "http/1.1"][..]] {
        let r = explain_offering(host, 15443, "/", Some(sni), alpn);
        let conn = r.connection.as_ref().expect("an L4 port");
        assert_eq!(conn.outcome, ConnectionOutcome::NoChain, "{alpn:?}");
        let (chain, required) = conn.alpn_required.as_ref().expect("refused for its ALPN");
        assert_eq!(chain, sni);
        assert_eq!(required.len(), 5);
        let text = r.to_string();
        assert!(
            text.contains("requires one of the ALPN protocols istio,"),
            "{text}"
        );
    }
}

/// Each HTTPS server routes with its own table: through the chain the SNI selects, a host
/// only another server's VirtualService serves is not routed (404 NR); an SNI no server
/// takes is closed before any request (no filter chain match).
#[test]
fn an_https_request_routes_with_its_servers_own_table() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https-a, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 443, name: https-b, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: default}
spec:
  hosts: [b.example.com]
  gateways: [istio-system/edge]
  http:
  - route: [{destination: {host: productpage, port: {number: 9080}}}]
"#;
    let set = parse_str(yaml, "t.yaml").expect("parses");
    let opts = GatewayOptions {
        labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
        ..GatewayOptions::default()
    };
    let at = |host: &str, sni: &str| {
        let mut req = ExplainRequest::new(host);
        req.port = Some(443);
        explain_gateway(&set, &opts, &req, (Some(sni), &[])).expect("explains")
    };
    let own = at("b.example.com", "b.example.com");
    assert_eq!(
        own.request.as_ref().map(|r| r.outcome),
        Some(Outcome::Matched)
    );
    // a's table has no VirtualService: its blackhole virtual host answers 404 NR.
    let crossed = at("b.example.com", "a.example.com");
    assert_eq!(
        crossed.request.as_ref().map(|r| r.outcome),
        Some(Outcome::NoRoute)
    );
    let closed = at("c.example.com", "c.example.com");
    assert!(closed.request.is_none());
    let text = closed.to_string();
    assert!(text.contains("no filter chain"), "{text}");
}

/// PASSTHROUGH: the bound `tls` rule's chain, named by VirtualService and rule.
#[test]
fn passthrough_connections_name_their_tls_rule() {
    let r = explain("db.example", 8443, "/", Some("db.example"));
    let chain = (r.connection.as_ref())
        .and_then(|c| c.chain.as_ref())
        .expect("chain");
    assert_eq!(chain.virtual_service.as_deref(), Some("db.default"));
    assert_eq!(chain.rule.as_deref(), Some("tls[0]"));
}

/// A terminating port picks a server's filter chain by SNI as the proxy does (exact, then
/// wildcard, then a `*` server; pilot's `GetSNIHostsForServer` in pilot/pkg/model/gateway.go
/// and Envoy's server_names match): an SNI no server lists is closed before any request.
#[test]
fn a_tls_port_closes_an_sni_no_server_lists() {
    let r = explain("other.example", 443, "/productpage", None);
    assert_eq!(r.no_filter_chain.as_deref(), Some("other.example"));
    assert!(r.request.is_none(), "no request is read");
    assert!(
        r.to_string().contains("no filter chain match"),
        "{}",
        r.to_string()
    );
    // The host decides by default; an explicit SNI wins (curl --resolve with another Host).
    let by_sni = explain(
        "other.example",
        443,
        "/productpage",
        Some("bookinfo.example"),
    );
    assert!(by_sni.no_filter_chain.is_none());
    assert_eq!(by_sni.server.as_ref().map(|s| s.index), Some(1));
}

/// A PASSTHROUGH server next to the ISTIO_MUTUAL one on port 443 (pilot's
/// buildGatewayTCPBasedFilterChains, `translate::gateway::mixed`): its SNI is not terminated
/// and takes its `tls` rule; the other SNI is still terminated by its own chain.
#[test]
fn a_mixed_port_passes_its_passthrough_sni_through() {
    let r = explain("vault.example", 443, "/", Some("vault.example"));
    assert!(r.tls.is_none(), "{:?}", r.tls);
    assert!(r.to_string().contains("TLS: not terminated here"), "{r}");
    assert_eq!(
        r.server.as_ref().map(|s| s.mode.as_str()),
        Some("Passthrough")
    );
    let chain = (r.connection.as_ref())
        .and_then(|c| c.chain.as_ref())
        .expect("chain");
    assert_eq!(chain.virtual_service.as_deref(), Some("vault.default"));
    let r = explain("bookinfo.example", 443, "/productpage", None);
    assert!(
        r.tls.as_deref().is_some_and(|t| t.starts_with("Mesh")),
        "{:?}",
        r.tls
    );
    assert!(r.request.is_some());
}

/// A TLS-terminated TCP server next to an HTTPS one on 443 (createGatewayTCPFilterChainOpts
/// and createGatewayHTTPFilterChainOpts on one listener): the SNI's server decides whether
/// the report is a request through the HTTPS server's table or a connection through the TCP
/// server's chain, each with its own termination.
#[test]
fn a_terminated_tcp_server_next_to_an_https_one_is_explained_as_a_connection() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https-a, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 443, name: tls-db, protocol: TLS}
    hosts: [db.example.com]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a.example.com]
  gateways: [istio-system/edge]
  http:
  - route: [{destination: {host: productpage, port: {number: 9080}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db.example.com]
  gateways: [istio-system/edge]
  tcp:
  - route: [{destination: {host: db, port: {number: 5432}}}]
"#;
    let set = parse_str(yaml, "t.yaml").expect("parses");
    let opts = GatewayOptions {
        labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
        ..GatewayOptions::default()
    };
    let at = |host: &str| {
        let mut req = ExplainRequest::new(host);
        req.port = Some(443);
        explain_gateway(&set, &opts, &req, (Some(host), &[])).expect("explains")
    };
    let web = at("a.example.com");
    assert_eq!(
        web.request.as_ref().map(|r| r.outcome),
        Some(Outcome::Matched)
    );
    assert!(web.connection.is_none());
    let db = at("db.example.com");
    assert!(db.request.is_none(), "{db}");
    let connection = db.connection.as_ref().expect("a connection");
    assert_eq!(connection.outcome, ConnectionOutcome::Matched);
    let chain = connection.chain.as_ref().expect("chain");
    assert_eq!(chain.virtual_service.as_deref(), Some("db.default"));
    assert_eq!(chain.rule.as_deref(), Some("tcp[0]"));
    assert_eq!(chain.sni_hosts, ["db.example.com"]);
    assert!(
        db.tls.as_deref().is_some_and(|t| t.starts_with("Mesh")),
        "{:?}",
        db.tls
    );
    let server = db.server.as_ref().expect("server");
    assert_eq!(server.index, 1);
}
