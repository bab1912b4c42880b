//! VirtualService `tcp[]` and `tls[]` rules as typed values, and which service ports Istio
//! proxies at L4.
//!
//! The resource keeps these rules as raw YAML (`analyze` reads them so); translation reads them
//! here, and a rule whose shape is wrong is reported and left out instead of stopping the rest.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::registry::ServicePort;
use crate::istio::virtual_service::Destination;

/// Istio `TCPRoute`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TcpRule {
    #[serde(rename = "match")]
    pub matches: Vec<L4Match>,
    pub route: Vec<RouteDestination>,
}

/// Istio `TLSRoute`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TlsRule {
    #[serde(rename = "match")]
    pub matches: Vec<L4Match>,
    pub route: Vec<RouteDestination>,
}

/// Istio `L4MatchAttributes` and `TLSMatchAttributes` (the latter adds `sniHosts`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct L4Match {
    pub destination_subnets: Vec<String>,
    pub port: Option<u32>,
    pub source_labels: BTreeMap<String, String>,
    pub gateways: Vec<String>,
    pub source_namespace: Option<String>,
    pub sni_hosts: Vec<String>,
}

/// Istio `RouteDestination`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct RouteDestination {
    pub destination: Destination,
    pub weight: Option<i32>,
}

/// Parse `rules` (a VirtualService's raw `tcp` or `tls`), reporting each bad one by its
/// index; the good ones come back with theirs.
pub fn parse<T: serde::de::DeserializeOwned>(
    rules: &[serde_yaml::Value],
    section: &str,
    bad: &mut Vec<crate::diag::Diagnostic>,
) -> Vec<(usize, T)> {
    let mut out = Vec::new();
    for (i, raw) in rules.iter().enumerate() {
        match serde_yaml::from_value::<T>(raw.clone()) {
            Ok(rule) => out.push((i, rule)),
            Err(e) => bad.push(
                crate::diag::Diagnostic::error(format!("rule left out: {e}"))
                    .field(format!("spec.{section}[{i}]")),
            ),
        }
    }
    out
}

/// How Istio proxies a service port (protocol.Instance's IsTCP and IsTLS in
/// pkg/config/protocol/instance.go, the protocol from the port's `protocol`, else its name's
/// prefix as kube.ConvertProtocol reads it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP, Mongo, Redis, MySQL: `tcp[]` rules, else the service's cluster.
    Tcp,
    /// TLS, HTTPS: `tls[]` rules by SNI, else the service's cluster for its own host name.
    Tls,
}

/// `None`: HTTP (or sniffed, which Trellis serves as HTTP).
pub fn l4_of(port: &ServicePort) -> Option<L4> {
    let from_name = port.name.split('-').next().unwrap_or("");
    let protocol = port.protocol.as_deref().unwrap_or(from_name);
    match protocol.to_ascii_lowercase().as_str() {
        "tcp" | "mongo" | "redis" | "mysql" => Some(L4::Tcp),
        "tls" | "https" => Some(L4::Tls),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, protocol: Option<&str>) -> ServicePort {
        ServicePort {
            number: 1,
            name: name.into(),
            protocol: protocol.map(str::to_string),
        }
    }

    /// IsTCP: TCP, HTTPS, TLS, Mongo, Redis, MySQL; IsTLS: HTTPS, TLS (instance.go).
    #[test]
    fn tcp_and_tls_protocols_as_istio_reads_them() {
        assert_eq!(l4_of(&port("x", Some("TCP"))), Some(L4::Tcp));
        assert_eq!(l4_of(&port("x", Some("Mongo"))), Some(L4::Tcp));
        assert_eq!(l4_of(&port("tcp-echo", None)), Some(L4::Tcp));
        assert_eq!(l4_of(&port("mysql", None)), Some(L4::Tcp));
        assert_eq!(l4_of(&port("x", Some("HTTPS"))), Some(L4::Tls));
        assert_eq!(l4_of(&port("tls-db", None)), Some(L4::Tls));
        assert_eq!(l4_of(&port("http-web", None)), None);
        assert_eq!(
            l4_of(&port("tcp", Some("HTTP"))),
            None,
            "protocol wins over name"
        );
        assert_eq!(l4_of(&port("x", Some("GRPC"))), None);
    }
}
