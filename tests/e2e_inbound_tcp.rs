//! Inbound L4 end to end: a sidecar's inbound listener in front of a workload port whose
//! protocol is TCP (`protocol: TCP` on the listener, as a Service port `tcp-*` or
//! `protocol: TCP` makes it in Istio) proxies bytes to the workload instead of parsing HTTP,
//! with what pilot puts on such a filter chain (`buildInboundNetworkFilters` in
//! pilot/pkg/networking/core/networkfilter.go): PeerAuthentication's mTLS in front, then
//! Envoy's network RBAC filter built by `Builder::BuildTCP`
//! (pilot/pkg/security/authz/builder/builder.go), then `tcp_proxy`. What Istio's code says and
//! these tests check, with a real line-echo TCP workload and real clients (Rust sockets,
//! Python's `ssl` for mTLS):
//! - rules on L4 attributes (principals, ports) allow and deny connections;
//! - an ALLOW rule naming an HTTP-only field (`methods`) never matches a TCP connection
//!   (`Model::Generate(forTCP)` fails it and `checkError` drops the rule for ALLOW);
//! - a DENY rule's HTTP-only part (`paths`) is dropped, so it denies more
//!   (`checkError` ignores the error for DENY);
//! - a denied connection is closed before any of its bytes reach the workload
//!   (`RoleBasedAccessControlFilter::onData`, source/extensions/filters/network/rbac), and the
//!   proxy logs `rbac_access_denied_matched_policy[...]`;
//! - under STRICT a plaintext client never reaches the workload;
//! - under PERMISSIVE a TLS client that offers no Istio ALPN (curl, `openssl s_client`: not a
//!   sidecar) reaches a workload that serves TLS itself untouched, through pilot's chain for
//!   "one-way TLS (HTTPS for example) by the downstream application"
//!   (`inboundPermissiveTCPFilterChainMatchWithMxcOptions`, filterchain_options.go), while a
//!   sidecar's client (ALPN `istio`) meets the sidecar's own mTLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod common;
use common::l4_peers::{
    free_port, identity_yaml, issue, line_echo, mtls_exchange, plain_exchange, s_server, scratch,
    subject_offering, wait_for_log,
};
use common::{curl, spawn_proxy, wait_for, Killed};

/// Plaintext (no identity, so PERMISSIVE has only plaintext to take): two TCP workload ports
/// behind one sidecar; an ALLOW on `to.ports` of the first admits it only, and an ALLOW that
/// names `methods` admits nothing at L4 although it would admit every GET over HTTP.
#[test]
fn plaintext_tcp_ports_are_allowed_and_denied_by_l4_rules() {
    let dir = scratch("in-tcp", "plain");
    let (echo, seen) = line_echo("127.0.0.1", "db");
    let (other, other_seen) = line_echo("127.0.0.1", "cache");
    let (a, b) = (free_port(), free_port());
    let config = dir.join("sidecar.yaml");
    std::fs::write(
        &config,
        format!(
            r#"workload: {{namespace: default, serviceAccount: db, labels: {{app: db}}}}
listeners:
  - {{name: inbound-db, address: "127.0.0.1:{a}", direction: inbound, forwardTo: "{echo}", protocol: TCP}}
  - {{name: inbound-cache, address: "127.0.0.1:{b}", direction: inbound, forwardTo: "{other}", protocol: redis}}
istio:
  resources:
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {{name: db-port, namespace: default}}
      spec:
        selector: {{matchLabels: {{app: db}}}}
        rules: [{{to: [{{operation: {{ports: ["{a}"]}}}}]}}]
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {{name: http-gets, namespace: default}}
      spec:
        selector: {{matchLabels: {{app: db}}}}
        rules: [{{to: [{{operation: {{methods: [GET]}}}}]}}]
"#
        ),
    )
    .expect("config");
    let log = dir.join("proxy.log");
    let _proxy = spawn_proxy(&config, &[], &log);
    wait_for(SocketAddr::from(([127, 0, 0, 1], a)));
    wait_for(SocketAddr::from(([127, 0, 0, 1], b)));
    let at_a = SocketAddr::from(([127, 0, 0, 1], a));
    let at_b = SocketAddr::from(([127, 0, 0, 1], b));

    // Not HTTP: a line that no HTTP parser would take goes through as bytes.
    assert_eq!(
        plain_exchange(at_a, "\u{1}PING").as_deref(),
        Some("db:\u{1}PING")
    );
    assert_eq!(
        plain_exchange(at_a, "SET k v").as_deref(),
        Some("db:SET k v")
    );
    // Port b: the ALLOW names port a only, and the methods rule is dropped at L4.
    assert_eq!(plain_exchange(at_b, "GET / HTTP/1.1"), None);
    let text = wait_for_log(&log, "rbac_access_denied_matched_policy[none]");
    assert!(
        other_seen.lock().expect("lock").is_empty(),
        "a denied client's bytes reached the workload\n{text}"
    );
    assert_eq!(seen.lock().expect("lock").len(), 2);
}

