//! Router-level tests: whole tables, explain agreeing with route, compile errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::config::{
    HeaderMatch, HeaderOps, Redirect, Rewrite, Route, RouteAction, RouteMatch, RouteTable,
    StringMatch, VirtualHost, WeightedCluster,
};

mod props;

pub(super) fn forward(cluster: &str) -> RouteAction {
    RouteAction::Forward(vec![WeightedCluster {
        cluster: cluster.into(),
        weight: 100,
        ..WeightedCluster::default()
    }])
}

pub(super) fn route(name: &str, matches: Vec<RouteMatch>, cluster: &str) -> Route {
    Route {
        name: name.into(),
        matches,
        action: forward(cluster),
        ..Route::default()
    }
}

pub(super) fn uri(m: StringMatch) -> RouteMatch {
    RouteMatch {
        uri: Some(m),
        ..RouteMatch::default()
    }
}

pub(super) fn one_table(vhosts: Vec<VirtualHost>) -> Config {
    Config {
        route_tables: vec![RouteTable {
            name: "80".into(),
            validate_clusters: true,
            virtual_hosts: vhosts,
        }],
        ..Config::default()
    }
}

/// Bookinfo-like: reviews (jason → v2, else v1), productpage with several uri matches, and a
/// catch-all.
fn bookinfo() -> Config {
    let jason = RouteMatch {
        headers: vec![HeaderMatch {
            name: "end-user".into(),
            value: Some(StringMatch::Exact("jason".into())),
        }],
        ..RouteMatch::default()
    };
    one_table(vec![
        VirtualHost {
            name: "reviews.default".into(),
            domains: vec!["reviews".into(), "reviews.default.svc.cluster.local".into()],
            routes: vec![
                route("reviews.default.jason", vec![jason], "reviews-v2"),
                route("reviews.default.1", vec![], "reviews-v1"),
            ],
        },
        VirtualHost {
            name: "bookinfo.default".into(),
            domains: vec!["*.bookinfo.com".into()],
            routes: vec![route(
                "bookinfo.default.0",
                vec![
                    uri(StringMatch::Exact("/productpage".into())),
                    uri(StringMatch::Prefix("/static".into())),
                    uri(StringMatch::Regex("/api/v1/products(/.*)?".into())),
                ],
                "productpage",
            )],
        },
        VirtualHost {
            name: "fallback".into(),
            domains: vec!["fallback.*".into()],
            routes: vec![route(
                "fallback.0",
                vec![uri(StringMatch::Prefix("/ok".into()))],
                "x",
            )],
        },
    ])
}

pub(super) struct Req {
    pub(super) authority: String,
    pub(super) path: String,
    pub(super) method: String,
    pub(super) headers: crate::http1::Fields,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) port: u16,
}

impl Req {
    pub(super) fn new(authority: &str, path: &str) -> Req {
        Req {
            authority: authority.into(),
            path: path.into(),
            method: "GET".into(),
            headers: crate::http1::Fields::new(),
            labels: BTreeMap::new(),
            port: 80,
        }
    }
    fn header(mut self, n: &'static str, v: &'static str) -> Req {
        self.headers.append_text(n, v);
        self
    }
    pub(super) fn as_request(&self) -> RouteRequest<'_> {
        RouteRequest {
            authority: &self.authority,
            path: &self.path,
            method: &self.method,
            scheme: "http",
            headers: &self.headers,
            port: self.port,
            source_labels: &self.labels,
        }
    }
}

pub(super) fn router(config: Config) -> (Router, TableId) {
    let r = Router::new(Arc::new(config)).unwrap();
    let t = r.table("80").unwrap();
    (r, t)
}

/// `(route name, match index)` of the decision, or a marker for the two misses.
fn decide(r: &Router, t: TableId, req: &Req) -> Result<(String, Option<usize>), &'static str> {
    match r.route(t, &req.as_request()) {
        RouteOutcome::Matched(m) => {
            assert!(std::ptr::eq(m.route, &m.vhost.routes[m.route_index]));
            Ok((m.route.name.clone(), m.match_index))
        }
        RouteOutcome::NoVirtualHost => Err("no vhost"),
        RouteOutcome::NoRoute { .. } => Err("no route"),
    }
}

