//! `explain`: the routing decision written out as plain data, for the `trellis explain` CLI,
//! the admin page and test failure messages.
//!
//! The decision itself is made by the same compiled matchers as [`super::Router::route`]; this
//! module only turns the small `Failed` code a check returns into words, reading the condition
//! from the configuration and the observed value from the request. Keeping the wording out of
//! the hot path is what lets `route` stay allocation-free while `explain` says exactly why.

use std::fmt;

use crate::config::{HeaderMatch, RouteMatch, StringMatch};

use super::matcher::{query_value, Failed, Prepared};
use super::vhost::DomainMatchKind;

/// Why a request went where it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The route table consulted (`None` if the `TableId` did not belong to this router).
    pub table: Option<String>,
    /// The request's authority and path, as given.
    pub authority: String,
    pub path: String,
    /// The virtual host chosen, if any.
    pub vhost: Option<VhostChoice>,
    /// Every route tried, in order, up to and including the one that matched.
    pub rules: Vec<RuleTrace>,
    /// Index (in the virtual host) of the route used; `None` when none matched.
    pub outcome_route_index: Option<usize>,
}

/// The virtual host chosen and the domain pattern that chose it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VhostChoice {
    pub index: usize,
    pub name: String,
    /// The domain as configured (e.g. `*.example.com`).
    pub domain: String,
    pub kind: DomainMatchKind,
}

/// One route tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTrace {
    pub index: usize,
    pub name: String,
    pub matched: bool,
    /// Which `RouteMatch` matched (`None` when the route has no matches, or none matched).
    pub match_index: Option<usize>,
    /// One entry per `RouteMatch` of the route, in order (empty when the route has none).
    pub matches: Vec<MatchTrace>,
}

impl RuleTrace {
    /// The first failed condition of the route's first `RouteMatch`, when the route did not
    /// match (each `RouteMatch`'s own failure is in [`RuleTrace::matches`]).
    pub fn failure(&self) -> Option<&ConditionFailure> {
        if self.matched {
            return None;
        }
        self.matches.iter().find_map(|m| m.failure.as_ref())
    }
}

/// One `RouteMatch` of a route, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchTrace {
    pub index: usize,
    pub name: Option<String>,
    /// The first condition that did not hold; `None` when all held.
    pub failure: Option<ConditionFailure>,
}

/// Which kind of condition failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConditionKind {
    Uri,
    Method,
    Scheme,
    Authority,
    Port,
    /// A `headers` entry (lower-case name).
    Header(String),
    /// A `query_params` entry.
    QueryParam(String),
    /// A `without_headers` entry that DID hold.
    WithoutHeader(String),
    /// A `source_labels` entry (label key).
    SourceLabel(String),
}

/// A condition that did not hold, and a sentence saying why, e.g.
/// `header "end-user": exact "jason" did not match (value "bob")`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionFailure {
    pub kind: ConditionKind,
    pub message: String,
}

impl fmt::Display for ConditionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `exact "x"`, `prefix "x"`, `regex "x"`.
pub(crate) fn describe(m: &StringMatch) -> String {
    match m {
        StringMatch::Exact(s) => format!("exact {s:?}"),
        StringMatch::Prefix(s) => format!("prefix {s:?}"),
        StringMatch::Regex(s) => format!("regex {s:?}"),
    }
}

/// The values a header condition looked at, for the message.
fn header_values(name: &str, req: &Prepared<'_>) -> Vec<String> {
    match name.to_ascii_lowercase().as_str() {
        ":authority" | "host" => vec![req.authority.to_owned()],
        ":method" => vec![req.method.to_owned()],
        ":path" => vec![req.full_path.to_owned()],
        ":scheme" => vec![req.scheme.to_owned()],
        lower => req
            .headers
            .get_all(lower)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect(),
    }
}

fn observed(values: &[String]) -> String {
    match values {
        [] => "absent".to_owned(),
        [one] => format!("value {one:?}"),
        many => format!("values {many:?}"),
    }
}

fn header_failure(field: &str, h: &HeaderMatch, req: &Prepared<'_>, held: bool) -> String {
    let values = header_values(&h.name, req);
    match (&h.value, held) {
        (None, false) => format!("{field} {:?} is absent", h.name),
        (None, true) => format!("{field} {:?} is present", h.name),
        (Some(v), false) => format!(
            "{field} {:?}: {} did not match ({})",
            h.name,
            describe(v),
            observed(&values)
        ),
        (Some(v), true) => format!(
            "{field} {:?}: {} matched ({})",
            h.name,
            describe(v),
            observed(&values)
        ),
    }
}

