//! The reference semantics of the routing vocabulary: which rule a request takes, what the
//! request looks like when it reaches the upstream, and what comes back for a redirect or a
//! direct response. Written from Istio's translation (istio/istio
//! `pilot/pkg/networking/core/route/route.go`: `TranslateRouteMatch`, `translateHeaderMatch`,
//! `canBeConvertedToPresentMatch`, `applyHTTPRouteDestination`, `ApplyRedirect`) and Envoy's
//! route semantics, never from the engine's code:
//!
//! * a `StringMatch` compares the whole value: exact, prefix, or an RE2 regex that must match
//!   all of it (Envoy `safe_regex`);
//! * `uri` is the path without the query; `ignoreUriCase` becomes Envoy's
//!   `case_sensitive: false`, which applies to exact and prefix only: Envoy ignores it for
//!   `safe_regex`;
//! * method, authority and scheme are header matchers on `:method`, `:authority`, `:scheme`:
//!   case-sensitive, the authority as the client sent it (port included);
//! * a header or query condition with no match type, or with Istio's regex `*`, is a
//!   presence match; otherwise the header must be present and its value match;
//! * `withoutHeaders` is the same matcher inverted, with Envoy's
//!   `treat_missing_header_as_empty` (except for presence matches): an absent header is
//!   matched as the empty value, so `withoutHeaders: {x: {prefix: ""}}` excludes every request;
//! * query parameters: the first occurrence of the name; a parameter without `=` has the
//!   empty value; no percent-decoding;
//! * `port` is the port the client dialled: its connection's original destination port when
//!   traffic was redirected to the sidecar (the service port, as pilot builds routes per
//!   destination port), else the listener's; `sourceLabels` filter by the client workload's
//!   labels, as pilot does when it builds each proxy's routes;
//! * the match blocks of a rule are tried in order (the `x-user` block of a rule that has one
//!   first), each an Envoy route of its own; a rule with no block matches everything;
//! * `rewrite.uri` is Envoy's `prefix_rewrite`: it replaces the matched exact path, the matched
//!   prefix, the whole path for a regex match, and the leading `/` when the block has no uri
//!   condition (pilot's default match is `prefix: /`); the query string is kept;
//! * a redirect answers `redirectCode` (301 when unset) with `Location` built as Envoy's
//!   `Http::Utility::newUri` builds it (envoyproxy/envoy `source/common/http/utility.cc`):
//!   `scheme` (or the request's, `http` here) + `://` + (`authority`, or the request's Host,
//!   whose port is dropped when a `port` is configured, or when the scheme changes and the
//!   port was `:80`, the default of the request's `x-forwarded-proto`, `http` when the client
//!   sent none) + (`:port` when configured, even a scheme's default) + (`uri` or the request's
//!   path), keeping the request's query when `uri` has none;
//! * header edits: `set` overwrites, `add` appends, `remove` drops; rule-level response edits
//!   also apply to redirects and direct responses (Envoy's `response_headers_to_add` on direct
//!   responses), destination-level ones only to forwarded responses, and before the rule's
//!   (so a rule's `set` or `remove` of a name wins over its destination's).

use super::scenario::{
    ActionSpec, HeaderEdits, HeaderOpsSpec, MatchSpec, RequestShape, Rule, StrMatch,
};

/// The port every sidecar's outbound listener has in the simulator.
pub const LISTENER_PORT: u16 = 15001;

/// A request as the reference model sees it: its shape and the sidecar it came through.
pub struct SeenRequest<'a> {
    pub shape: &'a RequestShape,
    /// The `x-user` header, for rules of the original vocabulary.
    pub user: Option<&'a str>,
    pub labels: &'a [(String, String)],
    /// The destination port the client dialled ([`LISTENER_PORT`] unless its connection has
    /// an original destination).
    pub port: u16,
}

