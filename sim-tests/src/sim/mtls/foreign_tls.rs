//! TLS clients outside the mesh ([`CallerKind::ExternalTls`]): what an inbound sidecar may
//! answer a ClientHello that offers `h2` and `http/1.1`, no Istio ALPN, on an HTTP port, by the
//! mode it accepted the connection under. Pilot's inbound chains
//! (pilot/pkg/networking/core/filterchain_options.go) decide it, and so
//! [`Invariant::InboundChain`]:
//! - PERMISSIVE: the mTLS chain matches Istio's ALPNs only (`allIstioMtlsALPNs`) and the
//!   plaintext one `raw_buffer` only, so no chain takes it and Envoy closes the connection:
//!   not a byte comes back;
//! - STRICT: the chain matches any TLS and terminates it: what comes back is TLS (a handshake
//!   or an alert record), never an HTTP answer;
//! - DISABLE: no TLS inspector runs, the bytes are HTTP's to parse: a `400` at most.
//!
//! Whatever the mode, the workload never receives it (the workload's own parse of any request
//! it is handed checks that, as `Invariant::Bytes`).

use super::spec::{CallerKind, PeerAuthMode};
use super::world::World;
use crate::sim::check::Invariant;

/// TLS record types a server may answer a ClientHello with: handshake, alert.
const TLS_ANSWERS: [u8; 2] = [22, 21];

impl World<'_> {
    /// Request `req` of an [`CallerKind::ExternalTls`] caller ended with `response` (every
    /// byte the sidecar sent back).
    pub(crate) fn check_external_tls(&mut self, req: usize, response: &[u8]) {
        let c = self.requests[req].caller;
        debug_assert_eq!(self.spec.callers[c].kind, CallerKind::ExternalTls);
        let link = self.requests[req].link;
        let Some((link, mode)) = link.and_then(|l| Some((l, self.links[l].accepted_mode?))) else {
            return; // never accepted (a partition): nothing was answered
        };
        let s = self.links[link].service;
        let answered = match response.first() {
            None => "nothing",
            Some(b) if TLS_ANSWERS.contains(b) => "tls",
            Some(_) if response.starts_with(b"HTTP/1.1 400 ") => "400",
            Some(_) => "other",
        };
        self.count(&format!("external-tls:{mode:?}:{answered}"));
        let fine = match mode {
            PeerAuthMode::Permissive => answered == "nothing",
            PeerAuthMode::Strict => matches!(answered, "nothing" | "tls"),
            PeerAuthMode::Disable => matches!(answered, "nothing" | "400"),
        };
        if !fine {
            let head = &response[..response.len().min(24)];
            let msg = format!(
                "request {req}: a TLS client outside the mesh (ALPN h2, http/1.1) on connection \
                 {link}, accepted by service {s} under {mode:?}, was answered with {} bytes \
                 starting {head:?}; pilot's inbound chains for an HTTP port answer it {}",
                response.len(),
                match mode {
                    PeerAuthMode::Permissive => "with nothing (no chain matches: closed)",
                    PeerAuthMode::Strict => "with TLS only (terminated, and refused)",
                    PeerAuthMode::Disable => "with a 400 at most (parsed as HTTP)",
                }
            );
            self.violation(Invariant::InboundChain, msg);
        }
    }
}
