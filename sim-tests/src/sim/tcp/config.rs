//! The L4 world's sidecar configuration: its clusters (one per echo-server group), the `tcp`
//! chains of every service (`sourceLabels` rules first, then the service's own, then the
//! `destinationSubnets` ones: Envoy's match goes by prefix length, not order), the TLS port's
//! `tls` chains, and the outbound capture table; and the names everything goes by.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use trellis_engine::config::{Cidr, OutboundCapture, PortProtocol, TcpDestination, TcpRoute};

use super::chains::{LABEL_SETS, SUBNETS};
use super::spec::{TcpSpec, HTTP_PORT, SNI_PATTERNS, TLS_PORT};
use crate::build;

/// Endpoint `i` of cluster `c`.
pub(crate) fn addr(c: usize, i: usize) -> SocketAddr {
    SocketAddr::from(([10, 50, (c + 1) as u8, (i + 1) as u8], 7000))
}

pub(crate) fn cluster_name(c: usize) -> String {
    format!("tcp-c{c}")
}

pub(crate) fn route_name(service: usize) -> String {
    format!("tcp-svc{service}")
}

pub(crate) fn tls_route_name(rule: usize) -> String {
    format!("tls-r{rule}")
}

/// The `tcp` route of `sourceLabels` rule `rule` of service `service`.
pub(crate) fn label_route_name(service: usize, rule: usize) -> String {
    format!("tcp-svc{service}-labels{rule}")
}

/// The `tcp` route of `destinationSubnets` rule `rule` of service `service`.
pub(crate) fn subnet_route_name(service: usize, rule: usize) -> String {
    format!("tcp-svc{service}-net{rule}")
}

/// Weighted destinations as the engine's.
fn destinations(dests: &[(usize, u32)]) -> Vec<TcpDestination> {
    (dests.iter())
        .map(|&(c, weight)| TcpDestination {
            cluster: cluster_name(c),
            weight,
        })
        .collect()
}

pub(crate) fn config(spec: &TcpSpec) -> trellis_engine::config::Config {
    let mut config = build::base();
    config.version = "tcp".into();
    for (c, servers) in spec.clusters.iter().enumerate() {
        let addrs: Vec<String> = (0..servers.len()).map(|i| addr(c, i).to_string()).collect();
        let eps: Vec<(&str, &[(&str, &str)])> =
            addrs.iter().map(|a| (a.as_str(), &[][..])).collect();
        let mut cluster = build::cluster(&cluster_name(c), &eps);
        cluster.pool.connect_timeout = Duration::from_millis(500);
        config.clusters.push(cluster);
    }
    let mut ports: BTreeMap<u16, PortProtocol> =
        BTreeMap::from([(HTTP_PORT, PortProtocol::Detect)]);
    let idle = Some(spec.idle_timeout_ms.map_or(
        trellis_engine::config::DEFAULT_TCP_IDLE_TIMEOUT,
        Duration::from_millis,
    ));
    for (i, svc) in spec.services.iter().enumerate() {
        ports.insert(svc.port, PortProtocol::Tcp);
        // Before the service's own chain, as the VirtualService lists them: among chains
        // without prefixes the first whose labels the client has wins.
        for (k, rule) in svc.label_rules.iter().enumerate() {
            config.tcp_routes.push(TcpRoute {
                name: label_route_name(i, k),
                port: Some(svc.port),
                source_labels: (LABEL_SETS[rule.labels].iter())
                    .map(|&(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                destinations: destinations(&rule.dests),
                idle_timeout: idle,
                ..TcpRoute::default()
            });
        }
        config.tcp_routes.push(TcpRoute {
            name: route_name(i),
            port: Some(svc.port),
            destinations: destinations(&svc.dests),
            idle_timeout: idle,
            ..TcpRoute::default()
        });
        // After the service's own chain: Envoy's match goes by prefix length, not order.
        for (j, rule) in svc.subnet_rules.iter().enumerate() {
            config.tcp_routes.push(TcpRoute {
                name: subnet_route_name(i, j),
                port: Some(svc.port),
                destination_subnets: (rule.subnets.iter())
                    .map(|&s| {
                        let (net, len) = SUBNETS[s];
                        Cidr {
                            addr: std::net::IpAddr::from(net),
                            len,
                        }
                    })
                    .collect(),
                destinations: destinations(&rule.dests),
                idle_timeout: idle,
                ..TcpRoute::default()
            });
        }
    }
    if !spec.tls_rules.is_empty() {
        ports.insert(TLS_PORT, PortProtocol::Tcp);
    }
    for (i, rule) in spec.tls_rules.iter().enumerate() {
        config.tcp_routes.push(TcpRoute {
            name: tls_route_name(i),
            port: Some(TLS_PORT),
            sni_hosts: (rule.sni_hosts.iter())
                .map(|&p| SNI_PATTERNS[p].to_string())
                .collect(),
            destinations: destinations(&rule.dests),
            ..TcpRoute::default()
        });
    }
    if let Some(listener) = config.listeners.first_mut() {
        listener.passthrough = spec.allow_any;
        listener.outbound_capture = Some(Arc::new(OutboundCapture {
            ports,
            detection_timeout: None,
        }));
    }
    config
}
