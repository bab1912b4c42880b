//! `trellis sim`: run the deterministic mesh simulator from the command line — one seed, a
//! seed range, or a scenario file — with a progress line, a summary, and an optional SVG
//! timeline of one run. Everything it does lives in `sim-tests`; this is argument handling
//! and printing.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use sim_tests::sim::report::quantile;
use sim_tests::sim::swarm::{self, run_checked};
use sim_tests::sim::{svg, RunOptions, RunReport, Scenario};

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Run one seed.
    #[arg(long, conflicts_with_all = ["seeds", "scenario"])]
    seed: Option<u64>,
    /// Run a range of seeds, `A..B` (end exclusive).
    #[arg(long, value_name = "A..B", conflicts_with = "scenario")]
    seeds: Option<String>,
    /// Run a scenario file (JSON, as printed in a failure report).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Write an SVG timeline of the run (of the first seed for a range).
    #[arg(long, value_name = "OUT.svg")]
    plot: Option<PathBuf>,
    /// Print the scenario of each seed run (JSON) instead of a summary only.
    #[arg(long)]
    show_scenario: bool,
    /// Worker threads for a seed range (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Shrink the first failing seed and print the small scenario.
    #[arg(long)]
    shrink: bool,
    /// Print which features of the routing and policy vocabulary the scenarios of the seed
    /// range (`--seeds`, default 0..500) contain, and in how many seeds; runs nothing.
    #[arg(long, conflicts_with_all = ["seed", "scenario", "plot", "shrink"])]
    coverage: bool,
}

pub fn sim(args: SimArgs) -> Result<ExitCode> {
    if args.coverage {
        let range = match &args.seeds {
            Some(r) => swarm::parse_range(r)
                .with_context(|| format!("--seeds {r:?}: expected A..B with A < B"))?,
            None => 0..500,
        };
        print!("{}", sim_tests::sim::coverage::table(range));
        return Ok(ExitCode::SUCCESS);
    }
    let timeline = args.plot.is_some();
    let opts = RunOptions {
        timeline,
        ..RunOptions::default()
    };
    let started = std::time::Instant::now();
    let reports: Vec<RunReport> = if let Some(path) = &args.scenario {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        let mut scn: Scenario = serde_json::from_str(&text)
            .with_context(|| format!("parsing scenario {}", path.display()))?;
        if !scn.normalize() {
            bail!("scenario {} has nothing to run", path.display());
        }
        vec![run_checked(&scn, opts)]
    } else {
        let range = match (&args.seed, &args.seeds) {
            (Some(s), _) => *s..s + 1,
            (None, Some(r)) => swarm::parse_range(r)
                .with_context(|| format!("--seeds {r:?}: expected A..B with A < B"))?,
            (None, None) => 0..1,
        };
        if args.show_scenario {
            for seed in range.clone() {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&Scenario::from_seed(seed))?
                );
            }
        }
        let first = range.start;
        let jobs = args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let progress = |done: u64, total: u64| {
            let step = (total / 100).max(1);
            if total > 1 && (done.is_multiple_of(step) || done == total) {
                eprint!("\r{}", progress_bar(done, total, started.elapsed()));
                let _ = std::io::stderr().flush();
            }
        };
        let mut result = swarm::run_seeds(range, RunOptions::default(), jobs, true, &progress);
        eprintln!();
        if timeline {
            // The plot's run, again with a timeline (same seed, same run).
            let scn = Scenario::from_seed(first);
            if let Some(r) = result.reports.iter_mut().find(|r| r.seed == first) {
                *r = sim_tests::sim::run(&scn, opts);
            }
        }
        result.reports
    };
    let wall = started.elapsed();
    print_summary(&reports, wall);
    if let (Some(path), Some(first)) = (&args.plot, reports.first()) {
        std::fs::write(path, svg::timeline_svg(first))
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "timeline of seed {} written to {}",
            first.seed,
            path.display()
        );
    }
    let failing: Vec<&RunReport> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .collect();
    let aggregate = swarm::split_aggregate(&reports);
    println!(
        "weighted splits, all runs together: chi-square {:.1} with {} degrees of freedom, p = {:.3}",
        aggregate.stat,
        aggregate.df,
        aggregate.p_value()
    );
    let random = swarm::random_aggregate(&reports);
    println!(
        "weighted random picks, all runs together: chi-square {:.1} with {} degrees of freedom, p = {:.3}",
        random.stat,
        random.df,
        random.p_value()
    );
    let random_bias = swarm::random_bias(&reports);
    if let Some(b) = &random_bias {
        println!("[Balancing] {b}");
    }
    let bias = swarm::split_bias(&reports);
    if let Some(bias) = &bias {
        println!("[Weights] {bias}");
    }
    let bias = bias.or(random_bias);
    if failing.is_empty() {
        return Ok(if bias.is_some() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    for r in &failing {
        let shrunk = (args.shrink && args.scenario.is_none() && std::ptr::eq(*r, failing[0]))
            .then(|| swarm::shrink_failure(r.seed, RunOptions::default(), 300));
        println!("{}", swarm::failure_report("swarm", r, shrunk.as_ref()));
    }
    println!(
        "{} of {} runs broke an invariant",
        failing.len(),
        reports.len()
    );
    Ok(ExitCode::FAILURE)
}

/// `sim [#########-----------]  45%  450/1000 seeds  ETA 12s`
fn progress_bar(done: u64, total: u64, elapsed: Duration) -> String {
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH / total.max(1)) as usize;
    let bar = format!(
        "{}{}",
        "#".repeat(filled),
        "-".repeat(WIDTH as usize - filled)
    );
    let eta = if done == 0 {
        String::from("?")
    } else {
        let left = elapsed.as_secs_f64() * (total - done) as f64 / done as f64;
        format!("{left:.0}s")
    };
    format!(
        "sim [{bar}] {:>3}%  {done}/{total} seeds  ETA {eta} ",
        done * 100 / total.max(1)
    )
}

