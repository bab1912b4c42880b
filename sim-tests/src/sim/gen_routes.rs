//! Generating the routing vocabulary: rules that use every `HTTPMatchRequest` condition the
//! engine implements (uri, method, authority, scheme, headers, `withoutHeaders`, query
//! parameters, port, `sourceLabels`), every kind of `StringMatch` (exact, prefix, regex with and
//! without anchors, Istio's `*` presence regex, `ignoreUriCase`), redirects, direct responses,
//! rewrites, header edits at rule and destination level, weights of 0, 1, 99, 100 and many
//! destinations; and the request pools that probe them (case differences, values one character
//! short or long, empty values, absent headers).
//!
//! It runs on its own RNG stream (see [`super::generate`]), so seeds without the vocabulary keep
//! their scenarios byte for byte.

use super::gen_matchers::{flip_case, gen_named, gen_path, gen_str_match, pick, WORDS};
use super::scenario::*;

const HEADER_NAMES: &[&str] = &["x-h0", "x-h1", "x-h2"];
const QUERY_NAMES: &[&str] = &["q", "page", "Q"];
/// `uriRegexRewrite` pairs: groups swapped, every match replaced, an anchored whole-path one,
/// and one that often matches nothing.
const REGEX_REWRITES: &[(&str, &str)] = &[
    (r"^/([^/]+)/(.*)$", r"/\2/\1"),
    ("[0-9]", "N"),
    ("^/api", "/API"),
    ("/", "//"),
    ("zz+", r"[\0]"),
];

/// Values probed around one condition, collected while generating the rules.
#[derive(Default)]
struct Probes {
    paths: Vec<String>,
    queries: Vec<String>,
    header_values: Vec<(String, Vec<Option<String>>)>,
}

impl Probes {
    fn header(&mut self, name: &str, value: String) {
        match self.header_values.iter_mut().find(|(n, _)| n == name) {
            Some((_, vs)) => {
                if !vs.contains(&Some(value.clone())) {
                    vs.push(Some(value));
                }
            }
            None => self
                .header_values
                .push((name.to_string(), vec![Some(value)])),
        }
    }
}

/// The labels of sidecar `sc` (client sidecars: `app=client{k}`; calling workloads' sidecars:
/// `app=svc{s}`, `version=v{v}`), as `sourceLabels` see them.
pub fn sidecar_labels(scn: &Scenario, sc: usize) -> Vec<(String, String)> {
    if sc < scn.clients.len() {
        return vec![
            ("app".into(), format!("client{sc}")),
            ("tier".into(), "front".into()),
        ];
    }
    match scn.callers().nth(sc - scn.clients.len()) {
        Some((s, v, _)) => vec![
            ("app".into(), format!("svc{s}")),
            ("version".into(), format!("v{v}")),
        ],
        None => Vec::new(),
    }
}

fn gen_match(r: &mut fastrand::Rng, s: usize, n_clients: usize, probes: &mut Probes) -> MatchSpec {
    let mut m = MatchSpec::default();
    // One to three kinds of condition per block.
    for _ in 0..r.usize(1..=3) {
        match r.u8(0..10) {
            0 | 1 => {
                let path = gen_path(r);
                let (sm, ps) = gen_str_match(r, &path, false);
                m.uri = Some(sm);
                m.ignore_uri_case = r.u8(0..3) == 0;
                probes
                    .paths
                    .extend(ps.into_iter().filter(|p| p.starts_with('/')));
                probes.paths.push(flip_case(&path));
            }
            2 => {
                m.method = Some(match r.u8(0..4) {
                    0 => StrMatch::Exact("GET".into()),
                    1 => StrMatch::Exact("POST".into()),
                    2 => StrMatch::Prefix("P".into()),
                    _ => StrMatch::Regex("GET|DELETE".into()),
                });
            }
            3 => {
                let host = format!("svc{s}");
                m.authority = Some(match r.u8(0..5) {
                    0 => StrMatch::Exact(host),
                    1 => StrMatch::Exact(format!("{host}:80")),
                    2 => StrMatch::Prefix("svc".into()),
                    3 => StrMatch::Regex(format!("{host}(:[0-9]+)?")),
                    _ => StrMatch::Exact(flip_case(&host)),
                });
            }
            4 => {
                m.scheme = Some(match r.u8(0..3) {
                    0 => StrMatch::Exact("http".into()),
                    1 => StrMatch::Exact("https".into()),
                    _ => StrMatch::Prefix("ht".into()),
                });
            }
            5 | 6 => {
                let name = pick(r, HEADER_NAMES);
                let mut ps = Vec::new();
                let h = gen_named(r, name, &mut ps);
                for p in ps.into_iter().flatten() {
                    probes.header(name, p);
                }
                if r.u8(0..3) == 0 {
                    m.without_headers.push(h);
                } else {
                    m.headers.push(h);
                }
            }
            7 => {
                let name = pick(r, QUERY_NAMES);
                let mut ps = Vec::new();
                let q = gen_named(r, name, &mut ps);
                for (i, p) in ps.into_iter().flatten().enumerate() {
                    probes.queries.push(format!("{name}={p}"));
                    // The first occurrence of a repeated parameter is the one matched.
                    if i == 0 {
                        probes.queries.push(format!("{name}=zz&{name}={p}"));
                        probes.queries.push(format!("{name}={p}&{name}=zz"));
                    }
                }
                probes.queries.push(name.to_string());
                probes.queries.push(format!("other=1&{name}=abc"));
                m.query_params.push(q);
            }
            8 => {
                m.port = Some([15001, 15001, 8080, 80][r.usize(0..4)]);
            }
            _ => {
                let k = r.usize(0..n_clients.max(1));
                m.source_labels = match r.u8(0..4) {
                    0 => vec![("app".into(), format!("client{k}"))],
                    1 => vec![("tier".into(), "front".into())],
                    2 => vec![("app".into(), format!("svc{}", r.usize(0..4)))],
                    _ => vec![
                        ("app".into(), format!("client{k}")),
                        ("tier".into(), "back".into()),
                    ],
                };
            }
        }
    }
    m
}

