//! Compiling and validating route tables: everything `Router::new` checks, in one place.
//!
//! Besides compiling the matchers, this rejects configurations that would otherwise fail per
//! request or behave surprisingly: destinations whose weights are all zero, header edits that
//! cannot be applied (or that touch `host`), a rewrite with both `uri` and `uri_regex`, redirect
//! codes Envoy cannot send (301, 302, 303, 307, 308; 0 means Istio's default 301), and direct
//! response statuses outside Envoy's 200..=599. A forward action with NO destination is
//! accepted: `pick_weighted` then returns `None` and the engine answers as for an unknown
//! cluster. Cluster names are not checked against `Config::clusters` here (routing does not
//! depend on them; the engine reports a missing cluster when it forwards).

use std::collections::HashMap;

use http::HeaderValue;

use crate::config::{Redirect, Rewrite, Route, RouteAction, RouteTable};

use super::cors::CompiledCors;
use super::error::{Location, RouteError};
use super::explain::{explain_failure, MatchTrace, RuleTrace};
use super::matcher::{CompiledMatch, Prepared};
use super::rewrite::{compile_rewrite_regex, validate_header_ops};
use super::vhost::DomainIndex;

/// One compiled route table: the domain lookup and, per virtual host, its compiled routes.
#[derive(Debug)]
pub(crate) struct CompiledTable {
    pub(crate) domains: DomainIndex,
    pub(crate) vhosts: Vec<Vec<CompiledRoute>>,
}

/// One compiled route: its compiled `matches` and CORS policy.
#[derive(Debug)]
pub(crate) struct CompiledRoute {
    matches: Vec<CompiledMatch>,
    /// `Route::cors`, boxed: most routes have none.
    pub(crate) cors: Option<Box<CompiledCors>>,
    /// `Route::fallback`.
    fallback: bool,
}

impl CompiledTable {
    /// Compiles `table`; `uri_regex` rewrite regexes are added to `rewrite_regexes` by pattern.
    pub(crate) fn compile(
        table: &RouteTable,
        rewrite_regexes: &mut HashMap<String, regex::Regex>,
    ) -> Result<CompiledTable, RouteError> {
        let at = Location::table(&table.name);
        let domains = DomainIndex::build(&table.virtual_hosts, &at)?;
        let mut vhosts = Vec::with_capacity(table.virtual_hosts.len());
        for (vi, vh) in table.virtual_hosts.iter().enumerate() {
            let vat = at.vhost(vi, &vh.name);
            let routes = vh
                .routes
                .iter()
                .enumerate()
                .map(|(ri, r)| CompiledRoute::compile(r, &vat.route(ri, &r.name), rewrite_regexes))
                .collect::<Result<Vec<_>, _>>()?;
            vhosts.push(routes);
        }
        Ok(CompiledTable { domains, vhosts })
    }
}

impl CompiledRoute {
    fn compile(
        route: &Route,
        at: &Location,
        rewrite_regexes: &mut HashMap<String, regex::Regex>,
    ) -> Result<CompiledRoute, RouteError> {
        let matches = route
            .matches
            .iter()
            .map(|m| CompiledMatch::compile(m, at))
            .collect::<Result<Vec<_>, _>>()?;
        validate_action(&route.action, at)?;
        if let Some(rw) = &route.rewrite {
            validate_rewrite(rw, at, rewrite_regexes)?;
        }
        validate_header_ops(&route.request_headers, at, "headers.request", true)?;
        validate_header_ops(&route.response_headers, at, "headers.response", false)?;
        let cors = match &route.cors {
            Some(policy) => Some(Box::new(CompiledCors::compile(policy, at)?)),
            None => None,
        };
        Ok(CompiledRoute {
            matches,
            cors,
            fallback: route.fallback,
        })
    }

    /// Whether istiod would have kept this route for the request's port and client.
    fn applies(&self, req: &Prepared<'_>) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.applies_to(req))
    }

    /// Whether route `index` of `routes` is a fallback that must be skipped because another
    /// route applies to the request (`applicable` caches that answer for the request).
    pub(crate) fn skipped(
        routes: &[CompiledRoute],
        index: usize,
        req: &Prepared<'_>,
        applicable: &mut Option<bool>,
    ) -> bool {
        if !routes.get(index).is_some_and(|r| r.fallback) {
            return false;
        }
        #[cfg(feature = "mutants")]
        if crate::mutants::route().fallback_always_tried {
            return false;
        }
        *applicable.get_or_insert_with(|| routes.iter().any(|r| !r.fallback && r.applies(req)))
    }

