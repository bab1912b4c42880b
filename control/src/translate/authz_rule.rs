//! One AuthorizationPolicy rule → one RBAC policy's permissions and principals: pilot's
//! `model.New` (which field goes to a permission, which to a principal, in which order) and
//! `Generate` (AND of each field's OR of values and NOT(OR) of its `not` values), with each value
//! built by its generator (`pilot/pkg/security/authz/model/generator.go`) and errors handled as
//! `checkError` does (see the parent module).

use trellis_engine::authz::{
    quote_meta, Action, Cidr, FullRegex, HeaderMatcher, MetadataMatcher, PathTemplate, Permission,
    Principal, StringMatcher, ValueMatcher,
};

use crate::istio::authorization_policy::Rule;

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

impl PermKey<'_> {
    /// The generators that refuse to build for a TCP filter chain (`generator.go`: host,
    /// method and path return "is HTTP only" when `forTCP`).
    fn http_only(self) -> bool {
        matches!(self, PermKey::Host | PermKey::Method | PermKey::Path)
    }
}

impl PrinKey<'_> {
    /// `requestHeaderGenerator`, `requestPrincipalGenerator`, the audiences, presenter and
    /// claims generators: HTTP only.
    fn http_only(self) -> bool {
        matches!(
            self,
            PrinKey::Header(_) | PrinKey::RequestPrincipal | PrinKey::Jwt(_)
        )
    }
}

/// pilot's `Generate(forTCP = true)` with `checkError`: an HTTP-only key fails an ALLOW rule
/// (so it never matches a TCP connection), and in DENY or AUDIT is dropped (a wider rule).
fn for_tcp<'a, K: Copy>(
    items: Vec<Item<'a, K>>,
    (tcp, http_only): (bool, fn(K) -> bool),
    action: Action,
) -> Result<Vec<Item<'a, K>>, String> {
    if !tcp {
        return Ok(items);
    }
    if action == Action::Allow && items.iter().any(|&(k, _, _)| http_only(k)) {
        return Err("an HTTP-only attribute on a TCP filter chain".into());
    }
    Ok(items
        .into_iter()
        .filter(|&(k, _, _)| !http_only(k))
        .collect())
}

/// pilot's `model.New` followed by `Generate` for one rule.
pub(super) fn build_rule(
    policy_ns: &str,
    rule: &Rule,
    (action, tcp): (Action, bool),
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
        }
        items.extend(base_prin.iter().copied());
        principals.push(and_principals(
            &for_tcp(items, (tcp, PrinKey::http_only), action)?,
            policy_ns,
            action,
        )?);
    }
    if rule.from.is_empty() {
        principals.push(and_principals(
            &for_tcp(base_prin.clone(), (tcp, PrinKey::http_only), action)?,
            policy_ns,
            action,
        )?);
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
        permissions.push(and_permissions(
            &for_tcp(items, (tcp, PermKey::http_only), action)?,
            action,
        )?);
    }
    if rule.to.is_empty() {
        permissions.push(and_permissions(
            &for_tcp(base_perm.clone(), (tcp, PermKey::http_only), action)?,
            action,
        )?);
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
                if let Some(p) = check(envoy_filter(k, list), action)? {
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
                PrinKey::Jwt(k) => check(jwt_claim(k, list), action)?,
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
        PermKey::EnvoyFilter(k) => envoy_filter(k, &[value.to_string()])?,
    })
}

/// `convertToPort`: decimal digits (Go's `ParseUint` takes no sign), at most 65535.
pub(super) fn port(value: &str) -> Result<u16, String> {
    value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("invalid port {value}"))
}

/// `envoyFilterGenerator.extendedPermission`: `experimental.envoy.filters.<filter>[<key>]`, each
/// value a string match (or, written `[v]`, a match on one element of a list), ORed. Trellis
/// has no other filter's metadata than the JWT filter's, so these never match in practice.
fn envoy_filter(key: &str, values: &[String]) -> Result<Permission, String> {
    let rest = key.trim_start_matches("experimental.");
    let rest = rest.strip_suffix(']').unwrap_or(rest);
    let (filter, name) = rest
        .split_once('[')
        .ok_or_else(|| format!("invalid key: {key}"))?;
    let matchers = values
        .iter()
        .map(
            |v| match v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                Some(inner) => ValueMatcher::ListOneOf(Box::new(ValueMatcher::String(
                    StringMatcher::istio(inner),
                ))),
                None => ValueMatcher::String(StringMatcher::istio(v)),
            },
        )
        .collect();
    Ok(Permission::Metadata(MetadataMatcher {
        filter: filter.into(),
        path: vec![name.into()],
        value: or_matcher(matchers),
    }))
}