/// Destination weights that probe the edges of weighted choice: 0 next to positive weights,
/// 1 against 99, small weights where a one-unit slip is a large share, many destinations.
fn gen_weights(r: &mut fastrand::Rng, n_versions: usize) -> Vec<(usize, u32)> {
    let n = r.usize(1..=n_versions);
    let mut versions: Vec<usize> = (0..n_versions).collect();
    r.shuffle(&mut versions);
    versions.truncate(n);
    let kind = r.u8(0..6);
    let mut dests: Vec<(usize, u32)> = versions
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let w = match kind {
                0 => r.u32(0..=3),
                1 => [0, 100][i % 2],
                2 => [1, 99][i % 2],
                3 => 1,
                4 => [100, 0, 0][i % 3],
                _ => r.u32(0..=100),
            };
            (v, w)
        })
        .collect();
    if dests.len() > 1 && dests.iter().all(|(_, w)| *w == 0) {
        dests[0].1 = 1;
    }
    dests
}

fn gen_edits(r: &mut fastrand::Rng, level: &str, probes: &mut Probes) -> HeaderEdits {
    let mut ops = |probes: &mut Probes, dir: &str| {
        let mut o = HeaderOpsSpec::default();
        if r.bool() {
            let name = format!("x-{level}{dir}-set");
            probes.header(&name, "client".into());
            o.set.push((name, format!("{level}-set")));
        }
        // One name both levels edit, the rule setting it and the destination adding to it,
        // so the order in which they apply shows (Envoy: the destination's first, then the
        // rule's `set` replaces what it added). No draw of its own: the scenarios around it
        // stay as they were.
        let both = format!("x-both{dir}");
        match level {
            "r" => o.set.push((both, "r-set".into())),
            _ => o.add.push((both, format!("{level}-add"))),
        }
        if r.bool() {
            let name = format!("x-{level}{dir}-add");
            probes.header(&name, "client".into());
            o.add.push((name, format!("{level}-add")));
        }
        if r.bool() {
            let name = format!("x-{level}{dir}-rm");
            probes.header(&name, "client".into());
            o.remove.push(name);
        }
        o
    };
    let request = ops(probes, "q");
    let response = ops(probes, "p");
    HeaderEdits { request, response }
}

