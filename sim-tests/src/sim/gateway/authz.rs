//! AuthorizationPolicies at the gateway: drawn for a share of the gateway worlds, written as
//! Istio YAML (the mesh world's [`PolicySpec`] and its writer), translated by the control
//! plane as `trellis proxy --gateway` does (`secure_listeners`), and decided here by a
//! reference written from pilot's authz builder (pilot/pkg/security/authz/builder/builder.go,
//! model/model.go, model/generator.go, matcher/string.go, matcher/header.go) and Envoy's RBAC
//! matchers (source/extensions/filters/common/rbac/matchers.cc), not from Trellis's
//! translation or evaluator:
//!
//! - **Which policies.** Those in `istio-system` (the gateway's namespace and the root
//!   namespace) with no selector or one the gateway's labels satisfy (`app:
//!   istio-ingressgateway` here). DENY before ALLOW; with ALLOW policies, one must match;
//!   AUDIT never decides; a policy without rules matches nothing.
//! - **HTTP chains** (port 80's, each terminating HTTPS server's) run the HTTP RBAC filter
//!   before the router: a denied request is answered 403 whatever its route would have said
//!   (a 404 or an `httpsRedirect`'s 301 included), and reaches no backend.
//! - **L4 chains** (a `TLS` server terminated for TCP, a `PASSTHROUGH` server's `tls` rule) run
//!   the network RBAC filter (`BuildTCP`). A rule with an HTTP-only field (`methods`, `paths`,
//!   `hosts`, their `not` forms) is skipped in an ALLOW policy and loses those fields in a
//!   DENY or AUDIT one (`rule.checkError`: "a wider deny"). A denied connection is closed at
//!   its first bytes: nothing reaches the backend.
//! - **AUTO_PASSTHROUGH chains** have no RBAC at all (`builtAutoPassthroughFilterChains`: "We
//!   do not want any authz here").
//! - **Principals.** Envoy's `authenticated` matcher tries each URI SAN of the verified
//!   client certificate, then each DNS SAN, then its subject (RFC 2253); without TLS or
//!   without a client certificate nothing matches. pilot writes a `principals` value with
//!   the `spiffe://` prefix (`StringMatcherWithPrefix`: `*` is the regex `.+`, any name at all;
//!   `*x` the regex `spiffe://.*x`; `x*` the prefix `spiffe://x`; else exact `spiffe://x`) and
//!   a `namespaces` value as the regex `.*/ns/<ns>/.*`. So `principals: ["*"]` holds for a
//!   certificate naming only a DNS name, where every other form needs a SPIFFE id.
//! - **Addresses.** `ipBlocks` match the connection's peer (`direct_remote_ip`),
//!   `remoteIpBlocks` the client address the gateway computed (`remote_ip`: with no trusted
//!   hops the peer again, whatever `x-forwarded-for` says; with some, the entry
//!   [`super::edge::client_address`] finds); both on L4 chains too, where `remote_ip` is the
//!   peer.
//! - **Request principals.** The verified JWT's `iss` and `sub` ([`super::jwt`]), HTTP-only:
//!   dropped from a DENY or AUDIT rule on an L4 chain, which skips an ALLOW rule naming them.
//! - **Operations.** `methods` exact; `paths` on the path without its query (`*` any
//!   non-empty, `*x` suffix, `x*` prefix, else exact); `hosts` on `:authority` as sent, its
//!   port included, ignoring case (`HostMatcher`; `*`: present).

use std::net::IpAddr;

use super::jwt::request_principal_matches;
use super::spec::HTTPS_PORT;
use crate::sim::mtls::policy::{AuthzAction, OperationSpec, PolicySpec, RuleSpec, SourceSpec};

/// The gateway proxy's `app` label (Istio's ingress gateway chart sets it beside
/// `istio: ingressgateway`); policies select it by this label.
pub const GATEWAY_APP: &str = "istio-ingressgateway";

/// The simulated clients' address (every client connects from it).
pub const CLIENT_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 168, 7, 1);

