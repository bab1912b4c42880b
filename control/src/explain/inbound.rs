//! `explain --tcp --inbound`: what the capture inbound listener (the sidecar's 15006 behind
//! `trellis init`) does with a connection redirected to one workload port: the protocol Istio
//! picks for the port and why, the filter chain that takes it, the PeerAuthentication mode
//! and the AuthorizationPolicies (network RBAC, and HTTP RBAC where the port can be HTTP).
//!
//! The real pipeline decides, as for outbound connections: the port table is
//! [`declared_ports`] (pilot's `getFilterChainsByServicePort` / `buildInboundChainConfigs` in
//! pilot/pkg/networking/core/listener_inbound.go, protocols from `kube.ConvertProtocol` and
//! `ModelProtocolToListenerProtocol`), the chains are [`add_capture_chains`]
//! (`buildInboundChainConfigs` + `buildInboundPassthroughChains`), the chain is picked by the
//! engine's own [`choose_chain`] and the protocol by its [`InboundProtocols::protocol_for`];
//! the mTLS mode is [`inbound_mtls`] (`ComposePeerAuthentication`, port-level by target port)
//! and the RBAC [`tcp_authorization_for`] (`Builder::BuildTCP`) / [`authorization_for`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde::Serialize;
use trellis_engine::authz::{Action, Authorization};
use trellis_engine::config::{Config, InboundProtocols};
use trellis_engine::proxy::choose_chain;

use crate::diag::{ConfigError, Diagnostic, Severity};
use crate::plane::snapshot::Snapshot;
use crate::plane::ADDRESSES_ANNOTATION;
use crate::translate::inbound_capture::add_capture_chains;
use crate::translate::inbound_protocols::{declared_ports, InboundProtocol};
use crate::translate::peer_authn::inbound_mtls;
use crate::translate::{authorization_for, tcp_authorization_for, Workload};

/// The capture listener's name while explaining (any name: chains are keyed by it).
const CAPTURE: &str = "virtualInbound";

/// The inbound connection to explain: to `port` of the workload in `namespace` whose labels
/// include `labels`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboundRequest {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub port: u16,
}

/// What the capture inbound listener does with one connection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InboundReport {
    pub workload: InboundWorkload,
    pub port: u16,
    pub protocol: InboundProtocol,
    /// Why that protocol, in words.
    pub why: String,
    /// The Service port that declares the target port; `None`: no Service does.
    pub declared_by: Option<DeclaringPort>,
    /// The L4 chain a TCP (or sniffed-as-TCP) connection takes: `inbound|P||`, or
    /// `InboundPassthroughCluster`; `None` for an HTTP port (the HTTP connection manager).
    pub chain: Option<String>,
    /// PeerAuthentication's mode on the port: `STRICT`, `PERMISSIVE` or `DISABLE`.
    pub mtls: String,
    /// The network RBAC filters in front of the TCP proxy (empty: none applies).
    pub network_rbac: Vec<RbacReport>,
    /// The HTTP RBAC filters, when the port is (or may be sniffed as) HTTP.
    pub http_rbac: Vec<RbacReport>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The workload explained.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InboundWorkload {
    /// The Pod (or Deployment replica) found for the labels; `None`: none, the labels alone.
    pub instance: Option<String>,
    pub namespace: String,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeclaringPort {
    pub service: String,
    pub port: u16,
    pub name: String,
    /// Kubernetes `appProtocol`, when the Service port has one (it wins over the name).
    pub app_protocol: Option<String>,
    /// Istio's protocol for the port (`None`: unknown, sniffed).
    pub protocol: Option<String>,
}

/// One RBAC filter: its action and the policies (`ns[..]-policy[..]-rule[..]`), enforced and
/// dry-run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RbacReport {
    pub action: String,
    pub policies: Vec<String>,
    pub shadow_policies: Vec<String>,
}

