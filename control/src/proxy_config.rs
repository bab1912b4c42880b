//! The `trellis proxy --config FILE` format: listeners, a static service registry, and Istio
//! resources (inline and/or from paths), translated into one engine [`Config`].
//!
//! It exists so a single proxy can run without Kubernetes: the registry that the Kubernetes
//! source would watch is written out by hand, and the Istio YAML is the same users apply to a
//! cluster. Shape (see `deploy/examples/proxy.yaml` for a documented example):
//!
//! ```yaml
//! listeners:
//!   - {name: outbound, address: "127.0.0.1:15001", direction: outbound, passthrough: false}
//!     # passthrough: unknown hosts go to their original destination (Istio's ALLOW_ANY);
//!     # under `trellis control`, its MeshConfig outboundTrafficPolicy wins when it sets one
//!   - {name: inbound, address: "127.0.0.1:15006", direction: inbound, forwardTo: "127.0.0.1:9080"}
//!   - {name: db, address: "127.0.0.1:15007", direction: inbound, forwardTo: "127.0.0.1:27017", protocol: TCP}
//! identity:                    # optional: the sidecar's mesh certificate (mTLS)
//!   certChain: certs/cert-chain.pem   # from `trellis ca issue`, or Istio's mounted files
//!   key: certs/key.pem
//!   rootCert: certs/root-cert.pem
//!   trustDomain: cluster.local
//! services:
//!   - host: reviews            # short names live in `namespace` (default "default")
//!     ports: [9080]            # HTTP; or {number: 27017, name: mongo, protocol: TCP}
//!     endpoints:
//!       - {address: "127.0.0.1:9081", labels: {version: v1}}
//! http: {headerReadTimeout: 10s}   # optional connection-manager limits, and
//!                                 # pathNormalization: {normalization: BASE} (MeshConfig's)
//! istio:
//!   paths: [istio/]            # files or directories, relative to this file
//!   resources: [...]           # inline Istio documents
//! workload:                    # who this sidecar's workload is (policies select on it)
//!   namespace: default         # default "default"
//!   serviceAccount: reviews    # default "default"
//!   labels: {app: reviews, version: v1}
//! gateway:                     # optional: run as a gateway proxy instead of a sidecar
//!   labels: {istio: ingressgateway}   # the Gateways whose selector these match are served
//!   namespace: istio-system
//!   bindAddress: 127.0.0.1     # instead of 0.0.0.0 / each server's `bind`
//!   portOffset: 10000          # Gateway port 8080 listens on 18080
//!   numTrustedProxies: 0       # x-forwarded-for hops trusted (Istio's gatewayTopology)
//!   forwardClientCertDetails: SANITIZE_SET   # x-forwarded-client-cert (gatewayTopology's)
//! ```
//!
//! Inbound listeners take their mTLS mode from the PeerAuthentications that select the
//! `workload:` ([`crate::translate::peer_authn`]); `forwardTo: IP:PORT` puts one in front of a
//! single workload address (Istio's inbound cluster `inbound|<port>||`); `forwardTo: IP` (e.g.
//! `127.0.0.1`) makes it the captured pod's virtual inbound listener: every connection
//! `trellis init` redirected to it goes to that IP at the port the client dialled (Istio's
//! inbound passthrough), each port served as the `services:` whose endpoints are the
//! `workload:` declare it: HTTP, TCP (with network RBAC), or detected from the first bytes
//! for a port of unknown protocol or none declared (`translate::inbound_protocols`; the
//! listener's `protocolDetectionTimeout` is MeshConfig's); otherwise requests go where
//! their original destination says. An
//! inbound listener with `forwardTo: IP:PORT` and a non-HTTP `protocol` (TCP, TLS, MONGO ...)
//! proxies bytes under the workload's AuthorizationPolicies compiled for TCP (`inbound_l4`). With an `identity:`, clusters use a DestinationRule's
//! `tls` or auto mTLS ([`crate::translate::upstream_tls`]); without one, every connection is
//! plaintext (and a policy that requires mTLS is an error, and refuses connections).
//!
//! A gateway proxy's listeners come from the Gateways (one per server port, see
//! [`crate::translate::gateway`]); `listeners` may add more, naming a route table such as
//! `http.8080`. A gateway's `identity:` is the certificate its `ISTIO_MUTUAL` servers present
//! (and the roots their clients must chain to); without one those servers are refused. The
//! command line can turn gateway mode on and override these fields
//! ([`ProxyOverrides`]), so one directory of YAML serves both sidecars and the gateway. The
//! AuthorizationPolicies and RequestAuthentications that select the gateway's labels (or sit
//! in the root namespace) guard its listeners, as Istio's RBAC and jwt_authn filters do on a
//! gateway ([`crate::translate::gateway::security`]).
//!
//! Unknown keys are warnings; wrong types and invalid values are errors naming the file and
//! field path.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use trellis_engine::config::{Config, Direction, Listener};

