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
//! Trellis follows the first rule in both orders (a TLS server is never merged with a
//! plain-text one, nor the other way round, so neither is served in a way its author did not
//! write), serves terminated HTTPS servers of any mix of modes on one port, and HTTPS servers
//! next to `PASSTHROUGH` and `AUTO_PASSTHROUGH` ones (`super::mixed`), and `AUTO_PASSTHROUGH`
//! servers next to `PASSTHROUGH` ones (`super::auto_passthrough::split`). A TLS-terminated TCP
//! server next to a server of another kind is not yet served: the later one is refused with a
//! diagnostic that says so, rather than served with the wrong chain.

use super::tls::{ServerMode, Termination};

/// Whether a server of mode `new` may join a port whose first server is served as `port`;
/// `Err` says why not, for the diagnostic.
pub fn can_share(port: &ServerMode, new: &ServerMode) -> Result<(), String> {
    let plain = |m: &ServerMode| matches!(m, ServerMode::Http | ServerMode::Tcp);
    match (port, new) {
        (ServerMode::Http, ServerMode::Http) | (ServerMode::Tcp, ServerMode::Tcp) => Ok(()),
        (ServerMode::Https(_), ServerMode::Https(_)) => Ok(()),
        // Terminated and passed through by SNI (`super::mixed`).
        (ServerMode::Https(_), ServerMode::Passthrough)
        | (ServerMode::Passthrough, ServerMode::Https(_)) => Ok(()),
        // Relayed untouched next to each other or next to terminated ones, each server's chains
        // told apart by SNI (`super::auto_passthrough::split`, `super::mixed`).
        (ServerMode::AutoPassthrough, ServerMode::Passthrough)
        | (ServerMode::Passthrough, ServerMode::AutoPassthrough)
        | (ServerMode::Https(_), ServerMode::AutoPassthrough)
        | (ServerMode::AutoPassthrough, ServerMode::Https(_)) => Ok(()),
        (p, n) if plain(p) || plain(n) => Err(format!(
            "conflict with the port's existing {} server: a port serves either plain-text \
             servers or TLS servers told apart by SNI, never both (pilot's MergeGateways skips \
             it: canMergeProtocols, \"conflict with existing server\")",
            describe(p)
        )),
        (p, n) if same_kind(p, n) => Ok(()),
        (p, n) => Err(format!(
            "the port already serves {} servers; Trellis does not yet serve {} and {} \
             servers on one port (istiod would, one filter chain per server)",
            describe(p),
            describe(n),
            describe(p)
        )),
    }
}

/// Whether two L4 servers are served alike: the same mode, whatever their `subjectAltNames`
/// (each server's own are enforced on its own chain).
fn same_kind(a: &ServerMode, b: &ServerMode) -> bool {
    let kind = |m: &ServerMode| match m {
        ServerMode::TlsTcp(Termination::IstioMutual { .. }) => {
            ServerMode::TlsTcp(Termination::IstioMutual {
                subject_alt_names: Vec::new(),
            })
        }
        other => other.clone(),
    };
    kind(a) == kind(b)
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

    /// Terminated HTTPS and PASSTHROUGH servers share a port, in either order, and so do
    /// AUTO_PASSTHROUGH and PASSTHROUGH ones (buildGatewayTCPBasedFilterChains builds every
    /// server's chains on one listener).
    #[test]
    fn terminated_https_and_passthrough_servers_share_a_port() {
        let https = ServerMode::Https(Termination::Mutual);
        assert_eq!(can_share(&https, &ServerMode::Passthrough), Ok(()));
        assert_eq!(can_share(&ServerMode::Passthrough, &https), Ok(()));
        let (auto, passthrough) = (ServerMode::AutoPassthrough, ServerMode::Passthrough);
        assert_eq!(can_share(&auto, &passthrough), Ok(()));
        assert_eq!(can_share(&passthrough, &auto), Ok(()));
    }

    /// What istiod serves and Trellis does not yet: refused with a message saying it is
    /// Trellis's limit, not Istio's rule.
    #[test]
    fn tls_kinds_trellis_cannot_mix_yet_are_refused_as_such() {
        let https = ServerMode::Https(Termination::Simple);
        let why = can_share(&https, &ServerMode::TlsTcp(Termination::Simple)).expect_err("not yet");
        assert!(why.contains("Trellis does not yet serve"), "{why}");
        assert_eq!(can_share(&https, &ServerMode::AutoPassthrough), Ok(()));
        assert!(can_share(
            &ServerMode::TlsTcp(Termination::Simple),
            &ServerMode::TlsTcp(Termination::Mutual)
        )
        .is_err());
        assert_eq!(
            can_share(&ServerMode::Passthrough, &ServerMode::Passthrough),
            Ok(())
        );
    }
}
