//! `explain` for a connection instead of a request: which L4 filter chain (a VirtualService
//! `tcp`/`tls` rule, or a TCP service's own chain) a connection to `host:port`, with an SNI
//! for TLS, takes on the calling sidecar, and where its bytes go.
//!
//! As for requests, the real pipeline decides: the directory is translated by the same
//! translator for the calling workload (pilot's static `sourceLabels`, `sourceNamespace`,
//! `gateways` and `port` checks, matchTCP/matchTLS in pilot/pkg/networking/core/tls.go), and
//! the engine's own filter-chain match ([`choose_chain`], Envoy's
//! `FilterChainManagerImpl::findFilterChain`) picks the chain. The registry comes from the YAML:
//! every host a VirtualService's `tcp` (or `tls`) rules name is a TCP (or TLS) service on the
//! ports those rules mention and on the port asked about.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Serialize;
use trellis_engine::proxy::choose_chain;

use crate::diag::{ConfigError, Diagnostic};
use crate::istio::ResourceSet;
use crate::translate::tcp_rules::{self, TcpRule, TlsRule};
use crate::translate::{
    hosts, translate_for, Registry, Service, ServicePort, Translation, Workload,
};

/// The connection to explain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionRequest {
    /// The host dialled (a service name, or an IP address: then `destinationSubnets` apply).
    pub host: String,
    pub port: u16,
    /// The ClientHello's server name, for TLS; `None`: plaintext or no SNI.
    pub sni: Option<String>,
    /// The ClientHello's ALPN protocols, in the client's order; empty: none offered.
    pub alpn: Vec<String>,
    pub source_labels: BTreeMap<String, String>,
    pub source_namespace: Option<String>,
    /// On a gateway port whose servers differ: whether the server the SNI chose terminates
    /// TLS (a TLS-terminated TCP server's chain) or passes it through; `None` elsewhere.
    pub terminated: Option<bool>,
}

/// What happens to one connection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectionReport {
    pub host: String,
    pub port: u16,
    pub sni: Option<String>,
    /// The ALPN protocols the ClientHello offered.
    pub alpn: Vec<String>,
    pub config_version: String,
    /// `matched`; `no_chain` (L4 chains exist for the port but none takes it: closed, NR);
    /// `not_l4` (no chain for the port: the connection is HTTP, see the request explain).
    pub outcome: ConnectionOutcome,
    /// Whether the choice waited for the ClientHello (its SNI, or its ALPN protocols).
    pub needs_sni: bool,
    /// The chains that could take it, by name, before the SNI step.
    pub candidates: Vec<String>,
    /// No chain took it, but chain `.0` would have with one of the ALPN protocols `.1`
    /// (an AUTO_PASSTHROUGH chain refusing a ClientHello without Istio's mTLS ALPNs).
    pub alpn_required: Option<(String, Vec<String>)>,
    pub chain: Option<ChainReport>,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionOutcome {
    Matched,
    NoChain,
    NotL4,
}

/// The chain taken.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChainReport {
    pub name: String,
    /// `<name>.<namespace>`; `None`: the service's own chain (no rule applies).
    pub virtual_service: Option<String>,
    /// `tcp[i]` or `tls[i]`.
    pub rule: Option<String>,
    pub service: String,
    pub sni_hosts: Vec<String>,
    /// The ALPN protocols the chain requires one of (Envoy `application_protocols`); empty:
    /// any.
    pub application_protocols: Vec<String>,
    pub destination_subnets: Vec<String>,
    pub destinations: Vec<ChainDestination>,
    pub idle_timeout: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChainDestination {
    pub cluster: String,
    pub weight: u32,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub subset: Option<String>,
}

/// Explain `req` against loaded resources.
pub fn explain_connection(
    set: &ResourceSet,
    req: &ConnectionRequest,
) -> Result<ConnectionReport, ConfigError> {
    if req.port == 0 {
        return Err(ConfigError::Request("a connection needs a port".into()));
    }
    let client = Workload {
        namespace: (req.source_namespace.clone())
            .unwrap_or_else(|| crate::istio::DEFAULT_NAMESPACE.to_string()),
        labels: req.source_labels.clone(),
        ..Workload::default()
    };
    let registry = l4_registry(set, (&req.host, &client.namespace), req.port);
    let t = translate_for(set, &registry, &client);
    // No service addresses in the registry: a name dials an address no prefix contains.
    let ip = req
        .host
        .parse::<IpAddr>()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let on = ("outbound", true);
    Ok(connection_on(t, on, SocketAddr::new(ip, req.port), req))
}

