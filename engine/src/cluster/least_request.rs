//! Least request, Envoy's `LEAST_REQUEST` and Istio's default balancer.
//!
//! **Equal weights: power of `choice_count` choices.** Sample `choice_count` (default 2) hosts
//! and take the one with the fewest active requests; ties go to the first sampled. Unlike
//! Envoy, which samples with replacement, the samples are *distinct* hosts, which makes two
//! guarantees hold always instead of usually: the chosen host never has more active requests
//! than any other sampled host, and with two or more candidates a host busier than all others is
//! never chosen. When `choice_count` reaches the number of candidates, every candidate is
//! compared (the scan starts at a random position so ties are broken fairly). O(1) per pick for
//! the default of two choices, no allocation.
//!
//! **Unequal weights: Envoy's weighted variant.** An earliest-deadline-first schedule where each
//! host's weight, recomputed whenever it takes a turn, is `weight / (active + 1)` (Envoy's
//! `active_request_bias` of 1.0, which Istio does not expose). Idle hosts are therefore picked in
//! proportion to their weights, and a busy host's share shrinks with its load. As in Envoy, the
//! effective weight is sampled when the host is rescheduled (its active count at pick time), and
//! the schedule restarts at a random phase whenever it is rebuilt. O(log n) per pick.
//!
//! Hosts in `avoid` are excluded from sampling (a candidate list is built only in that case, a
//! retry) and skipped in the schedule without consuming their turn.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::rng::EngineRng;

/// Envoy's default `choice_count`.
pub(crate) const DEFAULT_CHOICES: u32 = 2;

