//! `explain --gateway`: how a gateway proxy (`trellis proxy --gateway --labels ...`) would take
//! a request or a connection on one of its ports: which Gateway server serves the port (and,
//! by host or SNI, which of its servers), whether TLS is terminated there and how, then which
//! bound VirtualService rule routes it (an HTTP port: the engine's router and its trace, or 404
//! NR), or which L4 chain takes it (a TCP/TLS port: the engine's filter-chain match on the
//! ClientHello's SNI and ALPN protocols, or closed).
//!
//! As for a sidecar, nothing is re-implemented: the resources are translated by the gateway
//! translator the proxy runs ([`translate_gateway`]), the servers are merged by the same
//! [`merge_gateways`], and the engine decides. The registry comes from the YAML, as for the
//! sidecar's explain. The gateway is taken to hold a mesh identity, so that `ISTIO_MUTUAL`
//! servers are explained rather than refused (a proxy without `identity:` refuses them).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Serialize;

use super::l4::{connection_on, l4_registry, ConnectionReport, ConnectionRequest};
use super::{explain_on, registry_from, split_host_port, ExplainReport, ExplainRequest};
use crate::diag::{ConfigError, Diagnostic, Severity};
use crate::istio::ResourceSet;
use crate::translate::gateway::l4::is_l4;
use crate::translate::gateway::merge::{merge_gateways, MergedServer, ServerPort};
use crate::translate::gateway::mixed;
use crate::translate::gateway::tls;
use crate::translate::hosts::host_covers;
use crate::translate::{precedence_order, translate_gateway, GatewayOptions, Registry};
use trellis_engine::transport::tls::termination::server_for_sni;

/// What one filter chain asks of its clients, e.g. `Required` or `Required, pinned (1
/// SPKI, 0 certificate hashes)`.
fn chain_clients(chain: &trellis_engine::transport::policy::ServerCertificate) -> String {
    let mut text = format!("{:?}", chain.clients);
    if !chain.pins.is_empty() {
        text.push_str(&format!(
            ", pinned ({} SPKI, {} certificate hashes)",
            chain.pins.spki.len(),
            chain.pins.hash.len()
        ));
    }
    text
}

/// What the gateway does with one request or connection on one port.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GatewayReport {
    pub labels: BTreeMap<String, String>,
    /// The Gateway server port asked about.
    pub port: u16,
    /// The listener serving it; `None`: no Gateway server is on the port (connection refused).
    pub listener: Option<String>,
    /// The server the host (or SNI) falls to.
    pub server: Option<ServerReport>,
    /// What the filter chain the SNI selects asks of clients (`NotRequested` for `SIMPLE`,
    /// `Required` for `MUTUAL`, `Optional` for `OPTIONAL_MUTUAL`, `Mesh` for `ISTIO_MUTUAL`,
    /// and its certificate pins), each chain's when none is selected; `None` when the port
    /// does not terminate TLS.
    pub tls: Option<String>,
    /// A terminating port where no server's filter chain takes the SNI (the host, or the
    /// `--sni` given): the SNI, and the connection is closed before any request.
    pub no_filter_chain: Option<String>,
    /// An HTTP (or HTTPS) port: the route.
    pub request: Option<ExplainReport>,
    /// A TCP or TLS port: the chain.
    pub connection: Option<ConnectionReport>,
    pub diagnostics: Vec<Diagnostic>,
}

/// One Gateway server.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerReport {
    /// `namespace/name`.
    pub gateway: String,
    /// Its index in `spec.servers`, and its `name` when it has one.
    pub index: usize,
    pub name: Option<String>,
    pub hosts: Vec<String>,
    /// How the server is served, e.g. `Https(IstioMutual { .. })` or `AutoPassthrough`.
    pub mode: String,
}

