//! A Trellis sidecar reaching a service behind an AUTO_PASSTHROUGH gateway (Istio's
//! east-west gateway of multi-network meshes), end to end with three real `trellis proxy`
//! processes and curl:
//!
//! productpage's sidecar → (mTLS, never terminated on the way) → the gateway's 15443 →
//! reviews' sidecar (STRICT) → reviews.
//!
//! pilot gives a client the gateway's address as the endpoint of a service in another network
//! (the EDS of `EndpointsByNetworkFilter`); what makes the crossing work is the client side of
//! the handshake, as Istio's sidecars do it (`buildUpstreamTLSSettings` /
//! `applyUpstreamTLSSettings` in pilot/pkg/networking/core/cluster_tls.go): the server name is
//! the cluster's `outbound_.<port>_.<subset>_.<host>`, which the gateway's AUTO_PASSTHROUGH
//! chains route on (`builtAutoPassthroughFilterChains` in pilot/pkg/networking/core/gateway.go),
//! and the ALPN offers `istio`, which those chains require. The client still verifies the
//! far sidecar's SPIFFE id (the gateway never presents a certificate), and reviews' sidecar
//! sees productpage's identity: both show in the `x-forwarded-client-cert` reviews receives.
//! A subset goes by its own name (`outbound_.9080_.v1_...`), and one the gateway has no
//! cluster for is closed by it (503 from the client's sidecar). The same port also has a
//! PASSTHROUGH server (buildGatewayTCPBasedFilterChains puts every server's chains on the one
//! listener): `openssl s_client` naming its host reaches `openssl s_server` behind it, the
//! ClientHello choosing among both kinds of chain.

use std::net::SocketAddr;