/// Rules for one service (or one push of it) using the whole vocabulary.
fn gen_rules(
    r: &mut fastrand::Rng,
    s: usize,
    n_versions: usize,
    n_clients: usize,
    probes: &mut Probes,
) -> Vec<Rule> {
    let n_rules = r.usize(1..=5);
    (0..n_rules)
        .map(|i| {
            let last = i + 1 == n_rules;
            let n_matches = if last && r.u8(0..100) < 60 {
                0
            } else {
                r.usize(1..=2)
            };
            let matches = (0..n_matches)
                .map(|_| gen_match(r, s, n_clients, probes))
                .collect();
            let action = match r.u8(0..20) {
                0 | 1 => Some(ActionSpec::Redirect {
                    uri: r.bool().then(|| gen_path(r)),
                    authority: r.bool().then(|| format!("moved{s}.example")),
                    // `http` keeps the scheme (and so a request's `:80`); `https` changes it.
                    scheme: (r.u8(0..3) == 0).then(|| ["http", "https"][r.usize(0..2)].into()),
                    // 80 and 443 probe that a configured port is written even when it is
                    // the scheme's default (Envoy's `port_redirect` always is).
                    port: (r.u8(0..3) == 0).then(|| [80, 443, 8443][r.usize(0..3)]),
                    status: [0, 301, 302, 307, 308][r.usize(0..5)],
                    prefix_rewrite: None,
                    port_from_request: false,
                }),
                2 | 3 => Some(ActionSpec::Direct {
                    status: [200, 403, 418, 503][r.usize(0..4)],
                    body: r.bool().then(|| format!("direct {s}/{i}")),
                }),
                _ => None,
            };
            let forwards = action.is_none();
            let rewrite = (forwards && r.u8(0..5) == 0).then(|| {
                let (uri, uri_regex) = match r.u8(0..3) {
                    0 => (
                        Some(["/", "/v2", "/v2/", "/rewritten"][r.usize(0..4)].to_string()),
                        None,
                    ),
                    1 => (None, Some(REGEX_REWRITES[r.usize(0..REGEX_REWRITES.len())])),
                    _ => (None, None),
                };
                RewriteSpec {
                    uri,
                    uri_regex: uri_regex.map(|(m, t)| (m.to_string(), t.to_string())),
                    authority: r.bool().then(|| format!("rewritten{s}")),
                }
            });
            let edits = (r.u8(0..4) == 0).then(|| gen_edits(r, "r", probes));
            let dests = gen_weights(r, n_versions);
            let mut dest_edits = Vec::new();
            if forwards && r.u8(0..5) == 0 {
                for &(v, _) in &dests {
                    if r.bool() {
                        dest_edits.push((v, gen_edits(r, "d", probes)));
                    }
                }
            }
            Rule {
                user: None,
                dests,
                vocab: Some(Box::new(RuleVocab {
                    matches,
                    action,
                    rewrite,
                    edits,
                    dest_edits,
                    fallback: false,
                    dest_authorities: Vec::new(),
                    cors: None,
                })),
                ..Rule::default()
            }
        })
        .collect()
}

