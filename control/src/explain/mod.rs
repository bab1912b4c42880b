//! `explain`: which VirtualService rule a request hits, why, and what then happens to it — a
//! route checker in the spirit of Envoy's `router_check_tool` and `istioctl x describe`.
//!
//! It runs the real pipeline, not a re-implementation: the directory is loaded with the same
//! loader, translated with the same translator, and the decision is made by the engine's own
//! [`Router`], whose trace explains each rule that did not match. The service registry comes
//! from the YAML itself (every host a VirtualService, DestinationRule or ServiceEntry names),
//! since explaining routing needs the hosts and ports, not live endpoints.

pub mod gateway;
pub mod inbound;
pub mod l4;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use trellis_engine::config::{HeaderOps, Route, RouteAction};
use trellis_engine::route::{Explanation, RouteRequest, Router};

pub use gateway::{explain_gateway, GatewayReport};
pub use inbound::{explain_inbound, InboundReport, InboundRequest};
pub use l4::{explain_connection, ConnectionReport, ConnectionRequest};
use report::*;
pub use report::{ExplainReport, Outcome};

use crate::diag::{ConfigError, Diagnostic};
use crate::istio::{load_dir, ResourceSet};
use crate::translate::{
    hosts, translate_for, Registry, Service, ServicePort, Translation, Workload,
    OUTBOUND_ROUTE_TABLE,
};

/// The request to explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExplainRequest {
    /// Host / authority, e.g. `reviews`, `reviews:9080`, `reviews.default.svc.cluster.local`.
    pub host: String,
    /// Path with optional query, default `/`.
    pub path: String,
    /// Default `GET`.
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub source_labels: BTreeMap<String, String>,
    /// The calling workload's namespace (default `default`): which VirtualServices it sees
    /// (`exportTo`), its `sourceNamespace` matches and the short names it can use.
    pub source_namespace: Option<String>,
    /// Destination port; defaults to the port in `host`, else the service's first port, else 80.
    pub port: Option<u16>,
}

impl ExplainRequest {
    pub fn new(host: &str) -> Self {
        ExplainRequest {
            host: host.to_string(),
            path: "/".to_string(),
            method: "GET".to_string(),
            headers: Vec::new(),
            source_labels: BTreeMap::new(),
            source_namespace: None,
            port: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// Explain `req` against the Istio resources under `dir`.
pub fn explain(dir: &Path, req: &ExplainRequest) -> Result<ExplainReport, ConfigError> {
    let set = load_dir(dir)?;
    explain_resources(&set, req)
}

/// Explain `req` against already loaded resources.
pub fn explain_resources(
    set: &ResourceSet,
    req: &ExplainRequest,
) -> Result<ExplainReport, ConfigError> {
    let (host_only, host_port) = split_host_port(&req.host);
    let registry = registry_from(set, req.port.or(host_port));
    // The route table is the calling sidecar's: istiod decides `sourceLabels`,
    // `sourceNamespace` and `exportTo` for it when it generates its config.
    let client = Workload {
        namespace: req
            .source_namespace
            .clone()
            .unwrap_or_else(|| crate::istio::DEFAULT_NAMESPACE.to_string()),
        labels: req.source_labels.clone(),
        ..Workload::default()
    };
    let t = translate_for(set, &registry, &client);
    let port = req
        .port
        .or(host_port)
        .or_else(|| {
            registry
                .service(&hosts::resolve(host_only, &client.namespace))
                .and_then(|s| s.ports.first().map(|p| p.number))
        })
        .unwrap_or(80);
    let authority = if host_port.is_some() || req.port.is_none() {
        req.host.clone()
    } else {
        format!("{}:{port}", req.host)
    };
    explain_on(&t, OUTBOUND_ROUTE_TABLE, "http", req, authority, port)
}

/// Explain `req` (sent to `authority` on `port` with `scheme`) on route table `table` of a
/// translation: the engine's router decides and traces.
fn explain_on(
    t: &Translation,
    table: &str,
    scheme: &str,
    req: &ExplainRequest,
    authority: String,
    port: u16,
) -> Result<ExplainReport, ConfigError> {
    let mut headers = trellis_engine::http1::Fields::new();
    for (name, value) in &req.headers {
        let bad = |reason: String| ConfigError::Request(format!("header {name:?}: {reason}"));
        let n =
            http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| bad(e.to_string()))?;
        http::HeaderValue::from_str(value.trim()).map_err(|e| bad(e.to_string()))?;
        headers.append_text(n.as_str(), value.trim());
    }
    let router = Router::new(Arc::new(t.config.clone()))
        .map_err(|e| ConfigError::Rejected(e.to_string()))?;
    let rr = RouteRequest {
        authority: &authority,
        path: &req.path,
        method: &req.method,
        scheme,
        headers: &headers,
        port,
        source_labels: &req.source_labels,
    };
    // A redirect's Location depends on the match and the port: the engine's own answer.
    let location = router
        .table(table)
        .and_then(|table| match router.route(table, &rr) {
            trellis_engine::route::RouteOutcome::Matched(m) => match &m.route.action {
                RouteAction::Redirect(r) => Some(Router::redirect_location(
                    &m, r, &authority, &req.path, port,
                )),
                _ => None,
            },
            _ => None,
        });
    let explanation = match router.table(table) {
        Some(table) => router.explain(table, &rr),
        None => Explanation {
            table: None,
            authority: authority.clone(),
            path: req.path.clone(),
            vhost: None,
            rules: Vec::new(),
            outcome_route_index: None,
        },
    };
    let mut report = build_report(t, table, &explanation, req, authority, port);
    if let Some(ActionReport::Redirect { location: r }) =
        report.matched.as_mut().map(|m| &mut m.action)
    {
        r.location = location;
    }
    Ok(report)
}

/// `reviews:9080` → (`reviews`, Some(9080)).
pub(crate) fn split_host_port(host: &str) -> (&str, Option<u16>) {
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (host, None),
        },
        _ => (host, None),
    }
}

