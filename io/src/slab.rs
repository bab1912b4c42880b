//! The connection table: engine [`ConnId`]s on one side, mio [`Token`]s on the other.
//!
//! The engine names connections with ids it never reuses; epoll names them with tokens, which
//! must be small and are best reused. This slab keeps both: a vector of slots indexed by
//! `token - base`, and a map from id to slot.
//!
//! A freed slot is not handed out again until [`ConnSlab::release_freed`] is called. The driver
//! calls it between poll batches, so an event still queued in the current batch for a closed
//! connection can never be delivered to a new connection that happened to get its token.

use std::collections::HashMap;

use mio::Token;
use trellis_engine::ConnId;

struct Slot<T> {
    id: ConnId,
    value: T,
}

/// Connections keyed by [`ConnId`] and by [`Token`].
pub struct ConnSlab<T> {
    base: usize,
    slots: Vec<Option<Slot<T>>>,
    /// Slots ready for reuse.
    free: Vec<usize>,
    /// Slots vacated during the current batch, reusable after `release_freed`.
    freed: Vec<usize>,
    /// Lookups only; never iterated, so its order cannot leak into behaviour.
    index: HashMap<ConnId, usize>,
}

impl<T> ConnSlab<T> {
    /// An empty slab whose first token is `Token(base)`.
    pub fn new(base: usize) -> Self {
        ConnSlab {
            base,
            slots: Vec::new(),
            free: Vec::new(),
            freed: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Number of live connections.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `token` belongs to this slab's range (live or not).
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base
    }

    /// Insert a connection, returning its token, or `None` if `id` is already present (the
    /// engine never reuses ids, so that is a driver bug to report, not to paper over).
    pub fn insert(&mut self, id: ConnId, value: T) -> Option<Token> {
        if self.index.contains_key(&id) {
            return None;
        }
        let slot = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i) {
                    *s = Some(Slot { id, value });
                }
                i
            }
            None => {
                self.slots.push(Some(Slot { id, value }));
                self.slots.len() - 1
            }
        };
        self.index.insert(id, slot);
        Some(Token(self.base + slot))
    }

    /// The token of a live connection.
    pub fn token(&self, id: ConnId) -> Option<Token> {
        self.index.get(&id).map(|&i| Token(self.base + i))
    }

    pub fn get(&self, id: ConnId) -> Option<&T> {
        let i = *self.index.get(&id)?;
        self.slots.get(i)?.as_ref().map(|s| &s.value)
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        let i = *self.index.get(&id)?;
        self.slots.get_mut(i)?.as_mut().map(|s| &mut s.value)
    }

    /// The id of the live connection registered under `token`.
    pub fn id_of(&self, token: Token) -> Option<ConnId> {
        let i = token.0.checked_sub(self.base)?;
        self.slots.get(i)?.as_ref().map(|s| s.id)
    }

    /// Remove a connection. Its token stays unused until [`ConnSlab::release_freed`].
    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        let i = self.index.remove(&id)?;
        let slot = self.slots.get_mut(i)?.take()?;
        debug_assert_eq!(slot.id, id, "the index and the slots disagree");
        self.freed.push(i);
        Some(slot.value)
    }

    /// Make the slots removed since the last call reusable (call between poll batches).
    pub fn release_freed(&mut self) {
        self.free.append(&mut self.freed);
    }

    /// Live connections in slot order (not id order: use for order-free questions).
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &T)> {
        self.slots.iter().flatten().map(|s| (s.id, &s.value))
    }

    /// Ids of all live connections, in id order.
    pub fn ids(&self) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self.index.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck_macros::quickcheck;
    use std::collections::BTreeMap;

    #[test]
    fn ids_and_tokens_map_both_ways() {
        let mut s = ConnSlab::new(100);
        let ta = s.insert(ConnId(7), "a").unwrap();
        let tb = s.insert(ConnId(9), "b").unwrap();
        assert_eq!(ta, Token(100));
        assert_eq!(tb, Token(101));
        assert_eq!(s.id_of(ta), Some(ConnId(7)));
        assert_eq!(s.id_of(tb), Some(ConnId(9)));
        assert_eq!(s.token(ConnId(9)), Some(tb));
        assert_eq!(s.get(ConnId(7)), Some(&"a"));
        assert_eq!(s.id_of(Token(5)), None);
        assert_eq!(s.id_of(Token(102)), None);
        assert!(s.insert(ConnId(7), "dup").is_none());
        assert_eq!(s.ids(), vec![ConnId(7), ConnId(9)]);
    }

    #[test]
    fn freed_tokens_are_reused_only_after_release() {
        let mut s = ConnSlab::new(10);
        let t1 = s.insert(ConnId(1), 1).unwrap();
        assert_eq!(s.remove(ConnId(1)), Some(1));
        assert_eq!(s.id_of(t1), None);
        let t2 = s.insert(ConnId(2), 2).unwrap();
        assert_ne!(t1, t2, "a token freed in this batch must not be reused yet");
        s.release_freed();
        let t3 = s.insert(ConnId(3), 3).unwrap();
        assert_eq!(t1, t3);
        assert_eq!(s.id_of(t3), Some(ConnId(3)));
        assert_eq!(s.len(), 2);
        assert_eq!(s.remove(ConnId(1)), None);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8),
        Remove(u8),
        Release,
    }

    impl quickcheck::Arbitrary for Op {
        fn arbitrary(g: &mut quickcheck::Gen) -> Self {
            match u8::arbitrary(g) % 3 {
                0 => Op::Insert(u8::arbitrary(g) % 32),
                1 => Op::Remove(u8::arbitrary(g) % 32),
                _ => Op::Release,
            }
        }
    }

    /// Against a model: same contents, tokens unique among live entries, and both mappings
    /// agree.
    #[quickcheck]
    fn behaves_like_a_map(ops: Vec<Op>) -> bool {
        let mut s = ConnSlab::new(3);
        let mut model: BTreeMap<u8, Token> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(k) => {
                    let got = s.insert(ConnId(u64::from(k)), k);
                    if model.contains_key(&k) {
                        if got.is_some() {
                            return false;
                        }
                    } else {
                        match got {
                            Some(t) => {
                                if model.values().any(|&v| v == t) {
                                    return false;
                                }
                                model.insert(k, t);
                            }
                            None => return false,
                        }
                    }
                }
                Op::Remove(k) => {
                    if s.remove(ConnId(u64::from(k))) != model.remove(&k).map(|_| k) {
                        return false;
                    }
                }
                Op::Release => s.release_freed(),
            }
            for (&k, &t) in &model {
                if s.id_of(t) != Some(ConnId(u64::from(k)))
                    || s.token(ConnId(u64::from(k))) != Some(t)
                    || s.get(ConnId(u64::from(k))) != Some(&k)
                {
                    return false;
                }
            }
            if s.len() != model.len() {
                return false;
            }
        }
        true
    }
}
