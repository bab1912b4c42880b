//! One VirtualService `http[]` rule → the engine's [`Route`].
//!
//! Every field of the rule is mapped or reported: actions (route / redirect / directResponse),
//! rewrite, header operations at rule and destination level, timeout, retries (with Istio's
//! defaults when absent) and fault injection. A rule that Istio would reject is left out with an
//! error diagnostic, so the rules after it still apply.

use std::time::Duration;

use trellis_engine::config::{
    HeaderOps, Redirect, RetryOn, RetryPolicy, Rewrite, Route, RouteAction, WeightedCluster,
};

use super::catalog::MissingCluster;
use super::fault::fault;
use super::matches::{translate_match, MatchOutcome};
use crate::diag::Diagnostic;
use crate::istio::common::{HeaderOperations, Headers};
use crate::istio::virtual_service::{Destination, HttpRetry, HttpRoute, HttpRouteDestination};

/// Resolves a destination to the name of its cluster.
pub trait DestinationResolver {
    /// The cluster for `dest` as written in a resource of namespace `namespace`, or the name
    /// of the one that does not exist, after pushing a diagnostic (IST0101 for an unknown
    /// host, port or subset).
    fn cluster_for(
        &self,
        dest: &Destination,
        namespace: &str,
        at: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Result<String, MissingCluster>;
}

/// Translate rule `index` of VirtualService `vs_name` in `namespace`. `None` when the rule is
/// left out (the diagnostics say why).
pub fn translate_rule(
    vs_name: &str,
    namespace: &str,
    index: usize,
    rule: &HttpRoute,
    resolver: &dyn DestinationResolver,
    diags: &mut Vec<Diagnostic>,
) -> Option<Route> {
    let at = format!("spec.http[{index}]");
    let mut matches = Vec::new();
    let mut invalid = false;
    for (i, m) in rule.matches.iter().enumerate() {
        match translate_match(m, &format!("{at}.match[{i}]"), diags) {
            MatchOutcome::Use(r) => matches.push(*r),
            MatchOutcome::GatewayOnly => {}
            MatchOutcome::Invalid => invalid = true,
        }
    }
    if invalid {
        diags.push(Diagnostic::error("rule left out: a match condition is invalid").field(at));
        return None;
    }
    if !rule.matches.is_empty() && matches.is_empty() {
        diags.push(
            Diagnostic::info("rule applies to gateways only; not in the sidecar route table")
                .field(at),
        );
        return None;
    }
    let mut action = action(rule, namespace, &at, resolver, diags)?;
    let mirrors = super::mirrors::translate_mirrors(rule, namespace, &at, resolver, diags);
    let mut edits = header_edits(&rule.headers);
    let mut rewrite = rule.rewrite.as_ref().map(|r| Rewrite {
        uri: r.uri.clone(),
        uri_regex: r
            .uri_regex_rewrite
            .as_ref()
            .map(|x| (x.matches.clone(), x.rewrite.clone())),
        authority: r.authority.clone().filter(|a| !a.is_empty()),
    });
    if let RouteAction::Forward(dests) = &mut action {
        // applyHTTPRouteDestination: `rewrite.authority`, else a `host` header edit of the
        // rule, else (one destination only) the destination's; with several destinations
        // each keeps its own as a per-cluster rewrite (processWeightedDestination).
        let single = match dests.as_mut_slice() {
            [only] if rule.route.len() == 1 => {
                // processDestination: a lone destination's header operations join the rule's
                // own, on the route, not on a cluster weight.
                append_lone_destination_ops(
                    &mut edits.request,
                    std::mem::take(&mut only.request_headers),
                );
                append_lone_destination_ops(
                    &mut edits.response,
                    std::mem::take(&mut only.response_headers),
                );
                only.authority.take()
            }
            _ => None,
        };
        let authority = rewrite
            .as_ref()
            .and_then(|r| r.authority.clone())
            .or(edits.authority)
            .or(single);
        if let Some(authority) = authority {
            rewrite.get_or_insert_with(Rewrite::default).authority = Some(authority);
        }
    }
    Some(Route {
        name: format!(
            "{vs_name}.{namespace}#{}",
            rule.name.clone().unwrap_or_else(|| index.to_string())
        ),
        matches,
        action,
        rewrite,
        request_headers: edits.request,
        response_headers: edits.response,
        timeout: rule.timeout.map(|t| t.0).filter(|t| !t.is_zero()),
        retries: retries(rule.retries.as_ref(), &at, diags),
        fault: rule.fault.as_ref().and_then(|f| fault(f, &at, diags)),
        fallback: false,
        mirrors,
        cors: rule
            .cors_policy
            .as_ref()
            .and_then(|c| super::cors::cors_policy(c, &at, diags)),
    })
}

fn action(
    rule: &HttpRoute,
    namespace: &str,
    at: &str,
    resolver: &dyn DestinationResolver,
    diags: &mut Vec<Diagnostic>,
) -> Option<RouteAction> {
    let kinds = usize::from(!rule.route.is_empty())
        + usize::from(rule.redirect.is_some())
        + usize::from(rule.direct_response.is_some())
        + usize::from(rule.delegate.is_some());
    if kinds != 1 {
        diags.push(
            Diagnostic::error(
                "a rule needs exactly one of route, redirect, directResponse, delegate; rule left out",
            )
            .field(at.to_string()),
        );
        return None;
    }
    if rule.delegate.is_some() {
        // Translation merges delegates first (`super::delegation`); one still here was not.
        diags.push(
            Diagnostic::warning("delegate rules are merged before translation; rule left out")
                .field(format!("{at}.delegate")),
        );
        return None;
    }
    if let Some(r) = &rule.redirect {
        // HTTPRedirect's `oneOf` (port, derivePort); FROM_PROTOCOL_DEFAULT is no port at all,
        // Envoy's default (ApplyRedirect).
        let port_from_request = match r.derive_port.as_deref() {
            None | Some("FROM_PROTOCOL_DEFAULT") => false,
            Some("FROM_REQUEST_PORT") => true,
            Some(other) => {
                diags.push(
                    Diagnostic::error(format!(
                        "derivePort {other:?} is not FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT; rule left out"
                    ))
                    .field(format!("{at}.redirect.derivePort")),
                );
                return None;
            }
        };
        if r.port.is_some() && r.derive_port.is_some() {
            diags.push(
                Diagnostic::error("only one of port and derivePort may be set; rule left out")
                    .field(format!("{at}.redirect")),
            );
            return None;
        }
        // ApplyRedirect (pilot/pkg/networking/core/route/route.go): "Do not put explicit :80
        // or :443 when its http/https", the scheme being `redirect.scheme` or, on a sidecar
        // (never TLS), `http`. Envoy then keeps the request's host as it is.
        let scheme = r
            .scheme
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("http");
        let port = match r.port.map(u16::try_from) {
            Some(Ok(80)) if scheme == "http" => None,
            Some(Ok(443)) if scheme == "https" => None,
            Some(Ok(p)) => Some(p),
            Some(Err(_)) => {
                diags.push(
                    Diagnostic::error("port out of range").field(format!("{at}.redirect.port")),
                );
                return None;
            }
            None => None,
        };
        let status = match r.redirect_code.unwrap_or(301) {
            c @ (301 | 302 | 303 | 307 | 308) => c as u16,
            c => {
                diags.push(
                    Diagnostic::error(format!(
                        "redirectCode {c} is not a redirect status; rule left out"
                    ))
                    .field(format!("{at}.redirect.redirectCode")),
                );
                return None;
            }
        };
        return Some(RouteAction::Redirect(Redirect {
            uri: r.uri.clone(),
            authority: r.authority.clone(),
            port,
            scheme: r.scheme.clone(),
            status,
            prefix_rewrite: r.prefix_rewrite.clone().filter(|p| !p.is_empty()),
            port_from_request,
            require_tls: false,
        }));
    }
    if let Some(d) = &rule.direct_response {
        let status = match u16::try_from(d.status) {
            Ok(s) if (200..=599).contains(&s) => s,
            _ => {
                diags.push(
                    Diagnostic::error(format!(
                        "status {} must be in 200..=599; rule left out",
                        d.status
                    ))
                    .field(format!("{at}.directResponse.status")),
                );
                return None;
            }
        };
        let body = match &d.body {
            None => None,
            Some(b) => Some(direct_response_body(b, at, diags)?),
        };
        return Some(RouteAction::DirectResponse { status, body });
    }
    Some(RouteAction::Forward(destinations(
        &rule.route,
        namespace,
        at,
        resolver,
        diags,
    )))
}

/// `directResponse.body`: `string`, or `bytes` in protobuf JSON's base64 (standard or URL-safe
/// alphabet, padded or not, as Go's protojson reads it), which pilot hands Envoy as
/// `inline_bytes` (ApplyDirectResponse in pilot/pkg/networking/core/route/route.go). The
/// engine's bodies are text, so bytes that are not UTF-8 leave the rule out (reported).
fn direct_response_body(
    body: &crate::istio::virtual_service::HttpBody,
    at: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<String> {
    use base64::Engine as _;
    let field = format!("{at}.directResponse.body");
    match (&body.string, &body.bytes) {
        (Some(_), Some(_)) => {
            diags.push(
                Diagnostic::error("only one of string and bytes may be set; rule left out")
                    .field(field),
            );
            None
        }
        (Some(s), None) => Some(s.clone()),
        (None, None) => Some(String::new()),
        (None, Some(b64)) => {
            let engines = [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            let Some(bytes) = engines.iter().find_map(|e| e.decode(b64.trim()).ok()) else {
                diags.push(
                    Diagnostic::error("bytes is not base64; rule left out")
                        .field(format!("{field}.bytes")),
                );
                return None;
            };
            match String::from_utf8(bytes) {
                Ok(text) => Some(text),
                Err(_) => {
                    diags.push(
                        Diagnostic::error(
                            "bytes that are not UTF-8 text are not supported by Trellis; rule left out",
                        )
                        .field(format!("{field}.bytes")),
                    );
                    None
                }
            }
        }
    }
}

fn destinations(
    route: &[HttpRouteDestination],
    namespace: &str,
    at: &str,
    resolver: &dyn DestinationResolver,
    diags: &mut Vec<Diagnostic>,
) -> Vec<WeightedCluster> {
    let single = route.len() == 1;
    let mut total: i64 = 0;
    let mut out = Vec::new();
    for (i, d) in route.iter().enumerate() {
        let here = format!("{at}.route[{i}]");
        let weight = if single {
            100
        } else {
            match d.weight.unwrap_or(0) {
                w if w < 0 => {
                    diags.push(
                        Diagnostic::error(format!("negative weight {w}; treated as 0"))
                            .field(format!("{here}.weight")),
                    );
                    0
                }
                w => w as u32,
            }
        };
        total += i64::from(weight);
        // A destination without a cluster stays, with its weight: pilot routes to the cluster
        // it names, and Envoy answers 503 NC for the requests it draws.
        let cluster = resolver
            .cluster_for(
                &d.destination,
                namespace,
                &format!("{here}.destination"),
                diags,
            )
            .unwrap_or_else(|MissingCluster(name)| name);
        let edits = header_edits(&d.headers);
        out.push(WeightedCluster {
            cluster,
            weight,
            request_headers: edits.request,
            response_headers: edits.response,
            authority: edits.authority,
        });
    }
    if !single && total != 100 {
        diags.push(
            Diagnostic::error(format!(
                "destination weights sum to {total}, not 100 (Istio rejects this); used as relative weights"
            ))
            .field(format!("{at}.route")),
        );
    }
    out
}

/// Append a lone destination's header operations to its rule's, as pilot's
/// processDestination appends them to the route's lists (pilot/pkg/networking/core/route/
/// route.go): one Envoy HeaderParser, which removes every listed name first, then applies the
/// rule's set and add entries, then the destination's. [`HeaderOps`] applies every `set`
/// before every `add`, so a rule's `add` of a name the destination `set`s is dropped here: in
/// Envoy's order that later `set` overwrites it.
fn append_lone_destination_ops(route: &mut HeaderOps, dest: HeaderOps) {
    route.remove.extend(dest.remove);
    route
        .add
        .retain(|(name, _)| !dest.set.iter().any(|(d, _)| d.eq_ignore_ascii_case(name)));
    route.set.extend(dest.set);
    route.add.extend(dest.add);
}

/// `host` and pseudo-headers (`:authority`, ...) cannot be edited as headers: pilot drops them
/// from every set, add and remove (isInternalHeader, translateAppendHeaders, dropInternal in
/// pilot/pkg/networking/core/route/route.go).
fn is_internal_header(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

fn ops(spec: &Option<HeaderOperations>) -> HeaderOps {
    let edits = |m: &std::collections::BTreeMap<String, String>| -> Vec<(String, String)> {
        m.iter()
            .filter(|(k, _)| !is_internal_header(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    match spec {
        None => HeaderOps::default(),
        Some(o) => HeaderOps {
            set: edits(&o.set),
            add: edits(&o.add),
            remove: o
                .remove
                .iter()
                .filter(|k| !is_internal_header(k))
                .cloned()
                .collect(),
        },
    }
}

/// A rule's or destination's `headers`, as pilot's TranslateHeadersOperations splits them.
pub struct HeaderEdits {
    pub request: HeaderOps,
    pub response: HeaderOps,
    /// `host`/`:authority` in `request.set` (winning) or `request.add`: a Host rewrite.
    pub authority: Option<String>,
}

pub fn header_edits(headers: &Option<Headers>) -> HeaderEdits {
    let Some(h) = headers else {
        return HeaderEdits {
            request: HeaderOps::default(),
            response: HeaderOps::default(),
            authority: None,
        };
    };
    let pick = |m: Option<&std::collections::BTreeMap<String, String>>| {
        m.and_then(|m| {
            m.iter()
                .filter(|(k, _)| is_authority_header(k))
                .map(|(_, v)| v.clone())
                .next_back()
        })
    };
    let req = h.request.as_ref();
    HeaderEdits {
        request: ops(&h.request),
        response: ops(&h.response),
        authority: pick(req.map(|r| &r.set)).or_else(|| pick(req.map(|r| &r.add))),
    }
}

/// Istio's `retryOn` when a rule sets `retries` but not `retryOn`.
fn default_retry_on() -> RetryOn {
    RetryPolicy::default().retry_on
}

pub(crate) fn retries(
    spec: Option<&HttpRetry>,
    at: &str,
    diags: &mut Vec<Diagnostic>,
) -> RetryPolicy {
    let Some(spec) = spec else {
        return RetryPolicy::default();
    };
    let attempts = match spec.attempts.unwrap_or(0) {
        n if n <= 0 => {
            if n < 0 {
                diags.push(
                    Diagnostic::error(format!("negative attempts {n}; retries disabled"))
                        .field(format!("{at}.retries.attempts")),
                );
            }
            return RetryPolicy::none();
        }
        n => n as u32,
    };
    let retry_on = match &spec.retry_on {
        None => default_retry_on(),
        Some(s) if s.trim().is_empty() => default_retry_on(),
        Some(s) => parse_retry_on(s, &format!("{at}.retries.retryOn"), diags),
    };
    for (set, name) in [
        (
            spec.retry_remote_localities.is_some(),
            "retryRemoteLocalities",
        ),
        (
            spec.retry_ignore_previous_hosts.is_some(),
            "retryIgnorePreviousHosts",
        ),
    ] {
        if set {
            diags.push(
                Diagnostic::warning(format!("{name} is not supported by Trellis; ignored"))
                    .field(format!("{at}.retries.{name}")),
            );
        }
    }
    RetryPolicy {
        attempts,
        per_try_timeout: spec.per_try_timeout.map(|d| d.0).filter(|d| !d.is_zero()),
        retry_on,
        backoff_base: spec
            .backoff
            .map(|d| d.0)
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_millis(25)),
    }
}

/// Parse Envoy's comma-separated `x-envoy-retry-on` list as Istio passes it through.
pub fn parse_retry_on(spec: &str, at: &str, diags: &mut Vec<Diagnostic>) -> RetryOn {
    let mut on = RetryOn::default();
    for token in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        match token {
            "5xx" => on.server_error = true,
            "gateway-error" => on.gateway_error = true,
            "connect-failure" => on.connect_failure = true,
            "reset" => on.reset = true,
            "retriable-4xx" => on.retriable_4xx = true,
            "refused-stream" => on.refused_stream = true,
            // The codes come with it (bare numbers); Istio's default lists none.
            "retriable-status-codes" => {}
            // gRPC status conditions: no gRPC in the engine, so they can never fire.
            "cancelled" | "deadline-exceeded" | "internal" | "resource-exhausted"
            | "unavailable" => {}
            t => match t.parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => {
                    if !on.retriable_status_codes.contains(&code) {
                        on.retriable_status_codes.push(code);
                    }
                }
                _ => diags.push(
                    Diagnostic::warning(format!("unknown retryOn condition {t:?}; ignored"))
                        .field(at.to_string()),
                ),
            },
        }
    }
    on
}
