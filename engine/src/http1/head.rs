//! Parsed message heads: what the engine sees of a request or response before its body.
//!
//! Heads are plain data. Framing (`framing`), persistence (`keep_alive`) and the other
//! connection-level facts are decided once, at parse time, from the raw fields; the engine
//! acts on these decisions and never re-reads Content-Length or Transfer-Encoding itself.

use super::head_str::{HeadStr, Target};

/// HTTP version of a message (only 1.0 and 1.1 are accepted on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How a message body is delimited (RFC 9112 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    ContentLength(u64),
    /// Chunked transfer coding.
    Chunked,
    /// The body runs until the sender closes the connection (responses only).
    CloseDelimited,
}

/// A parsed, validated request head.
#[derive(Clone, Debug)]
pub struct RequestHead {
    pub method: http::Method,
    /// origin-form "/path?query" (absolute-form is converted to origin-form, its authority moved
    /// to `authority`); "*" for OPTIONS *; "host:port" for CONNECT. A span of the received
    /// head unless absolute-form had to gain a leading '/' or a rewrite replaced it.
    pub target: Target,
    pub version: Version,
    /// Validated Host (or absolute-form authority), as received (a span of the head); "" only
    /// for HTTP/1.0 without Host.
    pub authority: HeadStr,
    /// Every field as received except `host`, names lower-case, order kept. Hop-by-hop fields
    /// are still here: the engine calls `strip_hop_by_hop` before forwarding.
    pub headers: super::Fields,
    /// None, ContentLength or Chunked.
    pub framing: BodyFraming,
    /// Version default adjusted by `Connection: close` / `keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// The Upgrade field value when `Connection: upgrade` and `Upgrade` are both present on an
    /// HTTP/1.1 non-CONNECT request and it does not ask for h2c.
    pub upgrade: Option<String>,
}

impl RequestHead {
    /// The target up to (not including) the first '?'.
    pub fn path(&self) -> &str {
        self.target.path()
    }

    /// The query after the first '?', if there is one.
    pub fn query(&self) -> Option<&str> {
        self.target.query()
    }
}

/// A parsed, validated response head.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    /// As received; borrowed when it is the registered phrase, so the common head allocates
    /// no string for it.
    pub reason: std::borrow::Cow<'static, str>,
    /// As received, names lower-case, order kept.
    pub headers: super::Fields,
    /// Decided per RFC 9112 §6.3 given the request method.
    pub framing: BodyFraming,
    pub keep_alive: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(target: &str) -> RequestHead {
        RequestHead {
            method: http::Method::GET,
            target: target.to_string().into(),
            version: Version::Http11,
            authority: "a".into(),
            headers: super::super::Fields::new(),
            framing: BodyFraming::None,
            keep_alive: true,
            expect_continue: false,
            upgrade: None,
        }
    }

    #[test]
    fn path_and_query() {
        assert_eq!(head("/a/b?x=1?y").path(), "/a/b");
        assert_eq!(head("/a/b?x=1?y").query(), Some("x=1?y"));
        assert_eq!(head("/a").query(), None);
        assert_eq!(head("/a?").query(), Some(""));
        assert_eq!(head("*").path(), "*");
    }
}
