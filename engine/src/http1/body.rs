//! Streaming body decoding (RFC 9112 §6–§7): Content-Length, chunked and close-delimited.
//!
//! The decoder is a small state machine fed with whatever bytes have arrived. Body data is
//! split off the front of the caller's buffer as `Bytes` (zero-copy: no byte of payload is
//! copied), so a proxy can forward it as soon as it arrives and never buffers a whole body.
//! Chunked framing is parsed strictly (hex size of 1–16 digits, well-formed extensions,
//! CRLF everywhere, bounded size line and trailer section) because a lenient chunk parser is
//! the other half of every TE.CL / CL.TE desync.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::error::{BodyError, ParseError};
use super::fields::{split_field, to_header};
use super::head::BodyFraming;
use super::limits::{Limits, MAX_CHUNK_LINE_BYTES};
use super::syntax::{field_lines, find_head_end, is_ows, is_tchar, Scan};

/// What [`BodyDecoder::decode`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEvent {
    /// The next piece of body data (never empty).
    Data(Bytes),
    /// The body is complete; `trailers` are the (filtered) chunked trailer fields, if any.
    Done { trailers: Trailers },
    /// Every buffered byte was consumed or more bytes are needed to make progress.
    NeedMore,
}

/// A body's trailer fields. Most bodies have none, and then no map is held: an empty
/// `HeaderMap` built and dropped for each request and each response cost the request path
/// ~35 instructions apiece. No map and an empty map are the same trailers.
///
/// A map is boxed, and only a non-empty one is kept: a `HeaderMap` is 96 bytes, and held
/// inline it made every body event (`Result<BodyEvent, _>`, two a proxied response) and the
/// request's `Inbound::Done` that wide, each moved several times a request; boxed, a body
/// event is a `Bytes` and a tag.
#[derive(Clone, Debug, Default)]
pub struct Trailers(Option<Box<HeaderMap>>);

impl Trailers {
    /// No trailer fields.
    pub const fn none() -> Trailers {
        Trailers(None)
    }

    /// The fields in order (none for no map).
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0.iter().flat_map(|map| map.iter())
    }

    /// The fields as a map (an empty one when there are none).
    pub fn into_map(self) -> HeaderMap {
        self.0.map(|map| *map).unwrap_or_default()
    }
}

impl From<HeaderMap> for Trailers {
    fn from(map: HeaderMap) -> Trailers {
        // An empty map is no trailers (see `eq`), and is kept as none: no box for it.
        Trailers((!map.is_empty()).then(|| Box::new(map)))
    }
}

impl PartialEq for Trailers {
    fn eq(&self, other: &Trailers) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => a == b,
            (Some(m), None) | (None, Some(m)) => m.is_empty(),
            (None, None) => true,
        }
    }
}

impl Eq for Trailers {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Length { remaining: u64 },
    ChunkSize,
    ChunkData { remaining: u64 },
    ChunkDataCrlf,
    Trailers,
    UntilClose,
    Done,
}