/// Explain `req` against a snapshot (Istio resources, Kubernetes Services and workloads).
pub fn explain_inbound(
    snapshot: &Snapshot,
    req: &InboundRequest,
) -> Result<InboundReport, ConfigError> {
    if req.port == 0 {
        return Err(ConfigError::Request(
            "an inbound connection needs a port".into(),
        ));
    }
    let (instance, workload) = find_workload(snapshot, req);
    let declared = declared_ports(&snapshot.registry, &workload);
    let ports = (declared.iter())
        .map(|(&port, d)| (port, d.protocol))
        .collect();
    let mut diagnostics = Vec::new();
    let tcp = tcp_authorization_for(&snapshot.resources, &workload);
    diagnostics.extend(tcp.diagnostics);
    let mut config = Config::default();
    let ip = (instance.as_ref())
        .and_then(|i| i.address.map(|a| a.ip))
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let table: Arc<InboundProtocols> = add_capture_chains(
        &mut config,
        CAPTURE,
        ip,
        &ports,
        None,
        tcp.authorization.clone(),
    );
    let protocol = match table.protocol_for(req.port) {
        trellis_engine::config::PortProtocol::Http => InboundProtocol::Http,
        trellis_engine::config::PortProtocol::Tcp => InboundProtocol::Tcp,
        trellis_engine::config::PortProtocol::Detect => InboundProtocol::Detect,
    };
    let dst = SocketAddr::new(ip, req.port);
    let chain = (protocol != InboundProtocol::Http)
        .then(|| {
            let choice = choose_chain(
                &config.tcp_routes,
                (CAPTURE, false),
                dst,
                &BTreeMap::new(),
                (None, &[]),
                None,
            );
            choice
                .chosen
                .and_then(|i| config.tcp_routes.get(i).map(|r| r.name.clone()))
        })
        .flatten();
    let http_rbac = if protocol == InboundProtocol::Tcp {
        Vec::new()
    } else {
        let http = authorization_for(&snapshot.resources, &workload);
        diagnostics.extend(http.diagnostics);
        rbac_report(http.authorization.as_deref())
    };
    let network_rbac = if protocol == InboundProtocol::Http {
        Vec::new()
    } else {
        rbac_report(tcp.authorization.as_deref())
    };
    let mtls = inbound_mtls(
        &snapshot.resources,
        &workload,
        true,
        Some(req.port),
        &mut diagnostics,
    );
    let declared_by = declared.get(&req.port).map(|d| DeclaringPort {
        service: d.service.clone(),
        port: d.port.number,
        name: d.port.name.clone(),
        app_protocol: app_protocol(snapshot, &d.service, d.port.number),
        protocol: d.port.protocol.clone(),
    });
    let mut why = why(req.port, protocol, declared_by.as_ref());
    if let Some(i) = instance.filter(|i| i.address.is_none() && declared_by.is_none()) {
        // The registry's endpoints are addressed instances, and the plane pushes the port
        // table from them (`plane::scope`), as pilot finds a proxy's Services by its IP.
        why.push_str(&format!(
            " ({} has no address, `{ADDRESSES_ANNOTATION}` or status.podIP, so it is no \
             Service's endpoint)",
            i.name
        ));
    }
    Ok(InboundReport {
        workload: InboundWorkload {
            instance: instance.map(|i| i.name.clone()),
            namespace: workload.namespace.clone(),
            service_account: workload.service_account.clone(),
            labels: workload.labels.clone(),
        },
        port: req.port,
        protocol,
        why,
        declared_by,
        chain,
        mtls: mtls.mode.to_string(),
        network_rbac,
        http_rbac,
        diagnostics,
    })
}

/// The first workload instance in the namespace whose labels include the request's (its
/// service account and injected labels count), else a workload of just those labels.
fn find_workload<'a>(
    snapshot: &'a Snapshot,
    req: &InboundRequest,
) -> (Option<&'a crate::plane::WorkloadInstance>, Workload) {
    let found = snapshot.workloads.iter().find(|i| {
        i.workload.namespace == req.namespace
            && (req.labels.iter()).all(|(k, v)| i.workload.labels.get(k) == Some(v))
    });
    match found {
        Some(i) => (Some(i), i.workload.clone()),
        None => (
            None,
            Workload {
                namespace: req.namespace.clone(),
                labels: req.labels.clone(),
                ..Workload::default()
            },
        ),
    }
}

/// The Kubernetes `appProtocol` of port `number` of the Service with host `host`.
fn app_protocol(snapshot: &Snapshot, host: &str, number: u16) -> Option<String> {
    let service = snapshot.kube.services.iter().find(|s| {
        host == format!(
            "{}.{}.{}",
            s.source.name,
            s.source.namespace,
            crate::translate::hosts::CLUSTER_SUFFIX
        )
    })?;
    let port = service
        .object
        .spec
        .ports
        .iter()
        .find(|p| p.port == number)?;
    port.app_protocol.clone()
}

