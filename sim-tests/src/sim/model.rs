//! The scenario seen two ways: as engine configuration (what the sidecars run) and as the
//! reference model the invariants are checked against (what the configuration promises).
//!
//! The reference model is written from the scenario, not from the engine: routing is the
//! first rule one of whose match blocks holds, with Istio's and Envoy's semantics for every
//! condition ([`super::reference`]); the allowed endpoints are that rule's destinations with a
//! positive weight (or its only one); and the time bound follows Istio's semantics (route
//! timeout from the first attempt, after any injected delay; otherwise per-try timeouts times
//! attempts plus the largest backoffs). If the engine and this model disagree, one of them is
//! wrong, and the report says which request showed it.
//!
//! The engine configuration is built here the way the control plane translates Istio: each
//! `match[]` entry a `RouteMatch` in order, Istio's `*` regex and `{}` as presence matches,
//! weight-0 destinations dropped next to positive ones, a single destination at weight 100.
//!
//! Under config churn a sidecar runs, per service, one *generation* of its rules (see
//! [`super::scenario::ConfigPush`]); [`engine_config_at`] builds the snapshot for a vector of
//! generations, and the model answers per generation: a request is held to the rules of the
//! generation its sidecar ran when the request started, whatever was pushed since.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use trellis_engine::config::{
    Cluster, Config, ConnectionPool, Endpoint, FaultAbort, FaultDelay, FaultPolicy, HashKey,
    HeaderMatch, HeaderOps, LbPolicy, OutlierDetection, QueryParamMatch, Redirect, RetryOn,
    RetryPolicy, Rewrite, Route, RouteAction, RouteMatch, StringMatch, WeightedCluster,
};

use super::reference;
use super::scenario::{
    ActionSpec, EndpointRef, HeaderOpsSpec, MatchSpec, Rule, Scenario, StrMatch,
};
use super::vocab::NamedMatch;
use crate::build;

/// The listener each sidecar's local clients connect to.
pub const LISTENER: &str = build::LISTENER;

/// The original destination of every client connection in passthrough scenarios: an address
/// in TEST-NET-1 (RFC 5737) where nothing listens, so a request passed through to it fails to
/// connect (503 UF), and its port, 8080, is what `port` conditions see.
pub const ORIGINAL_DST: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(192, 0, 2, 1), 8080),
);

/// The address of an endpoint: `10.<service>.<version>.<index>:8080` (services above 255 do
/// not occur: scenarios have at most 50).
pub fn endpoint_addr((s, v, i): EndpointRef) -> SocketAddr {
    SocketAddr::from(([10, (s + 1) as u8, (v + 1) as u8, (i + 1) as u8], 8080))
}

/// The authority clients use for service `s`.
pub fn service_host(s: usize) -> String {
    format!("svc{s}")
}

/// [`service_host`] written into `out` (no allocation: the simulator's hot path).
pub fn write_service_host(out: &mut Vec<u8>, s: usize) {
    out.extend_from_slice(b"svc");
    out.extend_from_slice(itoa::Buffer::new().format(s).as_bytes());
}

/// The engine cluster of service `s`, version `v`.
pub fn cluster_name(s: usize, v: usize) -> String {
    format!("svc{s}-v{v}")
}

/// The engine route name of rule `r` of generation `generation` of service `s`
/// (`svc{s}-r{r}` for generation 0, as before churn existed; `svc{s}-g{g}-r{r}` after).
pub fn rule_name(s: usize, generation: usize, r: usize) -> String {
    match generation {
        0 => format!("svc{s}-r{r}"),
        g => format!("svc{s}-g{g}-r{r}"),
    }
}

/// The engine configuration every sidecar of the scenario starts with (generation 0 of every
/// service).
pub fn engine_config(scn: &Scenario) -> Config {
    engine_config_at(scn, &vec![0; scn.services.len()], None)
}

