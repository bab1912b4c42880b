//! Tests of the compiled matchers (one kind of condition at a time).

use super::*;
use crate::route::RouteRequest;
use quickcheck_macros::quickcheck;

fn sm(m: StringMatch) -> StrMatcher {
    StrMatcher::compile(&m, false).unwrap()
}

fn ci(m: StringMatch) -> StrMatcher {
    StrMatcher::compile(&m, true).unwrap()
}

#[test]
fn exact_prefix_regex() {
    let e = sm(StringMatch::Exact("/a".into()));
    assert!(e.matches(b"/a"));
    assert!(!e.matches(b"/a/"));
    assert!(!e.matches(b"/A"));
    let p = sm(StringMatch::Prefix("/api".into()));
    assert!(p.matches(b"/api"));
    assert!(p.matches(b"/api/v1"));
    assert!(!p.matches(b"/ap"));
    assert!(sm(StringMatch::Prefix(String::new())).matches(b""));
    let r = sm(StringMatch::Regex("/v[0-9]+".into()));
    assert!(r.matches(b"/v12"));
    // Anchored on both ends: a partial match is no match.
    assert!(!r.matches(b"/v12/x"));
    assert!(!r.matches(b"x/v12"));
    // Alternation is anchored as a whole, not just its first branch.
    let alt = sm(StringMatch::Regex("a|b".into()));
    assert!(alt.matches(b"b"));
    assert!(!alt.matches(b"ab"));
}

#[test]
fn ignore_case_applies_to_all_kinds() {
    assert!(ci(StringMatch::Exact("/Login".into())).matches(b"/LOGIN"));
    assert!(ci(StringMatch::Prefix("/API".into())).matches(b"/api/x"));
    assert!(!ci(StringMatch::Prefix("/API".into())).matches(b"/ap"));
    assert!(ci(StringMatch::Regex("/[a-z]+".into())).matches(b"/ABC"));
}

#[test]
fn bad_and_huge_regexes_are_rejected() {
    assert!(StrMatcher::compile(&StringMatch::Regex("(".into()), false).is_err());
    // Far beyond the size limit once compiled.
    let huge = StringMatch::Regex("[a-z]{1000}{1000}".into());
    assert!(StrMatcher::compile(&huge, false).is_err());
}

#[test]
fn query_value_parsing() {
    let q = Some("a=1&b&c=&a=2&=x&d=e=f");
    assert_eq!(query_value(q, "a"), Some("1"));
    assert_eq!(query_value(q, "b"), Some(""));
    assert_eq!(query_value(q, "c"), Some(""));
    assert_eq!(query_value(q, "d"), Some("e=f"));
    assert_eq!(query_value(q, "z"), None);
    assert_eq!(query_value(None, "a"), None);
    assert_eq!(query_value(Some("a%20b=1"), "a b"), None);
}

struct Req {
    headers: crate::http1::Fields,
    labels: BTreeMap<String, String>,
    path: &'static str,
    method: &'static str,
    port: u16,
}

impl Req {
    fn new(path: &'static str) -> Req {
        Req {
            headers: crate::http1::Fields::new(),
            labels: BTreeMap::new(),
            path,
            method: "GET",
            port: 80,
        }
    }
    fn header(mut self, n: &'static str, v: &'static str) -> Req {
        self.headers.append_text(n, v);
        self
    }
    fn check(&self, m: &RouteMatch) -> Result<(), Failed> {
        let req = RouteRequest {
            authority: "Reviews:9080",
            path: self.path,
            method: self.method,
            scheme: "http",
            headers: &self.headers,
            port: self.port,
            source_labels: &self.labels,
        };
        CompiledMatch::compile(m, &Location::table("t"))
            .unwrap()
            .check(&Prepared::new(&req))
    }
}

fn header(name: &str, value: Option<StringMatch>) -> HeaderMatch {
    HeaderMatch {
        name: name.into(),
        value,
    }
}

#[test]
fn empty_match_holds() {
    assert_eq!(Req::new("/").check(&RouteMatch::default()), Ok(()));
}

#[test]
fn uri_ignores_query() {
    let m = RouteMatch {
        uri: Some(StringMatch::Exact("/productpage".into())),
        ..RouteMatch::default()
    };
    assert_eq!(Req::new("/productpage?u=1").check(&m), Ok(()));
    assert_eq!(Req::new("/productpage/x").check(&m), Err(Failed::Uri));
}

#[test]
fn method_scheme_authority_port() {
    let m = RouteMatch {
        method: Some(StringMatch::Exact("GET".into())),
        scheme: Some(StringMatch::Exact("http".into())),
        authority: Some(StringMatch::Prefix("Reviews".into())),
        port: Some(80),
        ..RouteMatch::default()
    };
    assert_eq!(Req::new("/").check(&m), Ok(()));
    let mut post = Req::new("/");
    post.method = "POST";
    assert_eq!(post.check(&m), Err(Failed::Method));
    let mut other_port = Req::new("/");
    other_port.port = 9080;
    assert_eq!(other_port.check(&m), Err(Failed::Port));
    let https = RouteMatch {
        scheme: Some(StringMatch::Exact("https".into())),
        ..RouteMatch::default()
    };
    assert_eq!(Req::new("/").check(&https), Err(Failed::Scheme));
    // Authority is compared as sent (case-sensitive, like Envoy's :authority header match).
    let lower = RouteMatch {
        authority: Some(StringMatch::Prefix("reviews".into())),
        ..RouteMatch::default()
    };
    assert_eq!(Req::new("/").check(&lower), Err(Failed::Authority));
}

