//! The mesh config's fields and defaults, each against the Istio code that defines it.

use super::*;
use trellis_engine::path::PathNormalization;

/// `mesh.DefaultMeshConfig()` (pkg/config/mesh/mesh.go) sets `ProtocolDetectionTimeout`
/// to 0s: no timeout, so nothing is set here either.
#[test]
fn defaults_and_the_detection_timeout() {
    let empty = read_mesh_config("", "mesh.yaml").expect("an empty config is Istio's default");
    assert!(empty.is_default());
    assert_eq!(empty.protocol_detection_timeout(), None);
    let set = read_mesh_config(
        "protocolDetectionTimeout: 5s\naccessLogFile: /dev/stdout\n",
        "mesh.yaml",
    )
    .expect("reads");
    assert_eq!(
        set.protocol_detection_timeout(),
        Some(Duration::from_secs(5))
    );
    let zero = read_mesh_config("protocolDetectionTimeout: 0s\n", "mesh.yaml").expect("reads");
    assert_eq!(zero.protocol_detection_timeout(), None);
    assert!(
        !zero.is_default(),
        "written 0s is kept, and means no timeout"
    );
}

/// `DefaultMeshConfig` sets `OutboundTrafficPolicy{Mode: ALLOW_ANY}` and
/// `EnableAutoMtls: true` (pkg/config/mesh/mesh.go), and leaves `PathNormalization` and
/// `DefaultHttpRetryPolicy` unset: `GetNormalization()` is then `DEFAULT`, which
/// `buildHTTPConnectionManager` (pilot/pkg/networking/core/listener_builder.go) treats as
/// `BASE`, and `retry.ConvertPolicy(nil)` (pilot/pkg/networking/core/route/retry/retry.go)
/// is the default policy.
#[test]
fn unset_fields_are_pilots_defaults() {
    let empty = MeshSettings::default();
    assert_eq!(empty.outbound_mode(), OutboundTrafficMode::AllowAny);
    assert!(empty.auto_mtls());
    assert_eq!(empty.path_normalization(), PathNormalization::Base);
    assert_eq!(empty.default_http_retry_policy(), None);
}

/// The fields as an `istio` ConfigMap writes them (MeshConfig's JSON names), other fields
/// (`accessLogFile`, `defaultConfig`) accepted and ignored.
#[test]
fn every_field_a_sidecar_acts_on_is_read() {
    let mesh = read_mesh_config(
        "accessLogFile: /dev/stdout\ndefaultConfig: {discoveryAddress: istiod:15012}\n\
         pathNormalization: {normalization: MERGE_SLASHES}\n\
         outboundTrafficPolicy: {mode: REGISTRY_ONLY}\nenableAutoMtls: false\n\
         defaultHttpRetryPolicy: {attempts: 5, retryOn: 5xx, perTryTimeout: 2s}\n",
        "mesh.yaml",
    )
    .expect("reads");
    assert_eq!(mesh.path_normalization(), PathNormalization::MergeSlashes);
    assert_eq!(mesh.outbound_mode(), OutboundTrafficMode::RegistryOnly);
    assert!(!mesh.auto_mtls());
    let retry = mesh.default_http_retry_policy().expect("a retry policy");
    assert_eq!(retry.attempts, Some(5));
    assert_eq!(retry.retry_on.as_deref(), Some("5xx"));
    // The wire keeps what was written, and reads back equal.
    let json = serde_json::to_string(&mesh).expect("encodes");
    let back: MeshSettings = serde_json::from_str(&json).expect("decodes");
    assert_eq!(back, mesh);
}

/// A policy without `mode` is the enum's zero value, REGISTRY_ONLY (mesh/v1alpha1/config.proto;
/// jsonpb replaces the default's policy with the one written), and protobuf JSON's enum
/// numbers are names too; `null` leaves the default.
#[test]
fn an_outbound_policy_without_a_mode_is_registry_only() {
    let mode = |text: &str| {
        read_mesh_config(text, "mesh.yaml")
            .expect(text)
            .outbound_mode()
    };
    assert_eq!(
        mode("outboundTrafficPolicy: {}\n"),
        OutboundTrafficMode::RegistryOnly
    );
    assert_eq!(
        mode("outboundTrafficPolicy: {mode: 1}\n"),
        OutboundTrafficMode::AllowAny
    );
    assert_eq!(
        mode("outboundTrafficPolicy: null\n"),
        OutboundTrafficMode::AllowAny
    );
    assert!(read_mesh_config("outboundTrafficPolicy: {mode: 3}\n", "m").is_err());
}

/// The ProxyPathNormalization switch of `buildHTTPConnectionManager`.
#[test]
fn path_normalization_follows_pilots_switch() {
    for (written, engine) in [
        ("NONE", PathNormalization::None),
        ("DEFAULT", PathNormalization::Base),
        ("BASE", PathNormalization::Base),
        ("MERGE_SLASHES", PathNormalization::MergeSlashes),
        (
            "DECODE_AND_MERGE_SLASHES",
            PathNormalization::DecodeAndMergeSlashes,
        ),
    ] {
        let text = format!("pathNormalization: {{normalization: {written}}}\n");
        let mesh = read_mesh_config(&text, "mesh.yaml").expect(written);
        assert_eq!(mesh.path_normalization(), engine, "{written}");
    }
    // By number, as protobuf JSON allows: config.proto's MERGE_SLASHES = 3.
    let mesh = read_mesh_config("pathNormalization: {normalization: 3}\n", "m").expect("3");
    assert_eq!(mesh.path_normalization(), PathNormalization::MergeSlashes);
    assert!(read_mesh_config("pathNormalization: {normalization: 9}\n", "m").is_err());
}

#[test]
fn a_broken_config_is_an_error_naming_the_field() {
    let refused = |text: &str, field: &str| {
        let err = read_mesh_config(text, "mesh.yaml").expect_err(text);
        assert!(err.to_string().contains(field), "{text}: {err}");
    };
    refused(
        "protocolDetectionTimeout: soon\n",
        "protocolDetectionTimeout",
    );
    refused(
        "protocolDetectionTimeout: [1]\n",
        "protocolDetectionTimeout",
    );
    refused("enableAutoMtls: sometimes\n", "enableAutoMtls");
    refused(
        "outboundTrafficPolicy: {mode: EVERYTHING}\n",
        "outboundTrafficPolicy.mode",
    );
    refused(
        "outboundTrafficPolicy: {mode: ALLOW_ANY_DYNAMIC_DNS}\n",
        "not supported",
    );
    refused(
        "pathNormalization: {normalization: TIDY}\n",
        "pathNormalization.normalization",
    );
    refused(
        "defaultHttpRetryPolicy: {attempts: many}\n",
        "defaultHttpRetryPolicy.attempts",
    );
    refused(
        "defaultHttpRetryPolicy: {perTryTimeout: soon}\n",
        "defaultHttpRetryPolicy.perTryTimeout",
    );
    assert!(read_mesh_config("- a list\n", "mesh.yaml").is_err());
}

#[test]
fn the_config_map_carries_it_under_mesh() {
    let object: serde_yaml::Value = serde_yaml::from_str(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    protocolDetectionTimeout: 100ms\n    outboundTrafficPolicy:\n      mode: REGISTRY_ONLY\n",
    )
    .unwrap();
    let mesh = read_config_map(&object, "istio.yaml").expect("reads");
    assert_eq!(mesh.protocol_detection_timeout_ms, Some(100));
    assert_eq!(mesh.outbound_mode(), OutboundTrafficMode::RegistryOnly);
}