/// The engine configuration of a sidecar running generation `generations[s]` of each service
/// `s`'s rules. Clusters are the same in every generation. `version` names the generation
/// vector (`sim-{seed}` while every service is at generation 0), and the stream idle timeout
/// when a push set one (`stream_idle`; `None`: the engine's default).
pub fn engine_config_at(
    scn: &Scenario,
    generations: &[usize],
    stream_idle: Option<Duration>,
) -> Config {
    let mut config = build::base();
    let gen_of = |s: usize| generations.get(s).copied().unwrap_or(0);
    config.version = if generations.iter().all(|g| *g == 0) {
        format!("sim-{}", scn.seed)
    } else {
        let gens: Vec<String> = generations.iter().map(|g| g.to_string()).collect();
        format!("sim-{}-g{}", scn.seed, gens.join("."))
    };
    if let Some(idle) = stream_idle {
        config.http.stream_idle_timeout = idle;
        config
            .version
            .push_str(&format!("-idle{}ms", idle.as_millis()));
    }
    if scn.net.buffer_bytes > 0 {
        config.http.connection_buffer_bytes = scn.net.buffer_bytes as usize;
    }
    if let Some(listener) = config.listeners.first_mut() {
        listener.passthrough = scn.passthrough;
        if scn.inbound_listener {
            listener.direction = trellis_engine::config::Direction::Inbound;
        } else if scn.passthrough {
            // Clients here are redirected (they carry ORIGINAL_DST): the listener serves them
            // as a capture listener, by the port they dialled. The services are HTTP, so that
            // port is sniffed (pilot's outbound listener for an HTTP service port) and every
            // request goes through the engine's protocol detection before the HTTP codec.
            listener.outbound_capture = Some(std::sync::Arc::new(
                trellis_engine::config::OutboundCapture {
                    ports: [(
                        ORIGINAL_DST.port(),
                        trellis_engine::config::PortProtocol::Detect,
                    )]
                    .into(),
                    detection_timeout: None,
                },
            ));
        }
    }
    if let Some(v) = &scn.requests {
        config.http.path_normalization = v.normalization.engine();
    }
    if let Some(h) = &scn.http {
        let http = &mut config.http;
        http.max_request_line_bytes = h.max_request_line_bytes as usize;
        http.max_header_bytes = h.max_header_bytes as usize;
        http.max_headers = h.max_headers as usize;
        http.header_read_timeout = Duration::from_millis(h.header_read_timeout_ms);
        http.idle_timeout = Duration::from_millis(h.idle_timeout_ms);
        http.retry_buffer_bytes = h.retry_buffer_bytes as usize;
    }
    for (s, svc) in scn.services.iter().enumerate() {
        for (v, ver) in svc.versions.iter().enumerate() {
            let mut c = Cluster {
                name: cluster_name(s, v),
                service: service_host(s),
                subset: Some(format!("v{v}")),
                endpoints: (ver.endpoints.iter().enumerate())
                    .map(|(i, e)| Endpoint {
                        sidecar: false,
                        address: endpoint_addr((s, v, i)),
                        weight: e.weight(),
                        labels: BTreeMap::from([("version".to_string(), format!("v{v}"))]),
                    })
                    .collect(),
                lb: match ver.lb {
                    0 => LbPolicy::RoundRobin,
                    1 => LbPolicy::LeastRequest {
                        choice_count: ver.least_request_choices.unwrap_or(2),
                    },
                    2 => LbPolicy::Random,
                    4 => LbPolicy::RingHash {
                        minimum_ring_size: 1024,
                    },
                    // A small prime table keeps rebuilds cheap in the swarm.
                    5 => LbPolicy::Maglev { table_size: 1009 },
                    _ => LbPolicy::Default,
                },
                hash_key: matches!(ver.lb, 4 | 5).then_some(HashKey::SourceIp),
                locality: (ver.locality.as_ref()).map(|l| l.layout(&ver.endpoints)),
                ..Default::default()
            };
            if let Some(o) = &ver.outlier {
                c.outlier = Some(OutlierDetection {
                    consecutive_5xx: o.consecutive_5xx,
                    interval: Duration::from_millis(o.interval_ms),
                    base_ejection_time: Duration::from_millis(o.base_ejection_ms),
                    max_ejection_percent: o.max_ejection_percent,
                    max_ejection_time: o.max_ejection_ms.map_or(
                        OutlierDetection::default().max_ejection_time,
                        Duration::from_millis,
                    ),
                    consecutive_gateway_errors: o.consecutive_gateway_errors,
                    split_external_local_origin_errors: o.split_local_origin.is_some(),
                    consecutive_local_origin_failures: o.split_local_origin.unwrap_or(0),
                    min_health_percent: o.min_health_percent,
                });
            }
            c.pool = match &ver.pool {
                Some(p) => ConnectionPool {
                    max_connections: p.max_connections,
                    max_pending_requests: p.max_pending,
                    connect_timeout: Duration::from_millis(p.connect_timeout_ms),
                    max_requests_per_connection: p.max_requests_per_connection,
                    max_requests: if p.max_requests > 0 {
                        p.max_requests
                    } else {
                        u32::MAX
                    },
                    ..Default::default()
                },
                None => ConnectionPool {
                    connect_timeout: Duration::from_secs(1),
                    ..Default::default()
                },
            };
            if let Some(ms) = ver.upstream_idle_ms {
                c.pool.idle_timeout = Some(Duration::from_millis(ms));
            }
            if let Some(n) = ver.max_retries {
                c.pool.max_retries = n;
            }
            config.clusters.push(c);
        }
        let generation = gen_of(s);
        let routes = scn
            .rules(s, generation)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(r, rule)| engine_route(s, generation, r, rule))
            .collect();
        // Service `s`'s own host, plus the wildcard domains the scenario gives it.
        let host = service_host(s);
        let mut domains: Vec<&str> = vec![&host];
        if let Some(v) = &scn.requests {
            domains.extend(
                v.wildcards
                    .iter()
                    .filter(|(_, w)| *w == s)
                    .map(|(p, _)| p.as_str()),
            );
        }
        build::add_vhost(&mut config, &host, &domains, routes);
    }
    config
}

