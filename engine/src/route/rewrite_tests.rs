//! Tests of path rewrite, redirect locations and header edits.

use super::*;
use crate::http1::Fields;

#[test]
fn template_conversion() {
    assert_eq!(convert_template(r"/v2/\1"), "/v2/${1}");
    assert_eq!(convert_template(r"\2\1"), "${2}${1}");
    assert_eq!(convert_template(r"a\\b"), r"a\b");
    assert_eq!(convert_template(r"cost$5"), "cost$$5");
    assert_eq!(convert_template(r"x\y"), r"x\y");
    assert_eq!(convert_template("trailing\\"), "trailing\\");
}

#[test]
fn prefix_rewrite_replaces_matched_prefix_and_keeps_query() {
    assert_eq!(
        prefix_rewrite("/api/v1/x?a=1", "/", Some(("/api/", false))),
        "/v1/x?a=1"
    );
    assert_eq!(
        prefix_rewrite("/API/x", "/new/", Some(("/api/", true))),
        "/new/x"
    );
    // Case mismatch without ignore_uri_case: not the matched prefix, whole path replaced.
    assert_eq!(
        prefix_rewrite("/API/x", "/new/", Some(("/api/", false))),
        "/new/"
    );
    // Not a prefix match: the whole path is replaced, query kept.
    assert_eq!(
        prefix_rewrite("/login?next=/", "/signin", None),
        "/signin?next=/"
    );
    assert_eq!(prefix_rewrite("/a?x", "/b?y=1", None), "/b?y=1&x");
}

#[test]
fn regex_rewrite_replaces_all_with_groups() {
    let re = compile_rewrite_regex("^/service/([^/]+)(/.*)$").unwrap();
    assert_eq!(
        regex_rewrite("/service/reviews/v1/x?q=1", &re, r"\2/instance/\1"),
        "/v1/x/instance/reviews?q=1"
    );
    let all = compile_rewrite_regex("o").unwrap();
    assert_eq!(regex_rewrite("/foo/boo", &all, "0"), "/f00/b00");
    // The query is not rewritten.
    assert_eq!(regex_rewrite("/foo?o=o", &all, "0"), "/f00?o=o");
}

fn redirect(
    uri: Option<&str>,
    authority: Option<&str>,
    port: Option<u16>,
    scheme: Option<&str>,
) -> Redirect {
    Redirect {
        uri: uri.map(Into::into),
        authority: authority.map(Into::into),
        port,
        scheme: scheme.map(Into::into),
        status: 0,
        ..Redirect::default()
    }
}

#[test]
fn redirect_keeps_what_is_not_configured() {
    let r = redirect(
        Some("/v1/bookRatings"),
        Some("newratings.default.svc.cluster.local"),
        None,
        None,
    );
    assert_eq!(
        redirect_location(&r, "http", "ratings:9080", "/v1/getProductRatings?id=1"),
        "http://newratings.default.svc.cluster.local/v1/bookRatings?id=1"
    );
    let keep = redirect(None, None, None, None);
    assert_eq!(
        redirect_location(&keep, "http", "a:8080", "/x?y"),
        "http://a:8080/x?y"
    );
    assert_eq!(redirect_location(&keep, "http", "a", ""), "http://a/");
    // A uri with its own query replaces the request's query.
    let q = redirect(Some("/new?z=1"), None, None, None);
    assert_eq!(
        redirect_location(&q, "http", "a", "/old?y=2"),
        "http://a/new?z=1"
    );
    assert_eq!(redirect_status(&q), 301);
    assert_eq!(redirect_status(&Redirect { status: 308, ..q }), 308);
}

