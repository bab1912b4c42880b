//! A gateway port with terminated HTTPS servers and `PASSTHROUGH` servers side by side.
//!
//! pilot builds both kinds of filter chain on the port's one listener
//! (buildGatewayTCPBasedFilterChains in pilot/pkg/networking/core/gateway.go: an HTTPS server
//! with termination gets createGatewayHTTPFilterChainOpts, a passthrough one
//! createGatewayTCPFilterChainOpts with its `tls` routes), and Envoy picks one per connection
//! by the ClientHello's SNI. Here the listener terminates (`TerminatedTls`), its
//! `passthrough` hosts being the passthrough servers' (the engine's SNI choice among all the
//! port's servers), and the passthrough servers' `tls` routes are the listener's L4 chains,
//! chosen among by the same SNI once the connection is passed through. Envoy matches the
//! passthrough chains by their VirtualService's `sniHosts` directly; the engine's two steps
//! choose the same chain whenever those `sniHosts` lie within the server's hosts, which
//! pilot requires of a bound rule (pickMatchingGatewayHosts).

use super::merge::ServerPort;
use super::tls::{self, ServerMode};

/// `port`'s terminated servers (with their certificates), and its passed-through servers
/// (`PASSTHROUGH` and `AUTO_PASSTHROUGH`, as a port of mode `PASSTHROUGH` that
/// [`super::auto_passthrough::split`] splits again) when it has any.
pub fn split<'a>(port: &ServerPort<'a>) -> (ServerPort<'a>, Option<ServerPort<'a>>) {
    let (passed, terminated): (Vec<_>, Vec<_>) = (port.servers.iter().cloned()).partition(|m| {
        matches!(
            tls::mode(m.server),
            ServerMode::Passthrough | ServerMode::AutoPassthrough
        )
    });
    let own = |servers, mode, certificates| ServerPort {
        number: port.number,
        bind: port.bind.clone(),
        servers,
        mode,
        certificates,
        route_name: None,
    };
    let passthrough =
        (!passed.is_empty()).then(|| own(passed, ServerMode::Passthrough, Vec::new()));
    (
        own(terminated, port.mode.clone(), port.certificates.clone()),
        passthrough,
    )
}

/// The SNI hosts of a passthrough port's servers, as their filter chains' `server_names`
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
