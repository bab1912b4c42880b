//! Translation unit tests: which policies attach (pilot's `ListAuthorizationPolicies` /
//! `ShouldAttachPolicy`), how rule errors shrink ALLOW and widen DENY (`model.go`
//! `checkError`), CUSTOM's refusal, and the translated chain evaluated on requests.

use std::net::SocketAddr;

use trellis_engine::authz::{AuthzRequest, Verdict};

use super::*;
use crate::diag::Severity;
use crate::istio::parse_str;

fn workload(ns: &str, labels: &[(&str, &str)]) -> Workload {
    Workload {
        namespace: ns.into(),
        service_account: "web".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        locality: None,
    }
}

fn policy(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}\n---\n"
    )
}

fn translate(yaml: &str, w: &Workload) -> AuthzTranslation {
    let set = parse_str(yaml, "t.yaml").unwrap();
    assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
    authorization_for(&set, w)
}

/// The verdict for `method path` from `peer` (with `identity` over mTLS, if any).
fn verdict(t: &AuthzTranslation, method: &str, path: &str, identity: Option<&str>) -> Verdict {
    verdict_with_jwt(t, method, path, identity, None)
}

/// [`verdict`] for a request whose JWT was verified with this payload.
fn verdict_with_jwt(
    t: &AuthzTranslation,
    method: &str,
    path: &str,
    identity: Option<&str>,
    jwt: Option<&serde_json::Value>,
) -> Verdict {
    let jwt = jwt.map(|v| {
        trellis_engine::authn::JwtPayload::normalized(
            v.as_object().cloned().unwrap_or_default(),
            &["scope".to_string()],
        )
    });
    let Some(authz) = &t.authorization else {
        return Verdict::Allowed;
    };
    let headers = trellis_engine::http1::Fields::new();
    let peer: SocketAddr = "10.1.2.3:5000".parse().unwrap();
    // A mesh peer's certificate: its SPIFFE id as the URI SAN, an empty subject.
    let names: Vec<String> = (identity.iter())
        .flat_map(|id| [id.to_string(), String::new()])
        .collect();
    let req = AuthzRequest {
        method,
        authority: "web.shop:8080",
        path,
        headers: &headers,
        peer,
        destination: "10.9.9.9:8080".parse().unwrap(),
        peer_names: &names,
        sni: None,
        jwt: jwt.as_ref(),
        client: None,
    };
    authz.evaluate(&req, &mut |_| {})
}

#[test]
fn root_namespace_is_mesh_wide_and_selectors_select() {
    let yaml = policy("istio-system", "mesh", "  action: DENY\n  rules: [{to: [{operation: {paths: [/mesh]}}]}]")
        + &policy("shop", "ns", "  action: DENY\n  rules: [{to: [{operation: {paths: [/ns]}}]}]")
        + &policy("shop", "web-only", "  selector: {matchLabels: {app: web}}\n  action: DENY\n  rules: [{to: [{operation: {paths: [/web]}}]}]")
        + &policy("other", "elsewhere", "  action: DENY\n  rules: [{}]")
        + &policy("shop", "gw", "  targetRefs: [{kind: Gateway, name: g}]\n  action: DENY\n  rules: [{}]");
    let set = parse_str(&yaml, "t.yaml").unwrap();
    let web = workload("shop", &[("app", "web")]);
    let mut diags = Vec::new();
    let names: Vec<_> = policies_for(&set, &web, &mut diags)
        .iter()
        .map(|p| p.source.name.clone())
        .collect();
    assert_eq!(names, ["mesh", "ns", "web-only"]);
    assert!(diags[0].message.contains("targetRef"), "{diags:?}");
    let t = authorization_for(&set, &web);
    for path in ["/mesh", "/ns", "/web"] {
        assert!(!verdict(&t, "GET", path, None).is_allowed(), "{path}");
    }
    assert!(verdict(&t, "GET", "/other", None).is_allowed());
    let db = workload("shop", &[("app", "db")]);
    assert!(verdict(&authorization_for(&set, &db), "GET", "/web", None).is_allowed());
}

#[test]
fn no_policy_allows_empty_rule_allows_all_no_rules_denies_all() {
    let w = workload("shop", &[]);
    assert_eq!(translate("", &w).authorization, None);
    let all = translate(&policy("shop", "all", "  rules: [{}]"), &w);
    assert!(verdict(&all, "GET", "/", None).is_allowed());
    let none = translate(&policy("shop", "none", "  {}"), &w);
    assert_eq!(verdict(&none, "GET", "/", None), Verdict::Denied(None));
    let deny_none = translate(&policy("shop", "none", "  action: DENY"), &w);
    assert!(verdict(&deny_none, "GET", "/", None).is_allowed());
}

