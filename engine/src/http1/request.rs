//! Request head parsing (RFC 9112 §2–§3, §6; RFC 9110 §7.2, §7.6, §10.1.1).
//!
//! The parser is stateless: it is handed everything buffered so far and either returns a
//! complete head with the number of bytes it used, asks for more, or fails. It fails *early*:
//! a request line or head that is provably over its limit is rejected while still incomplete,
//! so a slow or endless head never has to be buffered. Everything that decides message
//! boundaries or routing (CRLF, request line, Host, Content-Length, Transfer-Encoding) is
//! checked strictly; see the tests in `request_tests.rs` for the full rule list.

use std::ops::Range;

use bytes::Bytes;
use http::Method;

use super::byte_search::Lfs;
use super::error::ParseError;
use super::fields::take_field_lines;
use super::framing::{merge_content_length, ConnectionOptions, TransferCodings};
use super::head::{BodyFraming, RequestHead, Version};
use super::head_str::{HeadStr, Target};
use super::host::normalize_authority;
use super::limits::Limits;
use super::pool::HeaderPool;
use super::syntax::{
    find_head_end_with, is_tchar, is_token, is_vchar, line_end, list_elements, Scan,
};

/// Parses a request head from the front of `buf`.
///
/// `Ok(None)` means the head is incomplete and more bytes are needed. `Err` is returned as
/// soon as the buffered bytes prove a limit is exceeded (414 for the request line, 431 for the
/// head), even if the head is incomplete. On success the head and the bytes it used (leading
/// empty lines included) are returned; the body, if any, starts right after.
pub fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, ParseError> {
    let mut lfs = Vec::new();
    let Some(layout) = locate(buf, limits, &mut lfs)? else {
        return Ok(None);
    };
    let head_end = layout.head_end;
    let mut copy = bytes::BytesMut::from(buf.get(..head_end).unwrap_or_default());
    let head = layout.build(&mut copy, lfs, &mut HeaderPool::default())?;
    Ok(head.map(|head| (head, head_end)))
}

/// Like [`parse_request_head`], but takes the head off the front of `buf` and keeps it as the
/// memory its fields point into (no allocation per field): what the engine's hot path uses.
pub fn take_request_head(
    buf: &mut bytes::BytesMut,
    limits: &Limits,
) -> Result<Option<RequestHead>, ParseError> {
    take_request_head_pooled(buf, limits, &mut HeaderPool::default())
}

/// Like [`take_request_head`], filling a field list from `pool` (only once the head is
/// complete) instead of allocating one.
pub fn take_request_head_pooled(
    buf: &mut bytes::BytesMut,
    limits: &Limits,
    pool: &mut HeaderPool,
) -> Result<Option<RequestHead>, ParseError> {
    let mut lfs = pool.take_line_ends();
    match locate(buf, limits, &mut lfs) {
        // The head is built where this function's result lies (the builder returns this
        // type, and gives the line ends back itself): mapping its result into an `Option`,
        // or holding it while the line ends went back, copied the ~200-byte head twice.
        Ok(Some(layout)) => {
            let mut head = buf.split_to(layout.head_end);
            layout.build(&mut head, lfs, pool)
        }
        other => {
            pool.give_line_ends(lfs);
            other.map(|_| None)
        }
    }
}

/// Where the parts of a complete, limit-respecting request head lie in the buffer, with the
/// request line already parsed (it is validated before the head is complete, and parsing it
/// a second time was a measurable share of the request path).
struct Layout {
    method: Method,
    target: (usize, usize),
    version: Version,
    /// Where the first field line starts.
    lines_from: usize,
    fields: usize,
    head_end: usize,
}

impl Layout {
    /// Interprets the head, which is exactly `head` (taken off the receive buffer): field
    /// names are lower-cased in it as they are validated, then it becomes the memory the
    /// fields point into. `lfs` are the field lines' LFs that [`locate`] recorded, given back
    /// to `pool` once read. Never `Ok(None)`: the type is the caller's, so that the head is
    /// built in its result.
    fn build(
        self,
        head: &mut bytes::BytesMut,
        lfs: Vec<usize>,
        pool: &mut HeaderPool,
    ) -> Result<Option<RequestHead>, ParseError> {
        debug_assert_eq!(lfs.len(), self.fields, "one recorded LF per field line");
        build_head(
            self.method,
            self.target,
            self.version,
            head,
            (self.lines_from, lfs),
            pool,
        )
    }
}

