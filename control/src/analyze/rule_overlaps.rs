//! IST0131 VirtualServiceIneffectiveMatch for *overlapping* (not identical) HTTP matches, as
//! istio/istio `pkg/config/validation/validation.go` (`genMatchHTTPRoutes`,
//! `coveredValidation` and the end of `analyzeUnreachableHTTPRules`).
//!
//! A `uri.prefix` match earlier in the list takes every request a longer prefix after it would,
//! unless the later match asks for something the earlier does not give (another port, method,
//! authority, headers, query parameters). Istio's comparison is deliberately coarse, and we
//! keep it so messages agree: only prefix-URI matches take part, a match without a method is
//! `GET`, values are compared as `exact:` / `prefix:` strings where the earlier one must start
//! with the later one, and header, query and without-header maps must have the same keys.
//! Identical matches are [`super::rules`]'s; only the matches it kept (first seen, before any
//! catch-all rule) are compared here.

use std::collections::BTreeMap;

use super::rules::{ineffective, label, Found};
use crate::istio::common::StringMatchSpec;
use crate::istio::virtual_service::HttpRoute;

/// Istio's `OverlappingMatchValidationForHTTPRoute`.
struct Prefixed {
    rule: usize,
    route: String,
    matched: String,
    prefix: String,
    port: u32,
    method: String,
    authority: String,
    headers: BTreeMap<String, String>,
    query_params: BTreeMap<String, String>,
    without_headers: BTreeMap<String, String>,
}

/// Istio's `assignExactOrPrefix`.
fn exact_or_prefix(m: Option<&StringMatchSpec>) -> String {
    let set = |s: Option<&String>| s.filter(|s| !s.is_empty()).cloned();
    match m {
        Some(m) => match (set(m.exact.as_ref()), set(m.prefix.as_ref())) {
            (Some(e), _) => format!("exact:{e}"),
            (None, Some(p)) => format!("prefix:{p}"),
            _ => String::new(),
        },
        None => String::new(),
    }
}

fn value_map(m: &BTreeMap<String, StringMatchSpec>) -> BTreeMap<String, String> {
    m.iter()
        .map(|(k, v)| (k.clone(), exact_or_prefix(Some(v))))
        .collect()
}

/// Istio's `genMatchHTTPRoutes`: the match, if it has a `uri.prefix`.
fn prefixed(route: &HttpRoute, rule: usize, index: usize) -> Option<Prefixed> {
    let m = route.matches.get(index)?;
    let prefix = m.uri.as_ref()?.prefix.clone().filter(|p| !p.is_empty())?;
    let method = match exact_or_prefix(m.method.as_ref()) {
        none if none.is_empty() => "exact:GET".to_string(),
        method => method,
    };
    Some(Prefixed {
        rule,
        route: label(&route.name, rule),
        matched: label(&m.name, index),
        prefix,
        port: m.port.unwrap_or(0),
        method,
        authority: exact_or_prefix(m.authority.as_ref()),
        headers: value_map(&m.headers),
        query_params: value_map(&m.query_params),
        without_headers: value_map(&m.without_headers),
    })
}

/// Istio's comparison of two values: equal, or `a` starts with `b`.
fn covers_value(a: &str, b: &str) -> bool {
    a == b || a.starts_with(b)
}

fn covers_map(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| covers_value(v, w)))
}

/// Istio's `coveredValidation`: whether earlier match `a` takes what later match `b` would.
fn covered(a: &Prefixed, b: &Prefixed) -> bool {
    b.prefix.starts_with(&a.prefix)
        && a.port == b.port
        && covers_value(&a.method, &b.method)
        && covers_value(&a.authority, &b.authority)
        && covers_map(&a.headers, &b.headers)
        && covers_map(&a.query_params, &b.query_params)
        && covers_map(&a.without_headers, &b.without_headers)
}

/// (rule index, message) for every later prefix match an earlier one covers; `kept` are the
/// (rule, match) indices the duplicate check kept, in order.
pub fn check(routes: &[HttpRoute], kept: &[(usize, usize)]) -> Vec<Found> {
    let matches: Vec<Prefixed> = kept
        .iter()
        .filter_map(|&(r, m)| prefixed(routes.get(r)?, r, m))
        .collect();
    let mut out = Vec::new();
    for (i, a) in matches.iter().enumerate() {
        for b in &matches[i + 1..] {
            if b.prefix == a.prefix || !covered(a, b) {
                continue;
            }
            out.push((
                b.rule,
                ineffective(
                    b.route.clone(),
                    format!("{} of prefix {}", b.matched, b.prefix),
                    format!("{} of prefix {} on {}", a.matched, a.prefix, a.route),
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! istio/istio testdata `virtualservice_overlappingmatches.yaml` (case `dupmatches`).
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    fn vs(rules: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: v}}\nspec:\n  hosts: [s]\n  http:\n{rules}"
        )
    }

    #[test]
    fn shorter_prefix_first_covers_a_longer_one() {
        let text = vs(r#"  - name: a
    match:
    - uri: {prefix: /api/v1/prod}
      method: {exact: GET}
    route: [{destination: {host: s}}]
  - name: b
    match:
    - uri: {prefix: /api/v1/product}
      method: {exact: GET}
    - uri: {prefix: /api/v1/products}
      method: {exact: POST}
    route: [{destination: {host: s}}]
"#);
        assert_eq!(
            lines(&analyze_str(&text, "v.yaml"), "IST0131"),
            vec![
                r#"Info [IST0131] (VirtualService v.default) VirtualService rule "b" match #0 of prefix /api/v1/product is not used (duplicate/overlapping match in rule #0 of prefix /api/v1/prod on "a")."#
            ]
        );
    }

    #[test]
    fn no_method_is_get_and_exact_uris_do_not_take_part() {
        let text = vs(r#"  - match:
    - uri: {prefix: /api/v1/product}
    - uri: {prefix: /api/v1/products}
      method: {exact: GET}
    - uri: {exact: /api/v1/products/x}
    route: [{destination: {host: s}}]
"#);
        assert_eq!(
            lines(&analyze_str(&text, "v.yaml"), "IST0131"),
            vec!["Info [IST0131] (VirtualService v.default) VirtualService rule #0 match #1 of prefix /api/v1/products is not used (duplicate/overlapping match in rule #0 of prefix /api/v1/product on #0)."]
        );
        let later_port = vs(r#"  - match:
    - uri: {prefix: /a}
    - uri: {prefix: /ab}
      port: 8080
    route: [{destination: {host: s}}]
"#);
        assert!(lines(&analyze_str(&later_port, "v.yaml"), "IST0131").is_empty());
    }
}
