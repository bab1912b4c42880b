//! Route matching with Istio VirtualService semantics.
//!
//! A [`Router`] is compiled once per configuration snapshot and then answers, for each request,
//! which virtual host and which route apply ([`Router::route`]), and why ([`Router::explain`]).
//! Compilation does all the work that can fail or cost (regexes, header names, domain tables),
//! so a bad VirtualService is rejected with its location when the snapshot arrives, not on the
//! first request that reaches it, and the per-request path is lookups and byte comparisons.
//!
//! Pieces, one concept per file:
//! - `vhost.rs`: which virtual host serves an authority (Envoy's domain precedence).
//! - `matcher.rs`: compiled `HTTPMatchRequest` conditions.
//! - `rewrite.rs`: path rewrite, redirect location, header edits.
//! - `weighted.rs`: weighted destination choice.
//! - `cors.rs`: a route's CORS policy and Envoy's CORS filter decisions.
//! - `explain.rs`: the decision as plain data.
//! - `error.rs`: what `Router::new` rejects.
//!
//! Routes are tried in order and the first whose conditions hold wins; a route with no
//! `matches` matches everything; within one `RouteMatch` every condition must hold, across a
//! route's `matches` any one may.

mod compile;
pub mod cors;
mod error;
mod explain;
mod matcher;
mod rewrite;
mod vhost;
pub(crate) mod weighted;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod istio_tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{Config, Route, StringMatch, VirtualHost};

pub use error::{Location, RouteError};
pub use explain::{
    ConditionFailure, ConditionKind, Explanation, MatchTrace, RuleTrace, VhostChoice,
};
pub use rewrite::{apply_header_ops, redirect_location, redirect_status};
pub use vhost::DomainMatchKind;
pub use weighted::pick_weighted;

use compile::{CompiledRoute, CompiledTable};
use matcher::Prepared;

/// Compiled route tables of one configuration snapshot.
#[derive(Debug)]
pub struct Router {
    config: Arc<Config>,
    tables: Vec<CompiledTable>,
    by_name: HashMap<String, usize>,
    /// `uri_regex` rewrite regexes, by pattern.
    rewrite_regexes: HashMap<String, regex::Regex>,
}

/// A route table of a [`Router`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableId(usize);

impl TableId {
    /// Index of the table in `Config::route_tables`.
    pub fn index(self) -> usize {
        self.0
    }
}

/// The parts of a request that routing looks at.
#[derive(Clone, Copy, Debug)]
pub struct RouteRequest<'a> {
    /// Host / :authority, may include `:port`, any case.
    pub authority: &'a str,
    /// Request target in origin-form, may include `?query`.
    pub path: &'a str,
    pub method: &'a str,
    /// `http` / `https`.
    pub scheme: &'a str,
    pub headers: &'a crate::http1::Fields,
    /// Destination port (for `port` matches).
    pub port: u16,
    /// The client workload's labels (for `source_labels` matches).
    pub source_labels: &'a BTreeMap<String, String>,
}

/// The routing decision.
#[derive(Clone, Copy, Debug)]
pub enum RouteOutcome<'r> {
    Matched(Matched<'r>),
    /// No virtual host serves the authority.
    NoVirtualHost,
    /// A virtual host serves the authority but none of its routes matched.
    NoRoute {
        vhost: &'r VirtualHost,
    },
}

/// A route chosen for a request.
#[derive(Clone, Copy, Debug)]
pub struct Matched<'r> {
    pub vhost: &'r VirtualHost,
    /// Index of `vhost` in its route table.
    pub vhost_index: usize,
    pub route: &'r Route,
    /// Index of `route` in `vhost.routes`.
    pub route_index: usize,
    /// Which `RouteMatch` matched (`None`: the route has no matches).
    pub match_index: Option<usize>,
}