/// Whether `addr` is in `block` (an address, or `address/length`), of the same family.
fn in_block(block: &str, addr: IpAddr) -> bool {
    let (base, len) = match block.split_once('/') {
        Some((b, l)) => (b, l.parse::<u32>().ok()),
        None => (block, None),
    };
    match (base.parse::<IpAddr>(), addr) {
        (Ok(IpAddr::V4(b)), IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32 - len.unwrap_or(32).min(32))
                .unwrap_or(0);
            u32::from(b) & mask == u32::from(a) & mask
        }
        (Ok(IpAddr::V6(b)), IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128 - len.unwrap_or(128).min(128))
                .unwrap_or(0);
            u128::from(b) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Who a request or connection comes from, as the RBAC filters see it.
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    /// The verified client certificate's names ([`PeerNames`]).
    pub peer_names: &'a [String],
    /// The client's address as the gateway computed it (`remote_ip`): on L4 chains the peer.
    /// `ipBlocks` see the peer, [`CLIENT_IP`], always.
    pub remote_ip: IpAddr,
    /// The verified JWT's `iss` and `sub`, if any.
    pub claims: Option<(&'a str, &'a str)>,
}

/// The names Envoy's `authenticated` matcher tries for a connection, in its order: the
/// verified client certificate's URI SANs, DNS SANs, then its subject. Empty: no TLS, or no
/// client certificate.
pub type PeerNames = Vec<String>;

/// What the HTTP RBAC filter sees of a request.
#[derive(Clone, Copy, Debug)]
pub struct HttpAsked<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authority: &'a str,
}

/// `principals` value `value` against one name (`StringMatcherWithPrefix(value, "spiffe://")`).
fn principal_matches(value: &str, name: &str) -> bool {
    if value == "*" {
        return !name.is_empty();
    }
    let Some(id) = name.strip_prefix("spiffe://") else {
        return false;
    };
    if let Some(suffix) = value.strip_prefix('*') {
        return id.ends_with(suffix);
    }
    if let Some(prefix) = value.strip_suffix('*') {
        return id.starts_with(prefix);
    }
    id == value
}

/// `namespaces` value `ns` against one name (the regex `.*/ns/<ns>/.*`).
fn namespace_matches(ns: &str, name: &str) -> bool {
    name.contains(&format!("/ns/{ns}/"))
}

/// Istio's string forms for paths (case-sensitive) and hosts (`ignore_case`).
fn string_matches(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let (pattern, value) = if ignore_case {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_string(), value.to_string())
    };
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

/// A field holds when it lists nothing or one of its values matches.
fn any_holds(values: &[String], holds: impl Fn(&str) -> bool) -> bool {
    values.is_empty() || values.iter().any(|v| holds(v))
}

/// A `not` field holds when none of its values matches.
fn none_holds(values: &[String], holds: impl Fn(&str) -> bool) -> bool {
    !values.iter().any(|v| holds(v))
}

/// A source; on an L4 chain (`http` false) without its HTTP-only fields (`requestPrincipals`
/// and its `not` form), which a DENY or AUDIT rule drops (an ALLOW rule naming them never
/// gets here).
fn source_holds(s: &SourceSpec, who: &Who<'_>, http: bool) -> bool {
    let principal = |v: &str| who.peer_names.iter().any(|n| principal_matches(v, n));
    let namespace = |v: &str| who.peer_names.iter().any(|n| namespace_matches(v, n));
    let request = |v: &str| {
        who.claims
            .is_some_and(|(iss, sub)| request_principal_matches(v, iss, sub))
    };
    let ip = |v: &str| in_block(v, IpAddr::from(CLIENT_IP));
    let remote = |v: &str| in_block(v, who.remote_ip);
    any_holds(&s.principals, principal)
        && none_holds(&s.not_principals, principal)
        && any_holds(&s.ip_blocks, ip)
        && none_holds(&s.not_ip_blocks, ip)
        && any_holds(&s.remote_ip_blocks, remote)
        && none_holds(&s.not_remote_ip_blocks, remote)
        && any_holds(&s.namespaces, namespace)
        && none_holds(&s.not_namespaces, namespace)
        && (!http
            || any_holds(&s.request_principals, request)
                && none_holds(&s.not_request_principals, request))
}

