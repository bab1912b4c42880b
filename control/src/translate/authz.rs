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
//!   its generator (`model/generator.go`).
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

use trellis_engine::authz::{
    quote_meta, Action, Authorization, Cidr, FullRegex, HeaderMatcher, PathTemplate, Permission,
    Policy, Principal, Rbac, RbacFilter, StringMatcher,
};

use super::workload::{Workload, ROOT_NAMESPACE};
use crate::diag::Diagnostic;
use crate::istio::authorization_policy::{AuthorizationAction, AuthorizationPolicySpec, Rule};
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
    let mut diagnostics = Vec::new();
    for ra in attached_to(
        &resources.request_authentications,
        workload,
        &mut diagnostics,
    ) {
        diagnostics.push(ra.diag(Diagnostic::error(
            "RequestAuthentication is read but not enforced yet: Trellis validates no JWT, so \
             requests with invalid tokens are NOT refused, and requestPrincipals / \
             request.auth.* in AuthorizationPolicies never match",
        )));
    }
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
            match build_rule(policy.namespace(), rule, rbac_action, &mut notes) {
                Ok((permissions, principals)) => list.push(Policy {
                    name: name(i),
                    permissions,
                    principals,
                }),
                Err(e) => notes.push(format!("rule skipped: {e}")),
            }
            for note in notes {
                diagnostics.push(policy.diag(Diagnostic::error(note).field(field.clone())));
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

/// A permission-side key (`model.go`: what becomes an RBAC permission).
#[derive(Clone, Copy, Debug)]
enum PermKey<'a> {
    Host,
    Method,
    Path,
    Port,
    DestIp,
    Sni,
    /// `experimental.envoy.filters.*` (extended: all values at once).
    EnvoyFilter(&'a str),
}

/// A principal-side key.
#[derive(Clone, Copy, Debug)]
enum PrinKey<'a> {
    SrcIp,
    RemoteIp,
    Namespace,
    TrustDomain,
    ServiceAccount,
    Principal,
    /// `request.headers[<name>]`: the key as written.
    Header(&'a str),
    /// `request.auth.principal` / `requestPrincipals` (extended).
    RequestPrincipal,
    /// `request.auth.audiences`, `.presenter`, `.claims[...]` (extended): the key as written.
    Jwt(&'a str),
}

type Item<'a, K> = (K, &'a [String], &'a [String]);

/// pilot's `model.New` followed by `Generate` for one rule.
fn build_rule(
    policy_ns: &str,
    rule: &Rule,
    action: Action,
    notes: &mut Vec<String>,
) -> Result<(Vec<Permission>, Vec<Principal>), String> {
    let mut base_perm: Vec<Item<'_, PermKey<'_>>> = Vec::new();
    let mut base_prin: Vec<Item<'_, PrinKey<'_>>> = Vec::new();
    for (i, when) in rule.when.iter().enumerate() {
        let k = when.key.as_str();
        let (v, nv) = (&when.values[..], &when.not_values[..]);
        if v.is_empty() && nv.is_empty() {
            continue;
        }
        match k {
            "destination.ip" => base_perm.push((PermKey::DestIp, v, nv)),
            "destination.port" => base_perm.push((PermKey::Port, v, nv)),
            "connection.sni" => base_perm.push((PermKey::Sni, v, nv)),
            _ if k.starts_with("experimental.envoy.filters.") => {
                base_perm.push((PermKey::EnvoyFilter(k), v, nv))
            }
            "source.ip" => base_prin.push((PrinKey::SrcIp, v, nv)),
            "remote.ip" => base_prin.push((PrinKey::RemoteIp, v, nv)),
            "source.namespace" => base_prin.push((PrinKey::Namespace, v, nv)),
            "source.trustDomain" => base_prin.push((PrinKey::TrustDomain, v, nv)),
            "source.serviceAccount" => base_prin.push((PrinKey::ServiceAccount, v, nv)),
            "source.principal" => base_prin.push((PrinKey::Principal, v, nv)),
            "request.auth.principal" => base_prin.push((PrinKey::RequestPrincipal, v, nv)),
            "request.auth.audiences" | "request.auth.presenter" => {
                base_prin.push((PrinKey::Jwt(k), v, nv))
            }
            _ if k.starts_with("request.headers") => base_prin.push((PrinKey::Header(k), v, nv)),
            _ if k.starts_with("request.auth.claims") => base_prin.push((PrinKey::Jwt(k), v, nv)),
            _ if action == Action::Allow => return Err(format!("unknown attribute {k}")),
            _ => notes.push(format!(
                "when[{i}]: unknown attribute {k}; the condition is dropped (a wider {})",
                if action == Action::Deny {
                    "deny"
                } else {
                    "audit"
                }
            )),
        }
    }
    if rule.when.iter().any(|w| w.key.starts_with("request.auth.")) {
        notes.push(
            "request.auth.* conditions never match: Trellis does not validate JWTs yet \
             (RequestAuthentication), so no request has claims"
                .to_string(),
        );
    }

    let mut principals = Vec::new();
    for from in &rule.from {
        // insertFront in model.go's order, so the fields come out principal-first.
        let mut items: Vec<Item<'_, PrinKey<'_>>> = Vec::new();
        if let Some(s) = &from.source {
            for (key, v, nv) in [
                (PrinKey::Principal, &s.principals, &s.not_principals),
                (
                    PrinKey::RequestPrincipal,
                    &s.request_principals,
                    &s.not_request_principals,
                ),
                (
                    PrinKey::ServiceAccount,
                    &s.service_accounts,
                    &s.not_service_accounts,
                ),
                (PrinKey::TrustDomain, &s.trust_domains, &s.not_trust_domains),
                (PrinKey::Namespace, &s.namespaces, &s.not_namespaces),
                (
                    PrinKey::RemoteIp,
                    &s.remote_ip_blocks,
                    &s.not_remote_ip_blocks,
                ),
                (PrinKey::SrcIp, &s.ip_blocks, &s.not_ip_blocks),
            ] {
                if !v.is_empty() || !nv.is_empty() {
                    items.push((key, v, nv));
                }
            }
            if !s.request_principals.is_empty() || !s.not_request_principals.is_empty() {
                notes.push(
                    "requestPrincipals never match: Trellis does not validate JWTs yet \
                     (RequestAuthentication)"
                        .to_string(),
                );
            }
        }
        items.extend(base_prin.iter().copied());
        principals.push(and_principals(&items, policy_ns, action)?);
    }
    if rule.from.is_empty() {
        principals.push(and_principals(&base_prin, policy_ns, action)?);
    }

    let mut permissions = Vec::new();
    for to in &rule.to {
        let mut items: Vec<Item<'_, PermKey<'_>>> = Vec::new();
        if let Some(o) = &to.operation {
            for (key, v, nv) in [
                (PermKey::Host, &o.hosts, &o.not_hosts),
                (PermKey::Method, &o.methods, &o.not_methods),
                (PermKey::Path, &o.paths, &o.not_paths),
                (PermKey::Port, &o.ports, &o.not_ports),
            ] {
                if !v.is_empty() || !nv.is_empty() {
                    items.push((key, v, nv));
                }
            }
        }
        items.extend(base_perm.iter().copied());
        permissions.push(and_permissions(&items, action)?);
    }
    if rule.to.is_empty() {
        permissions.push(and_permissions(&base_perm, action)?);
    }
    Ok((permissions, principals))
}

/// `checkError`: an ALLOW policy fails the rule; DENY and AUDIT drop the value.
fn check<T>(result: Result<T, String>, action: Action) -> Result<Option<T>, String> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if action == Action::Allow => Err(e),
        Err(_) => Ok(None),
    }
}

