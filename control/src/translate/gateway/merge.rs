//! Which Gateways apply to a gateway proxy, and their servers merged into one listener per port.
//!
//! Several Gateways (bookinfo's and another team's, say) may put servers on the same port of
//! the same ingress workload; istiod merges them into one listener and one route table, and a
//! Gateway whose `selector` names other labels does not apply at all. This module makes those
//! decisions; `super::routes` builds each merged port's route table.

use std::collections::BTreeMap;

use crate::diag::Diagnostic;
use crate::istio::gateway::Server;
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

/// How a server's protocol is served.
enum Kind {
    /// HTTP, HTTP2, GRPC, GRPC-WEB, HTTP_PROXY: plain-text HTTP (protocol.IsHTTP).
    Http,
    /// HTTPS or TLS, or any server with a TLS `mode`: needs TLS, which Trellis lacks yet.
    Tls,
    /// TCP, MONGO, REDIS ...: not served by Trellis's gateway.
    Other,
}

fn kind(server: &Server) -> Kind {
    let protocol = server
        .port
        .as_ref()
        .map(|p| p.protocol.to_ascii_uppercase())
        .unwrap_or_default();
    let tls_mode = server.tls.as_ref().is_some_and(|t| t.mode.is_some());
    match protocol.as_str() {
        "HTTPS" | "TLS" => Kind::Tls,
        _ if tls_mode => Kind::Tls,
        "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTP_PROXY" => Kind::Http,
        _ => Kind::Other,
    }
}

/// The servers of the Gateways that select `labels`, merged per (port, bind) in Gateway order
/// (mergeGateways in pilot/pkg/model/gateway.go: plain-text HTTP servers on one port share its
/// listener and route table, `http.<port>`). Servers that cannot be served are reported, one
/// diagnostic each naming the server, and left out: a TLS server is refused rather than served
/// in plain text on its port, since TLS termination is not in the engine yet.
pub fn merge_gateways<'a>(
    gateways: &[&'a Resource<GatewaySpec>],
    labels: &BTreeMap<String, String>,
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
            match kind(server) {
                Kind::Http => {}
                Kind::Tls => {
                    diags.push(gw.diag(
                        Diagnostic::error(format!(
                            "{label} on port {number} ({}) needs TLS termination, which Trellis does not do yet; not served (never as plain text)",
                            port.protocol
                        ))
                        .field(at),
                    ));
                    continue;
                }
                Kind::Other => {
                    diags.push(gw.diag(
                        Diagnostic::warning(format!(
                            "{label} on port {number}: protocol {:?} is not served by Trellis's gateway (HTTP only); not served",
                            port.protocol
                        ))
                        .field(format!("{at}.port.protocol")),
                    ));
                    continue;
                }
            }
            if server.tls.as_ref().is_some_and(|t| t.https_redirect) {
                diags.push(gw.diag(
                    Diagnostic::error(format!(
                        "{label} on port {number}: tls.httpsRedirect is not implemented by Trellis; not served"
                    ))
                    .field(format!("{at}.tls.httpsRedirect")),
                ));
                continue;
            }
            let merged = MergedServer {
                gateway: name.clone(),
                gateway_namespace: gw.namespace(),
                server,
            };
            let bind = server.bind.clone().filter(|b| !b.is_empty());
            match ports
                .iter_mut()
                .find(|p| p.number == number && p.bind == bind)
            {
                Some(p) => p.servers.push(merged),
                None => ports.push(ServerPort {
                    number,
                    bind,
                    servers: vec![merged],
                }),
            }
        }
    }
    ports
}

/// `server "name"` or `servers[i]`, for messages.
fn server_label(server: &Server, index: usize) -> String {
    match server.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => format!("server {name:?} (servers[{index}])"),
        None => format!("server servers[{index}]"),
    }
}
