//! Evaluating an [`Authorization`] for one request, as Envoy's RBAC HTTP filters do in the
//! order pilot installs them (`source/extensions/filters/http/rbac/rbac_filter.cc`
//! `decodeHeaders`, `source/extensions/filters/common/rbac/engine_impl.cc`
//! `RoleBasedAccessControlEngineImpl::handleAction`):
//!
//! - each filter first runs its shadow rules (counted, never acting), then its rules;
//! - `LOG` (AUDIT): a matching policy marks the request; it goes on;
//! - `DENY`: a matching policy denies it (403, `rbac_access_denied_matched_policy[<name>]`);
//! - `ALLOW`: no matching policy denies it (`rbac_access_denied_matched_policy[none]`);
//! - the first denial ends the chain. A listener with no filters allows everything.
//!
//! Evaluation borrows the request; it allocates nothing except for a header sent several
//! times (its values are joined with `,`, as Envoy does).

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::model::{Action, Authorization, Permission, Policy, Principal, Rbac};

/// `x-forwarded-for` (the http crate has no constant for it).
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// What the RBAC filters see of a request.
#[derive(Clone, Copy, Debug)]
pub struct AuthzRequest<'a> {
    pub method: &'a str,
    /// `:authority` as received (the Host field); empty when there is none.
    pub authority: &'a str,
    /// The request target (`:path`), query included; path matchers strip the query.
    pub path: &'a str,
    pub headers: &'a crate::http1::Fields,
    /// The connection's peer (Envoy's direct remote address).
    pub peer: SocketAddr,
    /// Where the connection was sent (the original destination of a redirected connection).
    pub destination: SocketAddr,
    /// The names of the verified peer certificate an `authenticated` principal may match, in
    /// Envoy's order: URI SANs (a mesh peer's SPIFFE id), DNS SANs, then the subject. Empty
    /// on plaintext and without a client certificate.
    pub peer_names: &'a [String],
    /// The TLS SNI the client sent, if any.
    pub sni: Option<&'a str>,
    /// The payload of the JWT the request authentication verified, if any (Envoy's
    /// `envoy.filters.http.jwt_authn` dynamic metadata).
    pub jwt: Option<&'a crate::authn::JwtPayload>,
    /// The client address the listener already decided (an edge listener's, from its peer
    /// and trusted hops: see `proxy::edge`); `None`: the sidecar rule of [`Self::remote_ip`].
    pub client: Option<IpAddr>,
}

impl AuthzRequest<'_> {
    /// The path without `?query` or `#fragment` (Envoy's `PathUtil::removeQueryAndFragment`).
    fn path_only(&self) -> &str {
        let end = self.path.find(['?', '#']).unwrap_or(self.path.len());
        &self.path[..end]
    }

    /// The client address the connection manager computes: with `use_remote_address: false`
    /// and no trusted hops (pilot's sidecar inbound defaults,
    /// `pilot/pkg/networking/core/listener_builder.go`), the last `x-forwarded-for` entry if it
    /// is an IP address, else the peer (Envoy's `Utility::getLastAddressFromXFF`).
    fn remote_ip(&self) -> IpAddr {
        if let Some(client) = self.client {
            return client;
        }
        self.headers
            .get_all(X_FORWARDED_FOR)
            .next_back()
            .and_then(crate::http1::value_str)
            .and_then(|v| v.rsplit(',').next())
            .and_then(|last| last.trim().parse::<IpAddr>().ok())
            .unwrap_or(self.peer.ip())
    }

    /// A header's value: `:method`, `:authority`/`host`, `:path`, or a field (several fields of
    /// one name joined with `,`).
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            ":method" => return Some(Cow::Borrowed(self.method)),
            // An HTTP/1.0 request without Host has no authority at all.
            ":authority" | "host" => {
                return (!self.authority.is_empty()).then_some(Cow::Borrowed(self.authority))
            }
            ":path" => return Some(Cow::Borrowed(self.path)),
            _ => {}
        }
        let mut values = self.headers.get_all(name);
        let first = values.next()?;
        let first = String::from_utf8_lossy(first);
        let mut rest = values.peekable();
        if rest.peek().is_none() {
            return Some(first);
        }
        let mut joined = first.into_owned();
        for v in rest {
            joined.push(',');
            joined.push_str(&String::from_utf8_lossy(v));
        }
        Some(Cow::Owned(joined))
    }
}

