//! A control plane and its sidecars under turmoil: the real transport
//! (`trellis_control::plane::net`) over turmoil's simulated TCP, driven step by step from the
//! test, which cuts and repairs links, adds latency, restarts hosts and publishes snapshots.
//!
//! The channel runs over TLS as in production: the control plane presents a serving
//! certificate from a mesh CA made for the run, and the sidecars verify it with its root.
//!
//! Every host writes what it does into one [`Trace`] (with the simulated time), which the
//! scenarios assert on and which two runs with the same seed must reproduce line for line.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use trellis_control::plane::net::tls::{server_config, ClientTls, TlsConnector};
use trellis_control::plane::net::{
    run_client, serve, ClientConfig, ClientReport, Listener, ServerConfig, ServerReport,
};
use trellis_control::plane::push::delta::digest;
use trellis_control::plane::push::{Client, Event, Held, PushConfig, Version};
use trellis_control::plane::{scope, SidecarDocument, Snapshot};
use trellis_control::translate::Workload;

pub const CONTROL: &str = "control";
/// The links' latency is 1–5 ms (turmoil's, from the seed) unless a test sets it.
pub const WORST_LATENCY: Duration = Duration::from_millis(5);
const PORT: u16 = 15012;
/// The sidecars' namespaces: two see the same scope, the third (`blog`) has a Sidecar resource
/// in some snapshots that narrows what it sees.
pub const NAMESPACES: [&str; 3] = ["shop", "shop", "blog"];

/// The snapshots and the sidecars' apply step (which refuses snapshot [`BAD`]), shared with
/// the push protocol's unit tests.
#[path = "../../src/plane/push/fixtures.rs"]
mod fixtures;
use fixtures::apply;
pub use fixtures::{snapshots, BAD};

pub fn node(i: usize) -> String {
    format!("sidecar-{i}")
}

fn workload(i: usize) -> Workload {
    Workload {
        namespace: NAMESPACES[i].into(),
        ..Workload::default()
    }
}

/// What happened, as every host saw it.
#[derive(Debug, Default)]
pub struct Trace {
    /// Every report, with the simulated time: the run's fingerprint.
    pub lines: Vec<String>,
    /// What each sidecar holds now.
    pub held: BTreeMap<String, Option<Held>>,
    /// Pushes each sidecar answered (ACK, NACK or resync).
    pub answered: BTreeMap<String, usize>,
    /// NACKs the control plane reported: node, version, reason.
    pub nacks: Vec<(String, Version, String)>,
    /// Connections the control plane accepted.
    pub accepted: usize,
}

impl Trace {
    fn log(&mut self, who: &str, what: String) {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        self.lines
            .push(format!("{:>8.3}s {who}: {what}", at.as_secs_f64()));
    }
}

/// turmoil's listener as the transport takes it.
struct SimListener(turmoil::net::TcpListener);

impl Listener for SimListener {
    type Stream = turmoil::net::TcpStream;
    async fn accept(&mut self) -> std::io::Result<(Self::Stream, SocketAddr)> {
        self.0.accept().await
    }
}

/// A simulated mesh: the control plane host, the sidecar hosts, and the source the test
/// publishes to.
pub struct Mesh<'a> {
    pub sim: turmoil::Sim<'a>,
    pub trace: Arc<Mutex<Trace>>,
    pub client: ClientConfig,
    source: watch::Sender<Option<Arc<Snapshot>>>,
    latest: Option<usize>,
}

