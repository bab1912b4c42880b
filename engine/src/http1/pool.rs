//! A few cleared header maps kept for the next head.
//!
//! Every request head and every response head used to build a fresh `HeaderMap` (two heap
//! allocations each) and drop it when the request ended: four allocations and four frees per
//! proxied request. The engine hands finished maps back here and the parsers fill one of them
//! instead. Reuse cannot change behaviour: a map iterates in insertion order whatever its
//! capacity, and `clear` forgets every field. Memory stays bounded: at most [`SPARE`] maps are
//! kept, and a map grown past [`MAX_KEPT_CAPACITY`] by an unusually large head is dropped.

use http::HeaderMap;

/// How many cleared maps are kept (a few requests in flight at once is the common case).
const SPARE: usize = 8;
/// Maps with room for more fields than this are not kept.
const MAX_KEPT_CAPACITY: usize = 64;

/// Spare header maps, cleared.
#[derive(Debug, Default)]
pub struct HeaderPool {
    spare: Vec<HeaderMap>,
}

impl HeaderPool {
    /// An empty map with room for at least `fields` fields.
    pub fn take(&mut self, fields: usize) -> HeaderMap {
        match self.spare.pop() {
            Some(mut map) => {
                map.reserve(fields);
                map
            }
            None => HeaderMap::with_capacity(fields),
        }
    }

    /// Gives a map back for a later head; its fields are dropped now.
    pub fn give(&mut self, mut map: HeaderMap) {
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
        map.insert("x-a", http::HeaderValue::from_static("1"));
        pool.give(map);
        let map = pool.take(4);
        assert!(map.is_empty());
        assert!(map.capacity() >= 4);
        let big = HeaderMap::with_capacity(1000);
        pool.give(big);
        assert!(pool.spare.is_empty(), "an oversized map is not kept");
        for _ in 0..SPARE + 3 {
            pool.give(HeaderMap::with_capacity(4));
        }
        assert_eq!(pool.spare.len(), SPARE);
    }
}
