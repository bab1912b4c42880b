//! VirtualService delegation: a rule with `delegate: {name, namespace}` is replaced by the
//! rules of that VirtualService, each merged with the delegating ("root") rule, before any
//! route is built.
//!
//! This follows istiod's `mergeVirtualServices` (pilot/pkg/model/virtualservice_controller.go)
//! and `MergeHTTPRoutes` / `mergeHTTPRoute` / `mergeHTTPMatchRequests` / `hasConflict` /
//! `stringMatchConflict` (pilot/pkg/model/virtualservice.go):
//!
//! - a VirtualService without `hosts` is a delegate: it is never routed by itself, only through
//!   a root that names it; its short names resolve in its own namespace;
//! - a delegate that does not exist, or is not exported to the root's namespace, drops only the
//!   delegating rule (istiod logs a warning; so do we, as a diagnostic);
//! - each delegate rule keeps its own fields and takes the root rule's `rewrite`, `timeout`,
//!   `retries`, `fault`, `headers`, `mirror*`, `corsPolicy`, `directResponse` where it has none;
//!   names join as `root-delegate`;
//! - its `match` entries must each be a subset of some root entry (an exact or prefix inside
//!   the root's prefix, the same `ignoreUriCase`, port, sourceNamespace, sourceLabels and
//!   gateways inside the root's); each compatible pair gives one merged entry; a delegate rule
//!   with an entry that fits no root entry is dropped whole (a "conflict");
//! - delegation is one level deep: a delegate's own `delegate` rules are dropped (Istio's API
//!   documents "only one level delegation is supported").
//!
//! Sidecars and gateways both translate the merged list, so delegation works for mesh and
//! gateway-bound VirtualServices alike.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::diag::Diagnostic;
use crate::istio::common::StringMatchSpec;
use crate::istio::virtual_service::{Delegate, HttpMatchRequest, HttpRoute};
use crate::istio::{Resource, VirtualServiceSpec};

use super::client;
use super::gateway::binding::resolve_gateway_name;
use super::hosts;

/// The VirtualServices to route: roots with their delegate rules merged, the others as they
/// are; delegates (no `hosts`) are left out. Borrows the input when no delegation is in use.
pub fn merge_delegates<'a>(
    vss: &'a [Resource<VirtualServiceSpec>],
    diags: &mut Vec<Diagnostic>,
) -> Cow<'a, [Resource<VirtualServiceSpec>]> {
    let is_root = |vs: &Resource<VirtualServiceSpec>| {
        !vs.spec.hosts.is_empty() && vs.spec.http.iter().any(|r| r.delegate.is_some())
    };
    if !vss.iter().any(is_root) {
        return Cow::Borrowed(vss);
    }
    let delegates: BTreeMap<(&str, &str), &Resource<VirtualServiceSpec>> = vss
        .iter()
        .filter(|vs| vs.spec.hosts.is_empty())
        .map(|vs| ((vs.namespace(), vs.source.name.as_str()), vs))
        .collect();
    let mut out = Vec::with_capacity(vss.len());
    for vs in vss.iter().filter(|vs| !vs.spec.hosts.is_empty()) {
        if !is_root(vs) {
            out.push(vs.clone());
            continue;
        }
        let mut merged = Vec::new();
        for (i, rule) in vs.spec.http.iter().enumerate() {
            let Some(target) = &rule.delegate else {
                merged.push(rule.clone());
                continue;
            };
            match find_delegate(vs, target, &delegates) {
                Ok(delegate) => {
                    merged.extend(merge_rules(vs, i, rule, delegate, diags));
                }
                Err(why) => diags.push(
                    vs.diag(
                        Diagnostic::warning(format!("{why}; rule left out"))
                            .field(format!("spec.http[{i}].delegate")),
                    ),
                ),
            }
        }
        let mut root = vs.clone();
        root.spec.http = merged;
        out.push(root);
    }
    Cow::Owned(out)
}

/// The delegate `target` names for `root`, visible from the root's namespace.
fn find_delegate<'a>(
    root: &Resource<VirtualServiceSpec>,
    target: &Delegate,
    delegates: &BTreeMap<(&str, &str), &'a Resource<VirtualServiceSpec>>,
) -> Result<&'a Resource<VirtualServiceSpec>, String> {
    let ns = target
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(root.namespace());
    let Some(delegate) = delegates.get(&(ns, target.name.as_str())) else {
        return Err(format!(
            "delegate VirtualService {ns}/{} not found (a delegate is a VirtualService without hosts)",
            target.name
        ));
    };
    if client::reach(delegate, root.namespace()).is_none() {
        return Err(format!(
            "delegate VirtualService {ns}/{} is not exported to namespace {:?}",
            target.name,
            root.namespace()
        ));
    }
    Ok(delegate)
}