#[test]
fn redirect_scheme_and_port() {
    let https = redirect(None, None, None, Some("https"));
    // The old scheme's default port is dropped when the scheme changes...
    assert_eq!(
        redirect_location(&https, "http", "a.com:80", "/p"),
        "https://a.com/p"
    );
    // ...other ports are kept.
    assert_eq!(
        redirect_location(&https, "http", "a.com:8080", "/p"),
        "https://a.com:8080/p"
    );
    // A configured port replaces the request's.
    let port = redirect(None, None, Some(8443), Some("https"));
    assert_eq!(
        redirect_location(&port, "http", "a.com:8080", "/p"),
        "https://a.com:8443/p"
    );
    let both = redirect(None, Some("b.com:1"), Some(2), None);
    assert_eq!(
        redirect_location(&both, "http", "a.com", "/"),
        "http://b.com:2/"
    );
    let v6 = redirect(None, None, Some(9), None);
    assert_eq!(
        redirect_location(&v6, "http", "[::1]:80", "/"),
        "http://[::1]:9/"
    );
}

#[test]
fn header_ops_remove_then_set_then_add() {
    let mut h = Fields::new();
    h.append_text("x-a", "old1");
    h.append_text("x-a", "old2");
    h.append_text("x-gone", "1");
    let ops = HeaderOps {
        set: vec![("X-A".into(), "new".into()), ("x-set".into(), "s".into())],
        add: vec![("x-a".into(), "added".into()), ("x-set".into(), "t".into())],
        remove: vec!["X-Gone".into(), "x-set".into()],
    };
    apply_header_ops(&ops, &mut h);
    let a: Vec<_> = h
        .get_all("x-a")
        .map(|v| std::str::from_utf8(v).unwrap())
        .collect();
    assert_eq!(a, ["new", "added"]);
    assert!(!h.contains("x-gone"));
    // Envoy removes first, then sets and adds: a header both removed and set ends up set.
    let set: Vec<_> = h
        .get_all("x-set")
        .map(|v| std::str::from_utf8(v).unwrap())
        .collect();
    assert_eq!(set, ["s", "t"]);
}

#[test]
fn header_ops_skip_invalid_at_runtime() {
    let mut h = Fields::new();
    let ops = HeaderOps {
        set: vec![
            ("bad name".into(), "v".into()),
            ("x-ok".into(), "bad\nvalue".into()),
        ],
        add: vec![],
        remove: vec!["bad name".into()],
    };
    apply_header_ops(&ops, &mut h);
    assert!(h.is_empty());
}

#[test]
fn header_ops_validation() {
    let at = Location::table("t");
    let ok = HeaderOps {
        set: vec![("x-a".into(), "1".into())],
        add: vec![("X-B".into(), "2".into())],
        remove: vec!["x-c".into()],
    };
    assert!(validate_header_ops(&ok, &at, "headers.request", true).is_ok());
    let bad_name = HeaderOps {
        remove: vec!["a b".into()],
        ..HeaderOps::default()
    };
    assert!(matches!(
        validate_header_ops(&bad_name, &at, "f", true),
        Err(RouteError::InvalidHeaderName { .. })
    ));
    let bad_value = HeaderOps {
        add: vec![("x".into(), "a\r\nb".into())],
        ..HeaderOps::default()
    };
    assert!(matches!(
        validate_header_ops(&bad_value, &at, "f", false),
        Err(RouteError::InvalidHeaderValue { .. })
    ));
    let host = HeaderOps {
        set: vec![("Host".into(), "x".into())],
        ..HeaderOps::default()
    };
    assert!(matches!(
        validate_header_ops(&host, &at, "f", true),
        Err(RouteError::ProtectedHeader { .. })
    ));
    assert!(validate_header_ops(&host, &at, "f", false).is_ok());
}

/// Envoy's `require_tls: ALL` answer (SslRedirector → createSslRedirectPath in
/// source/common/http/utility.cc): `https://` + Host as received + path, nothing configured
/// applied and no default port dropped.
#[test]
fn a_require_tls_redirect_keeps_host_and_path_as_received() {
    let r = Redirect {
        require_tls: true,
        ..Redirect::default()
    };
    assert_eq!(
        redirect_location(&r, "http", "Shop.Example.com:80", "/a?b=c"),
        "https://Shop.Example.com:80/a?b=c"
    );
}
