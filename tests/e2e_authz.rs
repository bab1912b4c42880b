//! AuthorizationPolicy end to end: the real `trellis proxy` binary with an inbound listener in
//! front of a workload (`workload: {namespace: default, labels: {app: reviews}}`), Istio
//! AuthorizationPolicies inline in its config file, and real curl as the client. What Istio
//! documents for these policies (security/v1beta1 AuthorizationPolicy, "DENY before ALLOW"):
//! - a DENY on `/admin*` wins even over an ALLOW that names `/admin*`;
//! - a DENY `when request.headers[x-user] = mallory` refuses that caller on any path;
//! - the ALLOW (GET/HEAD on `/reviews/*` and `/admin*`) admits only what it names, so a POST
//!   or another path is denied;
//! - a policy selecting another workload (`app: ratings`) changes nothing here;
//! - every denial is `403` with body `RBAC: access denied`, as Envoy's RBAC filter answers,
//!   and the proxy logs `rbac_access_denied_matched_policy[...]`.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use trellis_local_mesh::upstream::Upstream;

mod common;
use common::{curl_i, spawn_proxy, wait_for};

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

const POLICIES: &str = r#"
istio:
  resources:
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {name: deny-admin, namespace: default}
      spec:
        selector: {matchLabels: {app: reviews}}
        action: DENY
        rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
    - apiVersion: security.istio.io/v1beta1
      kind: AuthorizationPolicy
      metadata: {name: deny-mallory, namespace: default}
      spec:
        action: DENY
        rules: [{when: [{key: "request.headers[x-user]", values: [mallory]}]}]
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {name: reviews-viewer, namespace: default}
      spec:
        selector: {matchLabels: {app: reviews}}
        rules:
          - to: [{operation: {methods: [GET, HEAD], paths: ["/reviews/*", "/admin*"]}}]
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {name: ratings-deny-all, namespace: default}
      spec:
        selector: {matchLabels: {app: ratings}}
        action: DENY
        rules: [{}]
"#;

/// Status and body of `curl -i ARGS`.
fn call(args: &[&str]) -> (u16, String) {
    let (status, _, body) = curl_i(args);
    (status, body)
}

#[test]
fn inbound_requests_are_allowed_or_denied_as_istio_documents() {
    let upstream = Upstream::start("reviews-v1").expect("upstream");
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("trellis-authz-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("proxy.yaml");
    let mut f = std::fs::File::create(&config).expect("config file");
    write!(
        f,
        r#"listeners:
  - {{name: inbound, address: "127.0.0.1:{port}", direction: inbound}}
workload: {{namespace: default, serviceAccount: reviews, labels: {{app: reviews, version: v1}}}}
services:
  - host: reviews
    ports: [9080]
    endpoints:
      - {{address: "{}", labels: {{app: reviews, version: v1}}}}
{POLICIES}"#,
        upstream.addr()
    )
    .expect("write config");
    drop(f);
    let log_path = dir.join("proxy.log");
    let _proxy = spawn_proxy(&config, &[], &log_path);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    wait_for(addr);
    let url = |path: &str| format!("http://{addr}{path}");
    let host = ["-H", "host: reviews"];

    let (status, body) = call(&[&host[..], &[url("/reviews/1").as_str()]].concat());
    assert_eq!((status, body.as_str()), (200, "reviews-v1\n"));

    let denied = [
        (
            "GET /admin: DENY wins over ALLOW",
            vec!["-X", "GET"],
            "/admin/users",
        ),
        (
            "POST: not in the ALLOW",
            vec!["-X", "POST", "-d", "x"],
            "/reviews/1",
        ),
        ("another path: not in the ALLOW", vec![], "/ratings/1"),
        (
            "mallory: DENY by header",
            vec!["-H", "x-user: mallory"],
            "/reviews/1",
        ),
        (
            "dot segments resolve before RBAC",
            vec!["--path-as-is"],
            "/reviews/../admin/x",
        ),
    ];
    for (why, extra, path) in &denied {
        let target = url(path);
        let args: Vec<&str> = host
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .chain([target.as_str()])
            .collect();
        let (status, body) = call(&args);
        assert_eq!(
            (status, body.as_str()),
            (403, "RBAC: access denied"),
            "{why}"
        );
    }
    // Other callers on the same path still pass; the ratings policy never applied here.
    let (status, _) = call(
        &[
            &host[..],
            &["-H", "x-user: alice", url("/reviews/2").as_str()],
        ]
        .concat(),
    );
    assert_eq!(status, 200);
    assert_eq!(
        upstream.requests(),
        2,
        "denied requests never reach the workload"
    );

    // The denial reasons in the proxy's log, as Envoy's response-code details.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let seen = [
            "rbac_access_denied_matched_policy[ns[default]-policy[deny-admin]-rule[0]]",
            "rbac_access_denied_matched_policy[none]",
            "rbac_access_denied_matched_policy[ns[default]-policy[deny-mallory]-rule[0]]",
        ]
        .iter()
        .all(|d| log.contains(d));
        if seen {
            break;
        }
        assert!(Instant::now() < deadline, "denials not logged: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
