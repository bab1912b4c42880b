//! The control-plane world as part of the swarm (issue 13): a tenth of the seeds carry it in
//! their scenario (`Scenario::plane`), `sim::run` runs it after the routing mesh, and its
//! convergence violations, `plane:*` outcomes and trace hash join the seed's report; scenario
//! files written before it existed still parse, and one that carries it replays the same run;
//! the planted `resume_by_version` bug in the push server is caught through the swarm by a
//! named seed.

use sim_tests::sim::plane::PlaneSpec;
use sim_tests::sim::swarm::{run_checked, WorldCounts};
use sim_tests::sim::{run, Invariant, RunOptions, Scenario};
use trellis_control::plane::push::mutants::Mutations;
use trellis_control::plane::push::Server;

fn plane_seeds(range: std::ops::Range<u64>) -> Vec<u64> {
    range
        .filter(|&s| PlaneSpec::in_swarm(s).is_some())
        .collect()
}

#[test]
fn a_tenth_of_the_seeds_run_the_control_plane_and_converge() {
    let seeds = plane_seeds(0..300);
    assert!(
        (15..=50).contains(&seeds.len()),
        "a tenth of 300 seeds: {}",
        seeds.len()
    );
    let mut reports = Vec::new();
    for &seed in seeds.iter().take(12) {
        let scn = Scenario::from_seed(seed);
        assert_eq!(scn.plane, Some(PlaneSpec::from_seed(seed)));
        let report = run_checked(&scn, RunOptions::default());
        assert!(
            report.violations.is_empty(),
            "seed {seed}: {:#?}",
            report.violations
        );
        assert_eq!(report.outcomes.get("plane:runs"), Some(&1), "seed {seed}");
        assert_eq!(
            report.outcomes.get("plane:converged"),
            Some(&1),
            "seed {seed}"
        );
        // The world is part of the seed's trace.
        let without = Scenario {
            plane: None,
            tcp: None,
            gateway: None,
            ..scn.clone()
        };
        let plain = run(&without, RunOptions::default());
        assert_ne!(plain.trace_hash, report.trace_hash, "seed {seed}");
        assert!(!plain.outcomes.contains_key("plane:runs"));
        reports.push(report);
    }
    let counts = WorldCounts::of(&reports);
    assert_eq!((counts.plane, counts.plane_converged), (12, 12));
}

#[test]
fn scenario_files_without_the_plane_parse_and_files_with_it_replay() {
    let seed = plane_seeds(0..100)[0];
    let scn = Scenario::from_seed(seed);
    let json = serde_json::to_string(&scn).expect("a scenario serializes");
    let back: Scenario = serde_json::from_str(&json).expect("and parses back");
    assert_eq!(back, scn);
    let a = run(&scn, RunOptions::default());
    assert_eq!(run(&back, RunOptions::default()).trace_hash, a.trace_hash);
    // A file from before the control-plane world: no `plane` key at all.
    let old = Scenario {
        plane: None,
        tcp: None,
        gateway: None,
        ..scn.clone()
    };
    let old_json = serde_json::to_string(&old).expect("serializes");
    assert!(!old_json.contains("\"plane\""));
    let parsed: Scenario = serde_json::from_str(&old_json).expect("an old file parses");
    assert_eq!(parsed.plane, None);
}

fn resume_by_version(server: &mut Server) {
    server.set_mutations(Mutations {
        resume_by_version: true,
    });
}

/// The first swarm seed whose control-plane world catches `resume_by_version`
/// (tests/plane_convergence.rs has the world's own search).
const SWARM_CATCHES_RESUME_BY_VERSION: u64 = 45;

#[test]
fn the_swarm_catches_the_push_server_resuming_by_version() {
    let opts = RunOptions {
        plane_hook: Some(resume_by_version),
        ..RunOptions::default()
    };
    let caught = plane_seeds(0..400).into_iter().find(|&seed| {
        // The plane world alone decides: run it without the routing mesh's cost.
        let scn = Scenario::from_seed(seed);
        let spec = scn.plane.as_ref().expect("filtered");
        let out = sim_tests::sim::plane::run_in_swarm(spec, seed, opts.plane_hook);
        out.violations
            .iter()
            .any(|v| v.invariant == Invariant::Convergence)
    });
    eprintln!("resume_by_version caught through the swarm by seed {caught:?}");
    assert_eq!(
        caught,
        Some(SWARM_CATCHES_RESUME_BY_VERSION),
        "the catching seed moved"
    );
    let scn = Scenario::from_seed(SWARM_CATCHES_RESUME_BY_VERSION);
    let report = run(&scn, opts);
    assert!(report
        .violations
        .iter()
        .any(|v| v.invariant == Invariant::Convergence));
    assert!(run(&scn, RunOptions::default()).violations.is_empty());
}
