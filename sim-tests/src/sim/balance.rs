//! Balancing held to what each policy promises, from the driver's picks
//! ([`super::attempts::Pick`]: one per connect and per head sent on a reused connection, with
//! the request and attempt it served), never from the engine's own account.
//!
//! Only *fresh* picks count: the first attempt of a request that was not troubled (no attempt
//! burnt unseen, see [`super::attempts`]), alone in its event (picks of one event may come out
//! in another order than they were made), in a stable eligible set (the same before and after
//! the call), in a cluster without a pool limit (a pending queue separates a pick from its
//! dispatch). A retry's pick (which skips tried hosts), or a pick the driver cannot attribute
//! (a connect that failed, or one abandoned by its request), breaks the sequence.
//!
//! - **round robin** (Envoy's weighted round robin; the engine's docs promise exactness): in
//!   an unbroken run of fresh picks under one balancer epoch (same ejection count and
//!   eligible set), every window of Σw consecutive picks gives each eligible host exactly its
//!   weight; a shorter run gives none more than its weight. Exact: any slip fails. A config
//!   swap (a new balancer, restarted at a random phase) ends a run; with unequal weights a
//!   pick that may have avoided hosts (a retry's) puts the schedule out of step for a bounded
//!   number of picks, which are skipped ([`settle_picks`]).
//! - **random** (weighted): per sidecar, cluster and eligible set, each host's count of fresh
//!   picks against Binomial(n, w/Σw), by the Chernoff bound P(X/n ≥ q) ≤ exp(−n·KL(q‖p)), at
//!   1e-7 per host and side: a false alarm in 0..3000 seeds is unlikely (about 1e-3).
//! - **consistent hash** (ring hash or Maglev on the source IP, which every simulated client
//!   shares): the host is a function of the key and the eligible set only (Envoy builds the
//!   ring and the table from the host addresses), so every fresh pick of a cluster under one
//!   eligible set, from any sidecar, is the same host.
//! - **least request** (equal weights, two *distinct* choices, as the engine's docs promise;
//!   Envoy samples with replacement and promises less): a host with strictly more requests in
//!   flight than every other eligible host is never chosen. Checked on first picks of requests
//!   whose rule injects no delay (so the pick ran in the call that took the request's head,
//!   where nothing else moves), with in-flight counts from the driver's view.

use super::attempts::Pick;
use super::check::Invariant;
use super::mesh::Mesh;
use super::stats::{chi_square, MIN_EXPECTED};

/// ln(1/α) for α = 1e-7, per host and side.
const LN_ALPHA: f64 = 16.118;

/// Kullback–Leibler divergence of Bernoulli(q) from Bernoulli(p).
fn kl(q: f64, p: f64) -> f64 {
    let term = |a: f64, b: f64| if a <= 0.0 { 0.0 } else { a * (a / b).ln() };
    term(q, p) + term(1.0 - q, 1.0 - p)
}

/// Whether `hits` of `n` draws is compatible with probability `p` at [`LN_ALPHA`].
pub(crate) fn binomial_ok(hits: u64, n: u64, p: f64) -> bool {
    if n == 0 {
        return true;
    }
    let q = hits as f64 / n as f64;
    if (q - p).abs() < 1e-12 {
        return true;
    }
    if p <= 0.0 || p >= 1.0 {
        return (q - p).abs() < 1e-12;
    }
    n as f64 * kl(q, p) <= LN_ALPHA
}

