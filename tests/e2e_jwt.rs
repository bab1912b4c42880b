//! RequestAuthentication end to end: the real `trellis proxy` binary with an inbound listener
//! in front of a workload, Istio RequestAuthentication and AuthorizationPolicy inline in its
//! config file, real curl as the client, and tokens nobody here wrote: Istio's own sample
//! token and JWKS (`../shared/istio/security/jwt`, issuer `testing@secure.istio.io`, keys
//! inline) and RS256 tokens minted by PyJWT in `tests/support/jwt_peer.py`, whose JWKS that
//! same Python server publishes at a `jwksUri` the config loader (the control side) fetches.
//! The Python server is also the workload: it answers with the headers that reached it.
//!
//! What Istio documents ("Authorization with JWT", RequestAuthentication reference):
//! - a valid token → 200, the principal `<iss>/<sub>` is what `requestPrincipals` ALLOW;
//! - an invalid signature → 401 `Jwt verification fails`, an expired token → 401
//!   `Jwt is expired`, both with `www-authenticate: Bearer ...` as Envoy answers;
//! - no token → authentication passes; a `requestPrincipals: ["*"]` policy then denies (403),
//!   and without any AuthorizationPolicy the request goes through (200);
//! - `outputPayloadToHeader` reaches the workload, the token header does not
//!   (`forwardOriginalToken` defaults to false); a token in the `access_token` parameter is
//!   taken out of the query, the rest written back sorted and decoded as Envoy does.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::Value;

mod common;
use common::{curl_i, jwt_peer, shared_dir, spawn_proxy, wait_for, Killed};

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

/// Start `trellis proxy` on a config with an inbound listener on `port` in front of the
/// workload at `workload`, plus `istio_resources` (YAML list items).
fn proxy(dir: &std::path::Path, name: &str, port: u16, workload: u16, resources: &str) -> Killed {
    let config = dir.join(format!("{name}.yaml"));
    let mut f = std::fs::File::create(&config).expect("config file");
    write!(
        f,
        r#"listeners:
  - {{name: inbound, address: "127.0.0.1:{port}", direction: inbound}}
workload: {{namespace: default, serviceAccount: httpbin, labels: {{app: httpbin}}}}
services:
  - host: httpbin
    ports: [8000]
    endpoints:
      - {{address: "127.0.0.1:{workload}", labels: {{app: httpbin}}}}
istio:
  resources:
{resources}"#
    )
    .expect("write config");
    drop(f);
    let child = spawn_proxy(&config, &[], &dir.join(format!("{name}.log")));
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    child
}

/// Status, headers (lower-case text) and body of `curl -i` on `url` with these headers.
fn call(url: &str, headers: &[String]) -> (u16, String, String) {
    let mut args = vec!["-H", "host: httpbin"];
    for h in headers {
        args.push("-H");
        args.push(h);
    }
    args.push(url);
    let (status, head, body) = curl_i(&args);
    (status, head.to_ascii_lowercase(), body)
}

fn bearer(token: &str) -> Vec<String> {
    vec![format!("authorization: Bearer {token}")]
}

