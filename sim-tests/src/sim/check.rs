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
    /// Weighted destinations did not converge to their weights.
    Weights,
    /// More hosts ejected than `max_ejection_percent` allows.
    EjectionCap,
    /// A host got a new request while ejected.
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
    /// More upstream connections open to a cluster than `maxConnections`.
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

/// Whether the observed share of `hits` out of `n` is compatible with weight share `p`
/// (a 5-sigma binomial band plus 2 % slack, so a correct engine essentially never fails it).
pub fn share_ok(hits: u64, n: u64, p: f64) -> bool {
    if n == 0 {
        return true;
    }
    let n_f = n as f64;
    let observed = hits as f64 / n_f;
    let sigma = (p * (1.0 - p) / n_f).sqrt();
    (observed - p).abs() <= 5.0 * sigma + 0.02
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_band() {
        assert!(share_ok(500, 1000, 0.5));
        assert!(share_ok(800, 1000, 0.8));
        assert!(!share_ok(300, 1000, 0.8));
        assert!(!share_ok(1000, 1000, 0.5));
    }

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