/// `MergeHTTPRoutes`: the delegate's rules, each merged with `root_rule`; conflicting ones are
/// dropped with a diagnostic.
fn merge_rules(
    root: &Resource<VirtualServiceSpec>,
    index: usize,
    root_rule: &HttpRoute,
    delegate: &Resource<VirtualServiceSpec>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<HttpRoute> {
    let root_rule = resolved(root_rule, root.namespace());
    let mut out = Vec::new();
    for (j, leaf) in delegate.spec.http.iter().enumerate() {
        let leaf = resolved(leaf, delegate.namespace());
        if leaf.delegate.is_some() {
            diags.push(delegate.diag(
                Diagnostic::warning(
                    "a delegate VirtualService cannot delegate again (one level only); rule left out",
                )
                .field(format!("spec.http[{j}].delegate")),
            ));
            continue;
        }
        match merge_rule(&root_rule, leaf) {
            Some(rule) => out.push(rule),
            None => diags.push(
                root.diag(Diagnostic::warning(format!(
                    "delegate {}/{} rule {j}: its match conditions are not a subset of the delegating rule's; rule left out",
                    delegate.namespace(),
                    delegate.source.name
                )))
                .field(format!("spec.http[{index}].delegate")),
            ),
        }
    }
    out
}

/// `rule` with its destination hosts and gateway names resolved in `namespace`
/// (ResolveVirtualServiceShortnames), so that it means the same once moved into the root.
fn resolved(rule: &HttpRoute, namespace: &str) -> HttpRoute {
    let mut rule = rule.clone();
    for d in &mut rule.route {
        d.destination.host = hosts::resolve(&d.destination.host, namespace);
    }
    if let Some(m) = &mut rule.mirror {
        m.host = hosts::resolve(&m.host, namespace);
    }
    for m in rule
        .mirrors
        .iter_mut()
        .filter_map(|m| m.destination.as_mut())
    {
        m.host = hosts::resolve(&m.host, namespace);
    }
    for m in &mut rule.matches {
        for g in &mut m.gateways {
            *g = resolve_gateway_name(g, namespace);
        }
    }
    rule
}

/// `mergeHTTPRoute`: `None` when the match conditions conflict.
fn merge_rule(root: &HttpRoute, mut leaf: HttpRoute) -> Option<HttpRoute> {
    leaf.matches = merge_matches(&root.matches, &leaf.matches)?;
    leaf.name = joined(&root.name, leaf.name.take());
    leaf.rewrite = leaf.rewrite.or_else(|| root.rewrite.clone());
    leaf.direct_response = leaf
        .direct_response
        .or_else(|| root.direct_response.clone());
    leaf.timeout = leaf.timeout.or(root.timeout);
    leaf.retries = leaf.retries.or_else(|| root.retries.clone());
    leaf.fault = leaf.fault.or_else(|| root.fault.clone());
    leaf.mirror = leaf.mirror.or_else(|| root.mirror.clone());
    leaf.mirror_percent = leaf.mirror_percent.or(root.mirror_percent);
    leaf.mirror_percentage = leaf.mirror_percentage.or(root.mirror_percentage);
    leaf.cors_policy = leaf.cors_policy.or_else(|| root.cors_policy.clone());
    if leaf.mirrors.is_empty() {
        leaf.mirrors = root.mirrors.clone();
    }
    leaf.headers = leaf.headers.or_else(|| root.headers.clone());
    Some(leaf)
}

/// Istio's name joining: the delegate's name alone, the root's when the delegate has none,
/// `root-delegate` when both do.
fn joined(root: &Option<String>, leaf: Option<String>) -> Option<String> {
    let nonempty = |n: &Option<String>| n.clone().filter(|n| !n.is_empty());
    match (nonempty(root), leaf.filter(|n| !n.is_empty())) {
        (root, None) => root,
        (None, leaf) => leaf,
        (Some(r), Some(l)) => Some(format!("{r}-{l}")),
    }
}

/// `mergeHTTPMatchRequests`: every leaf entry must fit at least one root entry; each fitting
/// pair gives a merged entry. `None` on conflict.
fn merge_matches(
    root: &[HttpMatchRequest],
    leaf: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(leaf.to_vec());
    }
    if leaf.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for sub in leaf {
        let fits: Vec<&HttpMatchRequest> = root.iter().filter(|r| !conflicts(r, sub)).collect();
        if fits.is_empty() {
            return None;
        }
        out.extend(fits.into_iter().map(|r| merge_match(r, sub)));
    }
    debug_assert!(!out.is_empty(), "a non-conflicting merge yields entries");
    Some(out)
}