/// The STRICT test's AuthorizationPolicies: principals at L4, a `methods` ALLOW that admits
/// nobody at L4, a DENY on `principals` + `paths` that denies that principal's every
/// connection.
const POLICIES: &str = r#"    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {name: clients, namespace: default}
      spec:
        selector: {matchLabels: {app: db}}
        rules:
          - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep", "cluster.local/ns/default/sa/mallory"]}}]
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {name: http-gets, namespace: default}
      spec:
        selector: {matchLabels: {app: db}}
        rules: [{to: [{operation: {methods: [GET]}}]}]
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {name: no-admin-for-mallory, namespace: default}
      spec:
        selector: {matchLabels: {app: db}}
        action: DENY
        rules:
          - from: [{source: {principals: ["cluster.local/ns/default/sa/mallory"]}}]
            to: [{operation: {paths: ["/admin*"]}}]
"#;

/// A sidecar for workload `db` (account `db`, certificates in `certs`) with one inbound TCP
/// listener on `at` forwarding to `forward_to`, PeerAuthentication `mode` and the resource
/// list items `policies`; started and listening. Returns the process and its log file.
fn db_sidecar(
    dir: &Path,
    certs: &Path,
    at: SocketAddr,
    forward_to: &str,
    mode: &str,
    policies: &str,
) -> (Killed, PathBuf) {
    let config = dir.join("sidecar.yaml");
    std::fs::write(
        &config,
        format!(
            r#"workload: {{namespace: default, serviceAccount: db, labels: {{app: db}}}}
{identity}listeners:
  - {{name: inbound, address: "{at}", direction: inbound, forwardTo: "{forward_to}", protocol: TCP}}
istio:
  resources:
    - apiVersion: security.istio.io/v1
      kind: PeerAuthentication
      metadata: {{name: default, namespace: default}}
      spec: {{mtls: {{mode: {mode}}}}}
{policies}"#,
            identity = identity_yaml(certs),
        ),
    )
    .expect("config");
    let log = dir.join("proxy.log");
    let proxy = spawn_proxy(&config, &[], &log);
    wait_for(at);
    (proxy, log)
}

/// STRICT mTLS in front of a TCP workload port: the sidecar terminates mTLS and relays the
/// bytes; principals decide at L4; an ALLOW on `methods` admits nobody; a DENY on
/// `principals` + `paths` denies that principal's every connection (its `paths` dropped).
#[test]
fn strict_mtls_tcp_port_with_principals_and_http_only_rules() {
    let dir = scratch("in-tcp", "mtls");
    let certs = issue(&dir, &["db", "sleep", "ratings", "mallory"]);
    let (db, sleep, ratings, mallory) = (&certs[0], &certs[1], &certs[2], &certs[3]);
    let root = db.join("root-cert.pem");
    let (echo, seen) = line_echo("127.0.0.1", "db");
    let at = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (_proxy, log) = db_sidecar(&dir, db, at, &echo.to_string(), "STRICT", POLICIES);

    assert_eq!(mtls_exchange(at, sleep, &root, "hello"), "db:hello");
    assert_eq!(mtls_exchange(at, ratings, &root, "hello"), "CLOSED");
    wait_for_log(&log, "rbac_access_denied_matched_policy[none]");
    assert_eq!(mtls_exchange(at, mallory, &root, "hello"), "CLOSED");
    wait_for_log(
        &log,
        "rbac_access_denied_matched_policy[ns[default]-policy[no-admin-for-mallory]-rule[0]]",
    );
    // STRICT: plaintext never gets through.
    assert_eq!(plain_exchange(at, "hello"), None);
    assert_eq!(
        *seen.lock().expect("lock"),
        vec!["hello".to_string()],
        "only the allowed client's bytes reach the workload"
    );
}

/// PERMISSIVE (Istio's default) in front of a workload that serves its own TLS on a TCP port
/// (`openssl s_server -www`): clients without a sidecar see the workload's certificate and
/// get its answer through the sidecar; a sidecar's ClientHello is the sidecar's to terminate.
#[test]
fn permissive_tcp_port_relays_a_workloads_own_tls_untouched() {
    let dir = scratch("in-tcp", "own-tls");
    let certs = issue(&dir, &["db"]);
    let (app_port, _app, _) = s_server(&dir, "db.example.com");
    let at = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let forward_to = format!("127.0.0.1:{app_port}");
    let (_proxy, log) = db_sidecar(&dir, &certs[0], at, &forward_to, "PERMISSIVE", "");

    let subject = subject_offering(at.port(), "db.example.com", &["h2", "http/1.1"]);
    assert!(
        subject.contains("db.example.com"),
        "the workload's certificate: {subject}"
    );
    let out = curl(&["-sk", &format!("https://{at}/")]);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && page.contains("s_server"),
        "the workload's own page over its own TLS: {out:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // A sidecar's ClientHello (ALPN `istio`) is terminated by the sidecar, whose certificate
    // is a SPIFFE one: never the workload's.
    let subject = subject_offering(at.port(), "db.example.com", &["istio"]);
    assert!(!subject.contains("db.example.com"), "{subject}");
}
