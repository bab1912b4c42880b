//! Servers of different TLS modes on one gateway port (MergeGateways in
//! pilot/pkg/model/gateway.go merges every TLS server of a port; buildGatewayListeners in
//! pilot/pkg/networking/core/gateway.go gives each its own filter chain and
//! `DownstreamTlsContext`), the plain-text/TLS conflict pilot refuses, and the certificate
//! pins of `MUTUAL` servers (ApplyCredentialSDSToServerCommonTLSContext in
//! pilot/pkg/security/model/authentication.go).

use std::collections::BTreeMap;
use std::path::PathBuf;

use trellis_engine::transport::policy::ClientCertificates;

use super::{translate_gateway, GatewayOptions};
use crate::diag::Severity;
use crate::istio::parse_str;
use crate::translate::{Registry, Translation};

/// Certificate files with placeholder contents (the engine parses them, not translation).
pub(super) struct Files(PathBuf);

impl Files {
    pub(super) fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("trellis-mixed-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for f in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::write(dir.join(f), format!("{f} contents")).expect("write");
        }
        Files(dir)
    }

    /// The `tls` fields of a server reading them.
    pub(super) fn tls(&self, mode: &str, extra: &str) -> String {
        let p = |f: &str| self.0.join(f).display().to_string();
        format!(
            "{{mode: {mode}, serverCertificate: {}, privateKey: {}, caCertificates: {}{extra}}}",
            p("cert.pem"),
            p("key.pem"),
            p("ca.pem")
        )
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn run(servers: &[String]) -> Translation {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: istio-system}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{}",
        servers.concat()
    );
    let set = parse_str(&yaml, "test.yaml").expect("parses");
    let opts = GatewayOptions {
        labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
        has_identity: true,
        ..GatewayOptions::default()
    };
    translate_gateway(&set, &Registry::default(), &opts)
}

pub(super) fn server(
    number: u16,
    protocol: &str,
    name: &str,
    host: &str,
    tls: Option<&str>,
) -> String {
    let tls = tls.map_or(String::new(), |t| format!("    tls: {t}\n"));
    format!("  - port: {{number: {number}, name: {name}, protocol: {protocol}}}\n    hosts: [{host}]\n{tls}")
}

/// A `tls` rule passing p.example.com through a gateway `gw`, and its ServiceEntry.
pub(super) const PASSED_P: &str = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: p, namespace: istio-system}\nspec:\n  hosts: [p.example.com]\n  gateways: [gw]\n  tls:\n  - match: [{sniHosts: [p.example.com]}]\n    route: [{destination: {host: p.example.com, port: {number: 443}}}]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: p, namespace: istio-system}\nspec:\n  hosts: [p.example.com]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}]\n";

/// reviews as a mesh-internal host (AUTO_PASSTHROUGH chains are built for such hosts only).
const REVIEWS_ENTRY: &str = "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.2}]\n";

pub(super) fn errors(t: &Translation) -> Vec<&str> {
    (t.diagnostics.iter())
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.message.as_str())
        .collect()
}

/// A SIMPLE server for a.example.com, a MUTUAL one for b.example.com, an OPTIONAL_MUTUAL one
/// and an ISTIO_MUTUAL one, all on port 443: one listener, one chain each in server order,
/// each with its own client requirement (BuildListenerTLSContext per server).
#[test]
fn terminating_servers_of_different_modes_share_a_port_each_with_its_own_chain() {
    let files = Files::new("modes");
    let t = run(&[
        server(
            443,
            "HTTPS",
            "a",
            "a.example.com",
            Some(&files.tls("SIMPLE", "")),
        ),
        server(
            443,
            "HTTPS",
            "b",
            "b.example.com",
            Some(&files.tls("MUTUAL", "")),
        ),
        server(
            443,
            "HTTPS",
            "c",
            "c.example.com",
            Some(&files.tls("OPTIONAL_MUTUAL", "")),
        ),
        server(
            443,
            "HTTPS",
            "d",
            "d.example.com",
            Some("{mode: ISTIO_MUTUAL}"),
        ),
    ]);
    assert!(errors(&t).is_empty(), "{:?}", errors(&t));
    assert_eq!(t.config.listeners.len(), 1);
    let tls = t.config.listeners[0].tls.as_ref().expect("terminates");
    let chains: Vec<(&str, &ClientCertificates)> = (tls.servers.iter())
        .map(|s| (s.hosts[0].as_str(), &s.clients))
        .collect();
    assert_eq!(
        chains,
        [
            ("a.example.com", &ClientCertificates::NotRequested),
            ("b.example.com", &ClientCertificates::Required),
            ("c.example.com", &ClientCertificates::Optional),
            ("d.example.com", &ClientCertificates::Mesh),
        ]
    );
    assert_eq!(tls.servers[0].client_ca_pem, None, "SIMPLE reads no CA");
    assert_eq!(
        tls.servers[1].client_ca_pem.as_deref(),
        Some("ca.pem contents")
    );
}

