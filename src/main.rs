//! `trellis`: the command-line face of the Trellis service mesh. A thin CLI: every decision is
//! made in `trellis-engine`, sockets live in `trellis-io`, Istio resources in `trellis-control`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use trellis_control::{load_proxy_config_with, ProxyOverrides, Severity};
use trellis_io::reload::{ConfigWatcher, WatchOptions};
use trellis_io::{BackendChoice, ControlHandle, RunOptions, RuntimeOptions};
use trellis_local_mesh::LocalMeshOptions;

mod ca_cmd;
mod ca_reload;
mod control_cmd;
mod demo;
mod explain_cmd;
mod init_cmd;
mod inject_cmd;
mod install_cmd;
mod lifecycle;
mod plane_client;
mod plane_security;
mod request_cmd;
#[cfg(feature = "sim")]
mod sim_cmd;
mod source_args;
mod webhook_server;

/// Trellis: an Istio-compatible service mesh with a sans-IO core.
///
/// With no command, runs the demo mesh on loopback (same as `trellis demo`).
#[derive(Parser, Debug)]
#[command(name = "trellis", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run bookinfo as a mesh on loopback, in one process: the control plane on a directory of
    /// Kubernetes and Istio YAML (seeded, or --dir), one sidecar per workload with mTLS between
    /// them, the workloads (productpage → details, reviews v1/v2/v3 → ratings), and a traffic
    /// generator with a summary. Edit the directory while it runs to change routing live.
    ///
    /// Example: trellis demo    |    trellis demo --write-dir bookinfo && trellis demo --dir bookinfo
    Demo(demo::DemoArgs),
    /// Run a single-sidecar mesh on loopback: three `reviews` versions behind a Trellis sidecar with
    /// Istio-style routing (end-user: jason → v2, others 80/20 v1/v3), a self-check, and curl
    /// commands to try. No Kubernetes needed.
    Mesh(MeshArgs),
    /// Run a sidecar proxy from a config file (listeners, services with endpoints, and Istio
    /// VirtualService/DestinationRule resources inline or by path), or with --gateway an
    /// ingress gateway serving the Istio Gateways that select its --labels.
    ///
    /// Example: trellis proxy --config deploy/examples/proxy.yaml
    ///
    /// Example: trellis proxy --config deploy/examples/gateway.yaml --gateway --labels istio=ingressgateway --port-offset 20000
    Proxy(ProxyArgs),
    /// Explain how a request would be routed by a directory of Istio YAML: which VirtualService
    /// rule matches and why earlier ones did not, the destinations with weights and subsets, and
    /// the DestinationRule policy that applies.
    ///
    /// Example: trellis explain --dir samples/bookinfo/networking --host reviews -H 'end-user: jason'
    ///
    /// At a gateway: trellis explain --dir samples/bookinfo/networking --gateway --labels istio=ingressgateway --host bookinfo.example --port 80 --path /productpage
    Explain(explain_cmd::ExplainArgs),
    /// Check a directory of Istio YAML the way `istioctl analyze` does: Istio's message codes
    /// (IST0101 missing references, IST0106 schema errors, IST0109 conflicting mesh hosts,
    /// IST0112, IST0130/IST0131 unreachable rules ...), Istio's wording and line format.
    /// Kubernetes Services in the directory are the service registry. Exit status 79 when a
    /// message at or above --failure-threshold is found, as istioctl.
    ///
    /// Example: trellis analyze --dir samples/bookinfo
    Analyze(AnalyzeArgs),
    /// Run the deterministic mesh simulator: a seed, a seed range or a scenario file, with a
    /// summary and an optional SVG timeline.
    ///
    /// Example: trellis sim --seeds 0..100    |    trellis sim --seed 7 --plot seed7.svg
    #[cfg(feature = "sim")]
    Sim(sim_cmd::SimArgs),
    /// Make a mesh certificate authority and workload certificates as files: `init` a root
    /// and an intermediate (Istio's plug-in CA layout), `issue` a workload's cert-chain.pem,
    /// key.pem and root-cert.pem for a proxy's `identity:` section.
    ///
    /// Example: trellis ca init --dir ca && trellis ca issue --dir ca --namespace default --service-account reviews --out reviews-certs
    Ca(ca_cmd::CaArgs),
    /// Run the control plane: serve a directory of YAML (Istio resources plus the Kubernetes
    /// Services, Deployments, Pods ... the registry is derived from) to sidecars started with
    /// `trellis proxy --control-plane ADDR`, each scoped by Sidecar and exportTo, pushed after
    /// a 100 ms debounce when a file changes, ACKed or NACKed (NACKs are logged with the sidecar
    /// and the reason).
    ///
    /// With --webhook-listen it also serves the sidecar injection webhook (AdmissionReview v1,
    /// POST /inject over HTTPS with a certificate from the mesh CA), as istiod does.
    ///
    /// Example: trellis control --dir mesh/ --listen 127.0.0.1:15012
    Control(Box<control_cmd::ControlArgs>),
    /// Add the Trellis sidecar to the workloads of a YAML file, like `istioctl kube-inject`:
    /// the `istio-init` init container (`trellis init`), the `istio-proxy` container
    /// (`trellis proxy`), rewritten probes, Istio's labels and annotations. Other documents
    /// are copied unchanged; injecting twice changes nothing. With --native-sidecars true (or
    /// ENABLE_NATIVE_SIDECARS=true) the sidecar is a Kubernetes native sidecar, an init
    /// container with restartPolicy: Always, so Jobs complete.
    ///
    /// Example: trellis inject -f samples/bookinfo/platform/kube/bookinfo.yaml -o bookinfo-injected.yaml
    Inject(inject_cmd::InjectArgs),
    /// Print (or --apply with kubectl) what runs Trellis in a cluster, like `istioctl
    /// install`: the CRDs of the Istio kinds it reads (schemas from its Rust types), the
    /// trellis-system namespace, the CA secret, least-privilege RBAC, the control plane's
    /// Deployment and Service, and the sidecar injector's MutatingWebhookConfiguration.
    ///
    /// Example: trellis install --ca-dir mesh-ca | kubectl apply -f -
    Install(install_cmd::InstallArgs),
    /// Print (or --apply with kubectl) what `trellis install` created, to delete it; the CRDs
    /// only with --purge.
    ///
    /// Example: trellis uninstall | kubectl delete --ignore-not-found -f -
    Uninstall(install_cmd::UninstallArgs),
    /// Program this network namespace (a pod's) so inbound TCP goes to the sidecar on 15006
    /// and outbound TCP on 15001, with Istio's exclusions (the proxy's UID/GID 1337, loopback,
    /// the proxy's ports, excluded ports and CIDRs): Istio's istio-iptables, same flags, same
    /// annotations (--pod-annotations), loaded with nft or iptables. Needs CAP_NET_ADMIN.
    ///
    /// Example: trellis init -p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x '' -b '*' -d 15090,15021,15020
    ///
    /// Example: trellis init --dry-run    |    trellis init --cleanup
    Init(init_cmd::InitArgs),
    /// Wait until the sidecar is ready (Istio's `pilot-agent wait`): the injected sidecar
    /// container's postStart hook; with the sidecar listed first, the kubelet starts the
    /// application only after it returns (holdApplicationUntilProxyStarts). A native sidecar
    /// has no such hook: the kubelet holds the application until its startupProbe passes.
    /// Exits 0 once the URL answers 200, 1 after --timeout with the last answer.
    ///
    /// Example: trellis wait-ready --url http://localhost:15021/healthz/ready --timeout 60s
    WaitReady(lifecycle::WaitReadyArgs),
    /// Make an HTTP request to one of the sidecar's local ports (Istio's `pilot-agent
    /// request`): 15000 (admin, the default), 15020 (status), 15021 (readiness) or 15004. The
    /// native sidecar's preStop hook drains the inbound side with it. Prints the answer's
    /// body; exits 1 on a status of 400 or more other than 404.
    ///
    /// Example: trellis request --debug-port 15020 POST drain
    Request(request_cmd::RequestArgs),
}