/// `generatePermission`: AND of each item's `Or(values)` and `Not(Or(notValues))`.
fn and_permissions(items: &[Item<'_, PermKey<'_>>], action: Action) -> Result<Permission, String> {
    let mut and = Vec::new();
    for &(key, values, not_values) in items {
        if let PermKey::EnvoyFilter(k) = key {
            for (list, negate) in [(values, false), (not_values, true)] {
                if list.is_empty() {
                    continue;
                }
                if let Some(p) = check(envoy_filter(k), action)? {
                    and.push(if negate {
                        Permission::Not(Box::new(p))
                    } else {
                        p
                    });
                }
            }
            continue;
        }
        for (list, negate) in [(values, false), (not_values, true)] {
            let mut or = Vec::new();
            for value in list {
                if let Some(p) = check(permission(key, value), action)? {
                    or.push(p);
                }
            }
            if !or.is_empty() {
                let p = Permission::Or(or);
                and.push(if negate {
                    Permission::Not(Box::new(p))
                } else {
                    p
                });
            }
        }
    }
    if and.is_empty() {
        and.push(Permission::Any);
    }
    Ok(Permission::And(and))
}

/// `generatePrincipal`.
fn and_principals(
    items: &[Item<'_, PrinKey<'_>>],
    policy_ns: &str,
    action: Action,
) -> Result<Principal, String> {
    let mut and = Vec::new();
    for &(key, values, not_values) in items {
        for (list, negate) in [(values, false), (not_values, true)] {
            if list.is_empty() {
                continue;
            }
            let built = match key {
                PrinKey::RequestPrincipal => check(Ok(request_principals(list)), action)?,
                PrinKey::Jwt(k) => check(jwt_claim(k), action)?,
                _ => {
                    let mut or = Vec::new();
                    for value in list {
                        if let Some(p) = check(principal(key, value, policy_ns), action)? {
                            or.push(p);
                        }
                    }
                    (!or.is_empty()).then_some(Principal::Or(or))
                }
            };
            if let Some(p) = built {
                and.push(if negate {
                    Principal::Not(Box::new(p))
                } else {
                    p
                });
            }
        }
    }
    if and.is_empty() {
        and.push(Principal::Any);
    }
    Ok(Principal::And(and))
}

