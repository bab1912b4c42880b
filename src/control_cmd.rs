//! `trellis control`: the control plane serving a directory of YAML, or a Kubernetes cluster's
//! objects (`--kube`), to sidecars.
//!
//! The push loop is `trellis_control::plane::net::serve` on a tokio runtime (the state
//! machine `plane::push::Server` makes every decision); the source (the directory, with the
//! JWKS keys and DNS answers the control plane fetches itself) is polled on a thread of its
//! own, which publishes each new snapshot to the loop. The channel is mTLS and carries the
//! sidecars' certificate requests (`plane_security`: the mesh CA, its serving certificate and
//! who is believed), unless `--insecure-plaintext`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant as Wall};

use anyhow::{Context, Result};
use clap::Args;
use tokio::sync::watch;
use trellis_control::dns::{names_to_resolve, DnsCache};
use trellis_control::inject::NativeSidecarMode;
use trellis_control::plane::kube_source::nodes::{NodeVersionsView, NodeWatch};
use trellis_control::plane::kube_source::root_cert::{PassReport, RootCertPublisher};
use trellis_control::plane::kube_source::KubeSourceConfig;
use trellis_control::plane::mesh_settings::{read_mesh_config, MeshSettings};
use trellis_control::plane::net::reload::reloadable_webhook_config;
use trellis_control::plane::net::upkeep::{upkeep, Serving, UpkeepReport};
use trellis_control::plane::net::{serve, Issuer, Outcome, ServerConfig, ServerReport};
use trellis_control::plane::push::{Event, PushConfig};
use trellis_control::plane::Snapshot;
use trellis_engine::Instant;

#[derive(Args, Debug)]
pub struct ControlArgs {
    /// The directory of YAML to serve: Istio resources plus Kubernetes Services, Deployments,
    /// Pods, EndpointSlices, Namespaces and ServiceAccounts (the registry is derived from them).
    #[arg(long, value_name = "DIR", required_unless_present = "kube")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    source: crate::source_args::KubeArgs,
    /// Istio's mesh config (MeshConfig as YAML, what the `mesh` key of the `istio` ConfigMap
    /// holds; pilot-discovery's flag). Without it, an `istio` ConfigMap in istio-system among
    /// the source's objects is read; with it, the file wins. Sidecars get the fields they act
    /// on (protocolDetectionTimeout, pathNormalization, outboundTrafficPolicy, enableAutoMtls,
    /// defaultHttpRetryPolicy); the file is read again when it changes.
    #[arg(long = "meshConfig", value_name = "FILE")]
    mesh_config: Option<PathBuf>,
    /// Where sidecars connect (`trellis proxy --control-plane ADDR`). Default: istiod's
    /// ports, 127.0.0.1:15012 for the mTLS channel, 127.0.0.1:15010 with --insecure-plaintext.
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<SocketAddr>,
    /// How often to look for changed files, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    poll_ms: u64,
    /// Quiet period before a change is pushed (Istio's PILOT_DEBOUNCE_AFTER), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    debounce_after_ms: u64,
    /// Longest a stream of changes is held back (Istio's PILOT_DEBOUNCE_MAX), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    debounce_max_ms: u64,
    /// How often the names of DNS ServiceEntries are resolved again, in seconds; changed
    /// answers are pushed like a changed file. 0 resolves them only when files change.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    dns_refresh_secs: u64,
    /// The mesh CA's plug-in files (`trellis ca init`, or Istio's `cacerts` secret mounted):
    /// the push channel's and the webhook's serving certificates, and the sidecars' workload
    /// certificates, are issued from it. Without: a new CA for this run (see --root-cert-out).
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    #[command(flatten)]
    channel: crate::plane_security::ChannelArgs,
    #[command(flatten)]
    upkeep: crate::ca_reload::CaUpkeepArgs,
    /// With --kube: how often every namespace's `istio-ca-root-cert` ConfigMap is checked and
    /// repaired (a root change is written at once).
    #[arg(long, value_name = "DURATION", value_parser = crate::plane_security::parse_duration,
          default_value = "30s")]
    root_configmap_resync: Duration,
    #[command(flatten)]
    webhook: WebhookArgs,
}

