//! RequestAuthentication translation: which policies apply and how their rules merge (pilot's
//! `newPolicyApplier`), the provider fields and requirement `convertToEnvoyJwtConfig` writes,
//! JWKS resolution and its failure modes, and the translated filter run on Istio's sample
//! token.

use std::time::Duration;

use trellis_engine::authn::{Authenticated, AuthnRequest, Requirement, Status};
use trellis_engine::http1::Fields;

use super::*;
use crate::diag::Severity;
use crate::istio::parse_str;
use crate::jwks_resolver::NoFetch;

fn shared_jwks() -> String {
    std::fs::read_to_string(crate::shared_dir().join("istio/security/jwt/jwks.json")).unwrap()
}

fn demo_jwt() -> String {
    std::fs::read_to_string(crate::shared_dir().join("istio/security/jwt/demo.jwt"))
        .unwrap()
        .trim()
        .to_string()
}

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

fn ra(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}\n---\n"
    )
}

/// A source that serves one URI and counts nothing else.
struct Serve(&'static str, String);

impl JwksSource for Serve {
    fn resolve(&self, _issuer: &str, uri: &str, _timeout: Duration) -> Result<String, String> {
        if uri == self.0 {
            Ok(self.1.clone())
        } else {
            Err(format!("GET {uri}: connection refused"))
        }
    }
}

fn translate(yaml: &str, w: &Workload, source: &dyn JwksSource) -> AuthnTranslation {
    let set = parse_str(yaml, "ra.yaml").unwrap();
    assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
    authentication_for(&set, w, source)
}

fn run(
    t: &AuthnTranslation,
    headers: &[(&'static str, &str)],
) -> (Result<Authenticated, Status>, Fields) {
    let mut map = Fields::new();
    for (k, v) in headers {
        assert!(map.append_text(k, v));
    }
    let mut target = trellis_engine::http1::Target::from("/headers");
    let result = t
        .authentication
        .as_ref()
        .expect("a filter")
        .authenticate(&mut AuthnRequest {
            method: "GET",
            target: &mut target,
            headers: &mut map,
            // 2030: Istio's demo.jwt expires in 2118.
            unix_now: 1_893_456_000,
        });
    (result, map)
}

#[test]
fn istio_task_inline_jwks_demo_token_verifies_and_outputs_the_payload() {
    let yaml = ra(
        "shop",
        "jwt",
        &format!(
            "  selector: {{matchLabels: {{app: web}}}}\n  jwtRules:\n  - issuer: testing@secure.istio.io\n    jwks: {:?}\n    outputPayloadToHeader: x-payload\n",
            shared_jwks()
        ),
    );
    let t = translate(&yaml, &workload("shop", &[("app", "web")]), &NoFetch);
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    let a = t.authentication.as_ref().unwrap();
    assert_eq!(a.providers()[0].name, "origins-0");
    assert_eq!(
        a.providers()[0].space_delimited_claims,
        ["permission", "scope"],
        "pilot's buildSpaceDelimitedClaims defaults"
    );
    assert!(
        !a.providers()[0].forward,
        "forwardOriginalToken defaults to false"
    );
    assert_eq!(
        a.requirement(),
        &Requirement::Any {
            of: vec![Requirement::Provider(0)],
            allow_missing: true
        }
    );
    let token = demo_jwt();
    let (result, headers) = run(&t, &[("authorization", &format!("Bearer {token}"))]);
    let Ok(Authenticated::Verified(payload)) = result else {
        panic!("{result:?}");
    };
    assert_eq!(
        payload.principal(),
        "testing@secure.istio.io/testing@secure.istio.io"
    );
    assert_eq!(
        headers.get("x-payload").unwrap(),
        token.split('.').nth(1).unwrap().as_bytes()
    );
    assert!(headers.get("authorization").is_none());
    // Not selected: another app gets nothing.
    let t = translate(&yaml, &workload("shop", &[("app", "db")]), &NoFetch);
    assert!(t.authentication.is_none());
}

#[test]
fn pilot_merges_every_matching_policy_sorted_by_issuer() {
    let rule = |iss: &str| {
        format!(
            "  jwtRules:\n  - issuer: {iss}\n    jwks: {:?}\n",
            shared_jwks()
        )
    };
    let yaml = ra("istio-system", "mesh", &rule("z-mesh"))
        + &ra("shop", "ns", &rule("b-ns"))
        + &ra(
            "shop",
            "web",
            &format!(
                "  selector: {{matchLabels: {{app: web}}}}\n{}",
                rule("a-web")
            ),
        )
        + &ra("other", "elsewhere", &rule("c-other"));
    let t = translate(&yaml, &workload("shop", &[("app", "web")]), &NoFetch);
    let a = t.authentication.unwrap();
    let issuers: Vec<&str> = a.providers().iter().map(|p| p.issuer.as_str()).collect();
    assert_eq!(issuers, ["a-web", "b-ns", "z-mesh"]);
    let names: Vec<&str> = a.providers().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["origins-0", "origins-1", "origins-2"]);
    let optional = |i| Requirement::Any {
        of: vec![Requirement::Provider(i)],
        allow_missing: true,
    };
    assert_eq!(
        a.requirement(),
        &Requirement::Any {
            of: vec![
                Requirement::Provider(0),
                Requirement::Provider(1),
                Requirement::Provider(2),
                Requirement::All(vec![optional(0), optional(1), optional(2)]),
            ],
            allow_missing: false,
        },
        "convertToEnvoyJwtConfig's outer OR for several providers"
    );
}

#[test]
fn jwks_uri_is_resolved_and_a_failed_fetch_fails_closed() {
    let yaml = ra(
        "shop",
        "jwt",
        "  jwtRules:\n  - issuer: testing@secure.istio.io\n    jwksUri: https://keys.example/jwks.json\n    fromHeaders: [{name: x-jwt}]\n",
    );
    let w = workload("shop", &[]);
    let t = translate(
        &yaml,
        &w,
        &Serve("https://keys.example/jwks.json", shared_jwks()),
    );
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    let (result, _) = run(&t, &[("x-jwt", &demo_jwt())]);
    assert!(
        matches!(result, Ok(Authenticated::Verified(_))),
        "{result:?}"
    );

    let t = translate(&yaml, &w, &Serve("https://elsewhere/", String::new()));
    assert!(
        t.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Warning && d.message.contains("connection refused")),
        "{:?}",
        t.diagnostics
    );
    let (result, _) = run(&t, &[("x-jwt", &demo_jwt())]);
    assert_eq!(result, Err(Status::JwtVerificationFail), "fail closed");
    let (result, _) = run(&t, &[]);
    assert_eq!(
        result,
        Ok(Authenticated::Anonymous),
        "no token still passes"
    );
}

#[test]
fn the_sidecar_never_fetches_a_uri_left_unresolved() {
    let yaml = ra(
        "shop",
        "jwt",
        "  jwtRules:\n  - issuer: testing@secure.istio.io\n    jwksUri: https://keys.example/jwks.json\n",
    );
    let t = translate(&yaml, &workload("shop", &[]), &NoFetch);
    assert!(
        t.diagnostics[0].message.contains("never"),
        "{:?}",
        t.diagnostics
    );
    let (result, _) = run(&t, &[("authorization", &format!("Bearer {}", demo_jwt()))]);
    assert_eq!(result, Err(Status::JwtVerificationFail));
}

#[test]
fn invalid_rules_are_reported_as_istio_validation_would() {
    let yaml = ra(
        "shop",
        "bad",
        "  jwtRules:\n  - jwks: '{\"keys\":[]}'\n  - issuer: a\n    fromHeaders: [{name: \"bad header\"}]\n    jwks: '{\"keys\":[]}'\n  - issuer: b\n    jwksUri: ftp://keys\n  - issuer: c\n    jwks: 'not json'\n",
    );
    let t = translate(&yaml, &workload("shop", &[]), &NoFetch);
    let errors: Vec<String> = t
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].contains("issuer must be set") && errors[0].contains("jwtRules[0]"));
    assert!(errors[1].contains("\"bad header\""));
    assert!(errors[2].contains("ftp://keys"));
    let a = t.authentication.expect("rule c stays, failing closed");
    assert_eq!(a.providers().len(), 1);
    assert!(a.providers()[0].jwks.is_empty());
    assert!(t
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Warning && d.message.contains("invalid JWKS")));
}

#[test]
fn target_refs_never_attach_to_a_sidecar() {
    let yaml = ra(
        "shop",
        "gw",
        &format!(
            "  targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: gw}}]\n  jwtRules:\n  - issuer: x\n    jwks: {:?}\n",
            shared_jwks()
        ),
    );
    let t = translate(&yaml, &workload("shop", &[]), &NoFetch);
    assert!(t.authentication.is_none());
    assert_eq!(t.diagnostics.len(), 1);
}
