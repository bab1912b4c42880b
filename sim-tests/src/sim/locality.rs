//! DestinationRule `localityLbSetting` in the swarm: endpoints in localities, the priorities
//! and locality weights pilot lays out for a sidecar, and what the balancer owes them.
//!
//! **Layout** (the scenario → engine config mapping, pilot's, read at istio/istio 86c9f01,
//! pilot/pkg/networking/core/loadbalancer/loadbalancer.go): every simulated sidecar runs in
//! locality `r0/z0/s0`. Failover (`applyLocalityFailover`): an endpoint's priority is 0 when
//! region, zone and subzone match the proxy's, 1 when region and zone do, 2 when the region
//! does, 3 otherwise, and 4 instead of 3 when a `failover` entry from the proxy's region names
//! another region than the endpoint's; priorities are then renumbered from 0 without gaps.
//! An explicit `failover` list turns locality weighting on (`ApplyToCluster`), each
//! locality weighing the sum of its endpoints' weights. `distribute` (`applyLocalityWeights`)
//! keeps every locality at priority 0 and weights them as it says.
//!
//! **Reference semantics** (Envoy's `LoadBalancerBase`, source/extensions/
//! load_balancing_policies/common/load_balancer_impl.cc, as documented in Envoy's
//! "Priority levels" and "Locality weighted load balancing" pages), written here without the
//! engine's code: levels' health, loads and panic are [`super::priority`]'s (each level in
//! order takes `min(left, health × 100 / total)` of 100, what rounding leaves goes to the
//! first level with health; a level in panic pools all its hosts; all levels in panic: load by
//! host counts). Within a weighted level not in panic a locality's effective weight is
//! `weight × min(1, 1.4 × eligible / hosts)`; when no locality has any, the level's eligible
//! hosts are pooled.
//!
//! Checked on fresh picks (first attempts of untroubled requests, stable eligible set, no pool
//! limit), pooled over sidecars (they share the layout):
//! - a pick never lands in a level whose load is 0, nor (weighted, not hashing, the level not
//!   in panic) in a locality of effective weight 0 while another locality of the level has
//!   some;
//! - the share of picks in each level is Binomial(n, load/100) at the 1e-7 bound of
//!   [`super::balance`] (levels are drawn at random, except by the hashing policies, whose
//!   draw is the request's hash and is left out), and each locality's share of its weighted
//!   level is held to its effective weight the same way (Envoy's scheduler is deterministic
//!   and stays closer to the weights than random draws would).
//!
//! Versions with a panic threshold (`minHealthPercent`) draw localities too: the driver's
//! eligible sets ([`Mesh::pickable`]) add the hosts of each level in panic, and the balancer
//! key of a locality version holds the hosts not ejected, from which these checks derive the
//! levels in panic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use trellis_engine::locality::{LocalityGroup, LocalityLb, DEFAULT_OVERPROVISIONING_FACTOR};

use super::attempts::Pick;
use super::balance::binomial_ok;
use super::check::Invariant;
use super::mesh::Mesh;
use super::priority::{level_loads, panic_levels};
use super::scenario::{EndpointSpec, Scenario, Version};

/// A version's `localityLbSetting` and where its endpoints run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalitySpec {
    /// Localities as `[region, zone, subzone]` indices; endpoint `i` runs in
    /// `localities[i % len]` (so shrinking endpoints keeps the spec valid). The sidecars run in
    /// `[0, 0, 0]`.
    pub localities: Vec<[u8; 3]>,
    pub mode: LocalityMode,
}

/// Which half of `localityLbSetting` the version sets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LocalityMode {
    /// Failover by proximity. `to`: one `failover` entry from the sidecars' region `r0` to
    /// region `r{to}` (which turns locality weighting on); `None`: no `failover` list.
    Failover { to: Option<u8> },
    /// `distribute` from the sidecars' locality: a weight (`to`'s percentage) per entry of
    /// `localities`, in the same order.
    Distribute { weights: Vec<u32> },
}

/// One locality group of the layout, as the check reads it.
#[derive(Clone, Debug, PartialEq)]
struct Group {
    priority: u32,
    weight: u32,
    hosts: Vec<usize>,
}

impl LocalitySpec {
    fn locality_of(&self, endpoint: usize) -> usize {
        endpoint % self.localities.len().max(1)
    }

    /// Pilot's `LbPriority` of a locality seen from the sidecars' `r0/z0/s0`, with the
    /// failover entry's demotion to 4.
    fn raw_priority(&self, loc: [u8; 3]) -> u32 {
        let p = match loc {
            [0, 0, 0] => 0,
            [0, 0, _] => 1,
            [0, _, _] => 2,
            _ => 3,
        };
        match self.mode {
            LocalityMode::Failover { to: Some(to) } if p == 3 && loc[0] != to => 4,
            _ => p,
        }
    }