/// The mutating admission webhook (`POST /inject` over HTTPS), served beside the sidecars.
#[derive(Args, Debug)]
pub struct WebhookArgs {
    /// Serve the sidecar injection webhook here (e.g. 0.0.0.0:15017, Istio's port).
    #[arg(long, value_name = "IP:PORT")]
    webhook_listen: Option<SocketAddr>,
    /// The webhook certificate's DNS names (repeatable; default: the trellis-control Service
    /// in trellis-system, `trellis-control.trellis-system.svc` and its other forms).
    #[arg(
        long = "webhook-dns-name",
        value_name = "NAME",
        requires = "webhook_listen"
    )]
    webhook_dns_names: Vec<String>,
    /// Write the root certificate clients must trust (the webhook configuration's caBundle).
    #[arg(long, value_name = "FILE", requires = "webhook_listen")]
    webhook_ca_bundle_out: Option<PathBuf>,
    #[command(flatten)]
    injector: crate::inject_cmd::InjectorArgs,
}

/// Start the webhook when asked: a serving certificate from the mesh CA (kept current by the
/// upkeep), then the server. With `kube` (`--kube`) and native sidecars on `auto`, the nodes
/// are watched on `runtime` for `DetectNativeSidecar`, as istiod's webhook does.
fn start_webhook(
    args: &WebhookArgs,
    issuer: &Issuer,
    ttl: Duration,
    runtime: &tokio::runtime::Runtime,
    kube: Option<KubeSourceConfig>,
) -> Result<Option<Serving>> {
    use trellis_control::ca::serving::service_dns_names;
    let Some(listen) = args.webhook_listen else {
        return Ok(None);
    };
    let settings = args.injector.settings()?;
    let nodes = match kube {
        Some(config) if settings.native_sidecars == NativeSidecarMode::Auto => {
            let watch = runtime
                .block_on(NodeWatch::connect(&config))
                .context("cannot make the Node client")?;
            let view = NodeVersionsView::default();
            runtime.spawn(watch.run(view.clone(), log_nodes));
            Some(view)
        }
        _ => None,
    };
    let now = std::time::SystemTime::now();
    let names = if args.webhook_dns_names.is_empty() {
        service_dns_names("trellis-control", "trellis-system")
    } else {
        args.webhook_dns_names.clone()
    };
    let serving = Serving::issue("webhook", issuer, names, ttl, now)
        .context("cannot issue the webhook's certificate")?;
    if let Some(path) = &args.webhook_ca_bundle_out {
        std::fs::write(path, issuer.serving_root(now))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let tls = reloadable_webhook_config(serving.cert()).context("the webhook's TLS settings")?;
    crate::webhook_server::start(listen, tls, settings, nodes)?;
    Ok(Some(serving))
}

/// The Node watch's news, as log lines.
fn log_nodes(report: std::result::Result<usize, String>) {
    match report {
        Ok(count) => tracing::info!(
            nodes = count,
            "node kubelet versions for native sidecar detection"
        ),
        Err(e) => tracing::warn!("cannot watch nodes (native sidecars stay as detected): {e}"),
    }
}

/// istiod's ports: 15012 serves xDS and certificates over TLS, 15010 plaintext xDS
/// (pilot-discovery's `--secureGRPCAddr` ":15012" and `--grpcAddr` ":15010",
/// `pilot/cmd/pilot-discovery/app/cmd.go`).
fn default_listen(insecure_plaintext: bool) -> SocketAddr {
    let port = if insecure_plaintext { 15010 } else { 15012 };
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn control(args: ControlArgs) -> Result<ExitCode> {
    if args.debounce_after_ms > args.debounce_max_ms {
        anyhow::bail!("--debounce-after-ms must not exceed --debounce-max-ms");
    }
    let listen = args
        .listen
        .unwrap_or_else(|| default_listen(args.channel.insecure_plaintext()));
    let ca = crate::plane_security::mesh_ca(args.ca_dir.as_deref(), &args.channel)?;
    let mut config = ServerConfig::new(PushConfig {
        debounce_after: Duration::from_millis(args.debounce_after_ms),
        debounce_max: Duration::from_millis(args.debounce_max_ms),
    });

    // One thread runs the push loop and every connection: the work per message is small, and
    // the state machine is one owner anyway.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let reviewer = match args.source.kube {
        true => Some(runtime.block_on(crate::plane_security::token_reviewer(&args.source))?),
        false => None,
    };
    let overlap = args
        .upkeep
        .root_overlap
        .unwrap_or(args.channel.workload_cert_ttl);
    // Restarted within a rotation's overlap: the replaced CA is trusted (and serves) again
    // until the overlap ends, as if the process had never stopped.
    let resumed = args.ca_dir.as_deref().and_then(|dir| {
        crate::ca_reload::resumed_rotation(dir, &args.channel.trust_domain, overlap)
    });
    let issuer = match resumed {
        Some((previous, rotated_at)) => {
            let issuer = crate::plane_security::issuer(&args.channel, previous, reviewer);
            issuer
                .rotate(ca, rotated_at, overlap)
                .context("cannot resume the root rotation")?;
            issuer.refresh(std::time::SystemTime::now());
            tracing::info!("restarted within a root rotation's overlap: both roots trusted");
            issuer
        }
        None => crate::plane_security::issuer(&args.channel, ca, reviewer),
    };
    let serving_ttl = args.upkeep.serving_cert_ttl;
    let kube = args.source.kube.then(|| args.source.config());
    let mut serving: Vec<Serving> =
        start_webhook(&args.webhook, &issuer, serving_ttl, &runtime, kube)?
            .into_iter()
            .collect();
    let mut roots = None;
    if let Some((channel, channel_roots)) =
        crate::plane_security::secure(&mut config, &args.channel, listen, &issuer, serving_ttl)?
    {
        serving.push(channel);
        roots = Some(channel_roots);
    }
    let (rotate, rotations) = tokio::sync::mpsc::channel(1);
    if let Some(dir) = &args.ca_dir {
        if overlap < args.channel.workload_cert_ttl {
            // A sidecar whose certificate is still under the old root when the overlap ends
            // is refused at its next reconnect, until it renews.
            tracing::warn!(
                overlap_s = overlap.as_secs(),
                workload_cert_ttl_s = args.channel.workload_cert_ttl.as_secs(),
                "--root-overlap is shorter than --workload-cert-ttl"
            );
        }
        crate::ca_reload::watch_ca_dir(
            dir.clone(),
            args.channel.trust_domain.clone(),
            args.upkeep.ca_reload_interval,
            overlap,
            rotate,
        )?;
    }
    runtime.spawn(upkeep(
        issuer.clone(),
        serving,
        roots,
        rotations,
        log_upkeep,
    ));
    if args.source.kube {
        let publisher = runtime
            .block_on(RootCertPublisher::connect(&args.source.config()))
            .context("cannot make the ConfigMap client")?;
        let resync = args.root_configmap_resync;
        runtime.spawn(publisher.run(issuer.bundle(), resync, log_root_pass));
    }
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(listen))
        .with_context(|| format!("cannot listen on {listen}"))?;
    let source = snapshot_source(&args)?;
    let from = args.source.describe(args.dir.as_deref());
    let tls = if config.tls.is_some() {
        "mTLS"
    } else {
        "plaintext"
    };
    tracing::info!(%listen, %from, channel = tls, "control plane serving");
    let (publish, snapshots) = watch::channel(None);
    let refresh = Refresh {
        poll: Duration::from_millis(args.poll_ms.max(10)),
        dns_every: (args.dns_refresh_secs > 0).then(|| Duration::from_secs(args.dns_refresh_secs)),
    };
    std::thread::Builder::new()
        .name("config-source".into())
        .spawn(move || publish_snapshots(source, refresh, publish))
        .context("cannot start the config source")?;
    runtime.block_on(serve(listener, config, snapshots, log_report));
    Ok(ExitCode::SUCCESS)
}