#[test]
fn principals_and_namespaces_need_an_identity() {
    let w = workload("shop", &[]);
    let t = translate(
        &policy("shop", "p", "  rules:\n  - from: [{source: {principals: [cluster.local/ns/front/sa/web]}}]\n  - from: [{source: {namespaces: [batch]}}]"),
        &w,
    );
    assert!(verdict(
        &t,
        "GET",
        "/",
        Some("spiffe://cluster.local/ns/front/sa/web")
    )
    .is_allowed());
    assert!(verdict(&t, "GET", "/", Some("spiffe://cluster.local/ns/batch/sa/x")).is_allowed());
    assert!(!verdict(
        &t,
        "GET",
        "/",
        Some("spiffe://cluster.local/ns/front/sa/db")
    )
    .is_allowed());
    assert!(!verdict(&t, "GET", "/", None).is_allowed());
}

#[test]
fn a_bad_value_drops_an_allow_rule_but_only_the_value_of_a_deny_rule() {
    let w = workload("shop", &[]);
    // ALLOW: the rule with a bad port is gone entirely (a smaller allow).
    let t = translate(
        &policy("shop", "a", "  rules:\n  - to: [{operation: {ports: [\"80\", \"http\"]}}]\n  - to: [{operation: {paths: [/ok]}}]"),
        &w,
    );
    assert!(
        !verdict(&t, "GET", "/", None).is_allowed(),
        "port 8080 ≠ 80 anyway"
    );
    assert!(verdict(&t, "GET", "/ok", None).is_allowed());
    assert!(t.diagnostics.iter().any(|d| d.severity == Severity::Error
        && d.message.contains("invalid port http")
        && d.field.as_deref() == Some("spec.rules[0]")));
    // DENY: the bad value is dropped, the rest still denies.
    let t = translate(
        &policy("shop", "d", "  action: DENY\n  rules: [{from: [{source: {ipBlocks: [\"10.1.0.0/16\", \"nonsense\"]}}]}]"),
        &w,
    );
    assert!(!verdict(&t, "GET", "/", None).is_allowed());
}

#[test]
fn unknown_when_keys_never_fail_a_deny_open() {
    let w = workload("shop", &[]);
    let when = "  rules: [{to: [{operation: {paths: [/admin]}}], when: [{key: request.bogus, values: [x]}]}]";
    let deny = translate(&policy("shop", "d", &format!("  action: DENY\n{when}")), &w);
    assert!(!verdict(&deny, "GET", "/admin", None).is_allowed());
    assert!(verdict(&deny, "GET", "/public", None).is_allowed());
    let allow = translate(&policy("shop", "a", when), &w);
    assert!(!verdict(&allow, "GET", "/admin", None).is_allowed());
    assert!(allow
        .diagnostics
        .iter()
        .any(|d| d.message.contains("unknown attribute request.bogus")));
}

#[test]
fn custom_is_refused_by_name_and_denies_what_it_matches() {
    let w = workload("shop", &[]);
    let t = translate(
        &policy("shop", "ext", "  action: CUSTOM\n  provider: {name: opa}\n  rules: [{to: [{operation: {paths: [/admin]}}]}]"),
        &w,
    );
    let d = &t.diagnostics[0];
    assert_eq!(d.severity, Severity::Error);
    assert!(
        d.message.contains("CUSTOM is not supported") && d.message.contains("shop/ext"),
        "{d:?}"
    );
    assert_eq!(
        verdict(&t, "GET", "/admin", None),
        Verdict::Denied(Some(
            "istio-ext-authz-opa-ns[shop]-policy[ext]-rule[0]-deny-due-to-bad-CUSTOM-action".into()
        ))
    );
    assert!(verdict(&t, "GET", "/x", None).is_allowed());
}