/// Which service's virtual host Host `authority` selects, with Envoy's precedence: the host
/// lower-cased; an exact domain (`svc{k}`; the authority as sent, then with its `:port`
/// stripped, since a domain without a port also serves the host with one); then suffix
/// wildcards (`*.example`), longest first; then prefix wildcards (`foo.*`), longest first;
/// then `*`. A wildcard never matches an empty remainder. `wildcards` are the extra domains
/// `(pattern, service)` of the scenario. `None`: no virtual host, 404 NR.
pub fn resolve_vhost(
    authority: &str,
    services: usize,
    wildcards: &[(String, usize)],
) -> Option<usize> {
    let full = authority.to_ascii_lowercase();
    let stripped = match full.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            h.to_string()
        }
        _ => full.clone(),
    };
    let exact = |host: &str| {
        host.strip_prefix("svc")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .filter(|n| !n.starts_with('0') || n.len() == 1)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|k| *k < services)
    };
    if let Some(k) = exact(&full).or_else(|| exact(&stripped)) {
        return Some(k);
    }
    let wildcards: Vec<&(String, usize)> =
        wildcards.iter().filter(|(_, s)| *s < services).collect();
    let mut suffixes: Vec<(&str, usize)> = wildcards
        .iter()
        .filter_map(|(p, s)| Some((p.strip_prefix('*').filter(|x| !x.is_empty())?, *s)))
        .collect();
    suffixes.sort_by_key(|(x, _)| std::cmp::Reverse(x.len()));
    for (x, s) in &suffixes {
        for host in [&full, &stripped] {
            if host.len() > x.len() && host.ends_with(x) {
                return Some(*s);
            }
        }
    }
    let mut prefixes: Vec<(&str, usize)> = wildcards
        .iter()
        .filter_map(|(p, s)| Some((p.strip_suffix('*').filter(|x| !x.is_empty())?, *s)))
        .collect();
    prefixes.sort_by_key(|(x, _)| std::cmp::Reverse(x.len()));
    for (x, s) in &prefixes {
        for host in [&full, &stripped] {
            if host.len() > x.len() && host.starts_with(x) {
                return Some(*s);
            }
        }
    }
    wildcards.iter().find(|(p, _)| p == "*").map(|(_, s)| *s)
}

/// Whether `m` matches `value`; `ignore_case` folds ASCII case for exact and prefix only.
pub fn str_matches(m: &StrMatch, value: &str, ignore_case: bool) -> bool {
    match m {
        StrMatch::Exact(v) if ignore_case => value.eq_ignore_ascii_case(v),
        StrMatch::Exact(v) => value == v,
        StrMatch::Prefix(p) if ignore_case => value
            .get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p)),
        StrMatch::Prefix(p) => value.starts_with(p.as_str()),
        StrMatch::Regex(re) => full_match(re, value),
    }
}

/// Whether RE2 pattern `re` matches all of `value`. A pattern that does not compile matches
/// nothing (the generator only writes valid ones).
fn full_match(re: &str, value: &str) -> bool {
    thread_local! {
        /// Compiled patterns (a scenario has a few dozen; compiling per request would dominate).
        static CACHE: std::cell::RefCell<std::collections::BTreeMap<String, Option<regex::Regex>>> =
            Default::default();
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(re) {
            let compiled = regex::Regex::new(&format!("^(?:{re})$")).ok();
            cache.insert(re.to_string(), compiled);
        }
        cache
            .get(re)
            .and_then(Option::as_ref)
            .is_some_and(|r| r.is_match(value))
    })
}

/// Istio's presence match: no match type, or the regex `*`.
fn is_presence(m: Option<&StrMatch>) -> bool {
    match m {
        None => true,
        Some(StrMatch::Regex(re)) => re == "*",
        Some(_) => false,
    }
}

/// A `headers` condition.
fn header_holds(shape: &RequestShape, name: &str, m: Option<&StrMatch>) -> bool {
    value_holds(shape.header(name), m)
}

/// A header or query condition on a value that may be absent: absent never holds; a presence
/// match holds for any value; otherwise the value must match.
fn value_holds(value: Option<&str>, m: Option<&StrMatch>) -> bool {
    match (value, m) {
        (None, _) => false,
        (Some(_), m) if is_presence(m) => true,
        (Some(v), Some(m)) => str_matches(m, v, false),
        (Some(_), None) => true,
    }
}

/// A `withoutHeaders` condition: true when it excludes the request.
fn without_excludes(shape: &RequestShape, name: &str, m: Option<&StrMatch>) -> bool {
    match m {
        m if is_presence(m) => shape.header(name).is_some(),
        Some(m) => str_matches(m, shape.header(name).unwrap_or(""), false),
        None => shape.header(name).is_some(),
    }
}