#[test]
fn routes_in_order_first_match_wins() {
    let (r, t) = router(bookinfo());
    let jason = Req::new("reviews:9080", "/reviews/0").header("end-user", "jason");
    assert_eq!(
        decide(&r, t, &jason),
        Ok(("reviews.default.jason".into(), Some(0)))
    );
    let bob = Req::new("Reviews", "/reviews/0").header("end-user", "bob");
    assert_eq!(decide(&r, t, &bob), Ok(("reviews.default.1".into(), None)));
}

#[test]
fn any_of_the_matches_may_hold() {
    let (r, t) = router(bookinfo());
    let host = "www.bookinfo.com";
    let d = |p: &str| decide(&r, t, &Req::new(host, p));
    assert_eq!(
        d("/productpage?x=1"),
        Ok(("bookinfo.default.0".into(), Some(0)))
    );
    assert_eq!(d("/static/css"), Ok(("bookinfo.default.0".into(), Some(1))));
    assert_eq!(
        d("/api/v1/products/1"),
        Ok(("bookinfo.default.0".into(), Some(2)))
    );
    assert_eq!(d("/api/v1/productsX"), Err("no route"));
    assert_eq!(decide(&r, t, &Req::new("details", "/")), Err("no vhost"));
    assert_eq!(
        decide(&r, t, &Req::new("fallback.x", "/ok")),
        Ok(("fallback.0".into(), Some(0)))
    );
}

#[test]
fn explain_names_vhost_and_first_failure() {
    let (r, t) = router(bookinfo());
    let bob = Req::new("reviews:9080", "/reviews/0").header("end-user", "bob");
    let ex = r.explain(t, &bob.as_request());
    let vh = ex.vhost.clone().unwrap();
    assert_eq!(
        (vh.name.as_str(), vh.domain.as_str()),
        ("reviews.default", "reviews")
    );
    assert_eq!(vh.kind, DomainMatchKind::ExactPortStripped);
    assert_eq!(ex.outcome_route_index, Some(1));
    assert_eq!(ex.rules.len(), 2);
    let fail = ex.rules[0].failure().unwrap();
    assert_eq!(fail.kind, ConditionKind::Header("end-user".into()));
    assert_eq!(
        fail.message,
        r#"header "end-user": exact "jason" did not match (value "bob")"#
    );
    assert!(ex.rules[1].matched && ex.rules[1].failure().is_none());

    let ex = r.explain(t, &Req::new("a.bookinfo.com", "/x").as_request());
    assert_eq!(ex.outcome_route_index, None);
    let msgs: Vec<_> = ex.rules[0]
        .matches
        .iter()
        .map(|m| m.failure.clone().unwrap().message)
        .collect();
    assert_eq!(
        msgs,
        [
            r#"uri exact "/productpage" did not match path "/x""#,
            r#"uri prefix "/static" did not match path "/x""#,
            r#"uri regex "/api/v1/products(/.*)?" did not match path "/x""#,
        ]
    );
    let text = ex.to_string();
    assert!(text.contains("no route matched"), "{text}");

    let none = r.explain(t, &Req::new("nope", "/").as_request());
    assert!(none.vhost.is_none() && none.rules.is_empty());
    assert_eq!(none.table.as_deref(), Some("80"));
}

