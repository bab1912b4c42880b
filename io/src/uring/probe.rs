//! Which receive path this kernel gets, decided once when a ring is built, and logged.
//!
//! Multishot receive (Linux 6.0) uses the same opcode as a plain receive with a flag older
//! kernels reject only when the operation runs, and provided-buffer rings (5.19) are only
//! known by trying to register one; an opcode probe cannot tell. So the probe is a real
//! multishot receive on a socket pair: one byte sent, a completion that carries it *and* says
//! more will come (IORING_CQE_F_MORE) means multishot works; anything else (EINVAL, no
//! F_MORE, nothing within a second) means the single-shot path. Multishot accept (5.19) is
//! older than multishot receive, so it rides on the same verdict.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::cqueue;
use trellis_engine::ConnId;

use super::bufring::{self, BufRing};
use super::ops::Ring;

/// The connection id the probe's receive runs under (never one the engine gives out).
const PROBE_CONN: ConnId = ConnId(u64::MAX);

/// Set up provided buffers (`count`, rounded up to a power of two, of `size` bytes) and probe
/// multishot receive; true if the multishot path is in use. `count` 0 asks for single-shot.
pub(super) fn choose_receive_path(ring: &mut Ring, count: usize, size: usize) -> bool {
    if count == 0 {
        tracing::info!("io_uring receive path: single-shot (provided buffers disabled)");
        return false;
    }
    let count = u16::try_from(count.next_power_of_two().min(1 << 15)).unwrap_or(1 << 15);
    match BufRing::new(&ring.ring, count, size) {
        Ok(bufs) => ring.bufs = Some(bufs),
        Err(e) => {
            tracing::info!(error = %e, "io_uring receive path: single-shot (no provided-buffer rings)");
            return false;
        }
    }
    match multishot_recv_works(ring) {
        Ok(true) => {
            tracing::info!(
                buffers = count,
                buffer_bytes = size,
                "io_uring receive path: multishot accept and receive with provided buffers"
            );
            true
        }
        verdict => {
            let error = verdict.err().map(|e| e.to_string()).unwrap_or_default();
            tracing::info!(%error, "io_uring receive path: single-shot (multishot receive unsupported)");
            if ring.ops.live() == 0 {
                if let Err(e) = ring.ring.submitter().unregister_buf_ring(bufring::GROUP) {
                    tracing::debug!(error = %e, "provided buffers not unregistered");
                }
                ring.bufs = None;
            }
            // else: the probe's receive is still in flight and may yet take a buffer; the
            // ring stays registered (and unused) until the ring is dropped.
            false
        }
    }
}

/// Run one multishot receive on a socket pair.
fn multishot_recv_works(ring: &mut Ring) -> io::Result<bool> {
    let mut fds = [0i32; 2];
    // SAFETY: plain syscall writing two descriptors into `fds`; checked before use.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two fresh descriptors owned by nobody else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: writes one byte from a live buffer to a descriptor we own.
    if unsafe { libc::write(theirs.as_raw_fd(), b"x".as_ptr().cast(), 1) } != 1 {
        return Err(io::Error::last_os_error());
    }
    let mut theirs = Some(theirs);
    let ud = ring.recv_multi(PROBE_CONN, Rc::new(ours));
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut works = false;
    while Instant::now() < deadline {
        ring.submit_and_wait(Some(Duration::from_millis(100)))?;
        let done: Vec<(u64, i32, u32)> = ring
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        for (user_data, result, flags) in done {
            if let (Some(bid), Some(bufs)) = (cqueue::buffer_select(flags), ring.bufs.as_mut()) {
                bufs.give_back(bid);
            }
            if user_data != ud {
                continue;
            }
            if cqueue::more(flags) {
                works |= result == 1;
                // Closing the other end ends the receive with EOF, its last completion.
                theirs = None;
            } else {
                ring.ops.take(ud);
                return Ok(works);
            }
        }
    }
    drop(theirs);
    ring.cancel(ud);
    Ok(false)
}
