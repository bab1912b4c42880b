//! A fast, fixed (unkeyed) hasher for the engine's lookup-only maps.
//!
//! The standard `HashMap` hashes with SipHash-1-3, about 300 instructions for a 40-byte host
//! name; the domain index and the cluster-name map are probed on every request, so that was a
//! few percent of the request path. This is the multiply-rotate word hash of rustc's
//! `FxHasher`, eight bytes a step.
//!
//! An unkeyed hash is safe here because of how these maps are used: their keys come from the
//! configuration (the control plane), never from clients, and they are only probed, never
//! iterated. A client can choose the string it looks up but not where the configured keys sit,
//! so it cannot make a probe walk a long collision chain; and no decision depends on the
//! map's order (determinism holds with any hasher).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` using [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The multiplier of rustc's `FxHasher` (64-bit).
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// See the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FastHasher {
    hash: u64,
}

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // At most 7 bytes: the last one carries the length, so "a" and "a\0" differ.
            let mut word = [0u8; 8];
            if let Some(head) = word.get_mut(..rest.len()) {
                head.copy_from_slice(rest);
            }
            word[7] = rest.len() as u8;
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // hashbrown takes its bucket index from the low bits and its tag from the top seven;
        // the multiply leaves the low bits weakest, so fold the high half down.
        self.hash ^ (self.hash >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn equal_keys_hash_equal_and_near_keys_differ() {
        let build = BuildHasherDefault::<FastHasher>::default();
        let h = |s: &str| build.hash_one(s);
        assert_eq!(h("reviews.default.svc"), h("reviews.default.svc"));
        assert_ne!(h("reviews.default.svc"), h("reviews.default.svd"));
        assert_ne!(h("a"), h("a\0"), "the str terminator keeps prefixes apart");
        assert_ne!(h(""), h("\0"));
        let mut map: FastMap<Box<str>, usize> = FastMap::default();
        for i in 0..1000 {
            map.insert(format!("svc{i}.ns.svc.cluster.local").into(), i);
        }
        for i in 0..1000 {
            assert_eq!(
                map.get(format!("svc{i}.ns.svc.cluster.local").as_str()),
                Some(&i)
            );
        }
        assert_eq!(map.get("svc1000.ns.svc.cluster.local"), None);
    }
}
