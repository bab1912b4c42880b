//! Invariant violations and the cheap running checks the mesh performs as it goes.
//!
//! Checks run at three moments: when something happens (a server receives a request: was it
//! allowed there, is its body intact), after every engine call (ejection cap, pool limit,
//! ejected hosts receiving new requests) and after the run (every request ended exactly once,
//! access logs agree with the reference model, weights converge, nothing leaked).

use std::fmt;

use trellis_engine::Instant;

/// Which invariant broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// A request never ended, or ended twice.
    EndsOnce,
    /// A request ended after the deadline its route promises.
    Deadline,
    /// A request reached an endpoint (or route) its configuration does not allow.
    Routing,
    /// Weighted destinations did not converge to their weights (a chi-square test at
    /// [`super::stats::FALSE_ALARM`]), or a destination of weight 0 got a request.
    Weights,
    /// Fault injection did not follow its percentages (delay or abort).
    Faults,
    /// A forwarded request reached its server other than its rule says (path rewrite,
    /// authority rewrite, request header edits), or its response came back with response
    /// header edits other than the rule's.
    Rewrite,
    /// More hosts ejected than `max_ejection_percent` allows.
    EjectionCap,
    /// A host got a new request while ejected and the cluster was not in panic mode
    /// (`minHealthPercent`), or a cluster that panic mode keeps picking answered UH.
    EjectedHostUsed,
    /// A host kept failing, with room under the cap, and was not ejected.
    NotEjected,
    /// An ejection lasted other than `base × multiplier`, or its host came back early or late.
    EjectionTimeline,
    /// A host was ejected with fewer failures since its last ejection, return or success than
    /// `consecutive_5xx`, counting every failure the engine could have seen.
    EjectedWithoutCause,
    /// A connection's unwritten bytes grew past the engine's buffer limit (backpressure).
    Buffering,
    /// More upstream connections open to a cluster than `maxConnections`, a request sent on a
    /// connection idle past `idleTimeout`, or more requests retrying at once than
    /// `maxRetries`.
    PoolLimit,
    /// A request or response body changed on the way.
    Bytes,
    /// The engine's access log disagrees with what happened.
    AccessLog,
    /// The engine holds requests after every client is gone.
    Leak,
    /// The same seed gave a different trace.
    Determinism,
    /// A config swap disturbed a request in flight: in the very engine call that handed over
    /// the snapshot, the engine wrote to or closed the downstream connection of an unanswered
    /// request, or closed an upstream connection with a request outstanding on it; or a request
    /// was cut for stream idleness sooner than the idle timeout of the snapshot it started on.
    ConfigSwap,
    /// A sidecar refused a pushed snapshot, or runs another one than it was last handed.
    ConfigApplied,
    /// A request made more attempts than its retry policy allows, retried an answer `retryOn`
    /// does not cover, or did not retry one it covers with attempts and time left.
    Retries,
    /// A retry went to a host the request already tried while an untried host was eligible
    /// (Envoy's `previous_hosts` predicate).
    RetryHosts,
    /// An attempt was abandoned before its per-try timeout, or outlived it.
    PerTryTimeout,
    /// A balancer broke its policy's promise (round robin's exact cycle, random's weight
    /// shares, least request never choosing the busiest host).
    Balancing,
    /// A request head over one of the HTTP limits (request line, head bytes, field count) was
    /// not answered 414/431, or one within them was; or a connection-manager timeout ended a
    /// request whose head had arrived.
    HeadLimits,
    /// A request that crossed the network in plaintext, on a connection accepted under
    /// PeerAuthentication STRICT, reached its workload.
    MtlsStrict,
    /// The identity a workload is told of its caller (`x-forwarded-client-cert`) is not the one
    /// the CA issued to the calling workload, or a plaintext request carries one.
    PeerIdentity,
    /// A request arrived over a handshake that can only have verified an expired certificate.
    CertExpiry,
    /// An authorization decision (reaching the workload, or 403 `RBAC: access denied`)
    /// differs from the reference evaluation of the AuthorizationPolicies.
    Authorization,
    /// A JWT decision (401, or reaching the workload) differs from the reference evaluation of
    /// the RequestAuthentications and the request's token ([`super::mtls::jwt`]).
    Authentication,
    /// Traffic mirroring broke Envoy's shadowing: a mirror's answer or delay reached the
    /// client, a copy differed from the first attempt or was sent twice, or the mirrored
    /// share strayed from `mirrorPercentage` ([`super::mirror`]).
    Mirroring,
    /// A root rotation or certificate renewal broke trust continuity ([`super::mtls::rotation`]):
    /// a handshake refused a certificate as signed by an unknown CA although the verifier's
    /// bundle held its root; a request arrived over a handshake where a certificate chained
    /// only to a root the other end no longer trusted; or a bundle or certificate update
    /// closed an established connection.
    RootRotation,
    /// The control-plane world's convergence ([`super::plane`]): after the network healed, a
    /// sidecar did not hold the latest snapshot's document for it within `plane::BOUND`.
    Convergence,
    /// A gateway connection was served through another server's filter chain than its
    /// ClientHello selects, served where no chain matches it, or served by a `MUTUAL` server
    /// without a client certificate ([`super::gateway`]).
    GatewayTls,
    /// An inbound sidecar answered a TLS client outside the mesh (a ClientHello without an
    /// Istio ALPN) other than pilot's inbound chains for its port and mode do
    /// ([`super::mtls`]'s `foreign_tls`).
    InboundChain,
    /// A sidecar wrote to an upstream connection after the server's response ended it
    /// (`connection: close`, or a body delimited by the close), or relayed a response to HEAD
    /// with body bytes (RFC 9112 §6.3, §9.6; [`super::scenario::MessageSpec`]).
    Framing,
}

/// One broken invariant, with when and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub at: Instant,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?} at {}] {}", self.invariant, self.at, self.detail)
    }
}

/// Collects violations, keeping only the first few of each kind (a broken invariant tends to
/// break a thousand times; the first is the useful one).
#[derive(Debug, Default)]
pub struct Violations {
    pub list: Vec<Violation>,
    pub suppressed: u64,
}

impl Violations {
    pub fn report(&mut self, invariant: Invariant, at: Instant, detail: impl Into<String>) {
        let same = self
            .list
            .iter()
            .filter(|v| v.invariant == invariant)
            .count();
        if same >= 3 {
            self.suppressed += 1;
            return;
        }
        self.list.push(Violation {
            invariant,
            at,
            detail: detail.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_first_three_of_a_kind() {
        let mut v = Violations::default();
        for _ in 0..5 {
            v.report(Invariant::Leak, Instant::ZERO, "x");
        }
        v.report(Invariant::Bytes, Instant::ZERO, "y");
        assert_eq!(v.list.len(), 4);
        assert_eq!(v.suppressed, 2);
    }
}
