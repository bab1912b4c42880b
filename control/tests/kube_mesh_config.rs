//! The mesh config from the cluster: the `istio` ConfigMap of `istio-system` watched through
//! the API-server double (`support/fake_apiserver.rs`), pushed over the real server and
//! client to a connected sidecar.
//!
//! 1. The ConfigMap's `mesh` key reaches the sidecar's document (ALLOW_ANY); ConfigMaps of
//!    other names or namespaces are not read.
//! 2. An edit (REGISTRY_ONLY) is a watch event, a snapshot and a push.
//! 3. A broken mesh config is refused: the source keeps the last good one, and the sidecar
//!    gets nothing new; fixed, it is pushed again.
//! 4. Only that object is asked for: a namespaced watch with a `metadata.name` field
//!    selector, as pilot's `NewConfigMapSource` (pkg/config/mesh/kubemesh/watcher.go), so
//!    RBAC can grant list/watch of that one name.

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use serde_json::json;
use tokio::sync::watch;
use trellis_control::plane::mesh_settings::{MeshSettings, OutboundTrafficMode};
use trellis_control::plane::net::{
    run_client, serve, tcp_connector, ClientConfig, ServerConfig, ServerReport,
};
use trellis_control::plane::push::{Client, PushConfig};
use trellis_control::plane::{KubeSource, KubeSourceConfig, Snapshot};
use trellis_control::translate::Workload;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Seen {
    /// Every snapshot the source handed out.
    snapshots: Vec<Snapshot>,
    /// The mesh settings of every document the sidecar applied.
    documents: Vec<MeshSettings>,
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait_until(what: &str, seen: &Mutex<Seen>, done: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done(&lock(seen)) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            lock(seen).documents
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config_map(namespace: &str, name: &str, mesh: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": namespace},
           "data": {"mesh": mesh}})
}

fn outbound(mesh: &MeshSettings) -> Option<OutboundTrafficMode> {
    mesh.outbound_traffic_policy
}

#[test]
fn a_config_map_edit_reaches_a_connected_sidecar_and_a_broken_one_is_refused() {
    let tmp = std::env::temp_dir().join(format!("trellis-kube-mesh-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("dir");
    let server = FakeApiServer::start();
    server.install_istio_crds();
    let istio = |mesh: &str| config_map("istio-system", "istio", mesh);
    server.apply(istio("outboundTrafficPolicy: {mode: ALLOW_ANY}\n"));
    // Neither of these is the mesh config.
    server.apply(config_map(
        "istio-system",
        "other",
        "enableAutoMtls: false\n",
    ));
    server.apply(config_map("default", "istio", "enableAutoMtls: false\n"));

    let mut source = KubeSource::start(KubeSourceConfig {
        kubeconfig: Some(server.write_kubeconfig(&tmp)),
        context: None,
        crd_retry: Duration::from_millis(200),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        watch_timeout_secs: Some(1),
    })
    .expect("source starts");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (publish, snapshots) = watch::channel::<Option<Arc<Snapshot>>>(None);
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            while !publish.is_closed() {
                if let Some(snapshot) = source.wait(Duration::from_millis(100)) {
                    lock(&seen).snapshots.push(snapshot.clone());
                    publish.send_replace(Some(Arc::new(snapshot)));
                }
            }
        });
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let push = PushConfig {
                debounce_after: Duration::from_millis(20),
                debounce_max: Duration::from_millis(200),
            };
            serve(
                listener,
                ServerConfig::new(push),
                snapshots,
                |_, _: ServerReport| {},
            )
            .await;
        });
    });
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(run_client(
                tcp_connector(addr.to_string()),
                Client::new("sidecar-0", Workload::default()),
                ClientConfig::default(),
                7,
                move |_, document| {
                    lock(&seen).documents.push(document.mesh.clone());
                    Ok(())
                },
                |_| {},
            ));
        });
    }

    // 1. The first push carries the ConfigMap's mesh config, and only its.
    wait_until("ALLOW_ANY at the sidecar", &seen, |s| {
        s.documents.last().and_then(outbound) == Some(OutboundTrafficMode::AllowAny)
    });
    assert_eq!(
        lock(&seen)
            .documents
            .last()
            .and_then(|m| m.enable_auto_mtls),
        None,
        "another ConfigMap was read"
    );

    // 2. An edit is pushed.
    server.apply(istio("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"));
    wait_until("REGISTRY_ONLY at the sidecar", &seen, |s| {
        s.documents.last().and_then(outbound) == Some(OutboundTrafficMode::RegistryOnly)
    });

    // 3. A broken mesh config: the source's next snapshot keeps the last good settings.
    let pushed = lock(&seen).documents.len();
    server.apply(istio(
        "outboundTrafficPolicy: {mode: ALLOW_ANY}\nenableAutoMtls: maybe\n",
    ));
    wait_until("the refusal", &seen, |s| {
        s.snapshots.last().is_some_and(|s| s.mesh_refused.is_some())
    });
    {
        let seen = lock(&seen);
        let refused = seen.snapshots.last().expect("a snapshot");
        assert!(
            (refused.mesh_refused.as_deref()).is_some_and(|e| e.contains("enableAutoMtls")),
            "{:?}",
            refused.mesh_refused
        );
        assert_eq!(
            outbound(&refused.mesh),
            Some(OutboundTrafficMode::RegistryOnly)
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    {
        let seen = lock(&seen);
        let since: Vec<_> = seen.documents[pushed..].iter().map(outbound).collect();
        assert!(
            since
                .iter()
                .all(|m| *m == Some(OutboundTrafficMode::RegistryOnly)),
            "a refused mesh config reached the sidecar: {since:?}"
        );
    }
    // Fixed, it is pushed.
    server.apply(istio(
        "outboundTrafficPolicy: {mode: ALLOW_ANY}\nenableAutoMtls: false\n",
    ));
    wait_until("the fixed config at the sidecar", &seen, |s| {
        s.documents
            .last()
            .is_some_and(|m| outbound(m) == Some(OutboundTrafficMode::AllowAny) && !m.auto_mtls())
    });

    // 4. Only the one object was ever asked for.
    let asked: Vec<String> = (server.requests().into_iter())
        .filter(|r| r.contains("configmaps"))
        .collect();
    assert!(!asked.is_empty());
    for request in &asked {
        assert!(
            request.contains("/api/v1/namespaces/istio-system/configmaps?")
                && request.contains("fieldSelector=metadata.name%3Distio"),
            "{request}"
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
