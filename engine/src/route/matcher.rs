//! Compiled match conditions: Istio `StringMatch`, header, query and `HTTPMatchRequest` checks.
//!
//! Compiling once (regexes built, header names parsed, case folding decided) keeps the per
//! request work to byte comparisons. A check returns the first condition that failed as a small
//! `Copy` value ([`Failed`]), so the hot path allocates nothing and `explain` can still say
//! exactly why a rule was skipped: it formats the failure afterwards from the configuration and
//! the request (see `explain.rs`). Both `route` and `explain` call the same [`CompiledMatch::check`],
//! which is what makes them agree.
//!
//! Semantics chosen where Istio/Envoy leave room:
//! - A header with several values matches a condition if ANY of its values matches it (Envoy
//!   instead matches the values joined with `,`; per-value matching is what users of repeated
//!   headers expect and never matches across a value boundary).
//! - Query parameters are split on `&` and at the first `=`; a parameter without `=` has the
//!   empty value; the FIRST occurrence of a name is the one matched (Envoy's `getFirstValue`).
//!   Names and values are compared as they appear on the wire: no percent-decoding.
//! - Header conditions named `:authority`, `:method`, `:path` or `:scheme` match the request's
//!   authority, method, full path (with query) and scheme, as Envoy's pseudo-headers do.
//! - `method`, `scheme` and `authority` are compared case-sensitively, as Envoy does; only `uri`
//!   honours `ignore_uri_case` (ASCII case folding), and only for exact and prefix: Envoy's
//!   `case_sensitive` is ignored for `safe_regex`.
//! - `without_headers` conditions with a value see an absent header as the empty value
//!   (Envoy's `treat_missing_header_as_empty`, set by pilot for inverted matches that are not
//!   presence matches).

use std::collections::BTreeMap;

use http::header::HeaderName;
use regex::bytes::{Regex, RegexBuilder};

use crate::config::{HeaderMatch, QueryParamMatch, RouteMatch, StringMatch};
use crate::http1::byte_search::find_byte;

use super::error::{Location, RouteError};

/// Upper bound on one compiled regex program, so a hostile configuration cannot exhaust memory.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Upper bound on the lazy DFA cache of one regex.
pub(crate) const REGEX_DFA_LIMIT: usize = 2 << 20;

/// Builds a full-match (Envoy `safe_regex`) byte regex, bounded in size.
pub(crate) fn compile_anchored(pattern: &str, case_insensitive: bool) -> Result<Regex, String> {
    RegexBuilder::new(&format!(r"\A(?:{pattern})\z"))
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

/// A compiled Istio `StringMatch`.
#[derive(Clone, Debug)]
pub(crate) enum StrMatcher {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    ExactIgnoreCase(Box<[u8]>),
    PrefixIgnoreCase(Box<[u8]>),
    Regex(Regex),
}

impl StrMatcher {
    /// Compiles `m`; `ignore_case` folds ASCII case (used for `uri` with `ignore_uri_case`).
    pub(crate) fn compile(m: &StringMatch, ignore_case: bool) -> Result<StrMatcher, String> {
        Ok(match (m, ignore_case) {
            (StringMatch::Exact(s), false) => StrMatcher::Exact(s.as_bytes().into()),
            (StringMatch::Prefix(s), false) => StrMatcher::Prefix(s.as_bytes().into()),
            (StringMatch::Exact(s), true) => StrMatcher::ExactIgnoreCase(s.as_bytes().into()),
            (StringMatch::Prefix(s), true) => StrMatcher::PrefixIgnoreCase(s.as_bytes().into()),
            (StringMatch::Regex(r), ci) => StrMatcher::Regex(compile_anchored(r, ci)?),
        })
    }

    pub(crate) fn matches(&self, value: &[u8]) -> bool {
        #[cfg(feature = "mutants")]
        {
            let m = crate::mutants::route();
            match self {
                StrMatcher::Prefix(s) if m.prefix_match_ignores_case => {
                    return value
                        .get(..s.len())
                        .is_some_and(|head| head.eq_ignore_ascii_case(s));
                }
                StrMatcher::Exact(s) if m.exact_match_as_prefix => return value.starts_with(s),
                StrMatcher::Regex(re) if m.regex_unanchored_end => {
                    let unanchored = re.as_str().trim_end_matches(r"\z");
                    return Regex::new(unanchored).is_ok_and(|r| r.is_match(value));
                }
                _ => {}
            }
        }
        match self {
            StrMatcher::Exact(s) => value == &s[..],
            StrMatcher::Prefix(s) => value.starts_with(s),
            StrMatcher::ExactIgnoreCase(s) => value.eq_ignore_ascii_case(s),
            StrMatcher::PrefixIgnoreCase(s) => value
                .get(..s.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(s)),
            StrMatcher::Regex(re) => re.is_match(value),
        }
    }
}

/// Which part of the request a header condition reads.
#[derive(Clone, Debug)]
pub(crate) enum HeaderTarget {
    Named(HeaderName),
    Authority,
    Method,
    Path,
    Scheme,
}

/// A compiled header condition (`headers` or `without_headers` entry).
#[derive(Clone, Debug)]
pub(crate) struct HeaderCond {
    target: HeaderTarget,
    value: Option<StrMatcher>,
}

impl HeaderCond {
    fn compile(h: &HeaderMatch, at: &Location, field: &str) -> Result<HeaderCond, RouteError> {
        let lower = h.name.to_ascii_lowercase();
        let target = match lower.as_str() {
            ":authority" | "host" => HeaderTarget::Authority,
            ":method" => HeaderTarget::Method,
            ":path" => HeaderTarget::Path,
            ":scheme" => HeaderTarget::Scheme,
            _ => HeaderTarget::Named(HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
                RouteError::InvalidHeaderName {
                    at: Box::new(at.clone()),
                    field: field.to_owned(),
                    name: h.name.clone(),
                }
            })?),
        };
        let value = h
            .value
            .as_ref()
            .map(|v| StrMatcher::compile(v, false))
            .transpose()
            .map_err(|reason| {
                bad_regex(
                    at,
                    &format!("{field} {:?}", h.name),
                    h.value.as_ref(),
                    reason,
                )
            })?;
        Ok(HeaderCond { target, value })
    }

    /// Whether the condition holds: the header is present and (if a value condition is given)
    /// any of its values matches.
    pub(crate) fn holds(&self, req: &Prepared<'_>) -> bool {
        let single = |v: &str| self.value.as_ref().is_none_or(|m| m.matches(v.as_bytes()));
        match &self.target {
            #[cfg(feature = "mutants")]
            HeaderTarget::Named(name) if crate::mutants::route().header_value_ignored => {
                req.headers.contains(name)
            }
            HeaderTarget::Named(name) => match &self.value {
                None => req.headers.contains(name),
                Some(m) => req.headers.get_all(name).any(|v| m.matches(v)),
            },
            HeaderTarget::Authority => single(req.authority),
            HeaderTarget::Method => single(req.method),
            HeaderTarget::Path => single(req.full_path),
            HeaderTarget::Scheme => single(req.scheme),
        }
    }
}

