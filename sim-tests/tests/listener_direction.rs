//! The listener's `direction` (outbound, 15001-style, or inbound, 15006-style) carries no
//! behaviour in the engine yet: the reference model ignores it, and this holds it to that. The
//! same scenario run with the listener declared either way gives the same trace. When inbound
//! listeners gain behaviour (inbound interception, peer authentication), this test names the
//! place where the reference model must learn it.

use sim_tests::sim::{run, RunOptions, Scenario};

#[test]
fn a_listener_declared_inbound_routes_as_one_declared_outbound() {
    for seed in 0..30 {
        let mut scn = Scenario::from_seed(seed);
        scn.inbound_listener = false;
        let outbound = run(&scn, RunOptions::default());
        scn.inbound_listener = true;
        let inbound = run(&scn, RunOptions::default());
        assert!(
            outbound.violations.is_empty(),
            "seed {seed}: {:?}",
            outbound.violations
        );
        assert_eq!(
            (outbound.trace_hash, outbound.requests),
            (inbound.trace_hash, inbound.requests),
            "seed {seed}: the listener's direction changed the run"
        );
    }
}