/// The CA upkeep's reports, as log lines.
fn log_upkeep(report: UpkeepReport) {
    match report {
        UpkeepReport::Renewed { what, renew_in } => tracing::info!(
            what,
            renew_in_s = renew_in.as_secs(),
            "serving certificate issued; new handshakes present it"
        ),
        UpkeepReport::RenewFailed { what, error } => {
            tracing::error!(what, "serving certificate not renewed: {error}")
        }
        UpkeepReport::Rotated { overlap } => tracing::info!(
            overlap_s = overlap.as_secs(),
            "root rotated: new certificates from the new CA, both roots trusted for the overlap"
        ),
        UpkeepReport::RotationRefused(e) => tracing::error!("root rotation refused: {e}"),
        UpkeepReport::BundleChanged { roots } => {
            tracing::info!(roots, "trust bundle changed; pushed to sidecars")
        }
    }
}

/// The ConfigMap writer's passes, as log lines (quiet when nothing changed).
fn log_root_pass(pass: Result<PassReport, String>) {
    match pass {
        Ok(pass) => {
            if !pass.created.is_empty() || !pass.updated.is_empty() {
                tracing::info!(
                    created = pass.created.join(","),
                    updated = pass.updated.join(","),
                    "istio-ca-root-cert ConfigMaps written"
                );
            }
            for (namespace, error) in pass.failed {
                tracing::warn!(%namespace, "cannot write istio-ca-root-cert: {error}");
            }
        }
        Err(e) => tracing::warn!("cannot list namespaces for istio-ca-root-cert: {e}"),
    }
}