/// The value of the first query parameter called `name`.
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .find_map(|pair| match pair.split_once('=') {
            Some((n, v)) => (n == name).then_some(v),
            None => (pair == name).then_some(""),
        })
}

fn query_holds(query: &str, name: &str, m: Option<&StrMatch>) -> bool {
    value_holds(query_value(query, name), m)
}

/// Whether one `HTTPMatchRequest` holds for the request.
pub fn block_matches(m: &MatchSpec, req: &SeenRequest<'_>) -> bool {
    let shape = req.shape;
    let opt =
        |sm: &Option<StrMatch>, v: &str| sm.as_ref().is_none_or(|sm| str_matches(sm, v, false));
    m.uri
        .as_ref()
        .is_none_or(|u| str_matches(u, &shape.path, m.ignore_uri_case))
        && opt(&m.method, &shape.method)
        && opt(&m.authority, &shape.authority)
        && opt(&m.scheme, "http")
        && m.port.is_none_or(|p| p == req.port)
        && m.headers
            .iter()
            .all(|(n, v)| header_holds(shape, n, v.as_ref()))
        && m.query_params
            .iter()
            .all(|(n, v)| query_holds(&shape.query, n, v.as_ref()))
        && !m
            .without_headers
            .iter()
            .any(|(n, v)| without_excludes(shape, n, v.as_ref()))
        && m.source_labels
            .iter()
            .all(|kv| req.labels.iter().any(|l| l == kv))
}

/// The match blocks of a rule in the order the engine config lists them: the `x-user` block
/// first when the rule has one, then the vocabulary's.
pub fn blocks(rule: &Rule) -> Vec<MatchSpec> {
    let mut out = Vec::new();
    if let Some(u) = &rule.user {
        out.push(MatchSpec {
            headers: vec![("x-user".into(), Some(StrMatch::Exact(u.clone())))],
            ..MatchSpec::default()
        });
    }
    if let Some(v) = &rule.vocab {
        out.extend(v.matches.iter().cloned());
    }
    out
}

/// Which block of `rule` the request matches first: `Some(None)` for a rule without blocks
/// (matches everything), `Some(Some(i))` for block `i`, `None` when the rule does not apply.
pub fn rule_match(rule: &Rule, req: &SeenRequest<'_>) -> Option<Option<usize>> {
    // Fast path for the original vocabulary (no allocation).
    if rule.vocab.is_none() {
        return match &rule.user {
            None => Some(None),
            Some(u) => (req.user == Some(u.as_str())).then_some(Some(0)),
        };
    }
    let bs = blocks(rule);
    if bs.is_empty() {
        return Some(None);
    }
    bs.iter().position(|b| block_matches(b, req)).map(Some)
}

/// The first rule of `rules` the request takes, and the block it matched by. A fallback rule
/// is passed over while any other rule applies to the request's port and client (istiod
/// builds a client's routes per port and per client, and gives a service whose
/// VirtualService keeps no rule its default route: `TranslateRoute`,
/// `BuildHTTPRoutesForVirtualService` in pilot/pkg/networking/core/route/route.go).
pub fn route(rules: &[Rule], req: &SeenRequest<'_>) -> Option<(usize, Option<usize>)> {
    let mut others_apply = None;
    rules.iter().enumerate().find_map(|(i, r)| {
        if is_fallback(r)
            && *others_apply.get_or_insert_with(|| {
                rules
                    .iter()
                    .any(|o| !is_fallback(o) && rule_applies(o, req))
            })
        {
            return None;
        }
        rule_match(r, req).map(|b| (i, b))
    })
}

fn is_fallback(rule: &Rule) -> bool {
    rule.vocab.as_ref().is_some_and(|v| v.fallback)
}

/// Whether istiod keeps `rule` for the request's port and client: it has no blocks, or one
/// of its blocks names no other `port` and no `sourceLabels` the client lacks.
fn rule_applies(rule: &Rule, req: &SeenRequest<'_>) -> bool {
    let bs = blocks(rule);
    bs.is_empty()
        || bs.iter().any(|m| {
            m.port.is_none_or(|p| p == req.port)
                && m.source_labels
                    .iter()
                    .all(|kv| req.labels.iter().any(|l| l == kv))
        })
}

