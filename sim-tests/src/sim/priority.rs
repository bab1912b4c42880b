//! Priority levels as the reference reads them: each level's health, the load it takes, and
//! panic mode per level, written from Envoy's `LoadBalancerBase`
//! (source/extensions/load_balancing_policies/common/load_balancer_impl.cc:
//! `recalculatePerPriorityState`, `recalculatePerPriorityPanic`, `isHostSetInPanic`,
//! `recalculateLoadInTotalPanic`, `ZoneAwareLoadBalancerBase::hostSourceToUse`), without the
//! engine's code:
//! - a level's health is `min(100, 140 × healthy / hosts)` (integer division; pilot sets no
//!   overprovisioning factor, so Envoy's default 140 holds); the normalized total is
//!   `min(100, Σ health)`;
//! - with threshold 0 (`minHealthPercent` unset, Istio's default) and total 0, no level is in
//!   panic and priority 0 takes all load (there is no host to give: "no healthy upstream");
//! - otherwise a level is in panic when the total is below 100 **and** its healthy share is
//!   below the threshold. A total of 100 means no panic anywhere, however few of a level's
//!   hosts are healthy: a cluster without localities (one level) with ~72 % of its hosts
//!   healthy never panics, even at `minHealthPercent: 100`;
//! - when every level is in panic, load follows host counts (`100 × hosts / all`, the rest to
//!   the first level with hosts); otherwise it follows health;
//! - a level in panic picks among all of its hosts, ejected or not, and without locality
//!   weighting (`hostSourceToUse` returns `AllHosts` before it looks at localities).
//!
//! A cluster without `localityLbSetting` is one level of all its hosts. Host sets are bit
//! masks (bit per host, hosts 0..64), as the rest of the driver's eligibility.

use super::mesh::Mesh;

/// Envoy's default overprovisioning factor, in percent.
const FACTOR: u64 = 140;

/// Each level's health from `(hosts, healthy hosts)`.
pub(crate) fn level_health(levels: &[(u64, u64)]) -> Vec<u64> {
    levels
        .iter()
        .map(|&(hosts, healthy)| (FACTOR * healthy).checked_div(hosts).unwrap_or(0).min(100))
        .collect()
}

/// Per level of `(hosts, healthy hosts)`: whether it is in panic under `threshold` percent.
pub(crate) fn panic_levels(levels: &[(u64, u64)], threshold: u64) -> Vec<bool> {
    let threshold = threshold.min(100);
    let total = level_health(levels).iter().sum::<u64>().min(100);
    if total == 0 && threshold == 0 {
        return vec![false; levels.len()];
    }
    levels
        .iter()
        .map(|&(hosts, healthy)| total < 100 && healthy * 100 < threshold * hosts)
        .collect()
}

/// Per level of `(hosts, healthy hosts)`: the percentage of attempts it takes under
/// `threshold` (sums to 100).
pub(crate) fn level_loads(levels: &[(u64, u64)], threshold: u64) -> Vec<u64> {
    let mut load = vec![0; levels.len().max(1)];
    let panic = panic_levels(levels, threshold);
    if !levels.is_empty() && panic.iter().all(|&p| p) {
        let all: u64 = levels.iter().map(|l| l.0).sum();
        if all == 0 {
            load[0] = 100;
            return load;
        }
        let mut left = 100;
        for (i, &(hosts, _)) in levels.iter().enumerate() {
            load[i] = 100 * hosts / all;
            left -= load[i];
        }
        if let Some(first) = levels.iter().position(|l| l.0 > 0) {
            load[first] += left;
        }
        return load;
    }
    let health = level_health(levels);
    let total = health.iter().sum::<u64>().min(100);
    if total == 0 {
        load[0] = 100;
        return load;
    }
    let mut left = 100u64;
    for (i, h) in health.iter().enumerate() {
        load[i] = (h * 100 / total).min(left);
        left -= load[i];
    }
    if let Some(first) = health.iter().position(|&h| h > 0) {
        load[first] += left;
    }
    load
}

/// The hosts not ejected (bit per host, hosts 0..64) from each host's ejected flag, in order.
pub(crate) fn up_mask(ejected: impl Iterator<Item = bool>) -> u64 {
    (ejected.take(64).enumerate()).fold(0, |m, (h, e)| if e { m } else { m | 1 << h })
}

/// The bits of `mask` set.
fn count(mask: u64) -> u64 {
    u64::from(mask.count_ones())
}

/// `(hosts, healthy hosts)` per level of `masks` when `up` are not ejected.
fn counts_in(masks: &[u64], up: u64) -> Vec<(u64, u64)> {
    masks.iter().map(|&m| (count(m), count(m & up))).collect()
}

