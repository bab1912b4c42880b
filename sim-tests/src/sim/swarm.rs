//! Running many seeds: parallel workers, failure reports with the shrunk scenario and the one
//! command that replays it, and the environment knobs tests read (`SIM_SEED`, `SIM_SEEDS`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::report::RunReport;
use super::scenario::Scenario;
use super::shrink;
use super::{run, RunOptions};

/// Run `scn` twice and add a determinism violation if the traces differ.
pub fn run_checked(scn: &Scenario, opts: RunOptions) -> RunReport {
    let mut a = run(scn, opts);
    let b = run(
        scn,
        RunOptions {
            timeline: false,
            ..opts
        },
    );
    if a.trace_hash != b.trace_hash || a.outcomes != b.outcomes {
        a.violations.push(super::check::Violation {
            invariant: super::check::Invariant::Determinism,
            at: trellis_engine::Instant::ZERO,
            detail: format!(
                "seed {}: trace {:016x} then {:016x}",
                scn.seed, a.trace_hash, b.trace_hash
            ),
        });
    }
    a
}

/// The seeds a test should run: `SIM_SEED=N` (just that one), `SIM_SEEDS=A..B`, else `default`.
pub fn seeds_from_env(default: std::ops::Range<u64>) -> std::ops::Range<u64> {
    if let Some(seed) = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        return seed..seed + 1;
    }
    if let Some(r) = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| parse_range(&s))
    {
        return r;
    }
    default
}

/// `A..B` (end exclusive) or a single `N`.
pub fn parse_range(s: &str) -> Option<std::ops::Range<u64>> {
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a < b).then_some(a..b)
        }
        None => {
            let n: u64 = s.trim().parse().ok()?;
            Some(n..n + 1)
        }
    }
}

/// The result of a seed range.
#[derive(Debug, Default)]
pub struct SwarmResult {
    /// Every run's report, in seed order.
    pub reports: Vec<RunReport>,
}

impl SwarmResult {
    pub fn failures(&self) -> impl Iterator<Item = &RunReport> {
        self.reports.iter().filter(|r| !r.violations.is_empty())
    }

    /// The weighted-split statistics of every run, summed: see [`split_bias`].
    pub fn split_aggregate(&self) -> super::stats::Aggregate {
        split_aggregate(&self.reports)
    }
}

/// Every run's weighted-split chi-square statistics, summed.
pub fn split_aggregate(reports: &[RunReport]) -> super::stats::Aggregate {
    let mut total = super::stats::Aggregate::default();
    for r in reports {
        total.merge(r.split_aggregate);
    }
    total
}

/// Whether the weighted splits of a whole sweep, taken together, show a bias no single run
/// could (a slip of one unit of weight in a hundred shifts a share by 1 %, which needs tens of
/// thousands of requests to see): `Some(description)` when the summed chi-square statistic is
/// beyond [`super::stats::FALSE_ALARM`].
pub fn split_bias(reports: &[RunReport]) -> Option<String> {
    let total = split_aggregate(reports);
    let p = total.p_value();
    (p < super::stats::FALSE_ALARM).then(|| {
        format!(
            "weighted splits across {} runs: chi-square {:.1} with {} degrees of freedom, \
             p = {p:.2e} < {:e}",
            reports.len(),
            total.stat,
            total.df,
            super::stats::FALSE_ALARM
        )
    })
}

/// Every run's weighted random balancing chi-square statistics, summed.
pub fn random_aggregate(reports: &[RunReport]) -> super::stats::Aggregate {
    let mut total = super::stats::Aggregate::default();
    for r in reports {
        total.merge(r.random_aggregate);
    }
    total
}

/// Whether the weighted random picks of a whole sweep, taken together, stray from the weights
/// beyond [`super::stats::FALSE_ALARM`] (a slip of one unit of weight, which no single run's
/// few tens of picks per cluster can show).
pub fn random_bias(reports: &[RunReport]) -> Option<String> {
    let total = random_aggregate(reports);
    let p = total.p_value();
    (p < super::stats::FALSE_ALARM).then(|| {
        format!(
            "weighted random picks across {} runs: chi-square {:.1} with {} degrees of freedom, \
             p = {p:.2e} < {:e}",
            reports.len(),
            total.stat,
            total.df,
            super::stats::FALSE_ALARM
        )
    })
}