/// Where snapshots come from: the directory (`--dir`) or the Kubernetes API (`--kube`), each
/// handing out a new snapshot when `poll` finds the mesh changed; with `--meshConfig`, its
/// settings replace the source's (a change of the file is a change too).
fn snapshot_source(args: &ControlArgs) -> Result<impl FnMut() -> Result<Option<Snapshot>> + Send> {
    let mut source = args.source.source(args.dir.as_deref())?;
    let mut mesh = match &args.mesh_config {
        Some(path) => Some(MeshFile::read(path)?),
        None => None,
    };
    let mut latest: Option<Snapshot> = None;
    Ok(move || {
        let fresh = source.poll()?;
        let mesh_changed = mesh.as_mut().is_some_and(MeshFile::reread);
        if let Some(snapshot) = fresh {
            latest = Some(snapshot);
        } else if !mesh_changed {
            return Ok(None);
        }
        Ok(latest.clone().map(|snapshot| match &mesh {
            Some(file) => snapshot.with_mesh(&file.settings),
            None => snapshot,
        }))
    })
}

/// `--meshConfig FILE`, as pilot-discovery reads its mesh config file: read at start (a file
/// that cannot be read or parsed stops the command), read again on every poll; a changed
/// file that does not parse is logged and the last good settings stay.
struct MeshFile {
    path: PathBuf,
    text: String,
    settings: MeshSettings,
}

impl MeshFile {
    fn read(path: &Path) -> Result<MeshFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the mesh config {}", path.display()))?;
        let settings = read_mesh_config(&text, &path.display().to_string())
            .with_context(|| format!("the mesh config {} is refused", path.display()))?;
        tracing::info!(file = %path.display(), ?settings, "mesh config");
        Ok(MeshFile {
            path: path.to_path_buf(),
            text,
            settings,
        })
    }

    /// Whether the file now says something else (and is good).
    fn reread(&mut self) -> bool {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return false;
        };
        if text == self.text {
            return false;
        }
        self.text = text;
        match read_mesh_config(&self.text, &self.path.display().to_string()) {
            Ok(settings) if settings == self.settings => false,
            Ok(settings) => {
                tracing::info!(?settings, "mesh config changed");
                self.settings = settings;
                true
            }
            Err(e) => {
                tracing::error!("mesh config refused, the last good one is still served: {e}");
                false
            }
        }
    }
}

/// How often the source thread looks again.
struct Refresh {
    poll: Duration,
    /// How often the names of DNS ServiceEntries are resolved again (`None`: only when the
    /// source changes).
    dns_every: Option<Duration>,
}

/// The source thread: polls the source, prepares each snapshot with what the control plane
/// fetches itself, and publishes it to the push loop (blocking work stays off the runtime:
/// JWKS fetches, DNS lookups, file reads). Ends when the loop is gone.
fn publish_snapshots(
    mut source: impl FnMut() -> Result<Option<Snapshot>>,
    refresh: Refresh,
    publish: watch::Sender<Option<Arc<Snapshot>>>,
) {
    // What is pushed is the source's snapshot with what the control plane fetches itself:
    // RequestAuthentication keys (inlined, sidecars never fetch; refreshed as pilot refreshes
    // them) and the DNS answers of ServiceEntries (module docs of trellis_control::dns).
    // `from_source` is kept to prepare again when either changes.
    let jwks = trellis_control::jwks_resolver::JwksResolver::global();
    let mut next_jwks_refresh = Wall::now() + jwks_refresh_period(jwks);
    let dns = DnsCache::system();
    let mut next_dns = refresh.dns_every.map(|every| Wall::now() + every);
    let mut next_poll = Wall::now();
    let mut from_source: Option<Snapshot> = None;
    let prepare = |snapshot: Snapshot| {
        let snapshot = with_jwks(snapshot, jwks);
        let (answers, notes) = dns.answers_for(&names_to_resolve(&snapshot.resources));
        for note in notes {
            tracing::warn!("{note}");
        }
        Some(Arc::new(snapshot.with_dns(answers)))
    };
    while !publish.is_closed() {
        if Wall::now() >= next_jwks_refresh {
            let changed = jwks.refresh();
            for (issuer, uri, error) in jwks.failures() {
                tracing::warn!(%issuer, %uri, "JWKS refresh failed: {error}");
            }
            next_jwks_refresh = Wall::now() + jwks_refresh_period(jwks);
            if let (true, Some(current)) = (changed, &from_source) {
                tracing::info!("JWKS changed: pushing the new keys");
                publish.send_replace(prepare(current.clone()));
            }
        }
        if let (Some(due), Some(every), Some(current)) = (next_dns, refresh.dns_every, &from_source)
        {
            if Wall::now() >= due {
                next_dns = Some(Wall::now() + every);
                let (changed, notes) = dns.refresh_asked();
                for note in notes {
                    tracing::warn!("{note}");
                }
                if changed {
                    tracing::info!("DNS answers of ServiceEntries changed");
                    publish.send_replace(prepare(current.clone()));
                }
            }
        }
        if Wall::now() >= next_poll {
            next_poll = Wall::now() + refresh.poll;
            match source() {
                Ok(Some(snapshot)) => {
                    for d in &snapshot.diagnostics {
                        tracing::warn!("{d}");
                    }
                    tracing::info!(
                        digest = format!("{:016x}", snapshot.digest),
                        "config changed"
                    );
                    from_source = Some(snapshot.clone());
                    let prepared = prepare(snapshot);
                    next_jwks_refresh =
                        next_jwks_refresh.min(Wall::now() + jwks_refresh_period(jwks));
                    publish.send_replace(prepared);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!("directory refused, the last good one is still served: {e:#}")
                }
            }
        }
        let wake = [Some(next_poll), next_dns, Some(next_jwks_refresh)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_poll);
        std::thread::sleep(wake.saturating_duration_since(Wall::now()));
    }
}

