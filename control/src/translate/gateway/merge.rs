//! Which Gateways apply to a gateway proxy, and their servers merged into one listener per port.
//!
//! Several Gateways (bookinfo's and another team's, say) may put servers on the same port of
//! the same ingress workload; istiod merges them into one listener and one route table, and a
//! Gateway whose `selector` names other labels does not apply at all. This module makes those
//! decisions; `super::routes` builds each merged port's route table.

use std::collections::{BTreeMap, BTreeSet};

use trellis_engine::transport::policy::ServerCertificate;

use super::sharing;
use super::tls::{self, ServerMode};
use crate::diag::Diagnostic;
use crate::istio::gateway::Server;
use crate::istio::secret::Credentials;
use crate::istio::{GatewaySpec, Resource};

/// One server of one Gateway, as merged onto a port.
#[derive(Clone)]
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
    /// How the port's first server is served; the others may join it as
    /// [`sharing::can_share`] says (one listener is never both plain text and TLS; terminated
    /// HTTPS servers of different modes share one, each with its own chain).
    pub mode: ServerMode,
    /// The terminating servers' certificates, in server order (empty for plain text and
    /// passthrough).
    pub certificates: Vec<ServerCertificate>,
    /// The route table's name when it is one server's own (an HTTPS server's,
    /// [`https_route_name`]); `None`: the port's, [`ServerPort::route_table_name`].
    pub route_name: Option<String>,
}

impl ServerPort<'_> {
    /// The route table's name, as Envoy's RDS name: `http.<port>[.<bind>]`
    /// (gatewayRDSRouteName in pilot/pkg/model/gateway.go).
    pub fn route_table_name(&self) -> String {
        if let Some(name) = &self.route_name {
            return name.clone();
        }
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
/// the filter chain, with its certificate and client requirement, chosen by SNI; see
/// [`sharing`] for which servers may share a port). Servers that cannot be served are reported, one diagnostic
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
    let mut claims = Claims::default();
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
            if let Err(why) = claims.claim(gw, server, number, &bind, &mode) {
                diags.push(gw.diag(Diagnostic::error(format!("{label}: {why}")).field(at)));
                continue;
            }
            let existing = ports
                .iter()
                .position(|p| p.number == number && p.bind == bind);
            let conflict = existing.and_then(|i| sharing::can_share(&ports[i].mode, &mode).err());
            if let Some(why) = conflict {
                diags.push(gw.diag(tls::refused(&label, number, &why).field(at)));
                continue;
            }
            let certificate = match mode {
                ServerMode::Https(ref t) | ServerMode::TlsTcp(ref t) => {
                    if let Some(why) = tls::ignored_pins(server, t) {
                        let message = format!("{label} on port {number}: {why}");
                        diags
                            .push(gw.diag(Diagnostic::warning(message).field(format!("{at}.tls"))));
                    }
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
                    // A port of passthrough servers that a terminated one joins terminates
                    // (its listener serves both kinds: `super::mixed`).
                    if let (
                        ServerMode::Passthrough | ServerMode::AutoPassthrough,
                        ServerMode::Https(_) | ServerMode::TlsTcp(_),
                    ) = (&ports[i].mode, &mode)
                    {
                        ports[i].mode = mode.clone();
                    }
                    ports[i].servers.push(merged);
                    ports[i].certificates.extend(certificate);
                }
                None => ports.push(ServerPort {
                    number,
                    bind,
                    servers: vec![merged],
                    mode,
                    certificates: certificate.into_iter().collect(),
                    route_name: None,
                }),
            }
        }
    }
    ports
}

/// What the TLS servers merged so far claim, for pilot's duplicate rules in MergeGateways
/// (pilot/pkg/model/gateway.go).
#[derive(Default)]
struct Claims {
    /// `tlsHostsByPort`: (port, bind) → the hosts of its TLS servers, as
    /// `sanitizeServerHostNamespace` writes them.
    tls_hosts: BTreeMap<(u16, Option<String>), BTreeSet<String>>,
    /// `serversByRouteName` for terminated HTTPS servers: (port, bind, route name).
    https_routes: BTreeSet<(u16, Option<String>, String)>,
}

