//! Head encoding: forwarded request and response heads, and mesh-generated local responses.
//!
//! What goes out is always canonical HTTP/1.1: lower-case field names, single SP separators,
//! CRLF line endings, and framing fields written from the decided [`BodyFraming`], never copied
//! from the peer. Strings the engine may have rewritten (target, authority, reason, upgrade,
//! local-response fields) are sanitised so no configuration value can inject a line break.

use bytes::{BufMut, BytesMut};

use super::byte_search::value_ok;
use super::field_list::{Fields, Piece};
use super::head::{BodyFraming, RequestHead, ResponseHead};
use super::reason::reason_phrase;
use super::syntax::{is_token, is_vchar};

/// The decimal pairs "00" to "99", so that a number is written two digits per division.
const DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Writes `n`'s decimal digits into `buf` so that they end at `end`, and returns where they
/// start. Two digits per step (a status and a content length go out with every response,
/// and a division per digit was most of what writing them cost). `end` must leave room for
/// `n`'s digits (20 for any `u64`).
fn decimal_into(buf: &mut [u8], end: usize, mut n: u64) -> usize {
    debug_assert!(
        end <= buf.len() && (end >= 20 || n < 10u64.pow(end as u32)),
        "room for {n} before {end}"
    );
    let mut at = end;
    let mut put_pair = |at: usize, pair: usize| {
        if let (Some(dst), Some(src)) = (buf.get_mut(at..at + 2), DIGIT_PAIRS.get(pair..pair + 2)) {
            dst.copy_from_slice(src);
        }
    };
    while n >= 100 {
        at -= 2;
        put_pair(at, (n % 100) as usize * 2);
        n /= 100;
    }
    if n >= 10 {
        at -= 2;
        put_pair(at, n as usize * 2);
    } else {
        at -= 1;
        if let Some(d) = buf.get_mut(at) {
            *d = b'0' + n as u8;
        }
    }
    at
}

/// Writes `n` in decimal without allocating.
pub(crate) fn put_decimal(out: &mut BytesMut, n: u64) {
    let mut digits = [0u8; 20];
    let start = decimal_into(&mut digits, 20, n);
    out.put_slice(digits.get(start..).unwrap_or_default());
}

/// Writes a request-target, percent-encoding any byte that is not VCHAR (so a rewritten path
/// with a space or control character can never split the request line).
fn put_target(out: &mut BytesMut, target: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = target.as_bytes();
    // No short-circuit: the target is almost always clean, and the fold vectorises.
    if bytes.iter().fold(true, |ok, &b| ok & is_vchar(b)) && !bytes.is_empty() {
        out.put_slice(bytes);
        return;
    }
    if bytes.is_empty() {
        out.put_u8(b'/');
    }
    for &b in bytes {
        if is_vchar(b) {
            out.put_u8(b);
        } else {
            out.put_u8(b'%');
            out.put_u8(HEX[usize::from(b >> 4)]);
            out.put_u8(HEX[usize::from(b & 0x0f)]);
        }
    }
}

/// Writes a field value keeping only HTAB, SP, VCHAR and obs-text (drops CR, LF, NUL...).
///
/// A value of sixteen bytes or more (every request's authority) is checked sixteen bytes at
/// a compare ([`value_ok`], whose bytes are exactly those of [`valid_field_byte`]); the fold
/// spent ~12 instructions on each byte of its scalar tail.
fn put_field_text(out: &mut BytesMut, value: &[u8]) {
    // No short-circuit, as in `put_target`.
    let clean = value_ok(value, 0, value.len())
        .unwrap_or_else(|| value.iter().fold(true, |ok, &b| ok & valid_field_byte(b)));
    if clean {
        out.put_slice(value);
    } else {
        for &b in value.iter().filter(|&&b| valid_field_byte(b)) {
            out.put_u8(b);
        }
    }
}

fn valid_field_byte(b: u8) -> bool {
    (b == b'\t') | ((b >= 0x20) & (b != 0x7f))
}

/// Writes the fields in order. Received lines already in the form written here are copied a
/// run at a time (the parser lower-cased and validated them; see [`Fields::pieces`]), so the
/// output is byte for byte what writing each field would give.
fn put_headers(out: &mut BytesMut, headers: &Fields) {
    for piece in headers.pieces() {
        match piece {
            Piece::Lines(lines) => out.put_slice(lines),
            Piece::Field(name, value) => {
                out.put_slice(name);
                out.put_slice(b": ");
                out.put_slice(value);
                out.put_slice(b"\r\n");
            }
        }
    }
}

fn put_framing(out: &mut BytesMut, framing: BodyFraming) {
    match framing {
        BodyFraming::ContentLength(n) => {
            // The whole line laid out on the stack and written at once: the digits end
            // before the CRLF, and the fixed-length name goes right before them.
            const NAME: &[u8; 16] = b"content-length: ";
            let mut line = [0u8; 16 + 20 + 2];
            let end = line.len() - 2;
            if let Some(crlf) = line.get_mut(end..) {
                crlf.copy_from_slice(b"\r\n");
            }
            let start = decimal_into(&mut line, end, n) - NAME.len();
            if let Some(name) = line.get_mut(start..start + NAME.len()) {
                name.copy_from_slice(NAME);
            }
            out.put_slice(line.get(start..).unwrap_or_default());
        }
        BodyFraming::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
        BodyFraming::None | BodyFraming::CloseDelimited => {}
    }
}

