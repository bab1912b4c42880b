//! Response head parsing and framing (RFC 9112 §4, §6.3).
//!
//! An intermediary must validate what the upstream sends back as strictly as what clients
//! send: a response whose framing is ambiguous could desynchronise the upstream connection or
//! smuggle a second response to the client. Any error here means the proxy answers 502 and
//! drops the upstream connection. 1xx heads are returned like final ones (framing `None`); the
//! caller loops until it sees the final response.

use std::borrow::Cow;
use std::ops::Range;

use http::Method;

use super::byte_search::Lfs;
use super::error::ParseError;
use super::fields::take_field_lines;
use super::framing::{merge_content_length, ConnectionOptions, TransferCodings};
use super::head::{BodyFraming, ResponseHead, Version};
use super::limits::Limits;
use super::pool::HeaderPool;
use super::reason::reason_phrase;
use super::request::parse_version;
use super::syntax::{find_head_end_with, line_end, Scan};

/// Parses a response head from the front of `buf`; `request_method` is the method of the
/// request it answers (HEAD and CONNECT change the framing). `Ok(None)` means incomplete.
pub fn parse_response_head(
    buf: &[u8],
    limits: &Limits,
    request_method: &Method,
) -> Result<Option<(ResponseHead, usize)>, ParseError> {
    let mut lfs = Vec::new();
    let Some(layout) = locate(buf, limits, &mut lfs)? else {
        return Ok(None);
    };
    let head_end = layout.head_end;
    let mut copy = bytes::BytesMut::from(buf.get(..head_end).unwrap_or_default());
    let head = layout.build(&mut copy, &lfs, request_method, &mut HeaderPool::default())?;
    Ok(Some((head, head_end)))
}

/// Like [`parse_response_head`], but takes the head off the front of `buf` and keeps it as the
/// memory its fields point into (no allocation per field): what the engine's hot path uses.
pub fn take_response_head(
    buf: &mut bytes::BytesMut,
    limits: &Limits,
    request_method: &Method,
) -> Result<Option<ResponseHead>, ParseError> {
    take_response_head_pooled(buf, limits, request_method, &mut HeaderPool::default())
}

/// Like [`take_response_head`], filling a field list from `pool` (only once the head is
/// complete) instead of allocating one.
pub fn take_response_head_pooled(
    buf: &mut bytes::BytesMut,
    limits: &Limits,
    request_method: &Method,
    pool: &mut HeaderPool,
) -> Result<Option<ResponseHead>, ParseError> {
    let mut lfs = pool.take_line_ends();
    let parsed = match locate(buf, limits, &mut lfs) {
        Ok(Some(layout)) => {
            let mut head = buf.split_to(layout.head_end);
            layout
                .build(&mut head, &lfs, request_method, pool)
                .map(Some)
        }
        other => other.map(|_| None),
    };
    pool.give_line_ends(lfs);
    parsed
}

/// Where the parts of a complete, limit-respecting response head lie in the buffer, with the
/// status line already parsed: one scan finds the end and validates the line, the build step
/// only interprets the fields.
struct Layout {
    version: Version,
    status: u16,
    reason: (usize, usize),
    /// Where the first field line starts.
    lines_from: usize,
    fields: usize,
    head_end: usize,
}

/// Finds a complete head, validating the status line and the limits on the way (a bad status
/// line fails before the head is complete). `lfs` receives the position of each field line's
/// LF.
fn locate(buf: &[u8], limits: &Limits, lfs: &mut Vec<usize>) -> Result<Option<Layout>, ParseError> {
    // One walk over the head's LFs: the status line's first, then the field lines'.
    let mut line_ends = Lfs::new(buf, 0);
    let Some(lf) = line_ends.next_lf() else {
        if buf.len() > limits.max_header_bytes {
            return Err(ParseError::HeadTooLarge);
        }
        return Ok(None);
    };
    let line_stop = line_end(buf, 0, lf)?;
    let (version, status, reason) = parse_status_line(buf.get(..line_stop).unwrap_or_default())?;
    lfs.clear();
    let scan = find_head_end_with(lf + 1, line_ends, 0, limits, |lf| lfs.push(lf))?;
    let (head_end, fields) = match scan {
        Scan::Incomplete => return Ok(None),
        Scan::Complete { end, fields } => (end, fields),
    };
    Ok(Some(Layout {
        version,
        status,
        reason: (reason.start, reason.end),
        lines_from: lf + 1,
        fields,
        head_end,
    }))
}

