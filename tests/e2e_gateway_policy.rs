//! Security policy at the ingress gateway, end to end: the real `trellis proxy --gateway` with
//! AuthorizationPolicy and RequestAuthentication selecting `istio: ingressgateway` in the root
//! namespace, real curl as the client, Istio's own sample token and JWKS
//! (`../shared/istio/security/jwt`), and a Python workload (`tests/support/jwt_peer.py`) that
//! answers with the headers that reached it.
//!
//! What Istio documents and pilot builds (istio.io tasks "Authorization on Ingress Gateway"
//! and "End-user authentication" at the ingress; `buildGatewayConnectionManager` in
//! pilot/pkg/networking/core/gateway.go, `use_remote_address: true` and no trusted hops):
//! - policies that select the gateway's labels guard its listeners: a DENY on `/admin*` is
//!   `403 RBAC: access denied`;
//! - with no trusted proxies, `remoteIpBlocks` match the connection's peer: an
//!   `x-forwarded-for` the client writes neither escapes a deny nor earns one; with
//!   `numTrustedProxies: 1` its last entry is the client (the second test);
//! - the gateway appends the peer to `x-forwarded-for`, sets `x-forwarded-proto`, marks the
//!   request external (`x-envoy-external-address`), strips client-sent `x-envoy-*` control
//!   headers and replaces a client's `x-request-id`;
//! - a RequestAuthentication at the gateway: a forged token is 401, no token passes
//!   authentication and a `notRequestPrincipals: ["*"]` DENY on `/secure*` refuses it (403),
//!   Istio's demo token is let through.

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::Value;

mod common;
use common::{curl_i, free_offset, jwt_peer, shared_dir, spawn_gateway, wait_for, Killed};

/// Status and body of `curl -i` with these extra header lines.
fn call(url: &str, headers: &[&str]) -> (u16, String) {
    let mut args = Vec::new();
    for h in headers {
        args.push("-H");
        args.push(*h);
    }
    args.push(url);
    let (status, _, body) = curl_i(&args);
    (status, body)
}

/// Write `config` in a directory of its own and start `trellis proxy --gateway` on it: the
/// running gateway, the port its port-80 server listens on, and the directory (its log is
/// `gateway.log` there).
fn start_gateway(name: &str, config: String) -> (Killed, u16, PathBuf) {
    let dir = std::env::temp_dir().join(format!("trellis-e2e-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, config).expect("config");
    let offset = free_offset(&[80]);
    let gateway = spawn_gateway(&path, offset, &dir.join("gateway.log"));
    let port = offset + 80;
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    (gateway, port, dir)
}

/// A gateway config: `head` (top-level keys), the workload as service `httpbin`, a Gateway
/// on port 80 for every host, a VirtualService routing it all to `httpbin`, then `resources`
/// (YAML list items).
fn httpbin_gateway(workload_port: u64, head: &str, resources: &str) -> String {
    format!(
        r#"{head}services:
  - host: httpbin
    ports: [8000]
    endpoints: [{{address: "127.0.0.1:{workload_port}"}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: Gateway
      metadata: {{name: httpbin-gateway, namespace: default}}
      spec:
        selector: {{istio: ingressgateway}}
        servers:
          - port: {{number: 80, name: http, protocol: HTTP}}
            hosts: ["*"]
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: httpbin, namespace: default}}
      spec:
        hosts: ["*"]
        gateways: [httpbin-gateway]
        http:
          - route: [{{destination: {{host: httpbin, port: {{number: 8000}}}}}}]
{resources}"#
    )
}

#[test]
fn gateway_policies_and_forwarding_headers_follow_istio() {
    let (_workload, info) = jwt_peer();
    let workload_port = info["port"].as_u64().expect("port");
    let jwks =
        std::fs::read_to_string(shared_dir().join("istio/security/jwt/jwks.json")).expect("jwks");
    let demo = std::fs::read_to_string(shared_dir().join("istio/security/jwt/demo.jwt"))
        .expect("demo.jwt")
        .trim()
        .to_string();
    let (_gateway, port, dir) = start_gateway(
        "gwpolicy",
        httpbin_gateway(
            workload_port,
            "",
            &format!(
                r#"    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {{name: ingress-deny, namespace: istio-system}}
      spec:
        selector: {{matchLabels: {{istio: ingressgateway}}}}
        action: DENY
        rules:
          - to: [{{operation: {{paths: ["/admin*"]}}}}]
          - from: [{{source: {{remoteIpBlocks: ["10.0.0.0/8"]}}}}]
          - from: [{{source: {{remoteIpBlocks: ["127.0.0.1/32"]}}}}]
            to: [{{operation: {{paths: ["/local-only-denied*"]}}}}]
          - from: [{{source: {{notRequestPrincipals: ["*"]}}}}]
            to: [{{operation: {{paths: ["/secure*"]}}}}]
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {{name: for-the-app-only, namespace: default}}
      spec:
        selector: {{matchLabels: {{app: httpbin}}}}
        action: DENY
        rules: [{{}}]
    - apiVersion: security.istio.io/v1
      kind: RequestAuthentication
      metadata: {{name: ingress-jwt, namespace: istio-system}}
      spec:
        selector: {{matchLabels: {{istio: ingressgateway}}}}
        jwtRules:
          - issuer: testing@secure.istio.io
            jwks: {jwks:?}
"#
            ),
        ),
    );
    let logged = || std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");

    // The root-namespace policy selecting the gateway applies; the app's does not.
    let (status, body) = call(&url("/admin/users"), &[]);
    assert_eq!(
        (status, body.as_str()),
        (403, "RBAC: access denied"),
        "log:\n{}",
        logged()
    );

    // Forwarding headers as Envoy's edge: a client's x-forwarded-for is kept but does not
    // make it 10.1.2.3; the peer is appended; control headers are stripped.
    let (status, body) = call(
        &url("/headers"),
        &[
            "x-forwarded-for: 10.1.2.3",
            "x-envoy-max-retries: 9",
            "x-envoy-internal: true",
            "x-request-id: chosen-by-the-client",
            "x-forwarded-proto: https",
        ],
    );
    assert_eq!(status, 200, "{body}\nlog:\n{}", logged());
    let seen: Value = serde_json::from_str(&body).expect("the workload's echo");
    // The peer is loopback, so the gateway appends its own address (Envoy's loopback rule).
    assert_eq!(seen["x-forwarded-for"], "10.1.2.3,127.0.0.1", "{seen}");
    assert_eq!(seen["x-forwarded-proto"], "http", "{seen}");
    assert_eq!(seen["x-envoy-external-address"], "127.0.0.1", "{seen}");
    assert!(seen.get("x-envoy-max-retries").is_none(), "{seen}");
    assert!(seen.get("x-envoy-internal").is_none(), "{seen}");
    let id = seen["x-request-id"].as_str().unwrap_or("");
    assert!(
        id != "chosen-by-the-client" && id.len() == 36,
        "a fresh request id: {seen}"
    );

    // remoteIpBlocks see the peer (127.0.0.1), whatever x-forwarded-for says.
    let (status, body) = call(&url("/local-only-denied"), &["x-forwarded-for: 192.0.2.10"]);
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));

    // End-user authentication at the gateway.
    let (status, body) = call(&url("/secure/x"), &[]);
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    let bearer = format!("authorization: Bearer {demo}");
    let (status, body) = call(&url("/secure/x"), &[&bearer]);
    assert_eq!(status, 200, "{body}\nlog:\n{}", logged());
    let parts: Vec<&str> = demo.split('.').collect();
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"exp":4685989700,"iss":"testing@secure.istio.io","sub":"intruder"}"#);
    let forged = format!(
        "authorization: Bearer {}.{forged_payload}.{}",
        parts[0], parts[2]
    );
    let (status, body) = call(&url("/open"), &[&forged]);
    assert_eq!((status, body.as_str()), (401, "Jwt verification fails"));

    // The denials are logged with the policy that matched.
    let log = logged();
    assert!(log.contains("ingress-deny"), "log:\n{log}");
}

