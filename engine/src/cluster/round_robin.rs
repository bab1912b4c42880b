//! Weighted round robin: exact proportions, spread out, deterministic.
//!
//! Equal weights (the common case in Kubernetes) take a plain rotating index: O(1) per pick.
//!
//! Unequal weights use an earliest-deadline-first schedule like Envoy's, but with exact integer
//! deadlines so a full cycle is exact. A host of weight `w` has its `k`-th turn of each cycle at
//! `cycle + (k − ½) / w`, for `k` in `1..=w`. Every host therefore takes exactly `w` turns per
//! cycle (turns of cycle `c` all lie in `[c, c + 1)`), and the schedule is periodic, so ANY
//! window of `Σw` consecutive picks contains each host exactly `w` times. The half-step offset
//! spreads turns out the way nginx's smooth weighted round robin does: weights 3,1 give
//! `a a b a` (Envoy's EDF, whose first turns are all at `1/w`, gives `a a a b`), and 5,1,1 give
//! `a a a b c a a`. Deadlines are compared by cross-multiplying in `u128` (no floating point);
//! ties go to the lower host index. O(log n) per pick.
//!
//! After every rebuild (first pick, or when ejections change the eligible set) the schedule
//! starts at a random phase, as Envoy does, so proxies and cores started together do not all
//! send their first request to the same host.
//!
//! Hosts in `avoid` are skipped without consuming their turn, so a retry that avoids a host
//! leaves that host first in line for the next request.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::rng::EngineRng;

/// One host's next turn: at `cycle + (2·turn − 1) / (2·weight)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Turn {
    cycle: u64,
    turn: u32,
    weight: u32,
    host: usize,
}

impl Turn {
    fn first(host: usize, weight: u32) -> Self {
        Turn {
            cycle: 0,
            turn: 1,
            weight: weight.max(1),
            host,
        }
    }

    fn next(self) -> Self {
        if self.turn >= self.weight {
            Turn {
                cycle: self.cycle + 1,
                turn: 1,
                ..self
            }
        } else {
            Turn {
                turn: self.turn + 1,
                ..self
            }
        }
    }

    /// Earlier deadline first; ties by host index.
    fn earlier(&self, other: &Self) -> Ordering {
        let mine = (2 * u128::from(self.turn) - 1) * u128::from(other.weight);
        let theirs = (2 * u128::from(other.turn) - 1) * u128::from(self.weight);
        self.cycle
            .cmp(&other.cycle)
            .then(mine.cmp(&theirs))
            .then(self.host.cmp(&other.host))
    }
}

impl Ord for Turn {
    /// Reversed so that `BinaryHeap` (a max-heap) pops the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        other.earlier(self)
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Round-robin state over the current eligible hosts.
#[derive(Clone, Debug, Default)]
pub(crate) struct RoundRobin {
    /// Unequal weights: the EDF schedule is in use.
    weighted: bool,
    /// Equal weights: position of the next host in the eligible list.
    next: usize,
    schedule: BinaryHeap<Turn>,
    /// Turns set aside while skipping avoided hosts (kept to reuse its allocation).
    aside: Vec<Turn>,
    /// Planted bug (`round_robin_extra_turn`).
    #[cfg(feature = "mutants")]
    pub(crate) mutant_extra_turn: bool,
}

impl RoundRobin {
    pub(crate) fn rebuild(
        &mut self,
        rng: &mut EngineRng,
        eligible: &[usize],
        weights: &[u32],
        uniform: bool,
    ) {
        self.weighted = !uniform;
        self.schedule.clear();
        self.next = 0;
        if eligible.is_empty() {
            return;
        }
        let phase = rng.below(eligible.len());
        if uniform {
            self.next = phase;
            return;
        }
        self.schedule.extend(
            eligible
                .iter()
                .map(|&h| Turn::first(h, weights.get(h).copied().unwrap_or(1))),
        );
        for _ in 0..phase {
            self.pick(eligible, &[]);
        }
    }

