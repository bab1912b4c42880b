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
//!
//! In the swarm (issue 13: the control plane as a node of the simulator), a tenth of the seeds
//! carry this world in their scenario ([`PlaneSpec::in_swarm`], a stream of its own, so the
//! other seeds keep their trace), run by [`crate::sim::run`] after the routing mesh like the
//! security and mirroring worlds: its violations ([`crate::sim::Invariant::Convergence`]),
//! outcomes (`plane:*`) and trace hash join the seed's report ([`run_in_swarm`]).

mod world;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use trellis_control::plane::push;
use trellis_engine::Instant;

use super::check::{Invariant, Violation};
use super::report::WorldOutcome;

/// How long after the heal every sidecar must have converged: the transport's reconnect bound
/// (`ClientConfig::reconnect_bound`: keepalive timeout 15 s + first delay 0.5 s, or connect +
/// longest delay), the debounce's quiet period, and a hello, a push and its answer at the worst
/// latency.
pub const BOUND: Duration = Duration::from_millis(15_500 + 100 + 3 * MAX_LATENCY_MS);

/// The worst one-way latency of a link.
pub const MAX_LATENCY_MS: u64 = 50;

/// One fault or change, at a time from the start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaneSpec {
    pub namespaces: Vec<String>,
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
            .map(|_| rng.choice(["shop", "blog"]).unwrap_or("shop").to_string())
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

    /// The world of `seed` in the swarm, in one seed of ten (decided by a stream of its own).
    pub fn in_swarm(seed: u64) -> Option<Self> {
        let mut r = fastrand::Rng::with_seed(seed ^ 0x91a4_e000_0000_0027);
        (r.u8(0..100) < 10).then(|| PlaneSpec::from_seed(seed))
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
    run_spec(&PlaneSpec::from_seed(seed), seed, hook)
}

/// Run `spec` (a scenario's, perhaps read back from a file) seeded by `seed`.
pub fn run_spec(spec: &PlaneSpec, seed: u64, hook: Option<fn(&mut push::Server)>) -> PlaneOutcome {
    world::World::new(spec, seed, hook).run()
}

/// Run a scenario's control-plane world for the seed's report: each convergence violation
/// (at the heal plus the bound, when the invariant is judged), and `plane:runs`,
/// `plane:sidecars`, `plane:steps`, `plane:converged` (or `plane:not-converged`).
pub fn run_in_swarm(
    spec: &PlaneSpec,
    seed: u64,
    hook: Option<fn(&mut push::Server)>,
) -> WorldOutcome {
    let out = run_spec(spec, seed, hook);
    let judged = Instant::ZERO + spec.heal_at + BOUND;
    let violations = (out.violations.into_iter())
        .map(|detail| Violation {
            invariant: Invariant::Convergence,
            at: judged,
            detail: format!("control plane: {detail}"),
        })
        .collect();
    let mut outcomes = BTreeMap::new();
    outcomes.insert("plane:runs".to_string(), 1);
    outcomes.insert("plane:sidecars".to_string(), spec.namespaces.len() as u64);
    outcomes.insert("plane:steps".to_string(), spec.steps.len() as u64);
    let converged = match out.converged_after {
        Some(_) => "plane:converged",
        None => "plane:not-converged",
    };
    outcomes.insert(converged.to_string(), 1);
    WorldOutcome {
        violations,
        trace: out.trace,
        outcomes,
    }
}
