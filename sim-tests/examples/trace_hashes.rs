//! Determinism fingerprint of the simulator: one line per seed, `seed trace_hash requests events
//! violations`, plus the benchmark scenario. A pure optimisation of the simulator or the engine
//! must leave this output byte for byte identical:
//! `cargo run --release -p sim-tests --example trace_hashes [seeds] > before.txt`, change, rerun,
//! `diff`.

use sim_tests::sim::{run, RunOptions, Scenario};

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let line = |name: &str, scn: &Scenario| {
        let r = run(scn, RunOptions::default());
        println!(
            "{name} {:016x} {} {} {} {:?}",
            r.trace_hash,
            r.requests,
            r.events,
            r.violations.len(),
            r.outcomes
        );
    };
    for seed in 0..seeds {
        line(&seed.to_string(), &Scenario::from_seed(seed));
    }
    line(
        "benchmark(20,300,2000)",
        &Scenario::benchmark(20, 300, 2000),
    );
}
