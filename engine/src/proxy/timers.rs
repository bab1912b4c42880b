//! The engine's timer queue: a min-heap of (instant, owner) with lazy cancellation.
//!
//! Owners (connections, requests, clusters) keep their own deadlines; the heap only says when
//! to look. A popped entry whose owner is gone, or whose deadline moved, is ignored or
//! re-armed by the owner, so cancelling a timer costs nothing. Stale entries are compacted away
//! (`Engine::compact_timers`) once they outnumber live owners, so the heap stays proportional to
//! what is alive, not to how many requests came and went within the longest timeout.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::time::Instant;

use super::ids::{ConnId, RequestId};

/// Who asked to be woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerOwner {
    Conn(ConnId),
    Request(RequestId),
    ClusterSweep(usize),
}

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, TimerOwner)>>,
    seq: u64,
}

// `schedule` and `arm` are inlined into their callers: every request arms a timer, and the
// inliner left `arm` out of line or not depending on changes elsewhere in the crate (codegen
// units shifting); out of line it cost ~30 instructions a request more, measured.
impl Timers {
    #[inline]
    pub fn schedule(&mut self, at: Instant, owner: TimerOwner) {
        // The sequence number keeps pops deterministic for equal instants (FIFO).
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, owner)));
    }

    /// Wake `owner` at `at` unless it is already woken no later: `wake` is the instant the
    /// owner keeps of its armed entry. Every deadline an owner sets goes through here (or is
    /// later than its armed wake-up), so no deadline waits for a wake-up that never comes.
    #[inline]
    pub fn arm(&mut self, wake: &mut Option<Instant>, at: Instant, owner: TimerOwner) {
        if wake.is_none_or(|w| at < w) {
            *wake = Some(at);
            self.schedule(at, owner);
        }
    }

    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops the earliest entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerOwner)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                let Reverse((at, _, owner)) = self.heap.pop()?;
                Some((at, owner))
            }
            _ => None,
        }
    }

    /// Every armed entry, in no particular order (for invariant checks).
    #[cfg(debug_assertions)]
    pub fn entries(&self) -> impl Iterator<Item = (Instant, TimerOwner)> + '_ {
        self.heap
            .iter()
            .map(|Reverse((at, _, owner))| (*at, *owner))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drop every entry `valid` rejects (stale: its owner is gone or re-armed elsewhere).
    pub fn retain(&mut self, mut valid: impl FnMut(Instant, TimerOwner) -> bool) {
        self.heap
            .retain(|Reverse((at, _, owner))| valid(*at, *owner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_then_fifo_order() {
        let mut t = Timers::default();
        t.schedule(Instant::from_millis(5), TimerOwner::Conn(ConnId(1)));
        t.schedule(Instant::from_millis(1), TimerOwner::Conn(ConnId(2)));
        t.schedule(Instant::from_millis(5), TimerOwner::Conn(ConnId(3)));
        assert_eq!(t.next(), Some(Instant::from_millis(1)));
        assert!(t.pop_due(Instant::ZERO).is_none());
        let now = Instant::from_millis(10);
        let order: Vec<_> = std::iter::from_fn(|| t.pop_due(now))
            .map(|(_, o)| o)
            .collect();
        assert_eq!(
            order,
            vec![
                TimerOwner::Conn(ConnId(2)),
                TimerOwner::Conn(ConnId(1)),
                TimerOwner::Conn(ConnId(3))
            ]
        );
        assert_eq!(t.len(), 0);
    }
}