/// canMergeProtocols in MergeGateways ("conflict with existing server") and
/// buildGatewayListeners' rule: a port is plain text or TLS, never both. The later server is
/// refused with that reason, in either order, and the earlier one is still served.
#[test]
fn plain_text_and_tls_servers_on_one_port_are_refused_with_pilots_reason() {
    let files = Files::new("plain");
    let https = server(
        8443,
        "HTTPS",
        "https",
        "a.example.com",
        Some(&files.tls("SIMPLE", "")),
    );
    let http = server(8443, "HTTP", "http", "b.example.com", None);
    for (first, then, kept) in [(&http, &https, "plain"), (&https, &http, "tls")] {
        let t = run(&[first.clone(), then.clone()]);
        let errors = errors(&t);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("conflict with the port's existing"),
            "{}",
            errors[0]
        );
        assert!(errors[0].contains("never both"), "{}", errors[0]);
        assert!(errors[0].contains("canMergeProtocols"), "{}", errors[0]);
        assert_eq!(t.config.listeners.len(), 1);
        assert_eq!(t.config.listeners[0].tls.is_some(), kept == "tls");
    }
    let tcp = server(8443, "TCP", "tcp", "\"*\"", None);
    let t = run(&[tcp, https.clone()]);
    assert!(errors(&t)[0].contains("plain-text TCP"), "{:?}", errors(&t));
}

/// verifyCertificateSpki / verifyCertificateHash on a MUTUAL server are decoded into its
/// chain's pins; one that does not decode refuses the server (Envoy's "Invalid base64-encoded
/// SHA-256"); on a SIMPLE server they are ignored with a warning (no certificate is asked).
#[test]
fn certificate_pins_of_mutual_servers_are_kept_and_bad_ones_refused() {
    let files = Files::new("pins");
    let spki = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let hash = "AB".repeat(32);
    let pinned =
        format!(", verifyCertificateSpki: [\"{spki}\"], verifyCertificateHash: [\"{hash}\"]");
    let t = run(&[
        server(
            443,
            "HTTPS",
            "a",
            "a.example.com",
            Some(&files.tls("SIMPLE", &pinned)),
        ),
        server(
            443,
            "HTTPS",
            "b",
            "b.example.com",
            Some(&files.tls("MUTUAL", &pinned)),
        ),
    ]);
    assert!(errors(&t).is_empty(), "{:?}", errors(&t));
    let tls = t.config.listeners[0].tls.as_ref().expect("terminates");
    assert!(tls.servers[0].pins.is_empty());
    assert_eq!(tls.servers[1].pins.spki, vec![[0u8; 32]]);
    assert_eq!(tls.servers[1].pins.hash, vec![[0xab; 32]]);
    let warning = (t.diagnostics.iter())
        .find(|d| d.severity == Severity::Warning && d.message.contains("verifyCertificateSpki"))
        .expect("SIMPLE's pins are reported");
    assert!(
        warning.message.contains("servers[0]"),
        "{}",
        warning.message
    );

    let bad = ", verifyCertificateSpki: [\"not-a-digest\"]";
    let t = run(&[server(
        443,
        "HTTPS",
        "b",
        "b.example.com",
        Some(&files.tls("MUTUAL", bad)),
    )]);
    let errors = errors(&t);
    assert!(t.config.listeners.is_empty());
    assert!(
        errors
            .iter()
            .any(|e| e.contains("verifyCertificateSpki \"not-a-digest\"")),
        "{errors:?}"
    );
}

