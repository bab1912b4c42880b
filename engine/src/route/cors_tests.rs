//! The CORS decisions, case by case as Envoy's
//! test/extensions/filters/http/cors/cors_filter_test.cc checks them (test names cited), with
//! the policy pilot's TranslateCORSPolicy writes.

use std::time::Duration;

use super::*;
use crate::config::StringMatch;

fn policy() -> CorsPolicy {
    // CorsFilterTest's fixture: allow_origins exact "*", GET, content-type, max_age 0.
    CorsPolicy {
        allow_origins: vec![StringMatch::Exact("*".into())],
        allow_methods: vec!["GET".into()],
        allow_headers: vec!["content-type".into()],
        expose_headers: vec!["content-type".into()],
        max_age: Some(Duration::ZERO),
        allow_credentials: Some(false),
        unmatched_preflights: UnmatchedPreflights::Forward,
    }
}

fn compile(p: &CorsPolicy) -> CompiledCors {
    CompiledCors::compile(p, &Location::table("t")).expect("the policy compiles")
}

fn fields(list: &[(&str, &str)]) -> Fields {
    list.iter().copied().collect()
}

fn preflight(origin: &str) -> Fields {
    fields(&[("origin", origin), ("access-control-request-method", "GET")])
}

fn text(list: &[(FieldName, Bytes)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| {
            let v = std::str::from_utf8(v).expect("ascii value");
            (n.as_str().to_owned(), v.to_owned())
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn request_without_origin_is_not_cors() {
    // RequestWithoutOrigin, OptionsRequestWithoutOrigin.
    let c = compile(&policy());
    assert_eq!(
        c.on_request("GET", &fields(&[])),
        CorsVerdict::Forward(None)
    );
    assert_eq!(
        c.on_request(
            "OPTIONS",
            &fields(&[("access-control-request-method", "GET")])
        ),
        CorsVerdict::Forward(None)
    );
    // decodeHeaders: an empty origin counts as none.
    assert_eq!(
        c.on_request("GET", &fields(&[("origin", "")])),
        CorsVerdict::Forward(None)
    );
}

#[test]
fn options_without_request_method_is_forwarded_with_origin_latched() {
    // OptionsRequestWithOrigin, OptionsRequestWithoutAccessRequestMethod: not a preflight.
    let c = compile(&policy());
    assert_eq!(
        c.on_request("OPTIONS", &fields(&[("origin", "localhost")])),
        CorsVerdict::Forward(Some(Bytes::from_static(b"localhost")))
    );
}

#[test]
fn preflight_from_allowed_origin_is_answered() {
    // OptionsRequestMatchingOriginByWildcard: 200 with allow-origin (the request's origin),
    // -methods, -headers, -max-age; no expose-headers, no credentials when false.
    let c = compile(&policy());
    let CorsVerdict::Preflight(h) = c.on_request("OPTIONS", &preflight("test-host")) else {
        panic!("a preflight from an allowed origin is answered");
    };
    assert_eq!(
        text(&h),
        pairs(&[
            ("access-control-allow-origin", "test-host"),
            ("access-control-allow-methods", "GET"),
            ("access-control-allow-headers", "content-type"),
            ("access-control-max-age", "0"),
        ])
    );
}

#[test]
fn preflight_with_credentials_and_lists_joined() {
    // ValidOptionsRequestWithAllowCredentialsTrue; pilot joins the lists with "," and formats
    // maxAge in whole seconds.
    let mut p = policy();
    p.allow_credentials = Some(true);
    p.allow_methods = vec!["GET".into(), "POST".into()];
    p.allow_headers = vec!["content-type".into(), "x-custom".into()];
    p.max_age = Some(Duration::from_millis(86_400_500));
    let CorsVerdict::Preflight(h) = compile(&p).on_request("OPTIONS", &preflight("localhost"))
    else {
        panic!("answered");
    };
    assert_eq!(
        text(&h),
        pairs(&[
            ("access-control-allow-origin", "localhost"),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", "GET,POST"),
            ("access-control-allow-headers", "content-type,x-custom"),
            ("access-control-max-age", "86400"),
        ])
    );
}

#[test]
fn wildcard_methods_and_headers_echo_the_preflight() {
    // decodeHeaders: allow_methods / allow_headers "*" echo the request's
    // access-control-request-method / -headers.
    let mut p = policy();
    p.allow_methods = vec!["*".into()];
    p.allow_headers = vec!["*".into()];
    p.max_age = None;
    let req = fields(&[
        ("origin", "localhost"),
        ("access-control-request-method", "PATCH"),
        ("access-control-request-headers", "x-a,x-b"),
    ]);
    let CorsVerdict::Preflight(h) = compile(&p).on_request("OPTIONS", &req) else {
        panic!("answered");
    };
    assert_eq!(
        text(&h),
        pairs(&[
            ("access-control-allow-origin", "localhost"),
            ("access-control-allow-methods", "PATCH"),
            ("access-control-allow-headers", "x-a,x-b"),
        ])
    );
}

#[test]
fn preflight_from_other_origin_is_forwarded_by_default() {
    // OptionsRequestNotMatchingOrigin / forwardNotMatchingPreflights (pilot: true unless
    // IGNORE): the preflight goes upstream and nothing is latched.
    let mut p = policy();
    p.allow_origins = vec![StringMatch::Exact("localhost".into())];
    assert_eq!(
        compile(&p).on_request("OPTIONS", &preflight("test-host")),
        CorsVerdict::Forward(None)
    );
}

#[test]
fn preflight_from_other_origin_with_ignore_gets_200_without_allow_origin() {
    // OptionsRequestNotMatchingOriginForwardNotMatchingPreflightsFalse: answered locally, the
    // allow-origin header left out, the other allow headers sent.
    let mut p = policy();
    p.allow_origins = vec![StringMatch::Exact("localhost".into())];
    p.unmatched_preflights = UnmatchedPreflights::Ignore;
    let CorsVerdict::Preflight(h) = compile(&p).on_request("OPTIONS", &preflight("test-host"))
    else {
        panic!("answered");
    };
    assert_eq!(
        text(&h),
        pairs(&[
            ("access-control-allow-methods", "GET"),
            ("access-control-allow-headers", "content-type"),
            ("access-control-max-age", "0"),
        ])
    );
}

#[test]
fn simple_request_from_allowed_origin_is_decorated() {
    // EncodeWithAllowCredentialsTrue / EncodeWithExposeHeaders: allow-origin is the latched
    // origin (not the configured "*"), credentials and expose headers added, existing values
    // replaced.
    let mut p = policy();
    p.allow_credentials = Some(true);
    let c = compile(&p);
    let CorsVerdict::Forward(Some(origin)) =
        c.on_request("GET", &fields(&[("origin", "localhost")]))
    else {
        panic!("an allowed origin is latched");
    };
    let mut resp = fields(&[("access-control-allow-origin", "upstream-said")]);
    c.decorate(&origin, &mut resp);
    let got: Vec<(String, String)> = resp
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        pairs(&[
            ("access-control-allow-origin", "localhost"),
            ("access-control-allow-credentials", "true"),
            ("access-control-expose-headers", "content-type"),
        ])
    );
}

#[test]
fn simple_request_from_other_origin_is_not_decorated() {
    // EncodeNonCorsRequest / RedirectRoute...: latched_origin_ empty, no CORS headers.
    let mut p = policy();
    p.allow_origins = vec![StringMatch::Exact("localhost".into())];
    assert_eq!(
        compile(&p).on_request("GET", &fields(&[("origin", "test-host")])),
        CorsVerdict::Forward(None)
    );
}

#[test]
fn prefix_and_regex_origins() {
    // ValidOptionsRequestWithOriginRegex / isOriginAllowed with StringMatcher kinds.
    let mut p = policy();
    p.allow_origins = vec![
        StringMatch::Prefix("https://app.".into()),
        StringMatch::Regex(r"https://.*\.example\.com".into()),
    ];
    let c = compile(&p);
    assert!(c.origin_allowed(b"https://app.corp"));
    assert!(c.origin_allowed(b"https://www.example.com"));
    // Regexes match the whole origin (safe_regex).
    assert!(!c.origin_allowed(b"https://www.example.com.evil"));
    assert!(!c.origin_allowed(b"http://app.corp"));
    // Case matters (Envoy's StringMatcher without ignore_case).
    assert!(!c.origin_allowed(b"HTTPS://APP.corp"));
}

#[test]
fn a_matcher_that_accepts_star_allows_every_origin() {
    // isOriginAllowed: allow_origin->match("*") || match(origin): a regex ".*" or exact "*".
    let mut p = policy();
    p.allow_origins = vec![StringMatch::Regex(".*".into())];
    assert!(compile(&p).origin_allowed(b"https://anything"));
    p.allow_origins = vec![];
    assert!(!compile(&p).origin_allowed(b"https://anything"));
}

#[test]
fn bad_regex_and_bad_values_are_rejected_with_their_location() {
    let mut p = policy();
    p.allow_origins = vec![StringMatch::Regex("(".into())];
    let err = CompiledCors::compile(&p, &Location::table("t")).expect_err("bad regex");
    assert!(
        matches!(err, RouteError::BadRegex { ref field, .. } if field == "corsPolicy.allowOrigins")
    );
    let mut p = policy();
    p.expose_headers = vec!["a\r\nb".into()];
    let err = CompiledCors::compile(&p, &Location::table("t")).expect_err("CR LF in a value");
    assert!(matches!(err, RouteError::InvalidHeaderValue { .. }));
}