impl Layout {
    /// Interprets the head, which is exactly `head` (taken off the receive buffer): field
    /// names are lower-cased in it as they are validated, then it becomes the memory the
    /// fields point into.
    /// `lfs` are the field lines' LFs that [`locate`] recorded.
    fn build(
        self,
        head: &mut bytes::BytesMut,
        lfs: &[usize],
        request_method: &Method,
        pool: &mut HeaderPool,
    ) -> Result<ResponseHead, ParseError> {
        let Layout {
            version, status, ..
        } = self;
        debug_assert_eq!(lfs.len(), self.fields, "one recorded LF per field line");
        // Room for the fields a proxy adds (via, response header edits) without regrowth.
        let mut headers = pool.take(self.fields + 2);
        let mut content_length: Option<u64> = None;
        let mut te = TransferCodings::default();
        let mut connection = ConnectionOptions::default();
        // One pass per line: validated and its name lower-cased in the head, which becomes
        // the memory the fields point into once every line is done.
        take_field_lines(head, self.lines_from, lfs, |field| {
            if field.name_is(b"content-length") {
                content_length = Some(merge_content_length(field.value(), content_length)?);
            } else if field.name_is(b"transfer-encoding") {
                te.add(field.value());
            } else if field.name_is(b"connection") {
                connection.add(field.value());
            }
            headers.push_received(field.name_at, field.value_at);
            Ok(())
        })?;
        let buf = std::mem::take(head).freeze();
        // The registered phrase ("OK" for 200) is by far the most common: borrow it instead of
        // allocating a copy of what it already says. Read before the head goes to the fields
        // (its last use here), so no clone of it is made and dropped.
        let reason = buf.get(self.reason.0..self.reason.1).unwrap_or_default();
        let canonical = reason_phrase(status);
        let reason = if reason == canonical.as_bytes() {
            Cow::Borrowed(canonical)
        } else {
            Cow::Owned(String::from_utf8_lossy(reason).into_owned())
        };
        headers.set_head(buf);

        let http11 = version == Version::Http11;
        if te.present {
            // RFC 9112 §6.1: TE in HTTP/1.0 means faulty framing; TE with CL is a smuggling sign.
            if !http11 {
                return Err(ParseError::TransferEncodingInHttp10);
            }
            if content_length.is_some() {
                return Err(ParseError::TransferEncodingWithContentLength);
            }
        }
        // RFC 9110 §8.6, §6.4.1: a 1xx or 204 has no content, and its sender MUST NOT frame
        // one. Such an answer is broken (its body's bytes would follow it on the connection,
        // which the pool then drops as having bytes left over): refused, as Envoy's codec does
        // (`ClientConnectionImpl::onHeadersCompleteBase`: "transfer encoding not allowed in 1xx
        // or 204", "content length not allowed in 1xx or 204"; a zero length is let through).
        if (status < 200 || status == 204) && (te.present || content_length.is_some_and(|n| n != 0))
        {
            return Err(ParseError::FramingInBodilessStatus);
        }
        let head = *request_method == Method::HEAD;
        #[cfg(feature = "mutants")]
        let head = head && !crate::mutants::route().head_response_framed_by_length;
        let bodiless = head
            || (100..200).contains(&status)
            || status == 204
            || status == 304
            || (*request_method == Method::CONNECT && (200..300).contains(&status));
        let framing = if bodiless {
            BodyFraming::None
        } else if te.present {
            if te.response_is_chunked()? {
                BodyFraming::Chunked
            } else {
                BodyFraming::CloseDelimited
            }
        } else if let Some(n) = content_length {
            BodyFraming::ContentLength(n)
        } else {
            BodyFraming::CloseDelimited
        };
        let persistent = connection.keep_alive(http11);
        #[cfg(feature = "mutants")]
        let persistent = persistent || crate::mutants::route().upstream_close_ignored;
        let keep_alive = persistent && framing != BodyFraming::CloseDelimited;
        Ok(ResponseHead {
            version,
            status,
            reason,
            headers,
            framing,
            keep_alive,
        })
    }
}

