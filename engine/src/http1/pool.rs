//! A few cleared field lists kept for the next head.
//!
//! Every request head and every response head used to build a fresh field list (a heap
//! allocation each) and drop it when the request ended: two allocations and two frees per
//! proxied request. The engine hands finished lists back here and the parsers fill one of them
//! instead. Reuse cannot change behaviour: a list iterates in order whatever its capacity, and
//! `clear` forgets every field (and the received head it pointed into). Memory stays bounded:
//! at most [`SPARE`] lists are kept, and a list grown past [`MAX_KEPT_CAPACITY`] by an unusually
//! large head is dropped.

use super::field_list::Fields;

/// How many cleared lists are kept (a few requests in flight at once is the common case).
const SPARE: usize = 8;
/// Lists with room for more fields than this are not kept.
const MAX_KEPT_CAPACITY: usize = 64;

/// Spare field lists, cleared.
#[derive(Debug, Default)]
pub struct HeaderPool {
    spare: Vec<Fields>,
    /// The head scan's record of where each field line ends (see `syntax::find_head_end_with`),
    /// kept between heads for the same reason as the lists.
    line_ends: Vec<usize>,
}

impl HeaderPool {
    /// The line-end record, empty, for one head scan; give it back with
    /// [`HeaderPool::give_line_ends`].
    pub(crate) fn take_line_ends(&mut self) -> Vec<usize> {
        let mut lfs = std::mem::take(&mut self.line_ends);
        lfs.clear();
        lfs
    }

    /// Keeps the line-end record for the next head (unless a huge head grew it).
    pub(crate) fn give_line_ends(&mut self, lfs: Vec<usize>) {
        if lfs.capacity() <= MAX_KEPT_CAPACITY * 4 {
            self.line_ends = lfs;
        }
    }

    /// An empty list with room for at least `fields` fields.
    pub fn take(&mut self, fields: usize) -> Fields {
        match self.spare.pop() {
            Some(mut map) => {
                map.reserve(fields);
                map
            }
            None => Fields::with_capacity(fields),
        }
    }

    /// Gives a list back for a later head; its fields are dropped now.
    pub fn give(&mut self, mut map: Fields) {
        if self.spare.len() < SPARE && map.capacity() <= MAX_KEPT_CAPACITY {
            map.clear();
            self.spare.push(map);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_maps_come_back_empty_and_bounded() {
        let mut pool = HeaderPool::default();
        let mut map = pool.take(4);
        map.append(
            super::super::field_list::FieldName::from_static("x-a"),
            bytes::Bytes::from_static(b"1"),
        );
        pool.give(map);
        let map = pool.take(4);
        assert!(map.is_empty());
        assert!(map.capacity() >= 4);
        let big = Fields::with_capacity(1000);
        pool.give(big);
        assert!(pool.spare.is_empty(), "an oversized map is not kept");
        for _ in 0..SPARE + 3 {
            pool.give(Fields::with_capacity(4));
        }
        assert_eq!(pool.spare.len(), SPARE);
    }
}
