//! # The deterministic mesh simulator
//!
//! A whole mesh — client workloads, sidecars running the real [`trellis_engine::Engine`],
//! server workloads, and the network between them — in one thread, on a virtual clock, with
//! one seeded RNG, advanced by a discrete-event queue. A seed determines the scenario
//! ([`Scenario::from_seed`], swarm testing) and every random choice of the run, so a failure
//! replays exactly from its seed and shrinks to a small scenario.
//!
//! Files, one concept each: [`scenario`] (plain data) and [`generate`] (from a seed),
//! [`shrink`] (quickcheck `Arbitrary` + shrinking), [`model`] (engine config and the reference
//! model), [`queue`] (event queue), [`net`] (network), [`mesh`] (the world and its loop),
//! `server`/`client` (workloads), `wire` (connects, sends, faults), `observe` + `ejection` + [`backpressure`] + [`check`] (invariants), [`report`] (results),
//! [`svg`] (timeline plot), [`swarm`] (many seeds, failure reports, replay commands).

pub mod backpressure;
pub mod check;
mod client;
mod ejection;
pub mod generate;
pub mod mesh;
pub mod model;
pub mod net;
mod observe;
mod pattern;
pub mod queue;
pub mod report;
pub mod scenario;
mod server;
pub mod shrink;
pub mod svg;
pub mod swarm;
mod wire;

pub use check::{Invariant, Violation};
pub use mesh::{Mesh, RunOptions};
pub use report::RunReport;
pub use scenario::Scenario;

/// Run one scenario to the end.
pub fn run(scn: &Scenario, opts: RunOptions) -> RunReport {
    Mesh::new(scn, opts).run()
}