use crate::diag::{ConfigError, Diagnostic, Severity};
use crate::istio::loader::format_path;
use crate::istio::{load_dir, load_file, parse_str, ResourceSet, DEFAULT_NAMESPACE};
use crate::translate::peer_authn;
use crate::translate::{
    authorization_for, hosts, translate_for, translate_gateway, Registry, Service, ServiceEndpoint,
    Workload, OUTBOUND_ROUTE_TABLE,
};
pub use gateway::ProxyOverrides;
use http_settings::http_settings;
use ports::PortSpec;
use shape::{DirectionSpec, FileShape, ServiceSpec};

/// A loaded proxy configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedConfig {
    pub config: Config,
    /// Diagnostics from loading and translation (unknown fields, IST0101 ...).
    pub warnings: Vec<Diagnostic>,
    /// Files the configuration names whose change should reload it: the identity's
    /// certificate chain, key and roots (renewal rewrites them).
    pub watched_files: Vec<std::path::PathBuf>,
    /// The workload this proxy stands in front of (the file's `workload:`; defaults:
    /// namespace `default`, service account `default`, no labels).
    pub workload: Workload,
}

const RESOURCE: &str = "proxy config";

/// Load and translate a proxy config file.
pub fn load_proxy_config(path: &Path) -> Result<LoadedConfig, ConfigError> {
    load_proxy_config_with(path, &ProxyOverrides::default())
}

/// Load and translate a proxy config file, with command-line overrides.
pub fn load_proxy_config_with(
    path: &Path,
    overrides: &ProxyOverrides,
) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_proxy_config_with(&text, &path.display().to_string(), base, overrides)
}

/// Parse proxy config text; `file` names it in messages, `base` resolves `istio.paths`.
pub fn parse_proxy_config(
    text: &str,
    file: &str,
    base: &Path,
) -> Result<LoadedConfig, ConfigError> {
    parse_proxy_config_with(text, file, base, &ProxyOverrides::default())
}

