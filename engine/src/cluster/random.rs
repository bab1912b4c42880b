//! Weighted random balancing (`RANDOM`).
//!
//! Envoy's random balancer ignores endpoint weights; ours honours them, so a weighted endpoint
//! set means the same thing under every policy. Equal weights draw a uniform index (O(1)).
//! Unequal weights draw from prefix sums built at rebuild time and binary-search them
//! (O(log n), no allocation per pick). With hosts to avoid (a retry), the draw is made over the
//! remaining hosts' weights by a linear walk, which is exact and needs no extra memory.

use crate::rng::EngineRng;

fn weight_of(weights: &[u32], host: usize) -> u64 {
    u64::from(weights.get(host).copied().unwrap_or(1).max(1))
}

/// Weighted-random state over the current eligible hosts.
#[derive(Clone, Debug, Default)]
pub(crate) struct WeightedRandom {
    weighted: bool,
    /// `cumulative[i]` = total weight of eligible hosts `0..=i`.
    cumulative: Vec<u64>,
    /// Planted bug (`random_prefix_bound_off_by_one`).
    #[cfg(feature = "mutants")]
    pub(crate) mutant_prefix: bool,
}

impl WeightedRandom {
    pub(crate) fn rebuild(&mut self, eligible: &[usize], weights: &[u32], uniform: bool) {
        self.weighted = !uniform;
        self.cumulative.clear();
        if uniform {
            return;
        }
        let mut total = 0u64;
        for &h in eligible {
            total += weight_of(weights, h);
            self.cumulative.push(total);
        }
    }

    pub(crate) fn pick(
        &mut self,
        rng: &mut EngineRng,
        eligible: &[usize],
        weights: &[u32],
        avoid: &[usize],
    ) -> Option<usize> {
        if eligible.is_empty() {
            return None;
        }
        if !avoid.is_empty() {
            let total: u64 = eligible
                .iter()
                .filter(|h| !avoid.contains(h))
                .map(|&h| weight_of(weights, h))
                .sum();
            if total == 0 {
                return None;
            }
            let mut r = rng.below_u64(total);
            for &h in eligible.iter().filter(|h| !avoid.contains(h)) {
                let w = weight_of(weights, h);
                if r < w {
                    return Some(h);
                }
                r -= w;
            }
            return None;
        }
        if !self.weighted {
            return eligible.get(rng.below(eligible.len())).copied();
        }
        let total = self.cumulative.last().copied()?;
        let r = rng.below_u64(total);
        #[allow(unused_mut)]
        let mut at = self.cumulative.partition_point(|&c| c <= r);
        #[cfg(feature = "mutants")]
        if self.mutant_prefix {
            // Planted bug: `<` where `<=` belongs.
            at = self.cumulative.partition_point(|&c| c < r);
        }
        eligible.get(at).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck_macros::quickcheck;

    /// Each host's share over many picks is within 2 percentage points of its weight share.
    #[quickcheck]
    fn follows_weights(weights: Vec<u8>, seed: u64) -> bool {
        let weights: Vec<u32> = weights
            .iter()
            .take(8)
            .map(|&w| u32::from(w % 10) + 1)
            .collect();
        if weights.is_empty() {
            return true;
        }
        let eligible: Vec<usize> = (0..weights.len()).collect();
        let uniform = weights.windows(2).all(|w| w[0] == w[1]);
        let mut r = WeightedRandom::default();
        r.rebuild(&eligible, &weights, uniform);
        let mut rng = EngineRng::with_seed(seed);
        let picks = 20_000;
        let mut counts = vec![0usize; weights.len()];
        for _ in 0..picks {
            counts[r.pick(&mut rng, &eligible, &weights, &[]).unwrap()] += 1;
        }
        let total: u32 = weights.iter().sum();
        weights.iter().zip(&counts).all(|(&w, &c)| {
            let expected = f64::from(w) / f64::from(total);
            (c as f64 / picks as f64 - expected).abs() < 0.02
        })
    }

    #[test]
    fn avoid_reweights_over_the_rest() {
        let eligible = [0, 1, 2];
        let weights = [1, 1, 2];
        let mut r = WeightedRandom::default();
        r.rebuild(&eligible, &weights, false);
        let mut rng = EngineRng::with_seed(4);
        let mut counts = [0usize; 3];
        for _ in 0..9000 {
            counts[r.pick(&mut rng, &eligible, &weights, &[2]).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0);
        assert!((4200..4800).contains(&counts[0]), "{counts:?}");
    }
}
