//! What every responder shares, so the binaries differ only in how they drive sockets.
//!
//! The protocol work is deliberately tiny and identical: a request is everything up to and
//! including `\r\n\r\n` (GET only; bodies are not supported), and every request is answered with
//! the same keep-alive response carrying a 1 KiB body. Any difference between the binaries'
//! throughput or CPU per request is therefore the runtime's (syscalls, wake-ups, task
//! machinery), not the HTTP handling's.

use std::net::SocketAddr;

/// Size of each connection's receive buffer in every binary (the same 16 KiB the project's
/// io_uring driver uses).
pub const RECV_BUF: usize = 16 * 1024;

/// The fixed response: status line, two headers, and a 1024-byte body.
pub static RESPONSE: &[u8] = {
    const HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nContent-Type: text/plain\r\n\r\n";
    const LEN: usize = HEAD.len() + 1024;
    const BYTES: [u8; LEN] = {
        let mut out = [b'x'; LEN];
        let mut i = 0;
        while i < HEAD.len() {
            out[i] = HEAD[i];
            i += 1;
        }
        out
    };
    &BYTES
};

/// Counts the complete requests at the start of `buf` and returns `(requests, bytes consumed)`.
/// Bytes after the last `\r\n\r\n` are an incomplete request and stay in the caller's buffer.
pub fn parse(buf: &[u8]) -> (usize, usize) {
    let mut count = 0;
    let mut consumed = 0;
    while let Some(end) = find_end(&buf[consumed..]) {
        count += 1;
        consumed += end;
    }
    (count, consumed)
}

/// Offset just past the first `\r\n\r\n` in `buf`.
fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The bytes answering `count` pipelined requests. wrk does not pipeline, so `count` is 1 on
/// the hot path and this borrows the static response without copying.
pub fn responses(count: usize) -> std::borrow::Cow<'static, [u8]> {
    if count == 1 {
        std::borrow::Cow::Borrowed(RESPONSE)
    } else {
        std::borrow::Cow::Owned(RESPONSE.repeat(count))
    }
}

/// The address to listen on: the first argument, default `127.0.0.1:8080`.
pub fn listen_addr() -> SocketAddr {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    match arg.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("bad listen address {arg:?}: {e}");
            std::process::exit(2);
        }
    }
}

/// Removes the `consumed` bytes of answered requests from the front of `buf`.
pub fn drain_front(buf: &mut Vec<u8>, consumed: usize) {
    if consumed == buf.len() {
        buf.clear();
    } else if consumed > 0 {
        buf.drain(..consumed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_has_a_1k_body() {
        let text = std::str::from_utf8(RESPONSE).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        assert!(head.contains("Content-Length: 1024"));
        assert_eq!(body.len(), 1024);
    }

    #[test]
    fn parse_counts_whole_requests_and_keeps_partial_ones() {
        let two = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\nGET / HT";
        let (n, used) = parse(two);
        assert_eq!(n, 2);
        assert_eq!(&two[used..], b"GET / HT");
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), (0, 0));
    }
}