#[test]
fn tokens_are_verified_and_principals_authorized_as_istio_documents() {
    let (_peer, info) = jwt_peer();
    let peer_port = info["port"].as_u64().expect("port") as u16;
    let jwks_uri = format!("http://127.0.0.1:{peer_port}/jwks.json");
    let istio_jwks =
        std::fs::read_to_string(shared_dir().join("istio/security/jwt/jwks.json")).expect("jwks");
    let demo = std::fs::read_to_string(shared_dir().join("istio/security/jwt/demo.jwt"))
        .expect("demo.jwt")
        .trim()
        .to_string();
    let request_authentication = format!(
        r#"    - apiVersion: security.istio.io/v1
      kind: RequestAuthentication
      metadata: {{name: jwt, namespace: default}}
      spec:
        selector: {{matchLabels: {{app: httpbin}}}}
        jwtRules:
          - issuer: testing@secure.istio.io
            jwks: {istio_jwks:?}
            outputPayloadToHeader: x-jwt-payload
          - issuer: {issuer}
            jwksUri: {jwks_uri}
"#,
        issuer = info["issuer"].as_str().expect("issuer"),
    );
    let policies = r#"    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {name: httpbin, namespace: default}
      spec:
        selector: {matchLabels: {app: httpbin}}
        rules:
          - from: [{source: {requestPrincipals: ["testing@secure.istio.io/testing@secure.istio.io"]}}]
            to: [{operation: {paths: ["/admin*"]}}]
          - from: [{source: {requestPrincipals: ["*"]}}]
            to: [{operation: {paths: ["/secure*"]}}]
          - to: [{operation: {paths: ["/open*"]}}]
"#;
    let dir = std::env::temp_dir().join(format!("trellis-jwt-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    let _guarded = proxy(
        &dir,
        "guarded",
        port,
        peer_port,
        &format!("{request_authentication}{policies}"),
    );
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");

    // Istio's demo token: verified with the inline JWKS; its principal is allowed on /admin.
    let (status, _, body) = call(&url("/admin/x"), &bearer(&demo));
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).expect("the workload's echo");
    assert_eq!(
        seen["x-jwt-payload"].as_str(),
        demo.split('.').nth(1),
        "outputPayloadToHeader reaches the workload: {seen}"
    );
    assert!(
        seen.get("authorization").is_none(),
        "the token is not forwarded: {seen}"
    );
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(seen["x-jwt-payload"].as_str().unwrap_or(""))
        .expect("base64url payload");
    let payload: Value = serde_json::from_slice(&payload).expect("JSON payload");
    assert_eq!(payload["foo"], "bar");

    // The token in Envoy's default `access_token` parameter: verified, removed, and what is
    // left of the query written back as Envoy's `JwtParamLocation::removeJwt` does (sorted by
    // name, decoded).
    let (status, _, body) = call(&url(&format!("/open?b=2&access_token={demo}&a=%7E1")), &[]);
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).expect("the workload's echo");
    assert_eq!(seen[":path"], "/open?a=~1&b=2", "{seen}");

    // PyJWT's token, keys fetched from the jwksUri: authenticated; another principal, so
    // /admin is denied and /secure (any principal) allowed.
    let valid = info["valid"].as_str().expect("valid token");
    let (status, _, body) = call(&url("/admin/x"), &bearer(valid));
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    let (status, _, body) = call(&url("/secure/x"), &bearer(valid));
    assert_eq!(status, 200, "{body}");

    // An invalid signature: Istio's token with another payload.
    let parts: Vec<&str> = demo.split('.').collect();
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        r#"{"exp":4685989700,"iss":"testing@secure.istio.io","sub":"testing@secure.istio.io","admin":true}"#,
    );
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    let (status, head, body) = call(&url("/open"), &bearer(&forged));
    assert_eq!((status, body.as_str()), (401, "Jwt verification fails"));
    assert!(
        head.contains(
            "www-authenticate: bearer realm=\"http://httpbin/open\", error=\"invalid_token\""
        ),
        "{head}"
    );

    // Expired (PyJWT, exp an hour ago).
    let expired = info["expired"].as_str().expect("expired token");
    let (status, _, body) = call(&url("/open"), &bearer(expired));
    assert_eq!((status, body.as_str()), (401, "Jwt is expired"));

    // No token: authentication passes; requestPrincipals ["*"] denies; an open path allows.
    let (status, _, body) = call(&url("/secure/x"), &[]);
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    let (status, _, _) = call(&url("/open"), &[]);
    assert_eq!(status, 200);

    // The jwksUri was fetched by the loader (the control side), once, before any request.
    let (status, _, fetches) = call(&format!("http://127.0.0.1:{peer_port}/fetches"), &[]);
    assert_eq!((status, fetches.as_str()), (200, "1"));

    // A workload with the RequestAuthentication and no AuthorizationPolicy: no token passes,
    // an invalid one is still refused.
    let open_port = free_port();
    let _open = proxy(&dir, "open", open_port, peer_port, &request_authentication);
    let open = format!("http://127.0.0.1:{open_port}/anything");
    let (status, _, _) = call(&open, &[]);
    assert_eq!(status, 200);
    let (status, _, body) = call(&open, &bearer(expired));
    assert_eq!((status, body.as_str()), (401, "Jwt is expired"));

    // The refusals are in the proxy's log with Envoy's response-code details.
    let log = std::fs::read_to_string(dir.join("guarded.log")).unwrap_or_default();
    for details in [
        "jwt_authn_access_denied{Jwt_verification_fails}",
        "jwt_authn_access_denied{Jwt_is_expired}",
    ] {
        assert!(log.contains(details), "{details} not in the log:\n{log}");
    }
}