mod common;
use common::l4_peers::{identity_yaml, issue, s_server, scratch, subject_offering, wait_for_log};
use common::{curl, free_offset, spawn_gateway, spawn_proxy, wait_for};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `curl http://127.0.0.1:<port><path>` with `Host: reviews`: the status code and the body.
fn get(port: u16, path: &str) -> (String, String) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let out = curl(&[
        "-s",
        "-m",
        "10",
        "-H",
        "Host: reviews",
        "-w",
        "\n%{http_code}",
        &url,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

#[test]
fn a_sidecar_crosses_an_auto_passthrough_gateway_with_istios_sni_and_alpn() {
    let dir = scratch("gw-crossing", "east-west");
    let certs = issue(&dir, &["istio-eastwestgateway", "productpage", "reviews"]);
    let (gateway_certs, productpage_certs, reviews_certs) = (&certs[0], &certs[1], &certs[2]);
    let reviews = trellis_local_mesh::upstream::Upstream::start("reviews").expect("upstream");

    // reviews' sidecar: STRICT, so only mTLS reaches the application.
    let reviews_port = free_port();
    let reviews_config = dir.join("reviews.yaml");
    std::fs::write(
        &reviews_config,
        format!(
            r#"{identity}listeners:
  - {{name: inbound, address: "127.0.0.1:{reviews_port}", direction: inbound, forwardTo: "{app}"}}
workload: {{namespace: default, serviceAccount: reviews, labels: {{app: reviews}}}}
istio:
  resources:
    - apiVersion: security.istio.io/v1
      kind: PeerAuthentication
      metadata: {{name: default, namespace: default}}
      spec: {{mtls: {{mode: STRICT}}}}
"#,
            identity = identity_yaml(reviews_certs),
            app = reviews.addr(),
        ),
    )
    .expect("config");
    let reviews_log = dir.join("reviews.log");
    let _reviews_sidecar = spawn_proxy(&reviews_config, &[], &reviews_log);
    wait_for(SocketAddr::from(([127, 0, 0, 1], reviews_port)));

    // A TLS service the gateway passes through by name, next to its AUTO_PASSTHROUGH chains.
    let (tls_port, _tls_server, _) = s_server(&dir, "tls.example.com");

    // The east-west gateway: AUTO_PASSTHROUGH on 15443, reviews (subset v1) in its registry,
    // and a PASSTHROUGH server for tls.example.com on the same port.
    let offset = free_offset(&[15443]);
    let gateway_config = dir.join("gateway.yaml");
    std::fs::write(
        &gateway_config,
        format!(
            r#"{identity}services:
  - host: reviews
    ports: [9080]
    endpoints: [{{address: "127.0.0.1:{reviews_port}", serviceAccount: reviews, labels: {{version: v1, security.istio.io/tlsMode: istio}}}}]
  - host: tls.example.com
    ports: [{{number: 443, name: tls}}]
    endpoints: [{{address: "127.0.0.1:{tls_port}"}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: Gateway
      metadata: {{name: cross-network-gateway, namespace: istio-system}}
      spec:
        selector: {{istio: ingressgateway}}
        servers:
          - port: {{number: 15443, name: tls, protocol: TLS}}
            hosts: ["*.local"]
            tls: {{mode: AUTO_PASSTHROUGH}}
          - port: {{number: 15443, name: tls-passthrough, protocol: TLS}}
            hosts: [tls.example.com]
            tls: {{mode: PASSTHROUGH}}
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: tls-example, namespace: istio-system}}
      spec:
        hosts: [tls.example.com]
        gateways: [cross-network-gateway]
        tls:
          - match: [{{sniHosts: [tls.example.com]}}]
            route: [{{destination: {{host: tls.example.com, port: {{number: 443}}}}}}]
    - apiVersion: networking.istio.io/v1
      kind: DestinationRule
      metadata: {{name: reviews, namespace: default}}
      spec:
        host: reviews
        subsets: [{{name: v1, labels: {{version: v1}}}}]
"#,
            identity = identity_yaml(gateway_certs),
        ),
    )
    .expect("config");
    let gateway_log = dir.join("gateway.log");
    let _gateway = spawn_gateway(&gateway_config, offset, &gateway_log);
    let gateway_port = offset + 15443;
    wait_for(SocketAddr::from(([127, 0, 0, 1], gateway_port)));

    // productpage's sidecar: reviews' endpoint is the gateway, a mesh endpoint (auto mTLS)
    // whose identity is reviews', as pilot's EDS gives a remote network's endpoints. v2 is a
    // subset the gateway has no cluster for.
    let outbound_port = free_port();
    let productpage_config = dir.join("productpage.yaml");
    std::fs::write(
        &productpage_config,
        format!(
            r#"{identity}listeners:
  - {{name: outbound, address: "127.0.0.1:{outbound_port}", direction: outbound}}
workload: {{namespace: default, serviceAccount: productpage, labels: {{app: productpage}}}}
services:
  - host: reviews
    ports: [9080]
    endpoints: [{{address: "127.0.0.1:{gateway_port}", serviceAccount: reviews, labels: {{version: v1, security.istio.io/tlsMode: istio}}}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: DestinationRule
      metadata: {{name: reviews, namespace: default}}
      spec:
        host: reviews
        subsets:
          - {{name: v1, labels: {{version: v1}}}}
          - {{name: v2, labels: {{version: v1}}}}
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: reviews, namespace: default}}
      spec:
        hosts: [reviews]
        http:
          - match: [{{uri: {{prefix: /v1}}}}]
            rewrite: {{uri: /headers}}
            route: [{{destination: {{host: reviews, subset: v1}}}}]
          - match: [{{uri: {{prefix: /v2}}}}]
            route: [{{destination: {{host: reviews, subset: v2}}}}]
          - route: [{{destination: {{host: reviews}}}}]
"#,
            identity = identity_yaml(productpage_certs),
        ),
    )
    .expect("config");
    let productpage_log = dir.join("productpage.log");
    let _productpage_sidecar = spawn_proxy(&productpage_config, &[], &productpage_log);
    wait_for(SocketAddr::from(([127, 0, 0, 1], outbound_port)));
    let logs = || {
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "productpage:\n{}\ngateway:\n{}\nreviews:\n{}",
            read(&productpage_log),
            read(&gateway_log),
            read(&reviews_log)
        )
    };

    // The PASSTHROUGH server's name reaches its real TLS server through the same port; a
    // name neither kind of chain serves is closed.
    let subject = subject_offering(gateway_port, "tls.example.com", &[]);
    assert!(subject.contains("tls.example.com"), "{subject}\n{}", logs());
    let subject = subject_offering(gateway_port, "other.example.com", &["istio"]);
    assert!(subject.starts_with("no handshake"), "{subject}");

    // The service's own cluster: through the gateway to reviews.
    let (code, body) = get(outbound_port, "/");
    assert_eq!(code, "200", "{body}\n{}", logs());
    assert_eq!(body, "reviews\n");
    wait_for_log(&productpage_log, &format!("127.0.0.1:{gateway_port}"));

    // A subset, by its own name; reviews' sidecar terminated productpage's mTLS itself.
    let (code, body) = get(outbound_port, "/v1");
    assert_eq!(code, "200", "{body}\n{}", logs());
    let xfcc = (body.lines())
        .find(|l| l.starts_with("x-forwarded-client-cert:"))
        .unwrap_or_default();
    assert!(
        xfcc.contains("URI=spiffe://cluster.local/ns/default/sa/productpage"),
        "{body}"
    );
    assert!(
        xfcc.contains("By=spiffe://cluster.local/ns/default/sa/reviews"),
        "{body}"
    );

    // A subset the gateway has no cluster for: it closes the connection, the client's
    // sidecar answers 503.
    let (code, body) = get(outbound_port, "/v2");
    assert_eq!(code, "503", "{body}\n{}", logs());
    assert_eq!(
        reviews.requests(),
        2,
        "only the two crossings reached reviews"
    );

    // The gateway writes a connection's record when it ends: stop the client's sidecar (its
    // pooled connections close) and read which cluster each server name chose (pilot's
    // SNI-DNAT clusters are named as the server name) and that v2's found none (NR).
    drop(_productpage_sidecar);
    for record in [
        "route=outbound_.9080_._.reviews.default.svc.cluster.local",
        "route=outbound_.9080_.v1_.reviews.default.svc.cluster.local",
        "NR 0 0 0ms \"outbound_.9080_.v2_.reviews.default.svc.cluster.local\"",
    ] {
        wait_for_log(&gateway_log, record);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
