//! Which VirtualServices, hosts and rules apply at a gateway: pilot's binding rules.
//!
//! A gateway proxy serves only what is bound to the Gateways that select it, so these rules
//! decide what a user sees at the ingress. Each function follows one piece of istiod and names
//! it; `super::tests` holds a test per rule.

use std::collections::BTreeMap;

use crate::istio::virtual_service::{HttpMatchRequest, HttpRoute};
use crate::istio::VirtualServiceSpec;

/// The reserved gateway name of the sidecars (`constants.IstioMeshGateway`).
pub const MESH: &str = "mesh";

/// A gateway reference as written in a resource of `namespace`, resolved to `ns/name`
/// (resolveGatewayName in pilot/pkg/model/config.go): a short name lives in the resource's
/// namespace, `./name` too, the legacy `name.ns[.svc.cluster.local]` names `ns/name`, and
/// `mesh` stays `mesh`.
pub fn resolve_gateway_name(name: &str, namespace: &str) -> String {
    if name == MESH {
        return MESH.to_string();
    }
    match name.split_once('/') {
        Some((".", rest)) => format!("{namespace}/{rest}"),
        Some(_) => name.to_string(),
        None => match name.split_once('.') {
            None => format!("{namespace}/{name}"),
            Some((short, rest)) => {
                let ns = rest.split_once('.').map_or(rest, |(ns, _)| ns);
                format!("{ns}/{short}")
            }
        },
    }
}

/// The gateways a VirtualService binds to, resolved: `spec.gateways`, or `mesh` alone when it
/// is empty (getGatewayNames in pilot/pkg/model/push_context.go). So a VirtualService without
/// `gateways` is for sidecars only, and one that lists gateways is not for sidecars unless it
/// lists `mesh` too.
pub fn bound_gateways(spec: &VirtualServiceSpec, namespace: &str) -> Vec<String> {
    if spec.gateways.is_empty() {
        return vec![MESH.to_string()];
    }
    spec.gateways
        .iter()
        .map(|g| resolve_gateway_name(g, namespace))
        .collect()
}

/// A Gateway server's `hosts` as seen by a VirtualService of `vs_namespace`
/// (sanitizeServerHostNamespace in pilot/pkg/model/gateway.go, then host.NamesForNamespace in
/// pkg/config/host/names.go): `./host` means the Gateway's own namespace, `*/host` any
/// namespace; a host scoped to another namespace is not visible; the scope is then dropped.
pub fn server_hosts_for(
    hosts: &[String],
    gateway_namespace: &str,
    vs_namespace: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for h in hosts {
        let visible = match h.split_once('/') {
            None => Some(h.as_str()),
            Some((".", name)) => (gateway_namespace == vs_namespace).then_some(name),
            Some(("*", name)) => Some(name),
            Some((ns, name)) => (ns == vs_namespace).then_some(name),
        };
        if let Some(name) = visible {
            if !out.iter().any(|o: &String| o == name) {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// Whether host `a` is within host `b`, `*` wildcards on either side (Name.SubsetOf in
/// pkg/config/host/name.go): `*.b.com` is within `*.com`; a name within a wildcard when it
/// ends with the wildcard's suffix; otherwise only equal names.
pub fn subset_of(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(a_suffix), Some(b_suffix)) => a.len() >= b.len() && a_suffix.ends_with(b_suffix),
        (Some(_), None) => false,
        (None, Some(b_suffix)) => a.ends_with(b_suffix),
        (None, None) => a == b,
    }
}

/// The hosts a virtual host is built for on a gateway server: of each pair (server host,
/// VirtualService host), the narrower one when one is within the other (Names.Intersection in
/// pkg/config/host/names.go, called from buildGatewayHTTPRouteConfig in
/// pilot/pkg/networking/core/gateway.go). Lowercased, in first-seen order, without repeats.
pub fn intersect(server_hosts: &[String], vs_hosts: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in server_hosts {
        for v in vs_hosts {
            let narrower = if subset_of(s, v) {
                Some(s)
            } else if subset_of(v, s) {
                Some(v)
            } else {
                None
            };
            if let Some(h) = narrower.map(|h| h.to_ascii_lowercase()) {
                if !out.contains(&h) {
                    out.push(h);
                }
            }
        }
    }
    out
}

/// Where a rule is being built: one Gateway's server port, on a gateway proxy with these labels
/// in this namespace.
pub struct RuleSite<'a> {
    /// The Gateway, `ns/name`.
    pub gateway: &'a str,
    /// The server's port number (as written, before any local port offset).
    pub port: u32,
    pub labels: &'a BTreeMap<String, String>,
    pub namespace: &'a str,
}

/// A rule as it applies at `site`, or `None` when it does not apply at all. Each `match` entry
/// is kept only when its `port` is unset or the server's, and either its `gateways` name this
/// gateway or, without `gateways`, its `sourceLabels` are among the proxy's labels and its
/// `sourceNamespace` is unset or the proxy's (TranslateRoute and sourceMatchHTTP in
/// pilot/pkg/networking/core/route/route.go). Those conditions are decided here, once, so the
/// kept entries lose them. A rule without matches applies everywhere.
pub fn rule_at_gateway(
    rule: &HttpRoute,
    vs_namespace: &str,
    site: &RuleSite<'_>,
) -> Option<HttpRoute> {
    let applies = |m: &HttpMatchRequest| {
        if m.port.is_some_and(|p| p != 0 && p != site.port) {
            return false;
        }
        if !m.gateways.is_empty() {
            return m
                .gateways
                .iter()
                .any(|g| resolve_gateway_name(g, vs_namespace) == site.gateway);
        }
        m.source_labels
            .iter()
            .all(|(k, v)| site.labels.get(k) == Some(v))
            && m.source_namespace
                .as_deref()
                .is_none_or(|ns| ns == site.namespace)
    };
    crate::translate::client::keep_matches(rule, applies, true)
}
