//! Shared by the planted-bug test files: the seed budgets, the search for the first seed that
//! catches a bug, and `planted!`, which makes an engine hook switching one bug on.
#![allow(dead_code, unused_macros)] // each test file uses its own share

use sim_tests::sim::swarm::failure_report;
use sim_tests::sim::{run, Invariant, RunOptions, Scenario};
use trellis_engine::Engine;

/// Seeds each planted bug of the ejection backoff must be caught within (the backoff needs a
/// host ejected twice or more, which only some seeds with outlier detection have).
pub const BACKOFF_BUDGET: u64 = 500;

/// Seeds each planted bug must be caught within.
pub const BUDGET: u64 = 50;
/// For bugs that need a rare coincidence (a pool limit, a pending queue and an ejection on the
/// same cluster at once).
pub const RARE_BUDGET: u64 = 400;

/// Seeds the routing-vocabulary bugs must be caught within (half the seeds carry the
/// vocabulary).
pub const VOCAB_BUDGET: u64 = 100;

/// Run seeds from 0 until one breaks `expected`; return that seed.
pub fn first_catching_seed(hook: fn(usize, &mut Engine), expected: Invariant, budget: u64) -> u64 {
    let opts = RunOptions {
        engine_hook: Some(hook),
        ..RunOptions::default()
    };
    for seed in 0..budget {
        let report = run(&Scenario::from_seed(seed), opts);
        if report.violations.iter().any(|v| v.invariant == expected) {
            eprintln!("{}", failure_report("mutants", &report, None));
            // The same seed without the bug keeps every invariant.
            let clean = run(&Scenario::from_seed(seed), RunOptions::default());
            assert!(clean.violations.is_empty(), "{:?}", clean.violations);
            return seed;
        }
    }
    panic!("the simulator did not catch the planted bug ({expected:?}) within {budget} seeds");
}

macro_rules! planted {
    ($name:ident, $field:ident) => {
        fn $name(_: usize, e: &mut trellis_engine::Engine) {
            e.set_mutations(trellis_engine::mutants::Mutations {
                $field: true,
                ..trellis_engine::mutants::Mutations::default()
            });
        }
    };
}