impl Mesh<'_> {
    /// Cluster `c`'s priority levels as host masks, in priority order: its locality layout's,
    /// or one level of every host.
    pub(crate) fn level_masks(&self, c: usize) -> Vec<u64> {
        let info = &self.cluster_info[c];
        let ver = &self.scn.services[info.service].versions[info.version];
        let hosts = ver.endpoints.len().min(64);
        let all = if hosts == 64 {
            u64::MAX
        } else {
            (1u64 << hosts) - 1
        };
        match &ver.locality {
            Some(spec) => spec.level_masks(&ver.endpoints),
            None => vec![all],
        }
    }

    /// Cluster `c`'s panic threshold (`minHealthPercent`, 0 without one).
    pub(crate) fn panic_threshold(&self, c: usize) -> u64 {
        let info = &self.cluster_info[c];
        let ver = &self.scn.services[info.service].versions[info.version];
        ver.outlier
            .as_ref()
            .map_or(0, |o| u64::from(o.min_health_percent.min(100)))
    }

    /// `(hosts, healthy hosts)` per level of cluster `c` when `up` are not ejected.
    pub(crate) fn level_counts(&self, c: usize, up: u64) -> Vec<(u64, u64)> {
        counts_in(&self.level_masks(c), up)
    }

    /// The hosts cluster `c`'s balancer may pick when `up` are not ejected: those, and every
    /// host of a level in panic.
    pub(crate) fn pickable(&self, c: usize, up: u64) -> u64 {
        let masks = self.level_masks(c);
        let panic = panic_levels(&counts_in(&masks, up), self.panic_threshold(c));
        masks
            .iter()
            .zip(panic)
            .fold(up, |set, (&m, p)| if p { set | m } else { set })
    }

    /// Whether any level of cluster `c` is in panic when `up` are not ejected.
    pub(crate) fn any_panic(&self, c: usize, up: u64) -> bool {
        let counts = self.level_counts(c, up);
        panic_levels(&counts, self.panic_threshold(c))
            .iter()
            .any(|&p| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `distributeLoad`: 3 of 4 healthy is health 105 → 100, all load stays; 2 of 4 is 70,
    /// and the next level takes the rest; nothing healthy without a threshold: level 0 keeps
    /// 100.
    #[test]
    fn level_loads_follow_envoy() {
        assert_eq!(level_loads(&[(4, 3), (2, 2)], 0), vec![100, 0]);
        assert_eq!(level_loads(&[(4, 2), (2, 2)], 0), vec![70, 30]);
        assert_eq!(level_loads(&[(4, 0), (2, 0)], 0), vec![100, 0]);
        assert_eq!(level_loads(&[(4, 0), (2, 1)], 0), vec![0, 100]);
        // 1 of 3 healthy: 46; 1 of 3 again: 46; total 92 → 50 and 50 (rounding: 50 + 50).
        assert_eq!(level_loads(&[(3, 1), (3, 1)], 0), vec![50, 50]);
    }

    /// `recalculatePerPriorityPanic`: no panic at a total of 100; a level below the threshold
    /// panics otherwise; all of them: load by host counts (`recalculateLoadInTotalPanic`).
    #[test]
    fn panic_is_per_level_and_total_panic_loads_by_hosts() {
        // One level, threshold 100: 3 of 4 is full health, no panic; 2 of 4 panics.
        assert_eq!(panic_levels(&[(4, 3)], 100), vec![false]);
        assert_eq!(panic_levels(&[(4, 2)], 100), vec![true]);
        // Threshold 30: level 0 at 1 of 4 (25 %) panics, level 1 at 3 of 8 (37 %) does not;
        // loads still follow health (35 + 52 = 87: 40 and 59, the rest to level 0).
        assert_eq!(panic_levels(&[(4, 1), (8, 3)], 30), vec![true, false]);
        assert_eq!(level_loads(&[(4, 1), (8, 3)], 30), vec![41, 59]);
        // A total of 100 (35 + 70): nobody panics, however low level 0's share.
        assert_eq!(panic_levels(&[(4, 1), (4, 2)], 50), vec![false, false]);
        // Both below 50 %: total panic, load by hosts (3 and 1 of 4 hosts: 75, 25).
        assert_eq!(level_loads(&[(3, 1), (1, 0)], 50), vec![75, 25]);
        // Nothing healthy with a threshold: total panic by hosts, not level 0's 100.
        assert_eq!(level_loads(&[(2, 0), (2, 0)], 1), vec![50, 50]);
        // A total of 100 from level 1 alone: nobody panics though level 0 is empty of health.
        assert_eq!(panic_levels(&[(2, 0), (2, 2)], 100), vec![false, false]);
        // 100 × 1 / 3 = 33 each, the rest (1) to the first level.
        assert_eq!(
            level_loads(&[(1, 0), (1, 0), (1, 0)], 100),
            vec![34, 33, 33]
        );
    }
}