/// [`parse_proxy_config`] with command-line overrides.
pub fn parse_proxy_config_with(
    text: &str,
    file: &str,
    base: &Path,
    overrides: &ProxyOverrides,
) -> Result<LoadedConfig, ConfigError> {
    let mut warnings = Vec::new();
    let shape = read_shape(text, file, &mut warnings)?;
    let invalid = |field: String, message: String| ConfigError::Invalid {
        file: file.to_string(),
        line: None,
        resource: RESOURCE.to_string(),
        field,
        message,
    };

    let mut registry = registry_of(&shape.services, &invalid)?;
    let mut resources = ResourceSet::default();
    for p in &shape.istio.paths {
        let full = base.join(p);
        let set = if full.is_dir() {
            load_dir(&full)?
        } else {
            load_file(&full)?
        };
        resources.extend(set);
    }
    for (i, doc) in shape.istio.resources.iter().enumerate() {
        let label = format!("{file} (istio.resources[{i}])");
        let text = serde_yaml::to_string(doc)
            .map_err(|e| invalid(format!("istio.resources[{i}]"), e.to_string()))?;
        // Lines would count from the re-serialized document, not the file: drop them.
        let set = parse_str(&text, &label).map_err(|e| match e {
            ConfigError::Invalid {
                file,
                resource,
                field,
                message,
                ..
            } => ConfigError::Invalid {
                file,
                line: None,
                resource,
                field,
                message,
            },
            other => other,
        })?;
        resources.extend(set);
    }
    if let Some(dns) = &overrides.dns {
        let (answers, notes) = dns.answers_for(&crate::dns::names_to_resolve(&resources));
        registry.dns = answers;
        warnings.extend(notes.into_iter().map(|d| d.file(file.to_string())));
    }
    let identity = shape.identity.load(base, &invalid)?;
    let has_identity = identity.is_some();
    let gateway = overrides
        .gateway_options(shape.gateway.as_ref())
        .map(|opts| crate::translate::GatewayOptions {
            has_identity,
            ..opts
        });
    let translation = match &gateway {
        Some(opts) => translate_gateway(&resources, &registry, opts),
        None => translate_for(&resources, &registry, &shape.workload.workload()),
    };
    warnings.extend(translation.diagnostics);
    let outbound_ports = translation.outbound_ports;
    let mut config = translation.config;
    if let Some(opts) = &gateway {
        let service_account = shape.workload.service_account.as_deref();
        warnings.extend(crate::translate::gateway::security::secure_listeners(
            &mut config,
            &resources,
            opts,
            service_account,
            crate::jwks_resolver::JwksResolver::global(),
        ));
    }
    config.http = http_settings(&shape.http);
    let workload = shape.workload.workload();
    security::apply_identity(&mut config, identity);
    // AuthorizationPolicies guard the workload's inbound side (Istio's RBAC filters sit on the
    // sidecar's inbound listeners only); translated once, shared by every inbound listener.
    let inbound_authz = shape
        .listeners
        .iter()
        .any(|l| matches!(l.direction, DirectionSpec::Inbound))
        .then(|| authorization_for(&resources, &workload));
    if let Some(t) = &inbound_authz {
        warnings.extend(t.diagnostics.iter().cloned());
    }
    // RequestAuthentications, the same way: the loader is the control side here, so a
    // `jwksUri` is fetched now (cached per process) and the engine gets the keys.
    let inbound_authn = inbound_authz.is_some().then(|| {
        crate::translate::authentication_for(
            &resources,
            &workload,
            crate::jwks_resolver::JwksResolver::global(),
        )
    });
    if let Some(t) = &inbound_authn {
        warnings.extend(t.diagnostics.iter().cloned());
    }
    let mut seen = BTreeMap::new();
    for (i, l) in shape.listeners.iter().enumerate() {
        let address: SocketAddr = l.address.parse().map_err(|_| {
            invalid(
                format!("listeners[{i}].address"),
                format!("{:?} is not IP:PORT", l.address),
            )
        })?;
        if let Some(other) = seen.insert(address, i) {
            return Err(invalid(
                format!("listeners[{i}].address"),
                format!("{address} is already used by listeners[{other}]"),
            ));
        }
        if let Some(gw) = config.listeners.iter().find(|g| g.address == address) {
            return Err(invalid(
                format!("listeners[{i}].address"),
                format!(
                    "{address} is already used by the gateway listener {}",
                    gw.name
                ),
            ));
        }
        let direction = match l.direction {
            DirectionSpec::Outbound => Direction::Outbound,
            DirectionSpec::Inbound => Direction::Inbound,
        };
        let forward = match &l.forward_to {
            None => None,
            Some(_) if direction != Direction::Inbound => {
                return Err(invalid(
                    format!("listeners[{i}].forwardTo"),
                    "only inbound listeners forward to a workload".into(),
                ))
            }
            Some(t) => Some(security::ForwardTo::parse(t).ok_or_else(|| {
                invalid(
                    format!("listeners[{i}].forwardTo"),
                    format!(
                        "{t:?} is not IP:PORT (one workload port) or IP (the workload at \
                         each connection's original port)"
                    ),
                )
            })?),
        };
        let target = match forward {
            Some(security::ForwardTo::Port(target)) => Some(target),
            _ => None,
        };
        let local_forward = match forward {
            Some(security::ForwardTo::OriginalPort(ip)) => Some(ip),
            _ => None,
        };
        let route_table = match (forward, &l.route_table) {
            (Some(security::ForwardTo::Port(target)), None) => {
                security::add_inbound_target(&mut config, target)
            }
            (Some(security::ForwardTo::OriginalPort(_)), None) => {
                security::add_inbound_passthrough(&mut config)
            }
            (_, Some(table)) => table.clone(),
            (None, None) => OUTBOUND_ROUTE_TABLE.to_string(),
        };
        let mtls = if direction == Direction::Inbound {
            let mut diags = Vec::new();
            let mtls = peer_authn::inbound_mtls(
                &resources,
                &workload,
                has_identity,
                target.map(|t| t.port()),
                &mut diags,
            );
            warnings.extend(
                diags
                    .into_iter()
                    .map(|d| d.file(file).field(format!("listeners[{i}]"))),
            );
            mtls
        } else {
            Default::default()
        };
        if inbound_l4::is_l4(l.protocol.as_deref()) {
            let name = l.name.clone().unwrap_or_else(|| format!("listener-{i}"));
            let target = target.filter(|_| direction == Direction::Inbound);
            let chain = inbound_l4::chain(&name, target, &resources, &workload, &mut warnings);
            let why = || invalid(format!("listeners[{i}].protocol"), inbound_l4::NEEDS.into());
            config.tcp_routes.push(chain.ok_or_else(why)?);
        }
        let name = l.name.clone().unwrap_or_else(|| format!("listener-{i}"));
        let inbound_protocols = local_forward.map(|ip| {
            let timeout = l.protocol_detection_timeout.map(|t| t.0);
            let capture = inbound_l4::Capture { ip, timeout };
            capture.chains(
                &mut config,
                &name,
                (&registry, &resources, &workload),
                &mut warnings,
            )
        });
        if config.route_table(&route_table).is_none() {
            let tables: Vec<&str> = config
                .route_tables
                .iter()
                .map(|t| t.name.as_str())
                .collect();
            return Err(invalid(
                format!("listeners[{i}].routeTable"),
                format!("no route table {route_table:?} (tables: {tables:?})"),
            ));
        }
        config.listeners.push(Listener {
            tls: None,
            mtls,
            name,
            address,
            route_table,
            direction,
            // Capture's inbound listener exists to pass connections through to the workload.
            passthrough: l.passthrough || local_forward.is_some(),
            authorization: match l.direction {
                DirectionSpec::Inbound => {
                    inbound_authz.as_ref().and_then(|t| t.authorization.clone())
                }
                DirectionSpec::Outbound => None,
            },
            local_forward,
            inbound_protocols,
            outbound_capture: None,
            authentication: match l.direction {
                DirectionSpec::Inbound => inbound_authn
                    .as_ref()
                    .and_then(|t| t.authentication.clone()),
                DirectionSpec::Outbound => None,
            },
            edge: None,
        });
    }
    if gateway.is_none() {
        // Redirected outbound connections by port (HTTP sniffed, TCP, or the catch-all).
        let timeouts: BTreeMap<String, std::time::Duration> = (shape.listeners.iter().enumerate())
            .filter_map(|(i, l)| {
                let name = l.name.clone().unwrap_or_else(|| format!("listener-{i}"));
                Some((name, l.protocol_detection_timeout?.0))
            })
            .collect();
        crate::translate::outbound_capture::attach(&mut config, &outbound_ports, |name| {
            timeouts.get(name).copied()
        });
    }
    if config.listeners.is_empty() {
        warnings.push(
            Diagnostic::new(
                Severity::Warning,
                "no listeners: the proxy will accept nothing",
            )
            .file(file),
        );
    }
    Ok(LoadedConfig {
        config,
        warnings,
        watched_files: shape.identity.files(base),
        workload,
    })
}