impl Claims {
    /// Claim `server`'s hosts (and route name): `Err` with pilot's reason to skip it.
    fn claim(
        &mut self,
        gw: &Resource<GatewaySpec>,
        server: &Server,
        number: u16,
        bind: &Option<String>,
        mode: &ServerMode,
    ) -> Result<(), String> {
        if server.tls.is_none() {
            return Ok(());
        }
        // CheckDuplicates: one filter chain per SNI host, so a host already served by a TLS
        // server on this port and bind skips the whole server; none taken: all are claimed.
        let hosts: Vec<String> = (server.hosts.iter())
            .map(|h| sanitize_host(h, gw.namespace()))
            .collect();
        let known = self.tls_hosts.entry((number, bind.clone())).or_default();
        let duplicates: Vec<&str> = (hosts.iter())
            .filter(|h| known.contains(*h))
            .map(String::as_str)
            .collect();
        if !duplicates.is_empty() {
            return Err(format!(
                "duplicate host names {duplicates:?} on port {number}, already served by an \
                 earlier TLS server; not served (pilot skips the server)"
            ));
        }
        known.extend(hosts);
        // gatewayRDSRouteName: an HTTPS server's routes are `https.<port>.<portName>.<gw>.<ns>`;
        // a second server with the same name on the port is skipped ("non unique port name
        // for HTTPS port").
        let https =
            (server.port.as_ref()).is_some_and(|p| p.protocol.eq_ignore_ascii_case("HTTPS"));
        if let (ServerMode::Https(_), true) = (mode, https) {
            let port_name = server.port.as_ref().map_or("", |p| p.name.as_str());
            let route = https_route_name(number, server, &gw.source.qualified_name(), bind);
            if !self
                .https_routes
                .insert((number, bind.clone(), route.clone()))
            {
                return Err(format!(
                    "port name {port_name:?} is not unique among the HTTPS servers on port \
                     {number} (route {route}); not served"
                ));
            }
        }
        Ok(())
    }
}

/// The route table of a terminated server, as pilot's gatewayRDSRouteName names its RDS: for
/// protocol HTTPS `https.<port>.<portName>.<gatewayName>.<namespace>[.<bind>]` (`gateway`:
/// `ns/name`), its own; for an HTTP protocol with TLS the port's shared `http.<port>[.<bind>]`.
pub fn https_route_name(
    number: u16,
    server: &Server,
    gateway: &str,
    bind: &Option<String>,
) -> String {
    let bind = bind.as_ref().map_or(String::new(), |b| format!(".{b}"));
    let port = server.port.as_ref();
    if !port.is_some_and(|p| p.protocol.eq_ignore_ascii_case("HTTPS")) {
        return format!("http.{number}{bind}");
    }
    let port_name = port.map_or("", |p| p.name.as_str());
    let (namespace, name) = gateway.split_once('/').unwrap_or(("", gateway));
    format!("https.{number}.{port_name}.{name}.{namespace}{bind}")
}

/// A server host as `sanitizeServerHostNamespace` writes it: `./h` in the Gateway's namespace,
/// `*/h` as `h`, `*/*` as `*`.
fn sanitize_host(host: &str, namespace: &str) -> String {
    match host.split_once('/') {
        Some((".", h)) => format!("{namespace}/{h}"),
        Some(("*", "*")) => "*".to_string(),
        Some(("*", h)) => h.to_string(),
        _ => host.to_string(),
    }
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

    /// MergeGateways' CheckDuplicates (pilot/pkg/model/gateway.go): a TLS server repeating a
    /// host already served on its port and bind is skipped whole, with a message naming the
    /// hosts; another bind, or a plain-text server, may repeat it. `*/h` is `h`
    /// (sanitizeServerHostNamespace). Two HTTPS servers of one Gateway with one port name
    /// would share the route name `https.<port>.<portName>.<gw>.<ns>`: the second is skipped.
    #[test]
    fn duplicate_tls_hosts_and_https_route_names_skip_the_later_server() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: first, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [c.example.com]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: second, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*/a.example.com", b.example.com]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 443, name: https-b, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 443, name: https-bound, protocol: HTTPS}
    bind: 127.0.0.2
    hosts: [a.example.com]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [a.example.com]
"#;
        let set = crate::istio::parse_str(yaml, "t.yaml").expect("parses");
        let gateways: Vec<_> = set.gateways.iter().collect();
        let labels = BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]);
        let mut diags = Vec::new();
        let credentials = Credentials {
            secrets: &[],
            namespace: "istio-system",
        };
        let ports = merge_gateways(&gateways, &labels, true, credentials, &mut diags);
        let hosts = |number: u16, bind: Option<&str>| -> Vec<String> {
            (ports.iter())
                .filter(|p| p.number == number && p.bind.as_deref() == bind)
                .flat_map(|p| p.servers.iter().flat_map(|m| m.server.hosts.clone()))
                .collect()
        };
        assert_eq!(hosts(443, None), ["a.example.com", "b.example.com"]);
        assert_eq!(hosts(443, Some("127.0.0.2")), ["a.example.com"]);
        assert_eq!(hosts(80, None), ["a.example.com"]);
        let messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].contains("not unique among the HTTPS servers"),
            "{messages:?}"
        );
        assert!(messages[0].contains("https.443.https.first.istio-system"));
        assert!(
            messages[1].contains("duplicate host names [\"a.example.com\"]"),
            "{messages:?}"
        );
    }
}
