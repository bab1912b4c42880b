//! The demo's directory: bookinfo as a user would `kubectl apply` it, plus the Istio YAML that
//! routes and secures it. The control plane reads it like any directory (`trellis control
//! --dir`), and the demo starts one sidecar and one workload per Deployment it finds there.
//!
//! The Kubernetes objects follow Istio's samples/bookinfo/platform/kube/bookinfo.yaml (Services
//! on port 9080, service accounts `bookinfo-<name>`, Deployments `<name>-<version>` labelled
//! `app` and `version`), in namespace `default`, labelled `istio-injection=enabled` so every pod
//! counts as injected (its endpoints carry `security.istio.io/tlsMode: istio`: auto mTLS).
//! Nothing runs pods on loopback, so each Deployment says where its one replica's sidecar
//! listens with the `trellis.dev/addresses` annotation (`127.0.0.1:PORT`, every service port on
//! that one port): that is the sidecar's inbound listener, and the demo binds it there.
//!
//! The Istio resources: DestinationRules with subsets (samples/bookinfo/networking/
//! destination-rule-all.yaml), the reviews VirtualService of [`ROUTING_FILE`] (jason → v2, as
//! virtual-service-reviews-test-v2.yaml; everyone else 50/50 v1/v3, as
//! virtual-service-reviews-50-v3.yaml), a ratings VirtualService injecting a fault for
//! `end-user: tester` (Istio's virtual-service-ratings-test-abort.yaml, for another user so
//! jason's path stays whole: the calling sidecar answers 500 without calling ratings), outlier
//! detection on details (its second replica, named by [`FAILING_REPLICA_ANNOTATION`], answers
//! 503 and is ejected after its first: `consecutive5xxErrors: 1`), mesh-wide STRICT mTLS with productpage PERMISSIVE (it
//! is the mesh's edge: the traffic generator and curl are outside the mesh), and an
//! AuthorizationPolicy letting only reviews' service account call ratings.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

/// The file holding the reviews VirtualService: edit it while the demo runs.
pub const ROUTING_FILE: &str = "reviews-routing.yaml";

/// What the seeded routing sends where, as the self-check expects it.
pub const SEEDED_SPLIT: &str = "end-user: jason -> reviews v2; everyone else 50% v1 / 50% v3";

/// The seeded fault, as printed.
pub const SEEDED_FAULT: &str =
    "end-user: tester -> ratings aborted with 500 by the caller's sidecar";

/// The pod-template annotation naming the replica (by index) that answers 503 to everything,
/// so that outlier detection has something to eject.
pub const FAILING_REPLICA_ANNOTATION: &str = "demo.trellis.dev/failing-replica";

/// One Deployment of the application: `<app>-<version>`.
#[derive(Clone, Copy, Debug)]
pub struct SeedWorkload {
    pub app: &'static str,
    pub version: &'static str,
    pub replicas: usize,
    /// The replica that answers 503 ([`FAILING_REPLICA_ANNOTATION`]).
    pub failing: Option<usize>,
}

const fn one(app: &'static str, version: &'static str) -> SeedWorkload {
    SeedWorkload {
        app,
        version,
        replicas: 1,
        failing: None,
    }
}

/// The bookinfo workloads, in start order (callees first). details has a second replica that
/// fails, for the DestinationRule's outlier detection to eject.
pub const WORKLOADS: [SeedWorkload; 6] = [
    one("ratings", "v1"),
    SeedWorkload {
        app: "details",
        version: "v1",
        replicas: 2,
        failing: Some(1),
    },
    one("reviews", "v1"),
    one("reviews", "v2"),
    one("reviews", "v3"),
    one("productpage", "v1"),
];

const SERVICES: [&str; 4] = ["productpage", "details", "reviews", "ratings"];