/// Run `seeds` on `workers` threads (each run is single-threaded and deterministic; only the
/// order they finish in varies, and results are sorted by seed). `progress` is called after
/// each run with (done, total).
pub fn run_seeds(
    seeds: std::ops::Range<u64>,
    opts: RunOptions,
    workers: usize,
    determinism: bool,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> SwarmResult {
    let total = seeds.end - seeds.start;
    let next = AtomicU64::new(seeds.start);
    let done = AtomicU64::new(0);
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    break;
                }
                let scn = Scenario::from_seed(seed);
                let report = if determinism {
                    run_checked(&scn, opts)
                } else {
                    run(&scn, opts)
                };
                if let Ok(mut v) = out.lock() {
                    v.push(report);
                }
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            });
        }
    });
    let mut reports = out.into_inner().unwrap_or_default();
    reports.sort_by_key(|r| r.seed);
    SwarmResult { reports }
}

/// Shrink a failing seed's scenario while it still breaks one of the same invariants.
pub fn shrink_failure(seed: u64, opts: RunOptions, budget: usize) -> (Scenario, RunReport) {
    let scn = Scenario::from_seed(seed);
    let first = run(&scn, opts);
    let kinds: Vec<_> = first.violations.iter().map(|v| v.invariant).collect();
    let (small, _) = shrink::minimize(&scn, budget, |cand| {
        run(cand, opts)
            .violations
            .iter()
            .any(|v| kinds.contains(&v.invariant))
    });
    let report = run(&small, opts);
    (small, report)
}

/// The failure report: seed, violations, the shrunk scenario, and how to replay it.
pub fn failure_report(
    test_name: &str,
    report: &RunReport,
    shrunk: Option<&(Scenario, RunReport)>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "=== simulation seed {} failed ===", report.seed);
    for v in &report.violations {
        let _ = writeln!(s, "  {v}");
    }
    if let Some((scn, small)) = shrunk {
        let _ = writeln!(
            s,
            "shrunk scenario (size {} from {}), still failing with:",
            shrink::size(scn),
            shrink::size(&Scenario::from_seed(report.seed))
        );
        for v in &small.violations {
            let _ = writeln!(s, "  {v}");
        }
        let _ = writeln!(s, "{scn:#?}");
        if let Ok(json) = serde_json::to_string(scn) {
            let _ = writeln!(
                s,
                "as a scenario file (trellis sim --scenario FILE):\n{json}"
            );
        }
    }
    let _ = writeln!(
        s,
        "replay: SIM_SEED={} cargo test -p sim-tests --test {test_name} -- --nocapture   (or: cargo run -- sim --seed {})",
        report.seed, report.seed
    );
    s
}

/// How many runs of a sweep had each world beside the routing mesh (from their outcomes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorldCounts {
    pub security: usize,
    /// Security worlds whose mesh CA rotated its root ([`super::mtls::rotation`]).
    pub rotations: usize,
    pub mirror: usize,
    /// Control-plane worlds ([`super::plane`]), and those that converged after the heal.
    pub plane: usize,
    pub plane_converged: usize,
    /// L4 worlds ([`super::tcp`]).
    pub tcp: usize,
    /// Ingress-gateway worlds ([`super::gateway`]).
    pub gateway: usize,
}

impl WorldCounts {
    pub fn of(reports: &[RunReport]) -> WorldCounts {
        let runs = |key: &dyn Fn(&str) -> bool| {
            (reports.iter())
                .filter(|r| r.outcomes.keys().any(|k| key(k)))
                .count()
        };
        WorldCounts {
            security: runs(&|k| k.starts_with("mtls:")),
            rotations: runs(&|k| k == "mtls:rotation-Both"),
            mirror: runs(&|k| k.starts_with("mirror:")),
            plane: runs(&|k| k == "plane:runs"),
            plane_converged: runs(&|k| k == "plane:converged"),
            tcp: runs(&|k| k.starts_with("tcp:")),
            gateway: runs(&|k| k.starts_with("gateway:")),
        }
    }
}

impl std::fmt::Display for WorldCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "worlds beside the mesh: security {} (root rotations {}), mirroring {}, control \
             plane {} (converged after the heal: {}), L4 {}, gateway {}",
            self.security,
            self.rotations,
            self.mirror,
            self.plane,
            self.plane_converged,
            self.tcp,
            self.gateway
        )
    }
}
