//! The inspection view: read-only probes into an engine's runtime state (cluster balancer,
//! ejection and breaker state) for tests and the simulator's checkers. Drivers never need
//! them, so they stay off [`Engine`]'s own surface; [`Engine::inspect`] hands out the view.

use crate::cluster::ClusterState;

use super::Engine;

/// A read-only view of an engine, from [`Engine::inspect`].
#[derive(Clone, Copy)]
pub struct Inspect<'a> {
    pub(super) engine: &'a Engine,
}

impl<'a> Inspect<'a> {
    /// Runtime state of a cluster by name (balancer, ejections, breaker counters).
    pub fn cluster_state(self, name: &str) -> Option<&'a ClusterState> {
        let clusters = &self.engine.clusters;
        let slot = clusters.lookup(name)?;
        clusters.slot(slot).map(|s| &s.state)
    }

    /// The slot index of the configured cluster `name`, for [`Inspect::cluster_state_at`]: a
    /// cheap handle for a checker that inspects the same clusters after every call (the
    /// simulator does), instead of hashing the name each time.
    ///
    /// A configured cluster's slot only changes in a successful config swap, so an index stays
    /// valid until [`super::EngineStats::config_applied`] changes; look it up again after that.
    pub fn cluster_index(self, name: &str) -> Option<usize> {
        self.engine.clusters.lookup(name)
    }

    /// Runtime state of the configured cluster in slot `index` (from
    /// [`Inspect::cluster_index`]); `None` for an empty slot, a cluster a swap retired, or a
    /// passthrough cluster. For a valid index this is exactly `cluster_state(name)`.
    #[inline]
    pub fn cluster_state_at(self, index: usize) -> Option<&'a ClusterState> {
        (self.engine.clusters.slot(index))
            .filter(|s| !s.retired && !s.passthrough)
            .map(|s| &s.state)
    }

    /// Hosts currently ejected by outlier detection, summed over every cluster slot
    /// (configured, retired and passthrough). A checker that inspects ejections after every
    /// call can skip its per-cluster look entirely while this is zero.
    pub fn ejected_host_count(self) -> usize {
        (self.engine.clusters.slots.iter().flatten())
            .map(|s| s.state.ejected_count())
            .sum()
    }
}
