//! Protocol detection on a connection's first bytes: Envoy's `http_inspector` listener filter
//! (source/extensions/filters/listener/http_inspector/http_inspector.cc), which Istio puts in
//! front of inbound ports of unknown protocol and of its inbound passthrough chains
//! (`buildHTTPInspector` in pilot/pkg/networking/core/listener_inbound.go). The inspector
//! says HTTP for the HTTP/2 connection preface or an HTTP/1.0 or HTTP/1.1 request line, not
//! HTTP as soon as the bytes cannot begin either, and gives up (not HTTP) after
//! [`MAX_INSPECT`] bytes without deciding.
//!
//! Bytes only: no clock. How long a connection that sends nothing may wait is the caller's
//! (the listener's `detection_timeout`, through the engine's timers).
//!
//! Data only: no engine state is read or written here.

/// Envoy's `Config::MAX_INSPECT_SIZE`: what the inspector peeks at most.
pub(crate) const MAX_INSPECT: usize = 8192;

/// The HTTP/2 client connection preface (RFC 9113 §3.4), sent first by an h2c (prior
/// knowledge) client.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The request-line versions the inspector takes as HTTP/1.
const HTTP1_VERSIONS: [&[u8]; 2] = [b"HTTP/1.0", b"HTTP/1.1"];

/// What the first bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sniff {
    /// Still a possible beginning of an HTTP request; wait for more.
    NeedMore,
    /// An HTTP/1.x request line or the HTTP/2 preface.
    Http,
    /// Anything else.
    NotHttp,
}

/// Decide on `data`, the bytes received so far.
pub(crate) fn sniff(data: &[u8]) -> Sniff {
    let n = data.len().min(H2_PREFACE.len());
    if n > 0 && data[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Sniff::Http
        } else {
            Sniff::NeedMore
        };
    }
    let verdict = request_line(data);
    if verdict == Sniff::NeedMore && data.len() >= MAX_INSPECT {
        return Sniff::NotHttp;
    }
    verdict
}

/// `method SP request-target SP HTTP-version CRLF` (RFC 9112 §3), as far as it has come.
fn request_line(data: &[u8]) -> Sniff {
    let end = data.iter().position(|&b| b == b'\n');
    let complete = end.is_some();
    let mut line = &data[..end.unwrap_or(data.len())];
    if complete {
        line = line.strip_suffix(b"\r").unwrap_or(line);
    }
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    if !method.iter().all(|&b| is_tchar(b)) {
        return Sniff::NotHttp;
    }
    let Some(target) = parts.next() else {
        // No space yet: only a method (or nothing) so far.
        return more_unless(complete);
    };
    if method.is_empty() || !target.iter().all(|&b| b > b' ' && b != 0x7f) {
        return Sniff::NotHttp;
    }
    let Some(version) = parts.next() else {
        // `GET /` and a line end is HTTP/0.9, which Envoy's parser refuses.
        return more_unless(complete);
    };
    if target.is_empty() {
        return Sniff::NotHttp;
    }
    if complete {
        return if HTTP1_VERSIONS.contains(&version) {
            Sniff::Http
        } else {
            Sniff::NotHttp
        };
    }
    if HTTP1_VERSIONS.iter().any(|v| v.starts_with(version)) {
        Sniff::NeedMore
    } else {
        Sniff::NotHttp
    }
}

fn more_unless(complete: bool) -> Sniff {
    if complete {
        Sniff::NotHttp
    } else {
        Sniff::NeedMore
    }
}

/// RFC 9110 §5.6.2 `tchar`: what a method is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// http_inspector.cc `parseHttpHeader`: a request line with HTTP/1.0 or HTTP/1.1, or
    /// the h2 preface, is HTTP, even byte by byte.
    #[test]
    fn http1_request_lines_and_the_h2_preface_are_http() {
        for text in [
            &b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"[..],
            b"POST /a?b=c HTTP/1.0\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\n",
            b"OPTIONS * HTTP/1.1\n",
            H2_PREFACE,
        ] {
            assert_eq!(
                sniff(text),
                Sniff::Http,
                "{:?}",
                String::from_utf8_lossy(text)
            );
            // Every proper prefix still waits (the line end decides).
            let line = text.iter().position(|&b| b == b'\n').unwrap_or(text.len());
            for cut in 0..line.min(text.len() - 1) {
                assert_eq!(
                    sniff(&text[..cut]),
                    Sniff::NeedMore,
                    "cut {cut} of {text:?}"
                );
            }
        }
    }

    /// What a server-first or binary protocol, or a text protocol that is not HTTP, sends
    /// first is not HTTP, as soon as the bytes cannot start a request line.
    #[test]
    fn other_protocols_are_not_http() {
        for text in [
            &b"*1\r\n$4\r\nPING\r\n"[..], // Redis (RESP)
            b"PING\r\n",                  // Redis inline command
            b"hello world\n",             // a line protocol
            b"one two three\r\n",         // three words, no HTTP version
            b"GET /\r\n",                 // HTTP/0.9
            b"GET / HTTP/2.0\r\n",        // not a version the HTTP/1 parser takes
            b"\x16\x03\x01\x02\x00\x01",  // a TLS ClientHello
            b"\x00\x00\x00\x01",          // binary
            b" GET / HTTP/1.1\r\n",       // no method
            b"GET  / HTTP/1.1\r\n",       // empty target
        ] {
            assert_eq!(
                sniff(text),
                Sniff::NotHttp,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        // Decided early, without the line end.
        assert_eq!(sniff(b"GET / HTTX"), Sniff::NotHttp);
        assert_eq!(sniff(b"\x16"), Sniff::NotHttp);
    }

    /// Envoy gives up after MAX_INSPECT_SIZE bytes that are still a possible request line.
    #[test]
    fn an_undecided_line_longer_than_the_inspection_window_is_not_http() {
        let mut long = b"GET /".to_vec();
        long.resize(MAX_INSPECT - 1, b'a');
        assert_eq!(sniff(&long), Sniff::NeedMore);
        long.push(b'a');
        assert_eq!(sniff(&long), Sniff::NotHttp);
    }
}