/// The chain `req` takes on listener `on` (its name, and whether it is outbound) of a
/// translation, by the engine's own filter-chain match, for a connection to `dst`.
pub(crate) fn connection_on(
    t: Translation,
    on: (&str, bool),
    dst: SocketAddr,
    req: &ConnectionRequest,
) -> ConnectionReport {
    let routes = &t.config.tcp_routes;
    let hello = (req.sni.as_deref(), req.alpn.as_slice());
    let choice = choose_chain(routes, on, dst, &req.source_labels, hello, req.terminated);
    // Refused for its ALPN only: the same hello offering every protocol the chains list.
    let alpn_required = choice.chosen.is_none().then(|| {
        let listed: Vec<String> = (choice.candidates.iter())
            .flat_map(|&i| routes[i].application_protocols.iter().cloned())
            .collect();
        let offering = (req.sni.as_deref(), listed.as_slice());
        let with = choose_chain(
            routes,
            on,
            dst,
            &req.source_labels,
            offering,
            req.terminated,
        );
        let route = with.chosen.and_then(|i| routes.get(i))?;
        Some((route.name.clone(), route.application_protocols.clone()))
    });
    let alpn_required = alpn_required.flatten();
    let outcome = match (choice.candidates.is_empty(), choice.chosen) {
        (true, _) => ConnectionOutcome::NotL4,
        (false, None) => ConnectionOutcome::NoChain,
        (false, Some(_)) => ConnectionOutcome::Matched,
    };
    let chain = choice.chosen.and_then(|i| {
        let route = routes.get(i)?;
        let origin = t.tcp_routes.get(i)?;
        Some(ChainReport {
            name: route.name.clone(),
            virtual_service: origin.virtual_service.clone(),
            rule: (origin.rule.as_ref()).map(|(section, i)| format!("{section}[{i}]")),
            service: origin.service.clone(),
            sni_hosts: route.sni_hosts.clone(),
            application_protocols: route.application_protocols.clone(),
            destination_subnets: route
                .destination_subnets
                .iter()
                .map(|c| c.to_string())
                .collect(),
            destinations: (route.destinations.iter())
                .map(|d| {
                    let o = t.clusters.get(&d.cluster);
                    ChainDestination {
                        cluster: d.cluster.clone(),
                        weight: d.weight,
                        host: o.map(|o| o.host.clone()),
                        port: o.map(|o| o.port),
                        subset: o.and_then(|o| o.subset.clone()),
                    }
                })
                .collect(),
            idle_timeout: route.idle_timeout.map(|d| format!("{d:?}")),
        })
    });
    ConnectionReport {
        host: req.host.clone(),
        port: req.port,
        sni: req.sni.clone(),
        alpn: req.alpn.clone(),
        config_version: t.config.version.clone(),
        outcome,
        needs_sni: choice.needs_sni,
        candidates: (choice.candidates.iter())
            .filter_map(|&i| routes.get(i).map(|r| r.name.clone()))
            .collect(),
        alpn_required,
        chain,
        diagnostics: t.diagnostics,
    }
}

/// Services for the hosts of VirtualServices with `tcp`/`tls` rules and the hosts those rules
/// route to: TCP (or TLS) ports at every port the rules name, and the host asked about
/// (`asked`, resolved in the client's namespace) at `request_port` too.
pub(crate) fn l4_registry(set: &ResourceSet, asked: (&str, &str), request_port: u16) -> Registry {
    let asked = hosts::resolve(asked.0, asked.1);
    // host → (namespace, port → protocol)
    let mut found: BTreeMap<String, (String, BTreeMap<u16, &'static str>)> = BTreeMap::new();
    let mut note = |host: &str, ns: &str, ports: &BTreeSet<u16>, protocol: &'static str| {
        if host.is_empty() || host.contains('*') {
            return;
        }
        let entry = (found.entry(hosts::resolve(host, ns)))
            .or_insert_with(|| (ns.to_string(), BTreeMap::new()));
        for &p in ports {
            entry.1.entry(p).or_insert(protocol);
        }
    };
    for vs in &set.virtual_services {
        let ns = vs.namespace();
        let mut ignored = Vec::new();
        let tcp: Vec<(usize, TcpRule)> = tcp_rules::parse(&vs.spec.tcp, "tcp", &mut ignored);
        let tls: Vec<(usize, TlsRule)> = tcp_rules::parse(&vs.spec.tls, "tls", &mut ignored);
        let sections = [
            (
                "TCP",
                tcp.iter()
                    .map(|(_, r)| (&r.matches, &r.route))
                    .collect::<Vec<_>>(),
            ),
            (
                "TLS",
                tls.iter().map(|(_, r)| (&r.matches, &r.route)).collect(),
            ),
        ];
        for (protocol, rules) in sections {
            if rules.is_empty() {
                continue;
            }
            let mut ports = BTreeSet::new();
            for (matches, _) in &rules {
                ports.extend(
                    (matches.iter())
                        .filter_map(|m| m.port.and_then(|p| u16::try_from(p).ok()))
                        .filter(|&p| p > 0),
                );
            }
            for h in &vs.spec.hosts {
                let mut at = ports.clone();
                if hosts::resolve(h, ns) == asked {
                    at.insert(request_port);
                }
                note(h, ns, &at, protocol);
            }
            for (_, route) in &rules {
                for d in route.iter() {
                    let mut at = ports.clone();
                    if let Some(p) = (d.destination.port.as_ref())
                        .and_then(|p| u16::try_from(p.number).ok())
                        .filter(|&p| p > 0)
                    {
                        at.insert(p);
                    }
                    note(&d.destination.host, ns, &at, protocol);
                }
            }
        }
    }
    let services = found
        .into_iter()
        .filter(|(_, (_, ports))| !ports.is_empty())
        .map(|(host, (namespace, ports))| Service {
            host,
            namespace,
            ports: (ports.into_iter())
                .map(|(number, protocol)| ServicePort {
                    number,
                    name: format!("{}-{number}", protocol.to_ascii_lowercase()),
                    protocol: Some(protocol.to_string()),
                })
                .collect(),
            endpoints: Vec::new(),
        })
        .collect();
    Registry {
        services,
        ..Default::default()
    }
}

