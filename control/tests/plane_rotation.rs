//! The control plane's own certificates and a root rotation, on loopback TCP with the wall
//! clock (certificate validity is wall-clock time): the real server, CA upkeep and client.
//!
//! 1. The push channel's serving certificate is re-issued at half its life; new handshakes
//!    get the new one, and the sidecar's established connection is not dropped (rustls
//!    resolves the certificate per handshake: `plane::net::reload`).
//! 2. A root rotation: the sidecar is pushed both roots at once, its next certificate comes
//!    from the new CA, the control plane keeps presenting a certificate under the old root for
//!    the overlap (a sidecar that only knows the old root still connects), then moves to the
//!    new root, and the old one leaves every bundle. The sidecar's channel stays up
//!    throughout (istiod: pilot/pkg/bootstrap/certcontroller.go, the root and DNS certificate
//!    rotation; the overlap as issue 11 asks).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::sync::{mpsc, watch};
use trellis_control::ca::bootstrap::new_plugin_ca;
use trellis_control::ca::{CertificateAuthority, PluginFiles};
use trellis_control::plane::net::client::CertificateSettings;
use trellis_control::plane::net::reload::{reloadable_server_config, ReloadableRoots};
use trellis_control::plane::net::tls::{client_config, ClientTls, TlsConnector};
use trellis_control::plane::net::upkeep::{upkeep, Rotation, Serving, UpkeepReport};
use trellis_control::plane::net::{
    run_client, serve, tcp_connector, ClientConfig, ClientReport, Issuer, ServerConfig,
    ServerReport,
};
use trellis_control::plane::push::renewal::HeldCertificate;
use trellis_control::plane::push::{Client, PushConfig};
use trellis_control::plane::Snapshot;
use trellis_control::translate::Workload;

const WAIT: Duration = Duration::from_secs(20);
const SERVING_TTL: Duration = Duration::from_secs(2);
const WORKLOAD_TTL: Duration = Duration::from_secs(4);
const OVERLAP: Duration = Duration::from_secs(4);

#[derive(Default)]
struct Seen {
    installed: Vec<HeldCertificate>,
    client_disconnects: Vec<String>,
    upkeep: Vec<String>,
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait_until(what: &str, seen: &Mutex<Seen>, mut done: impl FnMut(&Seen) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        if done(&lock(seen)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            lock(seen).upkeep
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ca(files: &PluginFiles) -> CertificateAuthority {
    CertificateAuthority::plug_in("cluster.local", files).expect("CA")
}

/// A new TLS handshake with the control plane, trusting `roots`: the leaf it presented, or
/// why the handshake failed.
fn handshake(addr: SocketAddr, roots: &str) -> Result<CertificateDer<'static>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = client_config(roots, None).map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let leaf = tls.get_ref().1.peer_certificates().expect("certificates")[0].clone();
        Ok(leaf.into_owned())
    })
}

