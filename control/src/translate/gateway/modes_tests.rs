//! The Gateway TLS modes beyond SIMPLE/MUTUAL/PASSTHROUGH: `ISTIO_MUTUAL` and `OPTIONAL_MUTUAL`
//! (buildGatewayListenerTLSContext in pilot/pkg/networking/core/gateway.go, whose contexts
//! BuildListenerTLSContext in pilot/pkg/networking/core/tls.go sets), and `AUTO_PASSTHROUGH`
//! (builtAutoPassthroughFilterChains in gateway.go, model.BuildDNSSrvSubsetKey and
//! ParseSubsetKey in pilot/pkg/model/service.go).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use trellis_engine::config::UpstreamTls;
use trellis_engine::transport::policy::ClientCertificates;

use super::auto_passthrough::{parse_sni_key, sni_key};
use super::{translate_gateway, GatewayOptions};
use crate::diag::Severity;
use crate::istio::parse_str;
use crate::translate::{Registry, Service, ServiceEndpoint, Translation};

fn registry() -> Registry {
    let ip = |last| IpAddr::V4(Ipv4Addr::new(10, 0, 0, last));
    Registry {
        services: vec![
            Service::kubernetes("reviews", "default", &[9080])
                .with_endpoint(ServiceEndpoint::new(ip(1), &[("version", "v1")]))
                .with_endpoint(ServiceEndpoint::new(ip(2), &[("version", "v2")])),
            Service::kubernetes("ratings", "default", &[9080])
                .with_endpoint(ServiceEndpoint::new(ip(3), &[("version", "v1")])),
        ],
        ..Default::default()
    }
}

fn opts(has_identity: bool) -> GatewayOptions {
    GatewayOptions {
        labels: BTreeMap::from([("istio".to_string(), "eastwestgateway".to_string())]),
        has_identity,
        ..GatewayOptions::default()
    }
}

fn run(yaml: &str, has_identity: bool) -> Translation {
    let set = parse_str(yaml, "test.yaml").expect("parses");
    translate_gateway(&set, &registry(), &opts(has_identity))
}

fn gateway(servers: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: istio-system}}\nspec:\n  selector: {{istio: eastwestgateway}}\n  servers:\n{servers}\n---\n"
    )
}

const BOUND_HTTP: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [\"*\"]\n  gateways: [istio-system/gw]\n  http:\n  - route:\n    - destination: {host: reviews}\n---\n";

/// ISTIO_MUTUAL on an HTTPS server: the port terminates with the proxy's mesh identity and
/// requires a client certificate of the mesh (`ROOTCA` validation, require_client_certificate),
/// the server's `subjectAltNames` restricting the client ids; its requests are routed by the
/// bound VirtualService as on a SIMPLE port (createGatewayHTTPFilterChainOpts).
#[test]
fn istio_mutual_terminates_with_the_mesh_identity_then_routes_http() {
    let yaml = gateway(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://cluster.local/ns/default/sa/client]}\n",
    ) + BOUND_HTTP;
    let t = run(&yaml, true);
    let errors: Vec<_> = (t.diagnostics.iter())
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let listener = &t.config.listeners[0];
    let tls = listener.tls.as_ref().expect("the port terminates TLS");
    assert_eq!(tls.servers[0].clients, ClientCertificates::Mesh);
    assert_eq!(
        tls.servers[0].subject_alt_names,
        vec!["spiffe://cluster.local/ns/default/sa/client".to_string()]
    );
    assert_eq!(tls.servers[0].hosts, vec!["*".to_string()]);
    assert!(tls.servers[0].chain_pem.is_empty() && tls.servers[0].client_ca_pem.is_none());
    let table = t
        .config
        .route_table(&listener.route_table)
        .expect("route table");
    assert_eq!(table.virtual_hosts.len(), 1, "the bound VirtualService");
}

/// Without a mesh identity an ISTIO_MUTUAL server cannot be served: refused with an error
/// naming the Gateway and the server, never served in plain text.
#[test]
fn istio_mutual_without_an_identity_is_refused_naming_the_gateway() {
    let yaml = gateway(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: ISTIO_MUTUAL}\n",
    ) + BOUND_HTTP;
    let t = run(&yaml, false);
    assert!(t.config.listeners.is_empty());
    let d = (t.diagnostics.iter())
        .find(|d| d.severity == Severity::Error)
        .expect("an error");
    assert!(d.message.contains("ISTIO_MUTUAL"), "{}", d.message);
    assert!(d.message.contains("identity"), "{}", d.message);
    let resource = d.resource.as_deref().unwrap_or_default();
    assert!(resource.contains("istio-system/gw"), "{resource}");
}