/// An operation on an HTTP chain; `None` (an L4 chain): its HTTP-only fields are gone, so
/// only what is left decides (nothing is: it holds).
fn operation_holds(o: &OperationSpec, http: Option<&HttpAsked<'_>>) -> bool {
    let Some(q) = http else {
        return true;
    };
    let method = |v: &str| v == q.method;
    let path = |v: &str| string_matches(v, q.path, false);
    let host = |v: &str| string_matches(v, q.authority, true);
    any_holds(&o.methods, method)
        && none_holds(&o.not_methods, method)
        && any_holds(&o.paths, path)
        && none_holds(&o.not_paths, path)
        && any_holds(&o.hosts, host)
        && none_holds(&o.not_hosts, host)
}

/// Whether a rule names a field the network RBAC filter cannot see.
fn has_http_only_field(rule: &RuleSpec) -> bool {
    let op = |o: &OperationSpec| {
        !(o.methods.is_empty()
            && o.not_methods.is_empty()
            && o.paths.is_empty()
            && o.not_paths.is_empty()
            && o.hosts.is_empty()
            && o.not_hosts.is_empty())
    };
    let source =
        |s: &SourceSpec| !(s.request_principals.is_empty() && s.not_request_principals.is_empty());
    rule.to.iter().any(op) || rule.from.iter().any(source)
}

fn rule_holds(
    rule: &RuleSpec,
    action: AuthzAction,
    who: &Who<'_>,
    http: Option<&HttpAsked<'_>>,
) -> bool {
    if http.is_none() && action == AuthzAction::Allow && has_http_only_field(rule) {
        return false;
    }
    (rule.from.is_empty()
        || rule
            .from
            .iter()
            .any(|s| source_holds(s, who, http.is_some())))
        && (rule.to.is_empty() || rule.to.iter().any(|o| operation_holds(o, http)))
}

fn applies(p: &PolicySpec) -> bool {
    p.namespace == "istio-system" && p.selector.as_deref().is_none_or(|app| app == GATEWAY_APP)
}

/// Whether the gateway lets it through: a request on an HTTP chain (`http`), or a
/// connection on an L4 chain (`None`), from `who`.
pub fn allows(policies: &[PolicySpec], who: &Who<'_>, http: Option<&HttpAsked<'_>>) -> bool {
    let matches =
        |p: &PolicySpec| (p.rules.iter().flatten()).any(|r| rule_holds(r, p.action, who, http));
    let applicable = || policies.iter().filter(|p| applies(p));
    if applicable().any(|p| p.action == AuthzAction::Deny && matches(p)) {
        return false;
    }
    let mut allow = applicable()
        .filter(|p| p.action == AuthzAction::Allow)
        .peekable();
    allow.peek().is_none() || allow.any(matches)
}

/// 0–3 policies in `istio-system`: most select the gateway, some every workload of the mesh
/// (no selector, root namespace), some another workload; ALLOW, DENY or AUDIT; rules on the
/// client's certificate names and on methods, paths and hosts.
pub fn draw(r: &mut fastrand::Rng) -> Vec<PolicySpec> {
    (0..r.usize(1..=3))
        .map(|i| PolicySpec {
            name: format!("gw-authz-{i}"),
            namespace: "istio-system".into(),
            selector: match r.u8(0..7) {
                0 => None,
                1 => Some("productpage".into()),
                _ => Some(GATEWAY_APP.into()),
            },
            action: match r.u8(0..7) {
                0..=2 => AuthzAction::Allow,
                3..=5 => AuthzAction::Deny,
                _ => AuthzAction::Audit,
            },
            rules: match r.u8(0..16) {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some((0..r.usize(1..=2)).map(|_| draw_rule(r)).collect()),
            },
        })
        .collect()
}

