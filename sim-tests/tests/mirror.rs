//! The mirroring world ([`sim_tests::sim::mirror`]) on its own: clean and deterministic over
//! the seeds that have it, every swarm draw present, and a count of what it exercised.

use std::collections::BTreeMap;

use sim_tests::sim::mirror::{self, MirrorSpec};
use sim_tests::sim::swarm::seeds_from_env;

fn mirror_seeds(range: std::ops::Range<u64>) -> Vec<(u64, MirrorSpec)> {
    range
        .filter_map(|seed| MirrorSpec::from_seed(seed).map(|s| (seed, s)))
        .collect()
}

#[test]
fn mirroring_worlds_keep_every_invariant_and_replay() {
    let seeds = mirror_seeds(seeds_from_env(0..400));
    assert!(!seeds.is_empty());
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for (seed, spec) in &seeds {
        let a = mirror::run(spec, *seed, None);
        assert!(a.violations.is_empty(), "seed {seed}: {:#?}", a.violations);
        let b = mirror::run(spec, *seed, None);
        assert_eq!(
            a.trace, b.trace,
            "seed {seed}: the same seed, another trace"
        );
        assert_eq!(a.outcomes, b.outcomes, "seed {seed}");
        for (k, n) in a.outcomes {
            *totals.entry(k).or_default() += n;
        }
    }
    eprintln!("{} mirroring worlds: {totals:#?}", seeds.len());
    assert!(totals.get("mirror:Completed").copied().unwrap_or(0) > 0);
}

/// The swarm draws every percentage form and every fault in some seeds.
#[test]
fn every_swarm_draw_appears() {
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    let mut note = |k: &'static str, on: bool| *seen.entry(k).or_default() += u32::from(on);
    let seeds = mirror_seeds(0..400);
    for (_, spec) in &seeds {
        for m in &spec.mirrors {
            note(
                match m.percent {
                    None => "no percentage (100)",
                    Some(0.0) => "0 %",
                    Some(100.0) => "100 %",
                    Some(_) => "fractional",
                },
                true,
            );
            note("mirror down", m.down);
            note(
                "slow mirror",
                m.endpoints.iter().any(|e| e.latency_ms > 500),
            );
            note(
                "mirror hangs",
                m.endpoints.iter().any(|e| e.hang_percent > 0),
            );
            note(
                "mirror resets",
                m.endpoints.iter().any(|e| e.reset_percent > 0),
            );
            note(
                "mirror errors",
                m.endpoints.iter().any(|e| e.error_percent > 0),
            );
        }
        note("two mirrors", spec.mirrors.len() == 2);
        note("primary retries", spec.retries > 0);
        note("route timeout", spec.timeout_ms.is_some());
        note("authority rewrite", spec.authority_rewrite.is_some());
        note(
            "request bodies",
            spec.requests.iter().any(|q| q.body_len > 0),
        );
    }
    eprintln!("{} seeds: {seen:#?}", seeds.len());
    assert_eq!(seen.len(), 14, "{seen:#?}");
    assert!(seen.values().all(|&n| n >= 5), "{seen:#?}");
}