impl fmt::Display for ConnectionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Connection: {}:{}", self.host, self.port)?;
        match &self.sni {
            Some(sni) => write!(f, " (SNI {sni})")?,
            None => write!(f, " (no SNI)")?,
        }
        match self.alpn.as_slice() {
            [] => writeln!(f, ", no ALPN")?,
            alpn => writeln!(f, ", ALPN {}", alpn.join(", "))?,
        }
        writeln!(f, "Config version: {}", self.config_version)?;
        if !self.candidates.is_empty() {
            writeln!(f, "Chains for the port: {}", self.candidates.join(", "))?;
        }
        match (&self.outcome, &self.chain) {
            (ConnectionOutcome::NotL4, _) => writeln!(
                f,
                "Not an L4 connection: no TCP or TLS chain serves port {}; it is proxied as HTTP",
                self.port
            )?,
            (ConnectionOutcome::NoChain, _) => {
                writeln!(
                    f,
                    "No chain takes it{}: the connection is closed (NR)",
                    if self.needs_sni {
                        " (by the ClientHello)"
                    } else {
                        ""
                    }
                )?;
                if let Some((chain, alpn)) = &self.alpn_required {
                    writeln!(
                        f,
                        "  chain {chain} takes this SNI but requires one of the ALPN protocols {}",
                        alpn.join(", ")
                    )?;
                }
            }
            (ConnectionOutcome::Matched, Some(c)) => {
                write!(f, "Chain: {}", c.name)?;
                match (&c.virtual_service, &c.rule) {
                    (Some(vs), Some(rule)) => writeln!(f, " from VirtualService {vs} {rule}")?,
                    _ => writeln!(f, " (service {}'s own chain; no rule applies)", c.service)?,
                }
                if !c.sni_hosts.is_empty() {
                    writeln!(f, "  sniHosts: {}", c.sni_hosts.join(", "))?;
                }
                if !c.application_protocols.is_empty() {
                    writeln!(f, "  ALPN (one of): {}", c.application_protocols.join(", "))?;
                }
                if !c.destination_subnets.is_empty() {
                    writeln!(
                        f,
                        "  destinationSubnets: {}",
                        c.destination_subnets.join(", ")
                    )?;
                }
                for d in &c.destinations {
                    write!(f, "  -> {} weight {}", d.cluster, d.weight)?;
                    if let Some(subset) = &d.subset {
                        write!(f, " (subset {subset})")?;
                    }
                    writeln!(f)?;
                }
                if c.destinations.is_empty() {
                    writeln!(f, "  no destination: connections are closed (UH)")?;
                }
                match &c.idle_timeout {
                    Some(t) => writeln!(f, "  idle timeout: {t}")?,
                    None => writeln!(f, "  idle timeout: none")?,
                }
            }
            (ConnectionOutcome::Matched, None) => writeln!(f, "Chain: (unknown)")?,
        }
        for d in self
            .diagnostics
            .iter()
            .filter(|d| d.severity == crate::diag::Severity::Error)
        {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "l4_tests.rs"]
mod tests;