/// Decodes one message body from a stream of bytes.
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    state: State,
    trailer_limits: Limits,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`; `limits` bound the chunked trailer section.
    pub fn new(framing: BodyFraming, limits: &Limits) -> Self {
        let state = match framing {
            BodyFraming::None | BodyFraming::ContentLength(0) => State::Done,
            BodyFraming::ContentLength(n) => State::Length { remaining: n },
            BodyFraming::Chunked => State::ChunkSize,
            BodyFraming::CloseDelimited => State::UntilClose,
        };
        BodyDecoder {
            state,
            trailer_limits: *limits,
        }
    }

    /// Consumes body bytes from the front of `buf`. Call repeatedly until `NeedMore` or `Done`;
    /// bytes after the end of the body are left in `buf` (the next pipelined message).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<BodyEvent, BodyError> {
        loop {
            match self.state {
                State::Done => {
                    return Ok(BodyEvent::Done {
                        trailers: Trailers::none(),
                    })
                }
                State::Length { remaining } => {
                    let Some(data) = take(buf, remaining) else {
                        return Ok(BodyEvent::NeedMore);
                    };
                    let left = remaining - data.len() as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length { remaining: left }
                    };
                    return Ok(BodyEvent::Data(data));
                }
                State::UntilClose => {
                    let Some(data) = take(buf, u64::MAX) else {
                        return Ok(BodyEvent::NeedMore);
                    };
                    return Ok(BodyEvent::Data(data));
                }
                State::ChunkSize => {
                    let Some((size, used)) = chunk_size_line(buf)? else {
                        return Ok(BodyEvent::NeedMore);
                    };
                    buf.advance(used);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData { remaining: size }
                    };
                }
                State::ChunkData { remaining } => {
                    let Some(data) = take(buf, remaining) else {
                        return Ok(BodyEvent::NeedMore);
                    };
                    let left = remaining - data.len() as u64;
                    self.state = if left == 0 {
                        State::ChunkDataCrlf
                    } else {
                        State::ChunkData { remaining: left }
                    };
                    return Ok(BodyEvent::Data(data));
                }
                State::ChunkDataCrlf => match buf.get(..2) {
                    Some(b"\r\n") => {
                        buf.advance(2);
                        self.state = State::ChunkSize;
                    }
                    Some(_) => return Err(BodyError::MissingCrlf),
                    None if buf.first().is_some_and(|&b| b != b'\r') => {
                        return Err(BodyError::MissingCrlf)
                    }
                    None => return Ok(BodyEvent::NeedMore),
                },
                State::Trailers => {
                    let Some((trailers, used)) = trailer_section(buf, &self.trailer_limits)? else {
                        return Ok(BodyEvent::NeedMore);
                    };
                    buf.advance(used);
                    self.state = State::Done;
                    return Ok(BodyEvent::Done {
                        trailers: trailers.into(),
                    });
                }
            }
        }
    }

    /// The peer closed its write side. A close-delimited body (or one already complete) ends
    /// here; any other body was truncated.
    pub fn finish_on_eof(&mut self) -> Result<BodyEvent, BodyError> {
        match self.state {
            State::Done | State::UntilClose => {
                self.state = State::Done;
                Ok(BodyEvent::Done {
                    trailers: Trailers::none(),
                })
            }
            _ => Err(BodyError::Truncated),
        }
    }

    /// The whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes still expected for a Content-Length body (`Some(0)` once it is complete); `None`
    /// for other framings.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length { remaining } => Some(remaining),
            State::Done => Some(0),
            _ => None,
        }
    }
}

/// Splits up to `limit` bytes off the front of `buf`; `None` when `buf` is empty.
fn take(buf: &mut BytesMut, limit: u64) -> Option<Bytes> {
    if buf.is_empty() {
        return None;
    }
    let n = usize::try_from(limit).unwrap_or(usize::MAX).min(buf.len());
    Some(buf.split_to(n).freeze())
}

/// Parses `chunk-size [chunk-ext] CRLF` at the front of `buf`: the size and the bytes used,
/// or `None` when the line is incomplete.
fn chunk_size_line(buf: &[u8]) -> Result<Option<(u64, usize)>, BodyError> {
    let window = buf
        .get(..MAX_CHUNK_LINE_BYTES.min(buf.len()))
        .unwrap_or_default();
    let Some(lf) = memchr::memchr(b'\n', window) else {
        if buf.len() >= MAX_CHUNK_LINE_BYTES {
            return Err(BodyError::ChunkLineTooLong);
        }
        return Ok(None);
    };
    let line = match lf.checked_sub(1).and_then(|cr| buf.get(..=cr)) {
        Some([line @ .., b'\r']) => line,
        _ => return Err(BodyError::MissingCrlf),
    };
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(BodyError::InvalidChunkSize);
    }
    if digits > 16 {
        return Err(BodyError::ChunkSizeOverflow);
    }
    let size = line
        .iter()
        .take(digits)
        .fold(0u64, |acc, &b| (acc << 4) | u64::from(hex_value(b)));
    check_extensions(line.get(digits..).unwrap_or_default())?;
    Ok(Some((size, lf + 1)))
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

fn skip_bws(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    s
}

fn skip_token(s: &[u8]) -> Result<&[u8], BodyError> {
    let n = s.iter().take_while(|&&b| is_tchar(b)).count();
    if n == 0 {
        return Err(BodyError::InvalidChunkExtension);
    }
    Ok(s.get(n..).unwrap_or_default())
}

/// Skips a quoted-string (RFC 9110 §5.6.4) starting at the opening quote.
fn skip_quoted(s: &[u8]) -> Result<&[u8], BodyError> {
    let mut i = 1;
    loop {
        match s.get(i) {
            Some(b'"') => return Ok(s.get(i + 1..).unwrap_or_default()),
            Some(b'\\') => match s.get(i + 1) {
                Some(&b) if b == b'\t' || b >= 0x20 && b != 0x7f => i += 2,
                _ => return Err(BodyError::InvalidChunkExtension),
            },
            Some(&b) if b == b'\t' || b >= 0x20 && b != 0x7f => i += 1,
            _ => return Err(BodyError::InvalidChunkExtension),
        }
    }
}

/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] )`, nothing else.
fn check_extensions(mut s: &[u8]) -> Result<(), BodyError> {
    while !s.is_empty() {
        s = skip_bws(s)
            .strip_prefix(b";")
            .ok_or(BodyError::InvalidChunkExtension)?;
        s = skip_token(skip_bws(s))?;
        if let Some(value) = skip_bws(s).strip_prefix(b"=") {
            let value = skip_bws(value);
            s = if value.first() == Some(&b'"') {
                skip_quoted(value)?
            } else {
                skip_token(value)?
            };
        }
    }
    Ok(())
}

