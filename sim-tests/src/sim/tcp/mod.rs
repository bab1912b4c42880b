//! # L4 traffic in the simulator: a world of its own
//!
//! The routing mesh's clients speak only HTTP. In the seeds whose swarm has it
//! ([`TcpSpec::from_seed`], a fifth of them) this world runs after the others: one sidecar, a
//! real engine, whose outbound capture listener serves connections iptables would have
//! redirected to it. Their original destinations are TCP services' ports (VirtualService `tcp`
//! rules: a port and weighted destinations, Envoy's `tcp_proxy`; some services also with rules
//! matching `destinationSubnets` or `sourceLabels`, [`chains`]), a TLS port whose `tls` rules
//! are chosen by the ClientHello's server name (exact, then the longest wildcard, as Envoy
//! matches `server_names`; read, never terminated), the port of an HTTP service
//! (sniffed, but the bytes are no HTTP) or a port nobody declares (the catch-all:
//! `PassthroughCluster` under ALLOW_ANY, `BlackHoleCluster` under REGISTRY_ONLY). Behind the
//! clusters and at the original destinations, echo servers answer every chunk after their
//! latency and close after the client's EOF; some refuse connects or reset after some bytes.
//! Clients send chunks after gaps (some longer than the route's idle timeout) and mostly
//! half-close.
//!
//! The checks ([`checks`]) hold the run to pilot's outbound listener and Envoy's `tcp_proxy`:
//! where each connection goes, bytes and EOFs relayed both ways in order, endings, the idle
//! timeout, weights and one access-log record per connection. Its violations, outcomes
//! (`tcp:*`) and trace hash join the seed's report. Planted bugs in the engine's L4 path are
//! caught by a seed (`tests/mutants_config.rs`).

pub mod chains;
mod checks;
mod config;
pub mod spec;
mod world;

use trellis_engine::Engine;

pub use spec::TcpSpec;

/// Run the L4 world of `spec` (seeded by `seed`); `hook` is called on its engine (as
/// `30_000`), to plant bugs.
pub fn run(
    spec: &TcpSpec,
    seed: u64,
    hook: Option<fn(usize, &mut Engine)>,
) -> super::report::WorldOutcome {
    match world::World::new(spec, seed, hook) {
        Ok(mut world) => {
            let trace = world.run();
            world.check();
            super::report::WorldOutcome {
                violations: std::mem::take(&mut world.violations.list),
                trace,
                outcomes: std::mem::take(&mut world.outcomes),
            }
        }
        Err(msg) => super::report::WorldOutcome::unbuilt("L4", &msg),
    }
}
