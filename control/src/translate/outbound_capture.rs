//! The port table of a sidecar's outbound capture listener (15001 behind `trellis init`):
//! for each port the services it sees have, whether a redirected connection there is
//! sniffed or TCP, as pilot decides which outbound listener serves that port
//! (`buildSidecarOutboundListener` in pilot/pkg/networking/core/listener.go, the port's
//! protocol from `ModelProtocolToListenerProtocol`):
//! - an HTTP-family port becomes a wildcard listener whose HTTP chain matches the plaintext
//!   HTTP ALPNs next to a TCP fallthrough, i.e. sniffed ("Unsupported"); so does a port of
//!   unknown protocol (`ListenerProtocolAuto`), and a port an HTTP and a TCP service share
//!   (`HTTPOverTCP` / `TCPOverHTTP`: merged and sniffed);
//! - a port only TCP-family services have gets their TCP chains and no inspector;
//! - UDP gets no listener; a port no service has is left out, so the engine's catch-all
//!   (PassthroughCluster or BlackHoleCluster) takes it as TCP
//!   ([`trellis_engine::config::OutboundCapture`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use trellis_engine::config::{Config, Direction, OutboundCapture, PortProtocol};

use super::inbound_protocols::{protocol_of, InboundProtocol};
use super::registry::Service;

/// Service port → protocol for redirected outbound connections, from `services` (the
/// services and ServiceEntry hosts the sidecar sees).
pub fn outbound_ports(services: &[Service]) -> BTreeMap<u16, PortProtocol> {
    let mut out = BTreeMap::new();
    for port in services.iter().flat_map(|s| &s.ports) {
        let Some(protocol) = protocol_of(port) else {
            continue;
        };
        let sniffed = protocol != InboundProtocol::Tcp;
        let entry = out.entry(port.number).or_insert(PortProtocol::Tcp);
        if sniffed {
            *entry = PortProtocol::Detect;
        }
    }
    out
}

/// Whether `listener` is a sidecar's outbound listener (not a gateway's, not a capture
/// inbound one), the kind that capture redirects outbound connections to, and that the mesh
/// config's outbound traffic policy governs.
pub fn is_sidecar_outbound(listener: &trellis_engine::config::Listener) -> bool {
    listener.direction == Direction::Outbound
        && listener.local_forward.is_none()
        && listener.edge.is_none()
}

/// Give every sidecar outbound listener of `config` the port table `ports`, with its
/// detection timeout from `timeout_for` (the listener's name → MeshConfig
/// `protocolDetectionTimeout`, pilot's `ListenerFiltersTimeout` on listeners that sniff).
pub fn attach(
    config: &mut Config,
    ports: &BTreeMap<u16, PortProtocol>,
    timeout_for: impl Fn(&str) -> Option<Duration>,
) {
    for listener in config
        .listeners
        .iter_mut()
        .filter(|l| is_sidecar_outbound(l))
    {
        listener.outbound_capture = Some(Arc::new(OutboundCapture {
            ports: ports.clone(),
            detection_timeout: timeout_for(&listener.name),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::registry::ServicePort;

    fn service(ports: &[(u16, &str, Option<&str>)]) -> Service {
        Service {
            host: "s.default.svc.cluster.local".into(),
            namespace: "default".into(),
            ports: (ports.iter())
                .map(|&(number, name, protocol)| ServicePort {
                    number,
                    name: name.into(),
                    protocol: protocol.map(str::to_string),
                })
                .collect(),
            endpoints: Vec::new(),
        }
    }

    /// buildSidecarOutboundListener: HTTP on a wildcard bind gets the plaintext HTTP ALPNs
    /// and a fallthrough (sniffed), Auto is sniffed, TCP is not, an HTTP and a TCP service on
    /// one port are merged and sniffed (`HTTPOverTCP`), UDP has no listener.
    #[test]
    fn ports_as_pilot_builds_their_outbound_listeners() {
        let services = [
            service(&[(9080, "http", None), (3306, "mysql", None)]),
            service(&[(8000, "web", None), (5353, "dns", Some("UDP"))]),
            service(&[(27017, "mongo", None), (7000, "tcp-a", None)]),
            service(&[(7000, "http-b", None)]),
        ];
        let got = outbound_ports(&services);
        assert_eq!(
            got,
            BTreeMap::from([
                (3306, PortProtocol::Tcp),
                (7000, PortProtocol::Detect),
                (8000, PortProtocol::Detect),
                (9080, PortProtocol::Detect),
                (27017, PortProtocol::Tcp),
            ])
        );
    }

    /// Only a sidecar's outbound listeners get the table: not an inbound one, a capture
    /// inbound one, or a gateway's.
    #[test]
    fn attached_to_sidecar_outbound_listeners_only() {
        let yaml = "listeners:
  - {name: outbound, address: \"0.0.0.0:15001\", direction: outbound}
  - {name: inbound, address: \"0.0.0.0:15006\", direction: inbound, forwardTo: \"127.0.0.1\"}
services:
  - host: reviews
    ports: [9080]
    endpoints: [{address: \"127.0.0.1:9081\"}]
";
        let dir = std::env::temp_dir().join(format!("trellis-oc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.yaml");
        std::fs::write(&path, yaml).unwrap();
        let loaded = crate::proxy_config::load_proxy_config(&path).expect("loads");
        let table = |name: &str| {
            let l = loaded
                .config
                .listeners
                .iter()
                .find(|l| l.name == name)
                .unwrap();
            l.outbound_capture.clone()
        };
        let outbound = table("outbound").expect("the outbound listener has a table");
        assert_eq!(outbound.protocol_for(9080), PortProtocol::Detect);
        assert_eq!(outbound.protocol_for(25), PortProtocol::Tcp);
        assert!(table("inbound").is_none());
        std::fs::remove_dir_all(&dir).ok();
    }
}
