//! Picks: no request goes to a host that was ejected before it started and still is, unless
//! its priority level is in panic ([`super::priority`]), when the balancer picks among all of
//! the level's hosts. The hosts' ejection model is `ejection`'s.

use super::check::Invariant;
use super::ejection::HostNow;
use super::mesh::Mesh;
use super::priority::up_mask;

impl Mesh<'_> {
    /// A request head for request `req` goes out to host `h` of cluster `c` in this call: if
    /// the host was ejected before the request started and still is after the call, the
    /// request's last pick (after its start) chose an ejected host.
    pub(crate) fn check_pick(
        &mut self,
        sc: usize,
        c: usize,
        h: usize,
        req: usize,
        state: &[HostNow],
    ) {
        let Some(w) = self.sidecars[sc].hosts[c].get(h).copied() else {
            return;
        };
        let Some(r) = self.requests.get(req) else {
            return;
        };
        let before = up_mask(self.sidecars[sc].hosts[c].iter().map(|w| w.ejected));
        let after = up_mask(state.iter().map(|s| s.ejected));
        let bit = 1u64 << h.min(63);
        // A request picked in panic mode and queued for a connection reaches its host later,
        // maybe after panic ended: panic at any time since the request started allows it.
        let (panic_on, last_on) = self.sidecars[sc].panic[c];
        let panicked_since_start = panic_on || last_on.is_some_and(|t| t >= r.start);
        if w.ejected
            && w.ejected_at < r.start
            && state.get(h).is_some_and(|s| s.ejected)
            && self.pickable(c, before) & bit == 0
            && self.pickable(c, after) & bit == 0
            && !panicked_since_start
        {
            let msg = format!(
                "sidecar {sc}: request {req} (started {}) went to host {h} of {}, \
                 ejected since {} and still ejected",
                r.start, self.cluster_names[c], w.ejected_at
            );
            self.violations
                .report(Invariant::EjectedHostUsed, self.now, msg);
        }
    }
}
