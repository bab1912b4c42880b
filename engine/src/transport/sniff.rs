//! Telling a TLS client from a plaintext one by its first bytes, for PeerAuthentication's
//! PERMISSIVE mode (and a clear refusal of plaintext under STRICT).
//!
//! Envoy does this with its `tls_inspector` listener filter, which Istio puts on every
//! inbound listener: it reads the first bytes and, if they are a TLS ClientHello, the filter
//! chain for `transport_protocol: tls` takes the connection; otherwise the `raw_buffer` one.
//! Here the test is on the record and handshake headers, which is all a decision needs: a
//! TLS connection opens with a handshake record (content type 22, record version 3.x)
//! carrying a ClientHello (handshake type 1). No HTTP/1 request line can begin with byte 22,
//! so plaintext HTTP is known from its first byte.

/// What the first bytes of a connection say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniffed {
    /// A TLS ClientHello begins here.
    Tls,
    /// Not TLS: treat the bytes as the application protocol's.
    Plaintext,
    /// Too few bytes to tell; everything seen so far is consistent with TLS.
    NeedMore,
}

/// Bytes [`sniff`] needs at most to decide.
pub const SNIFF_BYTES: usize = 6;

const HANDSHAKE_RECORD: u8 = 22;
const CLIENT_HELLO: u8 = 1;

/// Classify a connection by the bytes it opened with.
pub fn sniff(first: &[u8]) -> Sniffed {
    // Record header: type, version major, version minor, length (2); then the handshake
    // message type. Each byte seen must fit, or it is not TLS.
    let checks: [fn(u8) -> bool; SNIFF_BYTES] = [
        |b| b == HANDSHAKE_RECORD,
        |b| b == 3,
        |b| b <= 4,
        |_| true,
        |_| true,
        |b| b == CLIENT_HELLO,
    ];
    for (byte, fits) in first.iter().zip(checks) {
        if !fits(*byte) {
            return Sniffed::Plaintext;
        }
    }
    if first.len() >= SNIFF_BYTES {
        Sniffed::Tls
    } else {
        Sniffed::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck_macros::quickcheck;

    #[test]
    fn client_hello_is_tls() {
        // The first bytes of a TLS 1.3 ClientHello (legacy record version 3.1).
        assert_eq!(sniff(&[22, 3, 1, 2, 0, 1, 0, 1, 252]), Sniffed::Tls);
        assert_eq!(sniff(&[22, 3, 3, 0, 200, 1]), Sniffed::Tls);
    }

    #[test]
    fn http_is_plaintext_from_the_first_byte() {
        for line in ["GET / HTTP/1.1\r\n", "PRI * HTTP/2.0\r\n", "\r\n"] {
            assert_eq!(sniff(&line.as_bytes()[..1]), Sniffed::Plaintext);
        }
    }

    #[test]
    fn a_prefix_of_tls_needs_more() {
        assert_eq!(sniff(&[]), Sniffed::NeedMore);
        assert_eq!(sniff(&[22]), Sniffed::NeedMore);
        assert_eq!(sniff(&[22, 3, 1, 2, 0]), Sniffed::NeedMore);
        // An alert record, or a ServerHello, is not a client opening a connection.
        assert_eq!(sniff(&[21, 3, 3]), Sniffed::Plaintext);
        assert_eq!(sniff(&[22, 3, 3, 0, 9, 2]), Sniffed::Plaintext);
        assert_eq!(sniff(&[22, 2]), Sniffed::Plaintext);
    }

    /// Feeding more bytes never changes a decision already made.
    #[quickcheck]
    fn decisions_are_stable(bytes: Vec<u8>) -> bool {
        let full = sniff(&bytes);
        (0..=bytes.len()).all(|n| match sniff(&bytes[..n]) {
            Sniffed::NeedMore => true,
            decided => decided == full,
        })
    }

    /// Once enough bytes are there, there is a decision.
    #[quickcheck]
    fn enough_bytes_decide(bytes: Vec<u8>) -> bool {
        bytes.len() < SNIFF_BYTES || sniff(&bytes) != Sniffed::NeedMore
    }
}
