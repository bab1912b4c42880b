//! Inbound listeners whose workload port speaks TCP (or TLS, Mongo, MySQL, Redis ...): served by
//! a TCP proxy to the workload instead of the HTTP connection manager, as pilot builds an
//! inbound filter chain for a port whose protocol is not HTTP
//! (`buildInboundFilterchains` and `buildInboundNetworkFilters` in
//! pilot/pkg/networking/core/listener_inbound.go and networkfilter.go: the network RBAC filter
//! of `BuildTCP`, then `tcp_proxy` to `inbound|<port>||`). PeerAuthentication applies as on
//! an HTTP port: the listener's transport terminates mTLS (STRICT) or tells TLS from plaintext
//! (PERMISSIVE) before the TCP proxy sees a byte.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use trellis_engine::config::{Config, InboundProtocols, TcpDestination, TcpRoute};

use super::security::inbound_cluster_name;
use crate::diag::{Diagnostic, Severity};
use crate::istio::ResourceSet;
use crate::translate::inbound_capture::add_capture_chains;
use crate::translate::inbound_protocols::inbound_protocols;
use crate::translate::tcp_rules::l4_of;
use crate::translate::{tcp_authorization_for, Registry, ServicePort, Workload};

/// Whether an inbound listener's `protocol:` (Istio's protocol names, as a Service port's
/// `protocol` or name prefix: `TCP`, `TLS`, `MONGO` ...) makes it an L4 one. `None` or an
/// HTTP-family protocol: HTTP, as before.
pub(super) fn is_l4(protocol: Option<&str>) -> bool {
    protocol.is_some_and(|p| {
        l4_of(&ServicePort {
            number: 0,
            name: String::new(),
            protocol: Some(p.to_string()),
        })
        .is_some()
    })
}

/// Why a listener cannot be L4.
pub(super) const NEEDS: &str = "an L4 protocol needs an inbound listener with forwardTo: IP:PORT";

/// The L4 chain of inbound listener `listener` in front of the workload port `target` (`None`:
/// no single port to forward to, which an L4 listener needs): every connection goes to
/// `inbound|<port>||` (the cluster `add_inbound_target` made), guarded by the workload's
/// AuthorizationPolicies compiled for TCP. Their real errors are the HTTP compile's to
/// report; the TCP compile adds its skipped rules (info).
pub(super) fn chain(
    listener: &str,
    target: Option<SocketAddr>,
    resources: &ResourceSet,
    workload: &Workload,
    warnings: &mut Vec<Diagnostic>,
) -> Option<TcpRoute> {
    let target = target?;
    let authorization = tcp_rbac(resources, workload, warnings);
    let cluster = inbound_cluster_name(target.port());
    Some(TcpRoute {
        name: cluster.clone(),
        listener: Some(listener.to_string()),
        destinations: vec![TcpDestination { cluster, weight: 1 }],
        authorization,
        ..TcpRoute::default()
    })
}

/// The workload's AuthorizationPolicies compiled for TCP. Their real errors are the HTTP
/// compile's to report; the TCP compile adds its skipped rules (info).
fn tcp_rbac(
    resources: &ResourceSet,
    workload: &Workload,
    warnings: &mut Vec<Diagnostic>,
) -> Option<Arc<trellis_engine::authz::Authorization>> {
    let authz = tcp_authorization_for(resources, workload);
    let skipped = authz.diagnostics.into_iter();
    warnings.extend(skipped.filter(|d| d.severity == Severity::Info));
    authz.authorization
}

/// A capture inbound listener (`forwardTo: IP`): the workload's address and the listener's
/// `protocolDetectionTimeout`.
pub(super) struct Capture {
    pub ip: IpAddr,
    pub timeout: Option<Duration>,
}

impl Capture {
    /// Its per-port protocols, from the `services:` whose endpoints are the `workload:`
    /// (`translate::inbound_protocols`), and the L4 chains of its non-HTTP ports, guarded by
    /// the workload's AuthorizationPolicies compiled for TCP
    /// (`translate::inbound_capture`).
    pub fn chains(
        &self,
        config: &mut Config,
        listener: &str,
        (registry, resources, workload): (&Registry, &ResourceSet, &Workload),
        warnings: &mut Vec<Diagnostic>,
    ) -> Arc<InboundProtocols> {
        let ports = inbound_protocols(registry, workload);
        let rbac = tcp_rbac(resources, workload, warnings);
        add_capture_chains(config, listener, self.ip, &ports, self.timeout, rbac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// protocol.Parse and IsTCP in pkg/config/protocol/instance.go: TCP, TLS, HTTPS, Mongo,
    /// MySQL, Redis are proxied as bytes; HTTP, HTTP2, GRPC are not.
    #[test]
    fn which_protocols_make_an_inbound_port_l4() {
        for p in ["TCP", "tcp", "TLS", "HTTPS", "Mongo", "MYSQL", "redis"] {
            assert!(is_l4(Some(p)), "{p}");
        }
        for p in ["HTTP", "HTTP2", "GRPC"] {
            assert!(!is_l4(Some(p)), "{p}");
        }
        assert!(!is_l4(None));
    }
}
