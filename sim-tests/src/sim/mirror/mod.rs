//! # Traffic mirroring in the simulator: a world of its own
//!
//! In the seeds whose swarm has it ([`MirrorSpec::from_seed`], a fifth of them), a third world
//! runs after the routing mesh (and the security world): one sidecar, a real engine, whose one
//! route forwards to a primary cluster and mirrors to one or two others (VirtualService
//! `mirrors` with `percentage`, as pilot translates them into Envoy's
//! `request_mirror_policies`), called by clients each on a connection of its own. The
//! upstreams behind both answer after their latency, or fail (503, resets, hangs); a mirror
//! cluster may be slow (seconds) or down. Swarm draws: percentages 0, 100, none (100) and
//! fractions; one or two mirrors; primary retries; a route timeout; an authority rewrite.
//!
//! The checks ([`checks`]) hold the run to Envoy's shadowing from what the clients and the
//! upstreams saw: the client gets only the primary's answer, at the instant the primary gave
//! it; each copy is the first attempt's request, sent once; the mirrored fraction follows the
//! percentage. Its violations, outcomes (`mirror:*`) and trace hash join the seed's report.
//! Planted bugs in the engine's mirroring are caught by a seed (`tests/mutants_mirror.rs`).

mod checks;
pub mod spec;
mod world;

use trellis_engine::Engine;

pub use spec::MirrorSpec;

/// What the mirroring world of a seed came to.
pub type MirrorOutcome = super::report::WorldOutcome;

/// Run the mirroring world of `spec` (seeded by `seed`); `hook` is called on its engine (as
/// `20_000`), to plant bugs.
pub fn run(spec: &MirrorSpec, seed: u64, hook: Option<fn(usize, &mut Engine)>) -> MirrorOutcome {
    match world::World::new(spec, seed, hook) {
        Ok(mut world) => {
            let trace = world.run();
            world.check();
            MirrorOutcome {
                violations: std::mem::take(&mut world.violations.list),
                trace,
                outcomes: std::mem::take(&mut world.outcomes),
            }
        }
        Err(msg) => MirrorOutcome::unbuilt("mirroring", &msg),
    }
}
