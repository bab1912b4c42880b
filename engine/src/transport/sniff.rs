//! Telling a TLS client from a plaintext one by its first bytes, for PeerAuthentication's
//! PERMISSIVE mode (and a clear refusal of plaintext under STRICT), and a sidecar's mTLS from
//! a TLS client of the workload's own by the ALPN protocols its ClientHello offers.
//!
//! Envoy does this with its `tls_inspector` listener filter, which Istio puts on every
//! inbound listener: it reads the first bytes and, if they are a TLS ClientHello, the filter
//! chain for `transport_protocol: tls` takes the connection; otherwise the `raw_buffer` one.
//! Here the test is on the record and handshake headers, which is all a decision needs: a
//! TLS connection opens with a handshake record (content type 22, record version 3.x)
//! carrying a ClientHello (handshake type 1). No HTTP/1 request line can begin with byte 22,
//! so plaintext HTTP is known from its first byte.
//!
//! Under PERMISSIVE, pilot's TLS chains that terminate mTLS also match the ClientHello's ALPN
//! on Istio's mesh protocols (`allIstioMtlsALPNs`, pilot/pkg/networking/core/listener.go;
//! the chains of `filterchain_options.go`): a TLS client that offers none of them is not a
//! sidecar. On a TCP or auto-detected port its own chain (`TransportProtocol: tls`, TCP, no
//! TLS) relays it untouched to the workload, whose TLS it is; an HTTP port has no such chain
//! ("we do not need to handle other simple TLS", `inboundPermissiveHTTPFilterChainMatchWith
//! MxcOptions`), so Envoy closes it. Under STRICT the chains match any TLS and terminate it.

use bytes::BytesMut;

use super::client_hello::{peek, Peek, MAX_CLIENT_HELLO};

/// What the first bytes of a connection say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniffed {
    /// A TLS ClientHello begins here.
    Tls,
    /// Not TLS: treat the bytes as the application protocol's.
    Plaintext,
    /// Too few bytes to tell; everything seen so far is consistent with TLS.
    NeedMore,
}

/// Bytes [`sniff`] needs at most to decide.
pub const SNIFF_BYTES: usize = 6;

const HANDSHAKE_RECORD: u8 = 22;
const CLIENT_HELLO: u8 = 1;

/// Classify a connection by the bytes it opened with.
pub fn sniff(first: &[u8]) -> Sniffed {
    // Record header: type, version major, version minor, length (2); then the handshake
    // message type. Each byte seen must fit, or it is not TLS.
    let checks: [fn(u8) -> bool; SNIFF_BYTES] = [
        |b| b == HANDSHAKE_RECORD,
        |b| b == 3,
        |b| b <= 4,
        |_| true,
        |_| true,
        |b| b == CLIENT_HELLO,
    ];
    for (byte, fits) in first.iter().zip(checks) {
        if !fits(*byte) {
            return Sniffed::Plaintext;
        }
    }
    if first.len() >= SNIFF_BYTES {
        Sniffed::Tls
    } else {
        Sniffed::NeedMore
    }
}

/// pilot's `allIstioMtlsALPNs` (pilot/pkg/networking/core/listener.go): what a mesh client's
/// mTLS offers (the peer-exchange, plain TCP, HTTP/1.x and HTTP/2 variants), which the
/// inbound chains that terminate mTLS and an AUTO_PASSTHROUGH gateway's chains match.
pub const ISTIO_MTLS_ALPNS: [&str; 5] = [
    "istio",
    "istio-peer-exchange",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];

/// Whether a ClientHello offering `alpn` is a sidecar's: one of [`ISTIO_MTLS_ALPNS`], or
/// Trellis's own id for servers that predate `istio` ([`super::tls::MESH_HTTP1`]). Envoy
/// matches a chain's `application_protocols` when any offered protocol is in it.
pub fn offers_mesh_alpn(alpn: &[String]) -> bool {
    alpn.iter()
        .any(|p| ISTIO_MTLS_ALPNS.contains(&p.as_str()) || p.as_bytes() == super::tls::MESH_HTTP1)
}

/// What an inbound port does with a TLS client that offers no mesh ALPN
/// ([`offers_mesh_alpn`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignTls {
    /// Terminate it as mTLS all the same (STRICT: its chains match any TLS).
    Terminate,
    /// Relay its bytes untouched, as TCP, to the workload (PERMISSIVE on a TCP or
    /// auto-detected port).
    PassThrough,
    /// Close it: no chain takes it (PERMISSIVE on an HTTP port).
    Refuse,
}

