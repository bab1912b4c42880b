//! The protocol of each port of a workload, as its capture inbound listener serves it: pilot
//! builds the virtual inbound listener's filter chains per target port from the Services
//! that select the workload (`getFilterChainsByServicePort` and `buildInboundChainConfigs`
//! in pilot/pkg/networking/core/listener_inbound.go; the port's protocol from
//! `kube.ConvertProtocol`, here [`crate::plane::services::port_protocol`], and
//! `ModelProtocolToListenerProtocol` in pilot/pkg/networking/networking.go):
//! - an HTTP-family port (HTTP, HTTP2, gRPC, gRPC-Web, HTTP_PROXY) gets the HTTP connection
//!   manager;
//! - a TCP-family one (TCP, TLS, HTTPS, Mongo, MySQL, Redis: `Instance.IsTCP`) a TCP proxy
//!   with network RBAC;
//! - one of unknown protocol (`UnsupportedProtocol`) is sniffed (`ListenerProtocolAuto`);
//! - UDP gets no inbound chain (the sidecar never captures UDP);
//! - a port no Service declares is left to the passthrough chains, sniffed as well.
//!
//! Two Services naming the same target port: pilot keeps the oldest
//! (`reportInboundConflict`); registry order stands in for creation time here, as file order
//! does elsewhere. A Service selects the workload when one of its endpoints is the workload:
//! same namespace, labels (non-empty) all among the workload's, and the same service account
//! when the endpoint names one (pilot finds a proxy's `ServiceTargets` by its IP; a sidecar
//! here knows its labels, not its address). The target port is the endpoint's port for the
//! service port (`targetPort`, resolved by the registry), as pilot keys chains by
//! `TargetPort`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use trellis_engine::config::PortProtocol;

use super::{Registry, ServiceEndpoint, ServicePort, Workload};

/// How the capture inbound listener serves one workload port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundProtocol {
    Http,
    Tcp,
    /// Unknown: the first bytes decide.
    Detect,
}

impl InboundProtocol {
    /// The engine's name for it.
    pub fn engine(self) -> PortProtocol {
        match self {
            InboundProtocol::Http => PortProtocol::Http,
            InboundProtocol::Tcp => PortProtocol::Tcp,
            InboundProtocol::Detect => PortProtocol::Detect,
        }
    }

    /// As `trellis explain` says it.
    pub fn describe(self) -> &'static str {
        match self {
            InboundProtocol::Http => "HTTP",
            InboundProtocol::Tcp => "TCP",
            InboundProtocol::Detect => "detected (HTTP if the first bytes are, else TCP)",
        }
    }
}

/// The protocol a service port gives its target port (`None`: UDP, no inbound chain). A
/// port without `protocol` is read from its name (and well-known number) as
/// `kube.ConvertProtocol` does.
pub fn protocol_of(port: &ServicePort) -> Option<InboundProtocol> {
    let named = port
        .protocol
        .clone()
        .or_else(|| crate::plane::services::port_protocol(port.number, &port.name, None, None));
    let Some(name) = named else {
        return Some(InboundProtocol::Detect);
    };
    Some(match name.to_ascii_lowercase().as_str() {
        "udp" => return None,
        "http" | "http2" | "grpc" | "grpc-web" | "http_proxy" => InboundProtocol::Http,
        "tcp" | "tls" | "https" | "mongo" | "mysql" | "redis" => InboundProtocol::Tcp,
        _ => InboundProtocol::Detect,
    })
}

/// The Service port that gives a workload target port its protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredPort {
    pub protocol: InboundProtocol,
    /// The Service's host.
    pub service: String,
    pub port: ServicePort,
}

/// Target port → protocol for the capture listener of `workload`, from the registry's
/// Services that select it (first Service wins a port). Ports left out are detected.
pub fn inbound_protocols(
    registry: &Registry,
    workload: &Workload,
) -> BTreeMap<u16, InboundProtocol> {
    (declared_ports(registry, workload).into_iter())
        .map(|(target, declared)| (target, declared.protocol))
        .collect()
}

/// Target port → the Service port that declares it, for the capture listener of `workload`
/// (see [`inbound_protocols`]).
pub fn declared_ports(registry: &Registry, workload: &Workload) -> BTreeMap<u16, DeclaredPort> {
    let mut out = BTreeMap::new();
    for service in registry
        .services
        .iter()
        .filter(|s| s.namespace == workload.namespace)
    {
        for endpoint in service
            .endpoints
            .iter()
            .filter(|e| is_workload(e, workload))
        {
            for port in &service.ports {
                let Some(protocol) = protocol_of(port) else {
                    continue;
                };
                out.entry(endpoint.target_port(port.number))
                    .or_insert_with(|| DeclaredPort {
                        protocol,
                        service: service.host.clone(),
                        port: port.clone(),
                    });
            }
        }
    }
    out
}

