//! `localityLbSetting` → the engine's priority levels and localities, for one proxy.
//!
//! pilot/pkg/networking/core/loadbalancer/loadbalancer.go, function by function:
//! - [`effective_setting`]: `GetEffectiveLbSetting` — the DestinationRule's setting, else the
//!   mesh default (`enabled: true`, nothing else); `enabled: false` turns it off.
//! - [`layout`]: `LocalityLBSettings.ApplyToCluster` and `ApplyLocalityLoadBalancer` —
//!   `distribute` sets locality weights (`applyLocalityWeights`); otherwise, only when outlier
//!   detection is on (without it Envoy would never fail over), `failoverPriority` splits
//!   localities by label match (`applyFailoverPriorities`) and region/zone/subzone proximity
//!   sets priorities (`applyLocalityFailover`, with `failover`'s region pairs).
//!   `locality_weighted_lb_config` is set for `distribute` and for explicit failover.
//! - Localities are `region/zone/subzone` strings; Kubernetes labels carry them with `.`
//!   (`topology.istio.io/locality`, legacy `istio-locality`; `SanitizeLocalityLabel`).
//!
//! Where Go iterates a map (`distribute.to`), this walks it in key order, so overlapping
//! wildcard targets resolve the same way every time (in Istio the order is random).

use std::collections::BTreeMap;

use trellis_engine::locality::{LocalityGroup, LocalityLb, DEFAULT_OVERPROVISIONING_FACTOR};

use crate::diag::Diagnostic;
use crate::istio::destination_rule::{LocalityFailover, LocalityLbSetting};

/// `topology.kubernetes.io/region` and the other labels `AugmentLabels` adds.
pub const LABEL_REGION: &str = "topology.kubernetes.io/region";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
pub const LABEL_SUBZONE: &str = "topology.istio.io/subzone";
pub const LABEL_CLUSTER: &str = "topology.istio.io/cluster";
/// Istio's default cluster id (`CLUSTER_ID`), which every proxy and endpoint carries.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";

/// A parsed `region/zone/subzone` (missing parts empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

impl Locality {
    /// `SplitLocalityLabel`.
    pub fn parse(text: &str) -> Locality {
        let mut parts = text.split('/');
        let mut next = || parts.next().unwrap_or_default().to_string();
        Locality {
            region: next(),
            zone: next(),
            subzone: next(),
        }
    }

    /// `LocalityToString`.
    pub fn render(&self) -> String {
        match (self.zone.is_empty(), self.subzone.is_empty()) {
            (true, _) => self.region.clone(),
            (false, true) => format!("{}/{}", self.region, self.zone),
            (false, false) => format!("{}/{}/{}", self.region, self.zone, self.subzone),
        }
    }

    /// `util.LocalityMatch`: does this (proxy) locality match a rule's `from`/`to` pattern?
    fn matches(&self, rule: &str) -> bool {
        let r = Locality::parse(rule);
        let part = |rule: &str, mine: &str, optional: bool| {
            rule == "*" || (optional && rule.is_empty()) || rule == mine
        };
        part(&r.region, &self.region, false)
            && part(&r.zone, &self.zone, true)
            && part(&r.subzone, &self.subzone, true)
    }

    /// `util.LbPriority`: 0 same subzone, 1 same zone, 2 same region, 3 elsewhere.
    fn proximity(&self, other: &Locality) -> u32 {
        if self.region != other.region {
            3
        } else if self.zone != other.zone {
            2
        } else if self.subzone != other.subzone {
            1
        } else {
            0
        }
    }
}

/// `GetLocalityLabel` + `SanitizeLocalityLabel`: the locality a workload's labels give.
pub fn locality_from_labels(labels: &BTreeMap<String, String>) -> Option<String> {
    let raw = labels
        .get("topology.istio.io/locality")
        .or_else(|| labels.get("istio-locality"))?;
    if raw.is_empty() {
        return None;
    }
    Some(if raw.contains('/') {
        raw.clone()
    } else {
        raw.replace('.', "/")
    })
}

