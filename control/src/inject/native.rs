//! Whether the sidecar is injected as a Kubernetes native sidecar (KEP-753): an init container
//! with `restartPolicy: Always`, which the kubelet starts before the application containers
//! (once its startupProbe passes) and stops after they have exited, so a Job's pod completes.
//!
//! Three inputs decide it, as in Istio:
//!
//! - the injector's mode, `ENABLE_NATIVE_SIDECARS` (`EnableNativeSidecars` in
//!   pilot/pkg/features/pilot.go): `true`, `false` or `auto` (the default when unset; any other
//!   value is read as `false`, with a warning);
//! - what the injector knows of the cluster: `DetectNativeSidecar` (pkg/kube/inject/webhook.go)
//!   turns `auto` on when the kubelet of the pod's node (or, when the pod has no node yet, of
//!   every node) is 1.33 or later, the release in which native sidecars went GA. Without a
//!   view of the nodes (`istioctl kube-inject`, `IntoObject` in inject.go; a webhook without a
//!   node client) only an explicit `true` turns them on;
//! - the pod's `sidecar.istio.io/nativeSidecar` annotation, which the injection template reads
//!   over that decision (`$nativeSidecar` in
//!   manifests/charts/istio-control/istio-discovery/files/injection-template.yaml).

use std::collections::BTreeMap;

use super::settings::PodAnnotations;

/// The injector's environment variable (`ENABLE_NATIVE_SIDECARS`).
pub const ENV: &str = "ENABLE_NATIVE_SIDECARS";
/// The pod annotation overriding the injector's decision.
pub const ANNOTATION: &str = "sidecar.istio.io/nativeSidecar";
/// The first kubelet minor version with native sidecars on by default and stable
/// (`minVersion := 33` in `DetectNativeSidecar`).
pub const MIN_KUBELET_MINOR: u64 = 33;

/// `features.NativeSidecarMode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NativeSidecarMode {
    Enabled,
    Disabled,
    /// Istio's default: on where every node that may run the pod supports them.
    #[default]
    Auto,
}

impl NativeSidecarMode {
    /// The flag's and the variable's spellings, exactly (`true`, `false`, `auto`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "true" => Some(NativeSidecarMode::Enabled),
            "false" => Some(NativeSidecarMode::Disabled),
            "auto" => Some(NativeSidecarMode::Auto),
            _ => None,
        }
    }

    /// `ENABLE_NATIVE_SIDECARS` as pilot.go reads it: unset is `auto`; a value that is not
    /// `true`, `false` or `auto` (an empty one included: `env.Register(...).Get()` returns it
    /// as set) is `false`, and the warning Istio logs is returned beside it.
    pub fn from_env_value(value: Option<&str>) -> (Self, Option<String>) {
        let Some(value) = value else {
            return (NativeSidecarMode::Auto, None);
        };
        match Self::parse(value) {
            Some(mode) => (mode, None),
            None => (
                NativeSidecarMode::Disabled,
                Some(format!(
                    "Unknown value for {ENV}: {value}, defaulting to false"
                )),
            ),
        }
    }

    /// The decision without a view of the nodes (`IntoObject` in inject.go, and the webhook's
    /// branch without a node client): only an explicit `true`.
    pub fn without_nodes(self) -> bool {
        self == NativeSidecarMode::Enabled
    }
}

/// What the injector knows of the nodes: each node's name and its kubelet's version
/// (`status.nodeInfo.kubeletVersion`), the fields `kube.StripNodeUnusedFields` keeps that
/// `DetectNativeSidecar` reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeVersions(pub BTreeMap<String, String>);

/// `DetectNativeSidecar`'s answer, with why it is `false` (Istio logs the reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeVerdict {
    Supported,
    /// The mode alone decided (`false`), or `auto` had no view of the nodes.
    Off(&'static str),
    TooOld {
        node: String,
        minor: u64,
    },
    Unreadable {
        node: String,
        version: String,
    },
}