/// pilot's `matcher.OrMatcher`: one matcher stays itself.
fn or_matcher(mut matchers: Vec<ValueMatcher>) -> ValueMatcher {
    if matchers.len() == 1 {
        matchers.remove(0)
    } else {
        ValueMatcher::Or(matchers)
    }
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
        PrinKey::Jwt(k) => jwt_claim(k, &[value.to_string()]),
    }
}

/// `requestPrincipalGenerator.extendedPrincipal`: each value `<iss>/<sub>` (split at the LAST
/// `/`, an issuer may be a URL) becomes the JWT metadata's `iss` AND `sub` matchers, with
/// pilot's wildcards (`*`, `*suffix`, `prefix*` on either side); one value gives that pair,
/// several their OR.
fn request_principals(values: &[String]) -> Principal {
    let any = || StringMatcher::istio("*");
    let pair = |value: &String| {
        let (iss, sub, found) = match value.rfind('/') {
            Some(i) => (&value[..i], &value[i + 1..], true),
            None => (value.as_str(), "", false),
        };
        let (match_iss, match_sub) = if value == "*" {
            (any(), any())
        } else if let Some(rest) = value.strip_prefix('*') {
            if found {
                let m_iss = if iss == "*" {
                    any()
                } else {
                    StringMatcher::Suffix(iss.strip_prefix('*').unwrap_or(iss).into())
                };
                (m_iss, StringMatcher::Exact(sub.into()))
            } else {
                (any(), StringMatcher::Suffix(rest.into()))
            }
        } else if let Some(rest) = value.strip_suffix('*') {
            if found {
                let m_sub = if sub == "*" {
                    any()
                } else {
                    StringMatcher::Prefix(sub.strip_suffix('*').unwrap_or(sub).into())
                };
                (StringMatcher::Exact(iss.into()), m_sub)
            } else {
                (StringMatcher::Prefix(rest.into()), any())
            }
        } else {
            (
                StringMatcher::Exact(iss.into()),
                StringMatcher::Exact(sub.into()),
            )
        };
        Principal::And(vec![
            Principal::Metadata(MetadataMatcher::jwt_claim(
                &["iss"],
                ValueMatcher::String(match_iss),
            )),
            Principal::Metadata(MetadataMatcher::jwt_claim(
                &["sub"],
                ValueMatcher::String(match_sub),
            )),
        ])
    };
    match values {
        [one] => pair(one),
        many => Principal::Or(many.iter().map(pair).collect()),
    }
}

/// `request.auth.audiences` (claim `aud`), `.presenter` (`azp`), `.claims[a][b]` (nested
/// claim names in brackets, `extractNameInNestedBrackets`): pilot's
/// `MetadataListValueMatcherForJWTClaims` with the values ORed (`StringOrMatcher`), matching
/// a claim that is one of the values or a list holding one.
fn jwt_claim(key: &str, values: &[String]) -> Result<Principal, String> {
    let claims = match key {
        "request.auth.audiences" => vec!["aud".to_string()],
        "request.auth.presenter" => vec!["azp".to_string()],
        _ => match key.strip_prefix("request.auth.claims") {
            Some(names) => nested_bracket_names(names)?,
            None => return Err(format!("unknown attribute {key}")),
        },
    };
    let value = or_matcher(
        values
            .iter()
            .map(|v| ValueMatcher::String(StringMatcher::istio(v)))
            .collect(),
    );
    Ok(Principal::Metadata(MetadataMatcher::jwt_claim(
        &claims,
        ValueMatcher::Or(vec![
            ValueMatcher::ListOneOf(Box::new(value.clone())),
            value,
        ]),
    )))
}

/// pilot's `extractNameInNestedBrackets`: `[a][b]` → `a`, `b`; text that is not a run of
/// bracketed names falls back to one name in outer brackets (`[a.b]` → `a.b`).
fn nested_bracket_names(text: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[').and_then(|r| {
            let end = r.find(['[', ']'])?;
            (r.as_bytes()[end] == b']').then(|| (&r[..end], &r[end + 1..]))
        });
        match inner {
            Some((name, after)) => {
                names.push(name.to_string());
                rest = after;
            }
            None => {
                let whole = text
                    .strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .ok_or_else(|| format!("expecting format [<NAME>], but found {text}"))?;
                return Ok(vec![whole.to_string()]);
            }
        }
    }
    Ok(names)
}
