//! Typed errors of the HTTP/1.1 codec.
//!
//! A head that cannot be parsed safely is never "repaired": every ambiguity that could let two
//! HTTP implementations disagree about where a message ends (request smuggling) is an error.
//! [`ParseError::status`] gives the status a proxy answers a bad *request* with; for a bad
//! *response* from an upstream the proxy answers 502 whatever the variant.

/// Why a request or response head was rejected.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    #[error("line not terminated by CRLF (bare LF or bare CR)")]
    BareLineEnding,
    #[error("request line is malformed")]
    InvalidRequestLine,
    #[error("method is not a token")]
    InvalidMethod,
    #[error("request target is malformed or not allowed for this method")]
    InvalidTarget,
    #[error("HTTP version is malformed")]
    InvalidVersion,
    #[error("HTTP version is not supported (only HTTP/1.0 and HTTP/1.1)")]
    UnsupportedVersion,
    #[error("request line exceeds the configured limit")]
    RequestLineTooLong,
    #[error("message head exceeds the configured size limit")]
    HeadTooLarge,
    #[error("message head has more header fields than the configured limit")]
    TooManyHeaders,
    #[error("obsolete line folding (obs-fold) is not accepted")]
    ObsFold,
    #[error("header field name is empty, contains invalid characters, or is followed by whitespace before the colon")]
    InvalidHeaderName,
    #[error("header field value contains control characters")]
    InvalidHeaderValue,
    #[error("HTTP/1.1 request without a Host header field")]
    MissingHost,
    #[error("more than one Host header field")]
    DuplicateHost,
    #[error("Host or request authority is not a valid uri-host[:port]")]
    InvalidHost,
    #[error("Content-Length is not a valid decimal length")]
    InvalidContentLength,
    #[error("Content-Length values differ")]
    ConflictingContentLength,
    #[error("both Transfer-Encoding and Content-Length are present")]
    TransferEncodingWithContentLength,
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingInHttp10,
    #[error("Transfer-Encoding is malformed, or chunked is repeated or not the final coding")]
    InvalidTransferEncoding,
    #[error("transfer coding not implemented (only chunked is supported)")]
    UnsupportedTransferCoding,
    #[error("unsupported expectation in Expect")]
    UnsupportedExpectation,
    #[error("CONNECT request declares a body")]
    ConnectWithBody,
    #[error("status line is malformed")]
    InvalidStatusLine,
    #[error("status code is not three digits between 100 and 599")]
    InvalidStatusCode,
    #[error("framing (Transfer-Encoding, or a non-zero Content-Length) in a 1xx or 204 response")]
    FramingInBodilessStatus,
}

impl ParseError {
    /// Status to answer a request that failed with this error. Errors that only occur in
    /// responses map to 502 (the upstream broke the protocol).
    pub fn status(&self) -> u16 {
        match self {
            ParseError::RequestLineTooLong => 414,
            ParseError::HeadTooLarge | ParseError::TooManyHeaders => 431,
            ParseError::UnsupportedTransferCoding => 501,
            ParseError::UnsupportedVersion => 505,
            ParseError::UnsupportedExpectation => 417,
            ParseError::InvalidStatusLine
            | ParseError::InvalidStatusCode
            | ParseError::FramingInBodilessStatus => 502,
            _ => 400,
        }
    }
}

/// Why a message body could not be decoded. Any of these leaves the connection unusable.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    #[error("chunk size is not 1 to 16 hex digits")]
    InvalidChunkSize,
    #[error("chunk size has more than 16 hex digits")]
    ChunkSizeOverflow,
    #[error("chunk extension is malformed")]
    InvalidChunkExtension,
    #[error("chunk size line exceeds the limit")]
    ChunkLineTooLong,
    #[error("missing CRLF after chunk size or chunk data")]
    MissingCrlf,
    #[error("malformed trailer field")]
    InvalidTrailer,
    #[error("trailer section exceeds the configured limits")]
    TrailersTooLarge,
    #[error("connection closed before the body was complete")]
    Truncated,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ParseError::RequestLineTooLong.status(), 414);
        assert_eq!(ParseError::HeadTooLarge.status(), 431);
        assert_eq!(ParseError::TooManyHeaders.status(), 431);
        assert_eq!(ParseError::UnsupportedTransferCoding.status(), 501);
        assert_eq!(ParseError::UnsupportedVersion.status(), 505);
        assert_eq!(ParseError::UnsupportedExpectation.status(), 417);
        assert_eq!(ParseError::BareLineEnding.status(), 400);
        assert_eq!(ParseError::InvalidStatusCode.status(), 502);
    }

    #[test]
    fn messages_are_human() {
        assert!(ParseError::MissingHost.to_string().contains("Host"));
        assert!(BodyError::Truncated.to_string().contains("closed"));
    }
}