/// Finds a complete head, enforcing the limits and the request-line syntax early; `lfs`
/// receives the position of each field line's LF.
fn locate(buf: &[u8], limits: &Limits, lfs: &mut Vec<usize>) -> Result<Option<Layout>, ParseError> {
    let Some(start) = skip_empty_lines(buf, limits)? else {
        return Ok(None);
    };
    // One walk over the head's LFs: the request line's first, then the field lines'.
    let mut line_ends = Lfs::new(buf, start);
    let Some(lf) = line_ends.next_lf() else {
        let pending = buf.get(start..).unwrap_or_default();
        // A method is a token, whatever follows it: a byte that can be neither part of one
        // nor what ends it (SP, or CR of a line end) condemns the line now, as Envoy's
        // parser does from the first byte (`HPE_INVALID_METHOD`), rather than after the
        // header-read timeout (a TLS ClientHello sent to a plaintext port, binary noise).
        if let Some(&b) = pending.iter().find(|&&b| !is_tchar(b)) {
            if b != b' ' && b != b'\r' {
                return Err(ParseError::InvalidMethod);
            }
        }
        let content = pending.len() - usize::from(pending.last() == Some(&b'\r'));
        if content > limits.max_request_line_bytes {
            return Err(ParseError::RequestLineTooLong);
        }
        if pending.len() > limits.max_header_bytes {
            return Err(ParseError::HeadTooLarge);
        }
        return Ok(None);
    };
    let line_stop = line_end(buf, start, lf)?;
    let line = buf.get(start..line_stop).unwrap_or_default();
    if line.len() > limits.max_request_line_bytes {
        return Err(ParseError::RequestLineTooLong);
    }
    // Validate the request line before waiting for the rest of the head.
    let (method, target, version) = parse_request_line(line)?;
    let target = (start + target.start, start + target.end);
    lfs.clear();
    let scan = find_head_end_with(lf + 1, line_ends, start, limits, |lf| lfs.push(lf))?;
    let (head_end, fields) = match scan {
        Scan::Incomplete => return Ok(None),
        Scan::Complete { end, fields } => (end, fields),
    };
    Ok(Some(Layout {
        method,
        target,
        version,
        lines_from: lf + 1,
        fields,
        head_end,
    }))
}

