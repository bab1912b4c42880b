//! The routing-vocabulary invariants, held against [`super::reference`]: what a request looks
//! like when it reaches its server (rewritten path and authority, request header edits), and
//! what comes back to the client (redirects, direct responses, response header edits).
//!
//! Everything expected here is computed from the scenario and the request the client sent;
//! the engine's output is only read through independent parsers (`httparse` on both sides).

use super::check::Invariant;
use super::cors::{self, CorsExpect};
use super::mesh::Mesh;
use super::model;
use super::reference::{self, edited_values, touched};
use super::report::Outcome;
use super::scenario::HeaderEdits;
use super::server::Upstream;

/// Response headers every server sends in vocabulary scenarios, so that response edits that
/// remove or append have something to work on.
pub(crate) const SERVER_RESPONSE_HEADERS: &[&str] = &[
    "x-rp-set", "x-rp-add", "x-rp-rm", "x-dp-set", "x-dp-add", "x-dp-rm",
];

/// A response head as the client read it, for the vocabulary checks.
#[derive(Debug, Default)]
pub(crate) struct SeenResponse {
    pub location: Option<String>,
    /// Headers named `x-rp-*` / `x-dp-*` / `x-bothp` (lower case), in order.
    pub edited: Vec<(String, String)>,
    /// The body of a response the mesh answered itself (kept up to 4 KiB).
    pub body: Vec<u8>,
}