impl Mesh<'_> {
    /// The control plane and `NAMESPACES.len()` sidecars, links of 1–5 ms, `seed` for
    /// turmoil's randomness (latencies, losses).
    pub fn new(seed: u64) -> Self {
        Mesh::with_channel(seed, true)
    }

    /// As [`Mesh::new`], the channel over TLS or (`tls` false) plain TCP.
    pub fn with_channel(seed: u64, tls: bool) -> Self {
        let mut sim = turmoil::Builder::new()
            .rng_seed(seed)
            .simulation_duration(Duration::from_secs(3_600))
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(WORST_LATENCY)
            .build();
        let trace = Arc::new(Mutex::new(Trace::default()));
        let (source, snapshots) = watch::channel(None);
        let (mut server, client_tls) = channel_tls();
        server.push = PushConfig::default();
        let client_tls = match tls {
            true => Some(client_tls),
            false => {
                server.tls = None;
                None
            }
        };
        let client = ClientConfig::default();
        {
            let trace = trace.clone();
            sim.host(CONTROL, move || {
                control_host(server.clone(), snapshots.clone(), trace.clone())
            });
        }
        for i in 0..NAMESPACES.len() {
            let (trace, client, tls) = (trace.clone(), client.clone(), client_tls.clone());
            sim.host(node(i), move || {
                sidecar_host(i, client.clone(), tls.clone(), trace.clone())
            });
        }
        Mesh {
            sim,
            trace,
            client,
            source,
            latest: None,
        }
    }

    /// The source now holds snapshot `k`.
    pub fn publish(&mut self, k: usize) {
        self.latest = Some(k);
        self.source.send_replace(Some(snapshots()[k].clone()));
    }

    pub fn now(&self) -> Duration {
        self.sim.elapsed()
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.sim.elapsed() + d;
        while self.sim.elapsed() < until {
            self.sim.step().expect("no host fails");
        }
    }

    /// Run until every sidecar has converged; how long it took, or why not within `limit`.
    pub fn converge_within(&mut self, limit: Duration) -> Result<Duration, String> {
        let start = self.sim.elapsed();
        loop {
            match self.converged() {
                Ok(()) => return Ok(self.sim.elapsed() - start),
                Err(e) if self.sim.elapsed() - start > limit => {
                    return Err(format!("not converged within {limit:?}: {e}"))
                }
                Err(_) => {
                    self.sim.step().expect("no host fails");
                }
            }
        }
    }

    /// Every sidecar holds the latest snapshot's document for it, computed here from the
    /// snapshot (not asked of the server); when it refuses that document, it still holds a
    /// good one and the control plane reported its NACK.
    pub fn converged(&self) -> Result<(), String> {
        let Some(k) = self.latest else {
            return Ok(());
        };
        let trace = self.trace.lock().expect("trace");
        for i in 0..NAMESPACES.len() {
            let target = scope(&snapshots()[k], &workload(i)).document;
            let held = trace.held.get(&node(i)).copied().flatten();
            if apply(0, &target).is_ok() {
                if held.map(|h| h.digest) != Some(digest(&target)) {
                    return Err(format!("{} holds {held:?}", node(i)));
                }
            } else if !trace.nacks.iter().any(|(n, ..)| *n == node(i)) {
                return Err(format!("no NACK from {} reported", node(i)));
            }
        }
        Ok(())
    }

    pub fn partition(&self, i: usize) {
        self.sim.partition(CONTROL, node(i));
    }

    pub fn repair(&self, i: usize) {
        self.sim.repair(CONTROL, node(i));
    }

    /// Pushes answered so far by each sidecar.
    pub fn answered(&self) -> BTreeMap<String, usize> {
        self.trace.lock().expect("trace").answered.clone()
    }

    pub fn held(&self, i: usize) -> Option<Held> {
        self.trace
            .lock()
            .expect("trace")
            .held
            .get(&node(i))
            .copied()
            .flatten()
    }

    /// The longest a sidecar may take to converge once its link is repaired, the snapshot
    /// released before: reconnected within [`ClientConfig::reconnect_bound`], then the TLS
    /// handshake (one round trip in TLS 1.3 before the client may send), a hello, a push and
    /// its answer, each one way at the network's worst latency.
    pub fn heal_bound(&self) -> Duration {
        self.client.reconnect_bound() + WORST_LATENCY * 8
    }

    /// Run until converged, which must be within [`Mesh::heal_bound`]; how long it took.
    pub fn converge_after_heal(&mut self) -> Duration {
        let bound = self.heal_bound();
        match self.converge_within(bound) {
            Ok(took) => took,
            Err(e) => panic!(
                "{e}\n{}",
                self.trace.lock().expect("trace").lines.join("\n")
            ),
        }
    }
}

