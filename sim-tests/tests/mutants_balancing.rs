//! Planted bugs in the balancers: weighted random's prefix bound (caught by the chi-square summed
//! across seeds), round robin's cycle, least request's choice (see `tests/mutants.rs` for how
//! planted-bug tests work and the seeds that first caught each).

#[macro_use]
mod common;
use common::*;
use sim_tests::sim::stats::{Aggregate, FALSE_ALARM};
use sim_tests::sim::Invariant;
use sim_tests::sim::{run, RunOptions, Scenario};
use trellis_engine::mutants::Mutations;
use trellis_engine::Engine;

fn random_prefix_bound_off_by_one(_: usize, e: &mut Engine) {
    e.set_mutations(Mutations {
        random_prefix_bound_off_by_one: true,
        ..Mutations::default()
    });
}

/// Expected: `Balancing` (a host's share of random picks off its weight). Ignored: the bug
/// moves one unit of weight from the last host to the first, and the runs draw tens to a few
/// hundred fresh random picks per cluster, too few for the 1e-7 bound to see it (seeds 0..400
/// do not, also since PUT and DELETE attempts are seen; e.g. weights [12, 1] with 108 picks
/// would need the weight-1 host at 0 of ~200). Caught across seeds instead:
/// `catches_random_prefix_bound_off_by_one_across_seeds`.
#[test]
#[ignore]
fn catches_random_prefix_bound_off_by_one() {
    let seed = first_catching_seed(
        random_prefix_bound_off_by_one,
        Invariant::Balancing,
        RARE_BUDGET,
    );
    eprintln!("weighted random prefix bound off by one caught by seed {seed}");
}

/// Seeds the weighted random balancer's statistics, summed across runs, may take to show a
/// planted slip of one unit of weight.
const AGGREGATE_BUDGET: u64 = 3000;

/// Expected: the random picks' chi-square summed across seeds (`RunReport::random_aggregate`,
/// what `trellis sim` reports as a `[Balancing]` bias) beyond `FALSE_ALARM`, while the same
/// seeds on a clean engine stay within it. The bug moves one unit of weight from the last
/// eligible host to the first in clusters with unequal weights.
#[test]
fn catches_random_prefix_bound_off_by_one_across_seeds() {
    let opts = RunOptions {
        engine_hook: Some(random_prefix_bound_off_by_one),
        ..RunOptions::default()
    };
    let (mut bad, mut clean) = (Aggregate::default(), Aggregate::default());
    for seed in 0..AGGREGATE_BUDGET {
        let scn = Scenario::from_seed(seed);
        bad.merge(run(&scn, opts).random_aggregate);
        clean.merge(run(&scn, RunOptions::default()).random_aggregate);
        if bad.p_value() < FALSE_ALARM {
            assert!(
                clean.p_value() >= FALSE_ALARM,
                "a clean engine's random picks over seeds 0..={seed}: {clean:?}, p = {:e}",
                clean.p_value()
            );
            eprintln!(
                "weighted random prefix bound off by one caught by seeds 0..={seed}: {bad:?}, p = {:e} (clean: {clean:?}, p = {:.3})",
                bad.p_value(),
                clean.p_value()
            );
            return;
        }
    }
    panic!(
        "the random picks of seeds 0..{AGGREGATE_BUDGET} did not show the planted slip: {bad:?}, p = {:e}",
        bad.p_value()
    );
}

fn round_robin_extra_turn(_: usize, e: &mut Engine) {
    e.set_mutations(Mutations {
        round_robin_extra_turn: true,
        ..Mutations::default()
    });
}

/// Expected: `Balancing` (a window of Σw fresh round-robin picks not exact).
#[test]
fn catches_round_robin_extra_turn() {
    let seed = first_catching_seed(round_robin_extra_turn, Invariant::Balancing, RARE_BUDGET);
    eprintln!("round robin's extra turn per cycle caught by seed {seed}");
}

fn least_request_prefers_busier(_: usize, e: &mut Engine) {
    e.set_mutations(Mutations {
        least_request_prefers_busier: true,
        ..Mutations::default()
    });
}

/// Expected: `Balancing` (least request chose a host busier than every other eligible one).
#[test]
fn catches_least_request_preferring_the_busier() {
    let seed = first_catching_seed(
        least_request_prefers_busier,
        Invariant::Balancing,
        RARE_BUDGET,
    );
    eprintln!("least request preferring the busier candidate caught by seed {seed}");
}

fn consistent_hash_ignores_key(_: usize, e: &mut Engine) {
    e.set_mutations(Mutations {
        consistent_hash_ignores_key: true,
        ..Mutations::default()
    });
}

/// Expected: `Balancing` (two fresh picks with the same source IP and eligible set reached
/// different hosts of a ring hash or Maglev cluster).
#[test]
fn catches_consistent_hash_ignoring_the_key() {
    let seed = first_catching_seed(
        consistent_hash_ignores_key,
        Invariant::Balancing,
        RARE_BUDGET,
    );
    eprintln!("consistent hash ignoring the request's key caught by seed {seed}");
}

planted!(
    locality_health_without_overprovisioning,
    locality_health_without_overprovisioning
);

/// Expected: `Balancing` (a pick in a priority that Envoy's loads give nothing: with 140 %
/// overprovisioning a level keeps all its load until fewer than ~72 % of its hosts are
/// eligible, and the mutant fails over at the first ejection).
#[test]
fn catches_locality_health_without_overprovisioning() {
    let seed = first_catching_seed(
        locality_health_without_overprovisioning,
        Invariant::Balancing,
        RARE_BUDGET,
    );
    eprintln!("priority health without overprovisioning caught by seed {seed}");
}

planted!(locality_weights_ignored, locality_weights_ignored);

/// Expected: `Balancing` (a pick in a locality `distribute` weighs 0, or a locality's share of
/// its level off its weight).
#[test]
fn catches_locality_weights_ignored() {
    let seed = first_catching_seed(locality_weights_ignored, Invariant::Balancing, RARE_BUDGET);
    eprintln!("locality weights ignored caught by seed {seed}");
}

planted!(
    panic_without_overprovisioning,
    panic_without_overprovisioning
);

/// Expected: `EjectedHostUsed` (a cluster with `minHealthPercent` and most of its hosts
/// healthy picks an ejected host: Envoy's panic needs the level's health, 140 % × the healthy
/// share, below 100 too, so `minHealthPercent: 100` with 3 of 4 hosts up is no panic). First
/// caught by seed 6.
#[test]
fn catches_panic_without_overprovisioning() {
    let seed = first_catching_seed(
        panic_without_overprovisioning,
        Invariant::EjectedHostUsed,
        RARE_BUDGET,
    );
    eprintln!("panic without overprovisioning caught by seed {seed}");
}

planted!(priority_panic_per_cluster, priority_panic_per_cluster);

/// Expected: `Balancing` (a pick in a priority whose load is 0: judging every level's panic
/// by the whole cluster's healthy share puts a healthy-enough level in panic, every level
/// then, and load follows host counts where Envoy's follows health). First caught by seed 25.
#[test]
fn catches_priority_panic_per_cluster() {
    let seed = first_catching_seed(
        priority_panic_per_cluster,
        Invariant::Balancing,
        RARE_BUDGET,
    );
    eprintln!("panic per cluster instead of per priority caught by seed {seed}");
}
