//! What the injector is told (image, control plane, revision ...) and what each pod may
//! override with Istio's annotations.
//!
//! Istio keeps the first in the injector's `values` (`global.proxy.*`, the Helm chart's
//! manifests/charts/istio-control/istio-discovery/values.yaml) and reads the second with the
//! template's `annotation .ObjectMeta NAME DEFAULT` helper (pkg/kube/inject/template.go): the
//! pod's annotation when it has one, else the value. [`PodAnnotations`] is that helper; every
//! default below is Istio's chart default.

use std::collections::BTreeMap;

use super::native::NativeSidecarMode;
use super::InjectError;

/// The injector's configuration (Istio's `values.global.proxy` and mesh config, in the parts
/// Trellis uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectSettings {
    /// The one image holding `trellis` (proxy, init and control plane), for both the init and
    /// the sidecar container; `sidecar.istio.io/proxyImage` overrides it per pod.
    pub image: String,
    /// Where sidecars reach `trellis control` (`trellis proxy --control-plane`).
    pub control_plane: String,
    /// The control plane revision recorded in `istio.io/rev` and the status annotation.
    pub revision: String,
    /// `global.proxy.holdApplicationUntilProxyStarts`: Istio's default is off; here it is on,
    /// so the application starts only once its sidecar is ready.
    pub hold_application_until_proxy_starts: bool,
    /// `sidecarInjectorWebhook.rewriteAppHTTPProbe` (Istio's default: on).
    pub rewrite_app_probes: bool,
    /// `global.proxy.clusterDomain`.
    pub cluster_domain: String,
    /// `meshConfig.trustDomain`.
    pub trust_domain: String,
    /// `imagePullPolicy` of the injected containers (none: the cluster's default).
    pub image_pull_policy: Option<String>,
    /// `ENABLE_NATIVE_SIDECARS` (Istio's default: `auto`); see [`super::native`] for how it,
    /// the nodes and the pod's annotation decide.
    pub native_sidecars: NativeSidecarMode,
}

impl Default for InjectSettings {
    fn default() -> Self {
        InjectSettings {
            image: DEFAULT_IMAGE.to_string(),
            control_plane: DEFAULT_CONTROL_PLANE.to_string(),
            revision: "default".to_string(),
            hold_application_until_proxy_starts: true,
            rewrite_app_probes: true,
            cluster_domain: "cluster.local".to_string(),
            trust_domain: "cluster.local".to_string(),
            image_pull_policy: None,
            native_sidecars: NativeSidecarMode::Auto,
        }
    }
}

/// The image `deploy/` builds and the manifests name.
pub const DEFAULT_IMAGE: &str = "trellis:latest";
/// The control plane's Service in the manifests under deploy/, and its sidecar port.
pub const DEFAULT_CONTROL_PLANE: &str = "trellis-control.trellis-system.svc:15012";

/// Ports of the sidecar, as Istio numbers them.
pub mod ports {
    /// Outbound capture (`-p`).
    pub const OUTBOUND: u16 = 15001;
    /// Inbound capture (`-z`).
    pub const INBOUND: u16 = 15006;
    /// The proxy's admin port (Envoy's 15000; `/quitquitquit`).
    pub const ADMIN: u16 = 15000;
    /// The agent's status port: application probes are rewritten to it.
    pub const STATUS: u16 = 15020;
    /// The readiness port (`/healthz/ready`).
    pub const HEALTH: u16 = 15021;
    /// Merged Prometheus metrics.
    pub const PROMETHEUS: u16 = 15090;
    /// The proxy's UID and GID, excluded from capture.
    pub const PROXY_UID: u32 = 1337;
}

/// A pod template's annotations, read as Istio's template reads them.
pub struct PodAnnotations<'a>(pub &'a BTreeMap<String, String>);

impl PodAnnotations<'_> {
    /// The annotation, or `default` (the template's `annotation` helper).
    pub fn get_or<'s>(&'s self, name: &str, default: &'s str) -> &'s str {
        self.0.get(name).map_or(default, String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A whole number of seconds (probe timings), or `default`.
    pub fn seconds(&self, name: &str, default: u32) -> Result<u32, InjectError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text.trim().parse().map_err(|_| InjectError::BadAnnotation {
                name: name.to_string(),
                value: text.to_string(),
                why: "not a whole number of seconds".to_string(),
            }),
        }
    }

    /// A boolean annotation as Go's `strconv.ParseBool` reads it; `None` when absent or not a
    /// boolean (Istio ignores an unparsable `rewriteAppHTTPProbers`).
    pub fn boolean(&self, name: &str) -> Option<bool> {
        match self.get(name)?.trim() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
            _ => None,
        }
    }

    /// The status port: `status.sidecar.istio.io/port` or 15020.
    pub fn status_port(&self) -> Result<u16, InjectError> {
        let text = self.get_or(STATUS_PORT, "15020");
        text.trim().parse().map_err(|_| InjectError::BadAnnotation {
            name: STATUS_PORT.to_string(),
            value: text.to_string(),
            why: "not a port number".to_string(),
        })
    }
}

/// `status.sidecar.istio.io/port`.
pub const STATUS_PORT: &str = "status.sidecar.istio.io/port";

/// `excludeInboundPort` in pkg/kube/inject/template.go: the status port added to the excluded
/// inbound ports unless it is there already (or is 0).
pub fn exclude_inbound_port(status_port: &str, excluded: &str) -> String {
    let port = status_port.trim();
    if port.is_empty() || port == "0" {
        return excluded.to_string();
    }
    let mut out = Vec::new();
    for existing in excluded.split(',') {
        if existing == port {
            return excluded.to_string();
        }
        let existing = existing.trim();
        if !existing.is_empty() {
            out.push(existing);
        }
    }
    out.push(port);
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_port_joins_the_excluded_inbound_ports_once() {
        assert_eq!(exclude_inbound_port("15020", ""), "15020");
        assert_eq!(
            exclude_inbound_port("15020", "8080, 9090"),
            "8080,9090,15020"
        );
        assert_eq!(exclude_inbound_port("15020", "15020"), "15020");
        assert_eq!(exclude_inbound_port("0", "8080"), "8080");
    }

    #[test]
    fn annotations_parse_or_name_what_is_wrong() {
        let map: BTreeMap<String, String> = [
            (
                "readiness.status.sidecar.istio.io/periodSeconds".into(),
                "x".into(),
            ),
            (
                "sidecar.istio.io/rewriteAppHTTPProbers".into(),
                "False".into(),
            ),
        ]
        .into();
        let a = PodAnnotations(&map);
        let err = a
            .seconds("readiness.status.sidecar.istio.io/periodSeconds", 15)
            .unwrap_err();
        assert!(err.to_string().contains("periodSeconds"), "{err}");
        assert_eq!(
            a.boolean("sidecar.istio.io/rewriteAppHTTPProbers"),
            Some(false)
        );
        assert_eq!(a.status_port().unwrap(), 15020);
    }
}
