//! AuthorizationPolicy → the engine's RBAC filter chain for one workload's inbound listeners.
//!
//! This is pilot's `pilot/pkg/security/authz` done in Rust, step for step, so the result can be
//! compared with the Envoy RBAC filters pilot writes (the golden files under
//! `../shared/istio/security/authz-builder/`, see `authz_golden_tests.rs`):
//! - selection (`model/authorization.go` `ListAuthorizationPolicies`, `model/policyattachment.go`
//!   `ShouldAttachPolicy`): policies of the root namespace (`istio-system`) and of the
//!   workload's namespace whose `selector.matchLabels` are a subset of its labels; a policy with
//!   `targetRef(s)` is for waypoints and gateways and never attaches to a sidecar;
//! - one RBAC filter per action, in pilot's order: CUSTOM, AUDIT (`LOG`), DENY, ALLOW
//!   (`builder.go` `build`); policies annotated `istio.io/dry-run: "true"` go to the filter's
//!   shadow rules; a policy without rules becomes `rbacPolicyMatchNever`;
//! - each rule becomes one policy named `ns[<ns>]-policy[<name>]-rule[<i>]` whose permissions
//!   (one per `to`) and principals (one per `from`) AND together every field given, with the
//!   `when` conditions added to each (`model/model.go` `New`, `Generate`), each value built by
//!   its generator (`model/generator.go`): that part is `authz_rule.rs`.
//!
//! Errors follow `model.go` `checkError`: in an ALLOW policy a value that cannot be built drops
//! its whole rule (a smaller allow); in DENY and AUDIT only that value is dropped (a wider deny:
//! a DENY rule never fails open). pilot also drops a rule with an unknown `when` key, which
//! Istio's admission webhook refuses before pilot sees it; without that webhook, Trellis keeps
//! the same direction: an ALLOW rule is dropped, a DENY/AUDIT rule loses only that condition.
//!
//! CUSTOM needs an external authorizer (ext_authz), which Trellis does not have: the policy is
//! reported as not supported, and its rules deny what they match, which is what pilot does for
//! a CUSTOM policy whose provider it cannot use (`getBadCustomDenyRules`).

use std::collections::BTreeMap;
use std::sync::Arc;

use trellis_engine::authz::{Action, Authorization, Policy, Rbac, RbacFilter};

use rule::build_rule;
#[cfg(test)]
use rule::port;

use super::workload::{Workload, ROOT_NAMESPACE};
use crate::diag::Diagnostic;
use crate::istio::authorization_policy::{AuthorizationAction, AuthorizationPolicySpec};
use crate::istio::common::WorkloadSelector;
use crate::istio::request_authentication::RequestAuthenticationSpec;
use crate::istio::{Resource, ResourceSet};

/// The annotation that makes a policy dry-run (`annotation.IoIstioDryRun`).
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// pilot's `extAuthzMatchPrefix` and `badCustomActionSuffix` (`builder/extauthz.go`).
const EXT_AUTHZ_PREFIX: &str = "istio-ext-authz";
const BAD_CUSTOM_SUFFIX: &str = "-deny-due-to-bad-CUSTOM-action";

/// The RBAC chain for a workload, and what translation noticed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthzTranslation {
    /// `None` when no policy applies (every request is allowed).
    pub authorization: Option<Arc<Authorization>>,
    pub diagnostics: Vec<Diagnostic>,
}

/// A security resource that attaches to workloads by `selector` or (waypoints and gateways
/// only) by `targetRef(s)`.
pub trait Attachable {
    fn selector(&self) -> Option<&WorkloadSelector>;
    fn has_target_refs(&self) -> bool;
}

impl Attachable for AuthorizationPolicySpec {
    fn selector(&self) -> Option<&WorkloadSelector> {
        self.selector.as_ref()
    }

    fn has_target_refs(&self) -> bool {
        self.target_ref.is_some() || !self.target_refs.is_empty()
    }
}

impl Attachable for RequestAuthenticationSpec {
    fn selector(&self) -> Option<&WorkloadSelector> {
        self.selector.as_ref()
    }

