fn main() {
    let a: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let b: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(a + 10);
    for seed in a..b {
        let scn = sim_tests::sim::Scenario::from_seed(seed);
        let r = sim_tests::sim::run(&scn, Default::default());
        println!("seed {seed}: svcs {} faults {} req {} ej {} sim {:?} ev {} p50 {:?} p99 {:?} {:?} viol {}", scn.services.len(), scn.faults.len(), r.requests, r.ejections, r.sim_time, r.events, r.quantile(0.5), r.quantile(0.99), r.outcomes, r.violations.len());
        for v in &r.violations {
            println!("   {v}");
        }
    }
}
