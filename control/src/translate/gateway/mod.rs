//! Istio resources + a service registry → the engine [`Config`] of a gateway proxy (an ingress
//! gateway such as bookinfo's `istio: ingressgateway`).
//!
//! A gateway proxy is not a sidecar: it serves the `servers` of the Gateways whose `selector`
//! matches its labels, one listener per server port, and routes only with the VirtualServices
//! bound to those Gateways (`spec.gateways`). The clusters are the sidecar's, so a route to
//! `productpage` reaches the same endpoints and DestinationRule policy. The binding rules are
//! istiod's, each in [`binding`], [`merge`] or [`routes`] with the pilot function it follows.
//!
//! Listeners bind `0.0.0.0:<port>` unless told otherwise: [`GatewayOptions`] can bind another
//! address and shift every port by an offset, so that tests and unprivileged users can serve
//! port 80 of a Gateway on, say, `127.0.0.1:18080`.

pub mod auto_passthrough;
pub mod binding;
pub mod l4;
pub mod merge;
pub mod mixed;
pub mod routes;
pub mod security;
pub mod sharing;
pub mod tls;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use trellis_engine::config::{Direction, EdgeHeaders, ForwardClientCert, Listener};

use crate::istio::secret::Credentials;

use super::{precedence_order, version_of, with_clusters, Registry, Translation};
use crate::diag::Diagnostic;
use crate::istio::ResourceSet;

/// Who the gateway proxy is and where it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayOptions {
    /// The proxy's workload labels, e.g. `istio=ingressgateway`: Gateways select by these.
    pub labels: BTreeMap<String, String>,
    /// The proxy's namespace (for `exportTo` and `sourceNamespace`).
    pub namespace: String,
    /// Listen on this address instead of each server's `bind` (default `0.0.0.0`).
    pub bind_address: Option<IpAddr>,
    /// Added to every server port number for the local listening port (the route tables and
    /// `match.port` still use the Gateway's numbers).
    pub port_offset: u16,
    /// Proxies in front of the gateway whose `x-forwarded-for` entries are trusted (Istio's
    /// `gatewayTopology.numTrustedProxies`; 0 = the client is the connection's peer).
    pub num_trusted_proxies: u32,
    /// `gatewayTopology.forwardClientCertDetails` as written (`None` or `UNDEFINED`: pilot's
    /// gateway default, SANITIZE_SET); an unknown name is reported and the default kept.
    pub forward_client_cert_details: Option<String>,
    /// The proxy holds a mesh identity (its `identity:` certificate): `ISTIO_MUTUAL` servers
    /// present it, and are refused without one.
    pub has_identity: bool,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            labels: BTreeMap::new(),
            namespace: "istio-system".to_string(),
            bind_address: None,
            port_offset: 0,
            num_trusted_proxies: 0,
            forward_client_cert_details: None,
            has_identity: false,
        }
    }
}

