//! Property: `explain` reaches the same decision as `route`, on arbitrary requests against
//! small generated configurations (small pools of domains, paths and conditions, so that hits
//! and misses are both common).

use std::collections::BTreeMap;
use std::sync::Arc;

use quickcheck::{Arbitrary, Gen};
use quickcheck_macros::quickcheck;

use super::super::*;
use super::{route, Req};
use crate::config::{HeaderMatch, QueryParamMatch, RouteMatch, RouteTable, StringMatch};

const DOMAINS: &[&str] = &[
    "a.com",
    "a.com:8080",
    "*.a.com",
    "*.b.a.com",
    "a.*",
    "b",
    "*",
];
const AUTHORITIES: &[&str] = &[
    "a.com",
    "A.COM:8080",
    "a.com:80",
    "x.a.com",
    "x.b.a.com",
    "a.net",
    "b:80",
    "c",
    "[::1]:80",
];
const PATHS: &[&str] = &["/", "/a", "/a/b?q=1", "/A/b", "/ab?q", "/b?r=2&q=1", ""];
const URIS: &[&str] = &["/", "/a", "/a/b", "/A"];
const REGEXES: &[&str] = &["/a.*", "/[ab]+", "(?i)/a"];
const HEADERS: &[&str] = &["x-a", "x-b"];
const VALUES: &[&str] = &["1", "12", "a"];

fn pick<'a>(g: &mut Gen, xs: &[&'a str]) -> &'a str {
    g.choose(xs).copied().unwrap_or("")
}

fn string_match(g: &mut Gen, pool: &[&str]) -> StringMatch {
    match u8::arbitrary(g) % 3 {
        0 => StringMatch::Exact(pick(g, pool).into()),
        1 => StringMatch::Prefix(pick(g, pool).into()),
        _ => StringMatch::Regex(pick(g, REGEXES).into()),
    }
}

fn maybe<T>(g: &mut Gen, f: impl FnOnce(&mut Gen) -> T) -> Option<T> {
    bool::arbitrary(g).then(|| f(g))
}

fn header_cond(g: &mut Gen) -> HeaderMatch {
    HeaderMatch {
        name: pick(g, HEADERS).into(),
        value: maybe(g, |g| string_match(g, VALUES)),
    }
}

fn route_match(g: &mut Gen) -> RouteMatch {
    let n = |g: &mut Gen| usize::from(u8::arbitrary(g) % 3);
    let mut m = RouteMatch {
        uri: maybe(g, |g| string_match(g, URIS)),
        ignore_uri_case: bool::arbitrary(g),
        method: maybe(g, |g| string_match(g, &["GET", "P"])),
        port: maybe(g, |g| *g.choose(&[80u16, 8080]).unwrap_or(&80)),
        ..RouteMatch::default()
    };
    m.headers = (0..n(g)).map(|_| header_cond(g)).collect();
    m.without_headers = (0..n(g) / 2).map(|_| header_cond(g)).collect();
    m.query_params = (0..n(g) / 2)
        .map(|_| QueryParamMatch {
            name: pick(g, &["q", "r"]).into(),
            value: maybe(g, |g| string_match(g, &["1", "2"])),
        })
        .collect();
    if u8::arbitrary(g) % 4 == 0 {
        m.source_labels.insert("app".into(), "web".into());
    }
    m
}

#[derive(Clone, Debug)]
struct Scenario {
    config: Config,
    authority: String,
    path: String,
    method: String,
    headers: Vec<(String, String)>,
    port: u16,
    labels: BTreeMap<String, String>,
}

impl Arbitrary for Scenario {
    fn arbitrary(g: &mut Gen) -> Scenario {
        // Every domain goes to at most one virtual host (duplicates are a compile error).
        let mut vhosts: Vec<VirtualHost> = (0..3)
            .map(|i| VirtualHost {
                name: format!("vh{i}"),
                ..VirtualHost::default()
            })
            .collect();
        for d in DOMAINS {
            let slot = usize::from(u8::arbitrary(g) % 4);
            if let Some(vh) = vhosts.get_mut(slot) {
                vh.domains.push((*d).into());
            }
        }
        for vh in &mut vhosts {
            let routes = usize::from(u8::arbitrary(g) % 4);
            vh.routes = (0..routes)
                .map(|i| {
                    let matches = (0..u8::arbitrary(g) % 3).map(|_| route_match(g)).collect();
                    route(&format!("{}.{i}", vh.name), matches, "c")
                })
                .collect();
        }
        let headers = HEADERS
            .iter()
            .flat_map(|h| {
                let count = u8::arbitrary(g) % 3;
                (0..count)
                    .map(|_| ((*h).to_owned(), pick(g, VALUES).to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut labels = BTreeMap::new();
        if bool::arbitrary(g) {
            labels.insert("app".into(), pick(g, &["web", "api"]).into());
        }
        Scenario {
            config: Config {
                route_tables: vec![RouteTable {
                    name: "t".into(),
                    validate_clusters: true,
                    virtual_hosts: vhosts,
                }],
                ..Config::default()
            },
            authority: pick(g, AUTHORITIES).into(),
            path: pick(g, PATHS).into(),
            method: pick(g, &["GET", "POST", "PUT"]).into(),
            headers,
            port: *g.choose(&[80u16, 8080]).unwrap_or(&80),
            labels,
        }
    }
}

#[quickcheck]
fn explain_agrees_with_route(s: Scenario) -> bool {
    let router = Router::new(Arc::new(s.config.clone())).unwrap();
    let table = router.table("t").unwrap();
    let mut req = Req::new(&s.authority, &s.path);
    req.method = s.method.clone();
    req.port = s.port;
    req.labels = s.labels.clone();
    for (n, v) in &s.headers {
        req.headers.append_text(n, v);
    }
    let request = req.as_request();
    let ex = router.explain(table, &request);
    let all_before_failed = |upto: usize| ex.rules.iter().take(upto).all(|r| !r.matched);
    match router.route(table, &request) {
        RouteOutcome::NoVirtualHost => ex.vhost.is_none() && ex.rules.is_empty(),
        RouteOutcome::NoRoute { vhost } => {
            ex.vhost.as_ref().map(|v| &v.name) == Some(&vhost.name)
                && ex.outcome_route_index.is_none()
                && ex.rules.len() == vhost.routes.len()
                && all_before_failed(ex.rules.len())
                && ex.rules.iter().all(|r| r.failure().is_some())
        }
        RouteOutcome::Matched(m) => {
            let last = ex.rules.last();
            ex.vhost.as_ref().map(|v| &v.name) == Some(&m.vhost.name)
                && ex.outcome_route_index == Some(m.route_index)
                && ex.rules.len() == m.route_index + 1
                && all_before_failed(m.route_index)
                && last.is_some_and(|r| r.matched && r.match_index == m.match_index)
        }
    }
}