/// Services for every host the resources name, with the ports they mention (plus
/// `request_port`, so the requested service answers on it); a host nobody gives a port gets
/// `request_port` or 80.
pub(crate) fn registry_from(set: &ResourceSet, request_port: Option<u16>) -> Registry {
    let mut ports: BTreeMap<String, (String, BTreeSet<u16>)> = BTreeMap::new();
    let mut note = |host: &str, ns: &str, port: Option<u32>| {
        if host.is_empty() || host.contains('*') {
            return;
        }
        let fqdn = hosts::resolve(host, ns);
        let entry = ports
            .entry(fqdn)
            .or_insert_with(|| (ns.to_string(), BTreeSet::new()));
        if let Some(p) = port.and_then(|p| u16::try_from(p).ok()).filter(|&p| p > 0) {
            entry.1.insert(p);
        }
    };
    for vs in &set.virtual_services {
        for h in &vs.spec.hosts {
            note(h, vs.namespace(), None);
        }
        for rule in &vs.spec.http {
            for d in &rule.route {
                note(
                    &d.destination.host,
                    vs.namespace(),
                    d.destination.port.map(|p| p.number),
                );
            }
        }
    }
    for dr in &set.destination_rules {
        note(&dr.spec.host, dr.namespace(), None);
        if let Some(tp) = &dr.spec.traffic_policy {
            for pl in &tp.port_level_settings {
                note(&dr.spec.host, dr.namespace(), pl.port.map(|p| p.number));
            }
        }
    }
    let entry_hosts: BTreeSet<String> = set
        .service_entries
        .iter()
        .flat_map(|se| {
            se.spec
                .hosts
                .iter()
                .map(|h| hosts::resolve(h, se.namespace()))
        })
        .collect();
    let services = ports
        .into_iter()
        .filter(|(host, _)| !entry_hosts.contains(host))
        .map(|(host, (namespace, mut numbers))| {
            if let Some(p) = request_port {
                numbers.insert(p);
            }
            if numbers.is_empty() {
                numbers.insert(80);
            }
            Service {
                host,
                namespace,
                ports: numbers
                    .into_iter()
                    .map(|number| ServicePort {
                        number,
                        name: format!("http-{number}"),
                        protocol: None,
                    })
                    .collect(),
                endpoints: Vec::new(),
            }
        })
        .collect();
    Registry {
        services,
        ..Default::default()
    }
}

fn ops(o: &HeaderOps) -> HeaderOpsReport {
    HeaderOpsReport {
        set: o.set.clone(),
        add: o.add.clone(),
        remove: o.remove.clone(),
    }
}

fn dur(d: std::time::Duration) -> String {
    format!("{d:?}")
}