#[test]
fn explain_messages_for_each_condition() {
    let mut m = RouteMatch {
        method: Some(StringMatch::Exact("POST".into())),
        ..RouteMatch::default()
    };
    let msg = |m: &RouteMatch, req: &Req| {
        let (r, t) = router(one_table(vec![VirtualHost {
            name: "v".into(),
            domains: vec!["*".into()],
            routes: vec![route("r", vec![m.clone()], "c")],
        }]));
        r.explain(t, &req.as_request()).rules[0]
            .failure()
            .unwrap()
            .message
            .clone()
    };
    let req = Req::new("h", "/p?a=2")
        .header("x-b", "1")
        .header("x-b", "2");
    assert_eq!(msg(&m, &req), r#"method exact "POST" did not match "GET""#);
    m.method = None;
    m.port = Some(9080);
    assert_eq!(msg(&m, &req), "port 9080 did not match 80");
    m.port = None;
    m.query_params = vec![crate::config::QueryParamMatch {
        name: "a".into(),
        value: Some(StringMatch::Exact("1".into())),
    }];
    assert_eq!(
        msg(&m, &req),
        r#"query param "a": exact "1" did not match (value "2")"#
    );
    m.query_params.clear();
    m.without_headers = vec![HeaderMatch {
        name: "x-b".into(),
        value: Some(StringMatch::Exact("2".into())),
    }];
    assert_eq!(
        msg(&m, &req),
        r#"without_headers "x-b": exact "2" matched (values ["1", "2"])"#
    );
    m.without_headers.clear();
    m.headers = vec![HeaderMatch {
        name: "x-missing".into(),
        value: None,
    }];
    assert_eq!(msg(&m, &req), r#"header "x-missing" is absent"#);
    m.headers.clear();
    m.source_labels.insert("app".into(), "web".into());
    assert_eq!(
        msg(&m, &req),
        r#"source label "app": wanted "web" (absent)"#
    );
}

#[test]
fn rewrite_prefix_exact_regex() {
    let with_rewrite = |m: RouteMatch, rw: Rewrite| Route {
        rewrite: Some(rw),
        ..route("r", vec![m], "c")
    };
    let uri_rw = |u: &str| Rewrite {
        uri: Some(u.into()),
        ..Rewrite::default()
    };
    let (r, t) = router(one_table(vec![VirtualHost {
        name: "v".into(),
        domains: vec!["*".into()],
        routes: vec![
            with_rewrite(uri(StringMatch::Prefix("/old/".into())), uri_rw("/new/")),
            with_rewrite(uri(StringMatch::Exact("/login".into())), uri_rw("/signin")),
            with_rewrite(
                uri(StringMatch::Prefix("/svc/".into())),
                Rewrite {
                    uri_regex: Some(("^/svc/([^/]+)/(.*)$".into(), r"/\2/\1".into())),
                    ..Rewrite::default()
                },
            ),
            with_rewrite(
                uri(StringMatch::Prefix("/auth".into())),
                Rewrite {
                    authority: Some("auth.internal".into()),
                    ..Rewrite::default()
                },
            ),
        ],
    }]));
    let rw = |path: &str| {
        let req = Req::new("h", path);
        match r.route(t, &req.as_request()) {
            RouteOutcome::Matched(m) => r.rewrite_path(&m, path),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(rw("/old/a/b?x=1").as_deref(), Some("/new/a/b?x=1"));
    assert_eq!(rw("/login?next=%2F").as_deref(), Some("/signin?next=%2F"));
    assert_eq!(rw("/svc/reviews/v1?q").as_deref(), Some("/v1/reviews?q"));
    assert_eq!(rw("/auth/x"), None);
}

fn err(config: Config) -> RouteError {
    Router::new(Arc::new(config)).unwrap_err()
}

fn single_route(r: Route) -> Config {
    one_table(vec![VirtualHost {
        name: "vh".into(),
        domains: vec!["a".into()],
        routes: vec![r],
    }])
}

#[test]
fn compile_errors_name_their_location() {
    let bad = route("rule-x", vec![uri(StringMatch::Regex("(".into()))], "c");
    let e = err(single_route(bad));
    let text = e.to_string();
    assert!(
        matches!(&e, RouteError::BadRegex { field, .. } if field == "uri"),
        "{e}"
    );
    assert!(
        text.starts_with(
            r#"route table "80", virtual host #0 "vh", route #0 "rule-x": uri: bad regex "(""#
        ),
        "{text}"
    );

    let zero = Route {
        action: RouteAction::Forward(vec![WeightedCluster::default(), WeightedCluster::default()]),
        ..route("z", vec![], "c")
    };
    assert!(matches!(
        err(single_route(zero)),
        RouteError::AllWeightsZero { .. }
    ));

    let both = Route {
        rewrite: Some(Rewrite {
            uri: Some("/a".into()),
            uri_regex: Some(("a".into(), "b".into())),
            authority: None,
        }),
        ..route("b", vec![], "c")
    };
    assert!(matches!(
        err(single_route(both)),
        RouteError::ConflictingRewrite { .. }
    ));

    let bad_rw = Route {
        rewrite: Some(Rewrite {
            uri_regex: Some(("[".into(), "b".into())),
            ..Rewrite::default()
        }),
        ..route("b", vec![], "c")
    };
    assert!(matches!(
        err(single_route(bad_rw)),
        RouteError::BadRegex { .. }
    ));

    let code = Route {
        action: RouteAction::Redirect(Redirect {
            status: 200,
            ..Redirect::default()
        }),
        ..route("r", vec![], "c")
    };
    assert!(matches!(
        err(single_route(code)),
        RouteError::InvalidStatus { .. }
    ));

    let direct = Route {
        action: RouteAction::DirectResponse {
            status: 99,
            body: None,
        },
        ..route("d", vec![], "c")
    };
    assert!(matches!(
        err(single_route(direct)),
        RouteError::InvalidStatus { .. }
    ));

    let ops = Route {
        request_headers: HeaderOps {
            set: vec![("x".into(), "bad\u{7f}".into())],
            ..HeaderOps::default()
        },
        ..route("h", vec![], "c")
    };
    assert!(matches!(
        err(single_route(ops)),
        RouteError::InvalidHeaderValue { .. }
    ));

    let mut dup = bookinfo();
    dup.route_tables.push(dup.route_tables[0].clone());
    assert!(matches!(err(dup), RouteError::DuplicateTable { .. }));

    let mut dup_domain = bookinfo();
    dup_domain.route_tables[0].virtual_hosts[2]
        .domains
        .push("REVIEWS".into());
    assert!(matches!(
        err(dup_domain),
        RouteError::DuplicateDomain { .. }
    ));
}

#[test]
fn valid_actions_compile() {
    let redirect = Route {
        action: RouteAction::Redirect(Redirect {
            uri: Some("/x".into()),
            status: 302,
            ..Redirect::default()
        }),
        ..route("r", vec![], "c")
    };
    let empty_forward = Route {
        action: RouteAction::Forward(vec![]),
        ..route("e", vec![], "c")
    };
    let split = Route {
        action: RouteAction::Forward(vec![
            WeightedCluster {
                cluster: "a".into(),
                weight: 0,
                ..WeightedCluster::default()
            },
            WeightedCluster {
                cluster: "b".into(),
                weight: 1,
                ..WeightedCluster::default()
            },
        ]),
        ..route("s", vec![], "c")
    };
    let mut c = single_route(redirect);
    c.route_tables[0].virtual_hosts[0]
        .routes
        .push(empty_forward);
    c.route_tables[0].virtual_hosts[0].routes.push(split);
    assert!(Router::new(Arc::new(c)).is_ok());
}

#[test]
fn unknown_tables() {
    let (r, _) = router(bookinfo());
    assert_eq!(r.table("nope"), None);
    assert_eq!(r.table("80").and_then(|t| r.table_name(t)), Some("80"));
    let mut three = bookinfo();
    for name in ["a", "b"] {
        three.route_tables.insert(
            0,
            RouteTable {
                name: name.into(),
                validate_clusters: true,
                virtual_hosts: vec![],
            },
        );
    }
    let (other, _) = router(three);
    // A TableId of another router that is out of range here routes nowhere, without panicking.
    let foreign = other.table("80").unwrap();
    let req = Req::new("reviews", "/");
    assert!(matches!(
        r.route(foreign, &req.as_request()),
        RouteOutcome::NoVirtualHost
    ));
    assert!(r.explain(foreign, &req.as_request()).table.is_none());
    assert_eq!(r.table_name(foreign), None);
}

#[test]
fn thousand_vhosts_exact_hit() {
    let vhosts = (0..1000)
        .map(|i| VirtualHost {
            name: format!("svc{i}"),
            domains: vec![
                format!("svc{i}.default.svc.cluster.local"),
                format!("svc{i}"),
            ],
            routes: (0..10)
                .map(|j| {
                    route(
                        &format!("r{j}"),
                        vec![uri(StringMatch::Prefix(format!("/p{j}")))],
                        "c",
                    )
                })
                .collect(),
        })
        .collect();
    let (r, t) = router(one_table(vhosts));
    let req = Req::new("svc999:9080", "/p9/x");
    assert_eq!(decide(&r, t, &req), Ok(("r9".into(), Some(0))));
}
