//! Istio's (and Envoy's) answer on matching and rewriting, where it is easy to get wrong. Each
//! test cites the function in istio/istio or envoyproxy/envoy that gives it.

use super::tests::{one_table, route, router, uri, Req};
use super::*;
use crate::config::{HeaderMatch, Rewrite, RouteAction, RouteMatch};

fn matched<'r>(r: &'r Router, t: TableId, req: &Req) -> Option<Matched<'r>> {
    match r.route(t, &req.as_request()) {
        RouteOutcome::Matched(m) => Some(m),
        _ => None,
    }
}

fn vhost(routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: "v".into(),
        domains: vec!["svc".into()],
        routes,
    }
}

/// Istio: a rule without match conditions gets Envoy's match `prefix: /`
/// (TranslateRouteMatch in pilot/pkg/networking/core/route/route.go starts from
/// `RouteMatch_Prefix{Prefix: "/"}`), and `rewrite.uri` becomes `prefix_rewrite`
/// (applyHTTPRouteDestination), so the rewrite replaces the leading `/` (Envoy's
/// RouteEntryImplBase::finalizePathHeader with the matched prefix, source/common/router/
/// config_impl.cc). The same holds for a match that has conditions but no `uri`.
#[test]
fn rewrite_of_a_rule_without_uri_match_replaces_the_leading_slash() {
    let rewrite = Some(Rewrite {
        uri: Some("/v2/".into()),
        ..Rewrite::default()
    });
    let no_match = Route {
        rewrite: rewrite.clone(),
        ..route("none", vec![], "c")
    };
    let header_only = Route {
        rewrite,
        ..route(
            "hdr",
            vec![RouteMatch {
                headers: vec![HeaderMatch {
                    name: "x".into(),
                    value: None,
                }],
                ..RouteMatch::default()
            }],
            "c",
        )
    };
    for r in [header_only, no_match] {
        let (router, t) = router(one_table(vec![vhost(vec![r])]));
        let mut req = Req::new("svc", "/a/b?q=1");
        req.headers.append_text("x", "1");
        let m = matched(&router, t, &req).expect("matches");
        assert_eq!(
            router.rewrite_path(&m, &req.path).as_deref(),
            Some("/v2/a/b?q=1")
        );
    }
}

/// Istio: `ignoreUriCase` becomes Envoy's `case_sensitive: false` on the route match
/// (TranslateRouteMatch in pilot/pkg/networking/core/route/route.go), which Envoy ignores for
/// a `safe_regex` path ("Ignored for safe_regex matching", RouteMatch.case_sensitive in
/// envoy api/envoy/config/route/v3/route_components.proto; RegexRouteEntryImpl in
/// source/common/router/config_impl.cc matches the regex as written). So a regex uri stays
/// case-sensitive next to `ignoreUriCase`, while exact and prefix fold case.
#[test]
fn ignore_uri_case_does_not_apply_to_a_regex_uri() {
    let ci = |m: StringMatch| RouteMatch {
        ignore_uri_case: true,
        ..uri(m)
    };
    let (r, t) = router(one_table(vec![vhost(vec![
        route(
            "re",
            vec![ci(StringMatch::Regex("/api/[a-z]+".into()))],
            "c",
        ),
        route("pre", vec![ci(StringMatch::Prefix("/web".into()))], "c"),
    ])]));
    let name = |path: &str| matched(&r, t, &Req::new("svc", path)).map(|m| m.route.name.clone());
    assert_eq!(name("/api/users").as_deref(), Some("re"));
    assert_eq!(name("/API/users"), None);
    assert_eq!(name("/api/USERS"), None);
    assert_eq!(name("/WEB/x").as_deref(), Some("pre"));
}

/// Istio: `withoutHeaders: {x: {regex: "*"}}` is an inverted presence match, so the rule holds
/// exactly when `x` is absent (canBeConvertedToPresentMatch and TranslateRouteMatch in
/// pilot/pkg/networking/core/route/route.go: no treat_missing_header_as_empty for it). The
/// control plane turns it into a `without_headers` entry without a value.
#[test]
fn without_headers_presence_match_needs_the_header_absent() {
    let m = RouteMatch {
        without_headers: vec![HeaderMatch {
            name: "x-canary".into(),
            value: None,
        }],
        ..RouteMatch::default()
    };
    let (r, t) = router(one_table(vec![vhost(vec![route("absent", vec![m], "c")])]));
    assert!(matched(&r, t, &Req::new("svc", "/")).is_some());
    let mut with = Req::new("svc", "/");
    with.headers.append_text("x-canary", "");
    assert!(matched(&r, t, &with).is_none());
}

