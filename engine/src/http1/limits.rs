//! Size limits applied while parsing message heads and chunked bodies.
//!
//! Limits exist so that a peer can never make the proxy buffer without bound: every parser in
//! this module checks them against the bytes *already buffered*, so an oversized head is
//! rejected as soon as it is provably too large, not when it finally completes.

use crate::config::HttpSettings;

/// Head-size limits (mirrors the relevant fields of [`HttpSettings`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target and version, without CRLF); longer answers 414.
    pub max_request_line_bytes: usize,
    /// Largest message head (start line, fields and the empty line), and largest chunked
    /// trailer section; larger answers 431 (or a body error for trailers).
    pub max_header_bytes: usize,
    /// Most header fields in one head (and in one trailer section); more answers 431.
    pub max_headers: usize,
}

/// Longest chunk-size line (size, extensions and CRLF) accepted by the chunked decoder.
pub const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;

impl From<&HttpSettings> for Limits {
    fn from(s: &HttpSettings) -> Self {
        Limits {
            max_request_line_bytes: s.max_request_line_bytes,
            max_header_bytes: s.max_header_bytes,
            max_headers: s.max_headers,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from(&HttpSettings::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matches_http_settings() {
        let s = HttpSettings::default();
        let l = Limits::default();
        assert_eq!(l.max_request_line_bytes, s.max_request_line_bytes);
        assert_eq!(l.max_header_bytes, s.max_header_bytes);
        assert_eq!(l.max_headers, s.max_headers);
    }

    #[test]
    fn from_settings_copies_fields() {
        let s = HttpSettings {
            max_request_line_bytes: 1,
            max_header_bytes: 2,
            max_headers: 3,
            ..HttpSettings::default()
        };
        assert_eq!(
            Limits::from(&s),
            Limits {
                max_request_line_bytes: 1,
                max_header_bytes: 2,
                max_headers: 3
            }
        );
    }
}
