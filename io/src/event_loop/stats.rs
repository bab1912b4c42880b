//! What an event loop did: loop turns (wake-ups), system calls and connections accepted.
//!
//! Why: at low request rates a proxy's CPU goes to waking up, not to proxying, so the figure
//! to watch is syscalls (and wake-ups) per proxied request. The loop counts in plain
//! integers and publishes them once per turn into [`IoCounters`], which other threads (the
//! runtime, a test) read without stopping it.

use std::ops::Add;
use std::sync::atomic::{AtomicU64, Ordering};

/// What an event loop did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Loop turns: each is one wait in the backend, so at most one wake-up.
    pub turns: u64,
    /// System calls made by the backend: epoll counts every socket call, `epoll_ctl` and
    /// `epoll_wait`; io_uring counts every `io_uring_enter` and every direct `sendmsg` (the
    /// operations the kernel runs from the ring are not syscalls). The few calls the loop makes itself per connection (shutdown, `SO_LINGER`,
    /// address look-ups and `TCP_NODELAY` at accept) are not counted.
    pub backend_syscalls: u64,
    /// Operations handed to io_uring's submission queue (receives, sends, accepts, connects,
    /// cancels, the wake-up read); 0 on epoll, whose operations are its syscalls.
    pub ring_operations: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// io_uring multishot receives ended by the kernel because every provided buffer was in
    /// use (ENOBUFS) and armed again; 0 on epoll and on io_uring's single-shot path.
    pub recv_buffers_exhausted: u64,
}

impl Add for IoStats {
    type Output = IoStats;

    fn add(self, other: IoStats) -> IoStats {
        IoStats {
            turns: self.turns + other.turns,
            backend_syscalls: self.backend_syscalls + other.backend_syscalls,
            ring_operations: self.ring_operations + other.ring_operations,
            accepted: self.accepted + other.accepted,
            recv_buffers_exhausted: self.recv_buffers_exhausted + other.recv_buffers_exhausted,
        }
    }
}

/// [`IoStats`] shared with other threads.
#[derive(Debug, Default)]
pub(crate) struct IoCounters {
    turns: AtomicU64,
    backend_syscalls: AtomicU64,
    ring_operations: AtomicU64,
    accepted: AtomicU64,
    recv_buffers_exhausted: AtomicU64,
}

impl IoCounters {
    /// Called by the loop only, so plain stores suffice (each value only grows).
    pub fn publish(&self, stats: &IoStats) {
        self.turns.store(stats.turns, Ordering::Relaxed);
        self.backend_syscalls
            .store(stats.backend_syscalls, Ordering::Relaxed);
        self.ring_operations
            .store(stats.ring_operations, Ordering::Relaxed);
        self.accepted.store(stats.accepted, Ordering::Relaxed);
        self.recv_buffers_exhausted
            .store(stats.recv_buffers_exhausted, Ordering::Relaxed);
    }

    pub fn load(&self) -> IoStats {
        IoStats {
            turns: self.turns.load(Ordering::Relaxed),
            backend_syscalls: self.backend_syscalls.load(Ordering::Relaxed),
            ring_operations: self.ring_operations.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            recv_buffers_exhausted: self.recv_buffers_exhausted.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_stats_read_back_and_add_up() {
        let counters = IoCounters::default();
        let a = IoStats {
            turns: 3,
            backend_syscalls: 10,
            ring_operations: 7,
            accepted: 1,
            recv_buffers_exhausted: 2,
        };
        counters.publish(&a);
        assert_eq!(counters.load(), a);
        assert_eq!(
            (a + a).backend_syscalls,
            20,
            "cores' figures add up field by field"
        );
    }
}