impl Router {
    /// Compiles every route table; regexes are anchored (full-match, Envoy safe_regex semantics).
    /// The error names the route table, virtual host, route and field, and why.
    pub fn new(config: Arc<Config>) -> Result<Router, RouteError> {
        let mut tables = Vec::with_capacity(config.route_tables.len());
        let mut by_name = HashMap::with_capacity(config.route_tables.len());
        let mut rewrite_regexes = HashMap::new();
        for (i, table) in config.route_tables.iter().enumerate() {
            if by_name.insert(table.name.clone(), i).is_some() {
                return Err(RouteError::DuplicateTable {
                    table: table.name.clone(),
                });
            }
            tables.push(CompiledTable::compile(table, &mut rewrite_regexes)?);
        }
        Ok(Router {
            config,
            tables,
            by_name,
            rewrite_regexes,
        })
    }

    /// The snapshot this router was compiled from.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The route table called `name`.
    pub fn table(&self, name: &str) -> Option<TableId> {
        self.by_name.get(name).copied().map(TableId)
    }

    /// The name of route table `table` (`None` for a `TableId` of another router).
    pub fn table_name(&self, table: TableId) -> Option<&str> {
        self.config
            .route_tables
            .get(table.0)
            .map(|t| t.name.as_str())
    }

    /// Picks the virtual host and the first matching route for `req`.
    pub fn route<'r>(&'r self, table: TableId, req: &RouteRequest<'_>) -> RouteOutcome<'r> {
        let (Some(compiled), Some(config)) = (
            self.tables.get(table.0),
            self.config.route_tables.get(table.0),
        ) else {
            return RouteOutcome::NoVirtualHost;
        };
        let Some(hit) = compiled.domains.lookup(req.authority) else {
            return RouteOutcome::NoVirtualHost;
        };
        let (Some(vhost), Some(routes)) = (
            config.virtual_hosts.get(hit.vhost),
            compiled.vhosts.get(hit.vhost),
        ) else {
            return RouteOutcome::NoVirtualHost;
        };
        let prepared = Prepared::new(req);
        let mut applicable = None;
        for (route_index, (compiled_route, route)) in routes.iter().zip(&vhost.routes).enumerate() {
            if CompiledRoute::skipped(routes, route_index, &prepared, &mut applicable) {
                continue;
            }
            if let Some(match_index) = compiled_route.first_match(&prepared) {
                return RouteOutcome::Matched(Matched {
                    vhost,
                    vhost_index: hit.vhost,
                    route,
                    route_index,
                    match_index,
                });
            }
        }
        RouteOutcome::NoRoute { vhost }
    }

    /// Same decision as [`Router::route`], plus why: the virtual host chosen (and by which domain
    /// pattern), and for every route tried in order whether it matched and, if not, the first
    /// condition of each of its `RouteMatch`es that failed.
    pub fn explain(&self, table: TableId, req: &RouteRequest<'_>) -> Explanation {
        let config = self.config.route_tables.get(table.0);
        let mut out = Explanation {
            table: config.map(|t| t.name.clone()),
            authority: req.authority.to_owned(),
            path: req.path.to_owned(),
            vhost: None,
            rules: Vec::new(),
            outcome_route_index: None,
        };
        let (Some(compiled), Some(config)) = (self.tables.get(table.0), config) else {
            return out;
        };
        let Some(hit) = compiled.domains.lookup(req.authority) else {
            return out;
        };
        let (Some(vhost), Some(routes)) = (
            config.virtual_hosts.get(hit.vhost),
            compiled.vhosts.get(hit.vhost),
        ) else {
            return out;
        };
        out.vhost = Some(VhostChoice {
            index: hit.vhost,
            name: vhost.name.clone(),
            domain: vhost.domains.get(hit.domain).cloned().unwrap_or_default(),
            kind: hit.kind,
        });
        let prepared = Prepared::new(req);
        let mut applicable = None;
        for (index, (compiled_route, route)) in routes.iter().zip(&vhost.routes).enumerate() {
            // A fallback route is not tried while another route applies (`Route::fallback`).
            if CompiledRoute::skipped(routes, index, &prepared, &mut applicable) {
                continue;
            }
            let trace = compiled_route.trace(index, route, &prepared);
            let matched = trace.matched;
            out.rules.push(trace);
            if matched {
                out.outcome_route_index = Some(index);
                break;
            }
        }
        out
    }

