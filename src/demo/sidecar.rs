//! One demo sidecar, in-process: the same path as `trellis proxy --config FILE
//! --control-plane ADDR`. Its file (written to the demo's state directory) gives the inbound
//! listener (where the directory's `trellis.dev/addresses` says the pod is, forwarding to the
//! workload), the outbound listener the workload calls, the `workload:` (from the directory,
//! so the control plane scopes it as that pod) and the `identity:` files, a SPIFFE certificate
//! issued by the demo's CA. Routes, clusters and policies come from the control plane.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use serde_json::json;
use trellis_control::ca::bootstrap::issue_workload;
use trellis_control::ca::{PluginFiles, WorkloadIdentity};
use trellis_control::plane::WorkloadInstance;
use trellis_control::{load_proxy_config_with, ProxyOverrides, Severity};
use trellis_io::{BackendChoice, ControlHandle, RunOptions, RuntimeOptions};

use super::ports::Reserved;

/// The mesh's trust domain (Istio's default).
pub const TRUST_DOMAIN: &str = "cluster.local";

/// Where one sidecar listens, and the handle that stops it.
pub struct Sidecar {
    /// The pod's name (`reviews-v2-0`), the sidecar's `--node`.
    pub node: String,
    /// The SPIFFE id in its certificate.
    pub identity: String,
    pub inbound: SocketAddr,
    pub outbound: SocketAddr,
    control: ControlHandle,
    thread: Option<JoinHandle<()>>,
}

/// What one sidecar is started with.
pub struct SidecarSpec<'a> {
    pub instance: &'a WorkloadInstance,
    pub inbound: SocketAddr,
    pub outbound: SocketAddr,
    /// The ports' holders, let go just before the sidecar binds them.
    pub held: Vec<Reserved>,
    /// The workload behind it.
    pub app: SocketAddr,
    pub plane: SocketAddr,
    pub seed: u64,
}

impl Sidecar {
    /// Issue its certificate, write its file under `state`, and start it.
    pub fn start(spec: SidecarSpec<'_>, ca: &PluginFiles, state: &Path) -> Result<Sidecar> {
        let node = spec.instance.name.clone();
        let workload = &spec.instance.workload;
        let id =
            WorkloadIdentity::new(TRUST_DOMAIN, &workload.namespace, &workload.service_account)
                .with_context(|| format!("{node}: no SPIFFE identity"))?;
        let issued = issue_workload(TRUST_DOMAIN, ca, &id, SystemTime::now(), None)
            .with_context(|| format!("cannot issue {node}'s certificate"))?;
        let dir = state.join(&node);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut files = Vec::new();
        for (name, text) in [
            ("cert-chain.pem", &issued.cert_chain),
            ("key.pem", &issued.key),
            ("root-cert.pem", &issued.root_cert),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            files.push(path.display().to_string());
        }
        let file = json!({
            "workload": {
                "namespace": workload.namespace,
                "serviceAccount": workload.service_account,
                "labels": workload.labels,
            },
            "identity": { "certChain": files[0], "key": files[1], "rootCert": files[2] },
            "listeners": [
                {"name": "inbound", "address": spec.inbound.to_string(), "direction": "inbound",
                 "forwardTo": spec.app.to_string()},
                {"name": "outbound", "address": spec.outbound.to_string(), "direction": "outbound"},
            ],
        });
        let path = dir.join("sidecar.yaml");
        std::fs::write(&path, serde_yaml::to_string(&file)?)
            .with_context(|| format!("cannot write {}", path.display()))?;

        let loaded = load_proxy_config_with(&path, &ProxyOverrides::default())
            .with_context(|| format!("cannot load {}", path.display()))?;
        if let Some(e) = loaded
            .warnings
            .iter()
            .find(|d| d.severity == Severity::Error)
        {
            bail!("{node}'s sidecar config: {e}");
        }
        let config = Arc::new(loaded.config);
        trellis_engine::Engine::try_new(config.clone(), 0)
            .with_context(|| format!("the engine refuses {node}'s config"))?;
        let control = ControlHandle::new();
        crate::plane_client::start(
            spec.plane.to_string(),
            node.clone(),
            loaded.workload,
            config.clone(),
            control.clone(),
        )
        .context("cannot start the control-plane client")?;
        let opts = RuntimeOptions {
            cores: 1,
            backend: BackendChoice::Auto,
            run: RunOptions {
                seed: spec.seed,
                shutdown_grace: Duration::from_secs(1),
                ..RunOptions::default()
            },
            health: None,
            pin: false,
        };
        let run_control = control.clone();
        for reserved in spec.held {
            reserved.release();
        }
        let name = node.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sidecar-{node}"))
            .spawn(move || {
                if let Err(e) = trellis_io::run_runtime(config, opts, run_control) {
                    tracing::error!("sidecar {name} stopped: {e}");
                }
            })
            .context("cannot start a sidecar thread")?;
        // A listener that cannot bind (a port taken since the seed named it) ends the thread:
        // say so now rather than after the warm-up's timeout.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(spec.inbound).is_err() {
            if thread.is_finished() || Instant::now() > deadline {
                bail!("{node}'s sidecar did not start on {}", spec.inbound);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Sidecar {
            node,
            identity: id.spiffe_uri(),
            inbound: spec.inbound,
            outbound: spec.outbound,
            control,
            thread: Some(thread),
        })
    }

    /// Stop accepting, let requests in flight finish (1 s at most), and wait for it.
    pub fn stop(&mut self) {
        self.control.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.stop();
    }
}