/// Give the scenario the routing vocabulary: more versions for some services (many
/// destinations), new rules for every service and every push (keeping the policy the swarm
/// drew: timeouts, retries, faults), and the request pools that probe them.
pub fn enrich(r: &mut fastrand::Rng, scn: &mut Scenario) {
    let n_clients = scn.clients.len();
    let mut probes = Probes::default();
    for svc in &mut scn.services {
        if r.u8(0..100) < 30 {
            let template = svc.versions[0].clone();
            for _ in 0..r.usize(1..=3) {
                svc.versions.push(template.clone());
            }
        }
    }
    for s in 0..scn.services.len() {
        let n_versions = scn.services[s].versions.len();
        let old = std::mem::take(&mut scn.services[s].rules);
        let mut rules = gen_rules(r, s, n_versions, n_clients, &mut probes);
        keep_policy(&mut rules, &old);
        scn.services[s].rules = rules;
    }
    for p in 0..scn.config_pushes.len() {
        let s = scn.config_pushes[p].service;
        let n_versions = scn.services[s].versions.len();
        let old = std::mem::take(&mut scn.config_pushes[p].rules);
        let mut rules = gen_rules(r, s, n_versions, n_clients, &mut probes);
        keep_policy(&mut rules, &old);
        scn.config_pushes[p].rules = rules;
    }
    let mut paths = vec!["/".to_string(), "/r".to_string(), gen_path(r)];
    paths.extend(probes.paths);
    paths.sort();
    paths.dedup();
    let mut queries = vec![String::new(), String::new()];
    queries.extend(probes.queries);
    queries.dedup();
    let mut headers = probes.header_values;
    for name in HEADER_NAMES {
        if !headers.iter().any(|(n, _)| n == name) {
            headers.push((name.to_string(), vec![Some(pick(r, WORDS).to_string())]));
        }
    }
    for (_, values) in &mut headers {
        // Absent about as often as present.
        let n = values.len();
        values.extend(std::iter::repeat_n(None, n.max(1)));
        values.push(Some(String::new()));
    }
    let n_services = scn.services.len();
    let mut wildcards: Vec<(String, usize)> = Vec::new();
    if r.u8(0..100) < 60 {
        for pattern in ["*.example", "*.b.example", "foo.*", "*"] {
            if r.u8(0..100) < 45 {
                wildcards.push((pattern.to_string(), r.usize(0..n_services)));
            }
        }
    }
    scn.requests = Some(RequestVocab {
        wildcards,
        paths,
        queries,
        methods: ["GET", "GET", "POST", "PUT", "DELETE"]
            .iter()
            .map(|m| m.to_string())
            .collect(),
        authorities: [
            "", "", ":80", ":8080", "!upper", "!unknown", "!foo", "!deep",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        headers,
        ..RequestVocab::default()
    });
}

/// Make some rules of the vocabulary fallback routes (`Route::fallback`), on a stream of its
/// own so that seeds drawing none keep their scenario.
pub fn fallbacks(seed: u64, scn: &mut Scenario) {
    let mut r = fastrand::Rng::with_seed(seed ^ 0xfa11_bac5_0000_0010);
    let rules = all_rules(scn);
    for rule in rules {
        if let Some(v) = rule.vocab.as_mut() {
            if r.u8(0..100) < 20 {
                v.fallback = true;
            }
        }
    }
}

/// Give some forwarding rules of the vocabulary per-destination Host rewrites
/// (`WeightedCluster::authority`), on a stream of their own.
pub fn dest_authorities(seed: u64, scn: &mut Scenario) {
    let mut r = fastrand::Rng::with_seed(seed ^ 0xa07b_0e57_0000_0011);
    let rules = (scn.services.iter_mut().enumerate())
        .flat_map(|(s, svc)| svc.rules.iter_mut().map(move |rule| (s, rule)))
        .chain((scn.config_pushes.iter_mut()).flat_map(|p| {
            let s = p.service;
            p.rules.iter_mut().map(move |rule| (s, rule))
        }));
    for (s, rule) in rules {
        let dests: Vec<usize> = rule.dests.iter().map(|(v, _)| *v).collect();
        let Some(v) = rule.vocab.as_mut() else {
            continue;
        };
        if v.action.is_some() || r.u8(0..100) >= 15 {
            continue;
        }
        for version in dests {
            if r.bool() {
                v.dest_authorities
                    .push((version, format!("dest{s}-v{version}.example")));
            }
        }
    }
}

/// Every rule of the scenario: the services' and those of its config pushes.
fn all_rules(scn: &mut Scenario) -> impl Iterator<Item = &mut Rule> {
    scn.services
        .iter_mut()
        .flat_map(|s| s.rules.iter_mut())
        .chain(
            scn.config_pushes
                .iter_mut()
                .flat_map(|p| p.rules.iter_mut()),
        )
}

/// Give some redirects a `prefixRewrite` and some without a `port` `derivePort:
/// FROM_REQUEST_PORT`, on a stream of their own so that seeds drawing none keep their scenario.
pub fn redirect_extras(seed: u64, scn: &mut Scenario) {
    let mut r = fastrand::Rng::with_seed(seed ^ 0x4ed1_4ec7_0000_0012);
    let rules = all_rules(scn);
    for rule in rules {
        let Some(Some(ActionSpec::Redirect {
            port,
            prefix_rewrite,
            port_from_request,
            ..
        })) = rule.vocab.as_mut().map(|v| &mut v.action)
        else {
            continue;
        };
        if r.u8(0..100) < 40 {
            // `/` and `/x/` probe Envoy's plain swap: no slash is added or merged.
            *prefix_rewrite = Some(["/", "/moved", "/x/"][r.usize(0..3)].to_string());
        }
        if port.is_none() && r.u8(0..100) < 40 {
            *port_from_request = true;
        }
    }
}

/// The policy of the rules the swarm drew (timeouts, retries, faults), handed to the new rules
/// in turn, so the vocabulary does not switch the swarm's features off.
fn keep_policy(rules: &mut [Rule], old: &[Rule]) {
    if old.is_empty() {
        return;
    }
    for (i, rule) in rules.iter_mut().enumerate() {
        let from = &old[i % old.len()];
        rule.timeout_ms = from.timeout_ms;
        rule.retries = from.retries.clone();
        // Istio's validation refuses a fault on a redirect ("HTTP route cannot contain both
        // fault and redirect"); a direct response may carry one.
        let redirects = (rule.vocab.as_ref())
            .is_some_and(|v| matches!(v.action, Some(ActionSpec::Redirect { .. })));
        rule.fault = if redirects { None } else { from.fault.clone() };
    }
}