/// Start a `trellis` command with its log in `log`.
fn trellis(args: &[&str], log: &std::path::Path) -> Killed {
    let log = std::fs::File::create(log).expect("log file");
    Killed(
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("trellis starts"),
    )
}

/// The control plane fetches the `jwksUri` and pushes the keys; the sidecar, fed only by the
/// control plane, enforces them without ever fetching (the JWKS server sees one fetch).
#[test]
fn the_control_plane_fetches_jwks_uri_and_the_sidecar_never_does() {
    let (_peer, info) = jwt_peer();
    let peer_port = info["port"].as_u64().expect("port") as u16;
    let tmp = std::env::temp_dir().join(format!("trellis-jwt-plane-{}", std::process::id()));
    let mesh = tmp.join("mesh");
    std::fs::create_dir_all(&mesh).expect("dir");
    std::fs::write(
        mesh.join("jwt.yaml"),
        format!(
            "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules:
  - issuer: {}
    jwksUri: http://127.0.0.1:{peer_port}/jwks.json
    outputClaimToHeaders: [{{header: x-user, claim: sub}}]
",
            info["issuer"].as_str().expect("issuer")
        ),
    )
    .expect("write");
    let plane = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _control = trellis(
        &[
            "control",
            "--dir",
            &mesh.display().to_string(),
            "--listen",
            &plane.to_string(),
            "--poll-ms",
            "100",
            "--insecure-plaintext",
        ],
        &tmp.join("control.log"),
    );
    wait_for(plane);
    let port = free_port();
    let config = tmp.join("sidecar.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  - {{name: inbound, address: \"127.0.0.1:{port}\", direction: inbound, forwardTo: \"127.0.0.1:{peer_port}\"}}\nworkload: {{namespace: default, labels: {{app: httpbin}}}}\n"
        ),
    )
    .expect("write");
    let _sidecar = trellis(
        &[
            "proxy",
            "--config",
            &config.display().to_string(),
            "--control-plane",
            &plane.to_string(),
            "--insecure-plaintext",
            "--node",
            "httpbin-0",
            "--health-port",
            "0",
            "--cores",
            "1",
            "--no-pin",
            "--seed",
            "1",
        ],
        &tmp.join("sidecar.log"),
    );
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    let url = format!("http://127.0.0.1:{port}/get");
    let expired = info["expired"].as_str().expect("expired token");
    // Until the first push applies, no RequestAuthentication: wait for the refusal.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, _, body) = call(&url, &bearer(expired));
        if status == 401 {
            assert_eq!(body, "Jwt is expired");
            break;
        }
        let read = |f: &str| std::fs::read_to_string(tmp.join(f)).unwrap_or_default();
        assert!(
            std::time::Instant::now() < deadline,
            "never refused (last {status}):\ncontrol log:\n{}\nsidecar log:\n{}",
            read("control.log"),
            read("sidecar.log")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (status, _, body) = call(&url, &bearer(info["valid"].as_str().expect("valid")));
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).expect("the workload's echo");
    assert_eq!(seen["x-user"], "alice", "outputClaimToHeaders: {seen}");
    let (_, _, fetches) = call(&format!("http://127.0.0.1:{peer_port}/fetches"), &[]);
    assert_eq!(fetches, "1", "only the control plane fetched the JWKS");
    let _ = std::fs::remove_dir_all(&tmp);
}
