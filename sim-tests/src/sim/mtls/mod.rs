//! # Mesh security in the simulator: mTLS hops and authorization
//!
//! In the seeds whose swarm has it ([`SecuritySpec::from_seed`], a quarter of them), a second
//! world runs after the routing mesh: server workloads behind inbound sidecars, called by
//! mesh workloads through their own outbound sidecars (auto mTLS, ISTIO_MUTUAL, or DISABLE)
//! and by clients outside the mesh, plaintext or with TLS of their own ([`foreign_tls`]). Both ends of every sidecar hop are real engines
//! running real TLS 1.3 handshakes in memory (the engine's TLS transport with its seeded
//! crypto provider), with identities from a simulated CA ([`ca`]) whose certificates may
//! expire and be renewed during the run, over a network with latency, loss, resets and
//! partitions. Swarm streams turn PeerAuthentication modes, AuthorizationPolicies (written
//! as Istio YAML and translated by the control plane) and certificate expiry on and off, and
//! push changes mid-run.
//!
//! In some of those seeds the CA rotates its root while requests flow ([`rotation`]): both
//! roots trusted through an overlap, workloads re-issued at staggered times, the old root
//! dropped after it.
//!
//! The checks ([`checks`]) hold the run to what the simulator knows on its own: no plaintext
//! behind STRICT, the verified peer is who the CA issued the caller's certificate to, no
//! handshake accepts an expired certificate, every authorization decision equals the
//! reference evaluation of the policies ([`policy`]), and a rotation or renewal breaks no
//! trust it should keep nor drops an established connection.
//!
//! Its violations, outcomes (`mtls:*`) and trace hash join the seed's report, so a seed
//! still gives the same trace hash twice with mTLS on, and planted bugs in verification and
//! in the policies' evaluation order are caught by a seed (`tests/mutants_security.rs`).

pub mod ca;
mod checks;
mod config;
mod foreign_tls;
pub mod jwt;
mod net;
pub mod policy;
pub mod rotation;
pub mod spec;
mod world;

use trellis_engine::Engine;

pub use spec::SecuritySpec;

/// What the security world of a seed came to.
pub type SecOutcome = super::report::WorldOutcome;

/// Run the security world of `spec` (seeded by `seed`); `hook` is called on each engine (as
/// `10_000 + index`), to plant bugs.
pub fn run(spec: &SecuritySpec, seed: u64, hook: Option<fn(usize, &mut Engine)>) -> SecOutcome {
    match world::World::new(spec, seed, hook) {
        Ok(world) => world.run(),
        Err(msg) => SecOutcome::unbuilt("security", &msg),
    }
}