/// istiod's validation refuses certificate files on an ISTIO_MUTUAL server
/// (validateTLSOptions in pkg/config/validation/validation.go): so does Trellis.
#[test]
fn istio_mutual_with_files_of_its_own_is_refused() {
    let yaml = gateway(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: ISTIO_MUTUAL, serverCertificate: /etc/cert.pem}\n",
    );
    let t = run(&yaml, true);
    assert!(t.config.listeners.is_empty());
    assert!(t.diagnostics.iter().any(|d| d
        .message
        .contains("ISTIO_MUTUAL TLS cannot have tls.serverCertificate")));
}

/// ISTIO_MUTUAL on a TLS server terminates, then the bound `tcp` rule relays
/// (createGatewayTCPFilterChainOpts: a non-passthrough TLS server).
#[test]
fn istio_mutual_on_a_tls_server_terminates_then_takes_tcp_routes() {
    let yaml = gateway(
        "  - port: {number: 15443, name: tls, protocol: TLS}\n    hosts: [\"*\"]\n    tls: {mode: ISTIO_MUTUAL}\n",
    ) + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db, namespace: default}\nspec:\n  hosts: [\"*\"]\n  gateways: [istio-system/gw]\n  tcp:\n  - route:\n    - destination: {host: ratings, port: {number: 9080}}\n";
    let t = run(&yaml, true);
    let listener = &t.config.listeners[0];
    assert!(matches!(
        listener.tls.as_ref().map(|t| &t.servers[0].clients),
        Some(ClientCertificates::Mesh)
    ));
    let chains: Vec<_> = (t.config.tcp_routes.iter())
        .filter(|r| r.listener.as_deref() == Some(listener.name.as_str()))
        .collect();
    assert_eq!(chains.len(), 1);
    assert_eq!(
        chains[0].destinations[0].cluster,
        "outbound|9080||ratings.default.svc.cluster.local"
    );
}

