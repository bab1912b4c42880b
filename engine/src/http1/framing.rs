//! Message-framing fields: Content-Length, Transfer-Encoding and Connection.
//!
//! These decide where a message ends, so they are where request smuggling lives (CL.TE, TE.CL,
//! TE.TE). Every value is parsed fully and strictly; anything two implementations could read
//! differently is an error rather than a guess. The proxy never forwards these fields as
//! received: it re-derives them from the decided [`BodyFraming`](super::BodyFraming).

use super::error::ParseError;
use super::syntax::{is_token, list_elements};

/// Parses one Content-Length field value (a comma list of identical decimal values is
/// accepted as one) and merges it with a value from an earlier field line.
pub(crate) fn merge_content_length(value: &[u8], current: Option<u64>) -> Result<u64, ParseError> {
    let mut result = current;
    for element in list_elements(value) {
        let n = parse_decimal(element)?;
        match result {
            Some(prev) if prev != n => return Err(ParseError::ConflictingContentLength),
            _ => result = Some(n),
        }
    }
    result.ok_or(ParseError::InvalidContentLength)
}

/// `1*DIGIT` without sign, spaces or overflow.
fn parse_decimal(s: &[u8]) -> Result<u64, ParseError> {
    if s.is_empty() {
        return Err(ParseError::InvalidContentLength);
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(ParseError::InvalidContentLength);
        }
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(ParseError::InvalidContentLength)
    })
}

/// What the Transfer-Encoding field lines of a message said, accumulated over all of them
/// (several lines form one list, RFC 9110 §5.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TransferCodings {
    /// A Transfer-Encoding field was present.
    pub present: bool,
    /// Non-empty list elements seen.
    pub elements: u32,
    /// How many of them were `chunked`.
    pub chunked: u32,
    /// The last element was `chunked`.
    pub last_chunked: bool,
    /// An element other than `chunked` (gzip, identity, xchunked...).
    pub other: bool,
    /// An element that is not a plain token (parameters, quotes, stray characters).
    pub malformed: bool,
}

impl TransferCodings {
    pub(crate) fn add(&mut self, value: &[u8]) {
        self.present = true;
        for element in list_elements(value) {
            if element.is_empty() {
                continue;
            }
            self.elements += 1;
            if !is_token(element) {
                self.malformed = true;
                self.last_chunked = false;
            } else if element.eq_ignore_ascii_case(b"chunked") {
                self.chunked += 1;
                self.last_chunked = true;
            } else {
                self.other = true;
                self.last_chunked = false;
            }
        }
    }

    /// Request rule (RFC 9112 §6.1, §6.3): chunked must be the single, final coding; any other
    /// coding is not implemented by this proxy (501).
    pub(crate) fn check_request(&self) -> Result<(), ParseError> {
        if self.elements == 0 || self.malformed || self.chunked > 1 {
            return Err(ParseError::InvalidTransferEncoding);
        }
        if self.chunked == 1 && !self.last_chunked {
            return Err(ParseError::InvalidTransferEncoding);
        }
        if self.other {
            return Err(ParseError::UnsupportedTransferCoding);
        }
        Ok(())
    }

    /// Response rule (RFC 9112 §6.3 item 4): chunked final means chunked framing, otherwise the
    /// body runs until close. A malformed list or a repeated chunked is an error.
    pub(crate) fn response_is_chunked(&self) -> Result<bool, ParseError> {
        if self.elements == 0 || self.malformed || self.chunked > 1 {
            return Err(ParseError::InvalidTransferEncoding);
        }
        Ok(self.last_chunked)
    }
}

/// Connection options (RFC 9110 §7.6.1) relevant to framing and upgrades.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConnectionOptions {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
}

