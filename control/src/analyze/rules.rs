//! IST0130 VirtualServiceUnreachableRule and IST0131 VirtualServiceIneffectiveMatch: rules and
//! matches of one VirtualService that can never be used because an earlier rule takes every
//! request they would.
//!
//! As in Istio's analyzer, two matches are the same when they are equal apart from their
//! `name` (Istio compares their JSON; we compare the parsed values). A rule without matches
//! takes everything, so only the last rule may have none, and a rule after one is never used.
//! Rules and matches are named `#index`, or by their quoted `name` where they have one. The
//! same check runs over `http`, `tls` and `tcp` rules (the latter two have no names).

use super::input::Inputs;
use super::message::{
    Message, VIRTUAL_SERVICE_INEFFECTIVE_MATCH, VIRTUAL_SERVICE_UNREACHABLE_RULE,
};
use super::rule_overlaps;
use crate::istio::virtual_service::HttpMatchRequest;

/// One rule, reduced to what the check needs.
struct Rule<M> {
    name: Option<String>,
    matches: Vec<(Option<String>, M)>,
}

/// A message about the rule at this index.
pub(super) type Found = (usize, Message);

/// Istio's `routeName` / `requestName`: the quoted name, else `#index`.
pub(super) fn label(name: &Option<String>, index: usize) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("{n:?}"),
        _ => format!("#{index}"),
    }
}

/// Istio's `VirtualServiceIneffectiveMatch` text.
pub(super) fn ineffective(rule: String, matched: String, earlier: String) -> Message {
    Message::new(
        VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
        format!(
            "VirtualService rule {rule} match {matched} is not used (duplicate/overlapping match in rule {earlier})."
        ),
    )
}

/// What was found in one list of rules: (rule index, message) pairs, and the (rule, match)
/// indices of the matches seen first (what Istio's overlap check goes on to compare).
fn unreachable<M: PartialEq>(rules: &[Rule<M>]) -> (Vec<Found>, Vec<(usize, usize)>) {
    let unused = |rule: &Rule<M>, index: usize, reason: &str| {
        (
            index,
            Message::new(
                VIRTUAL_SERVICE_UNREACHABLE_RULE,
                format!(
                    "VirtualService rule {} not used ({reason}).",
                    label(&rule.name, index)
                ),
            ),
        )
    };
    let mut out = Vec::new();
    let mut kept = Vec::new();
    let mut seen: Vec<(&M, usize)> = Vec::new();
    let mut catch_all: Option<usize> = None;
    for (r, rule) in rules.iter().enumerate() {
        if rule.matches.is_empty() {
            if catch_all.is_some() {
                out.push(unused(rule, r, "only the last rule can have no matches"));
            }
            catch_all = Some(r);
            continue;
        }
        if catch_all.is_some() {
            out.push(unused(rule, r, "route without matches defined before"));
            continue;
        }
        let mut duplicates = 0;
        for (m, (match_name, value)) in rule.matches.iter().enumerate() {
            if let Some(&(_, first)) = seen.iter().find(|(v, _)| *v == value) {
                out.push((
                    r,
                    ineffective(
                        label(&rule.name, r),
                        label(match_name, m),
                        label(&rules[first].name, first),
                    ),
                ));
                duplicates += 1;
            } else {
                seen.push((value, r));
                kept.push((r, m));
            }
        }
        if duplicates == rule.matches.len() {
            out.push(unused(rule, r, "all matches used by prior rules"));
        }
    }
    (out, kept)
}

/// The `match` list of a tcp/tls rule, as raw values (compared structurally).
fn l4_rules(rules: &[serde_yaml::Value]) -> Vec<Rule<serde_yaml::Value>> {
    rules
        .iter()
        .map(|r| Rule {
            name: None,
            matches: r
                .get("match")
                .and_then(|m| m.as_sequence())
                .map(|s| s.iter().map(|v| (None, v.clone())).collect())
                .unwrap_or_default(),
        })
        .collect()
}

