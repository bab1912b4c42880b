//! Terse builders for engine configurations in scenarios and benchmarks.

use std::collections::BTreeMap;
use std::time::Duration;

use trellis_engine::config::{
    Cluster, Config, Direction, Endpoint, HeaderMatch, Listener, RetryPolicy, Route, RouteAction,
    RouteMatch, RouteTable, StringMatch, VirtualHost, WeightedCluster,
};

/// The listener every scenario uses.
pub const LISTENER: &str = "127.0.0.1:15001";

/// A config with one outbound listener on [`LISTENER`] and an empty route table "outbound".
pub fn base() -> Config {
    Config {
        identity: None,
        tcp_routes: Vec::new(),
        version: "test".into(),
        listeners: vec![Listener {
            tls: None,
            mtls: Default::default(),
            name: "outbound".into(),
            address: LISTENER.parse().expect("listener"),
            route_table: "outbound".into(),
            direction: Direction::Outbound,
            passthrough: false,
            authorization: None,
            local_forward: None,
            inbound_protocols: None,
            outbound_capture: None,
            authentication: None,
            edge: None,
        }],
        route_tables: vec![RouteTable {
            name: "outbound".into(),
            validate_clusters: true,
            virtual_hosts: Vec::new(),
        }],
        clusters: Vec::new(),
        http: Default::default(),
    }
}

/// A cluster of endpoints `(address, labels)` with default policy.
pub fn cluster(name: &str, endpoints: &[(&str, &[(&str, &str)])]) -> Cluster {
    Cluster {
        name: name.into(),
        service: name.into(),
        subset: None,
        endpoints: endpoints
            .iter()
            .map(|(addr, labels)| Endpoint {
                sidecar: false,
                address: addr.parse().expect("endpoint address"),
                weight: 1,
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            })
            .collect(),
        ..Default::default()
    }
}

/// A route forwarding everything it matches to `dests` (`(cluster, weight)`), no retries.
pub fn route(name: &str, matches: Vec<RouteMatch>, dests: &[(&str, u32)]) -> Route {
    Route {
        name: name.into(),
        matches,
        action: RouteAction::Forward(
            dests
                .iter()
                .map(|(c, w)| WeightedCluster {
                    cluster: c.to_string(),
                    weight: *w,
                    ..Default::default()
                })
                .collect(),
        ),
        retries: RetryPolicy::none(),
        ..Default::default()
    }
}

/// A match on one header's exact value.
pub fn header_exact(name: &str, value: &str) -> RouteMatch {
    RouteMatch {
        headers: vec![HeaderMatch {
            name: name.into(),
            value: Some(StringMatch::Exact(value.into())),
        }],
        ..Default::default()
    }
}

/// Adds a virtual host serving `domains` with `routes` to the "outbound" table.
pub fn add_vhost(config: &mut Config, name: &str, domains: &[&str], routes: Vec<Route>) {
    if let Some(table) = config.route_tables.first_mut() {
        table.virtual_hosts.push(VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes,
        });
    }
}

/// Seconds, for readability.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Milliseconds, for readability.
pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
