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
use trellis_control::plane::{DirWatcher, Snapshot};
use trellis_engine::Instant;

#[derive(Args, Debug)]
pub struct ControlArgs {
    /// The directory of YAML to serve: Istio resources plus Kubernetes Services, Deployments,
    /// Pods, EndpointSlices, Namespaces and ServiceAccounts (the registry is derived from them).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
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
    let listener = TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(listen = %args.listen, dir = %args.dir.display(), "control plane serving");
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
    let mut watcher = DirWatcher::new(&args.dir);
    let mut writers: BTreeMap<ConnId, TcpStream> = BTreeMap::new();
    let poll = Duration::from_millis(args.poll_ms.max(10));
    let mut next_poll = Wall::now();
    // Names of DNS ServiceEntries are resolved here, not by the sidecars (module docs of
    // trellis_control::dns); the snapshot read from files is kept to re-resolve against.
    let dns = DnsCache::system();
    let dns_every = (args.dns_refresh_secs > 0).then(|| Duration::from_secs(args.dns_refresh_secs));
    let mut next_dns = dns_every.map(|every| Wall::now() + every);
    let mut from_files: Option<Snapshot> = None;
    let with_dns = |snapshot: Snapshot| {
        let (answers, notes) = dns.answers_for(&names_to_resolve(&snapshot.resources));
        for note in notes {
            tracing::warn!("{note}");
        }
        Arc::new(snapshot.with_dns(answers))
    };
    loop {
        if let (Some(due), Some(every), Some(files)) = (next_dns, dns_every, &from_files) {
            if Wall::now() >= due {
                next_dns = Some(Wall::now() + every);
                let (changed, notes) = dns.refresh_asked();
                for note in notes {
                    tracing::warn!("{note}");
                }
                if changed {
                    tracing::info!("DNS answers of ServiceEntries changed");
                    server.handle(now(), Input::Snapshot(with_dns(files.clone())));
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
                        "directory changed"
                    );
                    from_files = Some(snapshot.clone());
                    server.handle(now(), Input::Snapshot(with_dns(snapshot)));
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