/// The push loop's reports, as log lines.
fn log_report(_: Instant, report: ServerReport) {
    match report {
        ServerReport::Push(Event::Released { version }) => tracing::info!(version, "released"),
        ServerReport::Push(Event::Acked { node, version, .. }) => {
            tracing::info!(%node, version, "ACK")
        }
        ServerReport::Push(Event::Nacked {
            node,
            version,
            reason,
            ..
        }) => tracing::error!(
            "NACK from {node} of version {version}, which keeps its last good config: {reason}"
        ),
        ServerReport::Push(Event::ProtocolError { conn, reason }) => {
            tracing::warn!(conn, "{reason}")
        }
        ServerReport::Connected { conn, peer } => tracing::info!(conn, %peer, "sidecar connected"),
        // A connection closed before any handshake byte is a port probe, not a refusal.
        ServerReport::Disconnected { conn, reason }
            if reason.starts_with("TLS handshake") && !reason.ends_with("handshake eof") =>
        {
            tracing::warn!(conn, "sidecar refused: {reason}")
        }
        ServerReport::Disconnected { conn, reason } => {
            tracing::info!(conn, "sidecar disconnected: {reason}")
        }
        ServerReport::AcceptFailed(e) => tracing::warn!("cannot accept a sidecar: {e}"),
        ServerReport::Secured {
            conn,
            peer_identity,
        } => tracing::info!(
            conn,
            peer = peer_identity.as_deref().unwrap_or("no client certificate"),
            "sidecar channel secured"
        ),
        ServerReport::Certificate {
            conn,
            outcome:
                Outcome::Issued {
                    identity,
                    not_after,
                },
        } => tracing::info!(
            conn,
            %identity,
            valid_for_s = not_after
                .duration_since(std::time::SystemTime::now())
                .map_or(0, |d| d.as_secs()),
            "workload certificate issued"
        ),
        ServerReport::Certificate {
            conn,
            outcome: Outcome::Refused { caller, refusal },
        } => tracing::warn!(conn, "CSR refused to {caller}: {refusal}"),
    }
}

/// `snapshot` with every `jwksUri` fetched and inlined (failures logged; they fail closed).
fn with_jwks(
    mut snapshot: trellis_control::plane::snapshot::Snapshot,
    jwks: &trellis_control::jwks_resolver::JwksResolver,
) -> trellis_control::plane::snapshot::Snapshot {
    for d in trellis_control::plane::jwks::inline_jwks(&mut snapshot, jwks) {
        tracing::warn!("{d}");
    }
    snapshot
}

/// pilot's refresh period: 20 minutes, one while some fetch fails.
fn jwks_refresh_period(jwks: &trellis_control::jwks_resolver::JwksResolver) -> Duration {
    if jwks.has_failures() {
        trellis_control::jwks_resolver::REFRESH_INTERVAL_ON_FAILURE
    } else {
        trellis_control::jwks_resolver::REFRESH_INTERVAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ports_are_istiods() {
        // pilot/cmd/pilot-discovery/app/cmd.go: --secureGRPCAddr ":15012", --grpcAddr ":15010".
        assert_eq!(default_listen(false).port(), 15012);
        assert_eq!(default_listen(true).port(), 15010);
        assert!(default_listen(false).ip().is_loopback());
    }
}
