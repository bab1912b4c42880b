//! Body encoding for the outgoing framing: raw bytes for Content-Length and close-delimited
//! bodies, chunks for chunked ones.
//!
//! The encoder never writes more than a Content-Length body declared: excess bytes would be
//! read by the peer as the start of the next message, which is exactly a desync. A body with
//! framing `None` writes nothing.

use super::body::Trailers;
use bytes::{BufMut, BytesMut};

use super::head::BodyFraming;

/// Encodes one message body.
#[derive(Clone, Debug)]
pub struct BodyEncoder {
    framing: BodyFraming,
    /// Bytes still allowed for a Content-Length body.
    remaining: u64,
    ended: bool,
}

impl BodyEncoder {
    pub fn new(framing: BodyFraming) -> Self {
        let remaining = match framing {
            BodyFraming::ContentLength(n) => n,
            _ => 0,
        };
        BodyEncoder {
            framing,
            remaining,
            ended: false,
        }
    }

    /// Writes `data`; empty data writes nothing (an empty chunk would end a chunked body).
    pub fn encode_data(&mut self, data: &[u8], out: &mut BytesMut) {
        if data.is_empty() || self.ended {
            return;
        }
        match self.framing {
            BodyFraming::None => {}
            BodyFraming::ContentLength(_) => {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                out.put_slice(data.get(..n).unwrap_or_default());
                self.remaining -= n as u64;
            }
            BodyFraming::CloseDelimited => out.put_slice(data),
            BodyFraming::Chunked => {
                out.reserve(data.len() + 20);
                put_hex(out, data.len() as u64);
                out.put_slice(b"\r\n");
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
        }
    }

    /// Ends the body: for chunked, "0\r\n" + trailers + "\r\n"; nothing for other framings.
    /// Only the first call writes.
    pub fn encode_end(&mut self, trailers: &Trailers, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.framing == BodyFraming::Chunked {
            out.put_slice(b"0\r\n");
            for (name, value) in trailers.iter() {
                out.put_slice(name.as_str().as_bytes());
                out.put_slice(b": ");
                out.put_slice(value.as_bytes());
                out.put_slice(b"\r\n");
            }
            out.put_slice(b"\r\n");
        }
    }

    /// Whether `encode_end` has been called.
    pub fn is_ended(&self) -> bool {
        self.ended
    }
}

/// Writes `n` in lower-case hex without leading zeros.
fn put_hex(out: &mut BytesMut, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.put_u8(HEX[((n >> (i * 4)) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(framing: BodyFraming, parts: &[&[u8]]) -> Vec<u8> {
        let mut e = BodyEncoder::new(framing);
        let mut out = BytesMut::new();
        for p in parts {
            e.encode_data(p, &mut out);
        }
        let mut t = http::HeaderMap::new();
        t.append("x-checksum", "abc".parse().unwrap());
        let t = Trailers::from(t);
        e.encode_end(&t, &mut out);
        e.encode_end(&t, &mut out);
        out.to_vec()
    }

    #[test]
    fn chunked_output() {
        let big = vec![b'z'; 300];
        let out = enc(BodyFraming::Chunked, &[b"hello", b"", &big]);
        let mut expected = b"5\r\nhello\r\n12c\r\n".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"\r\n0\r\nx-checksum: abc\r\n\r\n");
        assert_eq!(out, expected);
    }

    #[test]
    fn raw_outputs() {
        assert_eq!(enc(BodyFraming::CloseDelimited, &[b"ab", b"cd"]), b"abcd");
        assert_eq!(enc(BodyFraming::ContentLength(3), &[b"ab", b"cd"]), b"abc");
        assert_eq!(enc(BodyFraming::None, &[b"ab"]), b"");
    }

    #[test]
    fn hex_digits() {
        for (n, s) in [
            (0u64, "0"),
            (1, "1"),
            (15, "f"),
            (16, "10"),
            (u64::MAX, "ffffffffffffffff"),
        ] {
            let mut out = BytesMut::new();
            put_hex(&mut out, n);
            assert_eq!(&out[..], s.as_bytes());
        }
    }
}