/// Skips the empty lines RFC 9112 §2.2 lets a server ignore before a request line. Returns
/// `None` when the buffer ends inside them.
fn skip_empty_lines(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ParseError> {
    let mut start = 0;
    loop {
        match (buf.get(start), buf.get(start + 1)) {
            (Some(b'\r'), Some(b'\n')) => start += 2,
            (Some(b'\r'), None) => return Ok(None),
            (Some(b'\r'), Some(_)) | (Some(b'\n'), _) => return Err(ParseError::BareLineEnding),
            (None, _) => return Ok(None),
            _ => return Ok(Some(start)),
        }
        if start > limits.max_header_bytes {
            return Err(ParseError::HeadTooLarge);
        }
    }
}

/// `method SP request-target SP HTTP-version`, exactly one SP between parts. The target is
/// returned as its range in `line`, so the caller can find it again in the buffer.
///
/// A well-formed line is read where its parts must lie: the method is the run of `tchar`
/// before the first SP, the version the eight bytes after the SP that ends the line's ninth
/// byte from the end, the target what is between. When the target passes its check (which
/// admits no SP), those two SPs are the ones [`parse_request_line_by_search`] would find, so
/// the result is the same; any other line goes to the search, which decides its error as it
/// always did. (The two `memchr` calls cost ~85 instructions a request.)
fn parse_request_line(line: &[u8]) -> Result<(Method, Range<usize>, Version), ParseError> {
    let method_len = line.iter().take_while(|&&b| is_tchar(b)).count();
    let target_end = line.len().saturating_sub(9);
    if method_len > 0 && line.get(method_len) == Some(&b' ') && line.get(target_end) == Some(&b' ')
    {
        let target = line.get(method_len + 1..target_end).unwrap_or_default();
        let version = parse_version(line.get(target_end + 1..).unwrap_or_default());
        if let (Ok(version), true) = (version, valid_target(target)) {
            if let Ok(method) = Method::from_bytes(line.get(..method_len).unwrap_or_default()) {
                debug_assert_eq!(
                    parse_request_line_by_search(line),
                    Ok((method.clone(), method_len + 1..target_end, version))
                );
                return Ok((method, method_len + 1..target_end, version));
            }
        }
    }
    parse_request_line_by_search(line)
}

/// A request-target as received: not empty, and only VCHAR but '#' (a fragment is never sent
/// in a request-target; whitespace, CTLs and non-ASCII never are). No short-circuit: valid
/// targets are the common case and the fold vectorises.
fn valid_target(target: &[u8]) -> bool {
    !target.is_empty()
        && target
            .iter()
            .fold(true, |ok, &b| ok & is_vchar(b) & (b != b'#'))
}

/// [`parse_request_line`] by searching for the two SPs: the reference, and the path of every
/// line the direct reading turns away.
fn parse_request_line_by_search(
    line: &[u8],
) -> Result<(Method, Range<usize>, Version), ParseError> {
    let sp1 = memchr::memchr(b' ', line).ok_or(ParseError::InvalidRequestLine)?;
    let method = line.get(..sp1).unwrap_or_default();
    if !is_token(method) {
        return Err(ParseError::InvalidMethod);
    }
    let rest = line.get(sp1 + 1..).unwrap_or_default();
    let sp2 = memchr::memchr(b' ', rest).ok_or(ParseError::InvalidRequestLine)?;
    let target = rest.get(..sp2).unwrap_or_default();
    let version = parse_version(rest.get(sp2 + 1..).unwrap_or_default())?;
    if !valid_target(target) {
        return Err(ParseError::InvalidTarget);
    }
    let method = Method::from_bytes(method).map_err(|_| ParseError::InvalidMethod)?;
    Ok((method, sp1 + 1..sp1 + 1 + sp2, version))
}

/// `HTTP/1.1` or `HTTP/1.0`; another well-formed `HTTP/d.d` is unsupported (505); anything
/// else is malformed (400). HTTP-name is case-sensitive.
///
/// The two accepted versions are compared as one eight-byte word each (every request line
/// and status line has one): the byte-wise slice pattern cost ~25 instructions a head.
pub(crate) fn parse_version(v: &[u8]) -> Result<Version, ParseError> {
    const HTTP11: u64 = u64::from_le_bytes(*b"HTTP/1.1");
    const HTTP10: u64 = u64::from_le_bytes(*b"HTTP/1.0");
    let Ok(word) = <[u8; 8]>::try_from(v) else {
        return Err(ParseError::InvalidVersion);
    };
    match u64::from_le_bytes(word) {
        HTTP11 => Ok(Version::Http11),
        HTTP10 => Ok(Version::Http10),
        _ => match word {
            [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                if major.is_ascii_digit() && minor.is_ascii_digit() =>
            {
                Err(ParseError::UnsupportedVersion)
            }
            _ => Err(ParseError::InvalidVersion),
        },
    }
}

/// Interprets the fields and the request target, deciding authority, framing and options.
/// Each field line is validated and its name lower-cased in `head` in one pass
/// ([`take_field_lines`]); then `head` becomes the memory the fields point into, and the
/// line ends go back to `pool`. Never `Ok(None)` (see [`Layout::build`]).
fn build_head(
    method: Method,
    target: (usize, usize),
    version: Version,
    head: &mut bytes::BytesMut,
    lines: (usize, Vec<usize>),
    pool: &mut HeaderPool,
) -> Result<Option<RequestHead>, ParseError> {
    let http11 = version == Version::Http11;
    // Room for the fields a proxy adds (request id, forwarded proto, via) without regrowth.
    let mut headers = pool.take(lines.1.len() + 4);
    let mut host: Option<(usize, usize)> = None;
    let mut host_count = 0usize;
    let mut content_length: Option<u64> = None;
    let mut te = TransferCodings::default();
    let mut connection = ConnectionOptions::default();
    let mut upgrade: Option<String> = None;
    let mut expects_continue = false;

    let fields = take_field_lines(head, lines.0, &lines.1, |field| {
        if field.name_is(b"host") {
            host_count += 1;
            host = Some(field.value_at);
            return Ok(());
        } else if field.name_is(b"content-length") {
            content_length = Some(merge_content_length(field.value(), content_length)?);
        } else if field.name_is(b"transfer-encoding") {
            te.add(field.value());
        } else if field.name_is(b"connection") {
            connection.add(field.value());
        } else if field.name_is(b"upgrade") {
            let text =
                std::str::from_utf8(field.value()).map_err(|_| ParseError::InvalidHeaderValue)?;
            match &mut upgrade {
                Some(u) => {
                    u.push_str(", ");
                    u.push_str(text);
                }
                None => upgrade = Some(text.to_owned()),
            }
        } else if field.name_is(b"expect") {
            for expectation in list_elements(field.value()) {
                if expectation.eq_ignore_ascii_case(b"100-continue") {
                    expects_continue = true;
                } else if !expectation.is_empty() {
                    return Err(ParseError::UnsupportedExpectation);
                }
            }
        }
        headers.push_received(field.name_at, field.value_at);
        Ok(())
    });
    pool.give_line_ends(lines.1);
    fields?;
    let buf = std::mem::take(head).freeze();
    let host = host.map(|(at, len)| span(&buf, at, at + len));
    let raw_target = span(&buf, target.0, target.1);
    // The head's last use here: the fields take it, with no clone of it to drop.
    headers.set_head(buf);

    if host_count > 1 {
        return Err(ParseError::DuplicateHost);
    }
    if http11 && host_count == 0 {
        return Err(ParseError::MissingHost);
    }
    let host_authority = host.map(|h| normalize_authority(h, false)).transpose()?;
    let (target, target_authority) = resolve_target(&method, raw_target)?;
    let authority = target_authority.or(host_authority).unwrap_or_default();

    let mut framing = if te.present {
        if !http11 {
            return Err(ParseError::TransferEncodingInHttp10);
        }
        if content_length.is_some() {
            return Err(ParseError::TransferEncodingWithContentLength);
        }
        te.check_request()?;
        BodyFraming::Chunked
    } else if let Some(n) = content_length {
        BodyFraming::ContentLength(n)
    } else {
        BodyFraming::None
    };
    let is_connect = method == Method::CONNECT;
    if is_connect {
        if !matches!(framing, BodyFraming::None | BodyFraming::ContentLength(0)) {
            return Err(ParseError::ConnectWithBody);
        }
        framing = BodyFraming::None;
    }

    // RFC 9110 §7.8: Upgrade needs the `upgrade` connection option and is ignored in HTTP/1.0;
    // h2c (cleartext HTTP/2 upgrade) is not offered, the request is served as HTTP/1.1.
    let upgrade = upgrade.filter(|u| {
        http11
            && connection.upgrade
            && !is_connect
            && !list_elements(u.as_bytes()).any(|p| p.eq_ignore_ascii_case(b"h2c"))
    });

    Ok(Some(RequestHead {
        method,
        target,
        version,
        authority,
        headers,
        framing,
        keep_alive: connection.keep_alive(http11),
        // RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 is ignored.
        expect_continue: expects_continue && http11,
        upgrade,
    }))
}

/// Classifies the request-target form (RFC 9112 §3.2) and returns the origin-form target plus
/// the authority it carries, if any. Both are spans of `raw` (the target's bytes in the
/// received head), except the target of an absolute-form request without a path, which gains
/// its leading '/'.
fn resolve_target(method: &Method, raw: Bytes) -> Result<(Target, Option<HeadStr>), ParseError> {
    let text = |raw: Bytes| {
        HeadStr::from_utf8(raw)
            .map(Target::from)
            .map_err(|_| ParseError::InvalidTarget)
    };
    let is_connect = method == Method::CONNECT;
    if is_connect {
        // authority-form only.
        let authority = normalize_authority(raw, true).map_err(|_| ParseError::InvalidTarget)?;
        return Ok((Target::from(authority.clone()), Some(authority)));
    }
    if raw.first() == Some(&b'/') {
        return Ok((text(raw)?, None));
    }
    if &raw[..] == b"*" {
        if method == Method::OPTIONS {
            return Ok((text(raw)?, None));
        }
        return Err(ParseError::InvalidTarget);
    }
    let after_scheme = strip_http_scheme(&raw).ok_or(ParseError::InvalidTarget)?;
    let authority_at = raw.len() - after_scheme.len();
    let authority_len = after_scheme
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(after_scheme.len());
    let authority_end = authority_at + authority_len;
    let authority = normalize_authority(raw.slice(authority_at..authority_end), false)?;
    let rest = raw.slice(authority_end..);
    let target = if rest.first() == Some(&b'/') {
        text(rest)?
    } else {
        let rest = std::str::from_utf8(&rest).map_err(|_| ParseError::InvalidTarget)?;
        Target::from(format!("/{rest}"))
    };
    Ok((target, Some(authority)))
}

/// `buf[from..to]` as a shared `Bytes` (no copy). The spans come from the parser and always
/// lie inside the head; an empty one is returned rather than a panic if one ever did not.
fn span(buf: &Bytes, from: usize, to: usize) -> Bytes {
    debug_assert!(
        from <= to && to <= buf.len(),
        "span {from}..{to} of {}",
        buf.len()
    );
    if from <= to && to <= buf.len() {
        buf.slice(from..to)
    } else {
        Bytes::new()
    }
}

/// Strips an `http://` or `https://` scheme prefix (scheme is case-insensitive).
fn strip_http_scheme(raw: &[u8]) -> Option<&[u8]> {
    for scheme in [&b"http://"[..], b"https://"] {
        if let Some(prefix) = raw.get(..scheme.len()) {
            if prefix.eq_ignore_ascii_case(scheme) {
                return raw.get(scheme.len()..);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reading the line in place answers exactly as searching for its SPs does (the same
    /// method, target range and version, or the same error), on lines drawn mostly from the
    /// bytes that matter.
    #[quickcheck_macros::quickcheck]
    fn direct_reading_agrees_with_the_search(raw: Vec<u8>, tail: u8) -> bool {
        const ALPHABET: &[u8] = b"GET /a?#bH T \t\x00\x7f\xff";
        const TAILS: [&str; 5] = [
            " HTTP/1.1",
            " HTTP/1.0",
            " HTTP/2.0",
            "HTTP/1.1",
            " HTTP/1.10",
        ];
        let mut line: Vec<u8> = raw
            .iter()
            .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()])
            .collect();
        line.extend_from_slice(TAILS[usize::from(tail) % TAILS.len()].as_bytes());
        parse_request_line(&line) == parse_request_line_by_search(&line)
    }

    /// The word compare answers as the byte-wise slice pattern it replaced, on strings drawn
    /// mostly from the version's own bytes, of lengths around eight.
    #[quickcheck_macros::quickcheck]
    fn version_words_agree_with_the_pattern(raw: Vec<u8>) -> bool {
        const ALPHABET: &[u8] = b"HTP/1.0 92h\xff";
        let v: Vec<u8> = raw
            .iter()
            .take(10)
            .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()])
            .collect();
        let by_pattern = match &v[..] {
            b"HTTP/1.1" => Ok(Version::Http11),
            b"HTTP/1.0" => Ok(Version::Http10),
            [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                if major.is_ascii_digit() && minor.is_ascii_digit() =>
            {
                Err(ParseError::UnsupportedVersion)
            }
            _ => Err(ParseError::InvalidVersion),
        };
        parse_version(&v) == by_pattern
            && parse_version(b"HTTP/1.1") == Ok(Version::Http11)
            && parse_version(b"HTTP/1.0") == Ok(Version::Http10)
            && parse_version(b"HTTP/2.0") == Err(ParseError::UnsupportedVersion)
    }

    #[test]
    fn direct_reading_agrees_on_known_lines() {
        for line in [
            &b"GET /a HTTP/1.1"[..],
            b"GET  /a HTTP/1.1",
            b"GET /a  HTTP/1.1",
            b"GET /a b HTTP/1.1",
            b"GET /a#f HTTP/1.1",
            b"GET  HTTP/1.1",
            b"G(T /a HTTP/1.1",
            b" GET /a HTTP/1.1",
            b"GET /a HTTP/1.2",
            b"GET /a HTTP/1.1 ",
            b"GET /a\tHTTP/1.1",
            b"GET HTTP/1.1",
            b"HTTP/1.1",
            b"",
        ] {
            assert_eq!(
                parse_request_line(line),
                parse_request_line_by_search(line),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            parse_request_line(b"OPTIONS * HTTP/1.0"),
            Ok((Method::OPTIONS, 8..9, Version::Http10))
        );
    }
}
