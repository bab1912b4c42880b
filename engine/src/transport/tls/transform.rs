//! One TLS connection as a [`ByteTransform`]: rustls's buffered connection driven with bytes.
//!
//! rustls's buffered `Connection` already is sans-IO: `read_tls` takes bytes from any
//! `io::Read` (here the received slice), `process_new_packets` advances the handshake and
//! decrypts, `reader()` yields plaintext, `writer()` takes plaintext to encrypt (buffered until
//! the handshake completes), and `write_tls` produces bytes for any `io::Write` (here a
//! `BytesMut`). The transform keeps those wire bytes in its own buffer right after each call so
//! that [`ByteTransform::held`] is exact, and hands that buffer over by `split` (no copy, and
//! no allocation once the buffer has grown to the connection's working size). rustls itself
//! still allocates one `Vec` per record (a received record's plaintext, a sealed record's
//! encoding): measured and discussed in RESEARCH.md, with what the unbuffered API would save.
//!
//! The engine's clock is stored in the config's [`EngineClock`] before every rustls call, and
//! a seeded connection lends its RNG to the provider for the call (see [`super::seeded`]).

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use rustls::{AlertDescription, CertificateError, Connection, Error};

use super::clock::EngineClock;
use super::seeded::with_rng;
use super::spiffe::SpiffeId;
use super::verify::PeerRefusal;
use super::xfcc;
use crate::time::Instant;
use crate::transport::{ByteTransform, TransformError, TransformErrorKind};

/// A mesh TLS connection, client or server side.
pub struct TlsTransform {
    conn: Connection,
    clock: Arc<EngineClock>,
    /// The seeded provider's RNG for this connection; `None` with the production provider.
    rng: Option<fastrand::Rng>,
    /// Who the other end is, for refusals: "client 10.0.0.1:4000", "upstream c at 10.0.0.2:80".
    peer: String,
    /// Wire bytes taken from rustls, waiting for `poll_wire`.
    outgoing: BytesMut,
    /// Plaintext sealed before the handshake completed (buffered inside rustls).
    early: usize,
    /// The peer's verified SPIFFE id, once established.
    identity: Option<String>,
    /// Server side: the verified client certificate's names for RBAC principals
    /// ([`xfcc::PeerNames::principals`]), once established; empty without one.
    principal_names: Vec<String>,
    /// A mesh peer must present a SPIFFE id; a server we originate TLS to need not.
    mesh: bool,
    /// Server side: our own URI SANs, for the XFCC element (`By=`) built at establishment.
    xfcc_by: Option<Arc<[String]>>,
    /// The XFCC element carries the peer's certificate (`Cert=`, a gateway's).
    xfcc_cert: bool,
    /// The XFCC element for the peer's certificate, once established (server side).
    client_cert_details: Option<String>,
    peer_closed: bool,
    failed: bool,
}

impl TlsTransform {
    /// Wrap a new rustls connection. `peer` names the other end in refusals.
    pub fn new(
        mut conn: Connection,
        clock: Arc<EngineClock>,
        rng: Option<fastrand::Rng>,
        peer: String,
    ) -> Self {
        // The engine bounds what it seals through `held()`; rustls's own limit would make
        // `seal` refuse bytes, which the contract does not allow.
        conn.set_buffer_limit(None);
        let mut t = TlsTransform {
            conn,
            clock,
            rng,
            peer,
            outgoing: BytesMut::new(),
            early: 0,
            identity: None,
            principal_names: Vec::new(),
            mesh: true,
            xfcc_by: None,
            xfcc_cert: false,
            client_cert_details: None,
            peer_closed: false,
            failed: false,
        };
        t.take_wire();
        t
    }

    /// TLS origination to a server outside the mesh: its certificate need not name a SPIFFE
    /// id (the verifier checked what the DestinationRule asked for).
    pub fn outside_mesh(mut self) -> Self {
        self.mesh = false;
        self
    }

    /// Server side: build the client's XFCC element at establishment, naming us by
    /// `local_uris` (`By=`).
    pub fn with_client_cert_details(mut self, local_uris: Arc<[String]>) -> Self {
        self.xfcc_by = Some(local_uris);
        self
    }

    /// Like [`Self::with_client_cert_details`], the element also carrying the client's
    /// certificate (`Cert=`), as a gateway's does.
    pub fn with_gateway_client_cert_details(mut self, local_uris: Arc<[String]>) -> Self {
        self.xfcc_by = Some(local_uris);
        self.xfcc_cert = true;
        self
    }

