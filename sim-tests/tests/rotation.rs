//! Root rotation under request load in the security world (issue 11, `sim::mtls::rotation`):
//! the mesh CA moves to a new root while requests flow, as the control plane's `RotatingCa`
//! does (control/src/ca/rotating.rs): both roots trusted through the overlap, workloads
//! re-issued at staggered times, the old root dropped after it. Every seed with a rotation
//! keeps the `RootRotation` invariant (and every other), and the rotation really happens:
//! bundles and certificates change under open connections, and stragglers still holding a
//! certificate of the old root are refused after the overlap.

use std::collections::BTreeMap;

use sim_tests::sim::mtls::{self, SecuritySpec};
use sim_tests::sim::swarm::seeds_from_env;

/// Seeds whose security world rotates its root, among `range`.
fn rotation_seeds(range: std::ops::Range<u64>) -> Vec<(u64, SecuritySpec)> {
    range
        .filter_map(|s| SecuritySpec::from_seed(s).map(|spec| (s, spec)))
        .filter(|(_, spec)| spec.rotation.is_some())
        .collect()
}

#[test]
fn rotations_keep_every_invariant_and_refuse_only_the_old_root_after_the_overlap() {
    let seeds = rotation_seeds(seeds_from_env(0..300));
    assert!(
        seeds.len() >= 15,
        "two in five security worlds rotate: {}",
        seeds.len()
    );
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for (seed, spec) in &seeds {
        let out = mtls::run(spec, *seed, None);
        assert!(
            out.violations.is_empty(),
            "seed {seed}: {:#?}",
            out.violations
        );
        for (k, n) in out.outcomes {
            *totals.entry(k).or_default() += n;
        }
    }
    eprintln!("{} rotating seeds: {totals:#?}", seeds.len());
    let at_least = |key: &str, n: u64| {
        let got = totals.get(key).copied().unwrap_or(0);
        assert!(got >= n, "{key}: {got} < {n} in {totals:#?}");
    };
    at_least("mtls:rotation-Both", 40);
    at_least("mtls:rotation-Reissue", 30);
    at_least("mtls:rotation-NextOnly", 40);
    at_least("mtls:delivered", 100);
    // Stragglers' certificates of the old root, refused once the overlap ended.
    at_least("mtls:rotation-refused-untrusted-root", 1);
}

#[test]
fn a_rotating_seed_gives_the_same_trace_twice() {
    for (seed, spec) in rotation_seeds(0..200).into_iter().take(3) {
        let a = mtls::run(&spec, seed, None);
        let b = mtls::run(&spec, seed, None);
        assert_eq!(a.trace, b.trace, "seed {seed}");
        // The rotation is part of the trace.
        let still = SecuritySpec {
            rotation: None,
            ..spec.clone()
        };
        assert_ne!(mtls::run(&still, seed, None).trace, a.trace, "seed {seed}");
    }
}
