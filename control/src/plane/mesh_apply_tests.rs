//! The pushed mesh config applied by a sidecar, field by field, against pilot's use of it.

use std::path::Path;

use trellis_engine::config::{RetryPolicy, UpstreamTls};
use trellis_engine::path::PathNormalization;

use super::*;
use crate::plane::document::{Resource, SidecarDocument};
use crate::plane::mesh_settings::read_mesh_config;
use crate::plane::Snapshot;
use crate::translate::OUTBOUND_ROUTE_TABLE;

/// Two services in `shop`, a VirtualService for `reviews` (one rule without `retries`, one
/// with) and a DestinationRule with ISTIO_MUTUAL for `ratings`.
const MESH: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /once}}]
    retries: {attempts: 1}
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: shop}
spec: {host: ratings, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
"#;

fn document(mesh: &str) -> SidecarDocument {
    let snapshot = Snapshot::from_files(&[("mesh.yaml".into(), MESH.into())]).expect("reads");
    let resources = (snapshot.documents.iter())
        .map(|(source, document)| Resource {
            file: source.file.clone(),
            document: document.clone(),
        })
        .collect();
    SidecarDocument {
        registry: snapshot.registry,
        resources,
        inbound: Vec::new(),
        mesh: read_mesh_config(mesh, "mesh.yaml").expect("mesh config"),
    }
}

fn retries_of(translation: &Translation, vhost_prefix: &str) -> Vec<RetryPolicy> {
    let table = (translation.config.route_tables.iter())
        .find(|t| t.name == OUTBOUND_ROUTE_TABLE)
        .expect("outbound table");
    let vhost = (table.virtual_hosts.iter())
        .find(|v| v.name.starts_with(vhost_prefix))
        .expect(vhost_prefix);
    vhost.routes.iter().map(|r| r.retries.clone()).collect()
}

fn tls_of(translation: &Translation, host_prefix: &str) -> UpstreamTls {
    (translation.config.clusters.iter())
        .find(|c| c.service.starts_with(host_prefix) && c.subset.is_none())
        .map(|c| c.tls.clone())
        .expect(host_prefix)
}

/// `translateRoute` (pilot/pkg/networking/core/route/route.go) takes
/// `mesh.GetDefaultHttpRetryPolicy()` for a rule without `retries`, and
/// `BuildDefaultHTTPOutboundRoute` for a service's default route; a rule's own `retries`
/// wins. Unset, both are `retry.ConvertPolicy(nil)`: Istio's default policy.
#[test]
fn the_default_retry_policy_fills_routes_that_set_none() {
    let istio = document("").translate().expect("translates");
    assert_eq!(
        retries_of(&istio, "reviews")[1],
        RetryPolicy::default(),
        "unset: Istio's default policy"
    );
    assert_eq!(retries_of(&istio, "ratings")[0], RetryPolicy::default());

    let mesh = document("defaultHttpRetryPolicy: {attempts: 5, retryOn: gateway-error}\n");
    let t = mesh.translate().expect("translates");
    let reviews = retries_of(&t, "reviews");
    assert_eq!(reviews[0].attempts, 1, "the rule's own retries win");
    assert_eq!(reviews[1].attempts, 5);
    assert!(reviews[1].retry_on.gateway_error && !reviews[1].retry_on.connect_failure);
    let ratings = retries_of(&t, "ratings");
    assert!(ratings.iter().all(|r| r.attempts == 5), "{ratings:?}");

    // `attempts: 0` turns retries off everywhere a route says nothing (ConvertPolicy: "explicitly
    // disabling the retry policy").
    let off = document("defaultHttpRetryPolicy: {attempts: 0}\n");
    let t = off.translate().expect("translates");
    assert_eq!(retries_of(&t, "ratings")[0], RetryPolicy::none());
}

/// `buildUpstreamTLSSettings` (pilot/pkg/networking/core/cluster_tls.go): without a rule's
/// `tls`, no TLS when `!autoMTLSEnabled`; a rule's ISTIO_MUTUAL is kept.
#[test]
fn auto_mtls_off_leaves_clusters_without_a_rule_in_plaintext() {
    let on = document("").translate().expect("translates");
    assert!(matches!(tls_of(&on, "reviews"), UpstreamTls::Auto { .. }));
    let off = document("enableAutoMtls: false\n")
        .translate()
        .expect("translates");
    assert_eq!(tls_of(&off, "reviews"), UpstreamTls::Disable);
    assert!(matches!(
        tls_of(&off, "ratings"),
        UpstreamTls::IstioMutual { .. }
    ));
}

/// A sidecar's file: an outbound listener that does not pass through, and MERGE_SLASHES.
fn file_config() -> Config {
    crate::proxy_config::parse_proxy_config(
        "listeners:\n  - {name: outbound, address: \"127.0.0.1:15001\", direction: outbound}\n\
         http: {pathNormalization: {normalization: MERGE_SLASHES}}\n",
        "proxy.yaml",
        Path::new("."),
    )
    .expect("file reads")
    .config
}

fn catch_all(config: &Config) -> Option<&VirtualHost> {
    (config.route_tables.iter())
        .find(|t| t.name == OUTBOUND_ROUTE_TABLE)
        .and_then(|t| t.virtual_hosts.iter().find(|v| v.name == BLACK_HOLE))
}

/// `buildCatchAllVirtualHost` (pilot/pkg/networking/core/httproute.go): ALLOW_ANY routes
/// unknown hosts to `PassthroughCluster` (the listener's passthrough), REGISTRY_ONLY to the
/// `block_all` virtual host, a DirectResponse of 502. Unset, the file's listener decides.
#[test]
fn the_outbound_traffic_policy_sets_the_outbound_listeners() {
    let mut file = file_config();
    apply_to_listeners(&mut file, &MeshSettings::default());
    assert_eq!(file, file_config(), "a mesh config that says nothing");
    assert!(!file.listeners[0].passthrough);

    let mut allow = file_config();
    let mesh = read_mesh_config("outboundTrafficPolicy: {mode: ALLOW_ANY}\n", "m").unwrap();
    apply_to_listeners(&mut allow, &mesh);
    assert!(allow.listeners[0].passthrough);
    assert!(catch_all(&allow).is_none());

    let mut only = file_config();
    let mesh = read_mesh_config("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n", "m").unwrap();
    apply_to_listeners(&mut only, &mesh);
    assert!(!only.listeners[0].passthrough);
    let black_hole = catch_all(&only).expect("block_all");
    assert_eq!(black_hole.domains, ["*"]);
    assert_eq!(
        black_hole.routes[0].action,
        RouteAction::DirectResponse {
            status: 502,
            body: None
        }
    );
    // The engine takes it (one `*` domain per table), and applying twice adds nothing.
    apply_to_listeners(&mut only, &mesh);
    crate::plane::document::compile(&only).expect("the engine accepts the catch-all");
}

/// `buildHTTPConnectionManager` reads `pathNormalization` from the mesh config; the file's
/// stays when the mesh config has none.
#[test]
fn path_normalization_from_the_mesh_config_wins_over_the_files() {
    let mut config = file_config();
    apply_to_listeners(&mut config, &MeshSettings::default());
    assert_eq!(
        config.http.path_normalization,
        PathNormalization::MergeSlashes
    );
    let mesh = read_mesh_config("pathNormalization: {normalization: NONE}\n", "m").unwrap();
    apply_to_listeners(&mut config, &mesh);
    assert_eq!(config.http.path_normalization, PathNormalization::None);
}
