//! The L4 side of a capture inbound listener (`forwardTo: IP`, the sidecar's 15006 behind
//! `trellis init`): its per-port protocol table ([`super::inbound_protocols`]) and the TCP
//! chains the engine takes for the ports that are not HTTP, as pilot builds them
//! (`buildInboundChainConfigs` and `buildInboundPassthroughChains` in
//! pilot/pkg/networking/core/listener_inbound.go):
//! - a declared TCP or unknown-protocol port `P`: a chain for `P` with the network RBAC of
//!   `buildInboundNetworkFilters` (the workload's AuthorizationPolicies compiled for TCP) and
//!   a `tcp_proxy` to `inbound|P||`, a cluster holding the workload at `IP:P`;
//! - every other port: the passthrough chain, the same RBAC and a `tcp_proxy` to the
//!   original destination's port on the workload (`InboundPassthroughCluster`).
//!
//! Which of these the engine uses, HTTP, or the first bytes' verdict, is the table's
//! ([`trellis_engine::config::InboundProtocols`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use trellis_engine::authz::Authorization;
use trellis_engine::config::{
    Cluster, Config, Endpoint, InboundProtocols, TcpDestination, TcpRoute,
};

use super::inbound_protocols::InboundProtocol;

/// The name of the passthrough chain (pilot's `util.InboundPassthroughCluster`).
pub const INBOUND_PASSTHROUGH: &str = "InboundPassthroughCluster";

/// Add the L4 chains of capture listener `listener` (forwarding to the workload at `ip`) to
/// `config`, and return its protocol table for [`trellis_engine::config::Listener`].
pub fn add_capture_chains(
    config: &mut Config,
    listener: &str,
    ip: IpAddr,
    ports: &BTreeMap<u16, InboundProtocol>,
    detection_timeout: Option<Duration>,
    authorization: Option<Arc<Authorization>>,
) -> Arc<InboundProtocols> {
    for (&port, _) in ports.iter().filter(|(_, p)| **p != InboundProtocol::Http) {
        let cluster = format!("inbound|{port}||");
        if config.cluster(&cluster).is_none() {
            config.clusters.push(Cluster {
                name: cluster.clone(),
                service: format!("inbound|{port}"),
                endpoints: vec![Endpoint {
                    address: SocketAddr::new(ip, port),
                    weight: 1,
                    labels: Default::default(),
                    sidecar: false,
                }],
                ..Default::default()
            });
        }
        config.tcp_routes.push(TcpRoute {
            name: cluster.clone(),
            listener: Some(listener.to_string()),
            port: Some(port),
            destinations: vec![TcpDestination { cluster, weight: 1 }],
            authorization: authorization.clone(),
            ..TcpRoute::default()
        });
    }
    config.tcp_routes.push(TcpRoute {
        name: INBOUND_PASSTHROUGH.to_string(),
        listener: Some(listener.to_string()),
        passthrough: true,
        authorization,
        ..TcpRoute::default()
    });
    Arc::new(InboundProtocols {
        ports: ports
            .iter()
            .map(|(&p, proto)| (p, proto.engine()))
            .collect(),
        detection_timeout,
    })
}

/// Remove what [`add_capture_chains`] added for `listener` (a pushed update replaces them).
pub fn remove_capture_chains(config: &mut Config, listener: &str) {
    config
        .tcp_routes
        .retain(|r| r.listener.as_deref() != Some(listener));
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_engine::config::PortProtocol;

    /// buildInboundChainConfigs + buildInboundPassthroughChains: one chain per declared
    /// non-HTTP target port to `inbound|P||` (the workload at IP:P), then the passthrough
    /// chain; HTTP ports get none (the HTTP connection manager serves them).
    #[test]
    fn one_chain_per_non_http_port_then_the_passthrough_chain() {
        let mut config = Config::default();
        let ports = BTreeMap::from([
            (3306, InboundProtocol::Tcp),
            (8080, InboundProtocol::Http),
            (9000, InboundProtocol::Detect),
        ]);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let table = add_capture_chains(&mut config, "inbound", ip, &ports, None, None);
        let names: Vec<_> = config.tcp_routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["inbound|3306||", "inbound|9000||", INBOUND_PASSTHROUGH]
        );
        assert_eq!(config.tcp_routes[0].port, Some(3306));
        assert!(config.tcp_routes[2].passthrough && config.tcp_routes[2].port.is_none());
        let mysql = config
            .cluster("inbound|3306||")
            .expect("the port's cluster");
        assert_eq!(mysql.endpoints[0].address.to_string(), "127.0.0.1:3306");
        assert!(config.cluster("inbound|8080||").is_none());
        assert_eq!(table.protocol_for(8080), PortProtocol::Http);
        assert_eq!(table.protocol_for(3306), PortProtocol::Tcp);
        assert_eq!(table.protocol_for(1234), PortProtocol::Detect);
        remove_capture_chains(&mut config, "inbound");
        assert!(config.tcp_routes.is_empty());
    }
}
