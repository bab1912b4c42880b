//! Ring hash balancing (DestinationRule `consistentHash` with `ringHash`, or the legacy
//! `minimumRingSize`): Envoy's `RingHashLoadBalancer::Ring`
//! (source/extensions/load_balancing_policies/ring_hash/ring_hash_lb.cc), point for point.
//!
//! Each eligible host gets `scale × its share of the weight` points, `scale` being the smallest
//! that gives the lightest host `minimum_ring_size × its share` points (capped at Envoy's
//! default maximum of 8M). Point `i` of a host sits at `xxHash64("<address>_<i>")`, where the
//! address is written as Envoy's `asString()` (`10.0.0.1:9080`, `[::1]:80`), so a key lands on
//! the host it would under Envoy for the same host set. A key picks the first point at or
//! after its hash, wrapping around. Running sums of fractional point counts keep the ring
//! stable when weights change a little, as Envoy's do.
//!
//! Removing a host removes only its points: keys that mapped elsewhere keep their host, which
//! is what makes the hashing consistent (tested below: about 1/N of the keys move).

use std::net::SocketAddr;

use super::xxhash::xxh64;

/// Envoy's `RingHashLbConfig` defaults.
pub const DEFAULT_MINIMUM_RING_SIZE: u64 = 1024;
pub const MAXIMUM_RING_SIZE: u64 = 8 * 1024 * 1024;

/// The ring over the current eligible hosts.
#[derive(Clone, Debug, Default)]
pub(crate) struct RingHash {
    minimum_ring_size: u64,
    /// `(point, host)`, sorted by point.
    ring: Vec<(u64, usize)>,
}

impl RingHash {
    pub(crate) fn new(minimum_ring_size: u64) -> Self {
        RingHash {
            minimum_ring_size: minimum_ring_size.clamp(1, MAXIMUM_RING_SIZE),
            ring: Vec::new(),
        }
    }

    pub(crate) fn rebuild(
        &mut self,
        eligible: &[usize],
        weights: &[u32],
        addresses: &[SocketAddr],
    ) {
        self.ring.clear();
        let weight = |h: usize| f64::from(weights.get(h).copied().unwrap_or(1).max(1));
        let total: f64 = eligible.iter().map(|&h| weight(h)).sum();
        let Some(min_share) = eligible
            .iter()
            .map(|&h| weight(h) / total)
            .min_by(f64::total_cmp)
        else {
            return;
        };
        let scale = ((min_share * self.minimum_ring_size as f64).ceil() / min_share)
            .min(MAXIMUM_RING_SIZE as f64);
        self.ring.reserve(scale.ceil() as usize);
        let (mut current, mut target) = (0.0f64, 0.0f64);
        let mut key = String::with_capacity(48);
        for &h in eligible {
            let address = addresses
                .get(h)
                .map(ToString::to_string)
                .unwrap_or_default();
            target += scale * weight(h) / total;
            let mut i = 0u64;
            while current < target {
                key.clear();
                key.push_str(&address);
                key.push('_');
                key.push_str(&i.to_string());
                self.ring.push((xxh64(key.as_bytes(), 0), h));
                i += 1;
                current += 1.0;
            }
        }
        self.ring.sort_unstable();
    }

    /// The host for `hash`: the first point at or after it, wrapping to the first point.
    pub(crate) fn pick(&self, hash: u64) -> Option<usize> {
        let at = self.ring.partition_point(|&(p, _)| p < hash);
        self.ring
            .get(at)
            .or_else(|| self.ring.first())
            .map(|&(_, h)| h)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 9080)))
            .collect()
    }

    fn ring(eligible: &[usize], weights: &[u32], addrs: &[SocketAddr]) -> RingHash {
        let mut r = RingHash::new(DEFAULT_MINIMUM_RING_SIZE);
        r.rebuild(eligible, weights, addrs);
        r
    }

    /// Envoy's sizing: the lightest host gets ceil(1024 × its share) points and the others
    /// as many per unit of weight.
    #[test]
    fn ring_size_follows_envoy() {
        let addrs = addresses(3);
        assert_eq!(ring(&[0, 1, 2], &[1, 1, 1], &addrs).len(), 1026);
        assert_eq!(ring(&[0, 1], &[1, 3], &addrs).len(), 1024);
        assert_eq!(ring(&[0, 1], &[1, 1000], &addrs).len(), 2 * 1001);
        assert!(ring(&[], &[], &addrs).pick(7).is_none());
    }

    /// Removing one host of N moves about 1/N of the keys: its own, plus the few that land
    /// on the points the others gain as the ring is rescaled (Envoy's ring has the same
    /// property: a host's points are `address_0..address_k`, so only new ones appear).
    #[test]
    fn removing_a_host_moves_about_one_nth_of_the_keys() {
        let n = 10;
        let addrs = addresses(n);
        let all: Vec<usize> = (0..n).collect();
        let weights = vec![1; n];
        let before = ring(&all, &weights, &addrs);
        let after = ring(&all[1..], &weights, &addrs);
        let keys = 20_000u64;
        let (mut moved, mut had_removed) = (0u64, 0u64);
        for k in 0..keys {
            let hash = xxh64(&k.to_le_bytes(), 0);
            let (b, a) = (before.pick(hash), after.pick(hash));
            assert_ne!(a, Some(0), "a removed host still gets keys");
            had_removed += u64::from(b == Some(0));
            moved += u64::from(a != b);
        }
        assert!((1_200..=2_800).contains(&had_removed), "{had_removed}");
        // Its tenth, and at most about another tenth from rescaling.
        assert!(moved * 100 <= keys * 22, "{moved} of {keys} moved");
        // Same key, same host: the ring is a pure function of the host set.
        assert_eq!(ring(&all, &weights, &addrs).pick(42), before.pick(42));
    }

    /// Keys spread over hosts in proportion to their weights.
    #[test]
    fn load_follows_weights() {
        let addrs = addresses(3);
        let r = ring(&[0, 1, 2], &[1, 1, 2], &addrs);
        let mut count = [0u32; 3];
        for k in 0..40_000u64 {
            if let Some(h) = r.pick(xxh64(&k.to_le_bytes(), 0)) {
                count[h] += 1;
            }
        }
        let share = |h: usize| f64::from(count[h]) / 40_000.0;
        assert!((share(2) - 0.5).abs() < 0.07, "{count:?}");
        assert!((share(0) - 0.25).abs() < 0.07, "{count:?}");
    }
}