impl HeaderCond {
    /// [`HeaderCond::holds`] with an absent header matched as the empty value when the
    /// condition has a value (Envoy's `treat_missing_header_as_empty`, for `without_headers`).
    pub(crate) fn holds_or_empty(&self, req: &Prepared<'_>) -> bool {
        match (&self.target, &self.value) {
            (HeaderTarget::Named(name), Some(m)) if !req.headers.contains(name) => m.matches(b""),
            _ => self.holds(req),
        }
    }
}

/// A compiled query parameter condition.
#[derive(Clone, Debug)]
pub(crate) struct QueryCond {
    name: Box<str>,
    value: Option<StrMatcher>,
}

impl QueryCond {
    fn compile(q: &QueryParamMatch, at: &Location) -> Result<QueryCond, RouteError> {
        let value = q
            .value
            .as_ref()
            .map(|v| StrMatcher::compile(v, false))
            .transpose()
            .map_err(|reason| {
                bad_regex(
                    at,
                    &format!("query_params {:?}", q.name),
                    q.value.as_ref(),
                    reason,
                )
            })?;
        Ok(QueryCond {
            name: q.name.as_str().into(),
            value,
        })
    }

    pub(crate) fn holds(&self, req: &Prepared<'_>) -> bool {
        #[cfg(feature = "mutants")]
        if crate::mutants::route().query_last_occurrence {
            let last = req.query.and_then(|q| {
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .filter_map(|pair| match pair.split_once('=') {
                        Some((n, v)) => (n == &*self.name).then_some(v),
                        None => (pair == &*self.name).then_some(""),
                    })
                    .next_back()
            });
            return last
                .is_some_and(|v| self.value.as_ref().is_none_or(|m| m.matches(v.as_bytes())));
        }
        match query_value(req.query, &self.name) {
            None => false,
            Some(v) => self.value.as_ref().is_none_or(|m| m.matches(v.as_bytes())),
        }
    }
}

/// The value of the first parameter called `name` in `query` (`a=1&b&c=`), if any; a parameter
/// without `=` has the empty value. No percent-decoding.
pub(crate) fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter(|p| !p.is_empty())
        .find_map(|pair| match pair.split_once('=') {
            Some((n, v)) => (n == name).then_some(v),
            None => (pair == name).then_some(""),
        })
}

fn bad_regex(at: &Location, field: &str, m: Option<&StringMatch>, reason: String) -> RouteError {
    let pattern = match m {
        Some(StringMatch::Regex(p)) => p.clone(),
        _ => String::new(),
    };
    RouteError::BadRegex {
        at: Box::new(at.clone()),
        field: field.to_owned(),
        pattern,
        reason,
    }
}

/// The request as the matchers see it: the path split from its query once.
pub(crate) struct Prepared<'a> {
    pub(crate) authority: &'a str,
    /// Path without the query string.
    pub(crate) path: &'a str,
    /// Path with the query string, as received.
    pub(crate) full_path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) method: &'a str,
    pub(crate) scheme: &'a str,
    pub(crate) headers: &'a crate::http1::Fields,
    pub(crate) port: u16,
    pub(crate) source_labels: &'a BTreeMap<String, String>,
}

