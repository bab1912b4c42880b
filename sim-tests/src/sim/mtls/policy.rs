//! The simulator's AuthorizationPolicies: plain data, written out as Istio YAML for the
//! control plane to translate (`trellis_control::translate::authorization_for`, the path a
//! real policy takes), and evaluated here by a reference written from Istio's documented
//! semantics, independently of the translator and of the engine's RBAC evaluator:
//!
//! - a policy applies to a workload when it lives in the workload's namespace or in the root
//!   namespace (`istio-system`) and its `selector` (if any) names the workload's `app`;
//! - DENY before ALLOW: a request any applicable DENY policy matches is denied; else, with no
//!   applicable ALLOW policy it is allowed; else it is allowed only if an ALLOW policy matches;
//! - AUDIT never decides;
//! - a policy matches when one of its rules does; no rules (absent or `[]`) matches nothing,
//!   so an ALLOW policy without rules denies everything; a rule `{}` matches everything;
//! - a rule holds when one of its `from` sources and one of its `to` operations hold (an empty
//!   list holds); within one source or operation every field given must hold, a field holds
//!   when one value matches, a `not` field when none does;
//! - principals and namespaces come from the verified peer certificate only: a plaintext
//!   request has none, so `principals`/`namespaces` never hold for it and their `not` forms
//!   always do (pilot builds them as `not(authenticated ...)`);
//! - request principals come from a verified JWT only (`super::jwt`): without one,
//!   `requestPrincipals` never holds and `notRequestPrincipals` always does;
//! - values: `*` (anything non-empty), `prefix*`, `*suffix`, or exact.

use serde::{Deserialize, Serialize};

/// An AuthorizationPolicy's `action` (CUSTOM is refused by Trellis and never drawn).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthzAction {
    Allow,
    Deny,
    Audit,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSpec {
    pub principals: Vec<String>,
    pub not_principals: Vec<String>,
    pub namespaces: Vec<String>,
    pub not_namespaces: Vec<String>,
    /// `requestPrincipals` (`<iss>/<sub>` of a verified JWT; absent from scenario files
    /// written before JWT was simulated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    /// `ipBlocks`, `remoteIpBlocks` and their `not` forms: drawn by the gateway world only
    /// (`super::super::gateway::authz`), whose reference decides them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationSpec {
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
    /// `hosts` and `notHosts` (`:authority`): drawn by the gateway world only
    /// (`super::super::gateway::authz`), whose reference decides them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub from: Vec<SourceSpec>,
    pub to: Vec<OperationSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySpec {
    pub name: String,
    pub namespace: String,
    /// `selector.matchLabels.app`; `None`: every workload of the namespace.
    pub selector: Option<String>,
    pub action: AuthzAction,
    /// `None`: no `rules` field; `Some([])`: `rules: []`.
    pub rules: Option<Vec<RuleSpec>>,
}

/// The workload a policy is evaluated for.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub namespace: &'a str,
    pub app: &'a str,
}

/// What the reference sees of a request.
#[derive(Clone, Copy, Debug)]
pub struct Asked<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The verified peer's SPIFFE id without `spiffe://`; `None` on plaintext.
    pub principal: Option<&'a str>,
    /// `request.auth.principal` of the request's verified JWT; `None` without one.
    pub request_principal: Option<&'a str>,
}

/// Istio's value forms: `*`, `prefix*`, `*suffix`, exact.
fn value_matches(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return !value.is_empty();
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return value.ends_with(suffix);
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return value.starts_with(prefix);
    }
    pattern == value
}

/// The namespace a SPIFFE path names (`<td>/ns/<ns>/sa/<sa>`).
fn namespace_of(principal: &str) -> Option<&str> {
    let rest = principal.split_once("/ns/")?.1;
    Some(rest.split_once('/').map_or(rest, |(ns, _)| ns))
}

/// A field holds when empty or one value matches `value` (absent: none matches).
fn any_of(values: &[String], value: Option<&str>, matches: impl Fn(&str, &str) -> bool) -> bool {
    values.is_empty() || value.is_some_and(|v| values.iter().any(|p| matches(p, v)))
}

/// A `not` field holds when no value matches (an absent value matches none).
fn none_of(values: &[String], value: Option<&str>, matches: impl Fn(&str, &str) -> bool) -> bool {
    !value.is_some_and(|v| values.iter().any(|p| matches(p, v)))
}

