//! Swarm testing of whole meshes: every seed builds a scenario (services, routes, policies,
//! clients, faults, network), runs it twice on real engines, and checks every invariant.
//!
//! `cargo test -p sim-tests --test swarm` runs 1,000 seeds (CI budget: at least 500). Replay one failure
//! with `SIM_SEED=N cargo test -p sim-tests --test swarm -- --nocapture`; soak with
//! `SIM_SEEDS=0..10000 cargo test --release -p sim-tests --test swarm -- --nocapture`.

use sim_tests::sim::swarm::{failure_report, run_seeds, seeds_from_env, shrink_failure};
use sim_tests::sim::RunOptions;

fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn swarm_of_meshes_keeps_every_invariant() {
    let seeds = seeds_from_env(0..1000);
    let n = seeds.end - seeds.start;
    let started = std::time::Instant::now();
    let result = run_seeds(
        seeds,
        RunOptions::default(),
        workers(),
        true,
        &|done, total| {
            if done.is_multiple_of(100) || done == total {
                eprintln!("swarm: {done}/{total} seeds");
            }
        },
    );
    let requests: u64 = result.reports.iter().map(|r| r.requests).sum();
    eprintln!(
        "swarm: {n} seeds, {requests} simulated requests (each run twice) in {:.1?}",
        started.elapsed()
    );
    let worlds = sim_tests::sim::swarm::WorldCounts::of(&result.reports);
    eprintln!("swarm: {worlds}");
    // A tenth of the seeds carry the control-plane world (issue 13): a sweep of a few hundred
    // runs some.
    assert!(
        n < 200 || worlds.plane > 0,
        "no control-plane world in {n} seeds"
    );
    // Taken together, the weighted splits of every run follow their weights too.
    if let Some(bias) = sim_tests::sim::swarm::split_bias(&result.reports) {
        panic!("{bias}");
    }
    let failures: Vec<_> = result.failures().collect();
    if let Some(first) = failures.first() {
        let shrunk = shrink_failure(first.seed, RunOptions::default(), 300);
        let mut msg = failure_report("swarm", first, Some(&shrunk));
        if failures.len() > 1 {
            let others: Vec<u64> = failures.iter().skip(1).map(|r| r.seed).collect();
            msg.push_str(&format!("other failing seeds: {others:?}\n"));
        }
        panic!("{msg}");
    }
}
