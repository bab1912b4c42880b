//! `trellis proxy --control-plane ADDR`: the sidecar receiving its config from `trellis
//! control` instead of reading it from its file.
//!
//! The proxy config file still says where to listen (`listeners`, `http`) and who the workload
//! is (`workload:`); routes and clusters come from the control plane. Each pushed document is
//! translated here, combined with the file's listeners, checked by the engine and swapped in
//! through the same `ControlHandle::update_config` a file reload uses; a document that fails
//! any of that is NACKed with the reason and the running config stays. The connection is
//! re-established every second while it is down, announcing what this sidecar holds, so a
//! control-plane restart resends nothing that is current. The protocol logic is
//! `trellis_control::plane::push::Client`; this is only its transport.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use trellis_control::plane::push::wire::{encode, FrameDecoder};
use trellis_control::plane::push::{Client, ServerMessage};
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

/// Start the client thread; it runs until the process exits.
pub fn start(
    addr: String,
    node: String,
    workload: Workload,
    base: Arc<Config>,
    control: ControlHandle,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut client = Client::new(node, workload.clone());
        loop {
            match session(&addr, &mut client, &base, &workload, &control) {
                Ok(()) => tracing::warn!(%addr, "control plane closed the connection"),
                Err(e) => tracing::warn!(%addr, "control plane unreachable: {e}"),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    })
}

fn session(
    addr: &str,
    client: &mut Client,
    base: &Config,
    workload: &Workload,
    control: &ControlHandle,
) -> std::io::Result<()> {
    // Resolved on every (re)connection: in a cluster the address is a Service's DNS name.
    let mut stream = TcpStream::connect(addr)?;
    let frame = |m: &_| encode(m).map_err(|e| std::io::Error::other(e.to_string()));
    stream.write_all(&frame(&client.hello())?)?;
    tracing::info!(%addr, "connected to the control plane");
    let mut decoder = FrameDecoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        decoder.push(&buf[..n]);
        while let Some(message) = decoder
            .next_message::<ServerMessage>()
            .map_err(|e| std::io::Error::other(e.to_string()))?
        {
            let answer = client.handle(message, |version, document| {
                let config = config_of(document, base, workload, version)?;
                control.update_config(Arc::new(config));
                tracing::info!(version, "config from the control plane applied");
                Ok(())
            });
            if let trellis_control::plane::push::ClientMessage::Nack { version, reason } = &answer {
                tracing::error!(version, "config from the control plane refused: {reason}");
            }
            stream.write_all(&frame(&answer)?)?;
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