impl Mesh<'_> {
    fn weights_of(&self, c: usize) -> Vec<u32> {
        let info = &self.cluster_info[c];
        self.scn.services[info.service].versions[info.version]
            .endpoints
            .iter()
            .map(|e| e.weight())
            .collect()
    }

    pub(crate) fn least_request_uniform(&self, c: usize) -> bool {
        let info = &self.cluster_info[c];
        let ver = &self.scn.services[info.service].versions[info.version];
        ver.least_request()
            && ver.pool.is_none()
            && ver
                .endpoints
                .windows(2)
                .all(|w| w[0].weight() == w[1].weight())
    }

    fn fresh(&self, p: &Pick, alone: bool) -> bool {
        alone && p.stable && matches!(p.req, Some((r, 0)) if !self.troubled_request(r))
    }

    /// After the run: every sidecar's picks per cluster.
    pub(crate) fn check_balance(&mut self) {
        let all = std::mem::take(&mut self.att.picks);
        // Random: every sidecar's fresh picks of a cluster are independent draws (each
        // engine has its own RNG), pooled per cluster and eligible set.
        let mut pooled: std::collections::BTreeMap<usize, Vec<Pick>> = Default::default();
        // Only sidecars that never had a connect go wrong towards the service: leaving out
        // single troubled requests would leave out picks *because* of the host they drew (a
        // crashed host's connects fail), a biased sample.
        for (&(sc, c), picks) in &all {
            let info = &self.cluster_info[c];
            let ver = &self.scn.services[info.service].versions[info.version];
            if ver.lb == 2
                && ver.pool.is_none()
                && ver.locality.is_none()
                && !self.att_troubled(sc, info.service)
            {
                pooled.entry(c).or_default().extend(picks.iter().cloned());
            }
        }
        for (c, picks) in &pooled {
            let weights = self.weights_of(*c);
            self.check_random(usize::MAX, *c, picks, &[], &weights);
        }
        self.check_consistent_hash(&all);
        for (&(sc, c), picks) in &all {
            let info = &self.cluster_info[c];
            let ver = &self.scn.services[info.service].versions[info.version];
            // Locality layouts are held to their own promises (`check_locality`).
            if ver.pool.is_some() || ver.locality.is_some() || picks.is_empty() {
                continue;
            }
            let mut alone = vec![true; picks.len()];
            for i in 1..picks.len() {
                if picks[i].group == picks[i - 1].group {
                    alone[i] = false;
                    alone[i - 1] = false;
                }
            }
            let weights = self.weights_of(c);
            match ver.lb {
                0 if super::attempts::EXACT_BALANCING => {
                    self.check_round_robin(sc, c, picks, &alone, &weights)
                }
                1 | 3 if super::attempts::EXACT_BALANCING => {
                    self.check_least_request(sc, c, picks, &alone)
                }
                _ => {}
            }
        }
        self.check_locality(&all);
        self.att.picks = all;
    }

    /// Consistent hash: one host per (cluster, eligible set) over every sidecar's fresh picks.
    fn check_consistent_hash(
        &mut self,
        all: &std::collections::BTreeMap<(usize, usize), Vec<Pick>>,
    ) {
        let mut host_of: std::collections::BTreeMap<(usize, u64), (usize, usize)> =
            Default::default();
        for (&(sc, c), picks) in all {
            let info = &self.cluster_info[c];
            let ver = &self.scn.services[info.service].versions[info.version];
            if !matches!(ver.lb, 4 | 5) || ver.pool.is_some() || ver.locality.is_some() {
                continue;
            }
            for p in picks {
                if !(p.stable && matches!(p.req, Some((r, 0)) if !self.troubled_request(r))) {
                    continue;
                }
                match host_of.get(&(c, p.key.1)) {
                    None => {
                        host_of.insert((c, p.key.1), (p.host, sc));
                    }
                    Some(&(host, first)) if host != p.host => {
                        let msg = format!(
                            "{}: the same hash key (source IP) and eligible set {:#x} went to host {host} from sidecar {first} and to host {} from sidecar {sc}",
                            self.cluster_names[c], p.key.1, p.host
                        );
                        self.violation(Invariant::Balancing, msg);
                        return;
                    }
                    Some(_) => {}
                }
            }
        }
    }

    fn check_round_robin(
        &mut self,
        sc: usize,
        c: usize,
        picks: &[Pick],
        alone: &[bool],
        weights: &[u32],
    ) {
        let mut run: Vec<usize> = Vec::new();
        let mut key = None;
        // Picks still to pass before a run may start again after a pick that may have
        // avoided hosts (see `displaced`).
        let mut settle = 0usize;
        for (i, p) in picks.iter().enumerate() {
            let mut fresh = self.fresh(p, alone[i]);
            let this_key = (p.key, p.swaps);
            if displaced(p) && weighted_among(weights, p.key.1) {
                settle = settle.saturating_add(settle_picks(weights, p.key.1));
            } else if settle > 0 {
                settle -= 1;
                fresh = false;
            }
            if !fresh || key != Some(this_key) {
                if let Some(k) = key {
                    if let Some(msg) = round_robin_breach(&run, k.0 .1, weights) {
                        let msg = format!("sidecar {sc}, {}: {msg}", self.cluster_names[c]);
                        self.violation(Invariant::Balancing, msg);
                        return;
                    }
                }
                run.clear();
                key = fresh.then_some(this_key);
            }
            if fresh {
                run.push(p.host);
            }
        }
        if let Some(k) = key {
            if let Some(msg) = round_robin_breach(&run, k.0 .1, weights) {
                let msg = format!("sidecar {sc}, {}: {msg}", self.cluster_names[c]);
                self.violation(Invariant::Balancing, msg);
            }
        }
    }

    fn check_random(
        &mut self,
        _sc: usize,
        c: usize,
        picks: &[Pick],
        alone: &[bool],
        weights: &[u32],
    ) {
        // Order does not matter: every fresh pick is a draw from the eligible set's weights.
        let _ = alone;
        let mut per_set: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
        for p in picks {
            if !(p.stable && matches!(p.req, Some((_, 0)))) {
                continue;
            }
            let counts = per_set
                .entry(p.key.1)
                .or_insert_with(|| vec![0; weights.len()]);
            if let Some(n) = counts.get_mut(p.host) {
                *n += 1;
            }
        }
        for (mask, counts) in per_set {
            if let Some((stat, df)) = pooled_chi_square(&counts, mask, weights) {
                self.att.random_aggregate.add(stat, df);
            }
            let n: u64 = counts.iter().sum();
            let total: u64 = (0..weights.len())
                .filter(|h| mask & (1 << h) != 0)
                .map(|h| u64::from(weights[h]))
                .sum();
            if n < 20 || total == 0 {
                continue;
            }
            for (h, &hits) in counts.iter().enumerate() {
                let p = if mask & (1 << h) != 0 {
                    f64::from(weights[h]) / total as f64
                } else {
                    continue;
                };
                if !binomial_ok(hits, n, p) {
                    let msg = format!(
                        "{}: host {h} got {hits} of {n} random picks (all sidecars), weight share {p:.4} (weights {weights:?}, eligible {mask:#b}); P < 1e-7",
                        self.cluster_names[c]
                    );
                    self.violation(Invariant::Balancing, msg);
                    return;
                }
            }
        }
    }

    fn check_least_request(&mut self, sc: usize, c: usize, picks: &[Pick], alone: &[bool]) {
        if !self.least_request_uniform(c) {
            return;
        }
        for (i, p) in picks.iter().enumerate() {
            let (Some(active), Some((r, 0))) = (&p.active, p.req) else {
                continue;
            };
            // A pipelined request starts in the engine call that ends the one before it, whose
            // attempt the driver counts in flight until that call's outputs are carried out.
            if !self.fresh(p, alone[i]) || self.delayed(r) || self.requests[r].pipelined {
                continue;
            }
            let mask = p.key.1;
            let others = (0..active.len())
                .filter(|&h| h != p.host && mask & (1 << h) != 0)
                .map(|h| active[h])
                .max();
            if let Some(most_other) = others {
                if active[p.host] > most_other {
                    let msg = format!(
                        "sidecar {sc}, {}: request {r} went to host {} with {} requests in flight, more than every other eligible host (in flight {active:?}, eligible {mask:#b})",
                        self.cluster_names[c], p.host, active[p.host]
                    );
                    self.violation(Invariant::Balancing, msg);
                    return;
                }
            }
        }
    }

    /// The request's rule may delay it (fault injection): its pick ran in a timer call.
    fn delayed(&self, r: usize) -> bool {
        let req = &self.requests[r];
        req.rule
            .and_then(|rl| super::model::rule_at(self.scn, req.service, req.generation, rl))
            .is_none_or(|rule| rule.fault.is_some())
    }
}

