//! The discrete-event queue: events ordered by `(instant, sequence number)`.
//!
//! A binary min-heap keyed by time and a monotonically increasing sequence number makes the
//! order total and independent of anything but the order events were scheduled in: two events
//! at the same instant fire first-scheduled first, on every machine, every run. (Keys are
//! unique, so the heap's lack of stability does not matter; the event itself never takes part
//! in the comparison.)

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use trellis_engine::Instant;

/// One scheduled event, ordered by `(at, seq)` only.
#[derive(Debug)]
struct Entry<E> {
    at: Instant,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A time-ordered queue of events of type `E`.
#[derive(Debug)]
pub struct EventQueue<E> {
    events: BinaryHeap<Reverse<Entry<E>>>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            events: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedule `event` at `at`.
    pub fn push(&mut self, at: Instant, event: E) {
        self.seq += 1;
        self.events.push(Reverse(Entry {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// The instant of the earliest event.
    pub fn next_time(&self) -> Option<Instant> {
        self.events.peek().map(|Reverse(e)| e.at)
    }

    /// Remove and return the earliest event.
    pub fn pop(&mut self) -> Option<(Instant, E)> {
        self.events.pop().map(|Reverse(e)| (e.at, e.event))
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_time_then_schedule_order() {
        let mut q = EventQueue::default();
        q.push(Instant::from_millis(5), "late");
        q.push(Instant::from_millis(1), "first");
        q.push(Instant::from_millis(1), "second");
        assert_eq!(q.next_time(), Some(Instant::from_millis(1)));
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["first", "second", "late"]);
        assert!(q.is_empty());
    }

    #[test]
    fn many_equal_instants_keep_schedule_order() {
        // A heap is not stable by itself: the sequence number must decide ties, here among
        // thousands of events at a handful of instants pushed in a scrambled time order.
        let mut q = EventQueue::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut expected = Vec::new();
        for i in 0..5000u32 {
            let t = Instant::from_millis(rng.u64(0..8));
            q.push(t, i);
            expected.push((t, i));
        }
        expected.sort_by_key(|&(t, i)| (t, i));
        let got: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(got, expected);
        assert_eq!(q.len(), 0);
    }
}