    fn weighted(&self) -> bool {
        !matches!(self.mode, LocalityMode::Failover { to: None })
    }

    /// The groups of a version with `endpoints`: one per distinct locality that has any,
    /// priorities renumbered without gaps, in locality order.
    fn groups(&self, endpoints: &[EndpointSpec]) -> Vec<Group> {
        let mut by_locality: BTreeMap<[u8; 3], (u32, Vec<usize>)> = BTreeMap::new();
        for (i, e) in endpoints.iter().enumerate() {
            let index = self.locality_of(i);
            let loc = self.localities.get(index).copied().unwrap_or([0, 0, 0]);
            let weight = match &self.mode {
                LocalityMode::Distribute { weights } => weights.get(index).copied().unwrap_or(1),
                LocalityMode::Failover { .. } => 0,
            };
            let entry = by_locality.entry(loc).or_insert((0, Vec::new()));
            entry.0 = match self.mode {
                LocalityMode::Distribute { .. } => weight,
                // Pilot's locality weight: the sum of its endpoints' weights.
                LocalityMode::Failover { .. } => entry.0 + e.weight(),
            };
            entry.1.push(i);
        }
        let mut raw: Vec<u32> = by_locality.keys().map(|l| self.raw_priority(*l)).collect();
        raw.sort_unstable();
        raw.dedup();
        by_locality
            .into_iter()
            .map(|(loc, (weight, hosts))| Group {
                priority: match self.mode {
                    LocalityMode::Distribute { .. } => 0,
                    LocalityMode::Failover { .. } => {
                        raw.binary_search(&self.raw_priority(loc)).unwrap_or(0) as u32
                    }
                },
                weight,
                hosts,
            })
            .collect()
    }

    /// The hosts of each priority level (bit per host, hosts 0..64), in priority order.
    pub(super) fn level_masks(&self, endpoints: &[EndpointSpec]) -> Vec<u64> {
        let groups = self.groups(endpoints);
        let levels = groups.iter().map(|g| g.priority).max().map_or(0, |m| m + 1) as usize;
        let mut masks = vec![0u64; levels.max(1)];
        for g in &groups {
            for &h in g.hosts.iter().filter(|&&h| h < 64) {
                masks[g.priority as usize] |= 1 << h;
            }
        }
        masks
    }

    /// The coverage table's row for this setting.
    pub(super) fn coverage_row(&self) -> &'static str {
        match self.mode {
            LocalityMode::Failover { to: None } => {
                "localityLbSetting failover (priorities by proximity)"
            }
            LocalityMode::Failover { to: Some(_) } => {
                "localityLbSetting failover entry (weighted localities)"
            }
            LocalityMode::Distribute { .. } => "localityLbSetting distribute",
        }
    }

    /// The engine's layout of a version with `endpoints`.
    pub fn layout(&self, endpoints: &[EndpointSpec]) -> LocalityLb {
        let groups = self
            .groups(endpoints)
            .into_iter()
            .enumerate()
            .map(|(i, g)| LocalityGroup {
                locality: format!("l{i}"),
                priority: g.priority,
                weight: g.weight,
                hosts: g.hosts,
            })
            .collect();
        LocalityLb {
            groups,
            weighted: self.weighted(),
            overprovisioning_factor: DEFAULT_OVERPROVISIONING_FACTOR,
        }
    }
}

/// Draws `localityLbSetting` on some versions of `scn` (with two endpoints or more), from a
/// stream of its own so that seeds drawing none keep their scenario.
pub(super) fn generate(seed: u64, scn: &mut Scenario) {
    let mut r = fastrand::Rng::with_seed(seed ^ 0x10ca_1177_0000_0015);
    for ver in scn.services.iter_mut().flat_map(|s| &mut s.versions) {
        // Versions with a panic threshold draw localities more often: panic per priority
        // level needs both, and ejections enough to degrade every level.
        let panic = (ver.outlier.as_ref()).is_some_and(|o| o.min_health_percent > 0);
        if r.u8(0..100) >= if panic { 60 } else { 20 } {
            continue;
        }
        if ver.endpoints.len() < 2 {
            continue;
        }
        let n = r.usize(2..=4);
        let localities: Vec<[u8; 3]> = (0..n)
            .map(|_| [r.u8(0..3), r.u8(0..2), r.u8(0..2)])
            .collect();
        let mode = match r.u8(0..3) {
            0 => LocalityMode::Failover { to: None },
            1 => LocalityMode::Failover {
                to: Some(r.u8(1..3)),
            },
            _ => LocalityMode::Distribute {
                weights: (0..n).map(|_| [0, 1, 10, 50, 80][r.usize(0..5)]).collect(),
            },
        };
        // Panic per level shows once most of a level is ejected: let half of these versions
        // eject every host.
        if let Some(o) = ver.outlier.as_mut().filter(|_| panic && r.bool()) {
            o.max_ejection_percent = 100;
        }
        ver.locality = Some(LocalitySpec { localities, mode });
    }
}

