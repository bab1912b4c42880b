//! Circuit breaking: Istio's `connectionPool` limits enforced as Envoy's cluster circuit breakers.
//!
//! Envoy keeps four live counters per cluster (connections, pending requests, requests, retries)
//! and refuses a new one when its counter has reached the limit, counting an overflow stat
//! (`upstream_cx_overflow`, `upstream_rq_pending_overflow`, `upstream_rq_overflow`,
//! `upstream_rq_retry_overflow`). The breakers are per proxy, not coordinated across proxies.
//!
//! Each `try_*` method tests and increments in one step, so no sequence of calls can push a
//! counter past its limit; the matching `*_closed`/`*_removed`/`*_done` gives the slot back.
//! Giving back more than was taken is a caller bug: it trips a `debug_assert!` and saturates at
//! zero in release builds rather than wrapping.
//!
//! After a config swap the live counters are carried into the new breaker (see
//! [`CircuitBreaker::carry_over`]); if the new limits are lower than what is already in flight,
//! nothing in flight is cut, new attempts are refused until the counters drop below the limits.

use crate::config::ConnectionPool;

/// Overflow counts: how often each limit refused something (Envoy's `*_overflow` stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BreakerOverflow {
    /// `upstream_cx_overflow`: connections refused by `max_connections`.
    pub cx_overflow: u64,
    /// `upstream_rq_pending_overflow`: requests refused a place in the pending queue.
    pub pending_overflow: u64,
    /// `upstream_rq_overflow`: requests refused by `max_requests`.
    pub rq_overflow: u64,
    /// `upstream_rq_retry_overflow`: retries refused by `max_retries`.
    pub retry_overflow: u64,
}

/// Istio `connectionPool` limits as Envoy circuit breakers, with their live counters.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    limits: ConnectionPool,
    connections: u32,
    pending: u32,
    requests: u32,
    retries: u32,
    overflow: BreakerOverflow,
    /// Planted bug (feature `mutants`): compare after incrementing.
    #[cfg(feature = "mutants")]
    pub(crate) mutant_late_check: bool,
}

/// Take one slot of `counter` if it is below `limit`; count an overflow otherwise.
fn try_take(counter: &mut u32, limit: u32, overflow: &mut u64) -> bool {
    if *counter < limit {
        *counter += 1;
        true
    } else {
        *overflow = overflow.saturating_add(1);
        false
    }
}

/// Give one slot of `counter` back.
fn give_back(counter: &mut u32, what: &str) {
    debug_assert!(
        *counter > 0,
        "circuit breaker: {what} released more often than taken"
    );
    *counter = counter.saturating_sub(1);
}

impl CircuitBreaker {
    /// A breaker with these limits and nothing in flight.
    pub fn new(limits: ConnectionPool) -> Self {
        CircuitBreaker {
            limits,
            connections: 0,
            pending: 0,
            requests: 0,
            retries: 0,
            overflow: BreakerOverflow::default(),
            #[cfg(feature = "mutants")]
            mutant_late_check: false,
        }
    }

    /// Take the live counters and overflow stats of the breaker this one replaces.
    pub fn carry_over(&mut self, old: &CircuitBreaker) {
        self.connections = old.connections;
        self.pending = old.pending;
        self.requests = old.requests;
        self.retries = old.retries;
        self.overflow = old.overflow;
    }

    /// Reserve an upstream connection (`max_connections`).
    pub fn try_open_connection(&mut self) -> bool {
        #[cfg(feature = "mutants")]
        if self.mutant_late_check {
            // Planted bug: increment, then compare the old value with `>` (lets limit + 1 in).
            let before = self.connections;
            self.connections += 1;
            if before > self.limits.max_connections {
                self.connections -= 1;
                self.overflow.cx_overflow += 1;
                return false;
            }
            return true;
        }
        try_take(
            &mut self.connections,
            self.limits.max_connections,
            &mut self.overflow.cx_overflow,
        )
    }

    /// An upstream connection (or a reservation that failed to connect) is gone.
    pub fn connection_closed(&mut self) {
        give_back(&mut self.connections, "connection");
    }

    /// Queue a request waiting for a connection (`max_pending_requests`).
    pub fn try_add_pending(&mut self) -> bool {
        try_take(
            &mut self.pending,
            self.limits.max_pending_requests,
            &mut self.overflow.pending_overflow,
        )
    }

    /// A pending request got a connection or gave up.
    pub fn pending_removed(&mut self) {
        give_back(&mut self.pending, "pending request");
    }

    /// Start a request to the cluster (`max_requests`).
    pub fn try_start_request(&mut self) -> bool {
        #[cfg(feature = "mutants")]
        if crate::mutants::route().max_requests_off_by_one
            && self.requests == self.limits.max_requests
        {
            self.requests += 1;
            return true;
        }
        try_take(
            &mut self.requests,
            self.limits.max_requests,
            &mut self.overflow.rq_overflow,
        )
    }

    /// A request to the cluster finished (any way).
    pub fn request_done(&mut self) {
        give_back(&mut self.requests, "request");
    }

