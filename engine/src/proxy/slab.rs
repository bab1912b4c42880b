//! A generational slab: O(1) insert/lookup/remove with ids that are never reused, so a stale
//! id (a timer for a connection that has since closed) simply finds nothing. Keys are typed
//! ([`SlabKey`]): a slab of requests can't be indexed with a connection id.

use std::marker::PhantomData;

use super::ids::SlabKey;

/// Index in the low 32 bits, generation in the high 32 bits.
pub(crate) fn pack(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn unpack(id: u64) -> (usize, u32) {
    ((id & 0xffff_ffff) as usize, (id >> 32) as u32)
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

pub(crate) struct Slab<K, T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
    key: PhantomData<K>,
}

impl<K: SlabKey, T> Slab<K, T> {
    pub fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            key: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Inserts the value built from its own id. Inlined so that a value built in `make` can
    /// be written where it will live rather than moved there.
    #[inline]
    pub fn insert_with(&mut self, make: impl FnOnce(K) -> T) -> K {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            debug_assert!(slot.value.is_none());
            slot.generation = slot.generation.wrapping_add(1);
            let id = K::from_raw(pack(index, slot.generation));
            slot.value = Some(make(id));
            debug_assert_eq!(self.len, self.slots.len() - self.free.len());
            id
        } else {
            let index = u32::try_from(self.slots.len()).expect("more than 2^32 live slab entries");
            let id = K::from_raw(pack(index, 0));
            self.slots.push(Slot {
                generation: 0,
                value: Some(make(id)),
            });
            debug_assert_eq!(self.len, self.slots.len() - self.free.len());
            id
        }
    }

    pub fn get(&self, id: K) -> Option<&T> {
        let (index, generation) = unpack(id.raw());
        let slot = self.slots.get(index)?;
        if slot.generation != generation {
            return None;
        }
        slot.value.as_ref()
    }

    pub fn contains(&self, id: K) -> bool {
        self.get(id).is_some()
    }

    pub fn get_mut(&mut self, id: K) -> Option<&mut T> {
        let (index, generation) = unpack(id.raw());
        let slot = self.slots.get_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        slot.value.as_mut()
    }

    pub fn remove(&mut self, id: K) -> Option<T> {
        let (index, generation) = unpack(id.raw());
        let slot = self.slots.get_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        let value = slot.value.take()?;
        self.len -= 1;
        self.free.push(index as u32);
        debug_assert_eq!(self.len, self.slots.len() - self.free.len());
        Some(value)
    }

    /// Removes the entry and drops it where it lies. [`Slab::remove`] moves the value out
    /// (one copy of the whole value, two when the caller binds it), which for a large entry
    /// (a request is about a kilobyte) costs more than the work done with it: a caller that
    /// only needs a few of its fields takes them through [`Slab::get_mut`] and discards the
    /// rest here. Frees the index exactly as `remove` does, so ids come out in the same order.
    pub fn discard(&mut self, id: K) -> bool {
        let (index, generation) = unpack(id.raw());
        let Some(slot) = self.slots.get_mut(index) else {
            return false;
        };
        if slot.generation != generation || slot.value.is_none() {
            return false;
        }
        slot.value = None;
        self.len -= 1;
        self.free.push(index as u32);
        debug_assert_eq!(self.len, self.slots.len() - self.free.len());
        true
    }

    /// Ids of live entries in index order (deterministic).
    #[cfg(test)]
    pub fn ids(&self) -> Vec<K> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| K::from_raw(pack(i as u32, s.generation)))
            .collect()
    }

    /// Live entries with their ids, in index order (deterministic).
    pub fn iter(&self) -> impl Iterator<Item = (K, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let value = s.value.as_ref()?;
            Some((K::from_raw(pack(i as u32, s.generation)), value))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_find_nothing() {
        let mut slab: Slab<super::super::ids::ConnId, _> = Slab::new();
        let a = slab.insert_with(|id| id);
        assert_eq!(slab.get(a), Some(&a));
        assert_eq!(slab.remove(a), Some(a));
        let b = slab.insert_with(|id| id);
        assert_ne!(a, b, "ids are never reused");
        assert!(slab.get(a).is_none());
        assert_eq!(slab.get(b), Some(&b));
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.ids(), vec![b]);
    }
}