/// One value of a permission-side key (`generator.go` `permission`).
fn permission(key: PermKey<'_>, value: &str) -> Result<Permission, String> {
    Ok(match key {
        PermKey::Host => Permission::Header(HeaderMatcher::istio_host(":authority", value)),
        PermKey::Method => Permission::Header(HeaderMatcher::istio(":method", value)),
        PermKey::Path if PathTemplate::is_template(value) => {
            Permission::PathTemplate(PathTemplate::parse(value).map_err(|e| e.to_string())?)
        }
        PermKey::Path => Permission::Path(StringMatcher::istio(value)),
        PermKey::Port => Permission::DestinationPort(port(value)?),
        PermKey::DestIp => {
            Permission::DestinationIp(Cidr::parse(value).map_err(|e| e.to_string())?)
        }
        PermKey::Sni => Permission::RequestedServerName(StringMatcher::istio(value)),
        PermKey::EnvoyFilter(k) => envoy_filter(k)?,
    })
}

/// `convertToPort`: decimal digits (Go's `ParseUint` takes no sign), at most 65535.
fn port(value: &str) -> Result<u16, String> {
    value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("invalid port {value}"))
}

/// `envoyFilterGenerator`: the key must be `experimental.envoy.filters.<filter>[<key>]`. Trellis
/// sets no filter metadata, so the permission never matches.
fn envoy_filter(key: &str) -> Result<Permission, String> {
    let rest = key.trim_start_matches("experimental.");
    let rest = rest.strip_suffix(']').unwrap_or(rest);
    if !rest.contains('[') {
        return Err(format!("invalid key: {key}"));
    }
    Ok(Permission::Metadata(Arc::from(key)))
}