fn headers_len_hint(headers: &Fields) -> usize {
    headers.lines_len() + 64
}

/// Writes "METHOD target HTTP/1.1\r\nhost: authority\r\n" + headers + framing fields +
/// `connection: upgrade` / `upgrade: x` when `head.upgrade` is set + "\r\n". Headers are
/// written exactly as in the list (call `strip_hop_by_hop` first).
pub fn encode_request_head(head: &RequestHead, out: &mut BytesMut) {
    out.reserve(head.target.len() + head.authority.len() + headers_len_hint(&head.headers));
    out.put_slice(head.method.as_str().as_bytes());
    out.put_u8(b' ');
    put_target(out, &head.target);
    out.put_slice(b" HTTP/1.1\r\nhost: ");
    put_field_text(out, head.authority.as_bytes());
    out.put_slice(b"\r\n");
    put_headers(out, &head.headers);
    put_framing(out, head.framing);
    if let Some(protocol) = &head.upgrade {
        out.put_slice(b"connection: upgrade\r\nupgrade: ");
        put_field_text(out, protocol.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

fn put_status_line(out: &mut BytesMut, status: u16, reason: &str) {
    if (100..1000).contains(&status) {
        // Every status a parsed response or the mesh has: "HTTP/1.1 NNN " in one write.
        let mut start = *b"HTTP/1.1 000 ";
        decimal_into(&mut start, 12, u64::from(status));
        out.put_slice(&start);
    } else {
        out.put_slice(b"HTTP/1.1 ");
        put_decimal(out, u64::from(status));
        out.put_u8(b' ');
    }
    put_field_text(out, reason.as_bytes());
    out.put_slice(b"\r\n");
}

/// Writes "HTTP/1.1 status reason" + headers + framing fields (CloseDelimited and None write
/// none) + `connection: close` when `!keep_alive` + "\r\n". An empty reason is replaced by the
/// canonical phrase.
pub fn encode_response_head(head: &ResponseHead, out: &mut BytesMut) {
    encode_response_head_with_room(head, 0, out);
}

/// [`encode_response_head`], reserving `room` more bytes for what follows (the body bytes
/// already buffered), so that they don't regrow the buffer right after the head.
pub fn encode_response_head_with_room(head: &ResponseHead, room: usize, out: &mut BytesMut) {
    out.reserve(head.reason.len() + headers_len_hint(&head.headers) + room);
    let reason = if head.reason.is_empty() {
        reason_phrase(head.status)
    } else {
        &head.reason
    };
    put_status_line(out, head.status, reason);
    put_headers(out, &head.headers);
    put_framing(out, head.framing);
    if !head.keep_alive {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"\r\n");
}

/// Statuses that never carry content (RFC 9110 §6.4.1); no Content-Length is sent for 1xx and
/// 204 (RFC 9110 §8.6) and none for 304 either, since there is no representation to describe.
fn bodiless_status(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// Writes a complete mesh-generated response: status line, `content-length`,
/// `content-type: text/plain` when the body is non-empty (unless an extra header sets one),
/// the extra headers, `connection: close` when `close`, then the body. Extra headers with an
/// invalid name, or naming a framing/connection field the encoder controls, are skipped; CR,
/// LF and other control bytes are dropped from their values. For 1xx, 204 and 304 no
/// content-length, content-type or body is written.
pub fn encode_local_response(
    status: u16,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
    out: &mut BytesMut,
) {
    let bodiless = bodiless_status(status);
    let extras_len: usize = extra_headers
        .iter()
        .map(|(n, v)| n.len() + v.len() + 4)
        .sum();
    out.reserve(96 + extras_len + if bodiless { 0 } else { body.len() });
    put_status_line(out, status, reason_phrase(status));
    if !bodiless {
        out.put_slice(b"content-length: ");
        put_decimal(out, body.len() as u64);
        out.put_slice(b"\r\n");
        let has_type = extra_headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if !body.is_empty() && !has_type {
            out.put_slice(b"content-type: text/plain\r\n");
        }
    }
    for (name, value) in extra_headers {
        let controlled = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c));
        if controlled || !is_token(name.as_bytes()) {
            continue;
        }
        for b in name.bytes() {
            out.put_u8(b.to_ascii_lowercase());
        }
        out.put_slice(b": ");
        put_field_text(out, value.trim_matches([' ', '\t']).as_bytes());
        out.put_slice(b"\r\n");
    }
    if close {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    if !bodiless {
        out.put_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `put_field_text` wrote before values were checked a block at a time.
    fn by_fold(value: &[u8]) -> Vec<u8> {
        value
            .iter()
            .copied()
            .filter(|&b| valid_field_byte(b))
            .collect()
    }

    /// The same bytes written as by the fold alone, for values of any length drawn from the
    /// bytes that matter (CTLs, HTAB, SP, DEL, obs-text, visible ASCII).
    #[quickcheck_macros::quickcheck]
    fn field_text_agrees_with_the_fold(raw: Vec<u8>) -> bool {
        const ALPHABET: &[u8] = b"\x00\t\n\r\x1f \x7f\x80\xffaZ:.-";
        let value: Vec<u8> = raw
            .iter()
            .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()])
            .collect();
        let mut out = BytesMut::new();
        put_field_text(&mut out, &value);
        out[..] == by_fold(&value)[..]
    }
}