/// The result of the whole chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Denied by this DENY policy, or (`None`) by an ALLOW filter no policy of which matched.
    Denied(Option<Arc<str>>),
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed)
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for a denial:
    /// `rbac_access_denied_matched_policy[<policy>|none]`.
    pub fn details(&self) -> Option<String> {
        match self {
            Verdict::Allowed => None,
            Verdict::Denied(policy) => Some(format!(
                "rbac_access_denied_matched_policy[{}]",
                policy.as_deref().unwrap_or("none")
            )),
        }
    }
}

/// Things the chain noticed besides the verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// An AUDIT policy matched (Envoy sets `access_log_hint`).
    Audited(Arc<str>),
    /// Shadow (dry-run) rules would have allowed (`true`) or denied the request.
    Shadow { allowed: bool },
}

impl Authorization {
    /// Run the chain for `req`; `note` hears about audits and shadow results.
    pub fn evaluate(&self, req: &AuthzRequest<'_>, note: &mut impl FnMut(Note)) -> Verdict {
        #[cfg(feature = "mutants")]
        if crate::mutants::route().authz_allow_before_deny {
            let allow = (self.filters.iter())
                .filter_map(|f| f.rules.as_ref())
                .find(|r| r.action == Action::Allow);
            if allow.is_some_and(|r| r.first_match(req).is_some()) {
                return Verdict::Allowed;
            }
        }
        for filter in &self.filters {
            if let Some(shadow) = &filter.shadow {
                let allowed = match shadow.first_match(req) {
                    Some(_) => shadow.action != Action::Deny,
                    None => shadow.action != Action::Allow,
                };
                note(Note::Shadow { allowed });
            }
            let Some(rules) = &filter.rules else {
                continue;
            };
            let matched = rules.first_match(req);
            match (rules.action, matched) {
                (Action::Log, Some(p)) => note(Note::Audited(p.name.clone())),
                (Action::Log, None) | (Action::Deny, None) | (Action::Allow, Some(_)) => {}
                (Action::Deny, Some(p)) => return Verdict::Denied(Some(p.name.clone())),
                (Action::Allow, None) => return Verdict::Denied(None),
            }
        }
        Verdict::Allowed
    }
}

impl Rbac {
    /// The first policy that matches (Envoy's effective policy).
    pub fn first_match(&self, req: &AuthzRequest<'_>) -> Option<&Policy> {
        self.policies.iter().find(|p| p.matches(req))
    }
}

impl Policy {
    pub fn matches(&self, req: &AuthzRequest<'_>) -> bool {
        self.permissions.iter().any(|p| p.matches(req))
            && self.principals.iter().any(|p| p.matches(req))
    }
}

impl Permission {
    pub fn matches(&self, req: &AuthzRequest<'_>) -> bool {
        match self {
            Permission::Any => true,
            Permission::And(all) => all.iter().all(|p| p.matches(req)),
            Permission::Or(any) => any.iter().any(|p| p.matches(req)),
            Permission::Not(p) => !p.matches(req),
            Permission::Header(h) => h.matches(req.header(&h.name).as_deref()),
            Permission::Path(m) => m.matches(req.path_only()),
            Permission::PathTemplate(t) => t.matches(req.path_only()),
            Permission::DestinationPort(port) => req.destination.port() == *port,
            Permission::DestinationIp(cidr) => cidr.contains(req.destination.ip()),
            Permission::RequestedServerName(m) => m.matches(req.sni.unwrap_or("")),
            Permission::Metadata(m) => m.matches(req.jwt),
        }
    }
}

impl Principal {
    pub fn matches(&self, req: &AuthzRequest<'_>) -> bool {
        match self {
            Principal::Any => true,
            Principal::And(all) => all.iter().all(|p| p.matches(req)),
            Principal::Or(any) => any.iter().any(|p| p.matches(req)),
            Principal::Not(p) => !p.matches(req),
            // Any of the names (AuthenticatedMatcher::matches): a gateway's client certificate
            // from a CA outside the mesh may carry only a DNS name, which `principals: ["*"]`
            // (pilot's `.+`) matches.
            Principal::Authenticated(m) => {
                #[cfg(feature = "mutants")]
                if crate::mutants::route().authz_principal_uri_only {
                    let uri = |n: &&String| n.contains("://");
                    return req.peer_names.iter().filter(uri).any(|n| m.matches(n));
                }
                req.peer_names.iter().any(|n| m.matches(n))
            }
            Principal::DirectRemoteIp(cidr) => cidr.contains(req.peer.ip()),
            Principal::RemoteIp(cidr) => cidr.contains(req.remote_ip()),
            Principal::Header(h) => h.matches(req.header(&h.name).as_deref()),
            Principal::Metadata(m) => m.matches(req.jwt),
        }
    }
}