#[test]
fn headers_present_value_and_multi_value() {
    let m = RouteMatch {
        headers: vec![
            header("X-Present", None),
            header("end-user", Some(StringMatch::Exact("jason".into()))),
        ],
        ..RouteMatch::default()
    };
    let ok = Req::new("/")
        .header("x-present", "")
        .header("end-user", "bob")
        .header("end-user", "jason");
    assert_eq!(ok.check(&m), Ok(()));
    let absent = Req::new("/").header("end-user", "jason");
    assert_eq!(absent.check(&m), Err(Failed::Header(0)));
    let wrong = Req::new("/")
        .header("x-present", "1")
        .header("end-user", "bob");
    assert_eq!(wrong.check(&m), Err(Failed::Header(1)));
}

#[test]
fn pseudo_header_conditions() {
    let m = RouteMatch {
        headers: vec![
            header(":method", Some(StringMatch::Exact("GET".into()))),
            header(":path", Some(StringMatch::Prefix("/a?".into()))),
            header(
                ":authority",
                Some(StringMatch::Exact("Reviews:9080".into())),
            ),
        ],
        ..RouteMatch::default()
    };
    assert_eq!(Req::new("/a?x=1").check(&m), Ok(()));
    assert_eq!(Req::new("/a").check(&m), Err(Failed::Header(1)));
}

#[test]
fn without_headers() {
    let m = RouteMatch {
        without_headers: vec![
            header("x-canary", None),
            header("end-user", Some(StringMatch::Regex("ja.*".into()))),
        ],
        ..RouteMatch::default()
    };
    assert_eq!(Req::new("/").check(&m), Ok(()));
    assert_eq!(Req::new("/").header("end-user", "bob").check(&m), Ok(()));
    assert_eq!(
        Req::new("/").header("x-canary", "").check(&m),
        Err(Failed::WithoutHeader(0))
    );
    assert_eq!(
        Req::new("/").header("end-user", "jason").check(&m),
        Err(Failed::WithoutHeader(1))
    );
}

#[test]
fn query_params() {
    let m = RouteMatch {
        query_params: vec![
            QueryParamMatch {
                name: "debug".into(),
                value: None,
            },
            QueryParamMatch {
                name: "v".into(),
                value: Some(StringMatch::Regex("[0-9]+".into())),
            },
        ],
        ..RouteMatch::default()
    };
    assert_eq!(Req::new("/x?debug&v=12").check(&m), Ok(()));
    assert_eq!(Req::new("/x?v=12").check(&m), Err(Failed::QueryParam(0)));
    assert_eq!(
        Req::new("/x?debug=1&v=a").check(&m),
        Err(Failed::QueryParam(1))
    );
    // The first occurrence decides.
    assert_eq!(
        Req::new("/x?debug&v=a&v=1").check(&m),
        Err(Failed::QueryParam(1))
    );
}

#[test]
fn source_labels() {
    let mut m = RouteMatch::default();
    m.source_labels.insert("app".into(), "web".into());
    m.source_labels.insert("version".into(), "v1".into());
    let mut r = Req::new("/");
    r.labels.insert("app".into(), "web".into());
    assert_eq!(r.check(&m), Err(Failed::SourceLabel(1)));
    r.labels.insert("version".into(), "v1".into());
    r.labels.insert("extra".into(), "x".into());
    assert_eq!(r.check(&m), Ok(()));
}

#[test]
fn invalid_header_name_is_rejected() {
    let m = RouteMatch {
        headers: vec![header("bad name", None)],
        ..RouteMatch::default()
    };
    let err = CompiledMatch::compile(&m, &Location::table("t")).unwrap_err();
    assert!(matches!(err, RouteError::InvalidHeaderName { .. }), "{err}");
}

/// Exact and prefix matchers agree with a naive reference on arbitrary strings, with and
/// without case folding.
#[quickcheck]
fn exact_prefix_agree_with_reference(pattern: String, value: String, cut: usize) -> bool {
    // Make prefix hits likely: sometimes the pattern is a prefix of the value.
    let pattern = if cut.is_multiple_of(2) {
        value.chars().take(cut % 8).collect()
    } else {
        pattern
    };
    let lower = |s: &str| s.to_ascii_lowercase();
    let exact = value == pattern;
    let prefix = value.starts_with(pattern.as_str());
    let exact_ci = lower(&value) == lower(&pattern);
    let prefix_ci = lower(&value).starts_with(lower(&pattern).as_str());
    sm(StringMatch::Exact(pattern.clone())).matches(value.as_bytes()) == exact
        && sm(StringMatch::Prefix(pattern.clone())).matches(value.as_bytes()) == prefix
        && ci(StringMatch::Exact(pattern.clone())).matches(value.as_bytes()) == exact_ci
        && ci(StringMatch::Prefix(pattern.clone())).matches(value.as_bytes()) == prefix_ci
        // An escaped literal regex is exactly an exact match.
        && sm(StringMatch::Regex(regex::escape(&pattern))).matches(value.as_bytes()) == exact
}
