//! `trellis demo` (and `trellis` with no command): a whole mesh on loopback in one process, as
//! issue 13 asks of the embedded default. Nothing here decides routing: the parts are the
//! real ones, wired together.
//!
//! - [`seed`]: the directory: bookinfo's Services and Deployments, DestinationRules, the
//!   reviews VirtualService, a ratings fault, outlier detection on details (one replica of
//!   which answers 503), mesh-wide STRICT mTLS and an AuthorizationPolicy.
//! - [`plane`]: the control plane on that directory (`trellis control`'s code), watching it.
//! - [`sidecar`]: one sidecar per Deployment found there (`trellis proxy --control-plane`'s
//!   code), inbound and outbound, with a certificate from the demo's CA.
//! - [`app`] and [`workloads`]: the workloads behind them (productpage → details, reviews →
//!   ratings), answering JSON that shows the whole path and each hop's verified caller.
//! - [`traffic`], [`tally`] and [`check`]: the traffic generator, its summary, the self-check.
//! - [`ports`]: loopback ports picked under the ephemeral range and held until bound.
//!
//! No root and no iptables: each workload calls its sidecar's outbound listener with the
//! service's name as `Host`, as an application behind a capturing sidecar would. This replaces
//! `trellis mesh` (the `local-mesh` crate) as the default; `trellis mesh` stays as the single
//! sidecar demo, and the crate's HTTP client and framing are reused here.

mod app;
mod check;
mod plane;
mod ports;
mod seed;
mod sidecar;
mod tally;
mod traffic;
mod workloads;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use clap::Args;
use trellis_control::plane::Snapshot;
use trellis_io::ControlHandle;
use trellis_local_mesh::client::HttpClient;

use sidecar::{Sidecar, SidecarSpec};
use traffic::{Limits, Traffic};

#[derive(Args, Debug, Default)]
pub struct DemoArgs {
    /// Run on this directory instead of the seeded one (`--write-dir` writes a seed to edit;
    /// the demo starts a sidecar and a workload for each Deployment with a
    /// `trellis.dev/addresses` annotation in it).
    #[arg(long, value_name = "DIR", conflicts_with = "write_dir")]
    dir: Option<PathBuf>,
    /// Write the seeded directory to DIR and exit (then: trellis demo --dir DIR).
    #[arg(long, value_name = "DIR")]
    write_dir: Option<PathBuf>,
    /// Stop after this many seconds of traffic (default: until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Stop after this many requests.
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Requests per second of the traffic generator.
    #[arg(long, value_name = "N", default_value_t = 5.0)]
    rate: f64,
    /// Seconds between the short summaries (0: none, only the final one).
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    summary_secs: u64,
    /// Check the seeded routing and policies at the end; exit 1 when anything is off (with
    /// neither --requests nor --duration, stops after 100 requests).
    #[arg(long)]
    self_check: bool,
    /// Seed of the sidecars' engines (default: random).
    #[arg(long)]
    seed: Option<u64>,
}

impl DemoArgs {
    /// What `trellis` with no command runs.
    pub fn default_run() -> Self {
        DemoArgs {
            rate: 5.0,
            summary_secs: 5,
            ..DemoArgs::default()
        }
    }
}