/// `AugmentLabels`: labels plus the topology labels of `locality` and the cluster id.
pub fn augmented_labels(
    labels: &BTreeMap<String, String>,
    locality: &Locality,
) -> BTreeMap<String, String> {
    let mut out = labels.clone();
    for (key, value) in [
        (LABEL_REGION, &locality.region),
        (LABEL_ZONE, &locality.zone),
        (LABEL_SUBZONE, &locality.subzone),
    ] {
        if !value.is_empty() {
            out.insert(key.to_string(), value.clone());
        }
    }
    out.entry(LABEL_CLUSTER.to_string())
        .or_insert_with(|| DEFAULT_CLUSTER_ID.to_string());
    out
}

/// `GetEffectiveLbSetting` without zone-aware settings and traffic distribution (which
/// Trellis does not read): `None` when locality load balancing is off.
pub fn effective_setting(rule: Option<&LocalityLbSetting>) -> Option<LocalityLbSetting> {
    match rule {
        Some(s) if s.enabled == Some(false) => None,
        Some(s) => Some(s.clone()),
        // meshConfig.localityLbSetting's default: `enabled: true`.
        None => Some(LocalityLbSetting {
            enabled: Some(true),
            ..LocalityLbSetting::default()
        }),
    }
}

/// `ValidateLocalityLbSetting` (pkg/config/validation/agent/validation.go): errors make the
/// setting unusable (Istio's webhook would refuse the rule; here the mesh default applies and
/// the error is reported); the missing-outlier-detection warning does not. Returns whether the
/// setting can be used.
pub fn validate(
    setting: &LocalityLbSetting,
    outlier_detection: bool,
    at: &str,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let mut error = |text: String| {
        diags.push(Diagnostic::error(text).field(at.to_string()));
        false
    };
    if !setting.distribute.is_empty() && !setting.failover.is_empty() {
        return error("can not simultaneously specify 'distribute' and 'failover'".into());
    }
    if !setting.failover.is_empty() {
        if let Some(label) = setting
            .failover_priority
            .iter()
            .find(|l| [LABEL_REGION, LABEL_ZONE, LABEL_SUBZONE].contains(&l.as_str()))
        {
            return error(format!(
                "can not simultaneously set 'failover' and topology label '{label}' in 'failover_priority'"
            ));
        }
    }
    let mut ok = true;
    for d in &setting.distribute {
        if d.to.values().any(|&w| w == 0 || w > 100) {
            return error("locality weight must be in range [1, 100]".into());
        }
        let total: u64 = d.to.values().map(|&w| u64::from(w)).sum();
        if total != 100 {
            return error(format!("total locality weight {total} != 100"));
        }
        for to in d.to.keys() {
            ok &= valid_locality(to, &mut error);
        }
        ok &= valid_locality(&d.from, &mut error);
    }
    if (!setting.failover.is_empty() || !setting.failover_priority.is_empty()) && !outlier_detection
    {
        diags.push(
            Diagnostic::warning("outlier detection policy must be provided for failover")
                .field(at.to_string()),
        );
    }
    for f in &setting.failover {
        let mut error = |text: &str| {
            diags.push(Diagnostic::error(text.to_string()).field(at.to_string()));
            ok = false;
        };
        if f.from == f.to {
            error("locality lb failover settings must specify different regions");
        }
        if f.from.contains('/') || f.to.contains('/') {
            error("locality lb failover only specify region");
        }
        if f.from.contains('*') || f.to.contains('*') {
            error("locality lb failover region should not contain '*' wildcard");
        }
    }
    ok
}

/// `validateLocalities`: not empty, and `*` only as the whole last part.
fn valid_locality(locality: &str, error: &mut impl FnMut(String) -> bool) -> bool {
    if locality.is_empty() {
        return error("empty locality".into());
    }
    if locality == "*" {
        return true;
    }
    let parts: Vec<&str> = locality.split('/').collect();
    let misplaced = parts
        .iter()
        .enumerate()
        .any(|(i, p)| p.contains('*') && (i + 1 != parts.len() || *p != "*"));
    if misplaced {
        return error(format!(
            "locality {locality:?}: the wildcard '*' must be a whole, last part"
        ));
    }
    true
}

