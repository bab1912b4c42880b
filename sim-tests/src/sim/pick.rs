//! Picks: no request goes to a host that was ejected before it started and still is, unless
//! the cluster is in panic (Envoy's `isHostSetInPanic`), when the balancer picks among all
//! hosts. The hosts' ejection model is `ejection`'s.

use super::check::Invariant;
use super::ejection::HostNow;
use super::mesh::Mesh;

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
        let before = self.sidecars[sc].hosts[c]
            .iter()
            .filter(|w| w.ejected)
            .count();
        let after = state.iter().filter(|s| s.ejected).count();
        // A request picked in panic mode and queued for a connection reaches its host later,
        // maybe after panic ended: panic at any time since the request started allows it.
        let (panic_on, last_on) = self.sidecars[sc].panic[c];
        let panicked_since_start = panic_on || last_on.is_some_and(|t| t >= r.start);
        if w.ejected
            && w.ejected_at < r.start
            && state.get(h).is_some_and(|s| s.ejected)
            && !self.in_panic(c, before)
            && !self.in_panic(c, after)
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

impl Mesh<'_> {
    /// Whether cluster `c`'s balancer is in panic mode with `ejected` of its hosts ejected:
    /// Envoy's `isHostSetInPanic`, the share of hosts not ejected below `minHealthPercent`
    /// (Istio maps it to the panic threshold). In panic it picks among all hosts.
    pub(crate) fn in_panic(&self, c: usize, ejected: usize) -> bool {
        let info = &self.cluster_info[c];
        let ver = &self.scn.services[info.service].versions[info.version];
        let min = ver
            .outlier
            .as_ref()
            .map_or(0, |o| o.min_health_percent.min(100));
        let hosts = ver.endpoints.len() as u64;
        hosts.saturating_sub(ejected as u64) * 100 < u64::from(min) * hosts
    }
}