impl SourceSpec {
    fn holds(&self, q: &Asked<'_>) -> bool {
        debug_assert!(
            self.ip_blocks.is_empty()
                && self.not_ip_blocks.is_empty()
                && self.remote_ip_blocks.is_empty()
                && self.not_remote_ip_blocks.is_empty(),
            "the mesh world draws no IP blocks; its reference does not decide them"
        );
        let ns = q.principal.and_then(namespace_of);
        let same = |p: &str, v: &str| p == v;
        any_of(&self.principals, q.principal, value_matches)
            && none_of(&self.not_principals, q.principal, value_matches)
            && any_of(&self.namespaces, ns, same)
            && none_of(&self.not_namespaces, ns, same)
            && any_of(&self.request_principals, q.request_principal, value_matches)
            && none_of(
                &self.not_request_principals,
                q.request_principal,
                value_matches,
            )
    }
}

impl OperationSpec {
    fn holds(&self, q: &Asked<'_>) -> bool {
        debug_assert!(
            self.hosts.is_empty() && self.not_hosts.is_empty(),
            "the mesh world draws no hosts; its reference does not decide them"
        );
        let same = |p: &str, v: &str| p == v;
        any_of(&self.methods, Some(q.method), same)
            && none_of(&self.not_methods, Some(q.method), same)
            && any_of(&self.paths, Some(q.path), value_matches)
            && none_of(&self.not_paths, Some(q.path), value_matches)
    }
}

impl RuleSpec {
    fn holds(&self, q: &Asked<'_>) -> bool {
        (self.from.is_empty() || self.from.iter().any(|s| s.holds(q)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.holds(q)))
    }
}

impl PolicySpec {
    fn applies_to(&self, w: &Target<'_>) -> bool {
        (self.namespace == w.namespace || self.namespace == "istio-system")
            && self.selector.as_deref().is_none_or(|app| app == w.app)
    }

    fn matches(&self, q: &Asked<'_>) -> bool {
        self.rules
            .as_deref()
            .is_some_and(|rules| rules.iter().any(|r| r.holds(q)))
    }

    /// The policy as Istio YAML (one document).
    pub fn to_yaml(&self) -> String {
        let list = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let mut y = format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {}, namespace: {}}}\nspec:\n",
            self.name, self.namespace
        );
        if let Some(app) = &self.selector {
            y += &format!("  selector: {{matchLabels: {{app: {app}}}}}\n");
        }
        y += match self.action {
            AuthzAction::Allow => "  action: ALLOW\n",
            AuthzAction::Deny => "  action: DENY\n",
            AuthzAction::Audit => "  action: AUDIT\n",
        };
        let Some(rules) = &self.rules else {
            return y;
        };
        if rules.is_empty() {
            return y + "  rules: []\n";
        }
        y += "  rules:\n";
        for rule in rules {
            if rule.from.is_empty() && rule.to.is_empty() {
                y += "  - {}\n";
                continue;
            }
            let mut lead = "  - ";
            if !rule.from.is_empty() {
                y += &format!("{lead}from:\n");
                lead = "    ";
                for s in &rule.from {
                    let mut fields = Vec::new();
                    for (key, v) in [
                        ("principals", &s.principals),
                        ("notPrincipals", &s.not_principals),
                        ("namespaces", &s.namespaces),
                        ("notNamespaces", &s.not_namespaces),
                        ("requestPrincipals", &s.request_principals),
                        ("notRequestPrincipals", &s.not_request_principals),
                        ("ipBlocks", &s.ip_blocks),
                        ("notIpBlocks", &s.not_ip_blocks),
                        ("remoteIpBlocks", &s.remote_ip_blocks),
                        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
                    ] {
                        if !v.is_empty() {
                            fields.push(format!("{key}: {}", list(v)));
                        }
                    }
                    y += &format!("    - source: {{{}}}\n", fields.join(", "));
                }
            }
            if !rule.to.is_empty() {
                y += &format!("{lead}to:\n");
                for o in &rule.to {
                    let mut fields = Vec::new();
                    for (key, v) in [
                        ("methods", &o.methods),
                        ("notMethods", &o.not_methods),
                        ("paths", &o.paths),
                        ("notPaths", &o.not_paths),
                        ("hosts", &o.hosts),
                        ("notHosts", &o.not_hosts),
                    ] {
                        if !v.is_empty() {
                            fields.push(format!("{key}: {}", list(v)));
                        }
                    }
                    y += &format!("    - operation: {{{}}}\n", fields.join(", "));
                }
            }
        }
        y
    }
}

/// The reference decision for `q` at workload `w` under `policies`: `true` is allowed.
pub fn reference_allows(policies: &[PolicySpec], w: &Target<'_>, q: &Asked<'_>) -> bool {
    let applicable = || policies.iter().filter(|p| p.applies_to(w));
    if applicable().any(|p| p.action == AuthzAction::Deny && p.matches(q)) {
        return false;
    }
    let mut allows = applicable()
        .filter(|p| p.action == AuthzAction::Allow)
        .peekable();
    allows.peek().is_none() || allows.any(|p| p.matches(q))
}

