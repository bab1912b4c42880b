//! Maglev balancing (DestinationRule `consistentHash.maglev`): Envoy's `MaglevTable`
//! (source/extensions/load_balancing_policies/maglev/maglev_lb.cc), which is the table of
//! Google's Maglev paper with weights.
//!
//! A table of `table_size` slots (a prime; Envoy's default 65537) is filled by letting hosts
//! take turns, each walking its own permutation of the slots (`offset + next × skip`, with
//! `offset = xxHash64(address, 0) mod size` and `skip = xxHash64(address, 1) mod (size − 1) + 1`)
//! and claiming the first free one. A host of weight `w` takes a turn in `w / max weight` of
//! the rounds. A key picks slot `hash mod size`. Every host ends with nearly the same number of
//! slots per unit of weight (tested below), and removing one host disturbs few other slots.

use std::net::SocketAddr;

use super::xxhash::xxh64;

/// Envoy's `MaglevLbConfig.table_size` default.
pub const DEFAULT_TABLE_SIZE: u64 = 65537;

/// Whether `n` is prime (Envoy refuses a table size that is not).
pub fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Maglev {
    table_size: u64,
    /// Slot → host (`u32`: the table has 65537 slots by default, per cluster and core);
    /// empty when no host is eligible.
    table: Vec<u32>,
}

struct Entry {
    host: usize,
    offset: u64,
    skip: u64,
    weight: u64,
    target: u64,
    next: u64,
}

impl Maglev {
    pub(crate) fn new(table_size: u64) -> Self {
        debug_assert!(
            is_prime(table_size),
            "maglev table size {table_size} is not prime"
        );
        Maglev {
            table_size: table_size.max(2),
            table: Vec::new(),
        }
    }

    pub(crate) fn rebuild(
        &mut self,
        eligible: &[usize],
        weights: &[u32],
        addresses: &[SocketAddr],
    ) {
        self.table.clear();
        if eligible.is_empty() {
            return;
        }
        let size = self.table_size;
        let mut entries: Vec<Entry> = eligible
            .iter()
            .map(|&host| {
                let address = addresses
                    .get(host)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                Entry {
                    host,
                    offset: xxh64(address.as_bytes(), 0) % size,
                    skip: xxh64(address.as_bytes(), 1) % (size - 1) + 1,
                    weight: u64::from(weights.get(host).copied().unwrap_or(1).max(1)),
                    target: 0,
                    next: 0,
                }
            })
            .collect();
        let max_weight = entries.iter().map(|e| e.weight).max().unwrap_or(1);
        let mut slots: Vec<Option<u32>> = vec![None; size as usize];
        let mut filled = 0u64;
        let mut iteration = 1u64;
        while filled < size {
            for e in entries.iter_mut() {
                if filled >= size {
                    break;
                }
                // A host of the largest weight takes every turn; one of a third of it every
                // third (Envoy compares normalized weights; these are the same ratios).
                if iteration * e.weight < e.target {
                    continue;
                }
                e.target += max_weight;
                let mut slot = (e.offset + e.skip * e.next) % size;
                while slots.get(slot as usize).is_some_and(Option::is_some) {
                    e.next += 1;
                    slot = (e.offset + e.skip * e.next) % size;
                }
                if let Some(s) = slots.get_mut(slot as usize) {
                    *s = u32::try_from(e.host).ok();
                }
                e.next += 1;
                filled += 1;
            }
            iteration += 1;
        }
        self.table = slots.into_iter().map(|s| s.unwrap_or(0)).collect();
    }

    pub(crate) fn pick(&self, hash: u64) -> Option<usize> {
        let len = self.table.len() as u64;
        if len == 0 {
            return None;
        }
        self.table.get((hash % len) as usize).map(|&h| h as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 1, 0, i as u8 + 1], 80)))
            .collect()
    }

    fn slots_of(m: &Maglev, hosts: usize) -> Vec<usize> {
        let mut count = vec![0; hosts];
        for &h in &m.table {
            count[h as usize] += 1;
        }
        count
    }

    #[test]
    fn primes() {
        assert!(is_prime(DEFAULT_TABLE_SIZE) && is_prime(2) && is_prime(251));
        assert!(!is_prime(1) && !is_prime(65536) && !is_prime(0));
    }

    /// Maglev's balance: with equal weights every host owns size/N slots, give or take one.
    #[test]
    fn table_is_balanced() {
        let n = 7;
        let mut m = Maglev::new(DEFAULT_TABLE_SIZE);
        m.rebuild(&(0..n).collect::<Vec<_>>(), &vec![1; n], &addresses(n));
        let count = slots_of(&m, n);
        let (lo, hi) = (
            *count.iter().min().unwrap_or(&0),
            *count.iter().max().unwrap_or(&0),
        );
        assert!(hi - lo <= 1, "{count:?}");
        assert_eq!(count.iter().sum::<usize>(), DEFAULT_TABLE_SIZE as usize);
    }

    /// Weights: a host of weight 2 owns twice the slots of one of weight 1.
    #[test]
    fn slots_follow_weights() {
        let mut m = Maglev::new(251);
        m.rebuild(&[0, 1, 2], &[1, 1, 2], &addresses(3));
        let count = slots_of(&m, 3);
        assert!(
            (count[2] as i64 - 2 * count[0] as i64).abs() <= 3,
            "{count:?}"
        );
    }

    /// Removing one host of N reassigns its slots and disturbs few others.
    #[test]
    fn removing_a_host_moves_few_other_keys() {
        let n = 10;
        let addrs = addresses(n);
        let all: Vec<usize> = (0..n).collect();
        let mut before = Maglev::new(DEFAULT_TABLE_SIZE);
        before.rebuild(&all, &vec![1; n], &addrs);
        let mut after = Maglev::new(DEFAULT_TABLE_SIZE);
        after.rebuild(&all[1..], &vec![1; n], &addrs);
        let mut disturbed = 0;
        for (b, a) in before.table.iter().zip(&after.table) {
            if *b != 0 && a != b {
                disturbed += 1;
            }
        }
        // The paper's measurement: a small fraction of the other hosts' slots move.
        assert!(disturbed * 100 < before.table.len() * 5, "{disturbed}");
        assert_eq!(
            before.pick(12345),
            before.table.get(12345).map(|&h| h as usize)
        );
    }
}