/// What the first bytes decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Terminate (m)TLS.
    Terminate,
    /// Plaintext: the application protocol's bytes.
    Plaintext,
    /// TLS from a client that is not a sidecar, on a port that does not terminate it.
    Foreign(ForeignTls),
}

/// An inbound connection whose first bytes are being read: until they say TLS or plaintext,
/// and, where the port treats the two kinds of TLS client differently, until the whole
/// ClientHello says which kind this is.
#[derive(Debug)]
pub struct Sniffer {
    /// The bytes seen so far, while they are not enough to decide.
    seen: BytesMut,
    foreign_tls: ForeignTls,
}

impl Sniffer {
    pub fn new(foreign_tls: ForeignTls) -> Self {
        Sniffer {
            seen: BytesMut::new(),
            foreign_tls,
        }
    }

    /// A TLS client that is not a sidecar is relayed instead of refused: the connection
    /// turned out to be the workload's TCP (the L4 session took it).
    pub fn pass_foreign_tls_through(&mut self) {
        if self.foreign_tls == ForeignTls::Refuse {
            self.foreign_tls = ForeignTls::PassThrough;
        }
    }

    /// Take the next bytes from the socket: `None` while undecided (the bytes are kept).
    /// Once decided, the bytes to hand on are [`Sniffer::take_seen`]'s when it has any, else
    /// this `wire` (a first read that decides is not copied).
    pub fn receive(&mut self, wire: &[u8]) -> Option<Verdict> {
        if !self.seen.is_empty() {
            self.seen.extend_from_slice(wire);
        }
        let bytes: &[u8] = if self.seen.is_empty() {
            wire
        } else {
            &self.seen
        };
        let verdict = self.judge(bytes);
        if verdict.is_none() && self.seen.is_empty() {
            self.seen.extend_from_slice(wire);
        }
        debug_assert!(
            verdict.is_some() || self.seen.len() <= MAX_UNDECIDED,
            "an undecided ClientHello is bounded by the inspector's limit"
        );
        verdict
    }

    /// The bytes gathered over several reads before the verdict (empty when one read decided).
    pub fn take_seen(&mut self) -> BytesMut {
        std::mem::take(&mut self.seen)
    }

    fn judge(&self, bytes: &[u8]) -> Option<Verdict> {
        #[cfg(not(feature = "mutants"))]
        let terminate_all = self.foreign_tls == ForeignTls::Terminate;
        #[cfg(feature = "mutants")]
        let terminate_all = self.foreign_tls == ForeignTls::Terminate
            || crate::mutants::route().permissive_terminates_foreign_tls;
        match sniff(bytes) {
            Sniffed::NeedMore => None,
            Sniffed::Plaintext => Some(Verdict::Plaintext),
            Sniffed::Tls if terminate_all => Some(Verdict::Terminate),
            Sniffed::Tls => match peek(bytes) {
                Peek::NeedMore => None,
                Peek::ClientHello { alpn, .. } if offers_mesh_alpn(&alpn) => {
                    Some(Verdict::Terminate)
                }
                Peek::ClientHello { .. } => Some(Verdict::Foreign(self.foreign_tls)),
                // Too large or malformed to read: the TLS stack says what is wrong with it
                // (Envoy's inspector closes such a connection too).
                Peek::NotTls => Some(Verdict::Terminate),
            },
        }
    }
}

