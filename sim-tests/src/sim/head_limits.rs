//! Clients probing the connection manager's head limits: which limit a request probes, how it
//! is padded to the limit's edge (one under, at, one over, well past), and the status the
//! limits call for on the head as written (the reference, from `HttpSettings`' documented
//! meaning: 414 for a long request line, else 431 for a head too large or with too many
//! fields). Checked in [`super::client`] when the response arrives ([`Invariant::HeadLimits`]).
//!
//! [`Invariant::HeadLimits`]: super::check::Invariant::HeadLimits

use super::mesh::Mesh;
use super::scenario::RequestShape;

/// Which of the head limits a padded request probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LimitProbe {
    Line,
    Bytes,
    Count,
}

impl Mesh<'_> {
    /// Whether this request probes a head limit, which one, and the size to pad it to: the
    /// limit's edge (one under, at, one over) or well past it.
    pub(super) fn draw_limit_probe(&mut self, shaped: bool) -> Option<(LimitProbe, usize)> {
        let h = self.scn.http.as_ref()?;
        if !shaped || self.rng.u8(0..100) >= h.probe_percent {
            return None;
        }
        let (kind, limit) = match self.rng.u8(0..3) {
            0 => (LimitProbe::Line, h.max_request_line_bytes),
            1 => (LimitProbe::Bytes, h.max_header_bytes),
            _ => (LimitProbe::Count, h.max_headers),
        };
        let limit = limit as usize;
        let want = match self.rng.u8(0..4) {
            0 => limit - 1,
            1 => limit,
            2 => limit + 1,
            _ => limit + self.rng.usize(2..200),
        };
        Some((kind, want))
    }
}

/// Lengthens the request line of `shape` to `want` bytes (method, target and version) with a
/// `zpad` query parameter, which no generated condition names; a line that is already longer,
/// or too short to take the parameter, stays as it is.
pub(super) fn pad_request_line(shape: &mut RequestShape, want: usize) {
    let line = shape.method.len() + 1 + shape.sent_target().len() + " HTTP/1.1".len();
    // `?zpad=` or `&zpad=`, then the value.
    if let Some(k) = want.checked_sub(line + 6) {
        if !shape.query.is_empty() {
            shape.query.push('&');
        }
        shape.query.push_str("zpad=");
        shape.query.extend(std::iter::repeat_n('z', k));
    }
}

/// The status the limits of `h` call for on a request whose bytes start with the head `raw`
/// (RFC 9112 syntax, as the client wrote it): 414 for a request line over
/// `max_request_line_bytes`; else 431 for a head over `max_header_bytes` (CRLFs and the
/// empty line counted) or with more than `max_headers` fields.
pub(super) fn head_limit_status(h: &super::scenario::HttpSpec, raw: &[u8]) -> Option<u16> {
    let line = raw.windows(2).position(|w| w == b"\r\n")?;
    let head = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    // Every CRLF up to the end of the head ends a line: the request line, the fields, the
    // empty line.
    let fields = raw[..head].windows(2).filter(|w| w == b"\r\n").count() - 2;
    if line > h.max_request_line_bytes as usize {
        Some(414)
    } else if head > h.max_header_bytes as usize || fields > h.max_headers as usize {
        Some(431)
    } else {
        None
    }
}