    fn has_target_refs(&self) -> bool {
        self.target_ref.is_some() || !self.target_refs.is_empty()
    }
}

/// The resources of `all` that attach to `workload`, in pilot's lookup order (root namespace
/// first).
pub fn attached_to<'a, S: Attachable>(
    all: &'a [Resource<S>],
    workload: &Workload,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<&'a Resource<S>> {
    let mut namespaces = vec![ROOT_NAMESPACE];
    if workload.namespace != ROOT_NAMESPACE {
        namespaces.push(&workload.namespace);
    }
    let mut out = Vec::new();
    for ns in namespaces {
        for item in all.iter().filter(|p| p.namespace() == ns) {
            if item.spec.has_target_refs() {
                diagnostics.push(
                    item.diag(
                        Diagnostic::warning(
                            "targetRef/targetRefs attach a policy to a waypoint or gateway, never \
                         to a sidecar (pilot's ShouldAttachPolicy): not applied",
                        )
                        .field("spec.targetRefs"),
                    ),
                );
                continue;
            }
            let selected = item
                .spec
                .selector()
                .is_none_or(|s| workload.matches_labels(&s.match_labels));
            if selected {
                out.push(item);
            }
        }
    }
    out
}

/// The AuthorizationPolicies that attach to `workload`.
pub fn policies_for<'a>(
    resources: &'a ResourceSet,
    workload: &Workload,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<&'a Resource<AuthorizationPolicySpec>> {
    attached_to(&resources.authorization_policies, workload, diagnostics)
}

/// Policies of one action, split into enforced and dry-run; `None` until one is seen (pilot's
/// `hasEnforcePolicy` / `hasDryRunPolicy`: an ALLOW filter whose rules all failed still denies).
#[derive(Default)]
struct Group {
    enforced: Option<Vec<Policy>>,
    shadow: Option<Vec<Policy>>,
}

impl Group {
    fn filter(self, action: Action) -> Option<RbacFilter> {
        let rbac = |policies: Option<Vec<Policy>>| {
            policies.map(|mut policies| {
                // Envoy keeps policies in a map ordered by name; the first match in that order
                // is the effective policy.
                policies.sort_by(|a, b| a.name.cmp(&b.name));
                Rbac { action, policies }
            })
        };
        let filter = RbacFilter {
            rules: rbac(self.enforced),
            shadow: rbac(self.shadow),
        };
        (filter.rules.is_some() || filter.shadow.is_some()).then_some(filter)
    }
}

/// The RBAC chain of the AuthorizationPolicies that select `workload`.
pub fn authorization_for(resources: &ResourceSet, workload: &Workload) -> AuthzTranslation {
    build(resources, workload, false)
}

/// The same policies compiled for a TCP filter chain (pilot's `Builder::BuildTCP`, Envoy's
/// network RBAC filter): `Model::Generate(forTCP = true)` refuses the HTTP-only attributes
/// (hosts, methods, paths, request headers, request principals and JWT claims), which under
/// `checkError` drops an ALLOW rule that names one (it never matches a connection) and drops
/// just that attribute from a DENY or AUDIT rule (it matches more connections). Those skips
/// are pilot's debug log lines ("skipped rule ... on TCP filter chain"), reported here as info.
pub fn tcp_authorization_for(resources: &ResourceSet, workload: &Workload) -> AuthzTranslation {
    build(resources, workload, true)
}

