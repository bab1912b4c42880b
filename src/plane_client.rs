//! `trellis proxy --control-plane ADDR`: the sidecar receiving its config from `trellis
//! control` instead of reading it from its file.
//!
//! The proxy config file still says where to listen (`listeners`, `http`) and who the workload
//! is (`workload:`); routes and clusters come from the control plane. Each pushed document is
//! translated here, combined with the file's listeners, checked by the engine and swapped in
//! through the same `ControlHandle::update_config` a file reload uses; a document that fails
//! any of that is NACKed with the reason and the running config stays. The connection is
//! re-established with backoff while it is down, announcing what this sidecar holds, so a
//! control-plane restart resends nothing that is current. The protocol logic is
//! `trellis_control::plane::push::Client` and the transport `plane::net::run_client`; this
//! only says how a document becomes the engine's config.
//!
//! The channel is TLS ([`Channel`]): the control plane's certificate checked against the mesh
//! root, the sidecar's own presented when it has one. A sidecar whose file has no `identity:`
//! gets its certificate over the channel (a key made here, a CSR, renewal at half life), and
//! installs it the way a push is installed: the last document translated again with the new
//! identity and swapped in, so new connections use the new certificate and established ones
//! keep theirs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use trellis_control::plane::net::tls::{host_of, peer_spiffe_id, ClientTls, TlsConnector};
use trellis_control::plane::net::{
    client::CertificateSettings, run_client, tcp_connector, ClientConfig, ClientReport, Connector,
};
use trellis_control::plane::push::renewal::HeldCertificate;
use trellis_control::plane::push::{Client, ClientMessage};
use trellis_control::plane::SidecarDocument;
use trellis_control::translate::Workload;
use trellis_engine::config::{Config, MeshIdentity};
use trellis_io::ControlHandle;

/// How the sidecar talks to the control plane.
#[derive(Clone, Debug, Default)]
pub struct Channel {
    /// Plain TCP (`--insecure-plaintext`): no TLS, no certificate from the control plane.
    pub plaintext: bool,
    /// The roots the control plane's certificate must chain to (PEM); default: the identity's.
    pub ca_pem: Option<String>,
    /// A service-account token sent with certificate requests, read at each.
    pub token_file: Option<PathBuf>,
}

impl Channel {
    /// From `trellis proxy`'s flags: `--insecure-plaintext`, `--control-plane-ca FILE` (read
    /// now), `--control-plane-token FILE` (read at each request).
    pub fn from_flags(
        plaintext: bool,
        ca_file: Option<&std::path::Path>,
        token_file: Option<PathBuf>,
    ) -> Result<Self> {
        let ca_pem = ca_file
            .map(|path| {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))
            })
            .transpose()?;
        Ok(Channel {
            plaintext,
            ca_pem,
            token_file,
        })
    }
}

/// What the pushes and the certificates share: the identity installed, and the last document
/// applied (translated again when the identity changes).
#[derive(Default)]
struct Installed {
    identity: Option<Arc<MeshIdentity>>,
    last: Option<(u64, SidecarDocument)>,
}

fn lock(shared: &Mutex<Installed>) -> std::sync::MutexGuard<'_, Installed> {
    match shared.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// `HOST:PORT` (a name or an address) as `--control-plane` takes it.
pub fn parse_address(text: &str) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(text.to_string())
        }
        _ => Err(format!("{text:?} is not HOST:PORT")),
    }
}