/// Translate `resources` against `registry` for the gateway proxy `opts` describes.
pub fn translate_gateway(
    resources: &ResourceSet,
    registry: &Registry,
    opts: &GatewayOptions,
) -> Translation {
    let place = super::ProxyPlace::of(&opts.labels, None);
    let (catalog, mut out, mut diags) = with_clusters(resources, registry, &place);
    let gateways = precedence_order(&resources.gateways);
    let credentials = Credentials {
        secrets: &resources.secrets,
        namespace: &opts.namespace,
    };
    let ports = merge::merge_gateways(
        &gateways,
        &opts.labels,
        opts.has_identity,
        credentials,
        &mut diags,
    );
    if ports.is_empty() {
        diags.push(Diagnostic::warning(format!(
            "no Gateway server selects labels {:?}: the gateway proxy has no listeners",
            opts.labels
        )));
    }
    let forward_client_cert =
        forward_client_cert(opts.forward_client_cert_details.as_deref(), &mut diags);
    let virtual_services =
        super::delegation::merge_delegates(&resources.virtual_services, &mut diags);
    let site = routes::GatewaySite {
        catalog: &catalog,
        virtual_services: precedence_order(&virtual_services),
        labels: &opts.labels,
        namespace: &opts.namespace,
    };
    for port in &ports {
        let Some(address) = listen_address(port, opts, &mut diags) else {
            continue;
        };
        let name = format!("{}_{}", address.ip(), port.number);
        let mut certificates = port.certificates.clone();
        let mut passthrough = Vec::new();
        let mut tables = if mixed::terminates(&port.mode) {
            let parts = mixed::split(port);
            let mut tables = Vec::new();
            let mut http_certificates = Vec::new();
            if let Some(http) = &parts.http {
                (tables, http_certificates) =
                    routes::https_route_tables(http, &site, &mut out, &mut diags);
            }
            let mut chains = Vec::new();
            let mut tcp_certificates: &[_] = &[];
            let mut tcp_served = Vec::new();
            if let Some(tcp) = &parts.tcp {
                (chains, tcp_served) = l4::terminated_chains(tcp, &name, &site, &mut diags);
                tcp_certificates = &tcp.certificates;
            }
            certificates = mixed::certificates_in_order(
                port,
                http_certificates,
                tcp_certificates,
                &tcp_served,
                parts.passed.is_some(),
            );
            if let Some(passed) = &parts.passed {
                // A port left without `tls` rules closes its passed-through connections,
                // never the terminated ones: its catch-all takes only their SNI.
                let passed = passed_through_chains(
                    passed, &name, &site, resources, true, &mut out, &mut diags,
                );
                passthrough = mixed::passthrough_names(&passed);
                chains.extend(passed);
            }
            if tables.is_empty() && without_chains(&chains, port.number, &mut diags) {
                continue;
            }
            for (route, origin) in chains {
                out.config.tcp_routes.push(route);
                out.tcp_routes.push(origin);
            }
            if tables.is_empty() {
                // Every connection is taken at L4; the table is never consulted.
                tables.push(empty_table(port));
            }
            tables
        } else if l4::is_l4(&port.mode) {
            let chains =
                passed_through_chains(port, &name, &site, resources, false, &mut out, &mut diags);
            if without_chains(&chains, port.number, &mut diags) {
                continue;
            }
            for (route, origin) in chains {
                out.config.tcp_routes.push(route);
                out.tcp_routes.push(origin);
            }
            vec![empty_table(port)]
        } else {
            vec![routes::route_table(port, &site, &mut out, &mut diags)]
        };
        // The listener's own table: its first server's (a request reaches it only through a
        // chain that names none).
        let route_table = tables.first().map(|t| t.name.clone()).unwrap_or_default();
        out.config.listeners.push(Listener {
            tls: tls::termination(&port.mode, certificates, passthrough),
            mtls: Default::default(),
            name,
            address,
            route_table,
            direction: Direction::Inbound,
            passthrough: false,
            // Filled by [`security::secure_listeners`], which needs the JWKS source.
            authorization: None,
            local_forward: None,
            inbound_protocols: None,
            outbound_capture: None,
            authentication: None,
            // A gateway is the mesh's edge: pilot's gateway connection manager sets
            // `use_remote_address: true` (buildGatewayListeners in gateway.go).
            edge: Some(EdgeHeaders {
                trusted_hops: opts.num_trusted_proxies,
                forward_client_cert,
            }),
        });
        out.config.route_tables.append(&mut tables);
    }
    out.config.version = version_of(&out.config);
    out.diagnostics = diags;
    out
}

/// Whether a port's L4 chains are only the catch-alls that close (no rule served any of its
/// servers), with no HTTP chain beside them: pilot then omits the listener ("must have more
/// than 0 chains in listener", `MutableGatewayListener::build` in gateway.go), as Envoy would
/// refuse it ("no filter chains specified"), so nothing listens on the port. Says so in
/// `diags`.
fn without_chains(
    chains: &[(
        trellis_engine::config::TcpRoute,
        crate::translate::tcp::TcpOrigin,
    )],
    port: u16,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let none = chains
        .iter()
        .all(|(route, origin)| l4::is_blackhole(route, origin));
    if none {
        diags.push(Diagnostic::warning(format!(
            "gateway port {port}: no server has a filter chain; as pilot omits such a \
             listener (Envoy refuses one without chains), nothing listens on the port"
        )));
    }
    none
}

/// The route table of a port whose connections are all taken at L4 (never consulted).
fn empty_table(port: &merge::ServerPort<'_>) -> trellis_engine::config::RouteTable {
    trellis_engine::config::RouteTable {
        name: port.route_table_name(),
        validate_clusters: false,
        virtual_hosts: Vec::new(),
    }
}