/// One endpoint as the layout sees it.
#[derive(Clone, Debug)]
pub struct EndpointSite<'a> {
    /// `region/zone/subzone`; `None` when unknown.
    pub locality: Option<&'a str>,
    pub labels: &'a BTreeMap<String, String>,
    pub weight: u32,
}

/// The proxy the layout is computed for.
#[derive(Clone, Debug)]
pub struct ProxySite<'a> {
    pub locality: Locality,
    pub labels: &'a BTreeMap<String, String>,
}

/// The layout of one cluster for one proxy.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Per input endpoint: whether it stays in the cluster (`distribute` drops the endpoints
    /// of localities it gives no weight).
    pub keep: Vec<bool>,
    /// Groups over the kept endpoints, indexed in the kept order.
    pub lb: LocalityLb,
}

/// `LocalityLbEndpoints` while the layout is computed.
#[derive(Clone, Debug)]
struct Group {
    locality: Locality,
    priority: u32,
    weight: u32,
    members: Vec<usize>,
}

/// The layout `setting` gives `endpoints` for `proxy`, with outlier detection on or off;
/// `None` when it changes nothing (one priority, no weighting, nothing dropped), so the engine
/// balances exactly as without it.
pub fn layout(
    setting: Option<&LocalityLbSetting>,
    outlier_detection: bool,
    proxy: &ProxySite<'_>,
    endpoints: &[EndpointSite<'_>],
) -> Option<Layout> {
    let setting = setting?;
    let mut groups = group_by_locality(endpoints);
    let mut keep = vec![true; endpoints.len()];
    if !setting.distribute.is_empty() {
        apply_weights(&proxy.locality, &mut groups, setting, &mut keep);
    } else if outlier_detection {
        if !setting.failover_priority.is_empty() {
            groups =
                apply_failover_priorities(proxy, endpoints, groups, &setting.failover_priority);
            if !setting.failover.is_empty() {
                apply_failover(&proxy.locality, &mut groups, &setting.failover);
            }
        } else {
            apply_failover(&proxy.locality, &mut groups, &setting.failover);
        }
    }
    let weighted = !setting.distribute.is_empty()
        || (outlier_detection
            && (!setting.failover.is_empty() || !setting.failover_priority.is_empty()));
    let layered = groups.iter().any(|g| g.priority != 0);
    if !weighted && !layered && keep.iter().all(|k| *k) {
        return None;
    }
    // Renumber hosts over the kept endpoints.
    let mut new_index = vec![usize::MAX; endpoints.len()];
    let mut next = 0;
    for (i, k) in keep.iter().enumerate() {
        if *k {
            new_index[i] = next;
            next += 1;
        }
    }
    let lb = LocalityLb {
        groups: groups
            .into_iter()
            .filter(|g| g.members.iter().any(|&m| keep[m]))
            .map(|g| LocalityGroup {
                locality: g.locality.render(),
                priority: g.priority,
                weight: g.weight,
                hosts: g
                    .members
                    .iter()
                    .filter(|&&m| keep[m])
                    .map(|&m| new_index[m])
                    .collect(),
            })
            .collect(),
        weighted,
        overprovisioning_factor: DEFAULT_OVERPROVISIONING_FACTOR,
    };
    debug_assert!(
        lb.validate(next).is_ok(),
        "every kept endpoint in one group"
    );
    Some(Layout { keep, lb })
}

/// One group per distinct locality, in order of first appearance; its weight is the sum of
/// its endpoints' weights (pilot's endpoint builder).
fn group_by_locality(endpoints: &[EndpointSite<'_>]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        let locality = Locality::parse(e.locality.unwrap_or_default());
        match groups.iter_mut().find(|g| g.locality == locality) {
            Some(g) => {
                g.members.push(i);
                g.weight += e.weight.max(1);
            }
            None => groups.push(Group {
                locality,
                priority: 0,
                weight: e.weight.max(1),
                members: vec![i],
            }),
        }
    }
    groups
}

/// `applyLocalityWeights`: the first `distribute` entry whose `from` matches the proxy gives
/// each matching locality its share (split by the localities' own weights, rounded up);
/// localities it does not name lose their endpoints.
fn apply_weights(
    proxy: &Locality,
    groups: &mut [Group],
    setting: &LocalityLbSetting,
    keep: &mut [bool],
) {
    let Some(rule) = setting.distribute.iter().find(|d| proxy.matches(&d.from)) else {
        return;
    };
    let mut unmatched = vec![true; groups.len()];
    for (to, &weight) in &rule.to {
        let claimed: Vec<usize> = (0..groups.len())
            .filter(|&i| unmatched[i] && groups[i].locality.matches(to))
            .collect();
        let total: u64 = claimed.iter().map(|&i| u64::from(groups[i].weight)).sum();
        for &i in &claimed {
            unmatched[i] = false;
            let share = u64::from(groups[i].weight) * u64::from(weight);
            if share > 0 && total > 0 {
                groups[i].weight = u32::try_from(share.div_ceil(total)).unwrap_or(u32::MAX);
            }
        }
    }
    for (i, g) in groups.iter().enumerate() {
        if unmatched[i] {
            for &m in &g.members {
                keep[m] = false;
            }
        }
    }
}

/// `applyLocalityFailover`: priority by proximity to the proxy (0..3); a locality outside the
/// proxy's region that is not the `failover` target of the proxy's region drops to 4. Earlier
/// priorities (from `failoverPriority`) stay the major key; the result is compacted to 0..N.
fn apply_failover(proxy: &Locality, groups: &mut [Group], failover: &[LocalityFailover]) {
    for g in groups.iter_mut() {
        let mut priority = proxy.proximity(&g.locality);
        if priority == 3 {
            if let Some(f) = failover.iter().find(|f| f.from == proxy.region) {
                if g.locality.region != f.to {
                    priority = 4;
                }
            }
        }
        g.priority = g.priority * 5 + priority;
    }
    compact(groups);
}

/// `applyFailoverPriorities` / `applyFailoverPriorityPerLocality`: each locality splits by how
/// many of the `failoverPriority` labels (in order) its endpoints share with the proxy; a
/// `label=value` entry compares with that value instead of the proxy's. A mismatched network
/// (when it is the first label) only demotes below every other match.
fn apply_failover_priorities(
    proxy: &ProxySite<'_>,
    endpoints: &[EndpointSite<'_>],
    groups: Vec<Group>,
    priorities: &[String],
) -> Vec<Group> {
    if proxy.labels.is_empty() {
        return groups;
    }
    let lowest = priorities.len() as u32;
    let includes_network = priorities.first().map(String::as_str) == Some(NETWORK_LABEL);
    let parsed: Vec<(&str, Option<&str>)> = priorities
        .iter()
        .map(|p| match p.split_once('=') {
            Some((label, value)) => (label, Some(value)),
            None => (p.as_str(), None),
        })
        .collect();
    let mut out = Vec::new();
    for g in groups {
        let mut by_priority: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for &m in &g.members {
            let endpoint_labels = augmented_labels(endpoints[m].labels, &g.locality);
            let mut priority = 0;
            let mut adjust = 0;
            for (j, (label, forced)) in parsed.iter().enumerate() {
                let wanted = forced.or_else(|| proxy.labels.get(*label).map(String::as_str));
                if wanted != endpoint_labels.get(*label).map(String::as_str) {
                    if j == 0 && includes_network {
                        adjust = lowest;
                        continue;
                    }
                    priority = lowest - j as u32;
                    break;
                }
            }
            by_priority.entry(priority + adjust).or_default().push(m);
        }
        for (priority, members) in by_priority {
            out.push(Group {
                locality: g.locality.clone(),
                priority,
                weight: members.iter().map(|&m| endpoints[m].weight.max(1)).sum(),
                members,
            });
        }
    }
    compact(&mut out);
    out
}

/// `topology.istio.io/network`.
const NETWORK_LABEL: &str = "topology.istio.io/network";

/// Priorities renumbered 0..N in order, without gaps (Envoy requires it).
fn compact(groups: &mut [Group]) {
    let mut used: Vec<u32> = groups.iter().map(|g| g.priority).collect();
    used.sort_unstable();
    used.dedup();
    for g in groups.iter_mut() {
        g.priority = used.iter().position(|&p| p == g.priority).unwrap_or(0) as u32;
    }
}

#[cfg(test)]
#[path = "locality_tests.rs"]
mod tests;