/// Start the client thread (a current-thread tokio runtime of its own: the proxy's data path
/// stays on the io crate's runtime); it runs until the process exits.
pub fn start(
    addr: String,
    node: String,
    workload: Workload,
    base: Arc<Config>,
    control: ControlHandle,
    channel: Channel,
) -> Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let shared = Arc::new(Mutex::new(Installed {
        identity: base.identity.clone(),
        last: None,
    }));
    let mut config = ClientConfig::default();
    let tls = match channel.plaintext {
        true => {
            tracing::warn!(%addr, "--insecure-plaintext: the control-plane channel is plain TCP");
            None
        }
        false => {
            let roots = channel
                .ca_pem
                .clone()
                .or_else(|| base.identity.as_ref().map(|id| id.bundle_pem.clone()))
                .context(
                    "no root to check the control plane's certificate with: give \
                     --control-plane-ca (or an identity: in the config file)",
                )?;
            let own = base
                .identity
                .as_ref()
                .map(|id| (id.chain_pem.as_str(), id.key_pem.as_str()));
            let tls = ClientTls::new(&roots, own).context("the control-plane channel's TLS")?;
            if base.identity.is_none() {
                config.certificates = Some(certificate_settings(
                    &workload,
                    &channel,
                    Installing {
                        shared: shared.clone(),
                        base: base.clone(),
                        workload: workload.clone(),
                        control: control.clone(),
                        tls: tls.clone(),
                    },
                ));
            }
            Some(tls)
        }
    };
    let connector = tcp_connector(addr.clone());
    let tls_connector = match tls {
        Some(tls) => Some(
            TlsConnector::new(connector, tls, host_of(&addr)).with_context(|| {
                format!("{addr}: the host is not a name a certificate can carry")
            })?,
        ),
        None => None,
    };
    let plain = tcp_connector(addr.clone());
    let thread = std::thread::Builder::new()
        .name("control-plane-client".into())
        .spawn(move || {
            let client = Client::new(node.clone(), workload.clone());
            let apply = |version, document: &SidecarDocument| {
                let mut installed = lock(&shared);
                let config = config_of(document, &base, &workload, version, &installed.identity)?;
                control.update_config(Arc::new(config));
                installed.last = Some((version, document.clone()));
                tracing::info!(version, "config from the control plane applied");
                Ok(())
            };
            let report = |report: ClientReport| log_report(&addr, report);
            match tls_connector {
                Some(c) => runtime.block_on(run(c, client, config, &node, apply, report)),
                None => runtime.block_on(run(plain, client, config, &node, apply, report)),
            }
        })
        .context("cannot start the control-plane client")?;
    Ok(thread)
}

async fn run<C: Connector>(
    connector: C,
    client: Client,
    config: ClientConfig,
    node: &str,
    apply: impl FnMut(u64, &SidecarDocument) -> Result<(), String>,
    report: impl FnMut(ClientReport),
) {
    run_client(connector, client, config, node_seed(node), apply, report).await
}

/// What installing a certificate touches.
struct Installing {
    shared: Arc<Mutex<Installed>>,
    base: Arc<Config>,
    workload: Workload,
    control: ControlHandle,
    tls: ClientTls,
}

/// Certificates from the control plane for `workload`'s service account.
fn certificate_settings(
    workload: &Workload,
    channel: &Channel,
    installing: Installing,
) -> CertificateSettings {
    let token = channel.token_file.clone().map(|path| {
        let read = move || match std::fs::read_to_string(&path) {
            Ok(token) => Some(token.trim().to_string()),
            Err(e) => {
                tracing::warn!("cannot read the token {}: {e}", path.display());
                None
            }
        };
        Arc::new(read) as Arc<dyn Fn() -> Option<String> + Send + Sync>
    });
    CertificateSettings {
        namespace: workload.namespace.clone(),
        service_account: workload.service_account.clone(),
        token,
        install: Arc::new(move |held: &HeldCertificate| install(&installing, held)),
    }
}

/// A certificate from the control plane, installed: the last document translated again with
/// it (new connections use it), and the channel's next connections present it.
fn install(installing: &Installing, held: &HeldCertificate) -> Result<(), String> {
    let leaf = rustls::pki_types::CertificateDer::pem_slice_iter(held.chain_pem.as_bytes())
        .next()
        .and_then(|c| c.ok())
        .ok_or("the certificate chain holds no certificate")?;
    let id = peer_spiffe_id(&leaf).ok_or("the certificate names no SPIFFE id")?;
    let trust_domain = id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_string();
    let identity = Arc::new(MeshIdentity {
        chain_pem: held.chain_pem.clone(),
        key_pem: held.key_pem.clone(),
        bundle_pem: held.bundle_pem.clone(),
        trust_domain,
    });
    trellis_engine::transport::tls::MeshCredentials::from_pem(
        &identity.chain_pem,
        &identity.key_pem,
        &identity.bundle_pem,
        &identity.trust_domain,
    )
    .map_err(|e| format!("the certificate is not usable: {e}"))?;
    let mut installed = lock(&installing.shared);
    if let Some((version, document)) = &installed.last {
        let config = config_of(
            document,
            &installing.base,
            &installing.workload,
            *version,
            &Some(identity.clone()),
        )?;
        installing.control.update_config(Arc::new(config));
    }
    installed.identity = Some(identity);
    installing
        .tls
        .update(&held.bundle_pem, Some((&held.chain_pem, &held.key_pem)))
        .map_err(|e| e.to_string())?;
    tracing::info!(%id, "workload certificate from the control plane installed");
    Ok(())
}