fn build_report(
    t: &Translation,
    table: &str,
    e: &Explanation,
    req: &ExplainRequest,
    authority: String,
    port: u16,
) -> ExplainReport {
    let table_name = table;
    let table = t.config.route_table(table_name);
    let vhost = e.vhost.as_ref().and_then(|c| {
        table
            .and_then(|tb| tb.virtual_hosts.get(c.index))
            .map(|v| (c, v))
    });
    // A sidecar's virtual hosts are keyed by name, a gateway's by `<table>/<name>`.
    let origin = vhost.and_then(|(_, v)| {
        (t.virtual_hosts.get(&v.name))
            .or_else(|| t.virtual_hosts.get(&format!("{table_name}/{}", v.name)))
    });
    let rule_index = |i: usize| {
        origin
            .and_then(|o| o.rule_indices.get(i).copied())
            .unwrap_or(i)
    };
    let rule_name = |i: usize| origin.and_then(|o| o.rule_names.get(i).cloned()).flatten();
    let rules = e
        .rules
        .iter()
        .map(|r| RuleReport {
            index: rule_index(r.index),
            name: rule_name(r.index),
            matched: r.matched,
            match_index: r.match_index,
            failures: if r.matched {
                Vec::new()
            } else {
                r.matches
                    .iter()
                    .map(|m| {
                        m.failure.as_ref().map_or_else(
                            || "no condition failed".to_string(),
                            |f| f.message.clone(),
                        )
                    })
                    .collect()
            },
        })
        .collect();
    let matched = match (vhost, e.outcome_route_index) {
        (Some((_, v)), Some(i)) => v
            .routes
            .get(i)
            .map(|route| matched_rule(t, route, rule_index(i), rule_name(i))),
        _ => None,
    };
    ExplainReport {
        request: RequestSummary {
            authority,
            path: req.path.clone(),
            method: req.method.clone(),
            port,
            headers: req.headers.clone(),
            source_labels: req.source_labels.clone(),
        },
        config_version: t.config.version.clone(),
        outcome: match (&e.vhost, e.outcome_route_index) {
            (None, _) => Outcome::NoVirtualHost,
            (Some(_), None) => Outcome::NoRoute,
            (Some(_), Some(_)) => Outcome::Matched,
        },
        virtual_host: vhost.map(|(c, v)| VirtualHostReport {
            name: v.name.clone(),
            domain: c.domain.clone(),
            domain_match: format!("{:?}", c.kind),
            virtual_service: origin.and_then(|o| o.virtual_service.clone()),
            default_for_service: origin.and_then(|o| o.service.clone()),
        }),
        rules,
        matched,
        diagnostics: t.diagnostics.clone(),
    }
}

fn matched_rule(t: &Translation, route: &Route, index: usize, name: Option<String>) -> MatchedRule {
    let action = match &route.action {
        RouteAction::Forward(dests) => ActionReport::Forward {
            destinations: dests
                .iter()
                .map(|w| {
                    let origin = t.clusters.get(&w.cluster);
                    DestinationReport {
                        cluster: w.cluster.clone(),
                        missing_cluster: t.config.cluster(&w.cluster).is_none(),
                        weight: w.weight,
                        host: origin.map(|o| o.host.clone()),
                        port: origin.map(|o| o.port),
                        subset: origin.and_then(|o| o.subset.clone()),
                        subset_labels: origin.map(|o| o.subset_labels.clone()).unwrap_or_default(),
                        destination_rule: origin.and_then(|o| o.destination_rule.clone()),
                        policy: t
                            .config
                            .cluster(&w.cluster)
                            .map(|c| policy(c, origin.and_then(|o| o.tls_mode))),
                        request_headers: ops(&w.request_headers),
                        response_headers: ops(&w.response_headers),
                    }
                })
                .collect(),
        },
        RouteAction::Redirect(r) => ActionReport::Redirect {
            location: RedirectReport {
                uri: r.uri.clone(),
                authority: r.authority.clone(),
                port: r.port,
                scheme: r.scheme.clone(),
                status: r.status,
                prefix_rewrite: r.prefix_rewrite.clone(),
                port_from_request: r.port_from_request,
                location: None,
            },
        },
        RouteAction::DirectResponse { status, body } => ActionReport::DirectResponse {
            status: *status,
            body: body.clone(),
        },
    };
    MatchedRule {
        index,
        name,
        route_name: route.name.clone(),
        action,
        timeout: route.timeout.map(dur),
        retries: retry_report(&route.retries),
        fault: route.fault.as_ref().map(|f| FaultReport {
            delay: f.delay.as_ref().map(|d| (dur(d.fixed), d.percent)),
            abort: f.abort.as_ref().map(|a| (a.status, a.percent)),
        }),
        rewrite: route.rewrite.as_ref().map(|r| RewriteReport {
            uri: r.uri.clone(),
            uri_regex: r.uri_regex.clone(),
            authority: r.authority.clone(),
        }),
        request_headers: ops(&route.request_headers),
        response_headers: ops(&route.response_headers),
        mirrors: route
            .mirrors
            .iter()
            .map(|m| MirrorReport {
                cluster: m.cluster.clone(),
                percent: f64::from(m.fraction.numerator) * 100.0
                    / f64::from(m.fraction.denominator.max(1)),
                host_suffix: m.host_suffix,
            })
            .collect(),
        cors: route.cors.as_ref().map(cors_report),
    }
}