/// A mesh CA: the control plane's serving certificate for the host name sidecars dial, and
/// the sidecars' TLS trusting its root. Made once per process and shared by every run: two
/// runs with the same seed must replay line for line, and fresh keys would change the size of
/// the certificates (an ECDSA signature is 70 to 72 bytes), which was seen to shift the run.
fn channel_tls() -> (ServerConfig, ClientTls) {
    use std::sync::OnceLock;
    use trellis_control::ca::bootstrap::new_plugin_ca;
    use trellis_control::ca::CertificateAuthority;
    static TLS: OnceLock<(Arc<rustls::ServerConfig>, ClientTls)> = OnceLock::new();
    let (server_tls, client) = TLS.get_or_init(|| {
        let now = std::time::SystemTime::now();
        let (files, _) = new_plugin_ca("cluster.local", now).expect("CA");
        let mut ca = CertificateAuthority::plug_in("cluster.local", &files).expect("CA");
        let serving = ca
            .issue_serving(&[CONTROL.to_string()], now, Duration::from_secs(86_400))
            .expect("serving certificate");
        let server =
            server_config(&serving.cert_chain, &serving.key, &files.root_cert).expect("TLS");
        let client = ClientTls::new(&files.root_cert, None).expect("TLS");
        (server, client)
    });
    let mut server = ServerConfig::new(PushConfig::default());
    server.tls = Some(server_tls.clone());
    (server, client.clone())
}

/// The control plane's software (run again from the start when the host restarts: it serves
/// what the source holds then).
async fn control_host(
    config: ServerConfig,
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    trace: Arc<Mutex<Trace>>,
) -> turmoil::Result {
    trace.lock().expect("trace").log(CONTROL, "starts".into());
    let addr = (IpAddr::from(Ipv4Addr::UNSPECIFIED), PORT);
    let listener = SimListener(turmoil::net::TcpListener::bind(addr).await?);
    let report = move |_, report| record_server(&trace, report);
    serve(listener, config, snapshots, report).await;
    Ok(())
}

/// A sidecar's software: a restart starts it with nothing held.
async fn sidecar_host(
    i: usize,
    config: ClientConfig,
    tls: Option<ClientTls>,
    trace: Arc<Mutex<Trace>>,
) -> turmoil::Result {
    {
        let mut t = trace.lock().expect("trace");
        t.held.insert(node(i), None);
        t.log(&node(i), "starts".into());
    }
    let connect = || turmoil::net::TcpStream::connect((CONTROL, PORT));
    let client = Client::new(node(i), workload(i));
    let report = move |r| record_client(&trace, i, r);
    match tls {
        Some(tls) => {
            let connect = TlsConnector::new(connect, tls, CONTROL).expect("server name");
            run_client(connect, client, config, i as u64, apply, report).await;
        }
        None => run_client(connect, client, config, i as u64, apply, report).await,
    }
    Ok(())
}

fn record_server(trace: &Mutex<Trace>, report: ServerReport) {
    let mut t = trace.lock().expect("trace");
    match &report {
        ServerReport::Connected { .. } => t.accepted += 1,
        ServerReport::Push(Event::Nacked {
            node,
            version,
            reason,
            ..
        }) => t.nacks.push((node.clone(), *version, reason.clone())),
        _ => {}
    }
    t.log(CONTROL, format!("{report:?}"));
}

fn record_client(trace: &Mutex<Trace>, i: usize, report: ClientReport) {
    let mut t = trace.lock().expect("trace");
    if let ClientReport::Answered { held, .. } = &report {
        t.held.insert(node(i), *held);
        *t.answered.entry(node(i)).or_default() += 1;
    }
    t.log(&node(i), format!("{report:?}"));
}
