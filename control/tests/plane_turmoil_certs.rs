//! Certificates over the push channel under a simulated network (issues 13 and 11): the real
//! server with an [`Issuer`] and a real client asking for its certificate, on turmoil's TCP
//! over TLS.
//!
//! - A sidecar with no certificate asks at once and installs the answer; its next connection
//!   presents it, and the control plane identifies it by its SPIFFE id.
//! - New roots (a rotation's overlap) are pushed to it and installed with the same certificate.
//! - A refused request (an identity that is not the one the connection's certificate names)
//!   is retried with a doubling delay, and the certificate held stays installed.
//!
//! Certificate validity is wall-clock time (the CA and `Renewal` read `SystemTime`), so these
//! scenarios stay far from renewal time and assert on what happened, not on when.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use trellis_control::ca::bootstrap::new_plugin_ca;
use trellis_control::ca::CertificateAuthority;
use trellis_control::plane::net::client::CertificateSettings;
use trellis_control::plane::net::tls::{server_config, ClientTls, TlsConnector};
use trellis_control::plane::net::{
    run_client, serve, ClientConfig, ClientReport, Issuer, Listener, Outcome, ServerConfig,
    ServerReport,
};
use trellis_control::plane::push::renewal::HeldCertificate;
use trellis_control::plane::push::{Client, PushConfig};
use trellis_control::plane::Snapshot;
use trellis_control::translate::Workload;

const CONTROL: &str = "control";
const PORT: u16 = 15012;

struct SimListener(turmoil::net::TcpListener);

impl Listener for SimListener {
    type Stream = turmoil::net::TcpStream;
    async fn accept(&mut self) -> std::io::Result<(Self::Stream, SocketAddr)> {
        self.0.accept().await
    }
}

#[derive(Default)]
struct Seen {
    /// What the control plane reported: SPIFFE ids of secured connections, issues, refusals.
    server: Vec<String>,
    /// Certificates (and bundles) the sidecar installed.
    installed: Vec<HeldCertificate>,
    refusals: Vec<(String, Duration)>,
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().expect("seen")
}

/// A control plane issuing for cluster.local with `trust_node_claims`, and one sidecar asking
/// for `namespace`/`service_account`.
fn mesh(
    seed: u64,
    service_account: &'static str,
) -> (turmoil::Sim<'static>, Arc<Issuer>, Arc<Mutex<Seen>>, String) {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(600))
        .build();
    let now = SystemTime::now();
    let (files, _) = new_plugin_ca("cluster.local", now).expect("CA");
    let mut ca = CertificateAuthority::plug_in("cluster.local", &files).expect("CA");
    let serving = ca
        .issue_serving(&[CONTROL.to_string()], now, Duration::from_secs(86_400))
        .expect("serving certificate");
    let mut server = ServerConfig::new(PushConfig::default());
    server.tls =
        Some(server_config(&serving.cert_chain, &serving.key, &files.root_cert).expect("TLS"));
    let issuer = Arc::new(Issuer::new(ca, Duration::from_secs(3600), true, None));
    server.issuer = Some(issuer.clone());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (_, snapshots) = watch::channel::<Option<Arc<Snapshot>>>(None);
    {
        let seen = seen.clone();
        sim.host(CONTROL, move || {
            let (server, snapshots, seen) = (server.clone(), snapshots.clone(), seen.clone());
            async move {
                let addr = (IpAddr::from(Ipv4Addr::UNSPECIFIED), PORT);
                let listener = SimListener(turmoil::net::TcpListener::bind(addr).await?);
                let report = move |_, report: ServerReport| {
                    let line = match report {
                        ServerReport::Secured { peer_identity, .. } => {
                            format!("secured {}", peer_identity.unwrap_or_default())
                        }
                        ServerReport::Certificate {
                            outcome: Outcome::Issued { identity, .. },
                            ..
                        } => format!("issued {identity}"),
                        ServerReport::Certificate {
                            outcome: Outcome::Refused { caller, refusal },
                            ..
                        } => format!("refused {caller}: {refusal}"),
                        _ => return,
                    };
                    lock(&seen).server.push(line);
                };
                serve(listener, server, snapshots, report).await;
                Ok(())
            }
        });
    }
    let tls = ClientTls::new(&files.root_cert, None).expect("TLS");
    {
        let seen = seen.clone();
        sim.host("sidecar", move || {
            let (tls, seen) = (tls.clone(), seen.clone());
            async move {
                let installs = seen.clone();
                let tls_for_install = tls.clone();
                let settings = CertificateSettings {
                    namespace: "shop".into(),
                    service_account: service_account.into(),
                    token: None,
                    install: Arc::new(move |held: &HeldCertificate| {
                        tls_for_install
                            .update(&held.bundle_pem, Some((&held.chain_pem, &held.key_pem)))
                            .map_err(|e| e.to_string())?;
                        lock(&installs).installed.push(held.clone());
                        Ok(())
                    }),
                };
                let config = ClientConfig {
                    certificates: Some(settings),
                    ..ClientConfig::default()
                };
                let connect = || turmoil::net::TcpStream::connect((CONTROL, PORT));
                let connect = TlsConnector::new(connect, tls, CONTROL).expect("name");
                let client = Client::new("sidecar", Workload::default());
                let report = move |r: ClientReport| {
                    if let ClientReport::CertificateRefused { reason, retry_in } = r {
                        lock(&seen).refusals.push((reason, retry_in));
                    }
                };
                run_client(connect, client, config, 7, |_, _| Ok(()), report).await;
                Ok(())
            }
        });
    }
    (sim, issuer, seen, files.root_cert)
}