/// Run the rule checks on every VirtualService.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    for vs in &inputs.resources.virtual_services {
        let http: Vec<Rule<HttpMatchRequest>> = vs
            .spec
            .http
            .iter()
            .map(|r| Rule {
                name: r.name.clone(),
                matches: r
                    .matches
                    .iter()
                    .map(|m| {
                        let unnamed = HttpMatchRequest {
                            name: None,
                            ..m.clone()
                        };
                        (m.name.clone(), unnamed)
                    })
                    .collect(),
            })
            .collect();
        let (http_found, kept) = unreachable(&http);
        let mut found: Vec<(String, Message)> = http_found
            .into_iter()
            .chain(rule_overlaps::check(&vs.spec.http, &kept))
            .map(|(i, m)| (format!("spec.http[{i}]"), m))
            .collect();
        for (section, rules) in [("tcp", &vs.spec.tcp), ("tls", &vs.spec.tls)] {
            found.extend(
                unreachable(&l4_rules(rules))
                    .0
                    .into_iter()
                    .map(|(i, m)| (format!("spec.{section}[{i}]"), m)),
            );
        }
        for (field, m) in found {
            out.push(inputs.blame(&vs.source, m.field(field)));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The istio.io examples for this module's codes.
    use crate::analyze::tests::{lines, plain};
    use crate::analyze::{analyze_str, Level};

    #[test]
    fn ist0130_docs_example() {
        let text = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: sample-foo-cluster01
  namespace: foo
spec:
  hosts:
  - sample.foo.svc.cluster.local
  http:
  - fault:
      delay:
        fixedDelay: 5s
        percentage:
          value: 100
    route:
    - destination:
        host: sample.foo.svc.cluster.local
  - mirror:
      host: sample.bar.svc.cluster.local
    route:
    - destination:
        host: sample.bar.svc.cluster.local
        subset: v1
"#;
        let a = analyze_str(text, "s.yaml");
        // istio.io prints `.default` although the example sets `namespace: foo`; we print the
        // resource's real namespace.
        assert_eq!(
        lines(&a, "IST0130"),
        vec!["Warning [IST0130] (VirtualService sample-foo-cluster01.foo) VirtualService rule #1 not used (only the last rule can have no matches)."]
    );
        assert!(!a.fails(Level::Error) || a.with_code("IST0101").count() > 0);
        assert!(a.fails(Level::Warning));
    }

    #[test]
    fn ist0131_docs_example_tls() {
        let text = r#"
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: tls-routing
spec:
  hosts:
  - www1.googleapis.com
  - api1.facebook.com
  tls:
  - match:
    - port: 2443
      sniHosts:
      - www1.googleapis.com
    route:
    - destination:
        host: www1.googleapis.com
  - match:
    - port: 2443
      sniHosts:
      - www1.googleapis.com
    route:
    - destination:
        host: api1.facebook.com
"#;
        let a = analyze_str(text, "tls.yaml");
        let got: Vec<String> = a.messages.iter().map(plain).collect();
        assert_eq!(
        got,
        vec![
            "Warning [IST0130] (VirtualService tls-routing.default) VirtualService rule #1 not used (all matches used by prior rules).",
            "Info [IST0131] (VirtualService tls-routing.default) VirtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0).",
        ]
    );
        assert!(!a.fails(Level::Error));
        assert!(a.fails(Level::Info));
    }

    #[test]
    fn ist0131_http_names_and_partial_duplicates() {
        let text = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - name: jason
    match: [{name: j, headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: r}}]
  - match:
    - {name: again, headers: {end-user: {exact: jason}}}
    - {uri: {prefix: /new}}
    route: [{destination: {host: r}}]
  - route: [{destination: {host: r}}]
"#;
        let a = analyze_str(text, "r.yaml");
        let got: Vec<String> = a.messages.iter().map(plain).collect();
        assert_eq!(
            got,
            vec![
                r#"Info [IST0131] (VirtualService r.default) VirtualService rule #1 match "again" is not used (duplicate/overlapping match in rule "jason")."#
            ],
            "{a}"
        );
    }
}