/// Parses the trailer section after the last chunk; `None` when incomplete. Fields that must
/// not come from a trailer (RFC 9110 §6.5.1: framing, routing, hop-by-hop, authentication,
/// request modifiers, response control, content metadata) are dropped.
fn trailer_section(buf: &[u8], limits: &Limits) -> Result<Option<(HeaderMap, usize)>, BodyError> {
    let (end, fields) = match find_head_end(buf, 0, 0, limits) {
        Ok(Scan::Incomplete) => return Ok(None),
        Ok(Scan::Complete { end, fields }) => (end, fields),
        Err(ParseError::HeadTooLarge | ParseError::TooManyHeaders) => {
            return Err(BodyError::TrailersTooLarge)
        }
        Err(ParseError::BareLineEnding) => return Err(BodyError::MissingCrlf),
        Err(_) => return Err(BodyError::InvalidTrailer),
    };
    let block = buf.get(..end - 2).unwrap_or_default();
    let mut trailers = HeaderMap::with_capacity(fields);
    for line in field_lines(block) {
        let (name, value) = split_field(line).map_err(|_| BodyError::InvalidTrailer)?;
        let (name, value) = to_header(name, value).map_err(|_| BodyError::InvalidTrailer)?;
        if !is_forbidden_trailer(&name) {
            trailers.append(name, value);
        }
    }
    Ok(Some((trailers, end)))
}

fn is_forbidden_trailer(name: &HeaderName) -> bool {
    const FORBIDDEN: [HeaderName; 33] = [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TRAILER,
        header::HOST,
        header::CONNECTION,
        header::TE,
        header::UPGRADE,
        header::EXPECT,
        header::MAX_FORWARDS,
        header::RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
        header::CACHE_CONTROL,
        header::PRAGMA,
        header::AUTHORIZATION,
        header::PROXY_AUTHORIZATION,
        header::WWW_AUTHENTICATE,
        header::PROXY_AUTHENTICATE,
        header::COOKIE,
        header::SET_COOKIE,
        header::AGE,
        header::EXPIRES,
        header::DATE,
        header::LOCATION,
        header::RETRY_AFTER,
        header::VARY,
        header::CONTENT_ENCODING,
        header::CONTENT_TYPE,
        header::CONTENT_RANGE,
        header::CONTENT_LOCATION,
    ];
    FORBIDDEN.contains(name) || name == "keep-alive" || name == "proxy-connection"
}