/// The minor version of a kubelet version as `goversion.NewVersion(..).Segments()[1]` reads it
/// (`v1.33.2`, `1.33.0-gke.1000`, `v1.34.1+k3s1`; missing segments are 0).
pub fn kubelet_minor(version: &str) -> Option<u64> {
    let core = version.strip_prefix('v').unwrap_or(version);
    let end = core.find(['-', '+']).unwrap_or(core.len());
    let (numbers, rest) = core.split_at(end);
    if numbers.is_empty() || rest == "-" || rest == "+" {
        return None;
    }
    let segments: Vec<u64> = numbers
        .split('.')
        .map(|s| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    Some(segments.get(1).copied().unwrap_or(0))
}

/// `checkNodeVersion` in `DetectNativeSidecar`.
fn check_node(name: &str, version: &str) -> NodeVerdict {
    match kubelet_minor(version) {
        None => NodeVerdict::Unreadable {
            node: name.to_string(),
            version: version.to_string(),
        },
        Some(minor) if minor < MIN_KUBELET_MINOR => NodeVerdict::TooOld {
            node: name.to_string(),
            minor,
        },
        Some(_) => NodeVerdict::Supported,
    }
}

/// `DetectNativeSidecar(nodes, pod.Spec.NodeName)`: `Enabled` and `Disabled` decide alone;
/// `Auto` without nodes is off; otherwise the pod's node decides when it is known and found,
/// else every node must support them (so one old node in a mixed cluster turns them off,
/// since the pod may land there). An empty cluster supports them, as Istio's loop does.
pub fn detect(mode: NativeSidecarMode, nodes: Option<&NodeVersions>, pod_node: &str) -> bool {
    detect_with_reason(mode, nodes, pod_node) == NodeVerdict::Supported
}

/// [`detect`], with the node that turned native sidecars off.
pub fn detect_with_reason(
    mode: NativeSidecarMode,
    nodes: Option<&NodeVersions>,
    pod_node: &str,
) -> NodeVerdict {
    match mode {
        NativeSidecarMode::Disabled => return NodeVerdict::Off("ENABLE_NATIVE_SIDECARS=false"),
        NativeSidecarMode::Enabled => return NodeVerdict::Supported,
        NativeSidecarMode::Auto => {}
    }
    let Some(nodes) = nodes else {
        return NodeVerdict::Off("auto, but no view of the nodes");
    };
    if !pod_node.is_empty() {
        if let Some(version) = nodes.0.get(pod_node) {
            return check_node(pod_node, version);
        }
    }
    nodes
        .0
        .iter()
        .map(|(name, version)| check_node(name, version))
        .find(|verdict| *verdict != NodeVerdict::Supported)
        .unwrap_or(NodeVerdict::Supported)
}

/// The template's `$nativeSidecar`: `ne (index .ObjectMeta.Annotations
/// "sidecar.istio.io/nativeSidecar" | default (printf "%t" .NativeSidecars)) "false"`. An
/// annotation that is absent or empty leaves the injector's decision; any other value but
/// `false` turns them on.
pub fn pod_wants_native(annotations: &PodAnnotations<'_>, injector_native: bool) -> bool {
    match annotations.get(ANNOTATION).filter(|v| !v.is_empty()) {
        Some(value) => value != "false",
        None => injector_native,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(pairs: &[(&str, &str)]) -> NodeVersions {
        NodeVersions(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_variable_reads_as_pilot_go_reads_it() {
        use NativeSidecarMode::*;
        assert_eq!(NativeSidecarMode::from_env_value(None), (Auto, None));
        assert_eq!(
            NativeSidecarMode::from_env_value(Some("true")),
            (Enabled, None)
        );
        assert_eq!(
            NativeSidecarMode::from_env_value(Some("false")),
            (Disabled, None)
        );
        assert_eq!(
            NativeSidecarMode::from_env_value(Some("auto")),
            (Auto, None)
        );
        for odd in ["TRUE", "1", "", "yes"] {
            let (mode, warning) = NativeSidecarMode::from_env_value(Some(odd));
            assert_eq!(mode, Disabled, "{odd:?}");
            assert!(warning.is_some_and(|w| w.contains("defaulting to false")));
        }
        assert!(Enabled.without_nodes());
        assert!(!Auto.without_nodes() && !Disabled.without_nodes());
    }

    #[test]
    fn kubelet_versions_read_as_goversion() {
        assert_eq!(kubelet_minor("v1.33.2"), Some(33));
        assert_eq!(kubelet_minor("v1.32.4-gke.1234"), Some(32));
        assert_eq!(kubelet_minor("1.34.0+k3s1"), Some(34));
        assert_eq!(kubelet_minor("v1"), Some(0));
        assert_eq!(kubelet_minor("banana"), None);
        assert_eq!(kubelet_minor(""), None);
        assert_eq!(kubelet_minor("v1..2"), None);
    }

    #[test]
    fn auto_follows_the_pods_node_else_every_node() {
        use NativeSidecarMode::*;
        let mixed = nodes(&[("new", "v1.33.1"), ("old", "v1.30.0")]);
        assert!(detect(Auto, Some(&mixed), "new"), "the pod's node decides");
        assert!(!detect(Auto, Some(&mixed), "old"));
        assert!(!detect(Auto, Some(&mixed), ""), "any old node turns it off");
        assert!(
            !detect(Auto, Some(&mixed), "gone"),
            "unknown node: every node"
        );
        assert_eq!(
            detect_with_reason(Auto, Some(&mixed), ""),
            NodeVerdict::TooOld {
                node: "old".into(),
                minor: 30
            }
        );
        let modern = nodes(&[("a", "v1.33.0"), ("b", "v1.34.2")]);
        assert!(detect(Auto, Some(&modern), ""));
        assert!(detect(Auto, Some(&NodeVersions::default()), ""));
        assert!(!detect(Auto, None, ""), "no client: off");
        assert!(!detect(Auto, Some(&nodes(&[("x", "weird")])), "x"));
        assert!(detect(Enabled, Some(&mixed), "old"));
        assert!(!detect(Disabled, Some(&modern), "a"));
    }

    #[test]
    fn the_annotation_overrides_as_the_template_reads_it() {
        // TestNativeSidecarAnnotationOverride in pkg/kube/inject/inject_test.go.
        let with = |value: Option<&str>| {
            let map: BTreeMap<String, String> = value
                .map(|v| (ANNOTATION.to_string(), v.to_string()))
                .into_iter()
                .collect();
            (
                pod_wants_native(&PodAnnotations(&map), true),
                pod_wants_native(&PodAnnotations(&map), false),
            )
        };
        assert_eq!(with(None), (true, false));
        assert_eq!(with(Some("false")), (false, false));
        assert_eq!(with(Some("true")), (true, true));
        assert_eq!(with(Some("")), (true, false), "empty: the default");
    }
}