/// Where the listener of `port` binds: the configured address, else the servers' `bind`, else
/// `0.0.0.0` (buildGatewayListeners in pilot/pkg/networking/core/gateway.go), at the port
/// number plus the offset.
fn listen_address(
    port: &merge::ServerPort<'_>,
    opts: &GatewayOptions,
    diags: &mut Vec<Diagnostic>,
) -> Option<SocketAddr> {
    let Some(number) = port.number.checked_add(opts.port_offset) else {
        diags.push(Diagnostic::error(format!(
            "port {} plus offset {} is past 65535; not served",
            port.number, opts.port_offset
        )));
        return None;
    };
    let ip = match (opts.bind_address, &port.bind) {
        (Some(ip), _) => ip,
        (None, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (None, Some(bind)) => match bind.parse() {
            Ok(ip) => ip,
            Err(_) => {
                diags.push(Diagnostic::error(format!(
                    "bind {bind:?} of port {} is not an IP address; not served",
                    port.number
                )));
                return None;
            }
        },
    };
    Some(SocketAddr::new(ip, number))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod l4_tests;

#[cfg(test)]
mod modes_tests;

#[cfg(test)]
mod mixed_tests;

#[cfg(test)]
mod terminated_tcp_tests;

#[cfg(test)]
mod redirect_tests;

/// `gatewayTopology.forwardClientCertDetails` as pilot reads it for a gateway
/// (`buildGatewayConnectionManager` in pilot/pkg/networking/core/gateway.go): SANITIZE_SET
/// unless another value than UNDEFINED is given; `MeshConfigToEnvoyForwardClientCertDetails`
/// maps the names one to one.
pub fn forward_client_cert(
    written: Option<&str>,
    diags: &mut Vec<Diagnostic>,
) -> ForwardClientCert {
    match written.map(str::to_ascii_uppercase).as_deref() {
        None | Some("UNDEFINED") | Some("SANITIZE_SET") => ForwardClientCert::SanitizeSet,
        Some("SANITIZE") => ForwardClientCert::Sanitize,
        Some("FORWARD_ONLY") => ForwardClientCert::ForwardOnly,
        Some("APPEND_FORWARD") => ForwardClientCert::AppendForward,
        Some("ALWAYS_FORWARD_ONLY") => ForwardClientCert::AlwaysForwardOnly,
        Some(other) => {
            diags.push(Diagnostic::error(format!(
                "gateway forwardClientCertDetails {other:?} is not one of UNDEFINED, SANITIZE, \
                 FORWARD_ONLY, APPEND_FORWARD, SANITIZE_SET, ALWAYS_FORWARD_ONLY; using \
                 SANITIZE_SET"
            )));
            ForwardClientCert::SanitizeSet
        }
    }
}

/// The L4 chains of `port`'s servers on listener `listener`: AUTO_PASSTHROUGH servers'
/// chains by the SNI of each service (`auto_passthrough::chains`), the others' from their
/// bound rules (`l4::chains`). `restrict`, or AUTO_PASSTHROUGH chains next to them: the
/// others' catch-all (a port left without `tls` rules) takes only their own hosts' names,
/// so that it never answers for a name another kind of chain serves.
fn passed_through_chains(
    port: &merge::ServerPort<'_>,
    listener: &str,
    site: &routes::GatewaySite<'_, '_>,
    resources: &ResourceSet,
    restrict: bool,
    out: &mut Translation,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(
    trellis_engine::config::TcpRoute,
    crate::translate::tcp::TcpOrigin,
)> {
    let (auto, other) = auto_passthrough::split(port);
    let mut chains = match &auto {
        Some(auto) => auto_passthrough::chains(auto, listener, site.catalog, resources, out, diags),
        None => Vec::new(),
    };
    if let Some(other) = &other {
        let hosts: Vec<String> = if restrict || auto.is_some() {
            mixed::passthrough_hosts(other)
                .into_iter()
                .flatten()
                .collect()
        } else {
            Vec::new()
        };
        for (mut route, origin) in l4::chains(other, listener, site, diags) {
            if route.sni_hosts.is_empty() {
                route.sni_hosts = hosts.clone();
            }
            chains.push((route, origin));
        }
    }
    chains
}
