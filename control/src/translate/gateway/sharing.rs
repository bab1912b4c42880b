//! Which servers may share one gateway port (one listener: the same port number and `bind`).
//!
//! istiod's rule (MergeGateways in pilot/pkg/model/gateway.go, then buildGatewayListeners in
//! pilot/pkg/networking/core/gateway.go, whose comment says it: "on a given port, we can either
//! have plain text HTTP servers or HTTPS/TLS servers with SNI. We cannot have a mix of http and
//! https server on same port"):
//!
//! - plain-text servers merge only when both are HTTP (`canMergeProtocols`: the new server's
//!   protocol must be HTTP, and the port's HTTP or the same); any other server on a port that
//!   already has a plain-text one of the same bind is skipped, "conflict with existing server";
//! - TLS servers (`gateway.IsTLSServer`: a `tls` section and a protocol that is not HTTP) all
//!   merge onto the port, whatever their modes: each becomes its own filter chain matched by
//!   its SNI hosts (`createGatewayHTTPFilterChainOpts` for a terminated HTTPS server, with its
//!   own `DownstreamTlsContext` from `BuildListenerTLSContext`, so `SIMPLE`, `MUTUAL`,
//!   `OPTIONAL_MUTUAL` and `ISTIO_MUTUAL` servers sit side by side, each asking for client
//!   certificates by its own mode; `createGatewayTCPFilterChainOpts` for the others).
//!
//! Trellis follows both rules: a TLS server is never merged with a plain-text one, nor the
//! other way round (so neither is served in a way its author did not write), and TLS servers
//! of every kind share a port, each its own chain chosen by SNI: terminated HTTPS servers of
//! any mix of modes, TLS-terminated TCP servers, and `PASSTHROUGH` and `AUTO_PASSTHROUGH`
//! ones (`super::mixed`, `super::auto_passthrough::split`).

use super::tls::{ServerMode, Termination};

/// Whether a server of mode `new` may join a port whose first server is served as `port`;
/// `Err` says why not, for the diagnostic.
pub fn can_share(port: &ServerMode, new: &ServerMode) -> Result<(), String> {
    let plain = |m: &ServerMode| matches!(m, ServerMode::Http | ServerMode::Tcp);
    match (port, new) {
        (ServerMode::Http, ServerMode::Http) | (ServerMode::Tcp, ServerMode::Tcp) => Ok(()),
        (p, n) if plain(p) || plain(n) => Err(format!(
            "conflict with the port's existing {} server: a port serves either plain-text \
             servers or TLS servers told apart by SNI, never both (pilot's MergeGateways skips \
             it: canMergeProtocols, \"conflict with existing server\")",
            describe(p)
        )),
        // Both TLS (`gateway.IsTLSServer`): one filter chain each, by SNI.
        _ => Ok(()),
    }
}

/// A mode as a Gateway author writes it, for messages.
pub fn describe(mode: &ServerMode) -> String {
    let termination = |t: &Termination| match t {
        Termination::Simple => "SIMPLE",
        Termination::Mutual => "MUTUAL",
        Termination::OptionalMutual => "OPTIONAL_MUTUAL",
        Termination::IstioMutual { .. } => "ISTIO_MUTUAL",
    };
    match mode {
        ServerMode::Http => "plain-text HTTP".into(),
        ServerMode::Tcp => "plain-text TCP".into(),
        ServerMode::Https(t) => format!("HTTPS ({})", termination(t)),
        ServerMode::TlsTcp(t) => format!("TLS-terminated TCP ({})", termination(t)),
        ServerMode::Passthrough => "TLS PASSTHROUGH".into(),
        ServerMode::AutoPassthrough => "TLS AUTO_PASSTHROUGH".into(),
        ServerMode::Refused(_) => "refused".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn istio(sans: &[&str]) -> Termination {
        Termination::IstioMutual {
            subject_alt_names: sans.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// MergeGateways (pilot/pkg/model/gateway.go): TLS servers of one port merge whatever
    /// their modes, each its own filter chain (buildGatewayListeners →
    /// createGatewayHTTPFilterChainOpts with its own BuildListenerTLSContext).
    #[test]
    fn terminated_https_servers_of_any_modes_share_a_port() {
        let modes = [
            Termination::Simple,
            Termination::Mutual,
            Termination::OptionalMutual,
            istio(&["spiffe://td/ns/a/sa/x"]),
        ];
        for a in &modes {
            for b in &modes {
                let (a, b) = (ServerMode::Https(a.clone()), ServerMode::Https(b.clone()));
                assert_eq!(can_share(&a, &b), Ok(()), "{a:?} then {b:?}");
            }
        }
        let t = ServerMode::TlsTcp;
        assert_eq!(can_share(&t(istio(&["x"])), &t(istio(&[]))), Ok(()));
    }

    /// canMergeProtocols and buildGatewayListeners' rule: plain text and TLS never share a
    /// port, in either order; the reason names pilot's.
    #[test]
    fn plain_text_and_tls_never_share_a_port() {
        let tls = [
            ServerMode::Https(Termination::Simple),
            ServerMode::Https(Termination::Mutual),
            ServerMode::Passthrough,
            ServerMode::AutoPassthrough,
            ServerMode::TlsTcp(Termination::Simple),
        ];
        for plain in [ServerMode::Http, ServerMode::Tcp] {
            for t in &tls {
                for (first, then) in [(&plain, t), (t, &plain)] {
                    let why = can_share(first, then).expect_err("refused");
                    assert!(why.contains("conflict with the port's existing"), "{why}");
                    assert!(why.contains("never both"), "{why}");
                    assert!(why.contains(&describe(first)), "{why}");
                }
            }
        }
        assert!(can_share(&ServerMode::Http, &ServerMode::Tcp).is_err());
        assert_eq!(can_share(&ServerMode::Http, &ServerMode::Http), Ok(()));
    }

    /// Every kind of TLS server shares a port with every other, in either order:
    /// buildGatewayTCPBasedFilterChains builds each server's chains on the one listener
    /// (createGatewayHTTPFilterChainOpts for terminated HTTPS, createGatewayTCPFilterChainOpts
    /// for terminated TCP and passthrough, builtAutoPassthroughFilterChains for
    /// AUTO_PASSTHROUGH), and a terminating server's `DownstreamTlsContext` is its own.
    #[test]
    fn tls_servers_of_every_kind_share_a_port() {
        let kinds = [
            ServerMode::Https(Termination::Simple),
            ServerMode::Https(Termination::Mutual),
            ServerMode::TlsTcp(Termination::Simple),
            ServerMode::TlsTcp(Termination::OptionalMutual),
            ServerMode::TlsTcp(istio(&["spiffe://td/ns/a/sa/x"])),
            ServerMode::Passthrough,
            ServerMode::AutoPassthrough,
        ];
        for a in &kinds {
            for b in &kinds {
                assert_eq!(can_share(a, b), Ok(()), "{a:?} then {b:?}");
            }
        }
    }
}
