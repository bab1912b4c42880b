//! Which Gateways apply to a gateway proxy, and their servers merged into one listener per port.
//!
//! Several Gateways (bookinfo's and another team's, say) may put servers on the same port of
//! the same ingress workload; istiod merges them into one listener and one route table, and a
//! Gateway whose `selector` names other labels does not apply at all. This module makes those
//! decisions; `super::routes` builds each merged port's route table.

use std::collections::BTreeMap;

use trellis_engine::transport::policy::ServerCertificate;

use super::tls::{self, ServerMode, Termination};
use crate::diag::Diagnostic;
use crate::istio::gateway::Server;
use crate::istio::secret::Credentials;
use crate::istio::{GatewaySpec, Resource};

/// One server of one Gateway, as merged onto a port.
pub struct MergedServer<'a> {
    /// The Gateway, `ns/name` (VirtualServices bind to this).
    pub gateway: String,
    pub gateway_namespace: &'a str,
    pub server: &'a Server,
}

/// The servers sharing one listener: the same port number and `bind`.
pub struct ServerPort<'a> {
    pub number: u16,
    pub bind: Option<String>,
    pub servers: Vec<MergedServer<'a>>,
    /// How the port's first server is served; every other server must match it (one
    /// listener cannot be both plain text and TLS).
    pub mode: ServerMode,
    /// The terminating servers' certificates, in server order (empty for plain text and
    /// passthrough).
    pub certificates: Vec<ServerCertificate>,
}

impl ServerPort<'_> {
    /// The route table's name, as Envoy's RDS name: `http.<port>[.<bind>]`
    /// (gatewayRDSRouteName in pilot/pkg/model/gateway.go).
    pub fn route_table_name(&self) -> String {
        match &self.bind {
            Some(bind) => format!("http.{}.{bind}", self.number),
            None => format!("http.{}", self.number),
        }
    }
}

/// Whether a Gateway with `selector` applies to a proxy with `labels`: an empty selector
/// applies to every gateway workload, otherwise each of its labels must be the proxy's
/// (PushContext.mergeGateways in pilot/pkg/model/push_context.go).
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The servers of the Gateways that select `labels`, merged per (port, bind) in Gateway order
/// (mergeGateways in pilot/pkg/model/gateway.go: plain-text HTTP servers on one port share its
/// listener and route table, `http.<port>`; HTTPS servers on one port share its TLS listener,
/// the certificate chosen by SNI). Servers that cannot be served are reported, one diagnostic
/// each naming the server, and left out: a TLS server that cannot be terminated is refused
/// rather than served in plain text on its port (an `ISTIO_MUTUAL` one when the proxy has no
/// mesh identity: `has_identity`).
pub fn merge_gateways<'a>(
    gateways: &[&'a Resource<GatewaySpec>],
    labels: &BTreeMap<String, String>,
    has_identity: bool,
    credentials: Credentials<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<ServerPort<'a>> {
    let mut ports: Vec<ServerPort<'a>> = Vec::new();
    for gw in gateways {
        if !selects(&gw.spec.selector, labels) {
            continue;
        }
        let name = gw.source.qualified_name();
        for (i, server) in gw.spec.servers.iter().enumerate() {
            let at = format!("spec.servers[{i}]");
            let label = server_label(server, i);
            let Some(port) = &server.port else {
                diags.push(
                    gw.diag(
                        Diagnostic::error(format!("{label} has no port; not served")).field(at),
                    ),
                );
                continue;
            };
            let number = match u16::try_from(port.number) {
                Ok(n) if n > 0 => n,
                _ => {
                    diags.push(
                        gw.diag(
                            Diagnostic::error(format!(
                                "{label}: port {} is out of range; not served",
                                port.number
                            ))
                            .field(format!("{at}.port.number")),
                        ),
                    );
                    continue;
                }
            };
            let mode = tls::mode(server);
            if let ServerMode::Refused(why) = &mode {
                diags.push(gw.diag(tls::refused(&label, number, why).field(at)));
                continue;
            }
            let bind = server.bind.clone().filter(|b| !b.is_empty());
            let existing = ports
                .iter()
                .position(|p| p.number == number && p.bind == bind);
            if let Some(p) = existing
                .map(|i| &ports[i])
                .filter(|p| !same_mode(&p.mode, &mode))
            {
                let why = format!(
                    "the port already serves {:?} from an earlier server; one port cannot mix plain text and TLS modes",
                    p.mode
                );
                diags.push(gw.diag(tls::refused(&label, number, &why).field(at)));
                continue;
            }
            let certificate = match mode {
                ServerMode::Https(ref t) | ServerMode::TlsTcp(ref t) => {
                    match tls::certificate(server, t, has_identity, credentials) {
                        Ok(c) => Some(c),
                        Err(why) => {
                            diags.push(gw.diag(tls::refused(&label, number, &why).field(at)));
                            continue;
                        }
                    }
                }
                _ => None,
            };
            let merged = MergedServer {
                gateway: name.clone(),
                gateway_namespace: gw.namespace(),
                server,
            };
            match existing {
                Some(i) => {
                    ports[i].servers.push(merged);
                    ports[i].certificates.extend(certificate);
                }
                None => ports.push(ServerPort {
                    number,
                    bind,
                    servers: vec![merged],
                    mode,
                    certificates: certificate.into_iter().collect(),
                }),
            }
        }
    }
    ports
}

/// Whether two servers can share a port: the same mode, whatever their `subjectAltNames`
/// (each server's own are enforced on its filter chain).
fn same_mode(a: &ServerMode, b: &ServerMode) -> bool {
    let kind = |m: &ServerMode| match m {
        ServerMode::Https(Termination::IstioMutual { .. }) => {
            ServerMode::Https(Termination::IstioMutual {
                subject_alt_names: Vec::new(),
            })
        }
        ServerMode::TlsTcp(Termination::IstioMutual { .. }) => {
            ServerMode::TlsTcp(Termination::IstioMutual {
                subject_alt_names: Vec::new(),
            })
        }
        other => other.clone(),
    };
    kind(a) == kind(b)
}

/// `server "name"` or `servers[i]`, for messages.
fn server_label(server: &Server, index: usize) -> String {
    match server.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => format!("server {name:?} (servers[{index}])"),
        None => format!("server servers[{index}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Servers of one port share its mode, but each keeps its own `subjectAltNames`: they
    /// are enforced on its own filter chain (pilot builds one chain per server,
    /// `buildGatewayListeners` in pilot/pkg/networking/core/gateway.go).
    #[test]
    fn servers_differing_only_in_subject_alt_names_share_a_port() {
        let istio = |sans: &[&str]| {
            ServerMode::Https(Termination::IstioMutual {
                subject_alt_names: sans.iter().map(|s| s.to_string()).collect(),
            })
        };
        assert!(same_mode(&istio(&["spiffe://td/ns/a/sa/x"]), &istio(&[])));
        assert!(!same_mode(
            &ServerMode::Https(Termination::Simple),
            &ServerMode::Https(Termination::Mutual)
        ));
        assert!(!same_mode(
            &istio(&[]),
            &ServerMode::TlsTcp(Termination::IstioMutual {
                subject_alt_names: Vec::new()
            })
        ));
    }
}