/// Istio: a rule whose matches all name another `port` or `sourceLabels` the client lacks is
/// left out of that client's routes for that port (TranslateRoute in
/// pilot/pkg/networking/core/route/route.go returns nil), and when a VirtualService is left
/// with no rule, the service gets its default route (BuildHTTPRoutesForVirtualService's
/// "no routes matched", then BuildSidecarVirtualHostWrapper builds the service's default
/// virtual host). A rule that applies but does not match still ends in 404. Before: 404 in
/// both cases.
#[test]
fn fallback_routes_serve_requests_no_rule_applies_to() {
    let only_9080_v1 = RouteMatch {
        port: Some(9080),
        source_labels: [("app".to_string(), "web".to_string())].into(),
        uri: Some(StringMatch::Prefix("/api".into())),
        ..RouteMatch::default()
    };
    let (r, t) = router(one_table(vec![vhost(vec![
        route("rule", vec![only_9080_v1], "rule-cluster"),
        Route {
            fallback: true,
            ..route("default", vec![], "default-cluster")
        },
    ])]));
    let ask = |port: u16, web: bool, path: &str| {
        let mut req = Req::new("svc", path);
        req.port = port;
        if web {
            req.labels.insert("app".into(), "web".into());
        }
        let e = r.explain(t, &req.as_request());
        let name = matched(&r, t, &req).map(|m| m.route.name.clone());
        assert_eq!(
            e.outcome_route_index
                .map(|i| r.config().route_tables[0].virtual_hosts[0].routes[i]
                    .name
                    .clone()),
            name,
            "explain agrees with route"
        );
        name
    };
    assert_eq!(ask(9080, true, "/api").as_deref(), Some("rule"));
    // The rule applies (port and client) but its uri does not match: no fallback.
    assert_eq!(ask(9080, true, "/other"), None);
    // Another port, or a client without the labels: the rule is not there for it.
    assert_eq!(ask(80, true, "/api").as_deref(), Some("default"));
    assert_eq!(ask(9080, false, "/api").as_deref(), Some("default"));
}

/// Istio: `redirect.prefixRewrite` is Envoy's `RedirectAction.prefix_rewrite` and wins over
/// `uri` (ApplyRedirect in pilot/pkg/networking/core/route/route.go); Envoy swaps the prefix
/// the route matched on and keeps the rest and the query (rewritePathByPrefixOrRegex in
/// source/common/router/config_impl.cc). `derivePort: FROM_REQUEST_PORT` is the listener port
/// pilot builds the route for, left out for `http` on 80 and `https` on 443 (ApplyRedirect).
#[test]
fn redirect_prefix_rewrite_and_request_port() {
    let redirect = |prefix: Option<&str>, scheme: Option<&str>| Route {
        action: RouteAction::Redirect(crate::config::Redirect {
            uri: Some("/ignored".into()),
            prefix_rewrite: prefix.map(Into::into),
            scheme: scheme.map(Into::into),
            port_from_request: true,
            status: 301,
            ..crate::config::Redirect::default()
        }),
        ..route("r", vec![uri(StringMatch::Prefix("/old".into()))], "c")
    };
    let (rt, t) = router(one_table(vec![vhost(vec![redirect(Some("/new"), None)])]));
    let req = Req::new("svc:8080", "/old/x?q=1");
    let m = matched(&rt, t, &req).expect("matches");
    let RouteAction::Redirect(r) = &m.route.action else {
        panic!("not a redirect")
    };
    let at = |port| Router::redirect_location(&m, r, "svc:8080", &req.path, port);
    assert_eq!(at(8080), "http://svc:8080/new/x?q=1");
    assert_eq!(at(80), "http://svc:8080/new/x?q=1");
    assert_eq!(at(9000), "http://svc:9000/new/x?q=1");

    let (rt, t) = router(one_table(vec![vhost(vec![redirect(None, Some("https"))])]));
    let req = Req::new("svc", "/old/x");
    let m = matched(&rt, t, &req).expect("matches");
    let RouteAction::Redirect(r) = &m.route.action else {
        panic!("not a redirect")
    };
    assert_eq!(
        Router::redirect_location(&m, r, "svc", &req.path, 443),
        "https://svc/ignored"
    );
    assert_eq!(
        Router::redirect_location(&m, r, "svc", &req.path, 80),
        "https://svc:80/ignored"
    );
}