/// `(hosts, eligible hosts)` of each of `levels` priorities under the eligible `mask`.
fn hosts_per_level(groups: &[Group], levels: usize, mask: u64) -> Vec<(u64, u64)> {
    (0..levels)
        .map(|l| {
            let in_level = groups.iter().filter(|g| g.priority as usize == l);
            in_level.fold((0, 0), |(n, e), g| {
                let eligible = g.hosts.iter().filter(|&&h| mask & (1 << h) != 0);
                (n + g.hosts.len() as u64, e + eligible.count() as u64)
            })
        })
        .collect()
}

/// Effective locality weights (thousandths of a unit) of `groups` under the eligible `mask`.
fn effective_weights(groups: &[&Group], mask: u64) -> Vec<u64> {
    let factor = u64::from(DEFAULT_OVERPROVISIONING_FACTOR);
    groups
        .iter()
        .map(|g| {
            let total = g.hosts.len() as u64;
            let eligible = g.hosts.iter().filter(|&&h| mask & (1 << h) != 0).count() as u64;
            let availability = (factor * eligible * 10).checked_div(total).unwrap_or(0);
            u64::from(g.weight) * availability.min(1000)
        })
        .collect()
}

/// Per (cluster, eligible set): picks per level, and per (level, group) in weighted levels.
#[derive(Default)]
struct Tally {
    levels: BTreeMap<usize, u64>,
    groups: BTreeMap<(usize, usize), u64>,
}

