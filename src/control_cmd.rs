//! `trellis control`: the control plane serving a directory of YAML to sidecars.
//!
//! A thin transport around `trellis_control::plane::push::Server`, which makes every
//! decision: plain threads and blocking TCP (one reader thread per connection feeding one
//! loop that owns the state machine and writes its frames). The state machine is sans-IO, so a
//! tokio transport (for the later Kubernetes source) can replace this one without touching it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant as Wall};

use anyhow::{Context, Result};
use clap::Args;
use trellis_control::dns::{names_to_resolve, DnsCache};
use trellis_control::plane::push::wire::{encode, FrameDecoder};
use trellis_control::plane::push::{ClientMessage, ConnId, Event, Input, PushConfig, Server};
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
    /// Where sidecars connect (`trellis proxy --control-plane ADDR`).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:15010")]
    listen: SocketAddr,
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
    #[command(flatten)]
    webhook: WebhookArgs,
}

/// The mutating admission webhook (`POST /inject` over HTTPS), served beside the sidecars.
#[derive(Args, Debug)]
pub struct WebhookArgs {
    /// Serve the sidecar injection webhook here (e.g. 0.0.0.0:15017, Istio's port).
    #[arg(long, value_name = "IP:PORT")]
    webhook_listen: Option<SocketAddr>,
    /// The mesh CA's plug-in files (`trellis ca init`, or Istio's `cacerts` secret mounted):
    /// the webhook's serving certificate is issued from it. Without: a new CA for this run.
    #[arg(long, value_name = "DIR", requires = "webhook_listen")]
    ca_dir: Option<PathBuf>,
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

/// Start the webhook when asked: a serving certificate from the mesh CA, then the server.
fn start_webhook(args: &WebhookArgs) -> Result<()> {
    use trellis_control::ca::serving::service_dns_names;
    use trellis_control::ca::CertificateAuthority;
    let Some(listen) = args.webhook_listen else {
        return Ok(());
    };
    let now = std::time::SystemTime::now();
    let files = match &args.ca_dir {
        Some(dir) => crate::ca_cmd::read_plugin_files(dir)?,
        None => {
            tracing::warn!(
                "no --ca-dir: the webhook's certificate comes from a new CA for this run"
            );
            trellis_control::ca::bootstrap::new_plugin_ca("cluster.local", now)
                .context("cannot make a CA")?
                .0
        }
    };
    let mut ca = CertificateAuthority::plug_in("cluster.local", &files)
        .context("the CA files are not a usable CA")?;
    let names = if args.webhook_dns_names.is_empty() {
        service_dns_names("trellis-control", "trellis-system")
    } else {
        args.webhook_dns_names.clone()
    };
    // A year, as the files' CA outlives it; restart to renew.
    let serving = ca
        .issue_serving(&names, now, Duration::from_secs(365 * 86_400))
        .context("cannot issue the webhook's certificate")?;
    if let Some(path) = &args.webhook_ca_bundle_out {
        std::fs::write(path, &serving.root_cert)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let tls = crate::webhook_server::tls_config(&serving.cert_chain, &serving.key)?;
    crate::webhook_server::start(listen, tls, args.injector.settings()?)
}

/// A sidecar that does not take a push within this long is disconnected (it reconnects and
/// resumes), so one stuck sidecar cannot stall the others.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

enum Note {
    Opened(ConnId, TcpStream),
    Message(ConnId, ClientMessage),
    Closed(ConnId),
}

pub fn control(args: ControlArgs) -> Result<ExitCode> {
    start_webhook(&args.webhook)?;
    let listener = TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut watcher = args.source.source(args.dir.as_deref())?;
    let from = args.source.describe(args.dir.as_deref());
    tracing::info!(listen = %args.listen, %from, "control plane serving");
    let (tx, rx) = mpsc::channel::<Note>();
    std::thread::spawn(move || accept(listener, tx));
    let start = Wall::now();
    let now = || Instant::from_nanos(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
    if args.debounce_after_ms > args.debounce_max_ms {
        anyhow::bail!("--debounce-after-ms must not exceed --debounce-max-ms");
    }
    let mut server = Server::new(PushConfig {
        debounce_after: Duration::from_millis(args.debounce_after_ms),
        debounce_max: Duration::from_millis(args.debounce_max_ms),
    });
    let mut writers: BTreeMap<ConnId, TcpStream> = BTreeMap::new();
    let poll = Duration::from_millis(args.poll_ms.max(10));
    let mut next_poll = Wall::now();
    // What is pushed is the snapshot read from the directory with what the control plane
    // fetches itself: RequestAuthentication keys (inlined, sidecars never fetch; refreshed as
    // pilot refreshes them) and the DNS answers of ServiceEntries (module docs of
    // trellis_control::dns). `from_files` is kept to prepare again when either changes.
    let jwks = trellis_control::jwks_resolver::JwksResolver::global();
    let mut next_jwks_refresh = Wall::now() + jwks_refresh_period(jwks);
    let dns = DnsCache::system();
    let dns_every = (args.dns_refresh_secs > 0).then(|| Duration::from_secs(args.dns_refresh_secs));
    let mut next_dns = dns_every.map(|every| Wall::now() + every);
    let mut from_files: Option<Snapshot> = None;
    let prepare = |snapshot: Snapshot| {
        let snapshot = with_jwks(snapshot, jwks);
        let (answers, notes) = dns.answers_for(&names_to_resolve(&snapshot.resources));
        for note in notes {
            tracing::warn!("{note}");
        }
        Arc::new(snapshot.with_dns(answers))
    };
    loop {
        if Wall::now() >= next_jwks_refresh {
            let changed = jwks.refresh();
            for (issuer, uri, error) in jwks.failures() {
                tracing::warn!(%issuer, %uri, "JWKS refresh failed: {error}");
            }
            next_jwks_refresh = Wall::now() + jwks_refresh_period(jwks);
            if let (true, Some(files)) = (changed, &from_files) {
                tracing::info!("JWKS changed: pushing the new keys");
                server.handle(now(), Input::Snapshot(prepare(files.clone())));
            }
        }
        if let (Some(due), Some(every), Some(files)) = (next_dns, dns_every, &from_files) {
            if Wall::now() >= due {
                next_dns = Some(Wall::now() + every);
                let (changed, notes) = dns.refresh_asked();
                for note in notes {
                    tracing::warn!("{note}");
                }
                if changed {
                    tracing::info!("DNS answers of ServiceEntries changed");
                    server.handle(now(), Input::Snapshot(prepare(files.clone())));
                }
            }
        }
        if Wall::now() >= next_poll {
            next_poll = Wall::now() + poll;
            match watcher.poll() {
                Ok(Some(snapshot)) => {
                    for d in &snapshot.diagnostics {
                        tracing::warn!("{d}");
                    }
                    tracing::info!(
                        digest = format!("{:016x}", snapshot.digest),
                        "config changed"
                    );
                    from_files = Some(snapshot.clone());
                    let prepared = prepare(snapshot);
                    next_jwks_refresh =
                        next_jwks_refresh.min(Wall::now() + jwks_refresh_period(jwks));
                    server.handle(now(), Input::Snapshot(prepared));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!("directory refused, the last good one is still served: {e}")
                }
            }
        }
        let wake = server
            .poll_timeout()
            .map(|t| Duration::from_nanos(t.as_nanos().saturating_sub(now().as_nanos())))
            .unwrap_or(poll)
            .min(next_poll.saturating_duration_since(Wall::now()))
            .min(next_dns.map_or(poll, |t| t.saturating_duration_since(Wall::now())));
        match rx.recv_timeout(wake) {
            Ok(Note::Opened(id, stream)) => {
                writers.insert(id, stream);
            }
            Ok(Note::Message(id, message)) => server.handle(now(), Input::Message(id, message)),
            Ok(Note::Closed(id)) => {
                writers.remove(&id);
                server.handle(now(), Input::Disconnected(id));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        server.handle_timeout(now());
        while let Some((id, message)) = server.poll_transmit() {
            let sent = encode(&message)
                .map_err(|e| e.to_string())
                .and_then(|frame| match writers.get_mut(&id) {
                    Some(w) => w.write_all(&frame).map_err(|e| e.to_string()),
                    None => Ok(()),
                });
            if let Err(e) = sent {
                tracing::warn!(conn = id, "push failed, disconnecting: {e}");
                if let Some(w) = writers.remove(&id) {
                    let _ = w.shutdown(std::net::Shutdown::Both);
                }
                server.handle(now(), Input::Disconnected(id));
            }
        }
        while let Some(event) = server.poll_event() {
            match event {
                Event::Released { version } => tracing::info!(version, "released"),
                Event::Acked { node, version, .. } => tracing::info!(%node, version, "ACK"),
                Event::Nacked {
                    node,
                    version,
                    reason,
                    ..
                } => tracing::error!("NACK from {node} of version {version}, which keeps its last good config: {reason}"),
                Event::ProtocolError { conn, reason } => tracing::warn!(conn, "{reason}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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

fn accept(listener: TcpListener, tx: mpsc::Sender<Note>) {
    let mut next: ConnId = 1;
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            continue;
        };
        let id = next;
        next += 1;
        let Ok(writer) = stream.try_clone() else {
            continue;
        };
        if let Err(e) = writer.set_write_timeout(Some(WRITE_TIMEOUT)) {
            tracing::warn!("cannot set a write timeout: {e}");
        }
        if tx.send(Note::Opened(id, writer)).is_err() {
            return;
        }
        let tx = tx.clone();
        std::thread::spawn(move || read_loop(id, stream, tx));
    }
}

fn read_loop(id: ConnId, mut stream: TcpStream, tx: mpsc::Sender<Note>) {
    let mut decoder = FrameDecoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        decoder.push(&buf[..n]);
        loop {
            match decoder.next_message::<ClientMessage>() {
                Ok(Some(m)) => {
                    if tx.send(Note::Message(id, m)).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(conn = id, "closing: {e}");
                    let _ = tx.send(Note::Closed(id));
                    return;
                }
            }
        }
    }
    let _ = tx.send(Note::Closed(id));
}
