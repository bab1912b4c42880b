//! The discrete-event queue: events ordered by `(instant, sequence number)`.
//!
//! A `BTreeMap` keyed by time and a monotonically increasing sequence makes the order total and
//! independent of anything but the order events were scheduled in: two events at the same
//! instant fire first-scheduled first, on every machine, every run.

use std::collections::BTreeMap;

use trellis_engine::Instant;

/// A time-ordered queue of events of type `E`.
#[derive(Debug)]
pub struct EventQueue<E> {
    events: BTreeMap<(Instant, u64), E>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            events: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedule `event` at `at`.
    pub fn push(&mut self, at: Instant, event: E) {
        self.seq += 1;
        self.events.insert((at, self.seq), event);
    }

    /// The instant of the earliest event.
    pub fn next_time(&self) -> Option<Instant> {
        self.events.first_key_value().map(|((t, _), _)| *t)
    }

    /// Remove and return the earliest event.
    pub fn pop(&mut self) -> Option<(Instant, E)> {
        self.events.pop_first().map(|((t, _), e)| (t, e))
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
}