/// The path (with query) the upstream must receive after `rule`'s rewrite, matched by block
/// `block`.
pub fn upstream_target(rule: &Rule, block: Option<usize>, shape: &RequestShape) -> String {
    if let Some((pattern, template)) = rule
        .vocab
        .as_ref()
        .and_then(|v| v.rewrite.as_ref())
        .and_then(|rw| rw.uri_regex.as_ref())
    {
        return regex_rewrite(pattern, template, shape);
    }
    let Some(uri) = rule
        .vocab
        .as_ref()
        .and_then(|v| v.rewrite.as_ref())
        .and_then(|rw| rw.uri.as_deref())
        .filter(|u| !u.is_empty())
    else {
        return shape.target();
    };
    // The exact path or the whole path of a regex match is replaced; pilot's default match
    // is `prefix: /`.
    prefix_swap(rule, block, shape, uri)
}

/// `shape`'s target with the prefix block `block` of `rule` matched on replaced by
/// `replacement` (the whole path after an exact or regex match, the leading `/` when the block
/// has no uri condition), the query kept.
fn prefix_swap(
    rule: &Rule,
    block: Option<usize>,
    shape: &RequestShape,
    replacement: &str,
) -> String {
    let matched = block.and_then(|b| blocks(rule).get(b).and_then(|m| m.uri.clone()));
    let path = &shape.path;
    let rest = match matched {
        Some(StrMatch::Exact(_)) | Some(StrMatch::Regex(_)) => "",
        Some(StrMatch::Prefix(p)) => path.get(p.len()..).unwrap_or(""),
        None => path.get(1..).unwrap_or(""),
    };
    let mut out = format!("{replacement}{rest}");
    if !shape.query.is_empty() {
        out.push('?');
        out.push_str(&shape.query);
    }
    out
}

/// Envoy's `regex_rewrite`: every match of `pattern` in the path (the query aside) replaced by
/// `template`, whose `\N` are RE2 groups; the query string is kept.
fn regex_rewrite(pattern: &str, template: &str, shape: &RequestShape) -> String {
    // RE2's `\N` is the regex crate's `${N}`; a literal `$` must be doubled.
    let mut converted = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('\\', Some(d)) if d.is_ascii_digit() => {
                chars.next();
                converted.push_str(&format!("${{{d}}}"));
            }
            ('\\', Some('\\')) => {
                chars.next();
                converted.push('\\');
            }
            ('$', _) => converted.push_str("$$"),
            (c, _) => converted.push(c),
        }
    }
    let mut out = match regex::Regex::new(pattern) {
        Ok(re) => re.replace_all(&shape.path, converted.as_str()).into_owned(),
        Err(_) => shape.path.clone(),
    };
    if !shape.query.is_empty() {
        out.push('?');
        out.push_str(&shape.query);
    }
    out
}

/// The Host the upstream of version `version` must receive: the destination's own rewrite,
/// else the rule's, else the client's (pilot's `processWeightedDestination` puts a
/// destination's `host` on its weighted cluster, which Envoy applies over the route's).
pub fn upstream_authority<'a>(rule: &'a Rule, version: usize, shape: &'a RequestShape) -> &'a str {
    let vocab = rule.vocab.as_ref();
    vocab
        .and_then(|v| v.dest_authorities.iter().find(|(dv, _)| *dv == version))
        .map(|(_, a)| a.as_str())
        .or_else(|| {
            vocab
                .and_then(|v| v.rewrite.as_ref())
                .and_then(|rw| rw.authority.as_deref())
        })
        .unwrap_or(&shape.authority)
}

/// What a redirect or direct response must look like: status, `Location` (redirects), body
/// (direct responses).
pub struct LocalAnswer {
    pub status: u16,
    pub location: Option<String>,
    pub body: Option<String>,
}

