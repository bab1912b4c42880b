//! Just enough blocking HTTP/1.1 for the demo's upstream servers and self-check client: read a
//! head, read a body framed by `content-length` or chunked encoding.
//!
//! This is test-fixture HTTP, deliberately separate from the engine's codec: the local mesh must
//! check the proxy against an independent implementation, not against itself.

use std::io::{self, BufRead, Read};

/// Largest head accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Read a message head up to and including the empty line. `Ok(None)` at a clean EOF before
/// any byte (the peer closed an idle keep-alive connection).
pub fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = r
            .take((MAX_HEAD_BYTES + 1 - before.min(MAX_HEAD_BYTES)) as u64)
            .read_until(b'\n', &mut head)?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(invalid("connection closed inside a message head"));
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(invalid("message head too large"));
        }
        let line = head.get(before..).unwrap_or(&[]);
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                // Tolerate a stray empty line between messages (RFC 9112 §2.2).
                head.clear();
                continue;
            }
            return Ok(Some(head));
        }
    }
}

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(usize),
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// The framing named by the headers (`transfer-encoding` ending in chunked wins over
/// `content-length`), or `default` when neither is present.
pub fn framing(headers: &[httparse::Header<'_>], default: Framing) -> io::Result<Framing> {
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if value.trim().ends_with("chunked") {
                return Ok(Framing::Chunked);
            }
            return Err(invalid("transfer-encoding without chunked"));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| invalid("bad content-length"))?;
            if n > MAX_BODY_BYTES {
                return Err(invalid("body too large"));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(default, Framing::Length))
}

/// Read a body with the given framing.
pub fn read_body<R: BufRead>(r: &mut R, framing: Framing) -> io::Result<Vec<u8>> {
    match framing {
        Framing::None => Ok(Vec::new()),
        Framing::Length(n) => {
            let mut body = vec![0; n];
            r.read_exact(&mut body)?;
            Ok(body)
        }
        Framing::Chunked => read_chunked(r),
        Framing::UntilClose => {
            let mut body = Vec::new();
            r.take(MAX_BODY_BYTES as u64 + 1).read_to_end(&mut body)?;
            if body.len() > MAX_BODY_BYTES {
                return Err(invalid("body too large"));
            }
            Ok(body)
        }
    }
}

fn read_chunked<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailer fields, then the empty line.
            while !read_line(r)?.is_empty() {}
            return Ok(body);
        }
        if body.len().saturating_add(size) > MAX_BODY_BYTES {
            return Err(invalid("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(body.get_mut(start..).unwrap_or(&mut []))?;
        if !read_line(r)?.is_empty() {
            return Err(invalid("chunk data longer than its size"));
        }
    }
}

/// One CRLF- (or LF-) terminated line without its terminator.
fn read_line<R: BufRead>(r: &mut R) -> io::Result<String> {
    let mut line = Vec::new();
    let n = r.take(4096).read_until(b'\n', &mut line)?;
    if n == 0 || line.last() != Some(&b'\n') {
        return Err(invalid("connection closed inside chunked framing"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("non-UTF-8 framing line"))
}

/// Whether the headers ask to close the connection after this message.
pub fn wants_close(headers: &[httparse::Header<'_>], version: Option<u8>) -> bool {
    let mut close = version == Some(0);
    for h in headers {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                close = true;
            } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                close = false;
            }
        }
    }
    close
}

pub fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn head_and_chunked_body() {
        let raw = b"\r\nPOST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let mut r = Cursor::new(&raw[..]);
        let head = read_head(&mut r).unwrap().unwrap();
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(&head).unwrap().is_complete());
        let f = framing(req.headers, Framing::None).unwrap();
        assert_eq!(f, Framing::Chunked);
        assert_eq!(read_body(&mut r, f).unwrap(), b"hello world");
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
    }

    #[test]
    fn eof_and_errors() {
        assert!(read_head(&mut Cursor::new(&b""[..])).unwrap().is_none());
        assert!(read_head(&mut Cursor::new(&b"GET / HT"[..])).is_err());
        let mut bad = Cursor::new(&b"zz\r\n"[..]);
        assert!(read_body(&mut bad, Framing::Chunked).is_err());
        let h = [httparse::Header {
            name: "Content-Length",
            value: b"nope",
        }];
        assert!(framing(&h, Framing::None).is_err());
        let c = [httparse::Header {
            name: "connection",
            value: b"Close",
        }];
        assert!(wants_close(&c, Some(1)));
        assert!(wants_close(&[], Some(0)));
        assert!(!wants_close(&[], Some(1)));
    }
}
