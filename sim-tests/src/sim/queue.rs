//! The discrete-event queue: events ordered by `(instant, sequence number)`.
//!
//! A binary min-heap keyed by time and a monotonically increasing sequence number makes the
//! order total and independent of anything but the order events were scheduled in: two events
//! at the same instant fire first-scheduled first, on every machine, every run. (Keys are
//! unique, so the heap's lack of stability does not matter; the event itself never takes part
//! in the comparison.)

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use trellis_engine::Instant;

/// A time-ordered queue of events of type `E`.
///
/// The heap holds only small keys `(at, seq, slot)`; the events wait in `slots` (reused
/// through `free`), so sifting moves 24 bytes instead of a whole event.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedule `event` at `at`.
    pub fn push(&mut self, at: Instant, event: E) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 pending events")
            }
        };
        // `seq` is unique, so `slot` never decides the order.
        self.heap.push(Reverse((at, self.seq, slot)));
    }

    /// The instant of the earliest event.
    pub fn next_time(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Remove and return the earliest event.
    pub fn pop(&mut self) -> Option<(Instant, E)> {
        let Reverse((at, _, slot)) = self.heap.pop()?;
        self.free.push(slot);
        let event = self.slots[slot as usize].take()?;
        Some((at, event))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
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
