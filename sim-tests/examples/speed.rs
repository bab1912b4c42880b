//! Simulator speed on a 20-service mesh: simulated requests per wall second (one thread) and
//! simulated time per wall time.
//! `cargo run --release -p sim-tests --example speed [services] [rate per sidecar] [tiers]`:
//! with `tiers`, each service of the first half calls one of the second half through the
//! calling workload's own sidecar (so every client request makes a call, and the mesh runs
//! one engine per calling workload besides the three client sidecars).

use sim_tests::sim::{run, RunOptions, Scenario};

fn main() {
    let services = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let rate = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let tiers = std::env::args().nth(3).is_some_and(|a| a == "tiers");
    let mut scn = Scenario::benchmark(services, rate, 10_000);
    if tiers {
        let half = services / 2;
        for s in 0..half {
            scn.services[s].calls = vec![half + s];
        }
        for c in &mut scn.clients {
            c.targets = (0..half).collect();
        }
        scn.normalize();
    }
    let sidecars = scn.clients.len() + scn.callers().count();
    let started = std::time::Instant::now();
    let report = run(&scn, RunOptions::default());
    let wall = started.elapsed().as_secs_f64();
    println!(
        "{services} services x 3 versions x 3 endpoints, {sidecars} sidecars: {} requests ({} calls), {:.1} s simulated, \
         {:.3} s wall, {:.0} simulated requests/s, {:.0}x acceleration, {} events, p50 {:?}, p99 {:?}, \
         outcomes {:?}, violations {}",
        report.requests,
        report.calls,
        report.sim_time.as_secs_f64(),
        wall,
        report.requests as f64 / wall,
        report.sim_time.as_secs_f64() / wall,
        report.events,
        report.quantile(0.5),
        report.quantile(0.99),
        report.outcomes,
        report.violations.len()
    );
}
