//! The scenario seen two ways: as engine configuration (what the sidecars run) and as the
//! reference model the invariants are checked against (what the configuration promises).
//!
//! The reference model is written from the scenario, not from the engine: routing is "first
//! rule whose `x-user` matches", the allowed endpoints are the union of that rule's
//! destinations, and the time bound follows Istio's semantics (route timeout from the first
//! attempt, after any injected delay; otherwise per-try timeouts times attempts plus the
//! largest backoffs). If the engine and this model disagree, one of them is wrong, and the
//! report says which request showed it.
//!
//! Under config churn a sidecar runs, per service, one *generation* of its rules (see
//! [`super::scenario::ConfigPush`]); [`engine_config_at`] builds the snapshot for a vector of
//! generations, and the model answers per generation: a request is held to the rules of the
//! generation its sidecar ran when the request started, whatever was pushed since.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use trellis_engine::config::{
    Cluster, Config, ConnectionPool, Endpoint, FaultAbort, FaultDelay, FaultPolicy, HeaderMatch,
    LbPolicy, OutlierDetection, RetryOn, RetryPolicy, Route, RouteAction, RouteMatch, StringMatch,
    WeightedCluster,
};

use super::scenario::{EndpointRef, Rule, Scenario};
use crate::build;

/// The listener each sidecar's local clients connect to.
pub const LISTENER: &str = build::LISTENER;

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
    for (s, svc) in scn.services.iter().enumerate() {
        for (v, ver) in svc.versions.iter().enumerate() {
            let mut c = Cluster {
                name: cluster_name(s, v),
                service: service_host(s),
                subset: Some(format!("v{v}")),
                endpoints: (0..ver.endpoints.len())
                    .map(|i| Endpoint {
                        address: endpoint_addr((s, v, i)),
                        weight: 1,
                        labels: BTreeMap::from([("version".to_string(), format!("v{v}"))]),
                    })
                    .collect(),
                lb: match ver.lb {
                    0 => LbPolicy::RoundRobin,
                    1 => LbPolicy::LeastRequest { choice_count: 2 },
                    _ => LbPolicy::Random,
                },
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
                    ..Default::default()
                });
            }
            c.pool = match &ver.pool {
                Some(p) => ConnectionPool {
                    max_connections: p.max_connections,
                    max_pending_requests: p.max_pending,
                    connect_timeout: Duration::from_millis(p.connect_timeout_ms),
                    max_requests_per_connection: p.max_requests_per_connection,
                    ..Default::default()
                },
                None => ConnectionPool {
                    connect_timeout: Duration::from_secs(1),
                    ..Default::default()
                },
            };
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
        build::add_vhost(&mut config, &service_host(s), &[&service_host(s)], routes);
    }
    config
}

fn engine_route(s: usize, generation: usize, r: usize, rule: &Rule) -> Route {
    let matches = match &rule.user {
        Some(u) => vec![RouteMatch {
            headers: vec![HeaderMatch {
                name: "x-user".into(),
                value: Some(StringMatch::Exact(u.clone())),
            }],
            ..Default::default()
        }],
        None => Vec::new(),
    };
    Route {
        name: rule_name(s, generation, r),
        matches,
        action: RouteAction::Forward(
            rule.dests
                .iter()
                .map(|(v, w)| WeightedCluster {
                    cluster: cluster_name(s, *v),
                    weight: *w,
                    ..Default::default()
                })
                .collect(),
        ),
        timeout: rule.timeout_ms.map(Duration::from_millis),
        retries: match &rule.retries {
            Some(rt) => RetryPolicy {
                attempts: rt.attempts,
                per_try_timeout: rt.per_try_ms.map(Duration::from_millis),
                retry_on: RetryOn {
                    server_error: rt.on_5xx,
                    connect_failure: rt.on_connect_failure,
                    reset: rt.on_reset,
                    ..Default::default()
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
                status: f.abort_status,
                percent: f64::from(f.abort_percent),
            }),
        }),
        ..Default::default()
    }
}

/// The rule a request to service `s` with this `x-user` takes under generation `generation`
/// of the service's rules, by the reference model.
pub fn reference_rule(
    scn: &Scenario,
    s: usize,
    generation: usize,
    user: Option<&str>,
) -> Option<usize> {
    scn.rules(s, generation)?
        .iter()
        .position(|rule| match &rule.user {
            None => true,
            Some(u) => user == Some(u.as_str()),
        })
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
