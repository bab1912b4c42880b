//! How a sidecar's outbound listener treats a connection that iptables redirected to it
//! (Istio's virtual outbound listener on 15001, fed by `trellis init`), by the port the
//! application dialled.
//!
//! Envoy hands such a connection (`use_original_dst`) to the listener for its original
//! destination, and pilot builds those per service port (`buildSidecarOutboundListener`,
//! pilot/pkg/networking/core/listener.go):
//! - a port some HTTP-family or unknown-protocol service has becomes a wildcard listener that
//!   sniffs (`http_inspector`; an HTTP service's chain gets the plaintext HTTP ALPNs, so the
//!   listener is "Unsupported"): HTTP goes to the HTTP routes, anything else to the TCP
//!   chains of that port, if any;
//! - a port only TCP-family services have gets those TCP chains, never sniffed (a
//!   server-first protocol such as MySQL must not wait for a client byte);
//! - a port no service has gets no listener: the virtual outbound listener's own catch-all
//!   chain takes the connection (`buildOutboundCatchAllNetworkFilterChains`,
//!   listener_builder.go), never parsed.
//!
//! Wherever no chain takes a non-HTTP connection (no chain for the port, or none for its
//! server name), Envoy uses the listener's default chain, pilot's `PassthroughFilterChain`
//! (`buildOutboundCatchAllNetworkFiltersOnly`): a `tcp_proxy` to `PassthroughCluster`, the
//! original destination, under `outboundTrafficPolicy: ALLOW_ANY` (the listener's
//! `passthrough`), or to `BlackHoleCluster`, which has no hosts and closes the connection
//! (flag UH), under `REGISTRY_ONLY`.
//!
//! A connection that was not redirected (an application that dials the listener itself,
//! Trellis's explicit-proxy mode) is HTTP as on any listener; this table is not consulted.

use std::collections::BTreeMap;
use std::time::Duration;

use super::PortProtocol;

/// pilot's name of the original-destination cluster of ALLOW_ANY (`util.PassthroughCluster`).
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// pilot's name of the cluster without hosts of REGISTRY_ONLY (`util.BlackHoleCluster`).
pub const BLACK_HOLE_CLUSTER: &str = "BlackHoleCluster";

/// A sidecar outbound listener's per-port protocols for redirected connections
/// ([`super::Listener::outbound_capture`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundCapture {
    /// Service port → protocol, for the ports of the services the sidecar sees:
    /// [`PortProtocol::Detect`] where an HTTP-family or unknown-protocol service has the port,
    /// [`PortProtocol::Tcp`] where only TCP-family ones do. A port not in it is
    /// [`PortProtocol::Tcp`]: the catch-all chain, never parsed.
    pub ports: BTreeMap<u16, PortProtocol>,
    /// MeshConfig `protocolDetectionTimeout`, as on the inbound side
    /// ([`super::InboundProtocols::detection_timeout`]): pilot sets it as the listener filter
    /// timeout of every outbound listener with an HTTP inspector.
    pub detection_timeout: Option<Duration>,
}

impl OutboundCapture {
    /// The protocol of a redirected connection to destination port `port`.
    pub fn protocol_for(&self, port: u16) -> PortProtocol {
        self.ports.get(&port).copied().unwrap_or(PortProtocol::Tcp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undeclared_port_is_tcp_and_never_sniffed() {
        let capture = OutboundCapture {
            ports: [(9080, PortProtocol::Detect), (3306, PortProtocol::Tcp)].into(),
            detection_timeout: None,
        };
        assert_eq!(capture.protocol_for(9080), PortProtocol::Detect);
        assert_eq!(capture.protocol_for(3306), PortProtocol::Tcp);
        assert_eq!(capture.protocol_for(25), PortProtocol::Tcp);
    }
}
