//! The provided-buffer ring: receive buffers shared by every connection of a ring, lent to
//! the kernel, which picks one when bytes arrive.
//!
//! Why: a receive that names its own buffer must own one per connection for as long as it
//! waits, so an idle keep-alive connection costs a buffer (16 KiB each before this ring). With
//! a provided-buffer ring (Linux 5.19+) a multishot receive names only the *group*; the kernel
//! takes a buffer only when data is there, so buffer memory scales with bytes in flight, not
//! with connections: a fixed `count × size` per core.
//!
//! Each completion that carries a buffer is copied out (into a `Bytes` the engine adopts as
//! its receive buffer without a second copy, see the engine's `proxy::intake`) and the
//! buffer goes straight back to the ring, so the kernel runs out only when more receives
//! complete in one batch than there are buffers; it then ends the multishot with ENOBUFS and
//! the backend arms it again after the batch returned its buffers.
//!
//! Memory: the ring of descriptors and the buffers are anonymous mappings (the kernel wants
//! the ring page-aligned), owned here and unmapped on drop; [`super::ops::Ring`] leaks them
//! instead when operations outlived it (the kernel may still write into a buffer).

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// The buffer group id our multishot receives select from (one group per ring).
pub(super) const GROUP: u16 = 0;

/// An anonymous mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh private anonymous mapping; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(ptr.cast::<u8>())
            .map(|ptr| Mapping { ptr, len })
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; nothing refers to it any more
        // (the owner leaks the mapping instead while the kernel might).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A registered provided-buffer ring and its buffers.
pub(super) struct BufRing {
    entries: Mapping,
    buffers: Mapping,
    count: u16,
    size: usize,
    /// Our producer index (the kernel consumes from its head up to this).
    tail: u16,
    /// Which buffers the kernel holds: each is handed back exactly once per completion.
    #[cfg(debug_assertions)]
    in_kernel: Vec<bool>,
}

impl BufRing {
    /// Map `count` buffers of `size` bytes (`count` a power of two, at most 32768), register
    /// them with `ring` as group [`GROUP`] and give them all to the kernel.
    pub fn new(ring: &IoUring, count: u16, size: usize) -> io::Result<Self> {
        if !count.is_power_of_two() || count > 1 << 15 || size == 0 || size > u32::MAX as usize {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let page = 4096;
        let ring_bytes = (usize::from(count) * std::mem::size_of::<BufRingEntry>()).max(page);
        let entries = Mapping::new(ring_bytes)?;
        let buffers = Mapping::new(usize::from(count) * size)?;
        let mut this = BufRing {
            entries,
            buffers,
            count,
            size,
            tail: 0,
            #[cfg(debug_assertions)]
            in_kernel: vec![false; usize::from(count)],
        };
        // SAFETY: the ring memory is a page-aligned mapping of `count` entries that lives in
        // `this`; the owner unregisters it by destroying the ring, or leaks it.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                this.entries.ptr.as_ptr() as u64,
                count,
                GROUP,
                0,
            )?;
        }
        for bid in 0..count {
            this.give(bid);
        }
        Ok(this)
    }

    /// A completion carried buffer `bid` (its bytes are not wanted, or were copied out): the
    /// kernel may fill it again.
    pub fn give_back(&mut self, bid: u16) {
        if bid >= self.count {
            tracing::error!(bid, "completion names a buffer outside the ring");
            return;
        }
        #[cfg(debug_assertions)]
        {
            let lent = &mut self.in_kernel[usize::from(bid)];
            debug_assert!(*lent, "buffer {bid} given back twice, or never lent");
            *lent = false;
        }
        self.give(bid);
    }

    /// The bytes the kernel put in buffer `bid`.
    pub fn filled(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= self.count || len > self.size {
            tracing::error!(bid, len, "completion names bytes outside the ring");
            return None;
        }
        #[cfg(debug_assertions)]
        debug_assert!(
            self.in_kernel[usize::from(bid)],
            "buffer {bid} read while ours"
        );
        // SAFETY: buffer `bid` lies inside the mapping; the kernel finished writing its `len`
        // bytes (it posted the completion) and holds it no more until it is given back.
        Some(unsafe {
            std::slice::from_raw_parts(
                self.buffers.ptr.as_ptr().add(usize::from(bid) * self.size),
                len,
            )
        })
    }

    /// Put buffer `bid` at the tail of the ring and publish the new tail.
    fn give(&mut self, bid: u16) {
        #[cfg(debug_assertions)]
        {
            self.in_kernel[usize::from(bid)] = true;
        }
        let base = self.entries.ptr.as_ptr().cast::<BufRingEntry>();
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index < count`, so the entry lies inside the ring mapping; entries past the
        // published tail belong to us until the tail store below.
        unsafe {
            let entry = &mut *base.add(index);
            entry.set_addr(self.buffers.ptr.as_ptr().add(usize::from(bid) * self.size) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the u16 the kernel reads with acquire; it lies in the mapping
        // and is only written here.
        unsafe {
            let tail = BufRingEntry::tail(base).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

#[cfg(debug_assertions)]
impl BufRing {
    /// Buffers the kernel holds: all of them whenever no completion is being handled, since
    /// each is given back as soon as its completion is.
    pub fn lent(&self) -> usize {
        self.in_kernel.iter().filter(|b| **b).count()
    }

    pub fn count(&self) -> usize {
        usize::from(self.count)
    }
}