/// Explain `req` (on Gateway port `req.port`, default 80; for a TLS connection, `hello` is its
/// ClientHello's SNI and ALPN protocols) as the gateway proxy with `opts` would serve it.
pub fn explain_gateway(
    set: &ResourceSet,
    opts: &GatewayOptions,
    req: &ExplainRequest,
    hello: (Option<&str>, &[String]),
) -> Result<GatewayReport, ConfigError> {
    let (sni, alpn) = hello;
    let (host, host_port) = split_host_port(&req.host);
    let port = req.port.or(host_port).unwrap_or(80);
    let opts = GatewayOptions {
        has_identity: true,
        port_offset: 0,
        ..opts.clone()
    };
    let registry = gateway_registry(set, port);
    let t = translate_gateway(set, &registry, &opts);
    let mut merged_diags = Vec::new();
    let gateways = precedence_order(&set.gateways);
    let credentials = crate::istio::secret::Credentials {
        secrets: &set.secrets,
        namespace: &opts.namespace,
    };
    let ports = merge_gateways(
        &gateways,
        &opts.labels,
        true,
        credentials,
        &mut merged_diags,
    );
    let served = ports.iter().find(|p| p.number == port);
    let listener = (t.config.listeners.iter()).find(|l| l.address.port() == port);
    let mut report = GatewayReport {
        labels: opts.labels.clone(),
        port,
        listener: listener.map(|l| l.name.clone()),
        server: None,
        // Every chain's, until the SNI picks one.
        tls: (listener.and_then(|l| l.tls.as_ref())).map(|tls| {
            let chains: Vec<String> = (tls.servers.iter())
                .map(|c| format!("{:?}: {}", c.hosts, chain_clients(c)))
                .collect();
            chains.join("; ")
        }),
        request: None,
        connection: None,
        no_filter_chain: None,
        diagnostics: Vec::new(),
    };
    let (Some(listener), Some(served)) = (listener, served) else {
        report.diagnostics = t.diagnostics;
        return Ok(report);
    };
    let name = sni.unwrap_or(host).to_ascii_lowercase();
    // Whether the connection is taken at L4: the chosen server's own kind on a terminating
    // port (a TLS-terminated TCP or passthrough server next to HTTPS ones), else the port's.
    let mut l4 = is_l4(&served.mode);
    let mut terminated = None;
    if listener.tls.is_some() {
        // A terminating port: the ClientHello's SNI picks one server's filter chain, as the
        // proxy does (curl sends the host it dials as SNI).
        let hosts: Vec<Vec<String>> = (served.servers.iter())
            .map(|m| {
                (m.server.hosts.iter())
                    .map(|h| strip_namespace(h).to_string())
                    .collect()
            })
            .collect();
        match server_for_sni(&hosts, Some(&name)) {
            Some(i) => {
                let terminates = |m: &MergedServer<'_>| mixed::terminates(&tls::mode(m.server));
                let chosen = served.servers.get(i);
                let passed_through = chosen.is_some_and(|m| !terminates(m));
                l4 = chosen.is_some_and(|m| is_l4(&tls::mode(m.server)));
                terminated = Some(!passed_through);
                // Client certificates are asked for by the chosen chain alone; a PASSTHROUGH
                // chain (`translate::gateway::mixed`) terminates nothing. The listener's
                // terminating chains are the port's terminating servers, in order.
                let chain_index = (served.servers.iter().take(i))
                    .filter(|m| terminates(m))
                    .count();
                let chain = (listener.tls.as_ref())
                    .and_then(|t| t.servers.get(chain_index))
                    .filter(|_| !passed_through);
                report.tls = chain.map(chain_clients);
                report.server = served
                    .servers
                    .get(i)
                    .and_then(|m| server_report(m, &gateways))
            }
            None => {
                report.no_filter_chain = Some(name);
                report.diagnostics = t.diagnostics;
                return Ok(report);
            }
        }
    } else {
        report.server = server_for(served, &name, &gateways);
    }
    if l4 {
        let conn = ConnectionRequest {
            host: host.to_string(),
            port,
            sni: sni.map(str::to_string),
            alpn: alpn.to_vec(),
            source_labels: BTreeMap::new(),
            source_namespace: None,
            terminated,
        };
        let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        let on = (listener.name.clone(), false);
        report.connection = Some(connection_on(t, (&on.0, on.1), dst, &conn));
    } else {
        let scheme = if listener.tls.is_some() {
            "https"
        } else {
            "http"
        };
        // A terminated HTTPS server routes with its own table, that of the chain the SNI took.
        let own = (listener.tls.as_ref()).and_then(|tls| {
            let hosts: Vec<Vec<String>> = tls.servers.iter().map(|s| s.hosts.clone()).collect();
            let chain = server_for_sni(&hosts, Some(&name))?;
            tls.servers.get(chain)?.route_table.clone()
        });
        let table = own.unwrap_or_else(|| listener.route_table.clone());
        let mut explained = explain_on(&t, &table, scheme, req, req.host.clone(), port)?;
        explained.diagnostics = Vec::new();
        report.request = Some(explained);
        report.diagnostics = t.diagnostics;
    }
    Ok(report)
}

