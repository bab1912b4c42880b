//! VirtualService `corsPolicy` in the swarm: policies on some rules, browsers' CORS requests
//! and preflights among the clients' requests, and what Envoy's CORS filter makes of them.
//!
//! About a third of the seeds with the routing vocabulary put a policy on half their rules
//! (origins matched exactly, by prefix or by regex, sometimes the literal `*`; methods and
//! headers listed or `*`; exposed headers, `maxAge`, `allowCredentials`, `unmatchedPreflights`)
//! and send 20–60 % of their requests with an `Origin` (allowed, not allowed, empty), half of
//! those without a body as preflights (`OPTIONS` with `access-control-request-method`, which is
//! sometimes empty: then it is no preflight).
//!
//! **Reference semantics** ([`expect`]), written from Envoy's filter
//! (source/extensions/filters/http/cors/cors_filter.cc, `decodeHeaders`/`encodeHeaders`) and
//! pilot's translation (`translateCORSPolicy` in pilot/pkg/networking/core/route/route.go:
//! lists joined with `,`, `maxAge` in whole seconds, `IGNORE` → `forward_not_matching_preflights:
//! false`), not from the engine:
//! - no `origin`, or an empty one: not a CORS request; nothing is added;
//! - an origin is allowed when a matcher accepts it or the literal `*`;
//! - a preflight (`OPTIONS`, an origin, a non-empty `access-control-request-method`) from an
//!   allowed origin, or from any origin under `IGNORE`, is answered by the proxy with 200 and:
//!   `access-control-allow-origin` (the origin, only when allowed), `-allow-credentials: true`
//!   (when set, allowed or not), `-allow-methods` (the list, or the requested method for `*`),
//!   `-allow-headers` (the list, or the requested headers for `*`, empty when none were
//!   asked), `-max-age`; it never reaches a server;
//! - any other request from an allowed origin has its response decorated:
//!   `access-control-allow-origin`, `-allow-credentials`, `-expose-headers`; from another
//!   origin nothing is added. The filter runs after the fault filter, so an injected abort is
//!   never decorated (the CORS filter did not see the request), while whatever the router
//!   answers (a direct response, a redirect, a 503) is.

use serde::{Deserialize, Serialize};
use trellis_engine::config::{CorsPolicy, UnmatchedPreflights};

use super::reference::str_matches;
use super::scenario::{RequestVocab, Scenario};
use super::vocab::{RequestShape, StrMatch};

/// A rule's `corsPolicy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsSpec {
    pub allow_origins: Vec<StrMatch>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_s: Option<u64>,
    pub allow_credentials: Option<bool>,
    /// `unmatchedPreflights: IGNORE` (else `FORWARD`, the default).
    pub ignore_unmatched: bool,
}

/// Origins clients send: allowed by some generated matcher or by none.
const ORIGINS: &[&str] = &[
    "https://a.example",
    "https://a.example.evil",
    "https://b.example:8443",
    "https://c12.example",
    "https://cx.example",
    "http://other.test",
    "",
];

/// Response headers the CORS filter writes; clients keep them all.
pub const RESPONSE_HEADERS: &[&str] = &[
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "access-control-expose-headers",
];

/// Turns CORS on in some seeds with the routing vocabulary, from a stream of its own.
pub(super) fn generate(seed: u64, scn: &mut Scenario) {
    let mut r = fastrand::Rng::with_seed(seed ^ 0xc025_0000_0000_001c);
    let Some(vocab) = scn.requests.as_mut() else {
        return;
    };
    if r.u8(0..100) >= 30 {
        return;
    }
    vocab.cors_percent = [20, 40, 60][r.usize(0..3)];
    let rules = (scn.services.iter_mut().flat_map(|s| s.rules.iter_mut())).chain(
        scn.config_pushes
            .iter_mut()
            .flat_map(|p| p.rules.iter_mut()),
    );
    for rule in rules {
        // Only rules already in the vocabulary: the others keep the original fast path.
        if let Some(v) = rule.vocab.as_mut() {
            if r.bool() {
                v.cors = Some(policy(&mut r));
            }
        }
    }
}