    /// The `Location` of `redirect`, the action of the matched route `m`, for a request with
    /// `authority` and `path` that came on `port` (Envoy's `RouteEntryImplBase::newUri` with
    /// the `RedirectAction` pilot's ApplyRedirect writes): `prefix_rewrite` replaces the
    /// prefix the request matched on, as a forwarded request's `rewrite.uri` would, and wins
    /// over `uri`; `port_from_request` is the request's port unless it is the default of the
    /// redirect's scheme (`http` on a sidecar, which never terminates TLS).
    pub fn redirect_location(
        m: &Matched<'_>,
        redirect: &crate::config::Redirect,
        authority: &str,
        path: &str,
        port: u16,
    ) -> String {
        let mut effective = redirect.clone();
        #[cfg(feature = "mutants")]
        if crate::mutants::route().redirect_ignores_prefix_rewrite {
            effective.prefix_rewrite = None;
        }
        if let Some(p) = effective
            .prefix_rewrite
            .as_deref()
            .filter(|p| !p.is_empty())
        {
            effective.uri = Some(rewrite::prefix_rewrite(path, p, matched_prefix(m)));
        }
        if redirect.port_from_request && redirect.port.is_none() {
            let scheme = redirect
                .scheme
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("http");
            let default = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
            effective.port = (!default).then_some(port);
        }
        rewrite::redirect_location(&effective, "http", authority, path)
    }

    /// The compiled CORS policy of route `route` of virtual host `vhost` in table `table`
    /// (indices as in [`Matched`]); `None` when it has none.
    pub fn cors(&self, table: usize, vhost: usize, route: usize) -> Option<&cors::CompiledCors> {
        self.tables
            .get(table)?
            .vhosts
            .get(vhost)?
            .get(route)?
            .cors
            .as_deref()
    }

    /// The upstream path after `m.route.rewrite`: `uri` replaces the matched prefix when the
    /// matching `RouteMatch` used a uri `Prefix`, the whole path after an exact or regex uri,
    /// and the leading `/` when it had no uri condition; `uri_regex` replaces every
    /// match of its (unanchored) regex in the path, `\1`-style groups allowed. The query string
    /// is preserved. `None` when the route has no path rewrite (an empty `uri` counts as none).
    pub fn rewrite_path(&self, m: &Matched<'_>, path: &str) -> Option<String> {
        let rw = m.route.rewrite.as_ref()?;
        if let Some(uri) = rw.uri.as_deref().filter(|u| !u.is_empty()) {
            return Some(rewrite::prefix_rewrite(path, uri, matched_prefix(m)));
        }
        let (pattern, template) = rw.uri_regex.as_ref()?;
        match self.rewrite_regexes.get(pattern) {
            Some(re) => Some(rewrite::regex_rewrite(path, re, template)),
            // A `Matched` from another router's snapshot: compile on the spot.
            None => rewrite::compile_rewrite_regex(pattern)
                .ok()
                .map(|re| rewrite::regex_rewrite(path, &re, template)),
        }
    }
}

/// The prefix Envoy's `prefix_rewrite` replaces, with whether it matched ignoring case: the
/// matched uri prefix; nothing (the whole path) after an exact or regex match; `/` when the
/// match had no uri condition or the route has no match (pilot's default match is `prefix: /`).
fn matched_prefix<'m>(m: &Matched<'m>) -> Option<(&'m str, bool)> {
    let rm = m.match_index.and_then(|i| m.route.matches.get(i));
    match rm.and_then(|rm| rm.uri.as_ref().map(|u| (u, rm))) {
        Some((StringMatch::Prefix(p), rm)) => Some((p.as_str(), rm.ignore_uri_case)),
        Some((StringMatch::Exact(_) | StringMatch::Regex(_), _)) => None,
        None => Some(("/", false)),
    }
}
