//! # The deterministic mesh simulator
//!
//! A whole mesh — client workloads, sidecars running the real [`trellis_engine::Engine`],
//! server workloads, and the network between them — in one thread, on a virtual clock, with
//! one seeded RNG, advanced by a discrete-event queue. A seed determines the scenario
//! ([`Scenario::from_seed`], swarm testing) and every random choice of the run, so a failure
//! replays exactly from its seed and shrinks to a small scenario.
//!
//! Meshes have two or three tiers in about a third of the seeds: a workload of a calling
//! service makes its own calls, through its own sidecar (a real engine too), while it serves a
//! request, so a client request crosses two or three sidecars and every hop is held to the
//! same invariants.
//!
//! Faults include config churn: [`scenario::ConfigPush`]es replace a service's routing rules
//! mid-run, reaching each sidecar at its own time. The engine's snapshot contract (requests in
//! flight finish on the snapshot they started with, no connection is dropped by a config
//! change) is checked per request: each one is held to the rules of the generation its sidecar
//! ran when it started, and the engine call that takes a snapshot must leave requests in flight
//! alone ([`Invariant::ConfigSwap`]).
//!
//! Files, one concept each: [`scenario`] and [`vocab`] (plain data), [`coverage`] and
//! `coverage_rows` (which features the generated scenarios contain), [`generate`],
//! `gen_policy` and [`gen_routes`] (from a seed), [`reference`] (Istio's and Envoy's routing semantics, written
//! independently of the engine), [`stats`] (distribution tests),
//! [`shrink`] (quickcheck `Arbitrary` + shrinking), [`model`] (engine config and the reference
//! model), [`queue`] (event queue), [`net`] (network), [`mesh`] (the world's loop) and `events` (what it fires) and `state`
//! (its parts), `server` / `client` + `request_shape` + `head_limits` + `path_dirt` + [`cors`] + `access_log` / `response_read` / `pattern` (workloads, how clients read
//! responses, body patterns), `calls` (workloads calling services), `churn` (config pushes),
//! `wire` (connects, sends, faults), `observe` + `ejection` + `backoff_model` + `attempts` + `retry_checks` + `retry_budget` + [`locality`] + `priority` + [`backpressure`] + [`check`]
//! (invariants), [`report`] (results), [`svg`] (timeline plot), [`swarm`] (many seeds, failure
//! reports, replay commands), [`mtls`] (mTLS hops and authorization: a world of its own), [`mirror`] (traffic mirroring:
//! another), [`tcp`] (L4 relaying behind the outbound capture listener: a third), [`gateway`]
//! (an ingress gateway configured by the control plane from Istio YAML: a fourth).

mod access_log;
mod attempts;
mod backoff_model;
pub mod backpressure;
mod balance;
mod benchmark;
mod calls;
pub mod check;
mod churn;
mod client;
mod client_conn;
mod clients_net;
pub mod cors;
pub mod coverage;
mod coverage_rows;
mod ejection;
mod events;
pub mod gateway;
mod gen_matchers;
mod gen_policy;
pub mod gen_routes;
pub mod generate;
mod head_limits;
pub mod locality;
pub mod mesh;
pub mod mirror;
pub mod model;
pub mod mtls;
pub mod net;
mod observe;
mod path_dirt;
mod pattern;
mod pick;
pub mod plane;
mod priority;
pub mod queue;
pub mod reference;
pub mod report;
mod request_shape;
mod response_read;
mod retry_budget;
mod retry_checks;
pub mod scenario;
mod server;
pub mod shrink;
mod side_world;
mod state;
pub mod stats;
pub mod svg;
pub mod swarm;
pub mod tcp;
pub mod vocab;
mod vocab_checks;
mod wire;

pub use check::{Invariant, Violation};
pub use mesh::{Mesh, RunOptions};
pub use report::RunReport;
pub use scenario::Scenario;

/// Run one scenario to the end.
pub fn run(scn: &Scenario, opts: RunOptions) -> RunReport {
    let mut report = Mesh::new(scn, opts).run();
    if let Some(spec) = &scn.mirror {
        report.join(mirror::run(spec, scn.seed, opts.engine_hook), 23);
    }
    if let Some(security) = &scn.security {
        report.join(mtls::run(security, scn.seed, opts.engine_hook), 17);
    }
    if let Some(spec) = &scn.tcp {
        report.join(tcp::run(spec, scn.seed, opts.engine_hook), 31);
    }
    if let Some(spec) = &scn.gateway {
        report.join(gateway::run(spec, scn.seed, opts.engine_hook), 37);
    }
    if let Some(spec) = &scn.plane {
        report.join(plane::run_in_swarm(spec, scn.seed, opts.plane_hook), 29);
    }
    report
}