fn read_shape(
    text: &str,
    file: &str,
    warnings: &mut Vec<Diagnostic>,
) -> Result<FileShape, ConfigError> {
    let mut unknown = Vec::new();
    let result: Result<FileShape, _> = {
        let de = serde_yaml::Deserializer::from_str(text);
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(format_path(&path));
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(de, &mut record))
    };
    let shape = result.map_err(|e| ConfigError::Invalid {
        file: file.to_string(),
        line: e.inner().location().map(|l| l.line()),
        resource: RESOURCE.to_string(),
        field: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    for field in unknown {
        warnings.push(
            Diagnostic::warning("unknown field, ignored")
                .file(file)
                .resource(RESOURCE)
                .field(field),
        );
    }
    Ok(shape)
}

fn registry_of(
    services: &[ServiceSpec],
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<Registry, ConfigError> {
    let mut registry = Registry::default();
    for (i, s) in services.iter().enumerate() {
        let namespace = s
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        if s.host.is_empty() {
            return Err(invalid(format!("services[{i}].host"), "missing".into()));
        }
        let host = hosts::resolve(&s.host, &namespace);
        if registry.service(&host).is_some() {
            return Err(invalid(
                format!("services[{i}].host"),
                format!("{host} is defined twice"),
            ));
        }
        if s.ports.is_empty() || s.ports.iter().any(|p| p.number() == 0) {
            return Err(invalid(
                format!("services[{i}].ports"),
                "needs at least one non-zero port".into(),
            ));
        }
        let mut endpoints = Vec::new();
        for (j, e) in s.endpoints.iter().enumerate() {
            let (address, default_port) = if let Ok(sa) = e.address.parse::<SocketAddr>() {
                (sa.ip(), Some(sa.port()))
            } else if let Ok(ip) = e.address.parse::<IpAddr>() {
                (ip, None)
            } else {
                return Err(invalid(
                    format!("services[{i}].endpoints[{j}].address"),
                    format!("{:?} is not IP or IP:PORT", e.address),
                ));
            };
            endpoints.push(ServiceEndpoint {
                address,
                ports: e.ports.clone(),
                default_port,
                labels: e.labels.clone(),
                weight: e.weight.unwrap_or(1).max(1),
                service_account: e.service_account.clone(),
                locality: e
                    .locality
                    .clone()
                    .or_else(|| crate::translate::locality::locality_from_labels(&e.labels)),
            });
        }
        registry.services.push(Service {
            host,
            namespace,
            ports: s.ports.iter().map(PortSpec::port).collect(),
            endpoints,
        });
    }
    Ok(registry)
}

mod gateway;
mod http_settings;
mod inbound_l4;
mod ports;
mod security;
mod shape;

#[cfg(test)]
mod tests;