/// The reconnect jitter's seed: the node's name (FNV-1a), so sidecars spread apart.
fn node_seed(node: &str) -> u64 {
    node.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn log_report(addr: &str, report: ClientReport) {
    match report {
        ClientReport::Connected => tracing::info!(%addr, "connected to the control plane"),
        ClientReport::Answered {
            answer: ClientMessage::Nack { version, reason },
            ..
        } => tracing::error!(version, "config from the control plane refused: {reason}"),
        ClientReport::Answered { .. } => {}
        ClientReport::Disconnected { error, retry_in } => {
            tracing::warn!(%addr, ?retry_in, "control plane connection lost: {error}")
        }
        ClientReport::CertificateRequested => {
            tracing::info!(%addr, "certificate requested from the control plane")
        }
        ClientReport::CertificateInstalled {
            not_after,
            renew_at,
        } => {
            let secs = |t: std::time::SystemTime| {
                t.duration_since(std::time::SystemTime::now())
                    .map_or(0, |d| d.as_secs())
            };
            tracing::info!(
                valid_for_s = secs(not_after),
                renew_in_s = secs(renew_at),
                "workload certificate installed"
            )
        }
        ClientReport::CertificateRefused { reason, retry_in } => tracing::error!(
            %addr,
            ?retry_in,
            "certificate refused by the control plane (the one held, if any, stays): {reason}"
        ),
    }
}

/// The document translated, with the file's listeners and HTTP settings (what the pushed
/// mesh config sets wins: `trellis_control::plane::mesh_apply`), as the engine will run it;
/// `Err` is the NACK's reason.
fn config_of(
    document: &SidecarDocument,
    base: &Config,
    workload: &Workload,
    version: u64,
    identity: &Option<Arc<MeshIdentity>>,
) -> Result<Config, String> {
    let translation = document
        .translate_for(workload)
        .map_err(|e| e.to_string())?;
    for d in &translation.diagnostics {
        tracing::warn!("{d}");
    }
    let mut config = Config {
        version: format!("plane-{version}"),
        listeners: base.listeners.clone(),
        http: base.http.clone(),
        // The identity is the sidecar's own: its files', or the certificate it asked for.
        identity: identity.clone(),
        ..translation.config
    };
    // The file's inbound listeners keep their workload target (`forwardTo`): its route table
    // and cluster are the file's, not the pushed document's.
    for table in base
        .route_tables
        .iter()
        .filter(|t| t.name.starts_with("inbound|"))
    {
        config.route_tables.push(table.clone());
    }
    for cluster in base
        .clusters
        .iter()
        .filter(|c| c.name.starts_with("inbound|"))
    {
        config.clusters.push(cluster.clone());
    }
    // ... and the L4 chains of those listeners (a TCP workload port, `protocol:`), whose RBAC
    // `apply_security` sets from the pushed policies.
    let inbound = inbound_listeners(base);
    let chains = base.tcp_routes.iter();
    let chains = chains.filter(|r| r.listener.as_ref().is_some_and(|l| inbound.contains(l)));
    config.tcp_routes.extend(chains.cloned());
    capture_protocols(&mut config, document);
    outbound_capture(&mut config, base, &translation.outbound_ports, document);
    // The mesh config's path normalization and outbound traffic policy, over the file's.
    trellis_control::plane::mesh_apply::apply_to_listeners(&mut config, &document.mesh);
    match config.identity.clone() {
        None => trellis_control::translate::upstream_tls::without_identity(&mut config),
        Some(id) => {
            trellis_control::translate::upstream_tls::in_trust_domain(&mut config, &id.trust_domain)
        }
    }
    apply_security(&mut config, document, workload)?;
    trellis_engine::Engine::try_new(Arc::new(config.clone()), 0)
        .map_err(|e| format!("the engine refuses this config: {e}"))?;
    Ok(config)
}

/// The pushed PeerAuthentications, RequestAuthentications and AuthorizationPolicies applied to the file's inbound
/// listeners, as the file's own would be (`proxy_config`): mTLS mode per workload port (an
/// inbound listener with a `forwardTo` target is keyed by that port, its route table
/// `inbound|<port>`), and the RBAC chain of the policies that select the workload.
fn apply_security(
    config: &mut Config,
    document: &SidecarDocument,
    workload: &Workload,
) -> Result<(), String> {
    use trellis_engine::config::Direction;
    let resources = document.resource_set().map_err(|e| e.to_string())?;
    let has_identity = config.identity.is_some();
    let authz = trellis_control::translate::authorization_for(&resources, workload);
    for d in &authz.diagnostics {
        tracing::warn!("{d}");
    }
    // The control plane inlined every JWKS; a sidecar never fetches one (`NoFetch` fails such
    // a rule closed and says so).
    let authn = trellis_control::translate::authentication_for(
        &resources,
        workload,
        &trellis_control::jwks_resolver::NoFetch,
    );
    for d in &authn.diagnostics {
        tracing::warn!("{d}");
    }
    // The inbound L4 chains: the same policies compiled for TCP (pilot's BuildTCP).
    let tcp_authz = trellis_control::translate::tcp_authorization_for(&resources, workload);
    let inbound = inbound_listeners(config);
    for chain in (config.tcp_routes.iter_mut())
        .filter(|r| r.listener.as_ref().is_some_and(|l| inbound.contains(l)))
    {
        chain.authorization = tcp_authz.authorization.clone();
    }
    for listener in config
        .listeners
        .iter_mut()
        .filter(|l| l.direction == Direction::Inbound)
    {
        let app_port = listener
            .route_table
            .strip_prefix("inbound|")
            .and_then(|p| p.parse::<u16>().ok());
        let mut diags = Vec::new();
        listener.mtls = trellis_control::translate::peer_authn::inbound_mtls(
            &resources,
            workload,
            has_identity,
            app_port,
            &mut diags,
        );
        for d in &diags {
            tracing::error!("{d}");
        }
        listener.authorization = authz.authorization.clone();
        listener.authentication = authn.authentication.clone();
    }
    Ok(())
}

/// A capture inbound listener's per-port protocols and L4 chains come from the pushed
/// document (which Services select the workload is the control plane's to know), replacing
/// those the file's `services:` gave; its `protocolDetectionTimeout` is the mesh config's
/// when the control plane has one that sets it, else the file's.
fn capture_protocols(config: &mut Config, document: &SidecarDocument) {
    use trellis_control::translate::inbound_capture::{add_capture_chains, remove_capture_chains};
    let ports = document.inbound_protocols();
    let captures: Vec<_> = (config.listeners.iter().enumerate())
        .filter_map(|(i, l)| Some((i, l.name.clone(), l.local_forward?)))
        .collect();
    for (i, name, ip) in captures {
        let timeout = match document.mesh.protocol_detection_timeout_ms {
            Some(_) => document.mesh.protocol_detection_timeout(),
            None => {
                (config.listeners[i].inbound_protocols.as_ref()).and_then(|p| p.detection_timeout)
            }
        };
        remove_capture_chains(config, &name);
        // The chains' RBAC is `apply_security`'s, from the pushed policies.
        let table = add_capture_chains(config, &name, ip, &ports, timeout, None);
        config.listeners[i].inbound_protocols = Some(table);
    }
}

/// The outbound listeners' port tables come from the pushed document's services (the
/// registry the control plane scoped to this sidecar); their `protocolDetectionTimeout` is
/// the mesh config's when it sets one, else the file's.
fn outbound_capture(
    config: &mut Config,
    base: &Config,
    ports: &std::collections::BTreeMap<u16, trellis_engine::config::PortProtocol>,
    document: &SidecarDocument,
) {
    let mesh = (document.mesh.protocol_detection_timeout_ms)
        .map(|_| document.mesh.protocol_detection_timeout());
    trellis_control::translate::outbound_capture::attach(config, ports, |name| match mesh {
        Some(timeout) => timeout,
        None => (base.listeners.iter().find(|l| l.name == name))
            .and_then(|l| l.outbound_capture.as_ref())
            .and_then(|c| c.detection_timeout),
    });
}

/// The names of `config`'s inbound listeners.
fn inbound_listeners(config: &Config) -> Vec<String> {
    (config.listeners.iter())
        .filter(|l| l.direction == trellis_engine::config::Direction::Inbound)
        .map(|l| l.name.clone())
        .collect()
}
