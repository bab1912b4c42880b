//! Weighted choice among a route's destinations (Istio `route[].weight`).
//!
//! Exact in distribution: one uniform draw in `0..total` over the cumulative weights, so a
//! destination with weight `w` is chosen with probability exactly `w / total`, and weight 0 is
//! never chosen. Weights are summed in `u64`, so no list of `u32` weights can overflow. The
//! draw comes from the engine's seeded RNG, keeping whole runs reproducible.

use crate::config::WeightedCluster;
use crate::rng::EngineRng;

/// Weighted choice among destinations using the engine RNG; weight 0 is never chosen; `None` if
/// the list is empty or all weights are zero. A single destination with a non-zero weight is
/// returned without drawing from the RNG.
pub fn pick_weighted<'a>(
    dests: &'a [WeightedCluster],
    rng: &mut EngineRng,
) -> Option<&'a WeightedCluster> {
    pick_weighted_with(dests, rng, false)
}

/// [`pick_weighted`], with the planted bug `weighted_pick_inclusive` when `inclusive`.
pub(crate) fn pick_weighted_with<'a>(
    dests: &'a [WeightedCluster],
    rng: &mut EngineRng,
    inclusive: bool,
) -> Option<&'a WeightedCluster> {
    if let [only] = dests {
        return (only.weight > 0).then_some(only);
    }
    let total: u64 = dests.iter().map(|d| u64::from(d.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut point = rng.below_u64(total);
    for d in dests {
        let w = u64::from(d.weight);
        if point < w || (inclusive && point == w) {
            return Some(d);
        }
        point -= w;
    }
    // Unreachable: `point < total` is the sum of the weights walked above.
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck_macros::quickcheck;

    fn dest(name: &str, weight: u32) -> WeightedCluster {
        WeightedCluster {
            cluster: name.into(),
            weight,
            ..WeightedCluster::default()
        }
    }

    #[test]
    fn empty_and_all_zero_pick_nothing() {
        let mut rng = EngineRng::with_seed(1);
        assert!(pick_weighted(&[], &mut rng).is_none());
        assert!(pick_weighted(&[dest("a", 0)], &mut rng).is_none());
        assert!(pick_weighted(&[dest("a", 0), dest("b", 0)], &mut rng).is_none());
    }

    #[test]
    fn single_destination_always_chosen() {
        let mut rng = EngineRng::with_seed(1);
        let d = [dest("a", 100)];
        assert!(
            (0..100).all(|_| pick_weighted(&d, &mut rng).map(|c| c.cluster.as_str()) == Some("a"))
        );
    }

    #[test]
    fn eighty_twenty_converges() {
        let mut rng = EngineRng::with_seed(42);
        let d = [dest("v1", 80), dest("v2", 20)];
        let n = 20_000;
        let v1 = (0..n)
            .filter(|_| pick_weighted(&d, &mut rng).map(|c| c.cluster.as_str()) == Some("v1"))
            .count();
        let share = v1 as f64 / n as f64;
        assert!((0.78..=0.82).contains(&share), "{share}");
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let mut rng = EngineRng::with_seed(3);
        let d = [dest("a", u32::MAX), dest("b", u32::MAX), dest("c", 0)];
        for _ in 0..1000 {
            let c = pick_weighted(&d, &mut rng).unwrap();
            assert_ne!(c.cluster, "c");
        }
    }

    /// Never picks a zero weight; always picks something when any weight is positive.
    #[quickcheck]
    fn never_picks_zero_weight(weights: Vec<u8>, seed: u64) -> bool {
        let dests: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| dest(&i.to_string(), u32::from(*w % 4)))
            .collect();
        let mut rng = EngineRng::with_seed(seed);
        let any_positive = dests.iter().any(|d| d.weight > 0);
        (0..50).all(|_| match pick_weighted(&dests, &mut rng) {
            Some(d) => d.weight > 0,
            None => !any_positive,
        })
    }

    /// Over 20k draws every destination's share is within 2 points of its weight share.
    #[quickcheck]
    fn converges_to_weights(weights: Vec<u8>, seed: u64) -> bool {
        let weights: Vec<u32> = weights.iter().take(5).map(|w| u32::from(*w)).collect();
        let total: u32 = weights.iter().sum();
        if total == 0 {
            return true;
        }
        let dests: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| dest(&i.to_string(), *w))
            .collect();
        let mut counts = vec![0u32; dests.len()];
        let mut rng = EngineRng::with_seed(seed);
        let n = 20_000;
        for _ in 0..n {
            if let Some(d) = pick_weighted(&dests, &mut rng) {
                if let Ok(i) = d.cluster.parse::<usize>() {
                    counts[i] += 1;
                }
            }
        }
        counts.iter().zip(&weights).all(|(&c, &w)| {
            let expected = f64::from(w) / f64::from(total);
            let got = f64::from(c) / f64::from(n);
            (got - expected).abs() <= 0.02 && (w > 0 || c == 0)
        })
    }
}