/// One value of a principal-side key (`generator.go` `principal`).
fn principal(key: PrinKey<'_>, value: &str, policy_ns: &str) -> Result<Principal, String> {
    let regex = |pattern: String| {
        FullRegex::new(&pattern)
            .map(|re| Principal::Authenticated(StringMatcher::Regex(re)))
            .map_err(|e| format!("invalid value {value:?}: {e}"))
    };
    match key {
        PrinKey::SrcIp => Ok(Principal::DirectRemoteIp(
            Cidr::parse(value).map_err(|e| e.to_string())?,
        )),
        PrinKey::RemoteIp => Ok(Principal::RemoteIp(
            Cidr::parse(value).map_err(|e| e.to_string())?,
        )),
        PrinKey::Namespace => {
            // srcNamespaceGenerator: `.*/ns/<ns, * as .*>/.*`.
            let ns: Vec<String> = value.split('*').map(quote_meta).collect();
            regex(format!(".*/ns/{}/.*", ns.join(".*")))
        }
        PrinKey::ServiceAccount => {
            // serviceAccountRegex: `<sa>` or `<ns>/<sa>`, ns defaulting to the policy's.
            let (ns, sa) = value.split_once('/').unwrap_or((policy_ns, value));
            regex(format!(
                "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
                quote_meta(ns),
                quote_meta(sa)
            ))
        }
        PrinKey::TrustDomain => {
            // srcTrustDomainGenerator.
            if value == "*" {
                Ok(Principal::Authenticated(StringMatcher::Prefix(
                    "spiffe://".into(),
                )))
            } else if !value.contains('*') {
                Ok(Principal::Authenticated(StringMatcher::Prefix(
                    format!("spiffe://{value}/").into(),
                )))
            } else {
                let (a, b) = value.split_once('*').unwrap_or((value, ""));
                regex(format!(
                    "spiffe://{}[^/]*{}/.*",
                    quote_meta(a),
                    quote_meta(b)
                ))
            }
        }
        PrinKey::Principal => Ok(Principal::Authenticated(StringMatcher::istio_with_prefix(
            value,
            "spiffe://",
        ))),
        PrinKey::Header(k) => {
            let name = k
                .strip_prefix("request.headers")
                .and_then(|n| n.strip_prefix('['))
                .and_then(|n| n.strip_suffix(']'))
                .ok_or_else(|| format!("expecting format [<NAME>], but found {k}"))?;
            Ok(Principal::Header(HeaderMatcher::istio(name, value)))
        }
        PrinKey::RequestPrincipal => Ok(request_principals(&[value.to_string()])),
        PrinKey::Jwt(k) => jwt_claim(k),
    }
}

/// `requestPrincipalGenerator.extendedPrincipal`: per value, the issuer AND the subject claim
/// (one value: that pair; several: their OR). No JWT is ever validated: never matches.
fn request_principals(values: &[String]) -> Principal {
    let pair = |v: &String| {
        Principal::And(vec![
            Principal::JwtMetadata(Arc::from(format!("request.auth.principal iss of {v}"))),
            Principal::JwtMetadata(Arc::from(format!("request.auth.principal sub of {v}"))),
        ])
    };
    match values {
        [one] => pair(one),
        many => Principal::Or(many.iter().map(pair).collect()),
    }
}

/// `request.auth.audiences` / `.presenter` / `.claims[a][b]` (the claim names must be in
/// brackets, `extractNameInNestedBrackets`). Never matches (no JWT).
fn jwt_claim(key: &str) -> Result<Principal, String> {
    if let Some(claims) = key.strip_prefix("request.auth.claims") {
        if !(claims.starts_with('[') && claims.ends_with(']')) {
            return Err(format!("expecting format [<NAME>], but found {claims}"));
        }
    }
    Ok(Principal::JwtMetadata(Arc::from(key)))
}

#[cfg(test)]
#[path = "authz_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "authz_golden_tests.rs"]
mod golden_tests;