/// `gatewayTopology.numTrustedProxies: 1`: pilot sets `xff_num_trusted_hops: 1`, and Envoy
/// takes the client's address from the last `x-forwarded-for` entry the gateway received
/// (`getLastAddressFromXFF(headers, 0)`), for `remoteIpBlocks` and `x-envoy-external-address`
/// alike, and keeps a trusted hop's `x-forwarded-proto`. Several `x-forwarded-for` lines are
/// one value (Envoy's `HeaderMapImpl::appendToHeader`: an empty line adds nothing).
#[test]
fn trusted_proxies_take_the_client_from_x_forwarded_for() {
    let (_workload, info) = jwt_peer();
    let workload_port = info["port"].as_u64().expect("port");
    let (_gateway, port, dir) = start_gateway(
        "gwxff",
        httpbin_gateway(
            workload_port,
            "gateway: {numTrustedProxies: 1}\n",
            r#"    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {name: block-documentation-net, namespace: istio-system}
      spec:
        selector: {matchLabels: {istio: ingressgateway}}
        action: DENY
        rules:
          - from: [{source: {remoteIpBlocks: ["203.0.113.0/24"]}}]
            to: [{operation: {paths: ["/blocked*"]}}]
"#,
        ),
    );
    let logged = || std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");

    // The trusted proxy's entry is the client: the workload is told so, and the proxy's
    // x-forwarded-proto stands.
    let (status, body) = call(
        &url("/headers"),
        &[
            "x-forwarded-for: 192.0.2.1, 198.51.100.7",
            "x-forwarded-proto: https",
        ],
    );
    assert_eq!(status, 200, "{body}\nlog:\n{}", logged());
    let seen: Value = serde_json::from_str(&body).expect("the workload's echo");
    assert_eq!(seen["x-envoy-external-address"], "198.51.100.7", "{seen}");
    assert_eq!(
        seen["x-forwarded-for"], "192.0.2.1, 198.51.100.7,127.0.0.1",
        "{seen}"
    );
    assert_eq!(seen["x-forwarded-proto"], "https", "{seen}");

    // remoteIpBlocks follow it: denied from 203.0.113.9, allowed from the loopback peer.
    let (status, body) = call(&url("/blocked"), &["x-forwarded-for: 203.0.113.9"]);
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    let (status, _) = call(&url("/blocked"), &[]);
    assert_eq!(status, 200, "no x-forwarded-for: the peer is the client");
    // An unparsable trusted entry falls back to the peer.
    let (status, _) = call(&url("/blocked"), &["x-forwarded-for: 203.0.113.9, unknown"]);
    assert_eq!(status, 200);
    // An empty second line (curl's `name;` form) adds nothing: 203.0.113.9 stays the last.
    let (status, body) = call(
        &url("/blocked"),
        &["x-forwarded-for: 203.0.113.9", "x-forwarded-for;"],
    );
    assert_eq!(
        (status, body.as_str()),
        (403, "RBAC: access denied"),
        "log:\n{}",
        logged()
    );
}
