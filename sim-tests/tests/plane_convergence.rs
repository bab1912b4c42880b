//! The control plane as a node of the simulator (issue 13): the real push server and clients
//! under partitions, restarts and config churn drawn from seeds, held to the convergence
//! invariant ("after the network heals, every sidecar holds the latest config within
//! `plane::BOUND`"), and a planted bug in the server caught by a named seed.
//!
//! Replay a seed: `cargo test -p sim-tests --test plane_convergence -- --nocapture` prints the
//! failing seed; `sim_tests::sim::plane::run(seed, None)` replays it.

use std::time::Duration;

use sim_tests::sim::plane::{run, PlaneSpec, BOUND};
use trellis_control::plane::push::mutants::Mutations;
use trellis_control::plane::push::Server;

const SEEDS: u64 = 300;

#[test]
fn every_sidecar_converges_within_the_bound_after_the_network_heals() {
    let mut worst = Duration::ZERO;
    for seed in 0..SEEDS {
        let out = run(seed, None);
        assert!(
            out.violations.is_empty(),
            "seed {seed} ({:?}): {:#?}",
            PlaneSpec::from_seed(seed),
            out.violations
        );
        worst = worst.max(out.converged_after.unwrap_or(BOUND));
    }
    eprintln!("{SEEDS} seeds: the slowest converged {worst:?} after the heal (bound {BOUND:?})");
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [3, 11] {
        assert_eq!(run(seed, None).trace, run(seed, None).trace);
    }
}

fn resume_by_version(server: &mut Server) {
    server.set_mutations(Mutations {
        resume_by_version: true,
    });
}

/// The first seed whose run catches `resume_by_version` (a restart, then a sidecar announcing
/// a version the new control plane has not reached, holding another document).
const CATCHES_RESUME_BY_VERSION: u64 = 1;

#[test]
fn resuming_by_version_is_caught_by_a_named_seed() {
    let catching: Vec<u64> = (0..SEEDS)
        .filter(|seed| !run(*seed, Some(resume_by_version)).violations.is_empty())
        .collect();
    eprintln!("{} of {SEEDS} seeds catch it", catching.len());
    assert_eq!(
        catching.first(),
        Some(&CATCHES_RESUME_BY_VERSION),
        "the catching seed moved"
    );
    let caught = run(CATCHES_RESUME_BY_VERSION, Some(resume_by_version));
    eprintln!(
        "seed {CATCHES_RESUME_BY_VERSION} catches it: {:?}",
        caught.violations
    );
    assert!(run(CATCHES_RESUME_BY_VERSION, None).violations.is_empty());
}