/// Terminated HTTPS next to PASSTHROUGH on one port (buildGatewayTCPBasedFilterChains: both
/// kinds of chain on one listener): the listener terminates a.example.com and lists
/// p.example.com as a passthrough chain, whose bound `tls` rule is the listener's L4 chain;
/// without a bound rule pilot builds the passthrough server no chain, so nothing is passed
/// through (the catch-all that closes stays, taking only the passthrough SNI). AUTO_PASSTHROUGH
/// next to HTTPS is passed through the same way, its chains named by each service's SNI
/// (builtAutoPassthroughFilterChains), not by the server's hosts.
#[test]
fn terminated_and_passthrough_servers_share_a_port_by_sni() {
    let files = Files::new("pass");
    let https = server(
        443,
        "HTTPS",
        "a",
        "a.example.com",
        Some(&files.tls("SIMPLE", "")),
    );
    let passthrough = server(
        443,
        "TLS",
        "p",
        "p.example.com",
        Some("{mode: PASSTHROUGH}"),
    );
    for servers in [
        [https.clone(), passthrough.clone()],
        [passthrough.clone(), https.clone()],
    ] {
        let mut servers = servers.to_vec();
        servers.push(PASSED_P.to_string());
        let t = run(&servers);
        assert!(errors(&t).is_empty(), "{:?}", errors(&t));
        assert_eq!(t.config.listeners.len(), 1);
        let listener = &t.config.listeners[0];
        let tls = listener.tls.as_ref().expect("terminates a.example.com");
        assert_eq!(tls.servers.len(), 1);
        assert_eq!(tls.servers[0].hosts, ["a.example.com"]);
        assert_eq!(tls.passthrough, [vec!["p.example.com".to_string()]]);
        let chains: Vec<_> = (t.config.tcp_routes.iter())
            .filter(|r| r.listener.as_deref() == Some(listener.name.as_str()))
            .collect();
        assert_eq!(chains.len(), 1, "{chains:?}");
        assert_eq!(chains[0].sni_hosts, ["p.example.com"]);
    }

    let t = run(&[https.clone(), passthrough]);
    let listener = &t.config.listeners[0];
    let chains: Vec<_> = (t.config.tcp_routes.iter())
        .filter(|r| r.listener.as_deref() == Some(listener.name.as_str()))
        .collect();
    assert_eq!(chains.len(), 1);
    assert!(chains[0].destinations.is_empty(), "closes");
    let tls = listener.tls.as_ref().expect("terminates a.example.com");
    assert!(tls.passthrough.is_empty(), "{:?}", tls.passthrough);
    assert_eq!(
        chains[0].sni_hosts,
        ["p.example.com"],
        "never a terminated connection"
    );

    // AUTO_PASSTHROUGH next to HTTPS: its hosts are passed through too (in either order the
    // listener terminates the HTTPS server's), its chains by each service's SNI.
    let auto = server(
        443,
        "TLS",
        "e",
        "\"*.local\"",
        Some("{mode: AUTO_PASSTHROUGH}"),
    );
    for servers in [[https.clone(), auto.clone()], [auto.clone(), https.clone()]] {
        let mut servers = servers.to_vec();
        servers.push(REVIEWS_ENTRY.to_string());
        let t = run(&servers);
        assert!(errors(&t).is_empty(), "{:?}", errors(&t));
        let listener = &t.config.listeners[0];
        let tls = listener.tls.as_ref().expect("terminates a.example.com");
        assert_eq!(tls.servers[0].hosts, ["a.example.com"]);
        let sni = "outbound_.9080_._.reviews.default.svc.cluster.local";
        assert!(
            (tls.passthrough.iter()).any(|names| names == &[sni.to_string()]),
            "{:?}",
            tls.passthrough
        );
        assert!(
            (t.config.tcp_routes.iter()).any(|r| r.sni_hosts == [sni]),
            "{:?}",
            t.config.tcp_routes
        );
    }
}