#[test]
fn serving_certificates_renew_and_a_sidecar_keeps_its_channel_across_a_root_rotation() {
    let now = SystemTime::now();
    let old = new_plugin_ca("cluster.local", now).expect("CA").0;
    let new = new_plugin_ca("cluster.local", now).expect("CA").0;
    let issuer = Arc::new(Issuer::new(ca(&old), WORKLOAD_TTL, true, None));
    let serving = Serving::issue(
        "push channel",
        &issuer,
        vec!["127.0.0.1".into()],
        SERVING_TTL,
        now,
    )
    .expect("serving certificate");
    let presented = serving.cert();
    let roots = ReloadableRoots::new(&old.root_cert).expect("roots");
    let mut server = ServerConfig::new(PushConfig::default());
    server.tls = Some(reloadable_server_config(serving.cert(), roots.clone()).expect("TLS"));
    server.issuer = Some(issuer.clone());

    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    listener.set_nonblocking(true).expect("nonblocking");
    let (rotate, rotations) = mpsc::channel(1);
    {
        let (upkeep_seen, issuer) = (seen.clone(), issuer.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                tokio::spawn(upkeep(
                    issuer,
                    vec![serving],
                    Some(roots),
                    rotations,
                    move |r| {
                        let line = match r {
                            UpkeepReport::Renewed { what, .. } => format!("renewed {what}"),
                            UpkeepReport::Rotated { .. } => "rotated".into(),
                            UpkeepReport::BundleChanged { roots } => format!("bundle {roots}"),
                            other => format!("{other:?}"),
                        };
                        lock(&upkeep_seen).upkeep.push(line);
                    },
                ));
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let (_keep, snapshots) = watch::channel::<Option<Arc<Snapshot>>>(None);
                // The test's own probing handshakes come and go here; the sidecar's side says
                // whether its channel dropped.
                serve(listener, server, snapshots, |_, _: ServerReport| {}).await;
            });
        });
    }
    {
        let seen = seen.clone();
        let tls = ClientTls::new(&old.root_cert, None).expect("TLS");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let installs = seen.clone();
            let tls_for_install = tls.clone();
            let settings = CertificateSettings {
                namespace: "shop".into(),
                service_account: "cart".into(),
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
            let connect =
                TlsConnector::new(tcp_connector(addr.to_string()), tls, "127.0.0.1").expect("name");
            let report = move |r: ClientReport| {
                if let ClientReport::Disconnected { error, .. } = r {
                    lock(&seen).client_disconnects.push(error);
                }
            };
            runtime.block_on(run_client(
                connect,
                Client::new("sidecar", Workload::default()),
                config,
                7,
                |_, _| Ok(()),
                report,
            ));
        });
    }

    // The sidecar's first certificate, from the old CA.
    wait_until("the first certificate", &seen, |s| !s.installed.is_empty());
    assert!(lock(&seen).installed[0].chain_pem.contains(&old.ca_cert));

    // 1. The serving certificate is re-issued at half its life; new handshakes get it.
    let first_leaf = presented.leaf();
    assert_eq!(handshake(addr, &old.root_cert), Ok(first_leaf.clone()));
    wait_until("the serving renewal", &seen, |s| {
        s.upkeep.iter().any(|l| l == "renewed push channel")
    });
    let renewed = presented.leaf();
    assert_ne!(renewed, first_leaf);
    assert_eq!(handshake(addr, &old.root_cert), Ok(renewed));

    // 2. A root rotation.
    rotate
        .blocking_send(Rotation {
            ca: ca(&new),
            overlap: OVERLAP,
        })
        .expect("rotation sent");
    let both = format!("{}{}", old.root_cert, new.root_cert);
    wait_until("both roots at the sidecar", &seen, |s| {
        s.installed.iter().any(|h| h.bundle_pem == both)
    });
    // During the overlap the control plane still chains to the old root: a sidecar that
    // only knows it (started before, disconnected at the push) still gets in.
    assert!(handshake(addr, &old.root_cert).is_ok());
    wait_until("a certificate from the new CA", &seen, |s| {
        s.installed
            .iter()
            .any(|h| h.chain_pem.contains(&new.ca_cert))
    });
    // The overlap ends: the old root leaves the bundle, the serving certificate moves.
    wait_until("the old root gone", &seen, |s| {
        s.installed
            .last()
            .is_some_and(|h| h.bundle_pem == new.root_cert)
    });
    let deadline = Instant::now() + WAIT;
    while handshake(addr, &new.root_cert).is_err() {
        assert!(Instant::now() < deadline, "{:?}", lock(&seen).upkeep);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        handshake(addr, &old.root_cert).is_err(),
        "the old root no longer verifies the control plane"
    );
    // The sidecar holds a certificate under the new root, and its channel never dropped.
    let s = lock(&seen);
    let last = s.installed.last().expect("installed");
    assert!(last.chain_pem.contains(&new.ca_cert));
    assert!(
        s.client_disconnects.is_empty(),
        "{:?}",
        s.client_disconnects
    );
    assert!(s.upkeep.iter().any(|l| l == "rotated"), "{:?}", s.upkeep);
}
