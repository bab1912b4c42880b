//! The Gateway TLS modes once refused, end to end against the real `trellis proxy --gateway`,
//! with clients nobody here wrote (Python's `ssl`, curl, `openssl s_client`) and certificates
//! from the built-in CA (`trellis ca init` / `issue`):
//!
//! - `ISTIO_MUTUAL` on an HTTPS server: the gateway presents its own workload certificate and
//!   requires a client certificate of the mesh; a client without one, or with one of another
//!   CA, is refused; a mesh client is routed by the bound VirtualService, and its verified
//!   SPIFFE id is the principal the gateway's AuthorizationPolicy matches (a DENY on one
//!   service account answers 403 to it only). The same on a TLS server, then TCP.
//! - `OPTIONAL_MUTUAL` with certificate files: curl without a client certificate is served, with
//!   a mesh certificate (the server's `caCertificates` is the mesh root) too, and its principal
//!   is policy's; a certificate of another CA fails the handshake.
//! - `AUTO_PASSTHROUGH`: `openssl s_client` with the SNI `outbound_.8443_._.<host>` (or a
//!   subset's) and one of Istio's mTLS ALPNs (`-alpn istio`) completes its handshake with that
//!   service's `openssl s_server`, through the gateway that never terminates; an unknown SNI,
//!   or the right one offering no ALPN or only `h2`, is closed and logged (NR).
//!
//! pilot: buildGatewayListenerTLSContext and builtAutoPassthroughFilterChains in
//! pilot/pkg/networking/core/gateway.go, BuildListenerTLSContext in .../core/tls.go.

use std::net::SocketAddr;
use std::path::Path;

mod common;
use common::l4_peers::{
    certificate, identity_yaml, issue, line_echo, mtls_exchange, s_server, scratch,
    subject_offering, tls_exchange, wait_for_log,
};
use common::{free_offset, https_status, spawn_gateway, wait_for};

/// One `GET /productpage` over TLS with Python's `ssl` ([`tls_exchange`]), presenting
/// `client` when given: the status line, `REFUSED` or `CLOSED`.
fn https_get(port: u16, root: &Path, client: Option<(&Path, &Path)>) -> String {
    let request =
        "GET /productpage HTTP/1.1\r\nHost: bookinfo.example\r\nConnection: close\r\n\r\n";
    tls_exchange(port, root, client, request)
}

/// `curl` to `https://gw.example:<port>/productpage` trusting `ca`, with `extra` arguments:
/// the status code (`000` when no answer came).
fn curl_code(port: u16, ca: &Path, extra: &[&str]) -> String {
    https_status("gw.example", port, "/productpage", ca, extra)
}

