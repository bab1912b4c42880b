//! How a client reads the response to its request: the head parsed once, with `httparse` (an
//! independent parser checking the engine's output, as the servers do), its framing decided as
//! RFC 9112 §6.3 says, then body bytes taken as they arrive.

use crate::codec::{response_framing, BodyReader, Framing, MAX_HEAD_BYTES};
use bytes::BytesMut;

use super::pattern::Pattern;
use super::vocab_checks::SeenResponse;

/// How far a client has read the response to its request.
#[derive(Default)]
pub(crate) enum Reading {
    /// Waiting for the head: the bytes of an incomplete one (heads usually come whole, so
    /// this stays empty).
    Head(Vec<u8>),
    /// The head is in; reading the body.
    Body(Box<BodyRead>),
    /// Done, or nothing more is read (an unparsable head or body).
    #[default]
    Ignored,
}

/// A response whose head the client has parsed.
pub(crate) struct BodyRead {
    pub status: u16,
    pub from_server: bool,
    pub flags: Option<String>,
    pub body: BodyIn,
    /// The pattern a server's 200 body must follow, as far as it has come.
    pub check: Option<Pattern>,
    /// Body bytes so far, and whether they all matched `check`.
    pub len: usize,
    pub ok: bool,
    /// The endpoint the server's `x-sim-ep` names.
    pub ep: Option<usize>,
    /// Its `connection` field's options: `close`, `keep-alive` (RFC 9112 §9.3, §9.6).
    pub says_close: bool,
    pub says_keep_alive: bool,
    /// It carries `transfer-encoding` (never for an HTTP/1.0 client: RFC 9112 §6.1).
    pub transfer_coded: bool,
    /// What the routing-vocabulary checks read (kept only in such scenarios).
    pub seen: Option<Box<SeenResponse>>,
}

pub(crate) enum BodyIn {
    /// Content-Length: bytes still to come.
    Length(u64),
    /// Other framings, through the simulator's own decoder ([`crate::codec`]), with bytes it
    /// could not use yet.
    Decoder(BodyReader, BytesMut),
}

/// Parses a response head with `httparse` (like the servers, the clients check the engine's
/// output with a parser independent of the engine's codec) and decides its framing as RFC 9112
/// §6.3 says for a request of `method` (a POST reads as a GET): the bytes the head used and the response read so far, `None`
/// while incomplete, `Err` for a head the client cannot read.
pub(crate) fn parse_response(
    buf: &[u8],
    keep: bool,
    method: &str,
) -> Result<Option<(usize, BodyRead)>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut resp = httparse::Response::new(&mut headers);
    let used = match resp.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => return Ok(None),
        _ => return Err(()),
    };
    if crate::codec::bare_lf(&buf[..used]) {
        return Err(());
    }
    let status = resp.code.filter(|c| (100..=599).contains(c)).ok_or(())?;
    let (mut flags, mut from_server, mut ep) = (None, false, None);
    let (mut says_close, mut says_keep_alive, mut transfer_coded) = (false, false, false);
    let mut seen = keep.then(Box::<SeenResponse>::default);
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        let value = h.value.trim_ascii();
        if name.eq_ignore_ascii_case(b"x-trellis-response-flags") {
            let text = value
                .iter()
                .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
                .then(|| std::str::from_utf8(value).ok())
                .flatten();
            if flags.is_none() {
                flags = Some(text.map(str::to_string));
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                says_close |= option.eq_ignore_ascii_case(b"close");
                says_keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_coded = true;
        } else if name.eq_ignore_ascii_case(b"x-sim-ep") {
            from_server = true;
            ep = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        }
        if let Some(seen) = seen.as_mut() {
            let lower = h.name.to_ascii_lowercase();
            let text = String::from_utf8_lossy(value).into_owned();
            if lower == "location" {
                seen.location = Some(text);
            } else if ["x-rp-", "x-dp-", "x-bothp", "access-control-"]
                .iter()
                .any(|p| lower.starts_with(p))
            {
                seen.edited.push((lower, text));
            }
        }
    }
    let framing = response_framing(resp.headers, status, resp.version.unwrap_or(1), method)
        .map_err(|_| ())?;
    let body = match framing {
        Framing::Length(n) => BodyIn::Length(n),
        other => BodyIn::Decoder(BodyReader::new(other), BytesMut::new()),
    };
    Ok(Some((
        used,
        BodyRead {
            status,
            from_server,
            flags: flags.flatten(),
            body,
            check: None,
            len: 0,
            ok: true,
            ep,
            says_close,
            says_keep_alive,
            transfer_coded,
            seen,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes used, status, from a server, flags, body framing.
    type Parsed = (usize, u16, bool, Option<String>, String);

    fn parse(raw: &str) -> Result<Option<Parsed>, ()> {
        parse_response(raw.as_bytes(), false, "GET").map(|r| {
            r.map(|(used, b)| {
                let body = match b.body {
                    BodyIn::Length(n) => format!("length {n}"),
                    BodyIn::Decoder(..) => "None".to_string(),
                };
                (used, b.status, b.from_server, b.flags, body)
            })
        })
    }

    #[test]
    fn response_heads_and_framing() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-sim-ep: 3\r\n\r\nhello";
        assert_eq!(
            parse(ok),
            Ok(Some((ok.len() - 5, 200, true, None, "length 5".into())))
        );
        let mesh = "HTTP/1.1 503 Service Unavailable\r\nX-Trellis-Response-Flags: UF \r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parse(mesh).unwrap().unwrap().3, Some("UF".to_string()));
        // Chunked and close-delimited bodies go through the decoder (no remaining count).
        let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(parse(chunked).unwrap().unwrap().4, "None");
        assert_eq!(parse("HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap().4, "None");
        // Bodiless statuses, whatever the fields say.
        for s in ["100 Continue", "204 No Content", "304 Not Modified"] {
            let raw = format!("HTTP/1.1 {s}\r\ncontent-length: 9\r\n\r\n");
            assert_eq!(parse(&raw).unwrap().unwrap().4, "length 0");
        }
        assert_eq!(parse("HTTP/1.1 200 OK\r\ncontent-le"), Ok(None));
        for bad in [
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 1\r\n\r\n",
            "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            "HTTP/1.1 099 Odd\r\n\r\n",
            "HTTP/1.1 200 OK\nx: y\r\n\r\n",
            "HTTP/1.1 2OO NOT OK\r\n\x00garbage\r\n\r\n",
        ] {
            assert_eq!(parse(bad), Err(()), "{bad:?}");
        }
    }
}