/// Why the port has its protocol (`kube.ConvertProtocol`: `appProtocol`, else the port name's
/// prefix, else a well-known port number; none of them: unknown, sniffed).
fn why(port: u16, protocol: InboundProtocol, declared: Option<&DeclaringPort>) -> String {
    let Some(d) = declared else {
        return format!(
            "no Service selecting the workload declares target port {port}: the inbound \
             passthrough chains serve it, sniffed"
        );
    };
    let source = match (&d.app_protocol, &d.protocol) {
        (Some(app), _) => format!("appProtocol {app:?}"),
        (None, Some(p))
            if d.name
                .split('-')
                .next()
                .unwrap_or("")
                .eq_ignore_ascii_case(p) =>
        {
            format!("port name {:?}", d.name)
        }
        (None, Some(_)) if d.name.to_ascii_lowercase().starts_with("grpc-web") => {
            format!("port name {:?}", d.name)
        }
        (None, Some(p)) => format!("protocol {p} (port {})", d.port),
        (None, None) => format!("port name {:?} names no protocol", d.name),
    };
    let verdict = match (protocol, &d.protocol) {
        (InboundProtocol::Detect, _) => "unknown: sniffed".to_string(),
        (_, Some(p)) => format!("{p}, served as {}", protocol.describe()),
        (_, None) => protocol.describe().to_string(),
    };
    format!(
        "Service {} port {} ({source}): {verdict}",
        d.service, d.port
    )
}

fn rbac_report(authorization: Option<&Authorization>) -> Vec<RbacReport> {
    let names = |r: &Option<trellis_engine::authz::Rbac>| -> Vec<String> {
        (r.iter().flat_map(|r| r.policies.iter()))
            .map(|p| p.name.to_string())
            .collect()
    };
    let action = |filter: &trellis_engine::authz::RbacFilter| {
        let rbac = filter.rules.as_ref().or(filter.shadow.as_ref());
        match rbac.map(|r| r.action) {
            Some(Action::Allow) => "ALLOW",
            Some(Action::Deny) => "DENY",
            Some(Action::Log) => "AUDIT",
            None => "",
        }
        .to_string()
    };
    (authorization.iter().flat_map(|a| a.filters.iter()))
        .map(|f| RbacReport {
            action: action(f),
            policies: names(&f.rules),
            shadow_policies: names(&f.shadow),
        })
        .collect()
}

fn write_rbac(f: &mut fmt::Formatter<'_>, label: &str, filters: &[RbacReport]) -> fmt::Result {
    if filters.is_empty() {
        return writeln!(f, "{label}: none (every connection allowed)");
    }
    writeln!(f, "{label}:")?;
    for r in filters {
        write!(f, "  {}: {}", r.action, r.policies.join(", "))?;
        if !r.shadow_policies.is_empty() {
            write!(f, " (dry-run: {})", r.shadow_policies.join(", "))?;
        }
        writeln!(f)?;
    }
    Ok(())
}

impl fmt::Display for InboundReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.workload;
        write!(
            f,
            "Inbound connection (capture, 15006) to port {} of ",
            self.port
        )?;
        match &w.instance {
            Some(name) => writeln!(f, "{name} ({}/{})", w.namespace, w.service_account)?,
            None => writeln!(
                f,
                "a workload in {} (no Pod or Deployment has these labels; service account {})",
                w.namespace, w.service_account
            )?,
        }
        writeln!(f, "Protocol: {}", self.protocol.describe())?;
        writeln!(f, "  why: {}", self.why)?;
        match (&self.chain, self.protocol) {
            (_, InboundProtocol::Http) => writeln!(
                f,
                "Chain: the HTTP connection manager (HTTP RBAC, then routes)"
            )?,
            (Some(chain), _) => writeln!(f, "Chain: {chain} (network RBAC, then the TCP proxy)")?,
            (None, _) => writeln!(f, "Chain: none (the connection is closed)")?,
        }
        writeln!(f, "mTLS: {}", self.mtls)?;
        if self.protocol != InboundProtocol::Http {
            write_rbac(f, "Network RBAC", &self.network_rbac)?;
        }
        if self.protocol != InboundProtocol::Tcp {
            write_rbac(f, "HTTP RBAC", &self.http_rbac)?;
        }
        for d in (self.diagnostics.iter()).filter(|d| d.severity == Severity::Error) {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
