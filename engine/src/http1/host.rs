//! Host and authority validation (RFC 9110 §4.2.3, §7.2; RFC 3986 §3.2.2).
//!
//! The authority decides where a request is routed, so it must be unambiguous: a reg-name,
//! IPv4 address or bracketed IPv6 literal, optionally followed by a decimal port ≤ 65535.
//! Userinfo, empty hosts, empty ports and IPvFuture literals are rejected. The result is
//! lower-cased so routing compares one canonical form.

use std::net::Ipv6Addr;

use bytes::Bytes;

use super::byte_search::find_byte;
use super::error::ParseError;
use super::head_str::HeadStr;

/// `unreserved / sub-delims` of RFC 3986 (the reg-name characters besides pct-encoded), less
/// the comma: a comma in Host would let a list-splitting recipient see two hosts.
const fn build_reg_name() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b';'
                    | b'='
            );
        i += 1;
    }
    t
}

/// A table, since every request's Host goes through here.
static REG_NAME: [bool; 256] = build_reg_name();

fn is_reg_name_char(b: u8) -> bool {
    REG_NAME[usize::from(b)]
}

fn valid_reg_name(host: &[u8]) -> bool {
    if host.is_empty() {
        return false;
    }
    // The common host has no percent-encoding: one table lookup per byte (no early exit: the
    // common host is valid, and a loop without branches is shorter).
    if host.iter().fold(true, |ok, &b| ok & is_reg_name_char(b)) {
        return true;
    }
    let mut i = 0;
    while let Some(&b) = host.get(i) {
        if b == b'%' {
            match (host.get(i + 1), host.get(i + 2)) {
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if is_reg_name_char(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn valid_port(port: &[u8]) -> bool {
    if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return false;
    }
    port.iter()
        .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'))
        <= 65535
}

/// Validates `uri-host [ ":" port ]` (port mandatory when `require_port`, as for CONNECT's
/// authority-form) and returns it as received: Envoy keeps the `:authority` value's case, so
/// `authority` matches (case-sensitive, as Envoy's header matchers are) see what the client
/// sent and the upstream gets the Host it was sent; virtual-host selection folds case itself.
/// The result is `raw` itself (a span of the received head: no copy).
pub(crate) fn normalize_authority(raw: Bytes, require_port: bool) -> Result<HeadStr, ParseError> {
    check_authority(&raw, require_port)?;
    // Every accepted byte is ASCII, so this conversion cannot fail.
    HeadStr::from_utf8(raw).map_err(|_| ParseError::InvalidHost)
}

/// The checks of [`normalize_authority`].
fn check_authority(raw: &[u8], require_port: bool) -> Result<(), ParseError> {
    let (host_ok, port) = if let Some(rest) = raw.strip_prefix(b"[") {
        let close = rest
            .iter()
            .position(|&b| b == b']')
            .ok_or(ParseError::InvalidHost)?;
        let literal = rest.get(..close).unwrap_or_default();
        let ok = std::str::from_utf8(literal)
            .ok()
            .and_then(|s| s.parse::<Ipv6Addr>().ok())
            .is_some();
        let after = rest.get(close + 1..).unwrap_or_default();
        let port = match after {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return Err(ParseError::InvalidHost),
        };
        (ok, port)
    } else {
        match find_byte(b':', raw) {
            Some(colon) => (
                valid_reg_name(raw.get(..colon).unwrap_or_default()),
                Some(raw.get(colon + 1..).unwrap_or_default()),
            ),
            None => (valid_reg_name(raw), None),
        }
    };
    if !host_ok {
        return Err(ParseError::InvalidHost);
    }
    match port {
        Some(p) if !valid_port(p) => return Err(ParseError::InvalidHost),
        None if require_port => return Err(ParseError::InvalidHost),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalize_authority(raw: &[u8], require_port: bool) -> Result<HeadStr, ParseError> {
        super::normalize_authority(Bytes::copy_from_slice(raw), require_port)
    }

    #[test]
    fn accepts_valid_hosts() {
        assert_eq!(
            normalize_authority(b"Example.COM", false).unwrap(),
            "Example.COM"
        );
        assert_eq!(normalize_authority(b"a.b:8080", false).unwrap(), "a.b:8080");
        assert_eq!(
            normalize_authority(b"10.0.0.1:65535", false).unwrap(),
            "10.0.0.1:65535"
        );
        assert_eq!(normalize_authority(b"[::1]:80", false).unwrap(), "[::1]:80");
        assert_eq!(
            normalize_authority(b"[FE80::1]", false).unwrap(),
            "[FE80::1]"
        );
        assert_eq!(
            normalize_authority(b"my%20host", false).unwrap(),
            "my%20host"
        );
        assert_eq!(normalize_authority(b"svc_1.ns", false).unwrap(), "svc_1.ns");
    }

    #[test]
    fn rejects_invalid_hosts() {
        for h in [
            &b""[..],
            b":80",
            b"a:",
            b"a:65536",
            b"a:123456",
            b"a:-1",
            b"a:8x",
            b"a:80:90",
            b"user@host",
            b"a b",
            b"a/b",
            b"[::1",
            b"[::g]",
            b"[::1]x",
            b"[::1]:",
            b"[v1.x]",
            b"a%2",
            b"a%zz",
            b"h\x00",
            b"h\xc3\xa9",
            b"a\\b",
            b"a,b",
        ] {
            assert_eq!(
                normalize_authority(h, false),
                Err(ParseError::InvalidHost),
                "{h:?}"
            );
        }
    }

    #[test]
    fn connect_needs_port() {
        assert_eq!(
            normalize_authority(b"a.b", true),
            Err(ParseError::InvalidHost)
        );
        assert_eq!(normalize_authority(b"a.b:443", true).unwrap(), "a.b:443");
    }
}