fn build(resources: &ResourceSet, workload: &Workload, tcp: bool) -> AuthzTranslation {
    let mut diagnostics = Vec::new();
    let policies = policies_for(resources, workload, &mut diagnostics);
    let mut groups: BTreeMap<AuthorizationAction, Group> = BTreeMap::new();
    for policy in policies {
        let action = policy.spec.action.unwrap_or_default();
        let dry_run = dry_run(policy, &mut diagnostics);
        let (rbac_action, prefix, suffix) = match action {
            AuthorizationAction::CUSTOM => {
                let provider = policy
                    .spec
                    .provider
                    .as_ref()
                    .map(|p| p.name.as_str())
                    .unwrap_or("");
                diagnostics.push(policy.diag(Diagnostic::error(format!(
                    "action CUSTOM is not supported (Trellis has no external authorizer for \
                     provider {provider:?}): AuthorizationPolicy {} denies every request its \
                     rules match, as pilot does for a CUSTOM provider it cannot use",
                    policy.source.qualified_name()
                ))));
                if dry_run {
                    // pilot's bad-provider fallback keeps only the enforced CUSTOM rules.
                    continue;
                }
                let prefix = if provider.is_empty() {
                    format!("{EXT_AUTHZ_PREFIX}-")
                } else {
                    format!("{EXT_AUTHZ_PREFIX}-{provider}-")
                };
                (Action::Deny, prefix, BAD_CUSTOM_SUFFIX)
            }
            AuthorizationAction::AUDIT => (Action::Log, String::new(), ""),
            AuthorizationAction::DENY => (Action::Deny, String::new(), ""),
            AuthorizationAction::ALLOW => (Action::Allow, String::new(), ""),
        };
        let group = groups.entry(action).or_default();
        let list = if dry_run {
            group.shadow.get_or_insert_with(Vec::new)
        } else {
            group.enforced.get_or_insert_with(Vec::new)
        };
        let name = |i: usize| -> Arc<str> {
            Arc::from(format!(
                "{prefix}ns[{}]-policy[{}]-rule[{i}]{suffix}",
                policy.namespace(),
                policy.source.name
            ))
        };
        if policy.spec.rules.is_empty() {
            list.push(Policy::match_never(name(0)));
            continue;
        }
        for (i, rule) in policy.spec.rules.iter().enumerate() {
            let field = format!("spec.rules[{i}]");
            let Some(rule) = rule else {
                diagnostics.push(
                    policy.diag(Diagnostic::warning("null rule, skipped (as pilot)").field(field)),
                );
                continue;
            };
            let mut notes = Vec::new();
            let mut info = None;
            match build_rule(policy.namespace(), rule, (rbac_action, tcp), &mut notes) {
                Ok((permissions, principals)) => list.push(Policy {
                    name: name(i),
                    permissions,
                    principals,
                }),
                Err(e) if tcp => {
                    info = Some(format!("rule skipped on the TCP filter chain: {e}"));
                }
                Err(e) => notes.push(format!("rule skipped: {e}")),
            }
            for note in notes {
                diagnostics.push(policy.diag(Diagnostic::error(note).field(field.clone())));
            }
            if let Some(note) = info {
                diagnostics.push(policy.diag(Diagnostic::info(note).field(field.clone())));
            }
        }
    }
    let order = [
        (AuthorizationAction::CUSTOM, Action::Deny),
        (AuthorizationAction::AUDIT, Action::Log),
        (AuthorizationAction::DENY, Action::Deny),
        (AuthorizationAction::ALLOW, Action::Allow),
    ];
    let filters: Vec<RbacFilter> = order
        .into_iter()
        .filter_map(|(istio, action)| groups.remove(&istio)?.filter(action))
        .collect();
    AuthzTranslation {
        authorization: (!filters.is_empty()).then(|| Arc::new(Authorization { filters })),
        diagnostics,
    }
}

/// `istio.io/dry-run` read as Go's `strconv.ParseBool`; a bad value is reported and is false.
fn dry_run(policy: &Resource<AuthorizationPolicySpec>, diagnostics: &mut Vec<Diagnostic>) -> bool {
    match policy
        .meta
        .annotations
        .get(DRY_RUN_ANNOTATION)
        .map(String::as_str)
    {
        None => false,
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => true,
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => false,
        Some(other) => {
            diagnostics.push(
                policy.diag(
                    Diagnostic::error(format!(
                        "failed to parse the value of {DRY_RUN_ANNOTATION}: {other:?}; enforced"
                    ))
                    .field(format!("metadata.annotations.{DRY_RUN_ANNOTATION}")),
                ),
            );
            false
        }
    }
}

#[path = "authz_rule.rs"]
mod rule;

#[cfg(test)]
#[path = "authz_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "authz_golden_tests.rs"]
mod golden_tests;

#[cfg(test)]
#[path = "authz_tcp_tests.rs"]
mod tcp_tests;