/// `HTTP-version SP 3DIGIT SP [reason-phrase]`. A missing SP after the code (no reason) is
/// tolerated as RFC 9112 §4 suggests; the reason may hold HTAB, SP, VCHAR and obs-text.
fn parse_status_line(line: &[u8]) -> Result<(Version, u16, Range<usize>), ParseError> {
    // Nearly every status line starts with one of these, whose first SP is at 8: no search.
    let sp = if matches!(line.get(..9), Some(b"HTTP/1.1 " | b"HTTP/1.0 ")) {
        8
    } else {
        line.iter()
            .position(|&b| b == b' ')
            .ok_or(ParseError::InvalidStatusLine)?
    };
    let version = parse_version(line.get(..sp).unwrap_or_default()).map_err(|e| match e {
        ParseError::UnsupportedVersion => e,
        _ => ParseError::InvalidStatusLine,
    })?;
    let rest = line.get(sp + 1..).unwrap_or_default();
    let (code, reason) = match rest {
        [a, b, c] => ([*a, *b, *c], &[][..]),
        [a, b, c, b' ', reason @ ..] => ([*a, *b, *c], reason),
        _ => return Err(ParseError::InvalidStatusCode),
    };
    let reason_start = line.len() - reason.len();
    if !code.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::InvalidStatusCode);
    }
    let status = code
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&status) {
        return Err(ParseError::InvalidStatusCode);
    }
    if reason
        .iter()
        .any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f))
    {
        return Err(ParseError::InvalidStatusLine);
    }
    Ok((version, status, reason_start..line.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: Method) -> Result<Option<(ResponseHead, usize)>, ParseError> {
        parse_response_head(raw.as_bytes(), &Limits::default(), &method)
    }

    fn framing(raw: &str, method: Method) -> Result<BodyFraming, ParseError> {
        parse(raw, method).map(|r| r.unwrap().0.framing)
    }

    #[test]
    fn basic_response() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        let (h, n) = parse(raw, Method::GET).unwrap().unwrap();
        assert_eq!(n, raw.len() - 5);
        assert_eq!(
            (h.version, h.status, &*h.reason),
            (Version::Http11, 200, "OK")
        );
        assert_eq!(h.framing, BodyFraming::ContentLength(5));
        assert!(h.keep_alive);
        assert_eq!(h.headers.get("x-a").unwrap(), b"b");
    }

    #[test]
    fn incomplete() {
        assert!(parse("HTTP/1.1 200 OK\r\nA: b\r\n", Method::GET)
            .unwrap()
            .is_none());
        assert!(parse("HTTP/1.1 2", Method::GET).unwrap().is_none());
    }

    #[test]
    fn status_line_rules() {
        assert!(framing("HTTP/1.1 200\r\n\r\n", Method::GET).is_ok());
        assert!(framing("HTTP/1.1 599 x\r\n\r\n", Method::GET).is_ok());
        for bad in [
            "HTTP/1.1 99 x\r\n\r\n",
            "HTTP/1.1 600 x\r\n\r\n",
            "HTTP/1.1 2000 x\r\n\r\n",
            "HTTP/1.1 20x x\r\n\r\n",
            "HTTP/1.1 099 x\r\n\r\n",
            "HTTP/1.1  200 x\r\n\r\n",
        ] {
            assert_eq!(
                framing(bad, Method::GET),
                Err(ParseError::InvalidStatusCode),
                "{bad:?}"
            );
        }
        assert_eq!(
            framing("HTTP/2.0 200 x\r\n\r\n", Method::GET),
            Err(ParseError::UnsupportedVersion)
        );
        assert_eq!(
            framing("http/1.1 200 x\r\n\r\n", Method::GET),
            Err(ParseError::InvalidStatusLine)
        );
        assert_eq!(
            framing("HTTP/1.1 200 a\x01b\r\n\r\n", Method::GET),
            Err(ParseError::InvalidStatusLine)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\n\r\n", Method::GET),
            Err(ParseError::BareLineEnding)
        );
        assert_eq!(ParseError::InvalidStatusCode.status(), 502);
    }

    #[test]
    fn framing_rules() {
        use BodyFraming::*;
        let cl = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(framing(cl, Method::GET), Ok(ContentLength(3)));
        assert_eq!(framing(cl, Method::HEAD), Ok(None));
        // A 304's length describes the representation it stands for: no body either way.
        let not_modified = "HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(framing(not_modified, Method::GET), Ok(None));
        // A 1xx or 204 framing a body is refused (RFC 9110 §8.6; Envoy's
        // `ClientConnectionImpl::onHeadersCompleteBase`), a zero length let through.
        for s in [
            "100 Continue",
            "101 Switching",
            "103 Early Hints",
            "204 No Content",
        ] {
            let zero = format!("HTTP/1.1 {s}\r\nContent-Length: 0\r\n\r\n");
            assert_eq!(framing(&zero, Method::GET), Ok(None), "{s}");
            for field in ["Content-Length: 3", "Transfer-Encoding: chunked"] {
                let raw = format!("HTTP/1.1 {s}\r\n{field}\r\n\r\n");
                assert_eq!(
                    framing(&raw, Method::GET),
                    Err(ParseError::FramingInBodilessStatus),
                    "{s} with {field}"
                );
            }
        }
        assert_eq!(ParseError::FramingInBodilessStatus.status(), 502);
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", Method::CONNECT),
            Ok(None)
        );
        let te = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(framing(te, Method::GET), Ok(Chunked));
        let gz = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(framing(gz, Method::GET), Ok(CloseDelimited));
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", Method::GET),
            Ok(CloseDelimited)
        );
    }

    #[test]
    fn framing_errors() {
        let both = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(
            framing(both, Method::GET),
            Err(ParseError::TransferEncodingWithContentLength)
        );
        let differ = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(
            framing(differ, Method::GET),
            Err(ParseError::ConflictingContentLength)
        );
        let same = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(
            framing(same, Method::GET),
            Ok(BodyFraming::ContentLength(3))
        );
        let bad = "HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n";
        assert_eq!(
            framing(bad, Method::GET),
            Err(ParseError::InvalidContentLength)
        );
        let te10 = "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            framing(te10, Method::GET),
            Err(ParseError::TransferEncodingInHttp10)
        );
        let twice = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n";
        assert_eq!(
            framing(twice, Method::GET),
            Err(ParseError::InvalidTransferEncoding)
        );
        let fold = "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n";
        assert_eq!(framing(fold, Method::GET), Err(ParseError::ObsFold));
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |raw: &str| parse(raw, Method::GET).unwrap().unwrap().0.keep_alive;
        assert!(ka("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!ka(
            "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!ka("HTTP/1.1 200 OK\r\n\r\n"));
        assert!(!ka("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(ka(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
        ));
    }

    #[test]
    fn head_limit_applies_while_incomplete() {
        let limits = Limits {
            max_request_line_bytes: 64,
            max_header_bytes: 64,
            max_headers: 4,
        };
        let raw = format!("HTTP/1.1 200 OK\r\nA: {}", "x".repeat(64));
        assert_eq!(
            parse_response_head(raw.as_bytes(), &limits, &Method::GET).map(|_| ()),
            Err(ParseError::HeadTooLarge)
        );
    }
}