fn engine_route(s: usize, generation: usize, r: usize, rule: &Rule) -> Route {
    // The `x-user` block first, then the vocabulary's blocks, each an engine `RouteMatch`
    // (pilot makes each `match[]` entry an Envoy route of its own, in order).
    // Every other rule names its blocks (`match[].name`): a label for `explain` and logs that
    // must not change which rule a request takes, so the reference model ignores it.
    let matches = reference::blocks(rule)
        .iter()
        .enumerate()
        .map(|(b, m)| RouteMatch {
            name: (r % 2 == 1).then(|| format!("block-{b}")),
            ..engine_match(m)
        })
        .collect();
    let vocab = rule.vocab.as_deref();
    let action = match vocab.and_then(|v| v.action.as_ref()) {
        Some(ActionSpec::Redirect {
            uri,
            authority,
            scheme,
            port,
            status,
            prefix_rewrite,
            port_from_request,
        }) => RouteAction::Redirect(Redirect {
            uri: uri.clone(),
            authority: authority.clone(),
            port: *port,
            scheme: scheme.clone(),
            status: *status,
            prefix_rewrite: prefix_rewrite.clone(),
            port_from_request: *port_from_request,
            require_tls: false,
        }),
        Some(ActionSpec::Direct { status, body }) => RouteAction::DirectResponse {
            status: *status,
            body: body.clone(),
        },
        None => {
            // Istio drops weight-0 destinations when there are others, and uses a single
            // destination whatever its weight (pilot's `applyHTTPRouteDestination`).
            let single = rule.dests.len() == 1;
            RouteAction::Forward(
                rule.dests
                    .iter()
                    .filter(|(_, w)| single || *w > 0)
                    .map(|(v, w)| {
                        let edits = vocab.and_then(|vc| {
                            vc.dest_edits.iter().find(|(dv, _)| dv == v).map(|(_, e)| e)
                        });
                        WeightedCluster {
                            cluster: cluster_name(s, *v),
                            weight: if single { 100 } else { *w },
                            request_headers: edits.map(|e| ops(&e.request)).unwrap_or_default(),
                            response_headers: edits.map(|e| ops(&e.response)).unwrap_or_default(),
                            authority: vocab.and_then(|vc| {
                                (vc.dest_authorities.iter())
                                    .find(|(dv, _)| dv == v)
                                    .map(|(_, a)| a.clone())
                            }),
                        }
                    })
                    .collect(),
            )
        }
    };
    let edits = vocab.and_then(|v| v.edits.as_ref());
    Route {
        name: rule_name(s, generation, r),
        matches,
        action,
        rewrite: vocab.and_then(|v| v.rewrite.as_ref()).map(|rw| Rewrite {
            uri: rw.uri.clone(),
            uri_regex: rw.uri_regex.clone(),
            authority: rw.authority.clone(),
        }),
        request_headers: edits.map(|e| ops(&e.request)).unwrap_or_default(),
        response_headers: edits.map(|e| ops(&e.response)).unwrap_or_default(),
        timeout: rule.timeout_ms.map(Duration::from_millis),
        retries: match &rule.retries {
            Some(rt) => RetryPolicy {
                attempts: rt.attempts,
                per_try_timeout: rt.per_try_ms.map(Duration::from_millis),
                retry_on: RetryOn {
                    server_error: rt.on_5xx,
                    connect_failure: rt.on_connect_failure,
                    reset: rt.on_reset,
                    gateway_error: rt.on_gateway_error,
                    retriable_4xx: rt.on_retriable_4xx,
                    retriable_status_codes: rt.status_codes.clone(),
                    refused_stream: rt.on_refused_stream,
                },
                backoff_base: Duration::from_millis(rt.backoff_base_ms),
            },
            None => RetryPolicy::none(),
        },
        fault: rule.fault.as_ref().map(|f| FaultPolicy {
            delay: (f.delay_percent > 0).then(|| FaultDelay {
                fixed: Duration::from_millis(f.delay_ms),
                percent: f64::from(f.delay_percent),
            }),
            abort: (f.abort_percent > 0).then(|| FaultAbort {
                status: f.abort_http_status(),
                percent: f64::from(f.abort_percent),
                grpc_status: f.grpc_status,
            }),
        }),
        fallback: vocab.is_some_and(|v| v.fallback),
        mirrors: Vec::new(),
        cors: (vocab.and_then(|v| v.cors.as_ref())).map(super::cors::engine_policy),
    }
}