/// Whether pick `p` may have been made with hosts to avoid: a retry's (attempt 1 or later), or
/// one the driver could not attribute to an attempt (a connect whose request never sent a head
/// on it, which may have been a retry's).
fn displaced(p: &Pick) -> bool {
    !matches!(p.req, Some((_, 0)))
}

/// Whether the eligible hosts of `mask` have unequal weights (the engine's EDF schedule; equal
/// weights take a rotating index).
fn weighted_among(weights: &[u32], mask: u64) -> bool {
    let mut eligible = (0..weights.len().min(64))
        .filter(|h| mask & (1 << h) != 0)
        .map(|h| weights[h].max(1));
    let first = eligible.next();
    eligible.any(|w| Some(w) != first)
}

/// How many more picks after a possibly avoiding pick the weighted schedule may be out of
/// step. The engine's EDF skips avoided hosts *without consuming their turn*, so a retry
/// takes the turn of the first host not avoided ahead of time: weights [10, 1] with host 0
/// avoided give host 1 its turn now, and its next one a cycle later, so up to 15 host-0 picks
/// follow in a row (seed 1014). A host's turns are at most a cycle apart, so each early turn
/// puts one host at most one cycle of the schedule's clock ahead, and leads add up when
/// retries keep landing on the same host (seed 2549: four hosts, retries avoiding three of
/// them, one host forced ahead again and again). Once the clock has passed every turn taken
/// early the schedule is an undisturbed one again, whose every window of Σw picks is exact;
/// a stretch of clock L cycles long holds at most L·Σw + n turns (n eligible hosts, for turns
/// on its ends), so each possibly avoiding pick adds Σw + n picks to wait. With equal weights
/// the rotating index moves past the avoided hosts and the rotation goes on unchanged: no
/// wait.
fn settle_picks(weights: &[u32], mask: u64) -> usize {
    let total: u64 = (0..weights.len().min(64))
        .filter(|h| mask & (1 << h) != 0)
        .map(|h| u64::from(weights[h].max(1)))
        .sum();
    let n = (mask & ((1u128 << weights.len().min(64)) - 1) as u64).count_ones() as usize;
    usize::try_from(total).unwrap_or(usize::MAX / 2) + n
}