fn draw_rule(r: &mut fastrand::Rng) -> RuleSpec {
    let list = |v: &str| vec![v.to_string()];
    // Two rules in three have a source; `*` principals (what a DNS-named certificate can
    // satisfy) are the likeliest.
    let from = (0..usize::from(r.u8(0..3) != 0))
        .map(|_| {
            let mut s = SourceSpec::default();
            match r.u8(0..12) {
                0 | 1 => s.principals = list("*"),
                2 => s.not_principals = list("*"),
                3 => s.principals = list("cluster.local/ns/default/sa/client"),
                4 => s.principals = list("cluster.local/ns/other/*"),
                5 => s.principals = list("*.gw.test"),
                6 => s.namespaces = list("default"),
                7 => s.not_namespaces = list("default"),
                8 => s.ip_blocks = list("192.168.7.0/24"),
                9 => s.ip_blocks = list("10.0.0.0/8"),
                10 => s.remote_ip_blocks = list("192.168.7.1"),
                _ => s.not_remote_ip_blocks = list("192.168.0.0/16"),
            }
            s
        })
        .collect();
    let to = (0..r.usize(0..=2))
        .map(|_| {
            let mut o = OperationSpec::default();
            match r.u8(0..12) {
                0 => o.paths = list("/api*"),
                1 => o.paths = list("/static/*"),
                2 => o.paths = list("*.css"),
                3 => o.not_paths = list("/api*"),
                4 => o.methods = list("GET"),
                5 => o.methods = list("POST"),
                6 => o.hosts = list("a.example.com"),
                7 => o.hosts = list("*.example.com"),
                8 => o.hosts = list(&format!("b.example.com:{HTTPS_PORT}")),
                9 => o.not_hosts = list("*.other.org"),
                10 => o.hosts = list("X.Y.EXAMPLE.COM"),
                _ => o.paths = list("/"),
            }
            o
        })
        .collect();
    RuleSpec { from, to }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by(names: &[String]) -> Who<'_> {
        Who {
            peer_names: names,
            remote_ip: IpAddr::from(CLIENT_IP),
            claims: None,
        }
    }

    fn policy(action: AuthzAction, rule: RuleSpec) -> PolicySpec {
        PolicySpec {
            name: "p".into(),
            namespace: "istio-system".into(),
            selector: Some(GATEWAY_APP.into()),
            action,
            rules: Some(vec![rule]),
        }
    }

    fn from(s: SourceSpec) -> RuleSpec {
        RuleSpec {
            from: vec![s],
            to: Vec::new(),
        }
    }

    fn to(o: OperationSpec) -> RuleSpec {
        RuleSpec {
            from: Vec::new(),
            to: vec![o],
        }
    }

    const GET: HttpAsked<'static> = HttpAsked {
        method: "GET",
        path: "/api/v2/items",
        authority: "A.example.com:443",
    };

    /// Envoy's `authenticated` matcher tries URI SANs, DNS SANs, then the subject; pilot's
    /// `*` is `.+` while every other principal form carries `spiffe://`.
    #[test]
    fn principals_match_dns_names_only_through_star() {
        let dns: PeerNames = vec!["client.gw.test".into(), "CN=client.gw.test".into()];
        let mesh: PeerNames = vec!["spiffe://cluster.local/ns/default/sa/client".into()];
        let star = SourceSpec {
            principals: vec!["*".into()],
            ..SourceSpec::default()
        };
        let allow_star = [policy(AuthzAction::Allow, from(star))];
        assert!(allows(&allow_star, &by(&dns), Some(&GET)));
        assert!(allows(&allow_star, &by(&mesh), Some(&GET)));
        assert!(!allows(&allow_star, &by(&[]), Some(&GET)));
        let suffix = SourceSpec {
            principals: vec!["*.gw.test".into()],
            ..SourceSpec::default()
        };
        assert!(!allows(
            &[policy(AuthzAction::Allow, from(suffix))],
            &by(&dns),
            None
        ));
        let ns = SourceSpec {
            namespaces: vec!["default".into()],
            ..SourceSpec::default()
        };
        let allow_ns = [policy(AuthzAction::Allow, from(ns))];
        assert!(allows(&allow_ns, &by(&mesh), None));
        assert!(!allows(&allow_ns, &by(&dns), None));
    }

    /// `ipBlocks` and `remoteIpBlocks` see the client's own address at the gateway, on HTTP
    /// and L4 chains alike.
    #[test]
    fn ip_blocks_are_the_clients_address() {
        let source = |s: SourceSpec| [policy(AuthzAction::Allow, from(s))];
        let inside = source(SourceSpec {
            ip_blocks: vec!["192.168.7.0/24".into()],
            ..SourceSpec::default()
        });
        assert!(allows(&inside, &by(&[]), Some(&GET)) && allows(&inside, &by(&[]), None));
        let outside = source(SourceSpec {
            remote_ip_blocks: vec!["10.0.0.0/8".into()],
            ..SourceSpec::default()
        });
        assert!(!allows(&outside, &by(&[]), Some(&GET)) && !allows(&outside, &by(&[]), None));
        let not_it = source(SourceSpec {
            not_remote_ip_blocks: vec!["192.168.7.1".into()],
            ..SourceSpec::default()
        });
        assert!(!allows(&not_it, &by(&[]), None));
    }

    /// `hosts` ignore case and see the port; on an L4 chain an ALLOW rule with an HTTP field
    /// is skipped and a DENY rule loses it (pilot's `rule.checkError`).
    #[test]
    fn hosts_keep_the_port_and_http_fields_fall_away_on_l4_chains() {
        let host = |h: &str| OperationSpec {
            hosts: vec![h.into()],
            ..OperationSpec::default()
        };
        let allow = |h: &str| [policy(AuthzAction::Allow, to(host(h)))];
        assert!(allows(&allow("a.example.com:443"), &by(&[]), Some(&GET)));
        assert!(!allows(&allow("a.example.com"), &by(&[]), Some(&GET)));
        assert!(allows(&allow("*.EXAMPLE.com:443"), &by(&[]), Some(&GET)));
        assert!(!allows(&allow("a.example.com:443"), &by(&[]), None));
        let deny = [policy(AuthzAction::Deny, to(host("nobody.test")))];
        assert!(allows(&deny, &by(&[]), Some(&GET)));
        assert!(!allows(&deny, &by(&[]), None));
    }

    /// With trusted hops the gateway's client address comes from `x-forwarded-for`:
    /// `remoteIpBlocks` follow it, `ipBlocks` keep the peer; `requestPrincipals` need claims.
    #[test]
    fn remote_ip_blocks_follow_the_computed_address_and_ip_blocks_the_peer() {
        let source = |s: SourceSpec| [policy(AuthzAction::Allow, from(s))];
        let forwarded = Who {
            peer_names: &[],
            remote_ip: "2001:db8::5".parse().expect("address"),
            claims: Some(("https://issuer.sim", "alice")),
        };
        let remote = source(SourceSpec {
            remote_ip_blocks: vec!["2001:db8::/32".into()],
            ..SourceSpec::default()
        });
        assert!(allows(&remote, &forwarded, Some(&GET)));
        assert!(!allows(&remote, &by(&[]), Some(&GET)));
        let peer = source(SourceSpec {
            ip_blocks: vec!["192.168.7.0/24".into()],
            ..SourceSpec::default()
        });
        assert!(allows(&peer, &forwarded, Some(&GET)));
        let jwt = source(SourceSpec {
            request_principals: vec!["*/alice".into()],
            ..SourceSpec::default()
        });
        assert!(allows(&jwt, &forwarded, Some(&GET)));
        assert!(!allows(&jwt, &by(&[]), Some(&GET)));
    }
}
