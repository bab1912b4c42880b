//! The proxy config file's `gateway:` section and the command line's overrides of it: when
//! a proxy runs as a gateway, and as which workload.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use crate::translate::GatewayOptions;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct GatewaySpec {
    labels: BTreeMap<String, String>,
    namespace: Option<String>,
    bind_address: Option<IpAddr>,
    port_offset: Option<u16>,
    /// Istio's `gatewayTopology.numTrustedProxies`.
    num_trusted_proxies: Option<u32>,
    /// Istio's `gatewayTopology.forwardClientCertDetails` (MeshConfig's enum names).
    forward_client_cert_details: Option<String>,
}

/// What the command line says over the file: gateway mode and its fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyOverrides {
    /// Run as a gateway proxy even without a `gateway:` section.
    pub gateway: bool,
    /// Gateway workload labels; added to (and replacing same keys of) the file's.
    pub labels: BTreeMap<String, String>,
    pub namespace: Option<String>,
    pub bind_address: Option<IpAddr>,
    pub port_offset: Option<u16>,
    /// Where names of DNS ServiceEntries are resolved (`None`: they are not, and such
    /// entries have no endpoints). The binary shares one cache with its DNS refresher.
    pub dns: Option<crate::dns::DnsHandle>,
}

impl ProxyOverrides {
    /// The gateway options, when the proxy is a gateway.
    pub(super) fn gateway_options(&self, file: Option<&GatewaySpec>) -> Option<GatewayOptions> {
        if file.is_none() && !self.gateway {
            return None;
        }
        let d = GatewayOptions::default();
        let mut labels = file.map(|f| f.labels.clone()).unwrap_or_default();
        labels.extend(self.labels.clone());
        Some(GatewayOptions {
            labels,
            namespace: self
                .namespace
                .clone()
                .or_else(|| file.and_then(|f| f.namespace.clone()))
                .unwrap_or(d.namespace),
            bind_address: self.bind_address.or(file.and_then(|f| f.bind_address)),
            port_offset: self
                .port_offset
                .or(file.and_then(|f| f.port_offset))
                .unwrap_or(d.port_offset),
            num_trusted_proxies: file
                .and_then(|f| f.num_trusted_proxies)
                .unwrap_or(d.num_trusted_proxies),
            forward_client_cert_details: file.and_then(|f| f.forward_client_cert_details.clone()),
            // Set by the loader once the `identity:` files are read.
            has_identity: false,
        })
    }
}
