//! AuthorizationPolicies compiled for a TCP filter chain (pilot's `Builder::BuildTCP`, which
//! calls `Model::Generate(forTCP = true)` in pilot/pkg/security/authz/model/model.go): the
//! HTTP-only generators of generator.go (host, method, path, request headers, request
//! principals, audiences, presenter, claims) return "is HTTP only", and `checkError` then drops
//! an ALLOW rule whole but only that attribute of a DENY or AUDIT rule. Each case is evaluated
//! on a connection as Envoy's network RBAC filter would see it.

use std::net::SocketAddr;

use trellis_engine::authz::{AuthzRequest, Verdict};
use trellis_engine::http1::Fields;

use super::*;
use crate::diag::Severity;
use crate::istio::parse_str;

fn policies(specs: &[(&str, &str)]) -> ResourceSet {
    let yaml: String = specs
        .iter()
        .map(|(name, spec)| {
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}\n---\n"
            )
        })
        .collect();
    parse_str(&yaml, "t.yaml").unwrap()
}

/// A connection to port 27017 from `identity` (over mTLS) or plaintext.
fn connection(t: &AuthzTranslation, identity: Option<&str>) -> Verdict {
    let Some(authz) = &t.authorization else {
        return Verdict::Allowed;
    };
    let headers = Fields::default();
    let peer: SocketAddr = "10.0.0.7:40000".parse().unwrap();
    // A mesh peer's certificate: its SPIFFE id as the URI SAN, an empty subject.
    let names: Vec<String> = (identity.iter())
        .flat_map(|id| [id.to_string(), String::new()])
        .collect();
    let req = AuthzRequest {
        method: "",
        authority: "",
        path: "",
        headers: &headers,
        peer,
        destination: "10.0.0.1:27017".parse().unwrap(),
        peer_names: &names,
        sni: None,
        jwt: None,
        client: Some(peer.ip()),
    };
    authz.evaluate(&req, &mut |_| {})
}

const SLEEP: Option<&str> = Some("spiffe://cluster.local/ns/default/sa/sleep");

#[test]
fn an_allow_rule_with_an_http_field_never_matches_a_connection() {
    let set = policies(&[(
        "gets",
        "  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}], to: [{operation: {methods: [GET]}}]}]",
    )]);
    let w = Workload::default();
    // Over HTTP the rule admits sleep's GETs; at L4 it is skipped, and the ALLOW filter with
    // no policy left denies every connection (pilot's hasEnforcePolicy).
    let tcp = tcp_authorization_for(&set, &w);
    assert!(matches!(connection(&tcp, SLEEP), Verdict::Denied(None)));
    assert!(
        tcp.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Info && d.message.contains("TCP filter chain")),
        "{:?}",
        tcp.diagnostics
    );
    assert!(tcp
        .diagnostics
        .iter()
        .all(|d| d.severity != Severity::Error));
}

#[test]
fn l4_attributes_still_decide() {
    let set = policies(&[(
        "db",
        "  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep], namespaces: [default]}}], to: [{operation: {ports: [\"27017\"]}}]}]",
    )]);
    let tcp = tcp_authorization_for(&set, &Workload::default());
    assert_eq!(connection(&tcp, SLEEP), Verdict::Allowed);
    assert!(matches!(
        connection(&tcp, Some("spiffe://cluster.local/ns/default/sa/other")),
        Verdict::Denied(None)
    ));
    assert!(
        matches!(connection(&tcp, None), Verdict::Denied(None)),
        "plaintext has no principal"
    );
}

#[test]
fn a_deny_rule_loses_its_http_fields_and_denies_more() {
    let set = policies(&[(
        "no-admin",
        "  action: DENY\n  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep], requestPrincipals: [\"*\"]}}], to: [{operation: {paths: [\"/admin\"]}}], when: [{key: \"request.headers[x-user]\", values: [mallory]}]}]",
    )]);
    let tcp = tcp_authorization_for(&set, &Workload::default());
    // paths, requestPrincipals and the header condition are dropped: every connection from
    // sleep is denied, others are not.
    assert_eq!(
        connection(&tcp, SLEEP),
        Verdict::Denied(Some("ns[default]-policy[no-admin]-rule[0]".into()))
    );
    assert_eq!(
        connection(&tcp, Some("spiffe://cluster.local/ns/default/sa/web")),
        Verdict::Allowed
    );
}
