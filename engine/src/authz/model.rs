//! The compiled authorization model: Envoy's RBAC configuration (`config.rbac.v3`), which is
//! what pilot turns AuthorizationPolicies into (`pilot/pkg/security/authz/builder/builder.go`).
//!
//! A [`Policy`] matches a request when one of its [`Permission`]s (what is asked: method, path,
//! host, port ...) and one of its [`Principal`]s (who asks: peer identity, IPs, headers) match.
//! An [`Rbac`] is a set of policies with one [`Action`]. An [`Authorization`] is the chain of
//! RBAC filters pilot installs on an inbound HTTP listener, in its order: AUDIT, then DENY, then
//! ALLOW (builder.go `build`); each filter has enforced rules and, for policies annotated
//! `istio.io/dry-run: "true"`, shadow rules that are evaluated and counted but never act.

use std::sync::Arc;

use super::matchers::{Cidr, HeaderMatcher, PathTemplate, StringMatcher};
use super::metadata::MetadataMatcher;

/// Envoy's `RBAC.Action` as pilot uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// A request is allowed only if some policy matches.
    Allow,
    /// A request is denied if some policy matches.
    Deny,
    /// `LOG` (Istio's AUDIT): a match marks the request for the access log; never denies.
    Log,
}

/// `config.rbac.v3.Permission`: what the request asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Permission {
    Any,
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    /// A request header, `:method` or `:authority`.
    Header(HeaderMatcher),
    /// `url_path`: the path without its query.
    Path(StringMatcher),
    /// `uri_template`: the path without its query against a `{*}`/`{**}` template.
    PathTemplate(PathTemplate),
    /// The port the connection was sent to (the original destination's, for a redirected one).
    DestinationPort(u16),
    /// The address the connection was sent to.
    DestinationIp(Cidr),
    /// `requested_server_name`: the TLS SNI ("" without TLS).
    RequestedServerName(StringMatcher),
    /// A dynamic-metadata matcher (`experimental.envoy.filters.*`): only the JWT filter's
    /// metadata exists in Trellis, so a matcher on another filter never matches.
    Metadata(MetadataMatcher),
}

/// `config.rbac.v3.Principal`: who sends the request.
#[derive(Clone, Debug, PartialEq)]
pub enum Principal {
    Any,
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
    /// `authenticated.principal_name`: the connection is TLS with a verified peer certificate
    /// and its URI SAN (the SPIFFE id, `spiffe://...`) matches. Plaintext never matches.
    Authenticated(StringMatcher),
    /// `direct_remote_ip`: the address of the connection's peer.
    DirectRemoteIp(Cidr),
    /// `remote_ip`: the client address as the connection manager computed it (the last
    /// `x-forwarded-for` entry, Istio's sidecar default of no trusted hops).
    RemoteIp(Cidr),
    Header(HeaderMatcher),
    /// Dynamic metadata: a claim of the verified JWT (`requestPrincipals`, `request.auth.*`).
    /// A request without a verified token never matches.
    Metadata(MetadataMatcher),
}

/// One named policy (`ns[<ns>]-policy[<name>]-rule[<i>]`, pilot's `policyName`).
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub name: Arc<str>,
    /// Matches if any matches (pilot's `Generate` always gives at least one).
    pub permissions: Vec<Permission>,
    pub principals: Vec<Principal>,
}

impl Policy {
    /// pilot's `rbacPolicyMatchNever`, for an AuthorizationPolicy without rules.
    pub fn match_never(name: Arc<str>) -> Policy {
        Policy {
            name,
            permissions: vec![Permission::Not(Box::new(Permission::Any))],
            principals: vec![Principal::Not(Box::new(Principal::Any))],
        }
    }
}

/// `config.rbac.v3.RBAC`: an action and its policies (in pilot's order; Envoy takes the first
/// matching one, by name, as the effective policy).
#[derive(Clone, Debug, PartialEq)]
pub struct Rbac {
    pub action: Action,
    pub policies: Vec<Policy>,
}

/// One RBAC HTTP filter: enforced rules and shadow (dry-run) rules, either possibly absent.
#[derive(Clone, Debug, PartialEq)]
pub struct RbacFilter {
    pub rules: Option<Rbac>,
    pub shadow: Option<Rbac>,
}

/// Every RBAC filter of an inbound listener, in evaluation order (AUDIT, DENY, ALLOW).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Authorization {
    pub filters: Vec<RbacFilter>,
}

impl Authorization {
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }
}
