//! A service's `ports:` in the proxy config file: bare numbers are HTTP ports; a port written
//! out Kubernetes-style may say it is TCP, TLS, Mongo ... (by `protocol`, or its `name`'s
//! prefix as Istio reads port names), which makes it an L4 port (`translate::tcp`).

use serde::Deserialize;

use crate::translate::ServicePort;

/// A service port: a number (HTTP), or a Kubernetes-style port whose `protocol` (or `name`
/// prefix, as Istio reads port names) says TCP, TLS, Mongo ... for L4 proxying.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum PortSpec {
    Number(u16),
    Port {
        number: u16,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        protocol: Option<String>,
    },
}

impl PortSpec {
    pub(super) fn number(&self) -> u16 {
        match self {
            PortSpec::Number(n) | PortSpec::Port { number: n, .. } => *n,
        }
    }

    pub(super) fn port(&self) -> ServicePort {
        match self {
            PortSpec::Number(number) => ServicePort {
                number: *number,
                name: format!("http-{number}"),
                protocol: Some("HTTP".into()),
            },
            PortSpec::Port {
                number,
                name,
                protocol,
            } => ServicePort {
                number: *number,
                name: name.clone().unwrap_or_else(|| format!("port-{number}")),
                // Neither says: HTTP, as a bare number.
                protocol: protocol
                    .clone()
                    .or_else(|| name.is_none().then(|| "HTTP".to_string())),
            },
        }
    }
}