#[test]
fn istio_mutual_optional_mutual_and_auto_passthrough_servers() {
    let dir = scratch("gw-modes", "servers");
    let certs = issue(&dir, &["istio-ingressgateway", "client", "denied"]);
    let (gateway_certs, client, denied) = (&certs[0], &certs[1], &certs[2]);
    let root = gateway_certs.join("root-cert.pem");
    let (gw_cert, gw_key) = certificate(&dir, "gw.example");
    let (stranger_cert, stranger_key) = certificate(&dir, "stranger.example");
    let productpage =
        trellis_local_mesh::upstream::Upstream::start("productpage").expect("upstream");
    let (echo, _) = line_echo("127.0.0.1", "echo");
    let (backend, _backend, _) = s_server(&dir, "backend.example");
    let offset = free_offset(&[443, 8443, 9443, 15443]);
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            r#"{identity}services:
  - host: productpage
    ports: [9080]
    endpoints: [{{address: "{productpage}"}}]
  - host: tcp-echo
    ports: [{{number: 9000, name: tcp}}]
    endpoints: [{{address: "{echo}"}}]
  - host: tls-backend
    ports: [{{number: 8443, name: tls}}]
    endpoints: [{{address: "127.0.0.1:{backend}", labels: {{version: v1}}}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: Gateway
      metadata: {{name: modes, namespace: istio-system}}
      spec:
        selector: {{istio: ingressgateway}}
        servers:
          - port: {{number: 443, name: https-mesh, protocol: HTTPS}}
            hosts: ["*"]
            tls: {{mode: ISTIO_MUTUAL}}
          - port: {{number: 9443, name: tls-mesh, protocol: TLS}}
            hosts: ["*"]
            tls: {{mode: ISTIO_MUTUAL}}
          - port: {{number: 8443, name: https-optional, protocol: HTTPS}}
            hosts: [gw.example]
            tls: {{mode: OPTIONAL_MUTUAL, serverCertificate: {gw_cert}, privateKey: {gw_key}, caCertificates: {root}}}
          - port: {{number: 15443, name: tls-auto, protocol: TLS}}
            hosts: ["*.local"]
            tls: {{mode: AUTO_PASSTHROUGH}}
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: web, namespace: default}}
      spec:
        hosts: ["*"]
        gateways: [istio-system/modes]
        http:
          - route: [{{destination: {{host: productpage, port: {{number: 9080}}}}}}]
        tcp:
          - match: [{{port: 9443}}]
            route: [{{destination: {{host: tcp-echo, port: {{number: 9000}}}}}}]
    - apiVersion: networking.istio.io/v1
      kind: DestinationRule
      metadata: {{name: tls-backend, namespace: default}}
      spec:
        host: tls-backend
        subsets:
          - {{name: v1, labels: {{version: v1}}}}
          - {{name: v2, labels: {{version: v2}}}}
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {{name: deny-one, namespace: istio-system}}
      spec:
        selector: {{matchLabels: {{istio: ingressgateway}}}}
        action: DENY
        rules:
          - from: [{{source: {{principals: [cluster.local/ns/default/sa/denied]}}}}]
"#,
            identity = identity_yaml(gateway_certs),
            productpage = productpage.addr(),
            gw_cert = gw_cert.display(),
            gw_key = gw_key.display(),
            root = root.display(),
        ),
    )
    .expect("config");
    let log = dir.join("gateway.log");
    let _gateway = spawn_gateway(&config, offset, &log);
    let (mesh_https, mesh_tls, optional, auto) =
        (offset + 443, offset + 9443, offset + 8443, offset + 15443);
    for port in [mesh_https, mesh_tls, optional, auto] {
        wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let pair = |certs: &Path| (certs.join("cert-chain.pem"), certs.join("key.pem"));
    let (client_chain, client_key) = pair(client);
    let (denied_chain, denied_key) = pair(denied);

    // ISTIO_MUTUAL, HTTPS: a mesh client is served by the bound route ...
    assert_eq!(
        https_get(mesh_https, &root, Some((&client_chain, &client_key))),
        "HTTP/1.1 200 OK",
        "{}",
        logged()
    );
    // ... the gateway presented its own mesh certificate (python verified it to the root) ...
    assert_eq!(productpage.requests(), 1);
    // ... a client without a certificate, or with one of another CA, is refused ...
    for refused in [
        https_get(mesh_https, &root, None),
        https_get(mesh_https, &root, Some((&stranger_cert, &stranger_key))),
    ] {
        assert!(refused == "REFUSED" || refused == "CLOSED", "{refused}");
    }
    assert_eq!(productpage.requests(), 1, "no refused request reached it");
    // ... and the verified principal is policy's: the DENY on sa/denied is 403 to it alone.
    assert_eq!(
        https_get(mesh_https, &root, Some((&denied_chain, &denied_key))),
        "HTTP/1.1 403 Forbidden"
    );

    // ISTIO_MUTUAL, TLS then TCP: the same handshake, then the tcp route; the principal is
    // the network RBAC's.
    assert_eq!(
        mtls_exchange(
            SocketAddr::from(([127, 0, 0, 1], mesh_tls)),
            client,
            &root,
            "ping"
        ),
        "echo:ping",
        "{}",
        logged()
    );
    assert_eq!(
        mtls_exchange(
            SocketAddr::from(([127, 0, 0, 1], mesh_tls)),
            denied,
            &root,
            "ping"
        ),
        "CLOSED"
    );

    // OPTIONAL_MUTUAL: served with no client certificate and with a mesh one; a presented
    // certificate must verify; the presented identity is policy's.
    assert_eq!(curl_code(optional, &gw_cert, &[]), "200", "{}", logged());
    let with = |chain: &Path, key: &Path| {
        let (chain, key) = (chain.display().to_string(), key.display().to_string());
        curl_code(optional, &gw_cert, &["--cert", &chain, "--key", &key])
    };
    assert_eq!(with(&client_chain, &client_key), "200", "{}", logged());
    assert_eq!(with(&denied_chain, &denied_key), "403");
    assert_eq!(with(&stranger_cert, &stranger_key), "000");

    // AUTO_PASSTHROUGH: the outbound_ SNI names the service (and subset), with one of Istio's
    // mTLS ALPNs (allIstioMtlsALPNs); the handshake is the backend's own; an unknown name, a
    // subset without endpoints, or a hello without a mesh ALPN is closed.
    let sni =
        |subset: &str| format!("outbound_.8443_.{subset}_.tls-backend.default.svc.cluster.local");
    for (known, alpn) in [(sni(""), "istio"), (sni("v1"), "h2,istio-http/1.1")] {
        let subject = subject_offering(auto, &known, &[alpn]);
        assert!(
            subject.contains("backend.example"),
            "{known} {alpn}: {subject}\n{}",
            logged()
        );
    }
    for alpn in [&[][..], &["h2", "http/1.1"][..]] {
        let subject = subject_offering(auto, &sni(""), alpn);
        assert!(subject.starts_with("no handshake"), "{alpn:?}: {subject}");
    }
    for unknown in [
        sni("v2"),
        "outbound_.8443_._.nowhere.default.svc.cluster.local".to_string(),
        "backend.example".to_string(),
    ] {
        let subject = subject_offering(auto, &unknown, &["istio"]);
        assert!(subject.starts_with("no handshake"), "{unknown}: {subject}");
    }
    wait_for_log(&log, " NR ");
    let _ = std::fs::remove_dir_all(&dir);
}
