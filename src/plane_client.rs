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

use std::sync::Arc;

use trellis_control::plane::net::{run_client, tcp_connector, ClientConfig, ClientReport};
use trellis_control::plane::push::{Client, ClientMessage};
use trellis_control::plane::SidecarDocument;
use trellis_control::translate::Workload;
use trellis_engine::config::Config;
use trellis_io::ControlHandle;

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
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("control-plane-client".into())
        .spawn(move || {
            let seed = node_seed(&node);
            let client = Client::new(node, workload.clone());
            let apply = |version, document: &SidecarDocument| {
                let config = config_of(document, &base, &workload, version)?;
                control.update_config(Arc::new(config));
                tracing::info!(version, "config from the control plane applied");
                Ok(())
            };
            let report = |report: ClientReport| log_report(&addr, report);
            let connector = tcp_connector(addr.clone());
            let run = run_client(
                connector,
                client,
                ClientConfig::default(),
                seed,
                apply,
                report,
            );
            runtime.block_on(run);
        })
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
    }
}

/// The document translated, with the file's listeners and HTTP settings, as the engine will
/// run it; `Err` is the NACK's reason.
fn config_of(
    document: &SidecarDocument,
    base: &Config,
    workload: &Workload,
    version: u64,
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
        // The identity is the sidecar's own (its files), never pushed.
        identity: base.identity.clone(),
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