    /// `None` if the route does not match; `Some(None)` if it has no matches (matches all);
    /// `Some(Some(i))` if its `i`-th `RouteMatch` is the first that holds.
    pub(crate) fn first_match(&self, req: &Prepared<'_>) -> Option<Option<usize>> {
        if self.matches.is_empty() {
            return Some(None);
        }
        self.matches
            .iter()
            .position(|m| m.check(req).is_ok())
            .map(Some)
    }

    /// The same decision as [`CompiledRoute::first_match`], with every `RouteMatch` checked and
    /// its first failure written out.
    pub(crate) fn trace(&self, index: usize, route: &Route, req: &Prepared<'_>) -> RuleTrace {
        let matches: Vec<MatchTrace> = self
            .matches
            .iter()
            .zip(&route.matches)
            .enumerate()
            .map(|(i, (compiled, config))| MatchTrace {
                index: i,
                name: config.name.clone(),
                failure: compiled
                    .check(req)
                    .err()
                    .map(|f| explain_failure(config, f, req)),
            })
            .collect();
        let match_index = matches.iter().position(|m| m.failure.is_none());
        RuleTrace {
            index,
            name: route.name.clone(),
            matched: self.matches.is_empty() || match_index.is_some(),
            match_index,
            matches,
        }
    }
}

fn validate_action(action: &RouteAction, at: &Location) -> Result<(), RouteError> {
    match action {
        RouteAction::Forward(dests) => {
            if !dests.is_empty() && dests.iter().all(|d| d.weight == 0) {
                return Err(RouteError::AllWeightsZero {
                    at: Box::new(at.clone()),
                });
            }
            for d in dests {
                let field = format!("route[{:?}].headers", d.cluster);
                validate_header_ops(&d.request_headers, at, &format!("{field}.request"), true)?;
                validate_header_ops(&d.response_headers, at, &format!("{field}.response"), false)?;
                if let Some(a) = &d.authority {
                    validate_authority(a, at, &format!("route[{:?}].authority", d.cluster))?;
                }
            }
            Ok(())
        }
        RouteAction::Redirect(r) => validate_redirect(r, at),
        RouteAction::DirectResponse { status, .. } => {
            if (200..=599).contains(status) {
                Ok(())
            } else {
                Err(RouteError::InvalidStatus {
                    at: Box::new(at.clone()),
                    field: "direct_response.status".into(),
                    status: *status,
                    allowed: "200..=599",
                })
            }
        }
    }
}

fn validate_redirect(r: &Redirect, at: &Location) -> Result<(), RouteError> {
    if !matches!(r.status, 0 | 301 | 302 | 303 | 307 | 308) {
        return Err(RouteError::InvalidStatus {
            at: Box::new(at.clone()),
            field: "redirect.redirect_code".into(),
            status: r.status,
            allowed: "301, 302, 303, 307 or 308",
        });
    }
    // Each part ends up in the Location header, so it must be a valid header value.
    let parts = [
        ("redirect.uri", &r.uri),
        ("redirect.authority", &r.authority),
        ("redirect.scheme", &r.scheme),
    ];
    for (field, part) in parts {
        if let Some(v) = part {
            if HeaderValue::from_str(v).is_err() || v.contains(' ') {
                return Err(RouteError::InvalidHeaderValue {
                    at: Box::new(at.clone()),
                    field: field.into(),
                    name: "location".into(),
                    value: v.clone(),
                });
            }
        }
    }
    Ok(())
}

fn validate_rewrite(
    rw: &Rewrite,
    at: &Location,
    rewrite_regexes: &mut HashMap<String, regex::Regex>,
) -> Result<(), RouteError> {
    let has_uri = rw.uri.as_deref().is_some_and(|u| !u.is_empty());
    if has_uri && rw.uri_regex.is_some() {
        return Err(RouteError::ConflictingRewrite {
            at: Box::new(at.clone()),
        });
    }
    if let Some((pattern, _)) = &rw.uri_regex {
        if !rewrite_regexes.contains_key(pattern) {
            let re = compile_rewrite_regex(pattern).map_err(|reason| RouteError::BadRegex {
                at: Box::new(at.clone()),
                field: "rewrite.uri_regex".into(),
                pattern: pattern.clone(),
                reason,
            })?;
            rewrite_regexes.insert(pattern.clone(), re);
        }
    }
    if let Some(a) = &rw.authority {
        validate_authority(a, at, "rewrite.authority")?;
    }
    Ok(())
}

/// A Host replacement must be a non-empty header value.
fn validate_authority(a: &str, at: &Location, field: &str) -> Result<(), RouteError> {
    if a.is_empty() || HeaderValue::from_str(a).is_err() {
        return Err(RouteError::InvalidHeaderValue {
            at: Box::new(at.clone()),
            field: field.into(),
            name: "host".into(),
            value: a.to_owned(),
        });
    }
    Ok(())
}