/// OPTIONAL_MUTUAL reads the same files as MUTUAL (caCertificates required), and asks the
/// engine to accept a client without a certificate (require_client_certificate false).
#[test]
fn optional_mutual_reads_its_files_and_makes_the_client_certificate_optional() {
    let dir = std::env::temp_dir().join(format!("trellis-optmutual-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for f in ["cert.pem", "key.pem", "ca.pem"] {
        std::fs::write(dir.join(f), format!("{f} contents")).expect("write");
    }
    let path = |f: &str| dir.join(f).display().to_string();
    let yaml = gateway(&format!(
        "  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [\"*\"]\n    tls: {{mode: OPTIONAL_MUTUAL, serverCertificate: {}, privateKey: {}, caCertificates: {}}}\n",
        path("cert.pem"),
        path("key.pem"),
        path("ca.pem")
    )) + BOUND_HTTP;
    let t = run(&yaml, false);
    let missing_ca = gateway(&format!(
        "  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [\"*\"]\n    tls: {{mode: OPTIONAL_MUTUAL, serverCertificate: {}, privateKey: {}}}\n",
        path("cert.pem"),
        path("key.pem")
    ));
    let refused = run(&missing_ca, false);
    std::fs::remove_dir_all(&dir).expect("clean up");
    let tls = t.config.listeners[0].tls.as_ref().expect("terminates");
    assert_eq!(tls.servers[0].clients, ClientCertificates::Optional);
    assert_eq!(
        tls.servers[0].client_ca_pem.as_deref(),
        Some("ca.pem contents")
    );
    assert_eq!(tls.servers[0].chain_pem, "cert.pem contents");
    assert!(refused.config.listeners.is_empty());
    assert!(refused
        .diagnostics
        .iter()
        .any(|d| d.message.contains("tls.caCertificates is required")));
}

const SUBSETS: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec:\n  host: reviews\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\n";

/// AUTO_PASSTHROUGH: one chain per service port the servers' hosts take, and one per subset of
/// its DestinationRule, matched on `outbound_.<port>_.<subset>_.<host>`, each to an SNI-DNAT
/// cluster with the mesh cluster's endpoints and no TLS of its own
/// (builtAutoPassthroughFilterChains; SniDnatClusterMode in cluster_builder.go): the client's
/// own mTLS passes through. Each chain requires one of `allIstioMtlsALPNs`
/// (pilot/pkg/networking/core/listener.go) as its `applicationProtocols`.
#[test]
fn auto_passthrough_routes_each_service_port_and_subset_by_its_sni_key() {
    let yaml = gateway(
        "  - port: {number: 15443, name: tls, protocol: TLS}\n    hosts: [\"*.local\"]\n    tls: {mode: AUTO_PASSTHROUGH}\n",
    ) + SUBSETS;
    let t = run(&yaml, false);
    let listener = &t.config.listeners[0];
    assert!(listener.tls.is_none(), "never terminated");
    let mut snis: Vec<&str> = (t.config.tcp_routes.iter())
        .filter(|r| r.listener.as_deref() == Some(listener.name.as_str()))
        .map(|r| {
            assert_eq!(r.sni_hosts.len(), 1);
            assert_eq!(
                r.application_protocols,
                [
                    "istio",
                    "istio-peer-exchange",
                    "istio-http/1.0",
                    "istio-http/1.1",
                    "istio-h2"
                ]
            );
            assert_eq!(
                r.destinations[0].cluster, r.sni_hosts[0],
                "the SNI is the cluster"
            );
            r.sni_hosts[0].as_str()
        })
        .collect();
    snis.sort_unstable();
    assert_eq!(
        snis,
        vec![
            "outbound_.9080_._.ratings.default.svc.cluster.local",
            "outbound_.9080_._.reviews.default.svc.cluster.local",
            "outbound_.9080_.v1_.reviews.default.svc.cluster.local",
            "outbound_.9080_.v2_.reviews.default.svc.cluster.local",
        ]
    );
    let cluster = |name: &str| {
        (t.config.clusters.iter())
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("cluster {name}"))
    };
    let dnat = cluster("outbound_.9080_.v2_.reviews.default.svc.cluster.local");
    let mesh = cluster("outbound|9080|v2|reviews.default.svc.cluster.local");
    assert_eq!(dnat.tls, UpstreamTls::Disable, "no TLS of its own");
    assert!(matches!(mesh.tls, UpstreamTls::IstioMutual { .. }));
    assert_eq!(dnat.endpoints, mesh.endpoints);
    assert_eq!(dnat.endpoints.len(), 1, "the subset's endpoints only");
}