    /// The next host, skipping hosts in `avoid` (the caller guarantees one is not avoided, or
    /// passes an empty `avoid`).
    pub(crate) fn pick(&mut self, eligible: &[usize], avoid: &[usize]) -> Option<usize> {
        if !self.weighted {
            let n = eligible.len();
            for _ in 0..n {
                let host = eligible.get(self.next % n).copied();
                self.next = (self.next + 1) % n;
                if let Some(h) = host {
                    if !avoid.contains(&h) {
                        return Some(h);
                    }
                }
            }
            return None;
        }
        let mut chosen = None;
        while let Some(turn) = self.schedule.pop() {
            if avoid.contains(&turn.host) {
                self.aside.push(turn);
                continue;
            }
            #[allow(unused_mut)]
            let mut next = turn.next();
            #[cfg(feature = "mutants")]
            if self.mutant_extra_turn && turn.turn == turn.weight {
                // Planted bug: `>` where `>=` belongs, one turn more per cycle.
                next = Turn {
                    turn: turn.turn + 1,
                    ..turn
                };
            }
            self.schedule.push(next);
            chosen = Some(turn.host);
            break;
        }
        self.schedule.extend(self.aside.drain(..));
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck_macros::quickcheck;

    fn run(weights: &[u32], picks: usize, seed: u64) -> Vec<usize> {
        let eligible: Vec<usize> = (0..weights.len()).collect();
        let uniform = weights.windows(2).all(|w| w[0] == w[1]);
        let mut rr = RoundRobin::default();
        let mut rng = EngineRng::with_seed(seed);
        rr.rebuild(&mut rng, &eligible, weights, uniform);
        (0..picks)
            .map(|_| rr.pick(&eligible, &[]).unwrap())
            .collect()
    }

    /// One cycle from phase zero (no random start).
    fn first_cycle(weights: &[u32]) -> Vec<usize> {
        let eligible: Vec<usize> = (0..weights.len()).collect();
        let mut rr = RoundRobin {
            weighted: true,
            ..RoundRobin::default()
        };
        rr.schedule
            .extend(eligible.iter().map(|&h| Turn::first(h, weights[h])));
        let total: u32 = weights.iter().sum();
        (0..total)
            .map(|_| rr.pick(&eligible, &[]).unwrap())
            .collect()
    }

    #[test]
    fn spread_out_like_nginx() {
        assert_eq!(first_cycle(&[3, 1]), vec![0, 0, 1, 0]);
        assert_eq!(first_cycle(&[5, 1, 1]), vec![0, 0, 0, 1, 2, 0, 0]);
        assert_eq!(first_cycle(&[2, 4]), vec![1, 0, 1, 1, 0, 1]);
    }

    #[test]
    fn equal_weights_rotate() {
        let seq = run(&[1, 1, 1, 1], 8, 9);
        for w in seq.windows(4) {
            let mut s = w.to_vec();
            s.sort_unstable();
            assert_eq!(s, vec![0, 1, 2, 3]);
        }
    }

    #[test]
    fn avoid_does_not_consume_the_turn() {
        let eligible = [0, 1, 2];
        let mut rr = RoundRobin::default();
        let mut rng = EngineRng::with_seed(1);
        rr.rebuild(&mut rng, &eligible, &[3, 2, 1], false);
        let first = rr.pick(&eligible, &[]).unwrap();
        let mut probe = rr.clone();
        let upcoming = probe.pick(&eligible, &[]).unwrap();
        let other = rr.pick(&eligible, &[upcoming]).unwrap();
        assert_ne!(other, upcoming);
        assert_eq!(rr.pick(&eligible, &[]), Some(upcoming), "first={first}");
    }

    /// Any window of Σw consecutive picks holds each host exactly w times.
    #[quickcheck]
    fn exact_over_any_full_cycle(weights: Vec<u8>, seed: u64, offset: u8) -> bool {
        let weights: Vec<u32> = weights
            .iter()
            .take(12)
            .map(|&w| u32::from(w % 9) + 1)
            .collect();
        if weights.is_empty() {
            return true;
        }
        let total: u32 = weights.iter().sum();
        let seq = run(&weights, total as usize + usize::from(offset), seed);
        let window = &seq[usize::from(offset)..];
        weights
            .iter()
            .enumerate()
            .all(|(h, &w)| window.iter().filter(|&&x| x == h).count() == w as usize)
    }
}
