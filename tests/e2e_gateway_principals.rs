//! AuthorizationPolicy principals at an ingress gateway whose clients carry certificates from a
//! CA outside the mesh, end to end: the real `trellis proxy --gateway`, an `OPTIONAL_MUTUAL`
//! HTTPS server whose `caCertificates` is a client CA made with real OpenSSL, and real curl.
//!
//! Such a certificate names the client by a DNS SAN (and its subject), not by a SPIFFE id.
//! Envoy's RBAC `authenticated` matcher tries every URI SAN, then every DNS SAN, then the
//! subject (`AuthenticatedMatcher::matches`, source/extensions/filters/common/rbac/matchers.cc),
//! and pilot writes `principals: ["*"]` as the regex `.+` but every other form with the
//! `spiffe://` prefix (`StringMatcherWithPrefix`, pilot/pkg/security/authz/matcher/string.go).
//! So at the gateway:
//! - `ALLOW principals: ["*"]` (Istio's "require a client certificate") lets a DNS-named client
//!   through and refuses one without a certificate (403);
//! - `DENY principals: ["client.example"]` means `spiffe://client.example`, so it does not
//!   refuse the client whose DNS SAN is `client.example`;
//! - a rule on paths alone still lets the certificate-less client reach `/public`.
//!
//! The simulator's gateway world found the departure this pins (seed 217): Trellis matched
//! principals on the SPIFFE id only.

use std::net::SocketAddr;

mod common;
use common::client_certs::{client_ca, client_cert};
use common::l4_peers::{certificate, scratch};
use common::{free_offset, https_status, spawn_gateway, wait_for};

/// The status of `GET <path>` at the gateway's `gw.example`, trusting `ca`, with `extra`
/// curl arguments.
fn status(port: u16, path: &str, ca: &std::path::Path, extra: &[&str]) -> String {
    https_status("gw.example", port, path, ca, extra)
}

#[test]
fn principals_match_a_gateway_clients_dns_name_as_envoy_does() {
    let dir = scratch("gw-principals", "dns");
    let (gw_cert, gw_key) = certificate(&dir, "gw.example");
    let ca = client_ca(&dir);
    let (client, client_key) = client_cert(&dir, &ca, "client", "client.example");
    let productpage =
        trellis_local_mesh::upstream::Upstream::start("productpage").expect("upstream");
    let offset = free_offset(&[443]);
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            r#"services:
  - host: productpage
    ports: [9080]
    endpoints: [{{address: "{productpage}"}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: Gateway
      metadata: {{name: edge, namespace: istio-system}}
      spec:
        selector: {{istio: ingressgateway}}
        servers:
          - port: {{number: 443, name: https, protocol: HTTPS}}
            hosts: [gw.example]
            tls: {{mode: OPTIONAL_MUTUAL, serverCertificate: {gw_cert}, privateKey: {gw_key}, caCertificates: {client_ca}}}
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: web, namespace: default}}
      spec:
        hosts: [gw.example]
        gateways: [istio-system/edge]
        http:
          - route: [{{destination: {{host: productpage, port: {{number: 9080}}}}}}]
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {{name: require-certificate, namespace: istio-system}}
      spec:
        selector: {{matchLabels: {{istio: ingressgateway}}}}
        action: ALLOW
        rules:
          - from: [{{source: {{principals: ["*"]}}}}]
          - to: [{{operation: {{paths: ["/public*"]}}}}]
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {{name: deny-spiffe-form, namespace: istio-system}}
      spec:
        selector: {{matchLabels: {{istio: ingressgateway}}}}
        action: DENY
        rules:
          - from: [{{source: {{principals: [client.example]}}}}]
"#,
            productpage = productpage.addr(),
            gw_cert = gw_cert.display(),
            gw_key = gw_key.display(),
            client_ca = ca.0.display(),
        ),
    )
    .expect("config");
    let log = dir.join("gateway.log");
    let _gateway = spawn_gateway(&config, offset, &log);
    let port = offset + 443;
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let with_cert = ["--cert", client.as_str(), "--key", client_key.as_str()];

    // The DNS-named client satisfies `principals: ["*"]`, and the DENY's SPIFFE form spares it.
    assert_eq!(
        status(port, "/productpage", &gw_cert, &with_cert),
        "200",
        "{}",
        logged()
    );
    // Without a certificate: no principal at all.
    assert_eq!(status(port, "/productpage", &gw_cert, &[]), "403");
    assert_eq!(
        status(port, "/public/x", &gw_cert, &[]),
        "200",
        "{}",
        logged()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