/// Only the services the servers' hosts take (`service.Hostname.SubsetOf(host)`), never a
/// MESH_EXTERNAL ServiceEntry's; a MESH_INTERNAL one is served. With none, the port's
/// connections are closed (no chain), and a warning says so.
#[test]
fn auto_passthrough_takes_the_servers_hosts_and_skips_mesh_external_services() {
    let entries = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: default}\nspec:\n  hosts: [api.example.local]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  endpoints: [{address: 10.1.0.1}]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: vm, namespace: default}\nspec:\n  hosts: [vm.example.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{number: 8443, name: tls, protocol: TLS}]\n  endpoints: [{address: 10.1.0.2}]\n---\n";
    let yaml = gateway(
        "  - port: {number: 15443, name: tls, protocol: TLS}\n    hosts: [\"*.example.local\", \"istio-system/ratings.default.svc.cluster.local\"]\n    tls: {mode: AUTO_PASSTHROUGH}\n",
    ) + entries;
    let t = run(&yaml, false);
    let mut snis: Vec<&str> = (t.config.tcp_routes.iter())
        .flat_map(|r| r.sni_hosts.iter().map(String::as_str))
        .collect();
    snis.sort_unstable();
    assert_eq!(
        snis,
        vec![
            "outbound_.8443_._.vm.example.local",
            "outbound_.9080_._.ratings.default.svc.cluster.local",
        ]
    );
    let none = run(
        &gateway(
            "  - port: {number: 15443, name: tls, protocol: TLS}\n    hosts: [nothing.example]\n    tls: {mode: AUTO_PASSTHROUGH}\n",
        ),
        false,
    );
    // No service under its hosts: no chain, so no listener (pilot omits a listener without
    // chains), and the translation says why.
    assert!(none.config.tcp_routes.is_empty());
    assert!(!none
        .config
        .listeners
        .iter()
        .any(|l| l.address.port() == 15443));
    assert!(none
        .diagnostics
        .iter()
        .any(|d| d.message.contains("AUTO_PASSTHROUGH")));
}

/// The SNI key is model.BuildDNSSrvSubsetKey's, and parse_sni_key its ParseSubsetKey inverse;
/// anything else is no key.
#[test]
fn sni_keys_follow_build_dns_srv_subset_key() {
    let key = sni_key("reviews.default.svc.cluster.local", 9080, Some("v1"));
    assert_eq!(key, "outbound_.9080_.v1_.reviews.default.svc.cluster.local");
    assert_eq!(
        parse_sni_key(&key),
        Some((9080, Some("v1"), "reviews.default.svc.cluster.local"))
    );
    assert_eq!(
        parse_sni_key("outbound_.80_._.a.b"),
        Some((80, None, "a.b"))
    );
    for bad in [
        "reviews.default.svc.cluster.local",
        "outbound|9080||reviews",
        "outbound_.x_._.a",
        "outbound_.80_._.",
        "inbound_.80_._.a",
    ] {
        assert_eq!(parse_sni_key(bad), None, "{bad}");
    }
}

/// The gateway's AuthorizationPolicies guard the chains of an ISTIO_MUTUAL TLS server (the
/// verified peer is their principal), but not AUTO_PASSTHROUGH chains, which pilot builds
/// without authz (builtAutoPassthroughFilterChains): the destination's sidecar decides.
#[test]
fn policies_guard_istio_mutual_chains_but_not_auto_passthrough_ones() {
    let yaml = gateway(
        "  - port: {number: 9443, name: tls, protocol: TLS}\n    hosts: [\"*\"]\n    tls: {mode: ISTIO_MUTUAL}\n  - port: {number: 15443, name: auto, protocol: TLS}\n    hosts: [\"*.local\"]\n    tls: {mode: AUTO_PASSTHROUGH}\n",
    ) + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db, namespace: default}\nspec:\n  hosts: [\"*\"]\n  gateways: [istio-system/gw]\n  tcp:\n  - route:\n    - destination: {host: ratings, port: {number: 9080}}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny, namespace: istio-system}\nspec:\n  selector: {matchLabels: {istio: eastwestgateway}}\n  action: DENY\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/default/sa/denied]}}]\n";
    let set = parse_str(&yaml, "t.yaml").expect("parses");
    let opts = opts(true);
    let mut config = translate_gateway(&set, &registry(), &opts).config;
    super::security::secure_listeners(
        &mut config,
        &set,
        &opts,
        None,
        &crate::jwks_resolver::NoFetch,
    );
    let (auto, mutual): (Vec<_>, Vec<_>) =
        (config.tcp_routes.iter()).partition(|r| super::auto_passthrough::is_chain(r));
    assert_eq!(auto.len(), 2, "reviews and ratings");
    assert!(auto.iter().all(|r| r.authorization.is_none()));
    assert_eq!(mutual.len(), 1);
    assert!(mutual[0].authorization.is_some());
}

