//! `trellis explain`: how a request (or, with `--tcp`/`--sni`, a connection) would be routed
//! by a directory of Istio YAML or a cluster's resources, at a sidecar or (`--gateway`) at a
//! gateway proxy; with `--tcp --inbound`, what a workload's capture inbound listener does with
//! a connection to one of its ports.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use trellis_control::explain::{
    explain, explain_connection, explain_inbound, ConnectionRequest, ExplainRequest, InboundRequest,
};
use trellis_control::Severity;

use crate::source_args;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Directory of Istio YAML (read recursively; non-Istio kinds are skipped).
    #[arg(long, short, value_name = "DIR", required_unless_present = "kube")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    source: source_args::KubeArgs,
    /// Host / authority of the request, e.g. `reviews` or `reviews.default.svc.cluster.local:9080`.
    #[arg(long, required_unless_present = "inbound")]
    host: Option<String>,
    /// Path (with optional query).
    #[arg(long, default_value = "/")]
    path: String,
    /// Method.
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// A request header, `name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A label of the calling workload, `key=value` (repeatable), for `sourceLabels` matches.
    #[arg(long = "source-label", value_name = "KEY=VALUE")]
    source_labels: Vec<String>,
    /// The calling workload's namespace (default `default`), for `sourceNamespace` matches,
    /// `exportTo` and short host names.
    #[arg(long = "source-namespace", value_name = "NAMESPACE")]
    source_namespace: Option<String>,
    /// Destination port (default: from --host, else the service's first port).
    #[arg(long)]
    port: Option<u16>,
    /// Explain a connection instead of a request: which TCP/TLS chain (VirtualService `tcp`
    /// or `tls` rule, or a TCP service's own) a connection to --host and --port takes.
    #[arg(long)]
    tcp: bool,
    /// The TLS ClientHello's server name of the connection (implies --tcp).
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// The ALPN protocols the ClientHello offers, in order (repeatable or comma-separated;
    /// implies --tcp), e.g. `istio` for a mesh client through an AUTO_PASSTHROUGH gateway.
    #[arg(long, value_name = "PROTOCOL", value_delimiter = ',')]
    alpn: Vec<String>,
    /// Print the report as JSON, for scripts.
    #[arg(long)]
    json: bool,
    /// Explain as a gateway proxy (`trellis proxy --gateway`) would serve it: --port is the
    /// Gateway server port (default 80); the report names the server, its TLS termination and
    /// the bound VirtualService rule (or 404 NR), or on a TCP/TLS port the chain (--sni).
    #[arg(long)]
    gateway: bool,
    /// Explain a connection the workload's capture inbound listener (15006 behind
    /// `trellis init`) receives on --port: the protocol Istio picks for the port and why, its
    /// chain, PeerAuthentication mode and RBAC. The workload: --labels in --namespace.
    #[arg(long, requires = "tcp", requires = "port", conflicts_with_all = ["gateway", "sni"])]
    inbound: bool,
    /// The gateway's (with --inbound: the workload's) labels, `key=value` (repeatable or
    /// comma-separated), matched against each Gateway's `selector`, e.g. istio=ingressgateway.
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',')]
    labels: Vec<String>,
    /// The gateway's namespace (for `exportTo`; default istio-system), or with --inbound the
    /// workload's (default `default`).
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
}