/// Write the seed into `dir` (created if missing), each replica's sidecar inbound on the port
/// `port` gives it.
pub fn write(dir: &Path, mut port: impl FnMut() -> Result<u16>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut bookinfo = String::from(NAMESPACE);
    for service in SERVICES {
        bookinfo.push_str(&service_yaml(service));
    }
    for w in &WORKLOADS {
        let ports = (0..w.replicas)
            .map(|_| port())
            .collect::<Result<Vec<_>>>()?;
        bookinfo.push_str(&deployment_yaml(w, &ports));
    }
    let files = [
        ("bookinfo.yaml", bookinfo),
        ("destination-rules.yaml", DESTINATION_RULES.to_string()),
        (ROUTING_FILE, REVIEWS_ROUTING.to_string()),
        ("ratings-fault.yaml", RATINGS_FAULT.to_string()),
        ("security.yaml", SECURITY.to_string()),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

const NAMESPACE: &str =
    "# Bookinfo (Istio's samples/bookinfo/platform/kube/bookinfo.yaml) on loopback: each
# Deployment's trellis.dev/addresses is where its sidecar's inbound listener is.
apiVersion: v1
kind: Namespace
metadata:
  name: default
  labels: {istio-injection: enabled}
";

fn service_yaml(name: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  labels: {{app: {name}, service: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: bookinfo-{name}
  labels: {{account: {name}}}
"
    )
}

fn deployment_yaml(w: &SeedWorkload, ports: &[u16]) -> String {
    let (app, version) = (w.app, w.version);
    let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut annotations = format!("trellis.dev/addresses: \"{}\"", addresses.join(", "));
    if let Some(i) = w.failing {
        let _ = write!(annotations, ", {FAILING_REPLICA_ANNOTATION}: \"{i}\"");
    }
    format!(
        "---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}-{version}
  labels: {{app: {app}, version: {version}}}
spec:
  replicas: {}
  selector:
    matchLabels: {{app: {app}, version: {version}}}
  template:
    metadata:
      labels: {{app: {app}, version: {version}}}
      annotations: {{{annotations}}}
    spec:
      serviceAccountName: bookinfo-{app}
      containers:
        - name: {app}
          image: docker.io/istio/examples-bookinfo-{app}-{version}:1.20.2
          ports: [{{containerPort: 9080}}]
",
        w.replicas
    )
}

const DESTINATION_RULES: &str =
    "# Subsets by version (Istio's samples/bookinfo/networking/destination-rule-all.yaml).
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage}
spec:
  host: productpage
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
    - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details}
spec:
  host: details
  # details-v1-1 answers 503: ejected after its first one, for 30 s, then longer each time.
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 30s
      maxEjectionPercent: 50
  subsets: [{name: v1, labels: {version: v1}}]
";

const REVIEWS_ROUTING: &str =
    "# Edit me while the demo runs: the control plane pushes the change within a second.
# Try: weight 100 to subset v2, or remove the jason rule.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
    - match:
        - headers:
            end-user: {exact: jason}
      route:
        - destination: {host: reviews, subset: v2}
    - route:
        - destination: {host: reviews, subset: v1}
          weight: 50
        - destination: {host: reviews, subset: v3}
          weight: 50
";

const RATINGS_FAULT: &str = "# Fault injection (Istio's samples/bookinfo/networking/virtual-service-ratings-test-abort.yaml,
# for end-user tester): the caller's sidecar answers 500 itself, ratings never sees the request.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
    - match:
        - headers:
            end-user: {exact: tester}
      fault:
        abort:
          percentage: {value: 100.0}
          httpStatus: 500
      route:
        - destination: {host: ratings, subset: v1}
    - route:
        - destination: {host: ratings, subset: v1}
";

const SECURITY: &str =
    "# Mutual TLS everywhere (the root namespace's policy), except at the edge: productpage
# also takes plaintext, from the traffic generator and curl outside the mesh.
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: productpage}
spec:
  selector:
    matchLabels: {app: productpage}
  mtls: {mode: PERMISSIVE}
---
# Only reviews may call ratings (by its mTLS identity); anyone else gets 403.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings}
spec:
  selector:
    matchLabels: {app: ratings}
  action: ALLOW
  rules:
    - from:
        - source:
            principals: [cluster.local/ns/default/sa/bookinfo-reviews]
";

/// Whether `instance` is the replica its Deployment's [`FAILING_REPLICA_ANNOTATION`] names.
pub fn failing_replica(
    snapshot: &trellis_control::plane::Snapshot,
    instance: &trellis_control::plane::WorkloadInstance,
) -> bool {
    let Some(deployment) = snapshot
        .kube
        .deployments
        .iter()
        .find(|d| d.source == instance.source)
    else {
        return false;
    };
    let annotations = &deployment.object.spec.template.metadata.annotations;
    annotations
        .get(FAILING_REPLICA_ANNOTATION)
        .and_then(|i| i.trim().parse::<usize>().ok())
        .is_some_and(|i| instance.name == format!("{}-{i}", instance.source.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_a_snapshot_with_every_workload_addressed_and_injected() {
        let dir = std::env::temp_dir().join(format!("trellis-demo-seed-{}", std::process::id()));
        let mut next = 20000;
        write(&dir, || {
            next += 1;
            Ok(next)
        })
        .expect("seed written");
        let snapshot =
            trellis_control::plane::Snapshot::read_dir(&dir).expect("the control plane reads it");
        assert!(
            snapshot.diagnostics.is_empty(),
            "{:?}",
            snapshot.diagnostics
        );
        let mut port = 20000;
        for w in &WORKLOADS {
            for replica in 0..w.replicas {
                port += 1;
                let name = format!("{}-{}-{replica}", w.app, w.version);
                let instance = snapshot
                    .workload("default", &name)
                    .unwrap_or_else(|| panic!("{name} missing"));
                assert!(instance.injected, "{name}");
                let sa = format!("bookinfo-{}", w.app);
                assert_eq!(instance.workload.service_account, sa);
                let address = instance.address.expect("addressed");
                assert_eq!(address.port, Some(port), "{name}");
                let failing = failing_replica(&snapshot, instance);
                assert_eq!(failing, w.failing == Some(replica), "{name}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