/// The control plane's translation of `policies` for every service's workload (what
/// `trellis_control::translate::authorization_for` gives each sidecar), in service order.
pub fn translate(
    services: &[super::spec::SecService],
    policies: &[PolicySpec],
) -> Result<Vec<Option<std::sync::Arc<trellis_engine::authz::Authorization>>>, String> {
    let yaml = to_yaml(policies);
    let set = trellis_control::istio::parse_str(&yaml, "sim-policies.yaml")
        .map_err(|e| format!("the control plane refused the simulator's policies: {e}"))?;
    Ok(services
        .iter()
        .map(|svc| {
            let workload = trellis_control::translate::workload::Workload {
                namespace: svc.namespace.clone(),
                service_account: svc.app.clone(),
                labels: [("app".to_string(), svc.app.clone())].into(),
                locality: None,
            };
            trellis_control::translate::authorization_for(&set, &workload).authorization
        })
        .collect())
}

/// Every policy as one YAML stream.
pub fn to_yaml(policies: &[PolicySpec]) -> String {
    policies
        .iter()
        .map(PolicySpec::to_yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(rules: Option<Vec<RuleSpec>>) -> PolicySpec {
        PolicySpec {
            name: "a".into(),
            namespace: "shop".into(),
            selector: None,
            action: AuthzAction::Allow,
            rules,
        }
    }

    const W: Target<'static> = Target {
        namespace: "shop",
        app: "svc0",
    };

    fn ask(principal: Option<&'static str>) -> Asked<'static> {
        Asked {
            method: "GET",
            path: "/api/v1/items",
            principal,
            request_principal: None,
        }
    }

    #[test]
    fn istio_rules_of_thumb() {
        assert!(reference_allows(&[], &W, &ask(None)), "no policy: allow");
        assert!(
            !reference_allows(&[allow(None)], &W, &ask(None)),
            "ALLOW without rules"
        );
        assert!(!reference_allows(&[allow(Some(vec![]))], &W, &ask(None)));
        let any = allow(Some(vec![RuleSpec::default()]));
        assert!(
            reference_allows(std::slice::from_ref(&any), &W, &ask(None)),
            "{{}} matches all"
        );
        let deny_all = PolicySpec {
            action: AuthzAction::Deny,
            ..any.clone()
        };
        assert!(
            !reference_allows(&[any.clone(), deny_all], &W, &ask(None)),
            "DENY first"
        );
        let audit = PolicySpec {
            action: AuthzAction::Audit,
            ..any
        };
        assert!(
            reference_allows(&[audit], &W, &ask(None)),
            "AUDIT never decides"
        );
    }

    #[test]
    fn principals_need_mtls_and_not_forms_pass_plaintext() {
        let from = |s: SourceSpec| {
            allow(Some(vec![RuleSpec {
                from: vec![s],
                to: vec![],
            }]))
        };
        let p = from(SourceSpec {
            principals: vec!["cluster.local/ns/shop/*".into()],
            ..Default::default()
        });
        assert!(reference_allows(
            std::slice::from_ref(&p),
            &W,
            &ask(Some("cluster.local/ns/shop/sa/x"))
        ));
        assert!(!reference_allows(&[p], &W, &ask(None)));
        let not_ns = from(SourceSpec {
            not_namespaces: vec!["shop".into()],
            ..Default::default()
        });
        assert!(reference_allows(
            std::slice::from_ref(&not_ns),
            &W,
            &ask(None)
        ));
        assert!(!reference_allows(
            &[not_ns],
            &W,
            &ask(Some("td/ns/shop/sa/x"))
        ));
    }

    #[test]
    fn yaml_is_accepted_by_the_control_plane() {
        let p = PolicySpec {
            name: "p".into(),
            namespace: "shop".into(),
            selector: Some("svc0".into()),
            action: AuthzAction::Deny,
            rules: Some(vec![
                RuleSpec::default(),
                RuleSpec {
                    from: vec![SourceSpec {
                        principals: vec!["*".into()],
                        ..Default::default()
                    }],
                    to: vec![OperationSpec {
                        paths: vec!["*.js".into()],
                        methods: vec!["GET".into()],
                        ..Default::default()
                    }],
                },
            ]),
        };
        let set = trellis_control::istio::parse_str(&to_yaml(&[p.clone(), allow(None)]), "t")
            .expect("parses");
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
        assert_eq!(set.authorization_policies.len(), 2);
    }
}