#[test]
fn request_principals_star_needs_a_verified_token_whatever_the_peer() {
    let w = workload("shop", &[]);
    let t = translate(
        &policy(
            "shop",
            "j",
            "  rules: [{from: [{source: {requestPrincipals: [\"*\"]}}]}]",
        ),
        &w,
    );
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    assert!(!verdict(&t, "GET", "/", Some("spiffe://td/ns/a/sa/b")).is_allowed());
    let token = serde_json::json!({"iss": "i", "sub": "s"});
    assert!(verdict_with_jwt(&t, "GET", "/", None, Some(&token)).is_allowed());
    // DENY notRequestPrincipals ["*"]: every request without a token is denied (Istio's
    // "require JWT" pattern), one with a token passes.
    let t = translate(
        &policy(
            "shop",
            "j",
            "  action: DENY\n  rules: [{from: [{source: {notRequestPrincipals: [\"*\"]}}]}]",
        ),
        &w,
    );
    assert!(!verdict(&t, "GET", "/", None).is_allowed());
    assert!(verdict_with_jwt(&t, "GET", "/", None, Some(&token)).is_allowed());
}

#[test]
fn request_principals_and_request_auth_claims_match_the_verified_token() {
    // Istio's "Authorization with JWT" task: requestPrincipals, then a groups claim.
    let yaml = policy(
        "shop",
        "require-jwt",
        "  rules:\n  - from: [{source: {requestPrincipals: [\"testing@secure.istio.io/testing@secure.istio.io\"]}}]\n    when: [{key: \"request.auth.claims[groups]\", values: [group1]}]",
    ) + &policy(
        "shop",
        "deny-scope",
        "  action: DENY\n  rules: [{when: [{key: \"request.auth.claims[scope]\", values: [admin]}, {key: request.auth.presenter, values: [\"*\"]}]}]",
    );
    let t = translate(&yaml, &workload("shop", &[]));
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    let token = serde_json::json!({"iss": "testing@secure.istio.io", "sub": "testing@secure.istio.io",
        "groups": ["group1", "group2"], "scope": "read admin"});
    let v = |jwt: Option<&serde_json::Value>| verdict_with_jwt(&t, "GET", "/", None, jwt);
    assert_eq!(
        v(None),
        Verdict::Denied(None),
        "no token: no request principal"
    );
    assert_eq!(v(Some(&token)), Verdict::Allowed);
    let mut other = token.clone();
    other["groups"] = serde_json::json!("group2");
    assert_eq!(
        v(Some(&other)),
        Verdict::Denied(None),
        "claim not in the list"
    );
    let mut presented = token.clone();
    presented["azp"] = serde_json::json!("frontend");
    assert!(
        matches!(v(Some(&presented)), Verdict::Denied(Some(ref p)) if p.contains("deny-scope")),
        "scope is space-delimited: `admin` is one of its words"
    );
}

#[test]
fn request_principal_wildcards_follow_pilot() {
    let t = |value: &str| {
        translate(
            &policy(
                "shop",
                "p",
                &format!("  rules: [{{from: [{{source: {{requestPrincipals: [\"{value}\"]}}}}]}}]"),
            ),
            &workload("shop", &[]),
        )
    };
    let token = |iss: &str, sub: &str| serde_json::json!({"iss": iss, "sub": sub});
    let allowed = |value: &str, iss: &str, sub: &str| {
        verdict_with_jwt(&t(value), "GET", "/", None, Some(&token(iss, sub))).is_allowed()
    };
    assert!(allowed("*", "https://a", "x"));
    assert!(allowed(
        "https://issuer.example/*",
        "https://issuer.example",
        "anyone"
    ));
    assert!(!allowed(
        "https://issuer.example/*",
        "https://issuer.example/x",
        "anyone"
    ));
    assert!(
        allowed("*/alice", "https://whoever", "alice"),
        "`*` issuer, exact subject"
    );
    assert!(allowed("*example/alice", "https://issuer.example", "alice"));
    assert!(!allowed("*example/alice", "https://issuer.example", "bob"));
    assert!(allowed(
        "https://issuer.example/al*",
        "https://issuer.example",
        "alice"
    ));
    assert!(
        allowed(
            "https://issuer.example/alice",
            "https://issuer.example",
            "alice"
        ),
        "split at the last `/`: the issuer is a URL"
    );
}
#[test]
fn ports_parse_as_pilots_convert_to_port() {
    assert_eq!(port("80"), Ok(80));
    assert_eq!(port("080"), Ok(80));
    assert_eq!(port("65535"), Ok(65535));
    for bad in ["", "+80", "-1", "65536", "http", "99999999999999999999999"] {
        assert!(port(bad).is_err(), "{bad}");
    }
}
