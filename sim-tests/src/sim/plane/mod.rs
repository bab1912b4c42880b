//! # The control plane as a node: push convergence under partitions
//!
//! A world of one control-plane node running the real [`push::Server`] and N sidecar nodes
//! running real [`push::Client`]s, exchanging framed messages (the production framing) over a
//! simulated network with per-link latency, partitions and control-plane restarts, on a
//! virtual clock, advanced by a discrete-event queue, everything drawn from one seed
//! ([`PlaneSpec::from_seed`]). The transport is modelled on `plane::net`'s: a broken
//! connection is noticed after the keepalive timeout, reconnects back off from 500 ms to 5 s,
//! and each connection opens with a hello that says what the sidecar holds.
//!
//! The invariant ([`run`]): once the network heals (every link repaired, the last change
//! published), every sidecar holds the latest snapshot's document for it (computed here from
//! the snapshot with `plane::scope`, not asked of the server) within [`BOUND`]; a sidecar that
//! refuses that document still holds a good one and its NACK was reported. A planted bug in
//! the server (control's `mutants` feature) is caught by a named seed (tests/plane_convergence.rs).

mod world;

use std::time::Duration;

use trellis_control::plane::push;

/// How long after the heal every sidecar must have converged: the transport's reconnect bound
/// (`ClientConfig::reconnect_bound`: keepalive timeout 15 s + first delay 0.5 s, or connect +
/// longest delay), the debounce's quiet period, and a hello, a push and its answer at the worst
/// latency.
pub const BOUND: Duration = Duration::from_millis(15_500 + 100 + 3 * MAX_LATENCY_MS);

/// The worst one-way latency of a link.
pub const MAX_LATENCY_MS: u64 = 50;

/// One fault or change, at a time from the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The source publishes snapshot `k` of the fixtures.
    Publish(usize),
    Partition(usize),
    Repair(usize),
    /// The control plane restarts (its versions start again at 1).
    RestartControl,
    /// A sidecar restarts with nothing held.
    RestartSidecar(usize),
}

/// A run: sidecars (by namespace), link latencies, and the steps before the heal.
#[derive(Clone, Debug)]
pub struct PlaneSpec {
    pub namespaces: Vec<&'static str>,
    pub latency_ms: Vec<u64>,
    pub steps: Vec<(Duration, Step)>,
    /// When every link is repaired (after the last step).
    pub heal_at: Duration,
}

impl PlaneSpec {
    /// Three to six sidecars, 5–30 steps over 20 s, then the heal.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x91a4_e000_0000_0013);
        let n = rng.usize(3..=6);
        let namespaces = (0..n)
            .map(|_| *rng.choice(&["shop", "blog"]).unwrap_or(&"shop"))
            .collect();
        let latency_ms = (0..n).map(|_| rng.u64(1..=MAX_LATENCY_MS)).collect();
        let mut steps: Vec<(Duration, Step)> = (0..rng.usize(5..=30))
            .map(|_| {
                let at = Duration::from_millis(rng.u64(0..20_000));
                let step = match rng.u8(0..10) {
                    0..=3 => Step::Publish(rng.usize(0..=world::BAD)),
                    4 | 5 => Step::Partition(rng.usize(0..n)),
                    6 | 7 => Step::Repair(rng.usize(0..n)),
                    8 => Step::RestartControl,
                    _ => Step::RestartSidecar(rng.usize(0..n)),
                };
                (at, step)
            })
            .collect();
        steps.sort_by_key(|(at, _)| *at);
        PlaneSpec {
            namespaces,
            latency_ms,
            steps,
            heal_at: Duration::from_secs(20),
        }
    }
}

/// What a run came to.
#[derive(Debug, Default)]
pub struct PlaneOutcome {
    /// Convergence violations, each with the sidecar and what it held.
    pub violations: Vec<String>,
    /// How long after the heal the last sidecar converged (`None`: never, within the run).
    pub converged_after: Option<Duration>,
    /// A hash of every message and fault in order: the same seed gives the same hash.
    pub trace: u64,
}

/// Run the world of `seed`; `hook` is called on each control-plane incarnation, to plant bugs.
pub fn run(seed: u64, hook: Option<fn(&mut push::Server)>) -> PlaneOutcome {
    world::World::new(&PlaneSpec::from_seed(seed), seed, hook).run()
}
