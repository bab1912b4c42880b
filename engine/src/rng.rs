//! The engine's own random number generator.
//!
//! Every random decision (random balancing, power-of-two choices, weighted splits, fault
//! percentages, retry jitter) draws from one [`EngineRng`] seeded by the engine's creator, so
//! the same seed and the same inputs give the same outputs.

/// A small, fast, seeded PRNG (wyrand via `fastrand`), owned by one engine instance.
#[derive(Clone, Debug)]
pub struct EngineRng(fastrand::Rng);

impl EngineRng {
    /// A generator whose whole sequence is determined by `seed`.
    pub fn with_seed(seed: u64) -> Self {
        EngineRng(fastrand::Rng::with_seed(seed))
    }

    /// A uniformly distributed `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0.u64(..)
    }

    /// A uniform index in `0..n`. `n` must be non-zero.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0, "EngineRng::below(0)");
        self.0.usize(..n)
    }

    /// A uniform `u64` in `0..n`. `n` must be non-zero.
    pub fn below_u64(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "EngineRng::below_u64(0)");
        self.0.u64(..n)
    }

    /// `true` with probability `percent / 100` (values outside 0..=100 are clamped).
    pub fn chance_percent(&mut self, percent: f64) -> bool {
        if percent >= 100.0 {
            return true;
        }
        if percent <= 0.0 || percent.is_nan() {
            return false;
        }
        self.0.f64() * 100.0 < percent
    }

    /// A uniform `f64` in `[0, 1)`.
    pub fn unit_f64(&mut self) -> f64 {
        self.0.f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = EngineRng::with_seed(7);
        let mut b = EngineRng::with_seed(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn chance_edges() {
        let mut r = EngineRng::with_seed(1);
        assert!((0..1000).all(|_| r.chance_percent(100.0)));
        assert!((0..1000).all(|_| !r.chance_percent(0.0)));
        let hits = (0..100_000).filter(|_| r.chance_percent(25.0)).count();
        assert!((23_500..26_500).contains(&hits), "{hits}");
    }
}