/// pilot's gateway XFCC (`buildGatewayConnectionManager`, pilot/pkg/networking/core/gateway.go):
/// SANITIZE_SET unless `gatewayTopology.forwardClientCertDetails` names another mode
/// (UNDEFINED keeps the default); `MeshConfigToEnvoyForwardClientCertDetails` maps names one
/// to one.
#[test]
fn gateway_xfcc_defaults_to_sanitize_set() {
    use super::forward_client_cert;
    use trellis_engine::config::ForwardClientCert as F;
    let mut diags = Vec::new();
    assert_eq!(forward_client_cert(None, &mut diags), F::SanitizeSet);
    assert_eq!(
        forward_client_cert(Some("UNDEFINED"), &mut diags),
        F::SanitizeSet
    );
    assert_eq!(
        forward_client_cert(Some("SANITIZE"), &mut diags),
        F::Sanitize
    );
    assert_eq!(
        forward_client_cert(Some("FORWARD_ONLY"), &mut diags),
        F::ForwardOnly
    );
    assert_eq!(
        forward_client_cert(Some("APPEND_FORWARD"), &mut diags),
        F::AppendForward
    );
    assert_eq!(
        forward_client_cert(Some("ALWAYS_FORWARD_ONLY"), &mut diags),
        F::AlwaysForwardOnly
    );
    assert!(diags.is_empty());
    assert_eq!(
        forward_client_cert(Some("SOMETIMES"), &mut diags),
        F::SanitizeSet
    );
    assert_eq!(diags.len(), 1);
}

/// buildGatewayListeners gives each HTTPS server its own filter chain and RDS, named by
/// gatewayRDSRouteName (pilot/pkg/model/gateway.go) `https.<port>.<portName>.<gw>.<ns>`: a
/// VirtualService bound to one server's hosts is only in that server's table, and each chain
/// (certificate) names its table. A server of protocol HTTP with TLS keeps `http.<port>`.
#[test]
fn each_https_server_routes_with_its_own_table() {
    let yaml = gateway(
        "  - port: {number: 443, name: https-a, protocol: HTTPS}\n    hosts: [a.example.com]\n    tls: {mode: ISTIO_MUTUAL}\n  - port: {number: 443, name: https-b, protocol: HTTPS}\n    hosts: [b.example.com]\n    tls: {mode: ISTIO_MUTUAL}\n  - port: {number: 8443, name: web, protocol: HTTP}\n    hosts: [c.example.com]\n    tls: {mode: ISTIO_MUTUAL}\n",
    ) + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: default}\nspec:\n  hosts: [a.example.com, c.example.com]\n  gateways: [istio-system/gw]\n  http:\n  - route:\n    - destination: {host: reviews}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b, namespace: default}\nspec:\n  hosts: [b.example.com]\n  gateways: [istio-system/gw]\n  http:\n  - route:\n    - destination: {host: ratings}\n---\n";
    let t = run(&yaml, true);
    let listener = (t.config.listeners.iter())
        .find(|l| l.address.port() == 443)
        .expect("443");
    let tls = listener.tls.as_ref().expect("terminated");
    let tables: Vec<&str> = (tls.servers.iter())
        .map(|s| s.route_table.as_deref().expect("its own table"))
        .collect();
    assert_eq!(
        tables,
        [
            "https.443.https-a.gw.istio-system",
            "https.443.https-b.gw.istio-system"
        ]
    );
    assert_eq!(listener.route_table, tables[0]);
    let domains = |name: &str| -> Vec<String> {
        let table = t.config.route_table(name).expect("table");
        (table.virtual_hosts.iter())
            .flat_map(|v| v.domains.clone())
            .collect()
    };
    assert_eq!(domains(tables[0]), ["a.example.com"]);
    assert_eq!(domains(tables[1]), ["b.example.com"]);
    let web = (t.config.listeners.iter())
        .find(|l| l.address.port() == 8443)
        .expect("8443");
    assert_eq!(web.route_table, "http.8443");
    assert_eq!(domains("http.8443"), ["c.example.com"]);
}