/// The server of `port` whose hosts take `name` (the request's host or the SNI), else the
/// port's first (a request no server names is still served by the port's listener).
fn server_for(
    port: &ServerPort<'_>,
    name: &str,
    gateways: &[&crate::istio::Resource<crate::istio::GatewaySpec>],
) -> Option<ServerReport> {
    let takes = |hosts: &[String]| {
        (hosts.iter()).any(|h| host_covers(&strip_namespace(h).to_ascii_lowercase(), name))
    };
    let merged = (port.servers.iter())
        .find(|m| takes(&m.server.hosts))
        .or(port.servers.first())?;
    server_report(merged, gateways)
}

/// `namespace/host` → `host`.
fn strip_namespace(host: &str) -> &str {
    host.rsplit_once('/').map_or(host, |(_, h)| h)
}

/// The report of `merged`, one of a port's servers.
fn server_report(
    merged: &MergedServer<'_>,
    gateways: &[&crate::istio::Resource<crate::istio::GatewaySpec>],
) -> Option<ServerReport> {
    let index = (gateways.iter())
        .filter(|g| g.source.qualified_name() == merged.gateway)
        .find_map(|g| (g.spec.servers.iter()).position(|s| std::ptr::eq(s, merged.server)))
        .unwrap_or(0);
    Some(ServerReport {
        gateway: merged.gateway.clone(),
        index,
        name: merged.server.name.clone().filter(|n| !n.is_empty()),
        hosts: merged.server.hosts.clone(),
        // The server's own: a port's servers may differ in mode.
        mode: format!("{:?}", tls::mode(merged.server)),
    })
}

/// The sidecar explain's registry (hosts the HTTP routes name) with the TCP/TLS services the
/// `tcp`/`tls` rules name.
fn gateway_registry(set: &ResourceSet, port: u16) -> Registry {
    let mut registry = registry_from(set, None);
    for svc in l4_registry(set, ("", ""), port).services {
        match registry.services.iter_mut().find(|s| s.host == svc.host) {
            Some(known) => known.ports = svc.ports,
            None => registry.services.push(svc),
        }
    }
    registry
}

impl fmt::Display for GatewayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<String> = (self.labels.iter())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(f, "Gateway proxy: {}, port {}", labels.join(","), self.port)?;
        let Some(listener) = &self.listener else {
            writeln!(
                f,
                "No Gateway server selecting these labels is on port {}: the connection is refused",
                self.port
            )?;
            return errors(f, &self.diagnostics);
        };
        writeln!(f, "Listener: {listener}")?;
        if let Some(s) = &self.server {
            write!(f, "Server: {} servers[{}]", s.gateway, s.index)?;
            if let Some(name) = &s.name {
                write!(f, " ({name:?})")?;
            }
            writeln!(f, " hosts {:?}, served as {}", s.hosts, s.mode)?;
        }
        match &self.tls {
            Some(tls) => writeln!(f, "TLS: terminated here, clients {tls}")?,
            None => writeln!(f, "TLS: not terminated here")?,
        }
        if let Some(sni) = &self.no_filter_chain {
            writeln!(
                f,
                "No server on port {} serves SNI {sni:?} (and none has host \"*\"): the gateway \
                 closes the connection during the handshake (no filter chain match)",
                self.port
            )?;
        }
        if let Some(request) = &self.request {
            write!(f, "{request}")?;
        }
        if let Some(connection) = &self.connection {
            write!(f, "{connection}")?;
        }
        errors(f, &self.diagnostics)
    }
}

fn errors(f: &mut fmt::Formatter<'_>, diagnostics: &[Diagnostic]) -> fmt::Result {
    for d in diagnostics.iter().filter(|d| d.severity == Severity::Error) {
        writeln!(f, "  {d}")?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