/// Whether `endpoint` is an instance of `workload` (see the module docs).
fn is_workload(endpoint: &ServiceEndpoint, workload: &Workload) -> bool {
    !endpoint.labels.is_empty()
        && (endpoint.labels.iter()).all(|(k, v)| workload.labels.get(k) == Some(v))
        && (endpoint.service_account.as_ref()).is_none_or(|sa| *sa == workload.service_account)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::Service;

    fn port(number: u16, name: &str, protocol: Option<&str>) -> ServicePort {
        ServicePort {
            number,
            name: name.into(),
            protocol: protocol.map(str::to_string),
        }
    }

    fn endpoint(labels: &[(&str, &str)], ports: &[(u16, u16)]) -> ServiceEndpoint {
        let mut e = ServiceEndpoint::new("10.1.0.7".parse().unwrap(), labels);
        e.ports = ports.iter().copied().collect();
        e
    }

    fn service(name: &str, ports: Vec<ServicePort>, endpoints: Vec<ServiceEndpoint>) -> Service {
        Service {
            host: format!("{name}.default.svc.cluster.local"),
            namespace: "default".into(),
            ports,
            endpoints,
        }
    }

    fn db_workload() -> Workload {
        Workload::new("default", &[("app", "db"), ("version", "v1")])
    }

    /// ModelProtocolToListenerProtocol (pilot/pkg/networking/networking.go) over
    /// kube.ConvertProtocol: HTTP family → HTTP, IsTCP → TCP, Unsupported → auto (detect),
    /// UDP → no chain.
    #[test]
    fn protocols_as_model_protocol_to_listener_protocol() {
        let cases = [
            (port(80, "http-web", None), Some(InboundProtocol::Http)),
            (port(80, "x", Some("GRPC")), Some(InboundProtocol::Http)),
            (port(80, "grpc-web-x", None), Some(InboundProtocol::Http)),
            (port(9000, "tcp-echo", None), Some(InboundProtocol::Tcp)),
            (port(6379, "redis", None), Some(InboundProtocol::Tcp)),
            (port(443, "x", Some("HTTPS")), Some(InboundProtocol::Tcp)),
            (port(3306, "db", None), Some(InboundProtocol::Tcp)), // well-known MySQL port
            (port(9000, "web", None), Some(InboundProtocol::Detect)),
            (port(9000, "", None), Some(InboundProtocol::Detect)),
            (port(53, "dns", Some("UDP")), None),
        ];
        for (p, want) in cases {
            assert_eq!(protocol_of(&p), want, "{p:?}");
        }
    }

    /// getFilterChainsByServicePort: chains are keyed by the target port, the oldest Service
    /// (first here) wins a port two Services name, and only Services selecting the workload
    /// count.
    #[test]
    fn target_ports_of_the_services_selecting_the_workload_first_wins() {
        let registry = Registry {
            services: vec![
                service(
                    "db",
                    vec![port(3306, "mysql", None), port(8080, "http-admin", None)],
                    vec![endpoint(&[("app", "db")], &[(3306, 13306)])],
                ),
                service(
                    "db-alias",
                    vec![port(13306, "http", None), port(9000, "metrics", None)],
                    vec![endpoint(&[("app", "db"), ("version", "v1")], &[])],
                ),
                service(
                    "other",
                    vec![port(7000, "tcp", None)],
                    vec![endpoint(&[("app", "web")], &[])],
                ),
            ],
            ..Registry::default()
        };
        let got = inbound_protocols(&registry, &db_workload());
        let want = BTreeMap::from([
            (8080, InboundProtocol::Http),
            (9000, InboundProtocol::Detect),
            (13306, InboundProtocol::Tcp),
        ]);
        assert_eq!(got, want);
        // Another namespace's workload with the same labels is not selected.
        assert!(inbound_protocols(&registry, &Workload::new("prod", &[("app", "db")])).is_empty());
    }

    /// An endpoint that names another service account, or has no labels, is not the workload.
    #[test]
    fn endpoints_of_other_accounts_or_without_labels_are_not_the_workload() {
        let mut e = endpoint(&[("app", "db")], &[]);
        e.service_account = Some("other".into());
        let registry = Registry {
            services: vec![service(
                "db",
                vec![port(3306, "mysql", None)],
                vec![e, endpoint(&[], &[])],
            )],
            ..Registry::default()
        };
        assert!(inbound_protocols(&registry, &db_workload()).is_empty());
    }
}
