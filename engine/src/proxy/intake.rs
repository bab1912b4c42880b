//! Taking received bytes into a connection's receive buffer, adopting them instead of copying
//! them when nothing is buffered yet.
//!
//! Why: a connection's parser (request and response heads, body decoders, tunnels) works on
//! its `recv: BytesMut` and forwards bodies as `Bytes` split off it. Copying each received
//! chunk into `recv` was one full copy of every byte the proxy moved. Most chunks arrive when
//! `recv` is empty (the previous one was consumed whole: a complete request, a body chunk
//! relayed at once), and then the chunk itself can *become* `recv`: `Bytes::try_into_mut`
//! hands back its allocation, without a copy, when the caller holds the only reference. Only
//! when bytes are already buffered (a head split across reads) or the chunk's memory is
//! shared is it appended, as before.
//!
//! Small chunks are still copied: adopting one costs an allocation later (the first split of
//! an adopted buffer allocates the header `Bytes` shares it through, where the old `recv` was
//! already shared and its spare capacity is reused), and a malloc costs more than copying a
//! request head. Measured on the proxied keep-alive GET (`io/tests/runtime_allocs.rs`):
//! adopting every chunk added two allocations per request. From [`ADOPT_MIN`] bytes (bodies,
//! bulk transfers, full provided buffers) the copy is the larger cost, and the chunk is
//! adopted.
//!
//! Why this shape and not a new entry point taking a lent `&[u8]`: the parsers and the
//! zero-copy body forwarding need an owned `BytesMut`, so a lent slice would be copied into
//! `recv` anyway (the same copy, moved). Instead each backend hands over memory it gave up:
//! epoll copies the shared read buffer's bytes into a buffer of their exact size (the one copy
//! left, which used to be followed by a second into `recv`); io_uring copies out of the
//! provided buffer the kernel picked (returning it to the kernel at once) — again the only
//! copy. `Input::Received { data: Bytes }` is unchanged, and adopting a buffer changes where
//! bytes live, never which bytes: the simulator's traces are byte-identical.

use bytes::{Bytes, BytesMut};

/// The smallest chunk adopted rather than copied.
pub const ADOPT_MIN: usize = 4096;

/// Append `data` to `recv`, adopting its memory when `recv` is empty, `data` is at least
/// [`ADOPT_MIN`] bytes and unshared. Inline: two calls a request, and whether the compiler
/// inlined it across codegen units moved with unrelated changes (~45 instructions).
#[inline]
pub(super) fn take_in(recv: &mut BytesMut, data: Bytes) {
    if !recv.is_empty() || data.len() < ADOPT_MIN {
        recv.extend_from_slice(&data);
        return;
    }
    match data.try_into_mut() {
        Ok(adopted) => *recv = adopted,
        Err(shared) => recv.extend_from_slice(&shared),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_unshared_chunk_is_adopted_without_a_copy() {
        let body = vec![7u8; ADOPT_MIN];
        let data = Bytes::copy_from_slice(&body);
        let at = data.as_ptr();
        let mut recv = BytesMut::new();
        take_in(&mut recv, data);
        assert_eq!(recv.as_ptr(), at, "the chunk's memory became the buffer");
        assert_eq!(&recv[..], &body[..]);
    }

    #[test]
    fn a_small_chunk_is_copied_into_the_buffer_it_has() {
        let mut recv = BytesMut::with_capacity(64);
        let at = recv.as_ptr();
        take_in(&mut recv, Bytes::copy_from_slice(b"GET / HTTP/1.1\r\n\r\n"));
        assert_eq!(recv.as_ptr(), at, "the spare capacity was reused");
        assert_eq!(&recv[..], b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn shared_or_appended_chunks_are_copied_in_order() {
        let data = Bytes::copy_from_slice(&[b'a'; ADOPT_MIN]);
        let keep = data.clone();
        let mut recv = BytesMut::new();
        take_in(&mut recv, data);
        assert_ne!(
            recv.as_ptr(),
            keep.as_ptr(),
            "shared memory is never adopted"
        );
        take_in(&mut recv, Bytes::from_static(b"def"));
        assert_eq!(recv.len(), ADOPT_MIN + 3);
        assert_eq!(&recv[ADOPT_MIN..], b"def");
        let mut empty = BytesMut::new();
        take_in(&mut empty, Bytes::new());
        assert!(empty.is_empty());
    }
}
