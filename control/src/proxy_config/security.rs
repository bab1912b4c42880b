//! The proxy config file's security parts: the sidecar's identity (`identity:`), inbound
//! listeners in front of one workload port (`forwardTo`), and what PeerAuthentication and
//! auto mTLS make of them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use trellis_engine::config::{
    Cluster, Config, Endpoint, MeshIdentity, RetryPolicy, Route, RouteAction, RouteTable,
    VirtualHost, WeightedCluster,
};

use crate::diag::ConfigError;
use crate::translate::workload::DEFAULT_TRUST_DOMAIN;

/// `identity:`: the workload certificate, its key and the mesh's roots, as files (Istio's
/// file-mounted certificates: `cert-chain.pem`, `key.pem`, `root-cert.pem`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct IdentitySpec {
    pub cert_chain: Option<String>,
    pub key: Option<String>,
    pub root_cert: Option<String>,
    pub trust_domain: Option<String>,
}

impl IdentitySpec {
    /// The files named, resolved against `base`.
    pub fn files(&self, base: &Path) -> Vec<std::path::PathBuf> {
        [&self.cert_chain, &self.key, &self.root_cert]
            .into_iter()
            .flatten()
            .map(|p| base.join(p))
            .collect()
    }

    /// Read the files (relative to `base`). All three or none.
    pub fn load(
        &self,
        base: &Path,
        invalid: &dyn Fn(String, String) -> ConfigError,
    ) -> Result<Option<MeshIdentity>, ConfigError> {
        let read = |field: &str, path: &Option<String>| -> Result<Option<String>, ConfigError> {
            let Some(path) = path else { return Ok(None) };
            std::fs::read_to_string(base.join(path))
                .map(Some)
                .map_err(|e| invalid(format!("identity.{field}"), format!("{path}: {e}")))
        };
        let chain = read("certChain", &self.cert_chain)?;
        let key = read("key", &self.key)?;
        let root = read("rootCert", &self.root_cert)?;
        match (chain, key, root) {
            (None, None, None) => Ok(None),
            (Some(chain_pem), Some(key_pem), Some(bundle_pem)) => Ok(Some(MeshIdentity {
                chain_pem,
                key_pem,
                bundle_pem,
                trust_domain: self
                    .trust_domain
                    .clone()
                    .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_string()),
            })),
            _ => Err(invalid(
                "identity".into(),
                "certChain, key and rootCert go together".into(),
            )),
        }
    }
}

/// `forwardTo`: one workload port, or the workload at each connection's original port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ForwardTo {
    /// `IP:PORT`: every request goes there (`inbound|PORT||`).
    Port(SocketAddr),
    /// `IP`: the captured pod's inbound listener; the port is the one the client dialled.
    OriginalPort(std::net::IpAddr),
}

impl ForwardTo {
    pub fn parse(text: &str) -> Option<ForwardTo> {
        text.parse()
            .map(ForwardTo::Port)
            .or_else(|_| text.parse().map(ForwardTo::OriginalPort))
            .ok()
    }
}

/// The route table of a capture inbound listener: no virtual host, so every request takes
/// the listener's passthrough to the local workload at its original port (Envoy's
/// `InboundPassthroughCluster`). Returns its name.
pub(super) fn add_inbound_passthrough(config: &mut Config) -> String {
    let table = "inbound|passthrough".to_string();
    if config.route_table(&table).is_none() {
        config.route_tables.push(RouteTable {
            name: table.clone(),
            validate_clusters: false,
            virtual_hosts: Vec::new(),
        });
    }
    table
}

/// The names Envoy gives an inbound cluster and its route table for a workload port.
pub(super) fn inbound_cluster_name(port: u16) -> String {
    format!("inbound|{port}||")
}

/// An inbound listener in front of the workload at `target`: a route table with one catch-all
/// route to a cluster holding `target` (istiod's `inbound|<port>||` cluster and its default
/// inbound route: no retries, no timeout). Returns the route table's name.
pub(super) fn add_inbound_target(config: &mut Config, target: SocketAddr) -> String {
    let cluster = inbound_cluster_name(target.port());
    let table = format!("inbound|{}", target.port());
    if config.route_table(&table).is_none() {
        config.clusters.push(Cluster {
            name: cluster.clone(),
            service: format!("inbound|{}", target.port()),
            endpoints: vec![Endpoint {
                address: target,
                weight: 1,
                labels: Default::default(),
                sidecar: false,
            }],
            ..Default::default()
        });
        config.route_tables.push(RouteTable {
            name: table.clone(),
            validate_clusters: false,
            virtual_hosts: vec![VirtualHost {
                name: "inbound|http".into(),
                domains: vec!["*".into()],
                routes: vec![Route {
                    name: "default".into(),
                    action: RouteAction::Forward(vec![WeightedCluster {
                        cluster,
                        weight: 100,
                        ..WeightedCluster::default()
                    }]),
                    retries: RetryPolicy {
                        attempts: 0,
                        ..RetryPolicy::default()
                    },
                    ..Route::default()
                }],
            }],
        });
    }
    table
}

/// Attach the identity; without one, auto mTLS has nothing to offer and stays plaintext.
pub(super) fn apply_identity(config: &mut Config, identity: Option<MeshIdentity>) {
    match &identity {
        None => crate::translate::upstream_tls::without_identity(config),
        Some(id) => crate::translate::upstream_tls::in_trust_domain(config, &id.trust_domain),
    }
    config.identity = identity.map(Arc::new);
}