/// Where the demo keeps what it writes (removed at the end).
fn state_dir() -> Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("trellis-demo-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Write the seed to `dir`; its ports stay held (by port) until their sidecars bind them.
fn write_seed(dir: &Path) -> Result<BTreeMap<u16, ports::Reserved>> {
    let mut held = BTreeMap::new();
    seed::write(dir, || {
        let reserved = ports::reserve()?;
        let port = reserved.port;
        held.insert(port, reserved);
        Ok(port)
    })?;
    Ok(held)
}

pub fn demo(args: DemoArgs) -> Result<ExitCode> {
    if let Some(dir) = &args.write_dir {
        // Its ports are released on return: whoever runs it later binds them.
        // Never over a directory someone may have edited.
        let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
        if occupied {
            bail!(
                "{} is not empty: give a new directory to write bookinfo to",
                dir.display()
            );
        }
        write_seed(dir)?;
        println!(
            "bookinfo written to {}: run it with\n  trellis demo --dir {}",
            dir.display(),
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number");
    }
    let state = state_dir()?;
    let result = run(&args, &state);
    clean_up(&state);
    result
}

/// Remove what the demo wrote. The control plane's thread still polls the seeded directory
/// until the process exits: emptied first, it reads as an empty mesh (nothing to say); the
/// directory itself goes last, a moment before the exit.
fn clean_up(state: &Path) {
    let mesh = state.join("mesh");
    if let Ok(entries) = std::fs::read_dir(&mesh) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Ok(entries) = std::fs::read_dir(state) {
        for entry in entries.flatten().filter(|e| e.path() != mesh) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let _ = std::fs::remove_dir(&mesh);
    let _ = std::fs::remove_dir(state);
}

fn run(args: &DemoArgs, state: &Path) -> Result<ExitCode> {
    let (mesh_dir, mut held) = match &args.dir {
        Some(dir) => (dir.clone(), BTreeMap::new()),
        None => {
            let dir = state.join("mesh");
            let held = write_seed(&dir)?;
            (dir, held)
        }
    };
    let snapshot = Snapshot::read_dir(&mesh_dir)
        .with_context(|| format!("cannot read {}", mesh_dir.display()))?;
    let instances: Vec<_> = snapshot
        .workloads
        .iter()
        .filter(|w| w.injected && w.address.and_then(|a| a.port).is_some())
        .collect();
    if instances.is_empty() {
        bail!(
            "{} has no injected Deployment or Pod with a trellis.dev/addresses port",
            mesh_dir.display()
        );
    }
    // The mesh CA as `trellis ca init` writes it (Istio's plug-in CA files), so that whatever
    // takes `--ca-dir` can be handed the same one.
    let ca = crate::ca_cmd::write_new_ca(&state.join("ca"), sidecar::TRUST_DOMAIN)
        .context("cannot make the mesh CA")?;
    let plane = plane::start(&mesh_dir)?;
    let seed = args
        .seed
        .unwrap_or_else(|| trellis_io::RunOptions::default().seed);
    let mut sidecars = Vec::new();
    // The replicas that answer 503, and how many requests each got.
    let mut failing = Vec::new();
    for (i, instance) in instances.iter().enumerate() {
        let address = instance.address.context("addressed")?;
        let inbound = SocketAddr::new(address.ip, address.port.context("a port")?);
        // Seeded: held since the seed named it. Otherwise: free now, or say whose it is.
        let held_inbound = match held.remove(&inbound.port()) {
            Some(reserved) => reserved,
            None => ports::hold(inbound).with_context(|| {
                format!(
                    "{}'s address {inbound} (its trellis.dev/addresses in {}) cannot be bound",
                    instance.name,
                    mesh_dir.display()
                )
            })?,
        };
        let reserved = ports::reserve()?;
        let outbound = SocketAddr::from(([127, 0, 0, 1], reserved.port));
        let labels = &instance.workload.labels;
        let app_name = labels.get("app").map(String::as_str).unwrap_or("app");
        let version = labels.get("version").map(String::as_str).unwrap_or("v1");
        let handler = if seed::failing_replica(&snapshot, instance) {
            let answered = Arc::new(AtomicU64::new(0));
            failing.push((instance.name.clone(), answered.clone()));
            workloads::failing(app_name, version, answered)
        } else {
            workloads::handler(app_name, version)
        };
        let app = app::start(&instance.name, outbound, handler)
            .with_context(|| format!("cannot start workload {}", instance.name))?;
        let spec = SidecarSpec {
            instance,
            inbound,
            outbound,
            held: vec![held_inbound, reserved],
            app: app.addr,
            plane,
            seed: seed.wrapping_add(i as u64),
        };
        sidecars.push(Sidecar::start(spec, &ca, &state.join("sidecars"))?);
    }
    let stop = ControlHandle::new();
    trellis_io::install_ctrl_c(stop.clone()).context("cannot install the signal handler")?;
    let ingress = sidecars
        .iter()
        .find(|s| s.node.starts_with("productpage"))
        .map(|s| (s.inbound, s.outbound));
    let Some((ingress, productpage_outbound)) = ingress else {
        bail!("{} has no productpage Deployment", mesh_dir.display());
    };
    print_banner(&mesh_dir, plane, &sidecars, ingress, productpage_outbound);

    let mut traffic = Traffic::new(ingress);
    traffic.warm_up(Duration::from_secs(30), &stop)?;
    let unlimited = args.requests.is_none() && args.duration.is_none();
    let limits = Limits {
        requests: args
            .requests
            .or((args.self_check && unlimited).then_some(100)),
        duration: args.duration.map(Duration::from_secs),
        rate: args.rate,
        summary_every: (args.summary_secs > 0).then(|| Duration::from_secs(args.summary_secs)),
    };
    println!(
        "traffic: {} requests/s to productpage, every 4th as end-user jason, every 20th as end-user tester (Ctrl-C stops)",
        args.rate
    );
    let tally = traffic.run(limits, &stop);
    println!("summary:\n{tally}");
    for (name, answered) in &failing {
        match answered.load(Ordering::Relaxed) {
            0 => println!("  outlier ejection: {name} answers 503; no request reached it"),
            n => println!(
                "  outlier ejection: {name} answers 503; it got {n} request(s) (warm-up included), then the DestinationRule's outlierDetection ejected it"
            ),
        }
    }
    let probe = policy_probe(productpage_outbound);
    match &probe {
        Ok(status) => println!("  policy: productpage → ratings answered {status} (AuthorizationPolicy ratings: only bookinfo-reviews)"),
        Err(e) => println!("  policy: productpage → ratings failed: {e}"),
    }
    for s in &mut sidecars {
        s.stop();
    }
    if !args.self_check {
        return Ok(ExitCode::SUCCESS);
    }
    let failures = check::check(&tally, &probe);
    if failures.is_empty() {
        println!("self-check: ok ({})", seed::SEEDED_SPLIT);
        return Ok(ExitCode::SUCCESS);
    }
    println!("self-check: FAILED ({})", seed::SEEDED_SPLIT);
    for f in &failures {
        println!("  {f}");
    }
    Ok(ExitCode::FAILURE)
}

/// productpage's sidecar asked for ratings, which only reviews may call.
fn policy_probe(productpage_outbound: SocketAddr) -> Result<u16, String> {
    let mut client = HttpClient::connect(productpage_outbound).map_err(|e| e.to_string())?;
    client
        .request("GET", "/ratings/0", "ratings:9080", &[], b"")
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

fn print_banner(
    dir: &Path,
    plane: SocketAddr,
    sidecars: &[Sidecar],
    ingress: SocketAddr,
    productpage_outbound: SocketAddr,
) {
    println!(
        "trellis demo: bookinfo on loopback, one sidecar per workload, mutual TLS between them"
    );
    println!("  control plane on {plane}, watching {}", dir.display());
    println!(
        "  {:<16} {:<22} {:<22} identity",
        "workload", "inbound (mTLS)", "outbound"
    );
    for s in sidecars {
        println!(
            "  {:<16} {:<22} {:<22} {}",
            s.node,
            s.inbound.to_string(),
            s.outbound.to_string(),
            s.identity
        );
    }
    println!("  routing: {}", seed::SEEDED_SPLIT);
    println!("  fault injection: {}", seed::SEEDED_FAULT);
    println!("  outlier ejection: details-v1-1 answers 503 until the DestinationRule ejects it");
    println!(
        "  edit {} while this runs (e.g. weight 100 to subset v2): the split changes within a second",
        dir.join(seed::ROUTING_FILE).display()
    );
    println!("try:");
    println!("  curl -s -H 'Host: productpage' http://{ingress}/productpage");
    println!("  curl -s -H 'Host: productpage' -H 'end-user: jason' http://{ingress}/productpage");
    println!(
        "  curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'Host: ratings' http://{productpage_outbound}/ratings/0   # productpage may not call ratings: 403"
    );
    if let Some(reviews) = sidecars.iter().find(|s| s.node.starts_with("reviews")) {
        println!(
            "  curl -s http://{}/reviews/0   # plaintext into the mesh: refused (STRICT mTLS)",
            reviews.inbound
        );
    }
}
