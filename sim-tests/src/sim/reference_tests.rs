//! Unit tests of the reference model's rules (routing, rewrites, redirects, queries).
use super::*;

fn shape(path: &str, query: &str, headers: &[(&str, &str)]) -> RequestShape {
    RequestShape {
        method: "GET".into(),
        path: path.into(),
        sent_path: None,
        query: query.into(),
        authority: "svc0".into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    }
}

fn seen(s: &RequestShape) -> SeenRequest<'_> {
    SeenRequest {
        shape: s,
        user: None,
        labels: &[],
        port: LISTENER_PORT,
    }
}

#[test]
fn string_matches_follow_envoy() {
    let re = StrMatch::Regex("/api/v[0-9]+".into());
    assert!(str_matches(&re, "/api/v12", false));
    assert!(!str_matches(&re, "/api/v1/x", false), "anchored at the end");
    assert!(
        !str_matches(&re, "x/api/v1", false),
        "anchored at the start"
    );
    assert!(
        !str_matches(&re, "/API/V1", true),
        "regex ignores ignoreUriCase"
    );
    assert!(str_matches(
        &StrMatch::Prefix("/Api".into()),
        "/api/x",
        true
    ));
    assert!(!str_matches(
        &StrMatch::Prefix("/Api".into()),
        "/api/x",
        false
    ));
    assert!(str_matches(&StrMatch::Exact(String::new()), "", false));
}

#[test]
fn without_headers_treat_missing_as_empty() {
    let s = shape("/", "", &[]);
    let exclude_empty_prefix = MatchSpec {
        without_headers: vec![("x-h0".into(), Some(StrMatch::Prefix(String::new())))],
        ..MatchSpec::default()
    };
    assert!(!block_matches(&exclude_empty_prefix, &seen(&s)));
    let exclude_present = MatchSpec {
        without_headers: vec![("x-h0".into(), Some(StrMatch::Regex("*".into())))],
        ..MatchSpec::default()
    };
    assert!(block_matches(&exclude_present, &seen(&s)));
    let with = shape("/", "", &[("x-h0", "a")]);
    assert!(!block_matches(&exclude_present, &seen(&with)));
}

#[test]
fn regex_rewrites_replace_every_match_with_groups() {
    let s = shape("/api/v1/x", "q=1", &[]);
    assert_eq!(
        regex_rewrite(r"^/([^/]+)/(.*)$", r"/\2/\1", &s),
        "/v1/x/api?q=1"
    );
    assert_eq!(regex_rewrite("[0-9]", "N", &s), "/api/vN/x?q=1");
    assert_eq!(regex_rewrite("/", "$", &s), "$api$v1$x?q=1");
}

#[test]
fn virtual_hosts_by_envoy_precedence() {
    let none: Vec<(String, usize)> = Vec::new();
    assert_eq!(resolve_vhost("svc3", 5, &none), Some(3));
    assert_eq!(resolve_vhost("SVC3:8080", 5, &none), Some(3));
    assert_eq!(resolve_vhost("svc3.example", 5, &none), None);
    assert_eq!(resolve_vhost("svc31", 5, &none), None);
    let wild: Vec<(String, usize)> = [("*.example", 1), ("*.b.example", 2), ("foo.*", 3), ("*", 4)]
        .iter()
        .map(|(p, s)| (p.to_string(), *s))
        .collect();
    assert_eq!(
        resolve_vhost("a.b.example", 5, &wild),
        Some(2),
        "longest suffix"
    );
    assert_eq!(
        resolve_vhost("x.example:80", 5, &wild),
        Some(1),
        "port stripped"
    );
    assert_eq!(
        resolve_vhost(".example", 5, &wild),
        Some(4),
        "never an empty remainder"
    );
    assert_eq!(resolve_vhost("foo.bar", 5, &wild), Some(3));
    assert_eq!(resolve_vhost("svc0", 5, &wild), Some(0), "exact first");
    assert_eq!(resolve_vhost("other", 5, &wild), Some(4));
}

#[test]
fn query_first_occurrence_and_bare_names() {
    assert_eq!(query_value("a=1&a=2", "a"), Some("1"));
    assert_eq!(query_value("other=1&q", "q"), Some(""));
    assert_eq!(query_value("qq=1", "q"), None);
}

#[test]
fn prefix_rewrite_of_a_rule_without_uri_replaces_the_leading_slash() {
    let rule = Rule {
        dests: vec![(0, 100)],
        vocab: Some(Box::new(super::super::scenario::RuleVocab {
            rewrite: Some(super::super::scenario::RewriteSpec {
                uri: Some("/v2/".into()),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Rule::default()
    };
    let s = shape("/api/x", "q=1", &[]);
    assert_eq!(upstream_target(&rule, None, &s), "/v2/api/x?q=1");
}