pub fn run_explain(args: ExplainArgs) -> Result<ExitCode> {
    if args.inbound {
        return run_inbound(args);
    }
    if !args.gateway && (!args.labels.is_empty() || args.namespace.is_some()) {
        bail!("--labels and --namespace go with --gateway or --inbound");
    }
    let Some(host) = &args.host else {
        bail!("--host is required");
    };
    let mut req = ExplainRequest::new(host);
    req.path = args.path.clone();
    req.method = args.method.clone();
    req.port = args.port;
    req.source_namespace = args.source_namespace.clone();
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            bail!("header {header:?} is not `name: value`");
        };
        req = req.header(name.trim(), value.trim());
    }
    for label in &args.source_labels {
        let Some((key, value)) = label.split_once('=') else {
            bail!("source label {label:?} is not `key=value`");
        };
        req.source_labels
            .insert(key.trim().to_string(), value.trim().to_string());
    }
    if args.gateway {
        return run_gateway(args, req);
    }
    if args.tcp || args.sni.is_some() || !args.alpn.is_empty() {
        return run_connection(args, req);
    }
    let report = match &args.dir {
        Some(dir) => explain(dir, &req)
            .with_context(|| format!("cannot explain against {}", dir.display()))?,
        None => {
            let (snapshot, _) = args.source.read_once()?;
            trellis_control::explain::explain_resources(&snapshot.resources, &req)
                .context("cannot explain against the cluster")?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    let failed = trellis_control::explain::errors_of(&report).is_empty();
    Ok(if failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `--gateway`: the gateway proxy's server, termination and route (or chain).
fn run_gateway(args: ExplainArgs, req: ExplainRequest) -> Result<ExitCode> {
    let mut opts = trellis_control::translate::GatewayOptions {
        labels: source_args::key_values(&args.labels, "label")?,
        ..Default::default()
    };
    if let Some(ns) = &args.namespace {
        opts.namespace = ns.clone();
    }
    let resources = resources(&args)?;
    let hello = (args.sni.as_deref(), args.alpn.as_slice());
    let report = trellis_control::explain::explain_gateway(&resources, &opts, &req, hello)
        .context("cannot explain at the gateway")?;
    let errors = (report.diagnostics.iter())
        .chain(report.connection.iter().flat_map(|c| c.diagnostics.iter()))
        .any(|d| d.severity == Severity::Error);
    show(
        args.json,
        report.to_string(),
        serde_json::to_string_pretty(&report),
        errors,
    )
}

/// The resources explained: the directory's, or the cluster's.
fn resources(args: &ExplainArgs) -> Result<trellis_control::istio::ResourceSet> {
    Ok(match &args.dir {
        Some(dir) => trellis_control::istio::load_dir(dir)
            .with_context(|| format!("cannot explain against {}", dir.display()))?,
        None => args.source.read_once()?.0.resources,
    })
}

/// Print a report as `text`, or `as_json` with `json`; exit 2 when it carries `errors`.
fn show(
    json: bool,
    text: String,
    as_json: serde_json::Result<String>,
    errors: bool,
) -> Result<ExitCode> {
    if json {
        println!("{}", as_json?);
    } else {
        print!("{text}");
    }
    Ok(if errors {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--tcp`/`--sni`/`--alpn`: the L4 chain a connection takes.
fn run_connection(args: ExplainArgs, req: ExplainRequest) -> Result<ExitCode> {
    let (host, host_port) = match req.host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse::<u16>().ok()),
        _ => (req.host.clone(), None),
    };
    let Some(port) = req.port.or(host_port) else {
        bail!("a connection needs a port: --port or --host HOST:PORT");
    };
    let conn = ConnectionRequest {
        host,
        port,
        sni: args.sni.clone(),
        alpn: args.alpn.clone(),
        source_labels: req.source_labels,
        source_namespace: req.source_namespace,
        terminated: None,
    };
    let resources = resources(&args)?;
    let report = explain_connection(&resources, &conn).context("cannot explain the connection")?;
    let errors = (report.diagnostics.iter()).any(|d| d.severity == Severity::Error);
    show(
        args.json,
        report.to_string(),
        serde_json::to_string_pretty(&report),
        errors,
    )
}

/// `--tcp --inbound`: the capture inbound listener's protocol, chain, mTLS and RBAC for a
/// connection to one port of the workload.
fn run_inbound(args: ExplainArgs) -> Result<ExitCode> {
    let Some(port) = args.port else {
        bail!("--inbound needs --port (the workload port the connection is redirected to)");
    };
    let req = InboundRequest {
        namespace: (args.namespace.clone())
            .unwrap_or_else(|| trellis_control::istio::DEFAULT_NAMESPACE.to_string()),
        labels: source_args::key_values(&args.labels, "label")?,
        port,
    };
    let snapshot = match &args.dir {
        Some(dir) => trellis_control::plane::snapshot::Snapshot::read_dir(dir)
            .with_context(|| format!("cannot explain against {}", dir.display()))?,
        None => args.source.read_once()?.0,
    };
    let report = explain_inbound(&snapshot, &req).context("cannot explain the connection")?;
    let errors = (report.diagnostics.iter()).any(|d| d.severity == Severity::Error);
    show(
        args.json,
        report.to_string(),
        serde_json::to_string_pretty(&report),
        errors,
    )
}