fn run_for(sim: &mut turmoil::Sim<'_>, d: Duration) {
    let until = sim.elapsed() + d;
    while sim.elapsed() < until {
        sim.step().expect("no host fails");
    }
}

#[test]
fn a_sidecar_gets_its_certificate_then_presents_it_and_takes_new_roots() {
    let (mut sim, issuer, seen, root) = mesh(1, "cart");
    run_for(&mut sim, Duration::from_millis(200));
    {
        let s = lock(&seen);
        assert_eq!(s.installed.len(), 1, "{:?}", s.server);
        assert_eq!(
            s.server,
            ["secured ", "issued spiffe://cluster.local/ns/shop/sa/cart"]
        );
    }
    // The connection breaks: the next one presents the certificate, and is known by it.
    sim.partition(CONTROL, "sidecar");
    run_for(&mut sim, Duration::from_secs(20));
    sim.repair(CONTROL, "sidecar");
    run_for(&mut sim, Duration::from_secs(20));
    assert!(
        lock(&seen)
            .server
            .iter()
            .any(|l| l == "secured spiffe://cluster.local/ns/shop/sa/cart"),
        "{:?}",
        lock(&seen).server
    );
    // A rotation's overlap: both roots pushed, the same certificate kept.
    let both = format!(
        "{root}{}",
        new_plugin_ca("cluster.local", SystemTime::now())
            .unwrap()
            .0
            .root_cert
    );
    issuer.set_bundle(both.clone());
    run_for(&mut sim, Duration::from_millis(100));
    let s = lock(&seen);
    assert_eq!(s.installed.len(), 2);
    assert_eq!(s.installed[1].bundle_pem, both);
    assert_eq!(s.installed[1].chain_pem, s.installed[0].chain_pem);
    assert!(s.refusals.is_empty(), "{:?}", s.refusals);
}

#[test]
fn a_refused_request_is_retried_with_a_doubling_delay() {
    // The sidecar asks for an identity that is not a DNS name: refused every time.
    let (mut sim, _issuer, seen, _) = mesh(2, "Cart");
    run_for(&mut sim, Duration::from_secs(8));
    let s = lock(&seen);
    let delays: Vec<Duration> = s.refusals.iter().map(|(_, d)| *d).collect();
    assert_eq!(
        delays[..3],
        [
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(4)
        ],
        "{:?}",
        s.refusals
    );
    assert!(
        s.refusals[0].0.contains("not a lower-case DNS name"),
        "{:?}",
        s.refusals
    );
    assert!(s.installed.is_empty());
    assert!(s.server.iter().all(|l| !l.starts_with("issued")));
}
