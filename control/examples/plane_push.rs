//! Push cost against the number of sidecars: one change to every sidecar acked, in memory.
//!
//! A mesh of 1,000 services in 100 namespaces (ten each, a namespace `Sidecar` importing
//! `./*`), and S sidecars spread over the namespaces. Every sidecar connects and receives its
//! full document; then one VirtualService changes and, after the 100 ms debounce (simulated
//! time), every sidecar gets a delta and acks it. Printed: bytes of a full push and of a delta
//! push, and the CPU time from the release to the last ACK (scoping, diff, encode, decode,
//! apply the delta, digest, ACK; the sidecar's translation is not included, see
//! plane_scope). Latency in a simulated network is this plus the 100 ms debounce plus
//! one round trip.
//!
//! `cargo run --release -p trellis-control --example plane_push [S ...]`
//! (default 1 100 1000 10000); figures in bench/RESULTS.md.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant as Wall};

use trellis_control::plane::push::wire::{encode, FrameDecoder};
use trellis_control::plane::push::{
    Client, ClientMessage, Input, PushConfig, Server, ServerMessage,
};
use trellis_control::plane::{ScopeIndex, Snapshot};
use trellis_control::translate::Workload;
use trellis_engine::Instant;

const SERVICES: usize = 1000;

fn mesh(v1_weight: u32) -> String {
    let mut out = String::new();
    for i in 0..SERVICES {
        let ns = format!("ns{}", i / 10);
        let w = if i == 0 { v1_weight } else { 80 };
        let _ = write!(
            out,
            "apiVersion: v1
kind: Service
metadata: {{name: svc{i}, namespace: {ns}}}
spec: {{selector: {{app: svc{i}}}, ports: [{{name: http, port: 80}}]}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc{i}, namespace: {ns}}}
spec:
  hosts: [svc{i}]
  http:
  - route:
    - {{destination: {{host: svc{i}, subset: v1}}, weight: {w}}}
    - {{destination: {{host: svc{i}, subset: v2}}, weight: {}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc{i}, namespace: {ns}}}
spec:
  host: svc{i}
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
",
            100 - w
        );
        if i % 10 == 0 {
            let _ = write!(
                out,
                "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: {ns}}}
spec: {{egress: [{{hosts: [\"./*\"]}}]}}
---
"
            );
        }
    }
    out
}

struct Harness {
    server: Server,
    clients: Vec<Client>,
    decoder: FrameDecoder,
    now: Instant,
    bytes: Vec<usize>,
}

impl Harness {
    /// Deliver everything until quiet; the number of acks.
    fn run(&mut self) -> usize {
        let mut acks = 0;
        while let Some((conn, message)) = self.server.poll_transmit() {
            let Ok(frame) = encode(&message) else {
                continue;
            };
            self.bytes.push(frame.len());
            self.decoder.push(&frame);
            let Ok(Some(message)) = self.decoder.next_message::<ServerMessage>() else {
                continue;
            };
            let Some(client) = self.clients.get_mut(conn as usize) else {
                continue;
            };
            let answer = client.handle(message, |_, _| Ok(()));
            if matches!(answer, ClientMessage::Ack { .. }) {
                acks += 1;
            }
            self.server.handle(self.now, Input::Message(conn, answer));
        }
        acks
    }

    fn settle(&mut self) {
        self.now += Duration::from_millis(100);
        self.server.handle_timeout(self.now);
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1, 100, 1000, 10_000]
    } else {
        sizes
    };
    let (Ok(before), Ok(after)) = (
        Snapshot::from_files(&[("mesh.yaml".into(), mesh(80))]),
        Snapshot::from_files(&[("mesh.yaml".into(), mesh(50))]),
    ) else {
        eprintln!("mesh does not load");
        return;
    };
    let (before, after) = (Arc::new(before), Arc::new(after));
    let t = Wall::now();
    let index = ScopeIndex::new(&after);
    let indexed = t.elapsed();
    let t = Wall::now();
    let mut bytes = 0;
    for ns in 0..SERVICES / 10 {
        let w = Workload {
            namespace: format!("ns{ns}"),
            ..Workload::default()
        };
        bytes += index.scope(&after, &w).document.encoded_len();
    }
    println!(
        "scope index: {:.2} ms; the {} namespaces' documents: {:.2} ms, {bytes} bytes in all",
        indexed.as_secs_f64() * 1e3,
        SERVICES / 10,
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("| sidecars | full push (bytes) | delta push (bytes) | release → last ACK (CPU) | scopes computed |");
    println!("|---:|---:|---:|---:|---:|");
    for &n in &sizes {
        let mut h = Harness {
            server: Server::new(PushConfig::default()),
            clients: (0..n)
                .map(|i| {
                    Client::new(
                        format!("pod-{i}"),
                        Workload {
                            namespace: format!("ns{}", i % (SERVICES / 10)),
                            ..Workload::default()
                        },
                    )
                })
                .collect(),
            decoder: FrameDecoder::default(),
            now: Instant::ZERO,
            bytes: Vec::new(),
        };
        h.server.handle(h.now, Input::Snapshot(before.clone()));
        h.settle();
        for (i, c) in h.clients.iter().enumerate() {
            h.server.handle(h.now, Input::Message(i as u64, c.hello()));
        }
        h.run();
        let full = h.bytes.first().copied().unwrap_or(0);
        h.bytes.clear();
        h.server.handle(h.now, Input::Snapshot(after.clone()));
        let start = Wall::now();
        h.settle();
        let acks = h.run();
        let took = start.elapsed();
        // Only the sidecars of ns0 see svc0; the others' documents did not change.
        println!(
            "| {n} | {full} | {} | {:.2} ms ({acks} acks) | {} |",
            h.bytes.first().copied().unwrap_or(0),
            took.as_secs_f64() * 1e3,
            n.min(SERVICES / 10),
        );
    }
}