/// A header or query condition: Istio's `{}` and regex `*` are presence matches.
fn engine_named((name, m): &NamedMatch) -> (String, Option<StringMatch>) {
    let value = match m {
        None => None,
        Some(StrMatch::Regex(re)) if re == "*" => None,
        Some(m) => Some(m.engine()),
    };
    (name.clone(), value)
}

fn engine_match(m: &MatchSpec) -> RouteMatch {
    let header = |h: &NamedMatch| {
        let (name, value) = engine_named(h);
        HeaderMatch { name, value }
    };
    RouteMatch {
        name: None,
        uri: m.uri.as_ref().map(StrMatch::engine),
        ignore_uri_case: m.ignore_uri_case,
        scheme: m.scheme.as_ref().map(StrMatch::engine),
        method: m.method.as_ref().map(StrMatch::engine),
        authority: m.authority.as_ref().map(StrMatch::engine),
        headers: m.headers.iter().map(header).collect(),
        without_headers: m.without_headers.iter().map(header).collect(),
        query_params: m
            .query_params
            .iter()
            .map(|q| {
                let (name, value) = engine_named(q);
                QueryParamMatch { name, value }
            })
            .collect(),
        port: m.port,
        source_labels: m.source_labels.iter().cloned().collect(),
    }
}

fn ops(o: &HeaderOpsSpec) -> HeaderOps {
    HeaderOps {
        set: o.set.clone(),
        add: o.add.clone(),
        remove: o.remove.clone(),
    }
}

/// The rule a request to service `s` takes under generation `generation` of the service's
/// rules, by the reference model, and the match block it matched by.
pub fn reference_rule(
    scn: &Scenario,
    s: usize,
    generation: usize,
    req: &reference::SeenRequest<'_>,
) -> Option<(usize, Option<usize>)> {
    reference::route(scn.rules(s, generation)?, req)
}

/// Whether a request routed by `rule` may reach version `v`: a destination of the rule with a
/// positive weight, or its only destination; never for a rule that does not forward.
pub fn allows_version(rule: &Rule, v: usize) -> bool {
    rule.forwards()
        && rule
            .dests
            .iter()
            .any(|(dv, w)| *dv == v && (*w > 0 || rule.dests.len() == 1))
}

/// Rule `r` of generation `generation` of service `s`.
pub fn rule_at(scn: &Scenario, s: usize, generation: usize, r: usize) -> Option<&Rule> {
    scn.rules(s, generation)?.get(r)
}

/// The most simulated time a request on `rule` may take from its first byte to its end, or
/// `None` when the configuration promises no bound (no route timeout, no per-try timeout).
pub fn time_bound(rule: &Rule) -> Option<Duration> {
    let delay = rule
        .fault
        .as_ref()
        .filter(|f| f.delay_percent > 0)
        .map_or(0, |f| f.delay_ms);
    let delay = Duration::from_millis(delay);
    if let Some(t) = rule.timeout_ms {
        return Some(delay + Duration::from_millis(t));
    }
    let rt = rule.retries.as_ref()?;
    let per_try = Duration::from_millis(rt.per_try_ms?);
    let base = Duration::from_millis(rt.backoff_base_ms);
    // Backoff before retry n is below min(base·2^n, 10·base) (engine: fully jittered).
    let backoffs: Duration = (0..rt.attempts)
        .map(|n| (base * (1u32 << n.min(16))).min(base * 10))
        .sum();
    Some(delay + per_try * (rt.attempts + 1) + backoffs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn written_host_is_the_host() {
        for s in [0, 7, 19, 49, 1234] {
            let mut out = b"x".to_vec();
            super::write_service_host(&mut out, s);
            assert_eq!(out, format!("x{}", super::service_host(s)).as_bytes());
        }
    }
}