impl Mesh<'_> {
    pub(crate) fn version_of(&self, c: usize) -> &Version {
        let info = &self.cluster_info[c];
        &self.scn.services[info.service].versions[info.version]
    }

    /// The hosts (bit per host) sharing a level with `host` (a weighted, not hashing
    /// version's: its locality group): where a retry's balancer looks for an untried host.
    pub(crate) fn locality_peers(&self, c: usize, host: usize) -> u64 {
        let ver = self.version_of(c);
        let Some(spec) = &ver.locality else {
            return u64::MAX;
        };
        let groups = spec.groups(&ver.endpoints);
        let Some(mine) = groups.iter().find(|g| g.hosts.contains(&host)) else {
            return u64::MAX;
        };
        let by_group = spec.weighted() && !matches!(ver.lb, 4 | 5);
        groups
            .iter()
            .filter(|g| {
                if by_group {
                    *g == mine
                } else {
                    g.priority == mine.priority
                }
            })
            .flat_map(|g| &g.hosts)
            .filter(|&&h| h < 64)
            .fold(0, |m, &h| m | 1 << h)
    }

    /// After the run: the locality checks of the module docs, over every sidecar's picks.
    pub(crate) fn check_locality(&mut self, all: &BTreeMap<(usize, usize), Vec<Pick>>) {
        let mut tallies: BTreeMap<(usize, u64), Tally> = BTreeMap::new();
        for (&(_, c), picks) in all {
            let ver = self.version_of(c);
            let Some(spec) = &ver.locality else {
                continue;
            };
            if ver.pool.is_some() || ver.endpoints.len() > 64 {
                continue;
            }
            let hashing = matches!(ver.lb, 4 | 5);
            let groups = spec.groups(&ver.endpoints);
            let levels = groups.iter().map(|g| g.priority).max().map_or(0, |m| m + 1) as usize;
            let weighted = spec.weighted() && !hashing;
            let threshold = self.panic_threshold(c);
            for p in picks {
                if !(p.stable && matches!(p.req, Some((r, 0)) if !self.troubled_request(r))) {
                    continue;
                }
                let mask = p.key.1;
                let per_level = hosts_per_level(&groups, levels, mask);
                let load = level_loads(&per_level, threshold);
                let Some(gi) = groups.iter().position(|g| g.hosts.contains(&p.host)) else {
                    continue;
                };
                let level = groups[gi].priority as usize;
                if load[level] == 0 {
                    let msg = format!(
                        "{}: host {} (priority {level}) picked while that priority takes no load (loads {load:?}, hosts/eligible per priority {per_level:?}, eligible {mask:#b})",
                        self.cluster_names[c], p.host
                    );
                    self.violation(Invariant::Balancing, msg);
                    return;
                }
                let tally = tallies.entry((c, mask)).or_default();
                *tally.levels.entry(level).or_default() += 1;
                // A level in panic pools all of its hosts: no locality is chosen there.
                if !weighted || panic_levels(&per_level, threshold)[level] {
                    continue;
                }
                let in_level: Vec<&Group> = groups
                    .iter()
                    .filter(|g| g.priority as usize == level)
                    .collect();
                let effective = effective_weights(&in_level, mask);
                let mine = in_level.iter().position(|g| g.hosts.contains(&p.host));
                let Some(mine) = mine else { continue };
                if effective[mine] == 0 && effective.iter().any(|&w| w > 0) {
                    let msg = format!(
                        "{}: host {} picked in a locality of effective weight 0 (effective weights of priority {level}: {effective:?}, eligible {mask:#b})",
                        self.cluster_names[c], p.host
                    );
                    self.violation(Invariant::Balancing, msg);
                    return;
                }
                *tally.groups.entry((level, mine)).or_default() += 1;
            }
        }
        for ((c, mask), tally) in tallies {
            if let Some(msg) = self.locality_shares(c, mask, &tally) {
                self.violation(Invariant::Balancing, msg);
                return;
            }
        }
    }

    /// The binomial checks of level and locality shares for one (cluster, eligible set).
    fn locality_shares(&self, c: usize, mask: u64, tally: &Tally) -> Option<String> {
        let ver = self.version_of(c);
        let spec = ver.locality.as_ref()?;
        if matches!(ver.lb, 4 | 5) {
            return None;
        }
        let groups = spec.groups(&ver.endpoints);
        let levels = groups.iter().map(|g| g.priority).max().map_or(0, |m| m + 1) as usize;
        let per_level = hosts_per_level(&groups, levels, mask);
        let threshold = self.panic_threshold(c);
        let load = level_loads(&per_level, threshold);
        let panic = panic_levels(&per_level, threshold);
        let n: u64 = tally.levels.values().sum();
        if n >= 20 {
            for (level, &l) in load.iter().enumerate() {
                let hits = tally.levels.get(&level).copied().unwrap_or(0);
                if !binomial_ok(hits, n, l as f64 / 100.0) {
                    return Some(format!(
                        "{}: priority {level} got {hits} of {n} fresh picks, its load is {l} % (loads {load:?}, hosts/eligible per priority {per_level:?}, eligible {mask:#b}); P < 1e-7",
                        self.cluster_names[c]
                    ));
                }
            }
        }
        for level in (0..levels).filter(|&l| !panic[l]) {
            let in_level: Vec<&Group> = groups
                .iter()
                .filter(|g| g.priority as usize == level)
                .collect();
            let effective = effective_weights(&in_level, mask);
            let total: u64 = effective.iter().sum();
            let n: u64 = (0..in_level.len())
                .map(|g| tally.groups.get(&(level, g)).copied().unwrap_or(0))
                .sum();
            if total == 0 || n < 20 {
                continue;
            }
            for (g, &w) in effective.iter().enumerate() {
                let hits = tally.groups.get(&(level, g)).copied().unwrap_or(0);
                if !binomial_ok(hits, n, w as f64 / total as f64) {
                    return Some(format!(
                        "{}: locality {g} of priority {level} got {hits} of {n} fresh picks there, effective weights {effective:?} (eligible {mask:#b}); P < 1e-7",
                        self.cluster_names[c]
                    ));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: usize) -> Vec<EndpointSpec> {
        (0..n).map(|_| EndpointSpec::healthy()).collect()
    }

    /// Pilot's `applyLocalityFailover` table: same subzone 0, same zone 1, same region 2,
    /// elsewhere 3, and 4 for regions a failover entry does not name; renumbered without
    /// gaps.
    #[test]
    fn failover_priorities_follow_pilot() {
        let spec = LocalitySpec {
            localities: vec![[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [2, 0, 0]],
            mode: LocalityMode::Failover { to: Some(2) },
        };
        let prio: Vec<u32> = spec.groups(&eps(5)).iter().map(|g| g.priority).collect();
        // Locality order: [0,0,0] [0,0,1] [0,1,0] [1,0,0] [2,0,0]: raw 0 1 2 4 3.
        assert_eq!(prio, vec![0, 1, 2, 4, 3]);
        let plain = LocalitySpec {
            mode: LocalityMode::Failover { to: None },
            localities: vec![[1, 1, 1], [0, 1, 0]],
        };
        // raw 3 and 2 → 1 and 0.
        let prio: Vec<u32> = plain.groups(&eps(4)).iter().map(|g| g.priority).collect();
        assert_eq!(prio, vec![0, 1]);
        assert!(!plain.layout(&eps(4)).weighted);
        assert!(spec.layout(&eps(5)).weighted);
    }
}