    /// Start a retry (`max_retries`).
    pub fn try_start_retry(&mut self) -> bool {
        #[cfg(feature = "mutants")]
        if crate::mutants::route().retry_budget_ignored {
            self.retries += 1;
            return true;
        }
        try_take(
            &mut self.retries,
            self.limits.max_retries,
            &mut self.overflow.retry_overflow,
        )
    }

    /// A retry finished (any way).
    pub fn retry_done(&mut self) {
        give_back(&mut self.retries, "retry");
    }

    pub fn connections(&self) -> u32 {
        self.connections
    }

    pub fn pending(&self) -> u32 {
        self.pending
    }

    pub fn requests(&self) -> u32 {
        self.requests
    }

    pub fn retries(&self) -> u32 {
        self.retries
    }

    pub fn limits(&self) -> &ConnectionPool {
        &self.limits
    }

    /// How often each limit refused something.
    pub fn overflow(&self) -> &BreakerOverflow {
        &self.overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{Arbitrary, Gen};
    use quickcheck_macros::quickcheck;

    fn small_limits(c: u32, p: u32, r: u32, t: u32) -> ConnectionPool {
        ConnectionPool {
            max_connections: c,
            max_pending_requests: p,
            max_requests: r,
            max_retries: t,
            ..ConnectionPool::default()
        }
    }

    #[test]
    fn refuses_at_limit_and_counts_overflow() {
        let mut b = CircuitBreaker::new(small_limits(2, 1, 1, 0));
        assert!(b.try_open_connection());
        assert!(b.try_open_connection());
        assert!(!b.try_open_connection());
        assert_eq!(b.connections(), 2);
        assert_eq!(b.overflow().cx_overflow, 1);
        b.connection_closed();
        assert!(b.try_open_connection());

        assert!(b.try_add_pending());
        assert!(!b.try_add_pending());
        b.pending_removed();
        assert_eq!(b.pending(), 0);

        assert!(b.try_start_request());
        assert!(!b.try_start_request());
        assert_eq!(b.overflow().rq_overflow, 1);

        // max_retries 0: no retry may ever start.
        assert!(!b.try_start_retry());
        assert_eq!(b.overflow().retry_overflow, 1);
        assert_eq!(b.overflow().pending_overflow, 1);
    }

    #[test]
    fn istio_defaults_are_effectively_unlimited() {
        let mut b = CircuitBreaker::new(ConnectionPool::default());
        for _ in 0..10_000 {
            assert!(b.try_start_request());
            assert!(b.try_open_connection());
            assert!(b.try_start_retry());
        }
        assert_eq!(*b.overflow(), BreakerOverflow::default());
    }

    #[test]
    fn carry_over_keeps_live_counters_under_new_limits() {
        let mut old = CircuitBreaker::new(small_limits(10, 10, 10, 10));
        for _ in 0..5 {
            assert!(old.try_start_request());
        }
        let mut new = CircuitBreaker::new(small_limits(10, 10, 3, 10));
        new.carry_over(&old);
        assert_eq!(new.requests(), 5);
        // Above the new limit: refused until enough finish.
        assert!(!new.try_start_request());
        new.request_done();
        new.request_done();
        assert!(!new.try_start_request());
        new.request_done();
        assert!(new.try_start_request());
        assert_eq!(new.limits().max_requests, 3);
    }

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Open,
        Close,
        AddPending,
        RemovePending,
        Start,
        Done,
        Retry,
        RetryDone,
    }

    impl Arbitrary for Op {
        fn arbitrary(g: &mut Gen) -> Self {
            *g.choose(&[
                Op::Open,
                Op::Close,
                Op::AddPending,
                Op::RemovePending,
                Op::Start,
                Op::Done,
                Op::Retry,
                Op::RetryDone,
            ])
            .unwrap_or(&Op::Open)
        }
    }

    /// Counters never exceed the limits, and every refusal is counted as an overflow, under any
    /// sequence of well-paired operations (a release only for something actually held).
    #[quickcheck]
    fn counters_never_exceed_limits(limits: (u8, u8, u8, u8), ops: Vec<Op>) -> bool {
        let l = small_limits(
            u32::from(limits.0 % 6),
            u32::from(limits.1 % 6),
            u32::from(limits.2 % 6),
            u32::from(limits.3 % 6),
        );
        let mut b = CircuitBreaker::new(l.clone());
        let mut refused = [0u64; 4];
        for op in ops {
            match op {
                Op::Open => refused[0] += u64::from(!b.try_open_connection()),
                Op::Close if b.connections() > 0 => b.connection_closed(),
                Op::AddPending => refused[1] += u64::from(!b.try_add_pending()),
                Op::RemovePending if b.pending() > 0 => b.pending_removed(),
                Op::Start => refused[2] += u64::from(!b.try_start_request()),
                Op::Done if b.requests() > 0 => b.request_done(),
                Op::Retry => refused[3] += u64::from(!b.try_start_retry()),
                Op::RetryDone if b.retries() > 0 => b.retry_done(),
                _ => {}
            }
            if b.connections() > l.max_connections
                || b.pending() > l.max_pending_requests
                || b.requests() > l.max_requests
                || b.retries() > l.max_retries
            {
                return false;
            }
        }
        let o = b.overflow();
        refused
            == [
                o.cx_overflow,
                o.pending_overflow,
                o.rq_overflow,
                o.retry_overflow,
            ]
    }
}
