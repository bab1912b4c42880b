//! Config bytes per proxy against mesh size, with and without Sidecar scoping.
//!
//! A mesh of N services, ten per namespace; each service has a Deployment of two replicas, a
//! VirtualService (80/20 split over two subsets) and a DestinationRule. "Scoped" adds one
//! Sidecar per namespace importing `./*` and `istio-system/*`, the configuration Istio's
//! scalability guidance recommends. For one sidecar it prints the pushed document's bytes,
//! the time to scope it and the time the sidecar takes to translate and compile it.
//!
//! `cargo run --release -p trellis-control --example plane_scope [N ...]`
//! (default 100 1000 10000); figures in bench/RESULTS.md.

use std::fmt::Write as _;
use std::time::Instant;

use trellis_control::plane::{scope, Snapshot};

fn mesh(services: usize, sidecars: bool) -> String {
    let mut out = String::new();
    for i in 0..services {
        let ns = format!("ns{}", i / 10);
        let name = format!("svc{i}");
        let a = i % 250;
        let b = (i / 250) % 250;
        let _ = write!(
            out,
            "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec: {{selector: {{app: {name}}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  template:
    metadata:
      labels: {{app: {name}, version: v1}}
      annotations: {{trellis.dev/addresses: \"10.{b}.{a}.1, 10.{b}.{a}.2\"}}
    spec: {{containers: [{{name: app, image: app}}]}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{name}]
  http:
  - route:
    - {{destination: {{host: {name}, subset: v1}}, weight: 80}}
    - {{destination: {{host: {name}, subset: v2}}, weight: 20}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {name}
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
"
        );
        if sidecars && i % 10 == 0 {
            let _ = write!(
                out,
                "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: {ns}}}
spec:
  egress: [{{hosts: [\"./*\", \"istio-system/*\"]}}]
---
"
            );
        }
    }
    out
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1000, 10_000]
    } else {
        sizes
    };
    println!("| services | Sidecar scoping | snapshot build | scope one sidecar | document bytes | sidecar translate+compile | clusters |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for &n in &sizes {
        for sidecars in [false, true] {
            let text = mesh(n, sidecars);
            let t = Instant::now();
            let snap = match Snapshot::from_files(&[("mesh.yaml".into(), text)]) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("mesh of {n}: {e}");
                    return;
                }
            };
            let build = t.elapsed();
            let Some(w) = snap.workload("ns0", "svc0-0") else {
                eprintln!("no workload svc0-0");
                return;
            };
            let t = Instant::now();
            let scoped = scope(&snap, &w.workload);
            let scope_time = t.elapsed();
            let bytes = scoped.document.encoded_len();
            let t = Instant::now();
            let translated = match scoped.document.translate() {
                Ok(tr) => tr,
                Err(e) => {
                    eprintln!("translate: {e}");
                    return;
                }
            };
            let translate_time = t.elapsed();
            println!(
                "| {n} | {} | {:.1} ms | {:.2} ms | {bytes} | {:.1} ms | {} |",
                if sidecars { "`./*`" } else { "none" },
                build.as_secs_f64() * 1e3,
                scope_time.as_secs_f64() * 1e3,
                translate_time.as_secs_f64() * 1e3,
                translated.config.clusters.len(),
            );
        }
    }
}