#[derive(Args, Debug)]
struct MeshArgs {
    /// Proxy listener port on 127.0.0.1 (0 picks a free port).
    #[arg(long, default_value_t = 15001)]
    port: u16,
    /// Skip the start-up self-check traffic.
    #[arg(long)]
    no_selfcheck: bool,
    /// Requests the self-check sends.
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Seed of the engine's random decisions (default: random).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Args, Debug)]
struct ProxyArgs {
    /// The proxy config file (see deploy/examples/proxy.yaml).
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// Check the config, print what was found, and exit without serving.
    #[arg(long)]
    check: bool,
    /// Seed of the engine's random decisions (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// How long in-flight requests may take to finish after SIGTERM/Ctrl-C.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    drain_seconds: u64,
    /// Cores to run on: one thread, engine and set of SO_REUSEPORT listeners each
    /// (0 = every CPU this process may use).
    #[arg(long, value_name = "N", default_value_t = 0)]
    cores: usize,
    /// I/O backend: auto (io_uring, falling back to epoll where it is unavailable), io-uring
    /// (fail if unavailable) or epoll.
    #[arg(long, value_name = "auto|io-uring|epoll", default_value = "auto")]
    backend: BackendChoice,
    /// Port of the health endpoint (GET /healthz/ready: 200 when serving, 503 while starting
    /// or draining), on all interfaces as Istio's 15021; 0 turns it off.
    #[arg(long, value_name = "PORT", default_value_t = 15021)]
    health_port: u16,
    /// Envoy's admin port on 127.0.0.1 (Istio's 15000): /ready, /healthz/ready and
    /// POST /quitquitquit (drain, then exit 0); 0 (the default) turns it off.
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    admin_port: u16,
    /// pilot-agent's status port on all interfaces (Istio's 15020): /healthz/ready,
    /// POST /quitquitquit, and the application's probes rewritten by the injector
    /// (/app-health/<container>/livez|readyz|startupz, from the ISTIO_KUBE_APP_PROBERS
    /// environment variable); 0 (the default) turns it off.
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    status_port: u16,
    /// Do not pin each core's thread to its own CPU.
    #[arg(long)]
    no_pin: bool,
    /// Do not reload when the config file changes (SIGHUP still reloads).
    #[arg(long)]
    no_watch: bool,
    /// How often the names of DNS ServiceEntries (`resolution: DNS`) are resolved again; a
    /// changed answer is applied like an edited config. 0 resolves them once, at load.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    dns_refresh_secs: u64,
    /// Receive routes and clusters from `trellis control` at this address instead of the
    /// file's `services` and `istio` (the file still gives listeners, `http` and `workload`).
    /// A name is resolved at each (re)connection, e.g. trellis-control.trellis-system.svc:15012.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "gateway",
          value_parser = plane_client::parse_address)]
    control_plane: Option<String>,
    /// This sidecar's name: its pod's (or `<deployment>-<i>`). When the control plane's
    /// directory has that workload in the file's `workload.namespace`, its labels and service
    /// account decide what this sidecar sees; the name also appears in NACK reports.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "sidecar",
        requires = "control_plane"
    )]
    node: String,
    /// The root certificate(s) the control plane's certificate must chain to (PEM; the mesh
    /// root, `trellis control --root-cert-out` or the CA dir's root-cert.pem). Default: the
    /// roots of the file's `identity:`.
    #[arg(long, value_name = "FILE", requires = "control_plane")]
    control_plane_ca: Option<PathBuf>,
    /// Talk to the control plane over plain TCP (it must say --insecure-plaintext too): no
    /// TLS, and no certificate from it. Development only.
    #[arg(long, requires = "control_plane", conflicts_with = "control_plane_ca")]
    insecure_plaintext: bool,
    /// A service-account token sent with the first certificate request (Kubernetes: a
    /// projected token for the `istio-ca` audience, e.g.
    /// /var/run/secrets/tokens/istio-token); read again for each request.
    #[arg(long, value_name = "FILE", requires = "control_plane")]
    control_plane_token: Option<PathBuf>,
    /// Run as a gateway proxy (Istio's ingress gateway) instead of a sidecar: one listener per
    /// server port of the Gateways whose `selector` matches --labels, routed only by the
    /// VirtualServices bound to them (`spec.gateways`), 404 NR for any other host. Same config
    /// file and Istio YAML as a sidecar (its `gateway:` section turns this on too). HTTPS and
    /// TLS servers terminate (SIMPLE, MUTUAL, OPTIONAL_MUTUAL from files; ISTIO_MUTUAL with the
    /// `identity:`), pass through by SNI (PASSTHROUGH), or by the `outbound_.PORT_.SUBSET_.HOST`
    /// SNI to the mesh cluster (AUTO_PASSTHROUGH).
    #[arg(long)]
    gateway: bool,
    /// This gateway's workload labels, `key=value` (repeatable or comma-separated), matched
    /// against each Gateway's `selector`, e.g. istio=ingressgateway.
    #[arg(
        long,
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        requires = "gateway"
    )]
    labels: Vec<String>,
    /// This gateway's namespace (for `exportTo` and `sourceNamespace`; default istio-system).
    #[arg(long, value_name = "NS", requires = "gateway")]
    namespace: Option<String>,
    /// Address the gateway listeners bind instead of 0.0.0.0 (or each server's `bind`).
    #[arg(long, value_name = "IP", requires = "gateway")]
    bind_address: Option<std::net::IpAddr>,
    /// Added to every Gateway port number for the local listening port (8080 listens on 18080
    /// with 10000), so an unprivileged user can serve a Gateway's port 80.
    #[arg(long, value_name = "N", requires = "gateway")]
    port_offset: Option<u16>,
}

