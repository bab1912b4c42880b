use sim_tests::sim::{run, RunOptions, Scenario};
fn main() {
    let a: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let b: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    for seed in a..b {
        let scn = Scenario::from_seed(seed);
        let tiers = scn.services.iter().any(|s| !s.calls.is_empty());
        let t = std::time::Instant::now();
        let r = run(&scn, RunOptions::default());
        println!(
            "seed {seed} tiers {tiers} svcs {} req {} calls {} {:?} viol {} {:.2?}",
            scn.services.len(),
            r.requests,
            r.calls,
            r.outcomes,
            r.violations.len(),
            t.elapsed()
        );
        for v in &r.violations {
            println!("   {v}");
        }
    }
}
