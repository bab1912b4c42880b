//! IST0118 PortNameIsNotUnderNamingConvention and IST0150 ExternalNameServiceTypeInvalidPortName:
//! Service ports whose protocol Istio cannot tell.
//!
//! Istio picks a port's protocol from `appProtocol`, else from the name's prefix before the
//! first `-` (`http-web` is HTTP); a port it cannot classify is treated as opaque TCP, which
//! silently loses HTTP routing, so `service.PortNameAnalyzer` reports it. Ports `UDP`, and the
//! well-known TCP ports (SMTP 25, DNS 53, MySQL 3306, MongoDB 27017), need no name. An
//! `ExternalName` Service gets IST0150 instead, also for a port named plainly `tcp`. Services
//! of Istio's own control plane (label `istio`, or `release: istio`) and gateway-managed ones
//! are skipped, as Istio skips them.

use super::codes::{
    EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME, PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION,
};
use super::input::{Inputs, KubeServicePort};
use super::message::Message;

/// Protocol names Istio's `protocol.Parse` knows (case-insensitive).
const PROTOCOLS: [&str; 12] = [
    "tcp",
    "udp",
    "grpc",
    "grpc-web",
    "http",
    "http_proxy",
    "http2",
    "https",
    "tls",
    "mongo",
    "redis",
    "mysql",
];

/// Ports Istio treats as TCP without a name (`pkg/config/kube/conversion.go` wellKnownPorts).
const WELL_KNOWN_PORTS: [u32; 4] = [25, 53, 3306, 27017];

/// The `gateway.istio.io/managed` values of Services Istio creates itself.
const MANAGED_GATEWAY_CONTROLLERS: [&str; 3] = [
    "istio.io-gateway-controller",
    "istio.io-mesh-controller",
    "istio.io-eastwest-controller",
];

/// Whether Istio's `ConvertProtocol` classifies the port.
fn supported(port: &KubeServicePort) -> bool {
    if port.protocol.eq_ignore_ascii_case("UDP") {
        return true;
    }
    let name = match &port.app_protocol {
        Some(p) if p.starts_with("kubernetes.io/") => {
            return matches!(
                p.as_str(),
                "kubernetes.io/h2c" | "kubernetes.io/ws" | "kubernetes.io/wss"
            )
        }
        Some(p) => p.as_str(),
        None => port.name.as_str(),
    };
    if name.len() >= 8 && name[..8].eq_ignore_ascii_case("grpc-web") {
        return true;
    }
    let prefix = name.split('-').next().unwrap_or(name);
    PROTOCOLS.iter().any(|p| p.eq_ignore_ascii_case(prefix))
        || WELL_KNOWN_PORTS.contains(&port.port)
}

/// Run the check on every Service.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    for svc in &inputs.services {
        let control_plane = svc.labels.contains_key("istio")
            || svc.labels.get("release").is_some_and(|r| r == "istio");
        let managed = svc
            .labels
            .get("gateway.istio.io/managed")
            .is_some_and(|v| MANAGED_GATEWAY_CONTROLLERS.contains(&v.as_str()));
        if control_plane || managed {
            continue;
        }
        let external = svc.service_type == "ExternalName";
        for (i, port) in svc.ports.iter().enumerate() {
            if supported(port) && !(external && port.name == "tcp") {
                continue;
            }
            let m = if external {
                Message::new(
                    EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME,
                    "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly",
                )
            } else {
                Message::new(
                    PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION,
                    format!(
                        "Port name {} (port: {}, targetPort: {}) doesn't follow the naming convention of Istio port.",
                        port.name, port.port, port.target_port
                    ),
                )
            };
            out.push(inputs.blame(&svc.source, m.field(format!("spec.ports[{i}]"))));
        }
    }
}