/// `mergeHTTPMatchRequest`: the leaf's conditions, the root's where the leaf has none; maps
/// are unions with the leaf's values winning.
fn merge_match(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = leaf.clone();
    out.name = joined(&root.name, out.name.take());
    out.uri = out.uri.or_else(|| root.uri.clone());
    out.scheme = out.scheme.or_else(|| root.scheme.clone());
    out.method = out.method.or_else(|| root.method.clone());
    out.authority = out.authority.or_else(|| root.authority.clone());
    out.headers = union(&root.headers, &leaf.headers);
    out.without_headers = union(&root.without_headers, &leaf.without_headers);
    out.query_params = union(&root.query_params, &leaf.query_params);
    out.port = out.port.filter(|&p| p > 0).or(root.port);
    out.source_labels = union(&root.source_labels, &leaf.source_labels);
    out.source_namespace = out
        .source_namespace
        .filter(|n| !n.is_empty())
        .or_else(|| root.source_namespace.clone());
    if out.gateways.is_empty() {
        out.gateways = root.gateways.clone();
    }
    out.stat_prefix = out
        .stat_prefix
        .filter(|p| !p.is_empty())
        .or_else(|| root.stat_prefix.clone());
    out
}

fn union<V: Clone>(base: &BTreeMap<String, V>, over: &BTreeMap<String, V>) -> BTreeMap<String, V> {
    let mut out = base.clone();
    out.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// `hasConflict`: whether `leaf` asks for something `root` rules out, so it is not a subset.
fn conflicts(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if pairs
        .iter()
        .any(|(r, l)| string_match_conflict(r.as_ref(), l.as_ref()))
    {
        return true;
    }
    let map_conflict = |r: &BTreeMap<String, StringMatchSpec>,
                        l: &BTreeMap<String, StringMatchSpec>| {
        l.iter()
            .any(|(k, lv)| string_match_conflict(r.get(k), Some(lv)))
    };
    if map_conflict(&root.headers, &leaf.headers)
        || map_conflict(&root.without_headers, &leaf.without_headers)
        || map_conflict(&root.query_params, &leaf.query_params)
    {
        return true;
    }
    if root.ignore_uri_case != leaf.ignore_uri_case {
        return true;
    }
    let port = |p: Option<u32>| p.filter(|&p| p > 0);
    if let (Some(r), Some(l)) = (port(root.port), port(leaf.port)) {
        if r != l {
            return true;
        }
    }
    if let Some(ns) = root.source_namespace.as_deref().filter(|n| !n.is_empty()) {
        if leaf.source_namespace.as_deref() != Some(ns) {
            return true;
        }
    }
    if leaf
        .source_labels
        .iter()
        .any(|(k, v)| root.source_labels.get(k).is_some_and(|rv| rv != v))
    {
        return true;
    }
    // The leaf's gateways must be among the root's.
    !root.gateways.is_empty()
        && !leaf.gateways.is_empty()
        && (root.gateways.len() < leaf.gateways.len()
            || leaf.gateways.iter().any(|g| !root.gateways.contains(g)))
}

/// `stringMatchConflict`: no conflict when either side is unset; a regex on either side
/// conflicts with any other condition on the other; otherwise the leaf must be an exact or
/// prefix inside the root's exact (equal) or prefix.
fn string_match_conflict(root: Option<&StringMatchSpec>, leaf: Option<&StringMatchSpec>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    let get = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let (r_exact, r_prefix, r_regex) = (get(&root.exact), get(&root.prefix), get(&root.regex));
    let (l_exact, l_prefix, l_regex) = (get(&leaf.exact), get(&leaf.prefix), get(&leaf.regex));
    if r_regex.is_some() && (l_regex.is_some() || l_prefix.is_some() || l_exact.is_some()) {
        return true;
    }
    if l_regex.is_some() && (r_regex.is_some() || r_prefix.is_some() || r_exact.is_some()) {
        return true;
    }
    if let Some(exact) = r_exact {
        return l_prefix.is_some() || l_exact.as_deref() != Some(exact.as_str());
    }
    if let Some(prefix) = r_prefix {
        if let Some(l) = l_prefix.or(l_exact) {
            return !l.starts_with(&prefix);
        }
    }
    true
}

#[cfg(test)]
mod tests;