impl SeenResponse {
    fn values(&self, name: &str) -> Vec<String> {
        (self.edited.iter())
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl Mesh<'_> {
    /// Request `id`'s attempt reached a server of version `version` looking like `seen`.
    pub(crate) fn check_upstream_request(&mut self, id: usize, version: usize, seen: &Upstream) {
        let r = &self.requests[id];
        let (Some(shape), Some(rl)) = (r.shape.as_deref(), r.rule) else {
            return;
        };
        let Some(rule) = model::rule_at(self.scn, r.service, r.generation, rl) else {
            return;
        };
        let mut problems: Vec<String> = Vec::new();
        if let CorsExpect::Preflight(_) = cors_expectation(rule, shape) {
            problems.push("a CORS preflight the proxy answers reached a server".into());
        }
        let want_target = reference::upstream_target(rule, r.block, shape);
        if seen.target != want_target {
            problems.push(format!(
                "path {:?}, expected {want_target:?} (sent {:?})",
                seen.target,
                shape.sent_target()
            ));
        }
        let want_host = reference::upstream_authority(rule, version, shape);
        let hosts = seen.values("host");
        if hosts.len() != 1 || hosts[0] != want_host {
            problems.push(format!("host {hosts:?}, expected {want_host:?}"));
        }
        let edits = reference::edits_for(rule, Some(version));
        let mut names: Vec<&str> = shape.headers.iter().map(|(n, _)| n.as_str()).collect();
        names.extend(edits.iter().flat_map(|e| touched(&e.request)));
        names.sort_unstable();
        names.dedup();
        for name in names {
            let sent: Vec<String> = (shape.headers.iter())
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect();
            let want = apply(&edits, name, sent, |e| &e.request);
            let got = seen.values(name);
            if got != want {
                problems.push(format!("header {name}: {got:?}, expected {want:?}"));
            }
        }
        if !problems.is_empty() {
            let msg = format!(
                "request {id} ({} {} to svc{}, rule {}) reached v{version}: {}",
                shape.method,
                shape.target(),
                r.service,
                model::rule_name(r.service, r.generation, rl),
                problems.join("; ")
            );
            self.violation(Invariant::Rewrite, msg);
        }
    }

    /// Request `id` ended with `outcome`, its head read as `seen`: hold a redirect, a direct
    /// response and response header edits to the reference model.
    pub(crate) fn check_vocab_response(
        &mut self,
        id: usize,
        outcome: &Outcome,
        ep: Option<usize>,
        seen: &SeenResponse,
    ) {
        let r = &self.requests[id];
        let (Some(shape), Some(rl)) = (r.shape.as_deref(), r.rule) else {
            return;
        };
        let Some(rule) = model::rule_at(self.scn, r.service, r.generation, rl) else {
            return;
        };
        let name = model::rule_name(r.service, r.generation, rl);
        let mut problems: Vec<String> = Vec::new();
        let cors = cors_expectation(rule, shape);
        if let CorsExpect::Preflight(want) = &cors {
            check_preflight(want, outcome, seen, &mut problems);
        } else {
            check_decoration(&cors, outcome, seen, &mut problems);
        }
        // A preflight the proxy answers is the CORS filter's, before the router: no rule
        // answer, and no route's response edits (the filter encodes its headers itself, not
        // through the local-reply path that finalizes them).
        let edits_version = if matches!(cors, CorsExpect::Preflight(_)) {
            None
        } else {
            match (rule.forwards(), outcome, ep) {
                // An injected abort answers instead of the rule; a stream idle timeout may end a
                // fault delay longer than it (the access-log check holds its timing).
                (false, Outcome::Mesh(_, flags), _)
                    if flags.contains("FI") || flags.contains("SI") =>
                {
                    None
                }
                (false, Outcome::Mesh(status, flags), _) => {
                    // The port the client dialled, as the sidecar's router sees it.
                    let port = if self.scn.passthrough {
                        model::ORIGINAL_DST.port()
                    } else {
                        reference::LISTENER_PORT
                    };
                    let Some(want) = reference::local_answer(rule, r.block, shape, port) else {
                        return;
                    };
                    // A fault delay may come first (pilot puts the rule's fault on the route
                    // whatever its action; Envoy's fault filter runs before the router).
                    if *status != want.status || !(flags.is_empty() || flags == "DI") {
                        problems.push(format!(
                            "answered {status} {flags:?}, expected {} from the rule itself",
                            want.status
                        ));
                    }
                    if want.location.is_some() && seen.location != want.location {
                        problems.push(format!(
                            "location {:?}, expected {:?}",
                            seen.location, want.location
                        ));
                    }
                    if let Some(body) = &want.body {
                        if seen.body != body.as_bytes() {
                            problems.push(format!(
                                "body {:?}, expected {body:?}",
                                String::from_utf8_lossy(&seen.body)
                            ));
                        }
                    }
                    Some(None)
                }
                (false, other, _) => {
                    if !matches!(
                        other,
                        Outcome::Truncated | Outcome::ClientTimeout | Outcome::Cancelled
                    ) {
                        problems.push(format!("ended {other:?}; the rule answers itself"));
                    }
                    None
                }
                (true, Outcome::Response(_), Some(ep)) => {
                    Some(Some(self.cluster_info[self.endpoints[ep].cluster].version))
                }
                // A fault's abort on a forwarding rule: Envoy's local-reply path applies the
                // route entry's response edits (`sendLocalReplyViaFilterChain`), the drawn
                // destination's then the rule's. Which destination was drawn is not known here,
                // but a name the rule sets ends with the rule's values whatever it added before.
                (true, Outcome::Mesh(_, flags), _) if flags.contains("FI") => {
                    let edits = reference::edits_for(rule, None);
                    check_set_names(&edits, seen, &[], " of the fault's abort", &mut problems);
                    None
                }
                (true, _, _) => None,
            }
        };
        if let Some(version) = edits_version {
            let edits = reference::edits_for(rule, version);
            // Servers send each of these once; the mesh's own answers none.
            let from_server = version.is_some();
            for &h in SERVER_RESPONSE_HEADERS {
                let before = if from_server {
                    vec!["server".to_string()]
                } else {
                    Vec::new()
                };
                let want = apply(&edits, h, before, |e| &e.response);
                let got = seen.values(h);
                if got != want {
                    problems.push(format!("response header {h}: {got:?}, expected {want:?}"));
                }
            }
            check_set_names(&edits, seen, SERVER_RESPONSE_HEADERS, "", &mut problems);
        }
        if !problems.is_empty() {
            let msg = format!(
                "request {id} ({} {} to svc{}, rule {name}): {}",
                shape.method,
                shape.target(),
                r.service,
                problems.join("; ")
            );
            let invariant = if rule.forwards() {
                Invariant::Rewrite
            } else {
                Invariant::Routing
            };
            self.violation(invariant, msg);
        }
    }
}

/// The CORS filter's expectation for `shape` on `rule` (untouched without a policy).
fn cors_expectation(
    rule: &super::scenario::Rule,
    shape: &super::vocab::RequestShape,
) -> CorsExpect {
    match rule.vocab.as_ref().and_then(|v| v.cors.as_ref()) {
        Some(policy) => cors::expect(policy, shape),
        None => CorsExpect::Untouched,
    }
}

/// The CORS headers of a response, in order.
fn cors_headers(seen: &SeenResponse) -> Vec<(String, String)> {
    (seen.edited.iter())
        .filter(|(n, _)| n.starts_with("access-control-"))
        .cloned()
        .collect()
}

/// A preflight the proxy must answer: 200 (after a fault's delay, never instead of its
/// abort) with exactly the CORS filter's headers and no route edits.
fn check_preflight(
    want: &[(String, String)],
    outcome: &Outcome,
    seen: &SeenResponse,
    problems: &mut Vec<String>,
) {
    match outcome {
        // The fault filter runs first: its abort answers; a stream idle timeout may end its
        // delay.
        Outcome::Mesh(_, flags) if flags.contains("FI") || flags.contains("SI") => {}
        Outcome::Mesh(200, flags) if flags.is_empty() || flags == "DI" => {
            let mut got = cors_headers(seen);
            let mut want = want.to_vec();
            got.sort();
            want.sort();
            if got != want {
                problems.push(format!(
                    "CORS preflight answered with {got:?}, expected {want:?}"
                ));
            }
            let edited: Vec<&(String, String)> = (seen.edited.iter())
                .filter(|(n, _)| !n.starts_with("access-control-"))
                .collect();
            if !edited.is_empty() {
                problems.push(format!(
                    "CORS preflight answer carries route edits {edited:?} (the filter encodes it itself)"
                ));
            }
        }
        Outcome::Truncated | Outcome::ClientTimeout | Outcome::Cancelled => {}
        other => problems.push(format!(
            "CORS preflight ended {other:?}, expected the proxy's 200"
        )),
    }
}

/// Any other request: its response carries the CORS headers the reference decorates it with
/// (none when untouched), whoever answered, but for an injected abort (the CORS filter never
/// saw the request) and a stream idle timeout (which may come during a fault's delay).
fn check_decoration(
    cors: &CorsExpect,
    outcome: &Outcome,
    seen: &SeenResponse,
    problems: &mut Vec<String>,
) {
    let mut want = match (cors, outcome) {
        (_, Outcome::Mesh(_, flags)) if flags.contains("FI") || flags.contains("SI") => return,
        (_, Outcome::Truncated | Outcome::ClientTimeout | Outcome::Cancelled) => return,
        (CorsExpect::Decorated(headers), _) => headers.clone(),
        _ => Vec::new(),
    };
    let mut got = cors_headers(seen);
    got.sort();
    want.sort();
    if got != want {
        problems.push(format!(
            "CORS headers {got:?} on a {outcome:?}, expected {want:?}"
        ));
    }
}

/// Every response header a level of `edits` sets (but those in `skip`) must come back with
/// the values the edits give it from nothing; `what` says which answer, for the message.
fn check_set_names(
    edits: &[&HeaderEdits],
    seen: &SeenResponse,
    skip: &[&str],
    what: &str,
    problems: &mut Vec<String>,
) {
    for (h, _) in edits.iter().flat_map(|e| e.response.set.iter()) {
        if skip.contains(&h.as_str()) {
            continue;
        }
        let want = apply(edits, h, Vec::new(), |e| &e.response);
        let got = seen.values(h);
        if got != want {
            problems.push(format!(
                "response header {h}{what}: {got:?}, expected {want:?}"
            ));
        }
    }
}

/// The values header `name` must have after every edit in `edits` (destination level first,
/// then rule level; the generator never lets two levels touch the same name).
/// `edits` as [`reference::edits_for`] lists them (rule, then destination), applied from the
/// last: the destination's first, then the rule's (Envoy's WeightedClusterEntry order).
fn apply(
    edits: &[&HeaderEdits],
    name: &str,
    mut values: Vec<String>,
    dir: impl Fn(&HeaderEdits) -> &super::scenario::HeaderOpsSpec,
) -> Vec<String> {
    for e in edits.iter().rev() {
        if let Some(v) = edited_values(dir(e), name, &values) {
            values = v;
        }
    }
    values
}