fn policy(r: &mut fastrand::Rng) -> CorsSpec {
    let mut allow_origins = Vec::new();
    for _ in 0..r.usize(1..=3) {
        allow_origins.push(match r.u8(0..10) {
            0..=3 => StrMatch::Exact("https://a.example".into()),
            4 | 5 => StrMatch::Prefix("https://b.".into()),
            6 | 7 => StrMatch::Regex(r"https://c[0-9]+\.example".into()),
            8 => StrMatch::Exact("*".into()),
            _ => StrMatch::Exact("http://other.test".into()),
        });
    }
    let list = |r: &mut fastrand::Rng, names: &[&str]| -> Vec<String> {
        match r.u8(0..3) {
            0 => Vec::new(),
            1 => vec!["*".to_string()],
            _ => names.iter().map(|n| n.to_string()).collect(),
        }
    };
    CorsSpec {
        allow_origins,
        allow_methods: list(r, &["GET", "POST"]),
        allow_headers: list(r, &["x-a", "x-b"]),
        expose_headers: if r.bool() {
            vec!["x-e1".into(), "x-e2".into()]
        } else {
            Vec::new()
        },
        max_age_s: r.bool().then(|| [0, 60, 86_400][r.usize(0..3)]),
        allow_credentials: [None, Some(true), Some(false)][r.usize(0..3)],
        ignore_unmatched: r.u8(0..4) == 0,
    }
}

/// Adds a CORS origin (and for some requests without a body, a preflight's method and
/// headers) to a request drawn from `vocab`; draws nothing in seeds without CORS, so their
/// requests stay the same.
pub(super) fn draw(
    r: &mut fastrand::Rng,
    vocab: &RequestVocab,
    with_body: bool,
    method: &mut String,
    headers: &mut Vec<(String, String)>,
) {
    if vocab.cors_percent == 0 || r.u8(0..100) >= vocab.cors_percent {
        return;
    }
    let origin = ORIGINS[r.usize(0..ORIGINS.len())];
    headers.push(("origin".into(), origin.into()));
    if with_body || r.bool() {
        return;
    }
    *method = "OPTIONS".into();
    let asked = ["PUT", "GET", ""][r.usize(0..3)];
    headers.push(("access-control-request-method".into(), asked.into()));
    if r.bool() {
        headers.push(("access-control-request-headers".into(), "x-a,x-z".into()));
    }
}

/// What the CORS filter does with a request (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsExpect {
    /// Not a CORS request, or one from an origin that is not allowed: nothing is added to
    /// the response, whoever answers it.
    Untouched,
    /// The proxy answers 200 with exactly these headers; no server sees the request.
    Preflight(Vec<(String, String)>),
    /// The response, whoever answers it (but an injected abort), carries these headers.
    Decorated(Vec<(String, String)>),
}

/// The reference: what `policy` does with `shape`.
pub fn expect(policy: &CorsSpec, shape: &RequestShape) -> CorsExpect {
    let origin = match shape.header("origin") {
        Some(o) if !o.is_empty() => o,
        _ => return CorsExpect::Untouched,
    };
    let allowed = (policy.allow_origins.iter())
        .any(|m| str_matches(m, "*", false) || str_matches(m, origin, false));
    let asked_method = shape.header("access-control-request-method").unwrap_or("");
    let preflight = shape.method == "OPTIONS" && !asked_method.is_empty();
    let credentials = policy.allow_credentials == Some(true);
    let joined = |list: &[String]| (!list.is_empty()).then(|| list.join(","));
    if !preflight || (!allowed && !policy.ignore_unmatched) {
        if !allowed {
            return CorsExpect::Untouched;
        }
        let mut out = vec![(
            "access-control-allow-origin".to_string(),
            origin.to_string(),
        )];
        if credentials {
            out.push(("access-control-allow-credentials".into(), "true".into()));
        }
        if let Some(v) = joined(&policy.expose_headers) {
            out.push(("access-control-expose-headers".into(), v));
        }
        return CorsExpect::Decorated(out);
    }
    let mut out = Vec::new();
    if allowed {
        out.push((
            "access-control-allow-origin".to_string(),
            origin.to_string(),
        ));
    }
    if credentials {
        out.push(("access-control-allow-credentials".into(), "true".into()));
    }
    let echo = |configured: Option<String>, asked: &str| {
        configured.map(|v| if v == "*" { asked.to_string() } else { v })
    };
    if let Some(v) = echo(joined(&policy.allow_methods), asked_method) {
        out.push(("access-control-allow-methods".into(), v));
    }
    let asked_headers = shape.header("access-control-request-headers").unwrap_or("");
    if let Some(v) = echo(joined(&policy.allow_headers), asked_headers) {
        out.push(("access-control-allow-headers".into(), v));
    }
    if let Some(s) = policy.max_age_s {
        out.push(("access-control-max-age".into(), s.to_string()));
    }
    CorsExpect::Preflight(out)
}

/// The engine's policy, as the control plane translates Istio's.
pub fn engine_policy(spec: &CorsSpec) -> CorsPolicy {
    CorsPolicy {
        allow_origins: spec.allow_origins.iter().map(StrMatch::engine).collect(),
        allow_methods: spec.allow_methods.clone(),
        allow_headers: spec.allow_headers.clone(),
        expose_headers: spec.expose_headers.clone(),
        max_age: spec.max_age_s.map(std::time::Duration::from_secs),
        allow_credentials: spec.allow_credentials,
        unmatched_preflights: if spec.ignore_unmatched {
            UnmatchedPreflights::Ignore
        } else {
            UnmatchedPreflights::Forward
        },
    }
}