    /// The ALPN protocol agreed, once established.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Move what rustls wants sent into `outgoing`.
    fn take_wire(&mut self) {
        while self.conn.wants_write() {
            let mut w = (&mut self.outgoing).writer();
            match self.conn.write_tls(&mut w) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    fn fail(&mut self, error: Error) -> TransformError {
        self.failed = true;
        self.take_wire();
        describe(&error, &self.peer)
    }

    /// The handshake just completed: record the peer's identity (verified by the verifier).
    fn on_established(&mut self) {
        self.early = 0;
        let first = self.conn.peer_certificates().and_then(|c| c.first());
        self.identity = first
            .and_then(|c| SpiffeId::of_certificate(c).ok())
            .map(|id| id.to_string());
        debug_assert!(
            self.identity.is_some() || !self.mesh,
            "the mesh verifiers accept only certificates with a SPIFFE id"
        );
        // Server side: the client certificate, parsed once for RBAC and the XFCC element.
        let server = matches!(self.conn, Connection::Server(_));
        debug_assert!(server || self.xfcc_by.is_none(), "XFCC is a server's");
        let names = first.filter(|_| server).and_then(xfcc::PeerNames::of);
        if let Some(names) = &names {
            self.principal_names = names.principals();
        }
        if let (Some(by), Some(cert)) = (&self.xfcc_by, first) {
            self.client_cert_details = Some(xfcc::client_cert_details(
                by,
                cert,
                names.as_ref(),
                self.xfcc_cert,
            ));
        }
    }
}

/// One log line's worth for a rustls failure: which check failed, and which peer.
pub(super) fn describe(error: &Error, peer: &str) -> TransformError {
    use TransformErrorKind::{Handshake, PeerRefused, Protocol};
    let (kind, detail) = match error {
        Error::InvalidCertificate(CertificateError::Other(other)) => {
            match other.0.downcast_ref::<PeerRefusal>() {
                Some(refusal) => (PeerRefused, refusal.to_string()),
                None => (PeerRefused, format!("certificate refused: {other}")),
            }
        }
        Error::InvalidCertificate(e) => (PeerRefused, format!("certificate refused: {e:?}")),
        Error::NoCertificatesPresented => (PeerRefused, "no client certificate".to_string()),
        Error::AlertReceived(AlertDescription::BadCertificate) => (
            Handshake,
            "the peer refused our certificate (alert bad_certificate)".to_string(),
        ),
        Error::AlertReceived(alert) => (Handshake, format!("the peer sent alert {alert:?}")),
        Error::NoApplicationProtocol => (Handshake, "no ALPN protocol in common".to_string()),
        Error::PeerIncompatible(e) => (Handshake, format!("peer incompatible: {e:?}")),
        Error::InvalidMessage(e) => (Protocol, format!("not TLS or a bad record: {e:?}")),
        Error::DecryptError => (Protocol, "a record failed to decrypt".to_string()),
        other => (Protocol, other.to_string()),
    };
    TransformError::new(kind, format!("{detail} (peer: {peer})"))
}

impl ByteTransform for TlsTransform {
    fn receive(
        &mut self,
        now: Instant,
        wire: &[u8],
        plain: &mut BytesMut,
    ) -> Result<(), TransformError> {
        debug_assert!(!self.failed, "a failed transform is not fed");
        self.clock.set(now);
        let mut rest = wire;
        while !rest.is_empty() && !self.peer_closed {
            let was_handshaking = self.conn.is_handshaking();
            // Reading from a slice fails only when rustls's buffer is full of plaintext we did
            // not drain, which cannot happen: every pass drains it below.
            if let Err(e) = self.conn.read_tls(&mut rest) {
                return Err(self.fail(Error::General(e.to_string())));
            }
            let conn = &mut self.conn;
            let state = match with_rng(&mut self.rng, || conn.process_new_packets()) {
                Ok(state) => state,
                Err(e) => return Err(self.fail(e)),
            };
            if was_handshaking && !self.conn.is_handshaking() {
                self.on_established();
            }
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let start = plain.len();
                plain.resize(start + n, 0);
                if let Err(e) = self.conn.reader().read_exact(&mut plain[start..]) {
                    plain.truncate(start);
                    return Err(self.fail(Error::General(e.to_string())));
                }
            }
            self.peer_closed = state.peer_has_closed();
        }
        self.take_wire();
        Ok(())
    }

    fn seal(&mut self, plain: &[u8]) {
        if self.failed || plain.is_empty() {
            return;
        }
        if self.conn.is_handshaking() {
            self.early += plain.len();
        }
        // With no buffer limit the writer takes everything.
        let written = self.conn.writer().write_all(plain);
        debug_assert!(written.is_ok(), "rustls buffers all plaintext: {written:?}");
        self.take_wire();
    }

    fn poll_wire(&mut self, wire: &mut BytesMut) {
        if wire.is_empty() {
            *wire = self.outgoing.split();
        } else {
            wire.extend_from_slice(&self.outgoing);
            self.outgoing.clear();
        }
    }

    fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    fn held(&self) -> usize {
        self.early + self.outgoing.len()
    }

    fn is_established(&self) -> bool {
        !self.failed && !self.conn.is_handshaking()
    }

    fn is_peer_closed(&self) -> bool {
        self.peer_closed
    }

    fn peer_identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    fn client_cert_details(&self) -> Option<&str> {
        self.client_cert_details.as_deref()
    }

    fn peer_principal_names(&self) -> &[String] {
        &self.principal_names
    }

    fn server_name(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(server) => server.server_name(),
            Connection::Client(_) => None,
        }
    }

    fn close(&mut self) {
        if !self.failed {
            self.conn.send_close_notify();
            self.take_wire();
        }
    }
}