impl ProxyArgs {
    /// The command line's word over the config file.
    fn overrides(&self) -> Result<ProxyOverrides> {
        let labels = source_args::key_values(&self.labels, "label")?;
        Ok(ProxyOverrides {
            gateway: self.gateway,
            labels,
            namespace: self.namespace.clone(),
            bind_address: self.bind_address,
            port_offset: self.port_offset,
            dns: Some(trellis_control::dns::DnsCache::system()),
        })
    }
}

#[derive(Args, Debug)]
struct AnalyzeArgs {
    /// Directory of YAML (read recursively): Istio resources, Kubernetes Services, workloads.
    #[arg(long, short, value_name = "DIR", required_unless_present = "kube")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    source: source_args::KubeArgs,
    /// Print the messages as JSON (istioctl's keys), for scripts.
    #[arg(long)]
    json: bool,
    /// Lowest level that makes the exit status 79: error, warning or info.
    #[arg(long, value_name = "LEVEL", default_value = "error")]
    failure_threshold: trellis_control::analyze::Level,
    /// The mesh config (a MeshConfig as YAML, istioctl's `--meshConfigFile`) the analyzers
    /// read instead of Istio's defaults: DNS auto-allocation, the proxy image type, the root
    /// namespace.
    #[arg(
        long = "meshConfigFile",
        alias = "mesh-config-file",
        value_name = "FILE"
    )]
    mesh_config_file: Option<PathBuf>,
    /// The MeshNetworks (YAML) that IST0126 checks the networks' registries against; Istio's
    /// default is no networks.
    #[arg(long = "mesh-networks-file", value_name = "FILE")]
    mesh_networks_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The local mesh's self-check would drown its summary in access-log lines: keep those for
    // RUST_LOG=trellis::access=info. A proxy logs every request by default, as Envoy does.
    let default_filter = match &cli.command {
        Some(Command::Mesh(_)) => "info,trellis::access=warn".to_string(),
        // The demo's own summary is the output; the parts say only what goes wrong.
        // A refused push is said once per sidecar by the control plane's NACK line.
        None | Some(Command::Demo(_)) => "warn,trellis::plane_client=off".to_string(),
        // Istio's `--log_output_level=default:debug,...`: its default scope's level.
        Some(Command::Init(args)) => args
            .log_output_level
            .as_deref()
            .and_then(|l| l.split(',').find_map(|s| s.strip_prefix("default:")))
            .filter(|l| ["error", "warn", "info", "debug"].contains(l))
            .unwrap_or("info")
            .to_string(),
        _ => "info".to_string(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        None => demo::demo(demo::DemoArgs::default_run()),
        Some(Command::Demo(args)) => demo::demo(args),
        Some(Command::Mesh(args)) => mesh(args),
        Some(Command::Proxy(args)) => proxy(args),
        Some(Command::Explain(args)) => explain_cmd::run_explain(args),
        Some(Command::Analyze(args)) => run_analyze(args),
        #[cfg(feature = "sim")]
        Some(Command::Sim(args)) => sim_cmd::sim(args),
        Some(Command::Ca(args)) => ca_cmd::ca(args).map(|()| ExitCode::SUCCESS),
        Some(Command::Control(args)) => control_cmd::control(*args),
        Some(Command::Inject(args)) => inject_cmd::inject(args).map(|()| ExitCode::SUCCESS),
        Some(Command::Install(args)) => install_cmd::install(args).map(|()| ExitCode::SUCCESS),
        Some(Command::Uninstall(args)) => install_cmd::uninstall(args).map(|()| ExitCode::SUCCESS),
        Some(Command::Init(args)) => init_cmd::init(args),
        Some(Command::WaitReady(args)) => lifecycle::wait_ready(args),
        Some(Command::Request(args)) => request_cmd::request(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn mesh(args: MeshArgs) -> Result<ExitCode> {
    let opts = LocalMeshOptions {
        port: args.port,
        selfcheck: !args.no_selfcheck,
        requests: args.requests,
        duration: args.duration.map(Duration::from_secs),
        seed: args.seed,
        handle_signals: true,
    };
    let check = trellis_local_mesh::run_local_mesh(opts).context("local mesh")?;
    let healthy = check.is_none_or(|c| c.failures.is_empty() && c.jason.is_ok());
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn proxy(args: ProxyArgs) -> Result<ExitCode> {
    let overrides = args.overrides()?;
    let loaded = load_proxy_config_with(&args.config, &overrides)
        .with_context(|| format!("cannot load {}", args.config.display()))?;
    let mut errors = 0;
    for diagnostic in &loaded.warnings {
        if diagnostic.severity == Severity::Error {
            errors += 1;
            tracing::error!("{diagnostic}");
        } else {
            tracing::warn!("{diagnostic}");
        }
    }
    let watched = loaded.watched_files.clone();
    let config = Arc::new(loaded.config);
    // Compile it the way the engine will, so a bad config fails here, loudly.
    trellis_engine::Engine::try_new(config.clone(), 0).context("the engine refuses this config")?;
    if args.check {
        println!(
            "{}: {} listener(s), {} route table(s), {} cluster(s), {} diagnostic(s) ({} error(s))",
            args.config.display(),
            config.listeners.len(),
            config.route_tables.len(),
            config.clusters.len(),
            loaded.warnings.len(),
            errors
        );
        return Ok(if errors == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let control = ControlHandle::new();
    trellis_io::install_ctrl_c(control.clone()).context("cannot install signal handler")?;
    // Held until the proxy stops: dropping them stops the admin and status ports.
    let _status_servers = lifecycle::start_status_servers(
        args.admin_port,
        args.status_port,
        args.health_port,
        &control,
    )?;
    let mut run = RunOptions {
        shutdown_grace: Duration::from_secs(args.drain_seconds),
        ..RunOptions::default()
    };
    if let Some(seed) = args.seed {
        run.seed = seed;
    }
    tracing::info!(
        seed = run.seed,
        "engine seed (each core derives its own from it)"
    );
    let opts = RuntimeOptions {
        cores: args.cores,
        backend: args.backend,
        run,
        health: (args.health_port != 0)
            .then(|| std::net::SocketAddr::from(([0, 0, 0, 0], args.health_port))),
        pin: !args.no_pin,
    };
    if let Some(addr) = args.control_plane {
        let channel = plane_client::Channel::from_flags(
            args.insecure_plaintext,
            args.control_plane_ca.as_deref(),
            args.control_plane_token.clone(),
        )?;
        let _client = plane_client::start(
            addr,
            args.node.clone(),
            loaded.workload.clone(),
            config.clone(),
            control.clone(),
            channel,
        )
        .context("cannot start the control-plane client")?;
        trellis_io::run_runtime(config, opts, control).context("proxy stopped")?;
        return Ok(ExitCode::SUCCESS);
    }
    let dns = overrides.dns.clone();
    let probe = dns
        .filter(|_| args.dns_refresh_secs > 0)
        .map(|dns| trellis_io::reload::Probe {
            every: Duration::from_secs(args.dns_refresh_secs),
            what: "DNS answers of ServiceEntries",
            changed: Box::new(move || {
                let (changed, notes) = dns.refresh_asked();
                for note in notes {
                    tracing::warn!("{note}");
                }
                changed
            }),
        });
    let watcher = ConfigWatcher::start(
        args.config.clone(),
        Box::new(move |path: &std::path::Path| reload_config(path, &overrides)),
        control.clone(),
        WatchOptions {
            poll: (!args.no_watch).then_some(Duration::from_secs(1)),
            sighup: true,
            // A renewed certificate is picked up like an edited config.
            also: watched,
            probe,
        },
    )
    .context("cannot watch the config file")?;
    let result = trellis_io::run_runtime(config, opts, control);
    watcher.stop();
    result.context("proxy stopped")?;
    Ok(ExitCode::SUCCESS)
}

/// Load the config file again for a reload: the same checks as at start-up; any failure is
/// refused (the watcher logs it and the last good config keeps serving).
fn reload_config(
    path: &std::path::Path,
    overrides: &ProxyOverrides,
) -> std::result::Result<Arc<trellis_engine::config::Config>, String> {
    let loaded = load_proxy_config_with(path, overrides).map_err(|e| format!("{e:#}"))?;
    for diagnostic in &loaded.warnings {
        tracing::warn!("{diagnostic}");
    }
    let config = Arc::new(loaded.config);
    trellis_engine::Engine::try_new(config.clone(), 0)
        .map_err(|e| format!("the engine refuses this config: {e}"))?;
    Ok(config)
}

/// istioctl's exit status when analyzers found issues at or above the failure threshold.
const ANALYZER_FOUND_ISSUES: u8 = 79;

fn run_analyze(args: AnalyzeArgs) -> Result<ExitCode> {
    let target = args.source.describe(args.dir.as_deref());
    let mut inputs = match &args.dir {
        Some(dir) => trellis_control::analyze::Inputs::read_dir(dir)
            .with_context(|| format!("cannot analyze {}", dir.display()))?,
        None => {
            // The cluster's objects, each read as a document of a file would be.
            let (_, objects) = args.source.read_once()?;
            let mut inputs = trellis_control::analyze::Inputs::default();
            for (name, object) in objects.iter() {
                inputs.add_str(&object.to_string(), name);
            }
            inputs
        }
    };
    if let Some(file) = &args.mesh_config_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the mesh config {}", file.display()))?;
        inputs.set_mesh_config_str(&text, &file.display().to_string())?;
    }
    if let Some(file) = &args.mesh_networks_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the mesh networks {}", file.display()))?;
        inputs.set_mesh_networks_str(&text, &file.display().to_string())?;
    }
    let analysis = trellis_control::analyze::analyze_resources(&inputs, &target);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&analysis)?);
    } else {
        print!("{analysis}");
    }
    if analysis.fails(args.failure_threshold) {
        eprintln!(
            "Error: Analyzers found issues when analyzing {target}.\nSee {} for more information about causes and resolutions.",
            trellis_control::analyze::message::DOCS_BASE
        );
        return Ok(ExitCode::from(ANALYZER_FOUND_ISSUES));
    }
    Ok(ExitCode::SUCCESS)
}