/// Pearson's statistic of one cluster's fresh random picks over eligible set `mask`, when
/// the eligible weights are unequal (weighted draws; equal weights draw a uniform index, held
/// to the binomial check alone). Hosts expected fewer than [`MIN_EXPECTED`] picks share one
/// cell (the generator's weights like [23, 1, 1, 1, 1, 1, 1] leave each light host a handful),
/// and a group whose pooled cell is still too small is left out. One run has too few picks
/// for a slip of one unit of weight (a light host loses a draw in Σw, a heavy one gains it) to
/// show; summed across seeds ([`super::stats::Aggregate`]) it does.
fn pooled_chi_square(counts: &[u64], mask: u64, weights: &[u32]) -> Option<(f64, u32)> {
    let hosts: Vec<usize> = (0..counts.len().min(weights.len()).min(64))
        .filter(|h| mask & (1 << h) != 0)
        .collect();
    let w = |h: usize| f64::from(weights[h].max(1));
    if hosts
        .windows(2)
        .all(|p| weights[p[0]].max(1) == weights[p[1]].max(1))
    {
        return None;
    }
    let n: u64 = hosts.iter().map(|&h| counts[h]).sum();
    let total: f64 = hosts.iter().map(|&h| w(h)).sum();
    let (mut observed, mut cells) = (Vec::new(), Vec::new());
    let (mut small_obs, mut small_w) = (0u64, 0.0);
    for &h in &hosts {
        if n as f64 * w(h) / total < MIN_EXPECTED {
            small_obs += counts[h];
            small_w += w(h);
        } else {
            observed.push(counts[h]);
            cells.push(w(h));
        }
    }
    if small_w > 0.0 {
        observed.push(small_obs);
        cells.push(small_w);
    }
    chi_square(&observed, &cells)
}

/// Why a run of round-robin picks over eligible set `mask` is not exact, if it is not.
fn round_robin_breach(run: &[usize], mask: u64, weights: &[u32]) -> Option<String> {
    let w = |h: usize| u64::from(weights.get(h).copied().unwrap_or(1));
    let total: u64 = (0..weights.len().min(64))
        .filter(|h| mask & (1 << h) != 0)
        .map(w)
        .sum();
    let total = usize::try_from(total).ok()?;
    if total == 0 {
        return None;
    }
    let window = &run[..run.len().min(total)];
    for h in 0..weights.len().min(64) {
        let n = window.iter().filter(|&&x| x == h).count() as u64;
        let want = if mask & (1 << h) != 0 { w(h) } else { 0 };
        let exact = run.len() >= total;
        if (exact && n != want) || n > want {
            return Some(format!(
                "host {h} got {n} of the first {} picks of a run of {} fresh round-robin picks, weight {want} of {total} (weights {weights:?}, eligible {mask:#b}, run {:?})",
                window.len(),
                run.len(),
                &run[..run.len().min(40)]
            ));
        }
    }
    for i in total..run.len() {
        if run[i] != run[i - total] {
            return Some(format!(
                "pick {i} of a run of fresh round-robin picks went to host {}, pick {} (one cycle of {total} before) to host {}: a window of {total} picks is not exact (weights {weights:?}, run {:?})",
                run[i],
                i - total,
                run[i - total],
                &run[i.saturating_sub(total)..(i + 1)]
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_runs() {
        assert!(round_robin_breach(&[0, 0, 1, 0, 0, 0, 1, 0], 0b11, &[3, 1]).is_none());
        assert!(round_robin_breach(&[0, 0, 1, 0, 0, 1, 0, 0], 0b11, &[3, 1]).is_some());
        assert!(round_robin_breach(&[1, 1], 0b11, &[3, 1]).is_some());
        assert!(round_robin_breach(&[0, 2, 0, 2], 0b101, &[1, 1, 1]).is_none());
    }

    #[test]
    fn binomial_band() {
        assert!(binomial_ok(500, 1000, 0.5));
        assert!(!binomial_ok(0, 200, 1.0 / 6.0));
        assert!(binomial_ok(30, 200, 1.0 / 6.0));
    }
}
