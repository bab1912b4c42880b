//! A connection's queue of bytes waiting to be written, and partial-write handling.
//!
//! The engine hands over `Output::Send` chunks as `Bytes`; the socket accepts what fits in its
//! buffer. This queue keeps the chunks in order without copying them, writes as much as the
//! socket takes (vectored, several chunks per syscall), and remembers exactly where a partial
//! write stopped. Both backends use it: epoll writes from it directly, io_uring hands references
//! to its first chunks to a `sendmsg` and advances it by what the completion says was written.
//! Its size is bounded by the engine, which only sends what its own
//! per-connection buffer limit allows and waits for `WriteDrained` before sending more.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes};

/// Chunks handed to one `write_vectored` call at most.
const MAX_IOVECS: usize = 64;

/// What a flush achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued has been written.
    Drained,
    /// The socket would block with bytes still queued: wait for writable.
    Blocked,
}

/// Bytes queued for one connection, in send order.
#[derive(Debug, Default)]
pub struct SendQueue {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl SendQueue {
    pub fn new() -> Self {
        SendQueue::default()
    }

    /// Queue `data` after everything queued before (empty chunks are dropped).
    pub fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        self.chunks.push_back(data);
    }

    /// Bytes still to write.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forget everything queued (the connection is being reset).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// Write as much as `w` accepts. Returns [`Flush::Drained`] once the queue is empty,
    /// [`Flush::Blocked`] when `w` reports `WouldBlock` or takes fewer bytes than it was
    /// offered, or the write error (a writer accepting zero bytes is `WriteZero`).
    ///
    /// Why a short write counts as blocked: a non-blocking TCP `sendmsg` stops short only
    /// when the socket buffer is full, and it then sets `SOCK_NOSPACE` so that the space an
    /// ACK frees raises a write-space wake-up (epoll's edge, io_uring's poll): the next write
    /// would only return EAGAIN. Stopping at the short write saves that syscall (Tokio's
    /// `poll_write` does the same).
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<Flush> {
        loop {
            if self.chunks.is_empty() {
                return Ok(Flush::Drained);
            }
            let (result, offered) = {
                // The iovecs live on the stack: a write allocates nothing.
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut offered = 0;
                let mut count = 0;
                for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                    *slot = IoSlice::new(chunk);
                    offered += chunk.len();
                    count += 1;
                }
                let slices = slices.get(..count).unwrap_or(&[]);
                (w.write_vectored(slices), offered)
            };
            match result {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket accepted no bytes",
                    ))
                }
                Ok(n) => {
                    self.advance(n);
                    if n < offered {
                        return Ok(Flush::Blocked);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) => return Err(e),
            }
        }
    }

    /// The queued chunks, in order (io_uring hands references to them to a send).
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.chunks.iter()
    }

    /// Drop the first `n` queued bytes (they were written).
    pub fn advance(&mut self, mut n: usize) {
        debug_assert!(n <= self.len, "{n} bytes written of {} queued", self.len);
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        debug_assert_eq!(
            self.len,
            self.chunks.iter().map(Bytes::len).sum::<usize>(),
            "send queue length out of step with its chunks"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck_macros::quickcheck;

    /// A socket stand-in: accepts at most `budget[i]` bytes on the i-th write, `WouldBlock`
    /// when the budget for this turn is 0, and records everything accepted.
    struct ScriptedWriter {
        written: Vec<u8>,
        budgets: VecDeque<usize>,
        /// Once the budgets run out: accept everything (instead of `WouldBlock`).
        unlimited: bool,
    }

    impl Write for ScriptedWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let budget = match self.budgets.pop_front() {
                Some(b) => b,
                None if self.unlimited => usize::MAX,
                None => return Err(io::ErrorKind::WouldBlock.into()),
            };
            if budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut left = budget;
            let mut n = 0;
            for b in bufs {
                let take = left.min(b.len());
                self.written.extend_from_slice(&b[..take]);
                n += take;
                left -= take;
                if left == 0 {
                    break;
                }
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut q = SendQueue::new();
        q.push(Bytes::from_static(b"hello "));
        q.push(Bytes::new());
        q.push(Bytes::from_static(b"world"));
        assert_eq!(q.len(), 11);
        let mut w = ScriptedWriter {
            written: Vec::new(),
            budgets: VecDeque::from(vec![4, 0]),
            unlimited: false,
        };
        assert_eq!(q.write_to(&mut w).unwrap(), Flush::Blocked);
        assert_eq!(w.written, b"hell");
        assert_eq!(q.len(), 7);
        assert_eq!(
            w.budgets.len(),
            1,
            "a short write is taken as a full socket: no second write"
        );
        w.budgets = VecDeque::from(vec![3, 100]);
        assert_eq!(q.write_to(&mut w).unwrap(), Flush::Blocked, "short again");
        assert_eq!(q.write_to(&mut w).unwrap(), Flush::Drained);
        assert_eq!(w.written, b"hello world");
        assert!(q.is_empty());
    }

    #[test]
    fn zero_write_is_an_error_and_interrupted_is_retried() {
        struct Zero;
        impl Write for Zero {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut q = SendQueue::new();
        q.push(Bytes::from_static(b"x"));
        let err = q.write_to(&mut Zero).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);

        struct InterruptOnce(bool, Vec<u8>);
        impl Write for InterruptOnce {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if !self.0 {
                    self.0 = true;
                    return Err(io::ErrorKind::Interrupted.into());
                }
                self.1.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = InterruptOnce(false, Vec::new());
        assert_eq!(q.write_to(&mut w).unwrap(), Flush::Drained);
        assert_eq!(w.1, b"x");
    }

    #[test]
    fn empty_queue_is_drained_without_writing() {
        let mut q = SendQueue::new();
        let mut w = ScriptedWriter {
            written: Vec::new(),
            budgets: VecDeque::new(),
            unlimited: false,
        };
        assert_eq!(q.write_to(&mut w).unwrap(), Flush::Drained);
    }

    /// Whatever the chunking and however the socket splits writes, the bytes come out once,
    /// in order, and the length bookkeeping stays exact.
    #[quickcheck]
    fn bytes_arrive_in_order(chunks: Vec<Vec<u8>>, budgets: Vec<u8>) -> bool {
        let mut q = SendQueue::new();
        let mut expected = Vec::new();
        for c in &chunks {
            expected.extend_from_slice(c);
            q.push(Bytes::from(c.clone()));
        }
        let mut w = ScriptedWriter {
            written: Vec::new(),
            budgets: budgets.iter().map(|&b| usize::from(b)).collect(),
            unlimited: false,
        };
        // Replay the budgets turn by turn, then let everything through.
        for _ in 0..=budgets.len() {
            if q.write_to(&mut w).is_err() {
                return false;
            }
            if q.len() + w.written.len() != expected.len() {
                return false;
            }
            if w.budgets.is_empty() {
                break;
            }
        }
        w.unlimited = true;
        q.write_to(&mut w).ok() == Some(Flush::Drained) && w.written == expected
    }
}
