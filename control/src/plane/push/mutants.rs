//! Planted bugs in the push state machine, for the simulator's self-test (cargo feature
//! `mutants`, off by default): the convergence invariant of sim-tests' control-plane world must
//! catch each within a named seed (sim-tests/tests/plane_convergence.rs). Without the feature,
//! the knob and the branches that read it are compiled out.

/// Which planted bugs are on in one server. All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mutations {
    /// A reconnecting sidecar is resumed by the *version* it announces rather than the digest:
    /// one announcing a version at least the server's latest is taken to hold the current
    /// document. Versions restart with the control plane, so after a restart a sidecar that
    /// held a high version of the old one gets nothing until the new one counts past it.
    pub resume_by_version: bool,
}
