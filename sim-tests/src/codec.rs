//! An HTTP/1.1 reader independent of the engine's codec, for the simulated clients and servers
//! that check what the engine sends: heads parsed with `httparse`, message framing decided as
//! RFC 9112 §6.3 says, and bodies read by a small decoder written here (length, chunked with
//! trailers, close-delimited).
//!
//! Checking the engine's output with the engine's own codec would only prove the codec agrees
//! with itself; a second implementation, written from the RFC, catches a codec that is wrong.
//! This one is strict where the engine must be (CRLF line ends, one framing, valid sizes) and
//! reports anything else as an error, never guesses.

use bytes::{Buf, BytesMut};

/// The most header fields a head may carry here (the engine's default limit).
pub const MAX_HEADERS: usize = 100;
/// The largest head accepted (the engine's default `max_header_bytes`).
pub const MAX_HEAD_BYTES: usize = 60 * 1024;

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` (0 also for "no body").
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// A parsed message head.
#[derive(Clone, Debug)]
pub struct Head {
    /// The request method, or empty for a response.
    pub method: String,
    /// The request target, or empty for a response.
    pub target: String,
    /// The response status, or 0 for a request.
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: http::HeaderMap,
    pub framing: Framing,
    /// Bytes of the buffer the head took.
    pub used: usize,
}

impl Head {
    /// The `Host` value (empty when absent).
    pub fn authority(&self) -> String {
        self.headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

/// Whether a head has a line ending in a bare LF (httparse accepts those; the engine must
/// always send CRLF).
pub(crate) fn bare_lf(head: &[u8]) -> bool {
    (head.iter().enumerate()).any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// The framing fields of a head: `Content-Length` (all equal), the final `Transfer-Encoding`.
pub(crate) fn framing_fields(
    headers: &[httparse::Header<'_>],
) -> Result<(Option<u64>, Option<bool>), String> {
    let (mut length, mut chunked) = (None, None);
    for h in headers {
        let value = h.value.trim_ascii();
        if h.name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
                return Err(format!("invalid content-length {value:?}"));
            }
            let n: u64 = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or("invalid content-length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting content-length fields".into());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
    }
    Ok((length, chunked))
}

fn header_map(headers: &[httparse::Header<'_>]) -> Result<http::HeaderMap, String> {
    let mut map = http::HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = http::header::HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("invalid field name {:?}", h.name))?;
        let value = http::HeaderValue::from_bytes(h.value)
            .map_err(|_| format!("invalid value of {:?}", h.name))?;
        map.append(name, value);
    }
    Ok(map)
}

/// How a request's body is delimited (RFC 9112 §6.3): chunked, or Content-Length (0 without
/// one); both, or a final coding other than chunked, is an error.
pub(crate) fn request_framing(headers: &[httparse::Header<'_>]) -> Result<Framing, String> {
    let (length, chunked) = framing_fields(headers)?;
    match (chunked, length) {
        (Some(_), Some(_)) => Err("both transfer-encoding and content-length".into()),
        (Some(true), None) => Ok(Framing::Chunked),
        (Some(false), None) => Err("transfer-encoding without final chunked".into()),
        (None, n) => Ok(Framing::Length(n.unwrap_or(0))),
    }
}

/// How a response to a request with `method` is delimited (RFC 9112 §6.3): HEAD, 1xx, 204
/// and 304 have no body whatever the fields say; then chunked, Content-Length, or the close.
/// Chunked with Content-Length, or on HTTP/1.0, is an error.
pub(crate) fn response_framing(
    headers: &[httparse::Header<'_>],
    status: u16,
    minor: u8,
    method: &str,
) -> Result<Framing, String> {
    let (length, chunked) = framing_fields(headers)?;
    if chunked.is_some() && (length.is_some() || minor == 0) {
        return Err("chunked with content-length, or on HTTP/1.0".into());
    }
    let bodiless = method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304;
    Ok(match (bodiless, chunked, length) {
        (true, _, _) => Framing::Length(0),
        (false, Some(true), _) => Framing::Chunked,
        (false, _, Some(n)) => Framing::Length(n),
        (false, _, None) => Framing::Close,
    })
}

/// Parses a request head: `Ok(None)` while incomplete.
pub fn parse_request(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(format!("head over {MAX_HEAD_BYTES} bytes")),
        Err(err) => return Err(err.to_string()),
    };
    if bare_lf(&buf[..used]) {
        return Err("bare LF in the head".into());
    }
    let framing = request_framing(req.headers)?;
    Ok(Some(Head {
        method: req.method.unwrap_or_default().to_string(),
        target: req.path.unwrap_or_default().to_string(),
        status: 0,
        minor: req.version.unwrap_or(1),
        headers: header_map(req.headers)?,
        framing,
        used,
    }))
}

/// Parses a response head to a request with `method`: `Ok(None)` while incomplete.
pub fn parse_response(buf: &[u8], method: &str) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let used = match resp.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(format!("head over {MAX_HEAD_BYTES} bytes")),
        Err(err) => return Err(err.to_string()),
    };
    if bare_lf(&buf[..used]) {
        return Err("bare LF in the head".into());
    }
    let status = resp
        .code
        .filter(|c| (100..=599).contains(c))
        .ok_or("status out of range")?;
    let minor = resp.version.unwrap_or(1);
    let framing = response_framing(resp.headers, status, minor, method)?;
    Ok(Some(Head {
        method: String::new(),
        target: String::new(),
        status,
        minor,
        headers: header_map(resp.headers)?,
        framing,
        used,
    }))
}

/// Writes `body` chunked (RFC 9112 §7.1) into `out`: chunks of random sizes, now and then a
/// chunk extension, the last chunk, sometimes a trailer field, the final CRLF.
pub fn write_chunked(body: &[u8], r: &mut fastrand::Rng, out: &mut Vec<u8>) {
    let mut rest = body;
    while !rest.is_empty() {
        let n = r.usize(1..=rest.len().min(4096));
        out.extend_from_slice(format!("{n:x}").as_bytes());
        if r.u8(0..8) == 0 {
            out.extend_from_slice(b";sim=1");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n");
    if r.u8(0..4) == 0 {
        out.extend_from_slice(b"x-sim-trailer: 1\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A reason phrase for the statuses simulated servers send (RFC 9110 §15; any text would do,
/// clients must ignore it).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        404 => "Not Found",
        409 => "Conflict",
        418 => "I'm a teapot",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Where a chunked body's decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line: the size so far, digits read, inside an extension.
    Size {
        size: u64,
        digits: u8,
        ext: bool,
    },
    /// The LF after a size line's CR.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    /// The CRLF after chunk data (`cr`: the CR was seen).
    DataEnd {
        cr: bool,
    },
    /// Trailer lines: bytes on the current line, and whether a CR ended it.
    Trailer {
        line: usize,
        cr: bool,
    },
    Done,
}

/// A body being read, whatever its framing.
#[derive(Clone, Debug)]
pub struct BodyReader {
    framing: Framing,
    left: u64,
    chunk: Chunk,
}

impl BodyReader {
    pub fn new(framing: Framing) -> Self {
        BodyReader {
            framing,
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunk: Chunk::Size {
                size: 0,
                digits: 0,
                ext: false,
            },
        }
    }

    /// Takes body bytes from the front of `buf` into `out`; `Ok(true)` once the body is
    /// complete (bytes after it stay in `buf`).
    pub fn read(&mut self, buf: &mut BytesMut, out: &mut Vec<u8>) -> Result<bool, String> {
        match self.framing {
            Framing::Length(_) => {
                let n = buf
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                out.extend_from_slice(&buf[..n]);
                buf.advance(n);
                self.left -= n as u64;
                Ok(self.left == 0)
            }
            Framing::Close => {
                out.extend_from_slice(buf);
                buf.clear();
                Ok(false)
            }
            Framing::Chunked => self.read_chunked(buf, out),
        }
    }

    /// The connection closed: whether the body ended properly there.
    pub fn finish_on_eof(&self) -> bool {
        match self.framing {
            Framing::Close => true,
            Framing::Length(_) => self.left == 0,
            Framing::Chunked => self.chunk == Chunk::Done,
        }
    }

    fn read_chunked(&mut self, buf: &mut BytesMut, out: &mut Vec<u8>) -> Result<bool, String> {
        let mut at = 0;
        while at < buf.len() && self.chunk != Chunk::Done {
            let b = buf[at];
            self.chunk = match self.chunk {
                Chunk::Size { size, digits, ext } => match b {
                    b'\r' if digits > 0 => Chunk::SizeLf { size },
                    b';' if digits > 0 => Chunk::Size {
                        size,
                        digits,
                        ext: true,
                    },
                    _ if ext => {
                        if b == b'\n' {
                            return Err("bare LF in a chunk extension".into());
                        }
                        Chunk::Size { size, digits, ext }
                    }
                    _ => {
                        let d = (b as char)
                            .to_digit(16)
                            .ok_or_else(|| format!("bad chunk-size byte {b:#04x}"))?;
                        if digits >= 16 {
                            return Err("chunk size too large".into());
                        }
                        Chunk::Size {
                            size: size * 16 + u64::from(d),
                            digits: digits + 1,
                            ext,
                        }
                    }
                },
                Chunk::SizeLf { size } => match (b, size) {
                    (b'\n', 0) => Chunk::Trailer { line: 0, cr: false },
                    (b'\n', n) => Chunk::Data { left: n },
                    _ => return Err("chunk-size line without CRLF".into()),
                },
                Chunk::Data { left } => {
                    let n = (buf.len() - at).min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&buf[at..at + n]);
                    at += n;
                    self.chunk = if left == n as u64 {
                        Chunk::DataEnd { cr: false }
                    } else {
                        Chunk::Data {
                            left: left - n as u64,
                        }
                    };
                    continue;
                }
                Chunk::DataEnd { cr: false } if b == b'\r' => Chunk::DataEnd { cr: true },
                Chunk::DataEnd { cr: true } if b == b'\n' => Chunk::Size {
                    size: 0,
                    digits: 0,
                    ext: false,
                },
                Chunk::DataEnd { .. } => return Err("chunk data without CRLF".into()),
                Chunk::Trailer { line, cr: false } => match b {
                    b'\r' => Chunk::Trailer { line, cr: true },
                    b'\n' => return Err("bare LF in the trailer section".into()),
                    _ => Chunk::Trailer {
                        line: line + 1,
                        cr: false,
                    },
                },
                Chunk::Trailer { line, cr: true } => match (b, line) {
                    (b'\n', 0) => Chunk::Done,
                    (b'\n', _) => Chunk::Trailer { line: 0, cr: false },
                    _ => return Err("CR without LF in the trailer section".into()),
                },
                Chunk::Done => Chunk::Done,
            };
            at += 1;
        }
        buf.advance(at);
        Ok(self.chunk == Chunk::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(framing: Framing, pieces: &[&[u8]]) -> Result<(Vec<u8>, bool, Vec<u8>), String> {
        let mut r = BodyReader::new(framing);
        let (mut out, mut buf, mut done) = (Vec::new(), BytesMut::new(), false);
        for p in pieces {
            buf.extend_from_slice(p);
            done = r.read(&mut buf, &mut out)?;
        }
        Ok((out, done, buf.to_vec()))
    }

    #[test]
    fn chunked_in_any_pieces() {
        let raw: &[u8] = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        let whole = read_all(Framing::Chunked, &[raw]).unwrap();
        assert_eq!(whole, (b"hello0123456789".to_vec(), true, b"NEXT".to_vec()));
        // Byte by byte gives the same body.
        let bytes: Vec<&[u8]> = raw.chunks(1).collect();
        let (body, done, _) = read_all(Framing::Chunked, &bytes).unwrap();
        assert!(done);
        assert_eq!(body, b"hello0123456789");
    }

    #[test]
    fn written_chunked_reads_back() {
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut r = fastrand::Rng::with_seed(7);
        for _ in 0..20 {
            let mut wire = Vec::new();
            write_chunked(&body, &mut r, &mut wire);
            let (got, done, rest) = read_all(Framing::Chunked, &[&wire]).unwrap();
            assert!(done && rest.is_empty());
            assert_eq!(got, body);
        }
    }

    #[test]
    fn chunked_errors() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"g\r\n",
            b"0\r\n\n",
            b"11111111111111111\r\n",
            b"\r\n",
        ] {
            assert!(read_all(Framing::Chunked, &[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn heads_and_framing() {
        let req = parse_request(b"POST /x HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\n\r\nabc")
            .unwrap()
            .unwrap();
        assert_eq!((req.method.as_str(), req.target.as_str()), ("POST", "/x"));
        assert_eq!(
            (req.framing, req.authority().as_str()),
            (Framing::Length(3), "a")
        );
        assert!(parse_request(
            b"GET / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .is_err());
        let resp = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", "GET")
            .unwrap()
            .unwrap();
        assert_eq!(resp.framing, Framing::Close);
        let head = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", "HEAD")
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Length(0));
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-le", "GET"),
            Ok(None)
        ));
    }
}