impl ConnectionOptions {
    pub(crate) fn add(&mut self, value: &[u8]) {
        for token in list_elements(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            }
        }
    }

    /// Persistence per RFC 9112 §9.3: HTTP/1.1 persists unless `close`; HTTP/1.0 only with
    /// `keep-alive` (and no `close`).
    pub(crate) fn keep_alive(&self, http11: bool) -> bool {
        !self.close && (http11 || self.keep_alive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_valid() {
        assert_eq!(merge_content_length(b"0", None), Ok(0));
        assert_eq!(merge_content_length(b"42", None), Ok(42));
        assert_eq!(merge_content_length(b"42, 42", None), Ok(42));
        assert_eq!(merge_content_length(b"42", Some(42)), Ok(42));
        assert_eq!(
            merge_content_length(b"18446744073709551615", None),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn content_length_invalid() {
        for v in [
            &b""[..],
            b"+1",
            b"-1",
            b"1 2",
            b"0x10",
            b"1a",
            b"1,",
            b",1",
            b"18446744073709551616",
            b"1.0",
        ] {
            assert_eq!(
                merge_content_length(v, None),
                Err(ParseError::InvalidContentLength),
                "{v:?}"
            );
        }
        assert_eq!(
            merge_content_length(b"1, 2", None),
            Err(ParseError::ConflictingContentLength)
        );
        assert_eq!(
            merge_content_length(b"2", Some(1)),
            Err(ParseError::ConflictingContentLength)
        );
    }

    fn te(values: &[&[u8]]) -> TransferCodings {
        let mut t = TransferCodings::default();
        for v in values {
            t.add(v);
        }
        t
    }

    #[test]
    fn request_transfer_codings() {
        assert_eq!(te(&[b"chunked"]).check_request(), Ok(()));
        assert_eq!(te(&[b"CHUNKED"]).check_request(), Ok(()));
        assert_eq!(te(&[b"chunked, "]).check_request(), Ok(()));
        assert_eq!(
            te(&[b""]).check_request(),
            Err(ParseError::InvalidTransferEncoding)
        );
        assert_eq!(
            te(&[b"chunked, chunked"]).check_request(),
            Err(ParseError::InvalidTransferEncoding)
        );
        assert_eq!(
            te(&[b"chunked", b"chunked"]).check_request(),
            Err(ParseError::InvalidTransferEncoding)
        );
        assert_eq!(
            te(&[b"chunked, gzip"]).check_request(),
            Err(ParseError::InvalidTransferEncoding)
        );
        assert_eq!(
            te(&[b"gzip, chunked"]).check_request(),
            Err(ParseError::UnsupportedTransferCoding)
        );
        assert_eq!(
            te(&[b"xchunked"]).check_request(),
            Err(ParseError::UnsupportedTransferCoding)
        );
        assert_eq!(
            te(&[b"identity"]).check_request(),
            Err(ParseError::UnsupportedTransferCoding)
        );
        assert_eq!(
            te(&[b"chunked;a=b"]).check_request(),
            Err(ParseError::InvalidTransferEncoding)
        );
        assert_eq!(
            te(&[b"\"chunked\""]).check_request(),
            Err(ParseError::InvalidTransferEncoding)
        );
    }

    #[test]
    fn response_transfer_codings() {
        assert_eq!(te(&[b"chunked"]).response_is_chunked(), Ok(true));
        assert_eq!(te(&[b"gzip, chunked"]).response_is_chunked(), Ok(true));
        assert_eq!(te(&[b"gzip"]).response_is_chunked(), Ok(false));
        assert_eq!(te(&[b"chunked, gzip"]).response_is_chunked(), Ok(false));
        assert!(te(&[b"chunked, chunked"]).response_is_chunked().is_err());
        assert!(te(&[b""]).response_is_chunked().is_err());
    }

    #[test]
    fn connection_tokens() {
        let mut c = ConnectionOptions::default();
        c.add(b"Keep-Alive, UPGRADE");
        assert!(c.keep_alive && c.upgrade && !c.close);
        assert!(c.keep_alive(false) && c.keep_alive(true));
        c.add(b"close");
        assert!(!c.keep_alive(true) && !c.keep_alive(false));
        let d = ConnectionOptions::default();
        assert!(d.keep_alive(true) && !d.keep_alive(false));
        let mut e = ConnectionOptions::default();
        e.add(b"closed, xclose");
        assert!(!e.close);
    }
}