/// A host's place in the weighted schedule.
#[derive(Clone, Copy, Debug)]
struct Slot {
    deadline: f64,
    /// Insertion order, to break deadline ties first-in first-out (as Envoy's EDF does).
    seq: u64,
    host: usize,
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Slot {}

impl Ord for Slot {
    /// Reversed so `BinaryHeap` pops the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .deadline
            .total_cmp(&self.deadline)
            .then(other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn effective_weight(weights: &[u32], active: &[u32], host: usize) -> f64 {
    let weight = f64::from(weights.get(host).copied().unwrap_or(1).max(1));
    let active = f64::from(active.get(host).copied().unwrap_or(0));
    weight / (active + 1.0)
}

/// Least-request state over the current eligible hosts.
#[derive(Clone, Debug)]
pub(crate) struct LeastRequest {
    choices: u32,
    weighted: bool,
    schedule: BinaryHeap<Slot>,
    aside: Vec<Slot>,
    now: f64,
    seq: u64,
    /// Eligible hosts minus avoided ones, built only when something is avoided.
    candidates: Vec<usize>,
    /// Sample positions for more than two choices.
    sampled: Vec<usize>,
    /// Planted bug (`least_request_prefers_busier`).
    #[cfg(feature = "mutants")]
    pub(crate) mutant_busier: bool,
}

impl LeastRequest {
    /// `choice_count` below 2 is read as Envoy's default of 2 (Envoy rejects it).
    pub(crate) fn new(choice_count: u32) -> Self {
        LeastRequest {
            choices: if choice_count < 2 {
                DEFAULT_CHOICES
            } else {
                choice_count
            },
            weighted: false,
            schedule: BinaryHeap::new(),
            aside: Vec::new(),
            now: 0.0,
            seq: 0,
            candidates: Vec::new(),
            sampled: Vec::new(),
            #[cfg(feature = "mutants")]
            mutant_busier: false,
        }
    }

    pub(crate) fn rebuild(
        &mut self,
        rng: &mut EngineRng,
        eligible: &[usize],
        weights: &[u32],
        active: &[u32],
        uniform: bool,
    ) {
        self.weighted = !uniform;
        self.schedule.clear();
        self.now = 0.0;
        self.seq = 0;
        if uniform || eligible.is_empty() {
            return;
        }
        for &h in eligible {
            let deadline = 1.0 / effective_weight(weights, active, h);
            self.schedule.push(Slot {
                deadline,
                seq: self.seq,
                host: h,
            });
            self.seq += 1;
        }
        for _ in 0..rng.below(eligible.len()) {
            self.pick_scheduled(weights, active, &[]);
        }
    }

    pub(crate) fn pick(
        &mut self,
        rng: &mut EngineRng,
        eligible: &[usize],
        weights: &[u32],
        active: &[u32],
        avoid: &[usize],
    ) -> Option<usize> {
        if self.weighted {
            return self.pick_scheduled(weights, active, avoid);
        }
        let pool: &[usize] = if avoid.is_empty() {
            eligible
        } else {
            self.candidates.clear();
            self.candidates
                .extend(eligible.iter().copied().filter(|h| !avoid.contains(h)));
            &self.candidates
        };
        #[cfg(feature = "mutants")]
        if self.mutant_busier {
            // Planted bug: candidates compared the wrong way round, the busiest sampled wins.
            let most = active.iter().copied().max().unwrap_or(0);
            let inverted: Vec<u32> = active.iter().map(|a| most - a).collect();
            return pick_among(rng, pool, &inverted, self.choices, &mut self.sampled);
        }
        pick_among(rng, pool, active, self.choices, &mut self.sampled)
    }

    fn pick_scheduled(
        &mut self,
        weights: &[u32],
        active: &[u32],
        avoid: &[usize],
    ) -> Option<usize> {
        let mut chosen = None;
        while let Some(slot) = self.schedule.pop() {
            if avoid.contains(&slot.host) {
                self.aside.push(slot);
                continue;
            }
            self.now = slot.deadline;
            let deadline = self.now + 1.0 / effective_weight(weights, active, slot.host);
            self.schedule.push(Slot {
                deadline,
                seq: self.seq,
                host: slot.host,
            });
            self.seq += 1;
            chosen = Some(slot.host);
            break;
        }
        self.schedule.extend(self.aside.drain(..));
        chosen
    }
}

fn active_of(active: &[u32], host: usize) -> u32 {
    active.get(host).copied().unwrap_or(0)
}

/// Power of `choices` distinct random choices over `pool` by fewest active requests.
fn pick_among(
    rng: &mut EngineRng,
    pool: &[usize],
    active: &[u32],
    choices: u32,
    sampled: &mut Vec<usize>,
) -> Option<usize> {
    let n = pool.len();
    match n {
        0 => return None,
        1 => return pool.first().copied(),
        _ => {}
    }
    let k = usize::try_from(choices).unwrap_or(usize::MAX);
    if k >= n {
        // Compare everyone, starting at a random place so ties spread evenly.
        let start = rng.below(n);
        let mut best: Option<usize> = None;
        for i in 0..n {
            let Some(&h) = pool.get((start + i) % n) else {
                continue;
            };
            if best.is_none_or(|b| active_of(active, h) < active_of(active, b)) {
                best = Some(h);
            }
        }
        return best;
    }
    if k == 2 {
        let i = rng.below(n);
        let mut j = rng.below(n - 1);
        if j >= i {
            j += 1;
        }
        let (a, b) = (pool.get(i).copied()?, pool.get(j).copied()?);
        return Some(if active_of(active, b) < active_of(active, a) {
            b
        } else {
            a
        });
    }
    // Robert Floyd's sampling of k distinct positions out of n.
    sampled.clear();
    for j in (n - k)..n {
        let t = rng.below(j + 1);
        sampled.push(if sampled.contains(&t) { j } else { t });
    }
    let mut best: Option<usize> = None;
    for &pos in sampled.iter() {
        let Some(&h) = pool.get(pos) else { continue };
        if best.is_none_or(|b| active_of(active, h) < active_of(active, b)) {
            best = Some(h);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck_macros::quickcheck;

    fn setup(weights: &[u32], choices: u32, seed: u64) -> (LeastRequest, EngineRng, Vec<usize>) {
        let eligible: Vec<usize> = (0..weights.len()).collect();
        let uniform = weights.windows(2).all(|w| w[0] == w[1]);
        let mut lr = LeastRequest::new(choices);
        let mut rng = EngineRng::with_seed(seed);
        let active = vec![0; weights.len()];
        lr.rebuild(&mut rng, &eligible, weights, &active, uniform);
        (lr, rng, eligible)
    }

    /// With two distinct choices the busier sampled host is never chosen; with a unique
    /// busiest host among 2+ candidates, it is never chosen.
    #[quickcheck]
    fn never_picks_the_single_busiest(active: Vec<u8>, seed: u64, choices: u8) -> bool {
        let active: Vec<u32> = active.iter().take(40).map(|&a| u32::from(a % 8)).collect();
        if active.len() < 2 {
            return true;
        }
        let weights = vec![1; active.len()];
        let (mut lr, mut rng, eligible) = setup(&weights, u32::from(choices % 5), seed);
        let max = *active.iter().max().unwrap();
        let unique_max = active.iter().filter(|&&a| a == max).count() == 1;
        (0..200).all(|_| {
            let h = lr
                .pick(&mut rng, &eligible, &weights, &active, &[])
                .unwrap();
            !(unique_max && active[h] == max)
        })
    }

    #[test]
    fn prefers_the_less_loaded_of_two() {
        let weights = [1, 1];
        let (mut lr, mut rng, eligible) = setup(&weights, 2, 5);
        let active = [3, 0];
        for _ in 0..100 {
            assert_eq!(
                lr.pick(&mut rng, &eligible, &weights, &active, &[]),
                Some(1)
            );
        }
    }

    #[test]
    fn many_choices_pick_the_least_loaded() {
        let weights = [1; 6];
        let (mut lr, mut rng, eligible) = setup(&weights, 10, 5);
        let active = [4, 3, 5, 1, 2, 9];
        for _ in 0..50 {
            assert_eq!(
                lr.pick(&mut rng, &eligible, &weights, &active, &[]),
                Some(3)
            );
        }
        let (mut lr, mut rng, eligible) = setup(&weights, 3, 5);
        for _ in 0..200 {
            let h = lr
                .pick(&mut rng, &eligible, &weights, &active, &[])
                .unwrap();
            // Three distinct choices: never one of the two busiest.
            assert!(h != 5 && h != 2, "{h}");
        }
    }

    #[test]
    fn weighted_idle_follows_weights_and_load_shifts_share() {
        let weights = [1, 3];
        let (mut lr, mut rng, eligible) = setup(&weights, 2, 1);
        let idle = [0, 0];
        let mut counts = [0usize; 2];
        for _ in 0..4000 {
            counts[lr.pick(&mut rng, &eligible, &weights, &idle, &[]).unwrap()] += 1;
        }
        assert!((2990..=3010).contains(&counts[1]), "{counts:?}");
        // Host 1 now has 5 requests in flight: 3/6 = 0.5 against host 0's 1.
        let busy = [0, 5];
        let mut counts = [0usize; 2];
        for _ in 0..3000 {
            counts[lr.pick(&mut rng, &eligible, &weights, &busy, &[]).unwrap()] += 1;
        }
        assert!((1900..=2100).contains(&counts[0]), "{counts:?}");
    }

    #[quickcheck]
    fn avoid_is_respected(n: u8, avoided: Vec<u8>, weighted: bool, seed: u64) -> bool {
        let n = usize::from(n % 10) + 2;
        let avoid: Vec<usize> = avoided
            .iter()
            .map(|&a| usize::from(a) % n)
            .take(n - 1)
            .collect();
        let weights: Vec<u32> = (0..n)
            .map(|i| if weighted { i as u32 + 1 } else { 1 })
            .collect();
        let (mut lr, mut rng, eligible) = setup(&weights, 2, seed);
        let active = vec![0; n];
        (0..50).all(|_| {
            let h = lr
                .pick(&mut rng, &eligible, &weights, &active, &avoid)
                .unwrap();
            // `avoid` holds at most n - 1 entries, so some host is always left.
            !avoid.contains(&h)
        })
    }
}
