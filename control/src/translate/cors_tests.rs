//! `corsPolicy` as pilot translates it (TranslateCORSPolicy and forwardNotMatchingPreflights in
//! pilot/pkg/networking/core/route/route.go) and as Istio validates it (validateCORSPolicy in
//! pkg/config/validation/validation.go).

use std::time::Duration;

use trellis_engine::config::{CorsPolicy, StringMatch, UnmatchedPreflights};

use crate::diag::Severity;
use crate::translate::tests::{run, vhost};
use crate::translate::Translation;

fn vs(cors: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: ratings}}\n\
         spec:\n  hosts: [ratings]\n  http:\n  - route: [{{destination: {{host: ratings}}}}]\n    \
         corsPolicy:\n{cors}"
    )
}

fn cors_of(cors: &str) -> (Option<CorsPolicy>, Translation) {
    let t = run(&vs(cors));
    let policy = vhost(&t, "ratings.default").routes[0].cors.clone();
    (policy, t)
}

fn errors_at(t: &Translation, prefix: &str) -> usize {
    t.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .filter(|d| d.field.as_deref().is_some_and(|f| f.starts_with(prefix)))
        .count()
}

#[test]
fn every_field_is_translated_as_pilot_writes_it() {
    let (policy, t) = cors_of(
        r#"      allowOrigins: [{exact: "https://a.example"}, {prefix: "https://b."}, {regex: "https://.*\\.c\\.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-token, content-type]
      exposeHeaders: [x-trace]
      maxAge: 24h
      allowCredentials: true
"#,
    );
    assert_eq!(
        policy,
        Some(CorsPolicy {
            allow_origins: vec![
                StringMatch::Exact("https://a.example".into()),
                StringMatch::Prefix("https://b.".into()),
                StringMatch::Regex(r"https://.*\.c\.example".into()),
            ],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["x-token".into(), "content-type".into()],
            expose_headers: vec!["x-trace".into()],
            max_age: Some(Duration::from_secs(86_400)),
            allow_credentials: Some(true),
            unmatched_preflights: UnmatchedPreflights::Forward,
        }),
        "{:?}",
        t.diagnostics
    );
    // The policy is no longer reported as unsupported.
    assert!(
        !t.diagnostics
            .iter()
            .any(|d| d.field.as_deref().is_some_and(|f| f.contains("corsPolicy"))),
        "{:?}",
        t.diagnostics
    );
    let router = trellis_engine::route::Router::new(std::sync::Arc::new(t.config.clone()));
    assert!(router.is_ok());
}

#[test]
fn deprecated_allow_origin_is_exact_and_only_used_without_allow_origins() {
    // `if in.AllowOrigins != nil {...} else if in.AllowOrigin != nil { StringToExactMatch }`.
    let (policy, t) = cors_of("      allowOrigin: [\"https://old.example\"]\n");
    let policy = policy.expect("translated");
    assert_eq!(
        policy.allow_origins,
        vec![StringMatch::Exact("https://old.example".into())]
    );
    assert!(t.diagnostics.iter().any(|d| d.severity == Severity::Warning
        && d.field.as_deref() == Some("spec.http[0].corsPolicy.allowOrigin")));
    let (policy, _) = cors_of(
        "      allowOrigin: [\"https://old.example\"]\n      allowOrigins: [{exact: \"https://new.example\"}]\n",
    );
    assert_eq!(
        policy.expect("translated").allow_origins,
        vec![StringMatch::Exact("https://new.example".into())]
    );
}

#[test]
fn unmatched_preflights_ignore_and_forward() {
    // forwardNotMatchingPreflights: false for IGNORE, true otherwise.
    for (value, want) in [
        ("IGNORE", UnmatchedPreflights::Ignore),
        ("FORWARD", UnmatchedPreflights::Forward),
        ("UNSPECIFIED", UnmatchedPreflights::Forward),
    ] {
        let (policy, _) = cors_of(&format!(
            "      allowOrigins: [{{exact: x}}]\n      unmatchedPreflights: {value}\n"
        ));
        assert_eq!(policy.expect("translated").unmatched_preflights, want);
    }
}

#[test]
fn invalid_policies_are_reported_and_left_out_but_the_rule_stays() {
    for (cors, field) in [
        (
            "      allowOrigins: [{regex: \"(\"}]\n",
            "spec.http[0].corsPolicy.allowOrigins[0]",
        ),
        (
            "      allowOrigins: [{exact: \"\"}]\n",
            "spec.http[0].corsPolicy.allowOrigins[0]",
        ),
        (
            "      allowMethods: [FETCH]\n",
            "spec.http[0].corsPolicy.allowMethods[0]",
        ),
        (
            "      allowHeaders: [\"bad header\"]\n",
            "spec.http[0].corsPolicy.allowHeaders[0]",
        ),
        (
            "      exposeHeaders: [\"\"]\n",
            "spec.http[0].corsPolicy.exposeHeaders[0]",
        ),
        ("      maxAge: 1.5s\n", "spec.http[0].corsPolicy.maxAge"),
        (
            "      unmatchedPreflights: DROP\n",
            "spec.http[0].corsPolicy.unmatchedPreflights",
        ),
    ] {
        let (policy, t) = cors_of(cors);
        assert_eq!(policy, None, "{cors}");
        assert!(errors_at(&t, field) >= 1, "{cors}: {:?}", t.diagnostics);
        assert_eq!(vhost(&t, "ratings.default").routes.len(), 1, "{cors}");
    }
}

#[test]
fn unknown_fields_inside_the_policy_are_reported() {
    let (policy, t) = cors_of("      allowOrigins: [{exact: x}]\n      allowOrigns: [y]\n");
    assert!(policy.is_some());
    assert!(
        t.diagnostics.iter().any(|d| d
            .field
            .as_deref()
            .is_some_and(|f| f.contains("allowOrigns"))),
        "{:?}",
        t.diagnostics
    );
}