/// AUTO_PASSTHROUGH next to PASSTHROUGH on one port, in either order
/// (buildGatewayTCPBasedFilterChains: builtAutoPassthroughFilterChains for the one,
/// createGatewayTCPFilterChainOpts for the other, on one listener): a mesh client's SNI
/// `outbound_...` with Istio's ALPN reaches the service's SNI-DNAT cluster, p.example.com the
/// bound `tls` rule's destination, and any other name no chain (closed), as the engine's own
/// filter-chain match decides.
#[test]
fn auto_passthrough_and_passthrough_servers_share_a_port_by_sni() {
    use trellis_engine::proxy::choose_chain;
    let auto = server(
        15443,
        "TLS",
        "auto",
        "\"*.local\"",
        Some("{mode: AUTO_PASSTHROUGH}"),
    );
    let passthrough = server(
        15443,
        "TLS",
        "p",
        "p.example.com",
        Some("{mode: PASSTHROUGH}"),
    );
    for servers in [
        [auto.clone(), passthrough.clone()],
        [passthrough.clone(), auto.clone()],
    ] {
        let mut servers = servers.to_vec();
        servers.push(PASSED_P.to_string());
        servers.push(REVIEWS_ENTRY.to_string());
        let t = run(&servers);
        assert!(errors(&t).is_empty(), "{:?}", errors(&t));
        assert_eq!(t.config.listeners.len(), 1);
        let listener = &t.config.listeners[0];
        assert!(listener.tls.is_none(), "nothing is terminated");
        let routes = &t.config.tcp_routes;
        let dst = listener.address;
        let choose = |sni: &str, alpn: &[&str]| {
            let alpn: Vec<String> = alpn.iter().map(|a| a.to_string()).collect();
            let on = (listener.name.as_str(), false);
            let choice = choose_chain(routes, on, dst, &BTreeMap::new(), (Some(sni), &alpn), None);
            choice
                .chosen
                .map(|i| routes[i].destinations[0].cluster.clone())
        };
        assert_eq!(
            choose(
                "outbound_.9080_._.reviews.default.svc.cluster.local",
                &["istio"]
            )
            .as_deref(),
            Some("outbound_.9080_._.reviews.default.svc.cluster.local")
        );
        assert_eq!(
            choose("p.example.com", &[]).as_deref(),
            Some("outbound|443||p.example.com")
        );
        assert_eq!(choose("other.example.com", &["istio"]), None);
        assert_eq!(
            choose(
                "outbound_.9080_._.reviews.default.svc.cluster.local",
                &["h2"]
            ),
            None,
            "a mesh name without Istio's ALPN"
        );
    }
}

/// A passthrough chain is named by its `tls` rule's `sniHosts` as written, not by its
/// server's hosts (buildGatewayNetworkFiltersFromTLSRoutes: `sniHosts: match.SniHosts`;
/// pickMatchingGatewayHosts only asks that the VirtualService's hosts meet the server's): a
/// rule for `*.example.com` bound to a passthrough server of b.example.com passes
/// q.example.com through, ahead of the terminating `*` server's catch-all chain. Found by the
/// simulator's gateway world (seed 41), where Trellis terminated it.
#[test]
fn a_passthrough_chain_is_named_by_its_sni_hosts_not_its_servers_hosts() {
    use trellis_engine::transport::tls::termination::server_for_sni;
    let files = Files::new("pass-sni");
    let rule = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: wide, namespace: istio-system}\nspec:\n  hosts: [\"*.example.com\"]\n  gateways: [gw]\n  tls:\n  - match: [{sniHosts: [\"*.example.com\"]}]\n    route: [{destination: {host: p.example.com, port: {number: 443}}}]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: p, namespace: istio-system}\nspec:\n  hosts: [p.example.com]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}]\n";
    let t = run(&[
        server(443, "HTTPS", "all", "\"*\"", Some(&files.tls("SIMPLE", ""))),
        server(
            443,
            "TLS",
            "p",
            "b.example.com",
            Some("{mode: PASSTHROUGH}"),
        ),
        rule.to_string(),
    ]);
    assert!(errors(&t).is_empty(), "{:?}", errors(&t));
    let tls = t.config.listeners[0].tls.as_ref().expect("terminates *");
    assert_eq!(tls.passthrough, [vec!["*.example.com".to_string()]]);
    // The engine ranks the terminating servers' names and the passthrough chains' together:
    // q.example.com meets the passthrough wildcard before the `*` catch-all.
    let mut names: Vec<Vec<String>> = tls.servers.iter().map(|s| s.hosts.clone()).collect();
    names.extend(tls.passthrough.iter().cloned());
    assert_eq!(server_for_sni(&names, Some("q.example.com")), Some(1));
    assert_eq!(server_for_sni(&names, Some("c.other.org")), Some(0));
}
