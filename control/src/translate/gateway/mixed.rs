//! A terminating gateway port whose servers are of different kinds: terminated HTTPS servers,
//! TLS-terminated TCP servers (a `TLS` or TCP server with a terminating mode), and
//! `PASSTHROUGH`/`AUTO_PASSTHROUGH` servers, side by side.
//!
//! pilot builds every kind of filter chain on the port's one listener
//! (buildGatewayTCPBasedFilterChains in pilot/pkg/networking/core/gateway.go: an HTTPS server
//! with termination gets createGatewayHTTPFilterChainOpts, the others
//! createGatewayTCPFilterChainOpts: a terminating TCP server one chain with its own
//! `DownstreamTlsContext` and `tcp_proxy`, a passthrough one a chain per `tls` route), and
//! Envoy picks one per connection by the ClientHello's SNI. Here the listener terminates
//! (`TerminatedTls`): each terminating server is a chain whose decrypted bytes are HTTP or
//! TCP (`Plaintext`), its `passthrough` names are the passed-through chains' (the engine's
//! SNI choice among all the port's chains), and the L4 chains of the TCP and passthrough
//! servers are the listener's `tcp` routes, each marked with the kind of connection it takes
//! and chosen among by the same SNI once the kind is known. Envoy matches a passthrough chain
//! by its `tls` rule's `sniHosts` as written, which need not lie within the server's hosts
//! (pickMatchingGatewayHosts only asks the VirtualService's hosts to meet them): a rule for
//! `*.example.com` bound to a server of `b.example.com` passes `q.example.com` through.

use trellis_engine::transport::policy::{Plaintext, ServerCertificate};

use super::merge::ServerPort;
use super::tls::{self, ServerMode};

/// A terminating port's servers by kind, each as a port of its own (`None` for a kind it
/// lacks), with the terminating servers' certificates beside them.
pub struct Parts<'a> {
    /// HTTPS servers terminated here: their route tables.
    pub http: Option<ServerPort<'a>>,
    /// `TLS` or TCP servers terminated here: their L4 chains.
    pub tcp: Option<ServerPort<'a>>,
    /// `PASSTHROUGH` and `AUTO_PASSTHROUGH` servers (as a port of mode `PASSTHROUGH` that
    /// [`super::auto_passthrough::split`] splits again).
    pub passed: Option<ServerPort<'a>>,
}

/// `port`'s servers by kind (see [`Parts`]).
pub fn split<'a>(port: &ServerPort<'a>) -> Parts<'a> {
    debug_assert_eq!(
        (port.servers.iter())
            .filter(|m| terminates(&tls::mode(m.server)))
            .count(),
        port.certificates.len(),
        "every terminating server of a port has its certificate, in server order"
    );
    let mut certificates = port.certificates.iter().cloned();
    let mut http = (Vec::new(), Vec::new());
    let mut tcp = (Vec::new(), Vec::new());
    let mut passed = Vec::new();
    for merged in &port.servers {
        let mode = tls::mode(merged.server);
        let into = match mode {
            ServerMode::Https(_) => &mut http,
            ServerMode::TlsTcp(_) => &mut tcp,
            _ => {
                passed.push(merged.clone());
                continue;
            }
        };
        into.0.push(merged.clone());
        into.1.extend(certificates.next());
    }
    let own = |(servers, certificates): (Vec<_>, Vec<_>), mode: ServerMode| {
        (!servers.is_empty()).then(|| ServerPort {
            number: port.number,
            bind: port.bind.clone(),
            servers,
            mode,
            certificates,
            route_name: None,
        })
    };
    let http_mode = first_mode(&http.0);
    let tcp_mode = first_mode(&tcp.0);
    Parts {
        http: own(http, http_mode),
        tcp: own(tcp, tcp_mode),
        passed: own((passed, Vec::new()), ServerMode::Passthrough),
    }
}

/// The listener's terminating chains in the port's server order: each HTTP server's
/// certificate as [`super::routes::https_route_tables`] named its table, and each TCP
/// server's (marked [`Plaintext::Tcp`] by [`super::tls::certificate`]) that has a chain
/// (`tcp_served`, parallel to the TCP servers: pilot builds none for a server no `tcp` rule
/// serves). When that leaves the port no chain at all (no other terminating server, no
/// passthrough server: `passed`), the TCP servers are kept all the same: their connections are
/// then closed after the handshake by the port's terminated catch-all, where Envoy closes them
/// before it. With passthrough chains beside them, the listener may end up terminating
/// nothing and serve only those.
pub fn certificates_in_order(
    port: &ServerPort<'_>,
    http: Vec<ServerCertificate>,
    tcp: &[ServerCertificate],
    tcp_served: &[bool],
    passed: bool,
) -> Vec<ServerCertificate> {
    debug_assert_eq!(tcp.len(), tcp_served.len(), "one flag per TCP server");
    let keep_all = http.is_empty() && !tcp_served.contains(&true) && !passed;
    let mut http = http.into_iter();
    let mut tcp = tcp.iter().cloned().zip(tcp_served.iter().copied());
    let ordered: Vec<ServerCertificate> = (port.servers.iter())
        .filter_map(|m| match tls::mode(m.server) {
            ServerMode::Https(_) => http.next(),
            ServerMode::TlsTcp(_) => tcp
                .next()
                .filter(|(_, served)| *served || keep_all)
                .map(|(c, _)| c)
                .inspect(|c| {
                    debug_assert_eq!(c.plaintext, Plaintext::Tcp, "tls::certificate marks it");
                }),
            _ => None,
        })
        .collect();
    debug_assert!(ordered.len() <= port.certificates.len());
    debug_assert!(!ordered.is_empty() || port.certificates.is_empty() || passed);
    ordered
}

/// Whether a server of this mode terminates TLS at the gateway.
pub fn terminates(mode: &ServerMode) -> bool {
    matches!(mode, ServerMode::Https(_) | ServerMode::TlsTcp(_))
}

fn first_mode(servers: &[super::merge::MergedServer<'_>]) -> ServerMode {
    servers
        .first()
        .map_or(ServerMode::Passthrough, |m| tls::mode(m.server))
}

/// The `server_names` of a port's passed-through chains (`passed`, as built for it), which
/// the engine ranks with the terminating servers' names to decide whether a ClientHello is
/// terminated or passed through. The catch-all that closes a port left without `tls` rules
/// names nothing here: pilot builds no chain for such a server, so its hosts' ClientHellos go
/// to whichever terminating chain takes them (a `*` server's), or are closed.
pub fn passthrough_names(
    passed: &[(
        trellis_engine::config::TcpRoute,
        crate::translate::tcp::TcpOrigin,
    )],
) -> Vec<Vec<String>> {
    (passed.iter())
        .filter(|(route, origin)| !super::l4::is_blackhole(route, origin))
        .map(|(route, _)| route.sni_hosts.clone())
        .filter(|names| !names.is_empty())
        .collect()
}

/// The SNI hosts of a port's servers, as their filter chains' `server_names`
/// (GetSNIHostsForServer: the hosts without their namespace part).
pub fn passthrough_hosts(port: &ServerPort<'_>) -> Vec<Vec<String>> {
    (port.servers.iter())
        .map(|m| {
            (m.server.hosts.iter())
                .map(|h| {
                    h.rsplit_once('/')
                        .map_or(h.as_str(), |(_, h)| h)
                        .to_string()
                })
                .collect()
        })
        .collect()
}
