//! Reading the server name (SNI) and the offered ALPN protocols of a TLS ClientHello from a
//! connection's first bytes, without terminating TLS: what Envoy's `tls_inspector` listener
//! filter does so that a filter chain can match `server_names` (Istio's VirtualService
//! `tls[].match[].sniHosts`) and `application_protocols` (an AUTO_PASSTHROUGH gateway's
//! Istio mTLS ALPNs, and a sidecar's inbound chains under PERMISSIVE, which tell a sidecar's
//! mTLS from a TLS client of the workload's own by them).
//!
//! The bytes are only looked at; the caller keeps them and relays them unchanged. The record
//! layer may split a ClientHello across records (RFC 8446 §5.1), so handshake fragments are
//! gathered across consecutive handshake records. A ClientHello larger than
//! [`MAX_CLIENT_HELLO`] (Envoy's `max_client_hello_size` default, 16 KiB) gives up, as Envoy
//! does; so does anything that is not a TLS handshake.

/// The largest ClientHello inspected (Envoy's tls_inspector default `max_client_hello_size`).
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// What the first bytes of a connection say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peek {
    /// Not enough bytes yet to tell.
    NeedMore,
    /// Not a TLS ClientHello (plaintext, or one too large or malformed to read).
    NotTls,
    /// A whole ClientHello: its `server_name` (host name, lower-cased), if it sent one, and
    /// the protocols of its `application_layer_protocol_negotiation` extension, in the
    /// client's order (empty when it sent none).
    ClientHello {
        sni: Option<String>,
        alpn: Vec<String>,
    },
}

/// Inspect `data`, the bytes received so far.
pub fn peek(data: &[u8]) -> Peek {
    let mut hello = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = data.get(at..at + 5) else {
            return need_or_not(data, at);
        };
        // ContentType handshake (22), legacy version 3.x.
        if header[0] != 22 || header[1] != 3 {
            return Peek::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_CLIENT_HELLO + 256 {
            return Peek::NotTls;
        }
        let end = at + 5 + len;
        let available = &data[at + 5..data.len().min(end)];
        hello.extend_from_slice(available);
        if hello.len() >= 4 {
            if hello[0] != 1 {
                return Peek::NotTls; // the first handshake message must be a ClientHello
            }
            let body = (usize::from(hello[1]) << 16)
                | (usize::from(hello[2]) << 8)
                | usize::from(hello[3]);
            if body > MAX_CLIENT_HELLO {
                return Peek::NotTls;
            }
            if hello.len() >= 4 + body {
                return match client_hello_fields(&hello[4..4 + body]) {
                    Some((sni, alpn)) => Peek::ClientHello { sni, alpn },
                    None => Peek::NotTls,
                };
            }
        }
        if data.len() < end {
            return Peek::NeedMore;
        }
        at = end;
    }
}

/// Between records: more may come, unless what is there already cannot start a record.
fn need_or_not(data: &[u8], at: usize) -> Peek {
    match data.get(at..) {
        Some(rest) if rest.first().is_some_and(|&b| b != 22) => Peek::NotTls,
        Some(rest) if rest.len() >= 2 && rest[1] != 3 => Peek::NotTls,
        _ => Peek::NeedMore,
    }
}

/// The SNI and the ALPN protocols of a ClientHello body (RFC 8446 §4.1.2, RFC 6066 §3,
/// RFC 7301 §3.1); `None` when the body is malformed. Envoy's tls_inspector hands the
/// protocol names on as they are (`setRequestedApplicationProtocols`); one that is not UTF-8
/// can match no configured name and is left out.
fn client_hello_fields(body: &[u8]) -> Option<(Option<String>, Vec<String>)> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    let session = r.u8()?;
    r.take(usize::from(session))?;
    let suites = r.u16()?;
    r.take(usize::from(suites))?;
    let compression = r.u8()?;
    r.take(usize::from(compression))?;
    let (mut sni, mut alpn) = (None, Vec::new());
    if r.0.is_empty() {
        return Some((sni, alpn)); // no extensions at all (TLS 1.0-era hello)
    }
    let ext_len = r.u16()?;
    let mut exts = Reader(r.take(usize::from(ext_len))?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let len = exts.u16()?;
        let data = exts.take(usize::from(len))?;
        match kind {
            SERVER_NAME if sni.is_none() => sni = server_name(data)?,
            ALPN if alpn.is_empty() => alpn = protocol_names(data)?,
            _ => {}
        }
    }
    Some((sni, alpn))
}

/// Extension `server_name` (0).
const SERVER_NAME: u16 = 0;
/// Extension `application_layer_protocol_negotiation` (16).
const ALPN: u16 = 16;

/// The first `host_name` of a `server_name` extension, lower-cased.
fn server_name(data: &[u8]) -> Option<Option<String>> {
    let mut list = Reader(data);
    let list_len = list.u16()?;
    let mut names = Reader(list.take(usize::from(list_len))?);
    while !names.0.is_empty() {
        let name_type = names.u8()?;
        let len = names.u16()?;
        let name = names.take(usize::from(len))?;
        if name_type == 0 {
            let name = std::str::from_utf8(name).ok()?;
            return Some(Some(name.to_ascii_lowercase()));
        }
    }
    Some(None)
}

/// The `ProtocolNameList` of an ALPN extension, in order.
fn protocol_names(data: &[u8]) -> Option<Vec<String>> {
    let mut list = Reader(data);
    let list_len = list.u16()?;
    let mut names = Reader(list.take(usize::from(list_len))?);
    let mut out = Vec::new();
    while !names.0.is_empty() {
        let len = names.u8()?;
        let name = names.take(usize::from(len))?;
        if let Ok(name) = std::str::from_utf8(name) {
            out.push(name.to_string());
        }
    }
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
#[path = "client_hello_tests.rs"]
pub(crate) mod tests;
