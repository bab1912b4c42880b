//! A `PASSTHROUGH` server's filter chains are named by its `tls` rules' `sniHosts`, not by its
//! own hosts, with real openssl and curl as the clients. pilot builds one chain per applying
//! `tls` match with `sniHosts: match.SniHosts` (buildGatewayNetworkFiltersFromTLSRoutes in
//! pilot/pkg/networking/core/gateway.go), asking only that the VirtualService's hosts meet the
//! server's (pickMatchingGatewayHosts); Envoy ranks those names with the terminating chains'
//! (findFilterChainForServerName: exact, then the longest wildcard, then the chain without
//! names). Found by the simulator's gateway world (sim-tests/src/sim/gateway, seed 41).

use std::net::SocketAddr;

use trellis_local_mesh::upstream::Upstream;

mod common;
use common::l4_peers::{certificate, s_server, scratch, subject_for};
use common::{curl, free_offset, spawn_gateway, wait_for};

/// An HTTPS server for `*` next to a passthrough server of `b.example.com` whose bound rule
/// passes `*.example.com`: `q.example.com` reaches the `openssl s_server` behind it (its own
/// certificate answers), `c.other.org` is terminated by the `*` server and routed to alpha.
#[test]
fn a_passthrough_rule_passes_its_sni_hosts_beyond_its_servers_hosts() {
    let dir = scratch("gw-pass-names", "servers");
    let any = certificate(&dir, "any.gateway.test");
    let alpha = Upstream::start("alpha").expect("upstream");
    let (backend, _backend, _backend_cert) = s_server(&dir, "passed.backend.test");
    let offset = free_offset(&[443]);
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            r#"services:
  - host: alpha
    ports: [8080]
    endpoints: [{{address: "{alpha}"}}]
  - host: p-backend
    ports: [{{number: 8443, name: tls}}]
    endpoints: [{{address: "127.0.0.1:{backend}"}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: Gateway
      metadata: {{name: edge}}
      spec:
        selector: {{istio: ingressgateway}}
        servers:
          - port: {{number: 443, name: https-any, protocol: HTTPS}}
            hosts: ["*"]
            tls: {{mode: SIMPLE, serverCertificate: {cert}, privateKey: {key}}}
          - port: {{number: 443, name: tls-b, protocol: TLS}}
            hosts: [b.example.com]
            tls: {{mode: PASSTHROUGH}}
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: web}}
      spec:
        hosts: ["*"]
        gateways: [edge]
        http: [{{route: [{{destination: {{host: alpha}}}}]}}]
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: wide}}
      spec:
        hosts: ["*.example.com"]
        gateways: [edge]
        tls:
          - match: [{{sniHosts: ["*.example.com"]}}]
            route: [{{destination: {{host: p-backend, port: {{number: 8443}}}}}}]
"#,
            alpha = alpha.addr(),
            cert = any.0.display(),
            key = any.1.display(),
        ),
    )
    .expect("config");
    let log = dir.join("gateway.log");
    let _gateway = spawn_gateway(&config, offset, &log);
    let port = offset + 443;
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();

    // q.example.com is no host of the passthrough server, but its rule's sniHosts name it.
    let subject = subject_for(port, "q.example.com");
    assert!(
        subject.contains("passed.backend.test"),
        "{subject}\n{}",
        logged()
    );
    // Another name is the `*` server's: terminated with its certificate, then routed.
    let subject = subject_for(port, "c.other.org");
    assert!(
        subject.contains("any.gateway.test"),
        "{subject}\n{}",
        logged()
    );
    let out = curl(&[
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--resolve",
        &format!("c.other.org:{port}:127.0.0.1"),
        &format!("https://c.other.org:{port}/"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{}", logged());
    assert_eq!(alpha.requests(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