/// The most bytes a ClientHello can take before [`peek`] decides: a body of up to
/// `MAX_CLIENT_HELLO` in records of one byte each (five of header), and a last record of the
/// largest length the peek accepts.
const MAX_UNDECIDED: usize = 6 * (MAX_CLIENT_HELLO + 4) + 5 + MAX_CLIENT_HELLO + 256;

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck_macros::quickcheck;

    #[test]
    fn client_hello_is_tls() {
        // The first bytes of a TLS 1.3 ClientHello (legacy record version 3.1).
        assert_eq!(sniff(&[22, 3, 1, 2, 0, 1, 0, 1, 252]), Sniffed::Tls);
        assert_eq!(sniff(&[22, 3, 3, 0, 200, 1]), Sniffed::Tls);
    }

    #[test]
    fn http_is_plaintext_from_the_first_byte() {
        for line in ["GET / HTTP/1.1\r\n", "PRI * HTTP/2.0\r\n", "\r\n"] {
            assert_eq!(sniff(&line.as_bytes()[..1]), Sniffed::Plaintext);
        }
    }

    #[test]
    fn a_prefix_of_tls_needs_more() {
        assert_eq!(sniff(&[]), Sniffed::NeedMore);
        assert_eq!(sniff(&[22]), Sniffed::NeedMore);
        assert_eq!(sniff(&[22, 3, 1, 2, 0]), Sniffed::NeedMore);
        // An alert record, or a ServerHello, is not a client opening a connection.
        assert_eq!(sniff(&[21, 3, 3]), Sniffed::Plaintext);
        assert_eq!(sniff(&[22, 3, 3, 0, 9, 2]), Sniffed::Plaintext);
        assert_eq!(sniff(&[22, 2]), Sniffed::Plaintext);
    }

    /// Feeding more bytes never changes a decision already made.
    #[quickcheck]
    fn decisions_are_stable(bytes: Vec<u8>) -> bool {
        let full = sniff(&bytes);
        (0..=bytes.len()).all(|n| match sniff(&bytes[..n]) {
            Sniffed::NeedMore => true,
            decided => decided == full,
        })
    }

    /// Once enough bytes are there, there is a decision.
    #[quickcheck]
    fn enough_bytes_decide(bytes: Vec<u8>) -> bool {
        bytes.len() < SNIFF_BYTES || sniff(&bytes) != Sniffed::NeedMore
    }

    /// Feed `bytes` to a sniffer in pieces of `step`: the verdict, and every byte it hands on
    /// (the kept ones, else the deciding read), which must be all of them.
    fn sniffed(foreign: ForeignTls, bytes: &[u8], step: usize) -> Option<Verdict> {
        let mut sniffer = Sniffer::new(foreign);
        let mut fed = 0;
        for chunk in bytes.chunks(step.max(1)) {
            fed += chunk.len();
            if let Some(verdict) = sniffer.receive(chunk) {
                let seen = sniffer.take_seen();
                let handed = if seen.is_empty() { chunk } else { &seen[..] };
                assert_eq!(handed, &bytes[..fed], "every byte seen is handed on, once");
                return Some(verdict);
            }
        }
        None
    }

    #[test]
    fn a_sidecars_alpn_is_terminated_and_another_clients_is_foreign() {
        use crate::transport::client_hello::tests::client_hello_offering;
        let sidecar = client_hello_offering("outbound_.80_._.a.local", &["istio-http/1.1"]);
        let envoy = client_hello_offering("a.local", &["istio-peer-exchange", "istio"]);
        let trellis = client_hello_offering("a.local", &["trellis-http/1.1"]);
        let curl = client_hello_offering("a.local", &["h2", "http/1.1"]);
        let bare = client_hello_offering("a.local", &[]);
        for step in [1, 5, 6, 64, usize::MAX] {
            for foreign in [ForeignTls::PassThrough, ForeignTls::Refuse] {
                for mesh in [&sidecar, &envoy, &trellis] {
                    assert_eq!(sniffed(foreign, mesh, step), Some(Verdict::Terminate));
                }
                for other in [&curl, &bare] {
                    assert_eq!(
                        sniffed(foreign, other, step),
                        Some(Verdict::Foreign(foreign))
                    );
                }
            }
            // STRICT decides from the record header, without waiting for the whole hello.
            let header = &curl[..SNIFF_BYTES];
            assert_eq!(
                sniffed(ForeignTls::Terminate, header, step),
                Some(Verdict::Terminate)
            );
            assert_eq!(sniffed(ForeignTls::Refuse, header, step), None);
            assert_eq!(
                sniffed(ForeignTls::Refuse, b"GET / HTTP/1.1\r\n", step),
                Some(Verdict::Plaintext)
            );
        }
    }

    /// A hello the inspector cannot read (malformed after a TLS record header) is left to the
    /// TLS stack, whose error names what is wrong, rather than relayed.
    #[test]
    fn an_unreadable_hello_is_terminated() {
        let mut bytes = vec![22, 3, 1, 0, 8, 1, 0, 0, 4];
        bytes.extend_from_slice(&[0xff; 8]);
        assert_eq!(
            sniffed(ForeignTls::PassThrough, &bytes, 3),
            Some(Verdict::Terminate)
        );
    }

    /// Whatever the bytes and however they are split, a sniffer decides the same, hands every
    /// byte on, and decides at the latest when they are plainly not a ClientHello in the
    /// making.
    #[quickcheck]
    fn sniffers_decide_alike_at_any_split(bytes: Vec<u8>, step: u8, tls_prefix: bool) -> bool {
        let mut data = if tls_prefix {
            vec![22, 3, 1, 0, 40, 1]
        } else {
            Vec::new()
        };
        data.extend_from_slice(&bytes);
        let whole = sniffed(ForeignTls::PassThrough, &data, data.len());
        sniffed(ForeignTls::PassThrough, &data, usize::from(step)) == whole
    }
}