fn print_summary(reports: &[RunReport], wall: Duration) {
    let requests: u64 = reports.iter().map(|r| r.requests).sum();
    let ejections: u64 = reports.iter().map(|r| r.ejections).sum();
    let calls: u64 = reports.iter().map(|r| r.calls).sum();
    let multiplied: u64 = reports.iter().map(|r| r.ejections_multiplied).sum();
    let capped: u64 = reports.iter().map(|r| r.ejections_capped).sum();
    let with_repeats = (reports.iter())
        .filter(|r| r.ejections_multiplied > 0)
        .count();
    let sim_time: Duration = reports.iter().map(|r| r.sim_time).sum();
    let mut outcomes = std::collections::BTreeMap::<String, u64>::new();
    let mut latencies = Vec::new();
    for r in reports {
        for (k, n) in &r.outcomes {
            *outcomes.entry(k.clone()).or_default() += n;
        }
        latencies.extend_from_slice(&r.latencies);
    }
    latencies.sort_unstable();
    println!(
        "runs: {}   simulated requests: {requests} (of which service-to-service calls: {calls})   ejections: {ejections}",
        reports.len()
    );
    println!(
        "ejections with a multiplier above one: {multiplied} (in {with_repeats} runs); cut by max_ejection_time: {capped}"
    );
    println!(
        "simulated latency: p50 {:.2} ms, p99 {:.2} ms",
        quantile(&latencies, 0.5).as_secs_f64() * 1e3,
        quantile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    let errors: Vec<String> = outcomes
        .iter()
        .filter(|(k, _)| !k.starts_with('2'))
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    let ok: u64 = outcomes
        .iter()
        .filter(|(k, _)| k.starts_with('2'))
        .map(|(_, n)| n)
        .sum();
    println!("2xx: {ok}   others by kind: {}", errors.join(", "));
    println!("{}", sim_tests::sim::swarm::WorldCounts::of(reports));
    if let [one] = reports {
        println!("trace hash: {:016x}", one.trace_hash);
    }
    // Each run is executed twice (determinism check): count both.
    let secs = wall.as_secs_f64().max(1e-9);
    println!(
        "wall {:.2?}: {:.0} simulated requests/s, {:.0}x time acceleration (determinism re-runs included)",
        wall,
        2.0 * requests as f64 / secs,
        2.0 * sim_time.as_secs_f64() / secs
    );
}