/// The coverage table's rows for a scenario's CORS.
pub(super) fn coverage_rows(scn: &Scenario) -> Vec<&'static str> {
    if scn.requests.as_ref().is_none_or(|v| v.cors_percent == 0) {
        return Vec::new();
    }
    let policies: Vec<&CorsSpec> = (scn.services.iter().flat_map(|s| s.rules.iter()))
        .chain(scn.config_pushes.iter().flat_map(|p| p.rules.iter()))
        .filter_map(|r| r.vocab.as_ref()?.cors.as_ref())
        .collect();
    let mut out = Vec::new();
    if !policies.is_empty() {
        out.push("corsPolicy (origins, preflights)");
    }
    if policies.iter().any(|p| p.ignore_unmatched) {
        out.push("corsPolicy unmatchedPreflights IGNORE");
    }
    if policies
        .iter()
        .any(|p| p.allow_methods == ["*"] || p.allow_headers == ["*"])
    {
        out.push("corsPolicy allowMethods/allowHeaders *");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(method: &str, headers: &[(&str, &str)]) -> RequestShape {
        RequestShape {
            method: method.into(),
            path: "/".into(),
            headers: (headers.iter())
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..RequestShape::default()
        }
    }

    fn spec() -> CorsSpec {
        CorsSpec {
            allow_origins: vec![StrMatch::Exact("https://a.example".into())],
            allow_methods: vec!["*".into()],
            allow_headers: vec!["x-a".into(), "x-b".into()],
            expose_headers: vec!["x-e1".into()],
            max_age_s: Some(60),
            allow_credentials: Some(true),
            ignore_unmatched: false,
        }
    }

    /// cors_filter.cc `decodeHeaders`: an allowed preflight is answered with the request's
    /// method echoed for `*`, the listed headers joined, max-age and credentials.
    #[test]
    fn an_allowed_preflight_is_answered_with_its_headers() {
        let s = shape(
            "OPTIONS",
            &[
                ("origin", "https://a.example"),
                ("access-control-request-method", "PUT"),
            ],
        );
        let want = [
            ("access-control-allow-origin", "https://a.example"),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", "PUT"),
            ("access-control-allow-headers", "x-a,x-b"),
            ("access-control-max-age", "60"),
        ];
        let want = want.iter().map(|(n, v)| (n.to_string(), v.to_string()));
        assert_eq!(expect(&spec(), &s), CorsExpect::Preflight(want.collect()));
    }

    /// `forwardNotMatchingPreflights` (true unless IGNORE): an unmatched preflight is
    /// forwarded untouched; under IGNORE answered without allow-origin, credentials kept.
    #[test]
    fn an_unmatched_preflight_is_forwarded_or_answered_without_the_origin() {
        let s = shape(
            "OPTIONS",
            &[
                ("origin", "https://x.example"),
                ("access-control-request-method", "PUT"),
            ],
        );
        assert_eq!(expect(&spec(), &s), CorsExpect::Untouched);
        let ignore = CorsSpec {
            ignore_unmatched: true,
            ..spec()
        };
        let CorsExpect::Preflight(headers) = expect(&ignore, &s) else {
            panic!("answered");
        };
        assert_eq!(
            headers[0],
            ("access-control-allow-credentials".into(), "true".into())
        );
        assert!(!headers
            .iter()
            .any(|(n, _)| n == "access-control-allow-origin"));
    }

    /// `encodeHeaders`: an allowed origin's actual request is decorated; an empty
    /// access-control-request-method makes an OPTIONS no preflight; `*` allows every origin.
    #[test]
    fn actual_requests_are_decorated_for_allowed_origins_only() {
        let get = shape("GET", &[("origin", "https://a.example")]);
        let CorsExpect::Decorated(h) = expect(&spec(), &get) else {
            panic!("decorated");
        };
        assert_eq!(h.len(), 3, "{h:?}");
        let options = shape(
            "OPTIONS",
            &[
                ("origin", "https://a.example"),
                ("access-control-request-method", ""),
            ],
        );
        assert!(matches!(
            expect(&spec(), &options),
            CorsExpect::Decorated(_)
        ));
        let other = shape("GET", &[("origin", "https://x.example")]);
        assert_eq!(expect(&spec(), &other), CorsExpect::Untouched);
        let star = CorsSpec {
            allow_origins: vec![StrMatch::Exact("*".into())],
            ..spec()
        };
        assert!(matches!(expect(&star, &other), CorsExpect::Decorated(_)));
        assert_eq!(
            expect(&spec(), &shape("GET", &[("origin", "")])),
            CorsExpect::Untouched
        );
    }
}
