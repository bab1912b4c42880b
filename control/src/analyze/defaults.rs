//! The resources `istioctl analyze` adds when it reads files only (istio/istio
//! `pkg/config/analysis/local/defaults.go`, `AddDefaultResources`): a dummy
//! `istio-ingressgateway` pod and its Service in `istio-system`.
//!
//! Istio adds them because a directory of YAML rarely holds the ingress gateway's Deployment
//! (Istio installs it), yet most Gateways select it with `istio: ingressgateway`; without them
//! every such Gateway would be "selecting no workload". They are offered to the gateway
//! analyzers only, not pushed into [`Inputs`]: a Service there would make every destination
//! host judgeable (see [`Inputs::has_registry`]) and a Pod would turn off the pod-template
//! fallback of [`Inputs::pods`].

use std::collections::BTreeMap;

use super::input::{Inputs, KubeService, KubeServicePort, Workload};
use crate::istio::Source;

/// Istio's root namespace, where the default ingress gateway runs.
pub const ISTIO_NAMESPACE: &str = "istio-system";
/// MeshConfig's default `ingressService`.
const INGRESS_SERVICE: &str = "istio-ingressgateway";

fn ingress_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())])
}

/// `{{.ingressService}}-dummypod`.
pub fn ingress_pod() -> Workload {
    Workload {
        kind: "Pod".to_string(),
        name: format!("{INGRESS_SERVICE}-dummypod"),
        namespace: ISTIO_NAMESPACE.to_string(),
        labels: ingress_labels(),
        ..Workload::default()
    }
}

/// The `istio-ingressgateway` Service with its four TCP ports.
pub fn ingress_service() -> KubeService {
    let port = |name: &str, port: u32| KubeServicePort {
        name: name.to_string(),
        port,
        protocol: "TCP".to_string(),
        target_port: port.to_string(),
        app_protocol: None,
    };
    KubeService {
        source: Source {
            file: "internal-ingress".to_string(),
            kind: "Service".to_string(),
            namespace: ISTIO_NAMESPACE.to_string(),
            name: INGRESS_SERVICE.to_string(),
        },
        name: INGRESS_SERVICE.to_string(),
        namespace: ISTIO_NAMESPACE.to_string(),
        ports: vec![
            port("http2", 80),
            port("https", 443),
            port("tcp", 31400),
            port("tls", 15443),
        ],
        selector: ingress_labels(),
        annotations: BTreeMap::new(),
        service_type: "ClusterIP".to_string(),
        labels: BTreeMap::new(),
    }
}

/// The pods a Gateway's selector is judged against: the input's, then the default one.
pub fn gateway_pods(inputs: &Inputs) -> Vec<Workload> {
    let mut pods: Vec<Workload> = inputs.pods().into_iter().cloned().collect();
    pods.push(ingress_pod());
    pods
}

/// The Services that may expose a gateway pod: the input's, then the default one.
pub fn gateway_services(inputs: &Inputs) -> Vec<KubeService> {
    let mut services = inputs.services.clone();
    services.push(ingress_service());
    services
}