fn cors_report(c: &trellis_engine::config::CorsPolicy) -> report::CorsReport {
    use trellis_engine::config::{StringMatch, UnmatchedPreflights};
    report::CorsReport {
        allow_origins: c
            .allow_origins
            .iter()
            .map(|m| match m {
                StringMatch::Exact(v) => format!("exact {v:?}"),
                StringMatch::Prefix(v) => format!("prefix {v:?}"),
                StringMatch::Regex(v) => format!("regex {v:?}"),
            })
            .collect(),
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age: c.max_age.map(dur),
        allow_credentials: c.allow_credentials == Some(true),
        unmatched_preflights: match c.unmatched_preflights {
            UnmatchedPreflights::Forward => "forwarded",
            UnmatchedPreflights::Ignore => "answered 200 without allow-origin",
        },
    }
}

fn unlimited(n: u32) -> Option<u32> {
    (n != u32::MAX).then_some(n)
}

/// What a consistent-hash policy hashes, for the report.
fn hash_key_text(key: Option<&trellis_engine::config::HashKey>) -> String {
    use trellis_engine::config::HashKey;
    match key {
        None => "a random hash (no key)".to_string(),
        Some(HashKey::Header(h)) => format!("header {h}"),
        Some(HashKey::Cookie(c)) => format!("cookie {}", c.name),
        Some(HashKey::SourceIp) => "the source IP".to_string(),
        Some(HashKey::QueryParameter(q)) => format!("query parameter {q}"),
    }
}

fn policy(
    c: &trellis_engine::config::Cluster,
    tls: Option<crate::istio::destination_rule::TlsMode>,
) -> PolicyReport {
    use trellis_engine::config::LbPolicy;
    PolicyReport {
        load_balancer: match c.lb {
            LbPolicy::RoundRobin => "ROUND_ROBIN".to_string(),
            LbPolicy::LeastRequest { choice_count } => {
                format!("LEAST_REQUEST (choice of {choice_count})")
            }
            LbPolicy::Random => "RANDOM".to_string(),
            LbPolicy::Default => "default (LEAST_REQUEST, choice of 2)".to_string(),
            LbPolicy::RingHash { minimum_ring_size } => format!(
                "RING_HASH (minimum ring size {minimum_ring_size}) on {}",
                hash_key_text(c.hash_key.as_ref())
            ),
            LbPolicy::Maglev { table_size } => format!(
                "MAGLEV (table size {table_size}) on {}",
                hash_key_text(c.hash_key.as_ref())
            ),
        },
        connect_timeout: dur(c.pool.connect_timeout),
        max_connections: unlimited(c.pool.max_connections),
        max_pending_requests: unlimited(c.pool.max_pending_requests),
        max_requests: unlimited(c.pool.max_requests),
        max_requests_per_connection: (c.pool.max_requests_per_connection != 0)
            .then_some(c.pool.max_requests_per_connection),
        max_retries: unlimited(c.pool.max_retries),
        idle_timeout: c.pool.idle_timeout.map(dur),
        outlier_detection: c.outlier.as_ref().map(|o| OutlierReport {
            consecutive_5xx: o.consecutive_5xx,
            consecutive_gateway_errors: o.consecutive_gateway_errors,
            interval: dur(o.interval),
            base_ejection_time: dur(o.base_ejection_time),
            max_ejection_percent: o.max_ejection_percent,
            min_health_percent: o.min_health_percent,
        }),
        tls_mode: tls.map(|m| format!("{m:?}")),
    }
}

fn retry_report(r: &trellis_engine::config::RetryPolicy) -> RetryReport {
    let on = &r.retry_on;
    let mut retry_on: Vec<String> = [
        (on.server_error, "5xx"),
        (on.gateway_error, "gateway-error"),
        (on.connect_failure, "connect-failure"),
        (on.reset, "reset"),
        (on.retriable_4xx, "retriable-4xx"),
        (on.refused_stream, "refused-stream"),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name.to_string())
    .collect();
    if !on.retriable_status_codes.is_empty() {
        let codes: Vec<String> = on
            .retriable_status_codes
            .iter()
            .map(u16::to_string)
            .collect();
        retry_on.push(format!("retriable-status-codes({})", codes.join(",")));
    }
    RetryReport {
        attempts: r.attempts,
        per_try_timeout: r.per_try_timeout.map(dur),
        retry_on,
    }
}

/// Diagnostics worth showing next to a report (helper for callers that filter by severity).
pub fn errors_of(report: &ExplainReport) -> Vec<&Diagnostic> {
    report
        .diagnostics
        .iter()
        .filter(|d| d.severity == crate::diag::Severity::Error)
        .collect()
}

#[cfg(test)]
mod tests;
