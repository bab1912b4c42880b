//! The local mesh's configuration, built in code: Istio's bookinfo `reviews` service with three
//! versions and the two classic routing rules of its tutorial.
//!
//! In Istio terms:
//! - a DestinationRule `reviews` with subsets v1/v2/v3 (by the `version` label), outlier
//!   detection and a connection pool;
//! - a VirtualService `reviews`: requests with header `end-user: jason` go to v2; all others are
//!   split 80/20 between v1 and v3.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use trellis_engine::config::{
    Cluster, Config, ConnectionPool, Direction, Endpoint, HeaderMatch, LbPolicy, Listener,
    OutlierDetection, RetryPolicy, Route, RouteAction, RouteMatch, RouteTable, StringMatch,
    VirtualHost, WeightedCluster,
};

/// The service host.
pub const SERVICE: &str = "reviews.default.svc.cluster.local";
/// The route table the listener uses.
pub const ROUTE_TABLE: &str = "local-mesh";

/// Name of the cluster for subset `version` (Istio's outbound cluster naming).
pub fn cluster_name(version: &str) -> String {
    format!("outbound|9080|{version}|{SERVICE}")
}

/// The configuration: a listener on `listen`, and `reviews` versions v1, v2, v3 served at
/// `endpoints[0..3]`.
pub fn reviews_config(listen: SocketAddr, endpoints: [SocketAddr; 3]) -> Config {
    let versions = ["v1", "v2", "v3"];
    let clusters = versions
        .iter()
        .zip(endpoints)
        .map(|(version, address)| Cluster {
            tls: Default::default(),
            locality: None,
            name: cluster_name(version),
            service: SERVICE.to_string(),
            subset: Some((*version).to_string()),
            endpoints: vec![Endpoint {
                sidecar: false,
                address,
                weight: 1,
                labels: BTreeMap::from([
                    ("app".to_string(), "reviews".to_string()),
                    ("version".to_string(), (*version).to_string()),
                ]),
            }],
            lb: LbPolicy::RoundRobin,
            hash_key: None,
            outlier: Some(OutlierDetection {
                consecutive_5xx: 5,
                interval: Duration::from_secs(10),
                base_ejection_time: Duration::from_secs(30),
                max_ejection_percent: 100,
                ..OutlierDetection::default()
            }),
            pool: ConnectionPool {
                max_connections: 64,
                max_pending_requests: 256,
                max_requests: 1024,
                connect_timeout: Duration::from_secs(2),
                idle_timeout: Some(Duration::from_secs(60)),
                ..ConnectionPool::default()
            },
        })
        .collect();

    let forward = |weights: &[(&str, u32)]| {
        RouteAction::Forward(
            weights
                .iter()
                .map(|(v, w)| WeightedCluster {
                    cluster: cluster_name(v),
                    weight: *w,
                    ..WeightedCluster::default()
                })
                .collect(),
        )
    };
    let jason = Route {
        name: "reviews.default.jason".to_string(),
        matches: vec![RouteMatch {
            name: Some("end-user-jason".to_string()),
            headers: vec![HeaderMatch {
                name: "end-user".to_string(),
                value: Some(StringMatch::Exact("jason".to_string())),
            }],
            ..RouteMatch::default()
        }],
        action: forward(&[("v2", 100)]),
        retries: RetryPolicy::default(),
        ..Route::default()
    };
    let split = Route {
        name: "reviews.default.split".to_string(),
        matches: vec![],
        action: forward(&[("v1", 80), ("v3", 20)]),
        retries: RetryPolicy::default(),
        ..Route::default()
    };

    Config {
        identity: None,
        tcp_routes: Vec::new(),
        version: "local-mesh-1".to_string(),
        listeners: vec![Listener {
            tls: None,
            mtls: Default::default(),
            name: "outbound".to_string(),
            address: listen,
            route_table: ROUTE_TABLE.to_string(),
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
            name: ROUTE_TABLE.to_string(),
            validate_clusters: true,
            virtual_hosts: vec![VirtualHost {
                name: "reviews.default".to_string(),
                // "*" too, so a bare `curl http://127.0.0.1:15001/` reaches reviews.
                domains: vec![
                    "reviews".to_string(),
                    "reviews.default".to_string(),
                    SERVICE.to_string(),
                    "*".to_string(),
                ],
                routes: vec![jason, split],
            }],
        }],
        clusters,
        http: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_reference_existing_clusters_with_istio_weights() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let c = reviews_config("127.0.0.1:0".parse().unwrap(), [a, a, a]);
        let table = c.route_table(ROUTE_TABLE).unwrap();
        let routes = &table.virtual_hosts[0].routes;
        assert_eq!(routes.len(), 2);
        for r in routes {
            let RouteAction::Forward(ws) = &r.action else {
                panic!("forward expected")
            };
            assert_eq!(ws.iter().map(|w| w.weight).sum::<u32>(), 100);
            for w in ws {
                let cluster = c.cluster(&w.cluster).unwrap();
                assert_eq!(
                    cluster.endpoints[0].labels.get("version"),
                    cluster.subset.as_ref()
                );
            }
        }
        assert_eq!(c.listeners[0].route_table, ROUTE_TABLE);
    }
}
