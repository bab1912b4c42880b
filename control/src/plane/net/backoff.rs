//! Reconnect delays: exponential from `initial` to `max`, each jittered into its upper half so
//! that sidecars cut off together do not all come back in the same instant (gRPC's connection
//! backoff, doc/connection-backoff.md, asks the same of every client). Envoy's xDS stream starts
//! at 500 ms and stops growing at 30 s (`RetryInitialDelayMs`, `RetryMaxDelayMs` in
//! source/extensions/config_subscription/grpc/grpc_stream.h); the maximum here is 5 s because it
//! is part of the convergence bound after a partition heals.
//!
//! The jitter comes from a small generator seeded by the caller (the node's name), never from a
//! global RNG, so a simulated run is replayable.

use std::time::Duration;

/// Backoff settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(5),
        }
    }
}

/// The delays of one client, attempt after attempt.
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    /// The un-jittered delay of the next attempt.
    next: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        debug_assert!(config.initial <= config.max, "initial backoff over its max");
        Backoff {
            config,
            next: config.initial,
            // xorshift must not start at 0.
            rng: seed | 1,
        }
    }

    /// How long to wait before the next attempt; each call doubles the next one, up to `max`.
    pub fn delay(&mut self) -> Duration {
        let full = self.next.min(self.config.max);
        self.next = (self.next * 2).min(self.config.max);
        let half = full / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if nanos == 0 {
            0
        } else {
            self.random() % (nanos + 1)
        };
        half + Duration::from_nanos(jitter)
    }

    /// A connection worked: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.next = self.config.initial;
    }

    /// The longest [`Backoff::delay`] can be.
    pub fn max(&self) -> Duration {
        self.config.max
    }

    fn random(&mut self) -> u64 {
        // xorshift64 (Marsaglia): enough to spread reconnects.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_max_each_in_its_upper_half() {
        let config = BackoffConfig::default();
        let mut b = Backoff::new(config, 42);
        let mut full = config.initial;
        for _ in 0..10 {
            let d = b.delay();
            assert!(
                d >= full / 2 && d <= full,
                "{d:?} outside [{:?}, {full:?}]",
                full / 2
            );
            full = (full * 2).min(config.max);
        }
        b.reset();
        assert!(b.delay() <= config.initial);
    }

    #[test]
    fn the_same_seed_gives_the_same_delays_and_others_spread() {
        let delays = |seed| {
            let mut b = Backoff::new(BackoffConfig::default(), seed);
            (0..6).map(|_| b.delay()).collect::<Vec<_>>()
        };
        assert_eq!(delays(7), delays(7));
        assert_ne!(delays(7), delays(8));
    }
}
