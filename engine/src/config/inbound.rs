//! The protocol of each workload port behind an inbound capture listener (Istio's virtual
//! inbound listener on 15006): which of HTTP, raw TCP, or "look at the first bytes" a
//! connection redirected there gets, by the port it was meant for.
//!
//! Pilot builds that listener's filter chains per port from the Services selecting the
//! workload (`buildInboundChainConfigs` / `getFilterChainMatchOptions` in
//! pilot/pkg/networking/core/listener_inbound.go and filterchain_options.go): an HTTP-family
//! port gets the HTTP connection manager, a TCP-family one the TCP proxy with network RBAC,
//! and a port of unknown protocol (and any port no Service declares: the
//! `buildInboundPassthroughChains` chains) is sniffed by Envoy's `http_inspector`: an
//! HTTP/1.x request line or the HTTP/2 preface makes it HTTP, anything else TCP.

use std::collections::BTreeMap;
use std::time::Duration;

/// How a capture listener treats connections for one workload port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortProtocol {
    /// HTTP, HTTP2, gRPC ...: the HTTP connection manager, as every port before this table.
    Http,
    /// TCP, TLS, HTTPS, Mongo, MySQL, Redis ...: bytes to the workload through the listener's
    /// L4 chain (a [`super::TcpRoute`] naming the listener), never parsed.
    Tcp,
    /// Unknown (Istio's `UnsupportedProtocol`) or undeclared: the first bytes decide (the
    /// engine's `http_sniff`, Envoy's `http_inspector`).
    Detect,
}

/// A capture listener's per-port protocols ([`super::Listener::inbound_protocols`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboundProtocols {
    /// Workload (target) port → protocol, from the Service ports selecting the workload.
    /// A port not in it is [`PortProtocol::Detect`], as Istio's inbound passthrough chains.
    pub ports: BTreeMap<u16, PortProtocol>,
    /// MeshConfig `protocolDetectionTimeout` (Envoy's `listener_filters_timeout` with
    /// `continue_on_listener_filters_timeout`): how long a [`PortProtocol::Detect`]
    /// connection that has sent nothing waits before it is taken as TCP. `None`: Istio's
    /// default of `0s`, no detection timeout; such a connection then waits as an idle HTTP
    /// connection does (`HttpSettings::idle_timeout`) and is closed after it.
    pub detection_timeout: Option<Duration>,
}

impl InboundProtocols {
    /// The protocol of connections for workload port `port`.
    pub fn protocol_for(&self, port: u16) -> PortProtocol {
        self.ports
            .get(&port)
            .copied()
            .unwrap_or(PortProtocol::Detect)
    }
}