/// The answer of a rule that does not forward, matched by block `block`, for a request that
/// came on `request_port`.
pub fn local_answer(
    rule: &Rule,
    block: Option<usize>,
    shape: &RequestShape,
    request_port: u16,
) -> Option<LocalAnswer> {
    match rule.vocab.as_ref()?.action.as_ref()? {
        ActionSpec::Redirect {
            uri,
            authority,
            scheme,
            port,
            status,
            prefix_rewrite,
            port_from_request,
        } => {
            // pilot's ApplyRedirect: FROM_REQUEST_PORT is the listener port, left out when it
            // is the scheme's default (`http` on a sidecar when no scheme is set).
            let derived = (*port_from_request && port.is_none())
                .then(|| {
                    let s = scheme.as_deref().unwrap_or("http");
                    let default = (s == "http" && request_port == 80)
                        || (s == "https" && request_port == 443);
                    (!default).then_some(request_port)
                })
                .flatten();
            let port = &port.or(derived);
            // `prefixRewrite` wins over `uri` and swaps the matched prefix like a forwarded
            // request's `rewrite.uri` (Envoy's rewritePathByPrefixOrRegex).
            let prefixed = prefix_rewrite
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(|p| prefix_swap(rule, block, shape, p));
            let uri = &prefixed.or_else(|| uri.clone());
            // Envoy's `processRequestHost`: the Host's port goes when a port is configured, or
            // when the scheme changes away from the request's protocol and the port was that
            // protocol's default. Clients here are plain `http` and send no
            // `x-forwarded-proto`. (Comparisons are Envoy's: the scheme case-sensitively.)
            let scheme = scheme.as_deref().unwrap_or("http");
            let request_host = shape.authority.as_str();
            let host = match authority {
                Some(a) => a.as_str(),
                None => match request_host.rfind(':') {
                    Some(colon)
                        if port.is_some()
                            || (scheme != "http" && &request_host[colon..] == ":80") =>
                    {
                        &request_host[..colon]
                    }
                    _ => request_host,
                },
            };
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let mut location = format!("{scheme}://{host}{port}");
            match uri {
                Some(u) => {
                    location.push_str(u);
                    if !u.contains('?') && !shape.query.is_empty() {
                        location.push('?');
                        location.push_str(&shape.query);
                    }
                }
                None => location.push_str(&shape.target()),
            }
            Some(LocalAnswer {
                status: if *status == 0 { 301 } else { *status },
                location: Some(location),
                body: None,
            })
        }
        ActionSpec::Direct { status, body } => Some(LocalAnswer {
            status: *status,
            location: None,
            body: Some(body.clone().unwrap_or_default()),
        }),
    }
}

/// The header edits that apply on the way up (request) or down (response) for `rule` and
/// destination version `version` (`None`: no destination, e.g. a direct response): the
/// rule's, then the destination's. They apply in the opposite order (`vocab_checks::apply`
/// walks them from the last): the destination's first, then the rule's, as Envoy's
/// WeightedClusterEntry evaluates its own header parser before the route's
/// (`finalizeRequestHeaders`/`finalizeResponseHeaders` in source/common/router/config_impl.h).
pub fn edits_for(rule: &Rule, version: Option<usize>) -> Vec<&HeaderEdits> {
    let Some(v) = &rule.vocab else {
        return Vec::new();
    };
    let mut out: Vec<&HeaderEdits> = v.edits.iter().collect();
    if let Some(version) = version {
        out.extend(
            v.dest_edits
                .iter()
                .filter(|(dv, _)| *dv == version)
                .map(|(_, e)| e),
        );
    }
    out
}

/// The values header `name` must carry after `ops`, given the values it had before (`None`
/// when the ops do not touch it): Envoy's `HeaderParser` order, remove, then set (overwrite),
/// then add (append).
pub fn edited_values(ops: &HeaderOpsSpec, name: &str, before: &[String]) -> Option<Vec<String>> {
    let mut values = before.to_vec();
    let mut touched = false;
    if ops.remove.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        values.clear();
        touched = true;
    }
    for (_, v) in ops.set.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
        values = vec![v.clone()];
        touched = true;
    }
    for (_, v) in ops.add.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
        values.push(v.clone());
        touched = true;
    }
    touched.then_some(values)
}

/// Every header name some edit of `ops` touches.
pub fn touched(ops: &HeaderOpsSpec) -> impl Iterator<Item = &str> {
    ops.set
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(ops.add.iter().map(|(n, _)| n.as_str()))
        .chain(ops.remove.iter().map(String::as_str))
}

#[cfg(test)]
#[path = "reference_tests.rs"]
mod tests;