/// Words for the failure `f` of the configured match `m` against `req`.
pub(crate) fn explain_failure(m: &RouteMatch, f: Failed, req: &Prepared<'_>) -> ConditionFailure {
    let string_failure = |what: &str, sm: &Option<StringMatch>, actual: &str| {
        let cond = sm.as_ref().map(describe).unwrap_or_default();
        format!("{what} {cond} did not match {actual:?}")
    };
    let (kind, message) = match f {
        Failed::Uri => {
            let cond = m.uri.as_ref().map(describe).unwrap_or_default();
            let case = if m.ignore_uri_case {
                " (ignoring case)"
            } else {
                ""
            };
            (
                ConditionKind::Uri,
                format!("uri {cond}{case} did not match path {:?}", req.path),
            )
        }
        Failed::Method => (
            ConditionKind::Method,
            string_failure("method", &m.method, req.method),
        ),
        Failed::Scheme => (
            ConditionKind::Scheme,
            string_failure("scheme", &m.scheme, req.scheme),
        ),
        Failed::Authority => (
            ConditionKind::Authority,
            string_failure("authority", &m.authority, req.authority),
        ),
        Failed::Port => (
            ConditionKind::Port,
            format!(
                "port {} did not match {}",
                m.port.map(|p| p.to_string()).unwrap_or_default(),
                req.port
            ),
        ),
        Failed::Header(i) => match m.headers.get(i) {
            Some(h) => (
                ConditionKind::Header(h.name.to_ascii_lowercase()),
                header_failure("header", h, req, false),
            ),
            None => (ConditionKind::Header(String::new()), "header".to_owned()),
        },
        Failed::WithoutHeader(i) => match m.without_headers.get(i) {
            Some(h) => (
                ConditionKind::WithoutHeader(h.name.to_ascii_lowercase()),
                header_failure("without_headers", h, req, true),
            ),
            None => (
                ConditionKind::WithoutHeader(String::new()),
                "without_headers".to_owned(),
            ),
        },
        Failed::QueryParam(i) => match m.query_params.get(i) {
            Some(q) => {
                let actual = query_value(req.query, &q.name);
                let seen = actual.map_or_else(|| "absent".to_owned(), |v| format!("value {v:?}"));
                let message = match &q.value {
                    None => format!("query param {:?} is absent", q.name),
                    Some(v) => format!(
                        "query param {:?}: {} did not match ({seen})",
                        q.name,
                        describe(v)
                    ),
                };
                (ConditionKind::QueryParam(q.name.clone()), message)
            }
            None => (
                ConditionKind::QueryParam(String::new()),
                "query param".to_owned(),
            ),
        },
        Failed::SourceLabel(i) => match m.source_labels.iter().nth(i) {
            Some((k, v)) => {
                let seen = req
                    .source_labels
                    .get(k)
                    .map_or_else(|| "absent".to_owned(), |s| format!("value {s:?}"));
                (
                    ConditionKind::SourceLabel(k.clone()),
                    format!("source label {k:?}: wanted {v:?} ({seen})"),
                )
            }
            None => (
                ConditionKind::SourceLabel(String::new()),
                "source label".to_owned(),
            ),
        },
    };
    ConditionFailure { kind, message }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "route table {:?}, authority {:?}, path {:?}",
            self.table.as_deref().unwrap_or("<unknown>"),
            self.authority,
            self.path
        )?;
        let Some(vh) = &self.vhost else {
            return writeln!(f, "  no virtual host serves this authority");
        };
        writeln!(
            f,
            "  virtual host #{} {:?} via domain {:?} ({:?})",
            vh.index, vh.name, vh.domain, vh.kind
        )?;
        for rule in &self.rules {
            let verdict = if rule.matched { "MATCHED" } else { "skipped" };
            writeln!(f, "  route #{} {:?}: {verdict}", rule.index, rule.name)?;
            if rule.matches.is_empty() && rule.matched {
                writeln!(f, "    (no match conditions: matches every request)")?;
            }
            for m in &rule.matches {
                let label = m
                    .name
                    .as_deref()
                    .map(|n| format!(" {n:?}"))
                    .unwrap_or_default();
                match &m.failure {
                    Some(fail) => writeln!(f, "    match #{}{label}: {fail}", m.index)?,
                    None => writeln!(f, "    match #{}{label}: all conditions hold", m.index)?,
                }
            }
        }
        match self.outcome_route_index {
            Some(i) => writeln!(f, "  => route #{i}"),
            None => writeln!(f, "  => no route matched"),
        }
    }
}