impl<'a> Prepared<'a> {
    pub(crate) fn new(req: &super::RouteRequest<'a>) -> Prepared<'a> {
        // A byte search rather than `split_once('?')`: the same split ('?' is ASCII, so a
        // char boundary), without the generic char searcher; `find_byte` is `memchr` without
        // its setup on a string this short.
        let (path, query) = match find_byte(b'?', req.path.as_bytes()) {
            Some(at) => (
                req.path.get(..at).unwrap_or_default(),
                req.path.get(at + 1..),
            ),
            None => (req.path, None),
        };
        Prepared {
            authority: req.authority,
            path,
            full_path: req.path,
            query,
            method: req.method,
            scheme: req.scheme,
            headers: req.headers,
            port: req.port,
            source_labels: req.source_labels,
        }
    }
}

/// The first condition of a [`RouteMatch`] that did not hold. Indices point into the
/// corresponding `Vec` of the configuration's `RouteMatch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    Uri,
    Method,
    Scheme,
    Authority,
    Port,
    Header(usize),
    QueryParam(usize),
    WithoutHeader(usize),
    SourceLabel(usize),
}

/// A compiled `HTTPMatchRequest`. Conditions are checked in this order, which is also the order
/// `explain` reports the first failure in: uri, method, scheme, authority, port, headers,
/// query params, without_headers, source labels.
#[derive(Clone, Debug)]
pub(crate) struct CompiledMatch {
    uri: Option<StrMatcher>,
    method: Option<StrMatcher>,
    scheme: Option<StrMatcher>,
    authority: Option<StrMatcher>,
    port: Option<u16>,
    headers: Vec<HeaderCond>,
    query: Vec<QueryCond>,
    without_headers: Vec<HeaderCond>,
    source_labels: Vec<(String, String)>,
}

impl CompiledMatch {
    pub(crate) fn compile(m: &RouteMatch, at: &Location) -> Result<CompiledMatch, RouteError> {
        let string = |field: &str, sm: &Option<StringMatch>, ci: bool| {
            sm.as_ref()
                .map(|s| StrMatcher::compile(s, ci))
                .transpose()
                .map_err(|reason| bad_regex(at, field, sm.as_ref(), reason))
        };
        Ok(CompiledMatch {
            // Envoy ignores `case_sensitive` for `safe_regex` path matches.
            uri: string(
                "uri",
                &m.uri,
                m.ignore_uri_case && !matches!(m.uri, Some(StringMatch::Regex(_))),
            )?,
            method: string("method", &m.method, false)?,
            scheme: string("scheme", &m.scheme, false)?,
            authority: string("authority", &m.authority, false)?,
            port: m.port,
            headers: m
                .headers
                .iter()
                .map(|h| HeaderCond::compile(h, at, "headers"))
                .collect::<Result<_, _>>()?,
            query: m
                .query_params
                .iter()
                .map(|q| QueryCond::compile(q, at))
                .collect::<Result<_, _>>()?,
            without_headers: m
                .without_headers
                .iter()
                .map(|h| HeaderCond::compile(h, at, "without_headers"))
                .collect::<Result<_, _>>()?,
            source_labels: m
                .source_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// Whether the conditions istiod applies when it builds a client's routes for a port hold:
    /// `port` and `source_labels` (see `Route::fallback`).
    pub(crate) fn applies_to(&self, req: &Prepared<'_>) -> bool {
        self.port.is_none_or(|p| p == req.port)
            && self
                .source_labels
                .iter()
                .all(|(k, v)| req.source_labels.get(k) == Some(v))
    }

    /// `Ok` when every condition holds, else the first one that did not.
    pub(crate) fn check(&self, req: &Prepared<'_>) -> Result<(), Failed> {
        let ok =
            |m: &Option<StrMatcher>, v: &str| m.as_ref().is_none_or(|m| m.matches(v.as_bytes()));
        if !ok(&self.uri, req.path) {
            return Err(Failed::Uri);
        }
        if !ok(&self.method, req.method) {
            return Err(Failed::Method);
        }
        if !ok(&self.scheme, req.scheme) {
            return Err(Failed::Scheme);
        }
        if !ok(&self.authority, req.authority) {
            return Err(Failed::Authority);
        }
        if self.port.is_some_and(|p| p != req.port) {
            return Err(Failed::Port);
        }
        if let Some(i) = self.headers.iter().position(|h| !h.holds(req)) {
            return Err(Failed::Header(i));
        }
        if let Some(i) = self.query.iter().position(|q| !q.holds(req)) {
            return Err(Failed::QueryParam(i));
        }
        if let Some(i) = self
            .without_headers
            .iter()
            .position(|h| h.holds_or_empty(req))
        {
            return Err(Failed::WithoutHeader(i));
        }
        if let Some(i) = self
            .source_labels
            .iter()
            .position(|(k, v)| req.source_labels.get(k) != Some(v))
        {
            return Err(Failed::SourceLabel(i));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "matcher_tests.rs"]
mod tests;
