//! A toy record layer with TLS's shape, for testing the transform slot without TLS.
//!
//! It has what makes TLS hard for the connection that carries it, and nothing else:
//! - a handshake: the client sends `HELLO <key>`, the server answers `OK`; until then no
//!   plaintext flows, and plaintext sealed early is held;
//! - records: `[type][len: u16 BE][payload XOR key]`, so plaintext appears only once a whole
//!   record arrived, whatever the segmentation;
//! - a close record (TLS's close_notify) and an alert record sent on failure;
//! - a peer check: a server refuses key 0 (a stand-in for a refused certificate).
//!
//! It protects nothing. Both ends are here, so tests can speak it to the engine.

use bytes::{Buf, BufMut, BytesMut};

use super::{ByteTransform, TransformError, TransformErrorKind};
use crate::time::Instant;

const HELLO: &[u8] = b"HELLO ";
const OK: &[u8] = b"OK";
const APP_DATA: u8 = 0x17;
const CLOSE: u8 = 0x15;
const ALERT: u8 = 0x16;
const MAX_RECORD: usize = 16 * 1024;

/// Which end of the handshake this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Client: HELLO sent, waiting for OK. Server: waiting for HELLO.
    Handshaking,
    Established,
    /// The peer's close record arrived: nothing more is read.
    PeerClosed,
    Failed,
}

/// One end of a framed connection.
pub struct Framed {
    role: Role,
    key: u8,
    state: State,
    /// Received bytes not yet a whole handshake message or record.
    incoming: BytesMut,
    /// Plaintext sealed before the handshake finished.
    early: BytesMut,
    /// Wire bytes waiting for `poll_wire`.
    outgoing: BytesMut,
    identity: Option<String>,
}

impl Framed {
    /// A client that will use `key`; its HELLO is queued at once.
    pub fn client(key: u8) -> Self {
        let mut f = Framed::new(Role::Client, key);
        f.outgoing.extend_from_slice(HELLO);
        f.outgoing.put_u8(key);
        f
    }

    /// A server; it learns the key from the client's HELLO.
    pub fn server() -> Self {
        Framed::new(Role::Server, 0)
    }

    fn new(role: Role, key: u8) -> Self {
        Framed {
            role,
            key,
            state: State::Handshaking,
            incoming: BytesMut::new(),
            early: BytesMut::new(),
            outgoing: BytesMut::new(),
            identity: None,
        }
    }

    fn record(&mut self, kind: u8, plain: &[u8]) {
        for chunk in plain.chunks(MAX_RECORD) {
            self.outgoing.put_u8(kind);
            // A chunk is at most MAX_RECORD (16 KiB) long, so it fits a u16.
            self.outgoing.put_u16(chunk.len() as u16);
            self.outgoing.extend(chunk.iter().map(|b| b ^ self.key));
        }
        if plain.is_empty() {
            self.outgoing.put_u8(kind);
            self.outgoing.put_u16(0);
        }
    }

    fn fail(&mut self, kind: TransformErrorKind, detail: String) -> TransformError {
        self.state = State::Failed;
        self.outgoing.clear();
        self.outgoing.put_u8(ALERT);
        self.outgoing.put_u16(0);
        TransformError::new(kind, detail)
    }

    fn handshake(&mut self) -> Result<bool, TransformError> {
        match self.role {
            Role::Server => {
                if self.incoming.len() < HELLO.len() + 1 {
                    if !HELLO.starts_with(&self.incoming[..self.incoming.len().min(HELLO.len())]) {
                        return Err(self.fail(TransformErrorKind::Handshake, "no HELLO".into()));
                    }
                    return Ok(false);
                }
                if &self.incoming[..HELLO.len()] != HELLO {
                    return Err(self.fail(TransformErrorKind::Handshake, "no HELLO".into()));
                }
                let key = self.incoming[HELLO.len()];
                self.incoming.advance(HELLO.len() + 1);
                if key == 0 {
                    return Err(self.fail(
                        TransformErrorKind::PeerRefused,
                        "client key 0 is refused".into(),
                    ));
                }
                self.key = key;
                self.identity = Some(format!("framed-client-{key}"));
                self.outgoing.extend_from_slice(OK);
            }
            Role::Client => {
                if self.incoming.first() == Some(&ALERT) {
                    let detail = "peer sent an alert".into();
                    return Err(self.fail(TransformErrorKind::Protocol, detail));
                }
                if self.incoming.len() < OK.len() {
                    return Ok(false);
                }
                if &self.incoming[..OK.len()] != OK {
                    return Err(self.fail(TransformErrorKind::Handshake, "no OK".into()));
                }
                self.incoming.advance(OK.len());
                self.identity = Some("framed-server".into());
            }
        }
        self.state = State::Established;
        let early = std::mem::take(&mut self.early);
        if !early.is_empty() {
            self.record(APP_DATA, &early);
        }
        Ok(true)
    }
}

impl ByteTransform for Framed {
    fn receive(
        &mut self,
        _now: Instant,
        wire: &[u8],
        plain: &mut BytesMut,
    ) -> Result<(), TransformError> {
        debug_assert!(self.state != State::Failed, "a failed transform is not fed");
        if self.state == State::PeerClosed {
            return Ok(());
        }
        self.incoming.extend_from_slice(wire);
        if self.state == State::Handshaking && !self.handshake()? {
            return Ok(());
        }
        while self.incoming.len() >= 3 {
            let kind = self.incoming[0];
            let len = u16::from_be_bytes([self.incoming[1], self.incoming[2]]) as usize;
            if self.incoming.len() < 3 + len {
                break;
            }
            self.incoming.advance(3);
            let payload = self.incoming.split_to(len);
            match kind {
                APP_DATA => plain.extend(payload.iter().map(|b| b ^ self.key)),
                CLOSE => {
                    self.state = State::PeerClosed;
                    self.incoming.clear();
                    return Ok(());
                }
                ALERT => {
                    return Err(self.fail(TransformErrorKind::Protocol, "peer sent an alert".into()))
                }
                other => {
                    return Err(self.fail(
                        TransformErrorKind::Protocol,
                        format!("unknown record type {other:#04x}"),
                    ))
                }
            }
        }
        Ok(())
    }

    fn seal(&mut self, plain: &[u8]) {
        match self.state {
            State::Handshaking => self.early.extend_from_slice(plain),
            State::Established | State::PeerClosed => self.record(APP_DATA, plain),
            State::Failed => {}
        }
    }

    fn poll_wire(&mut self, wire: &mut BytesMut) {
        wire.extend_from_slice(&self.outgoing);
        self.outgoing.clear();
    }

    fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    fn held(&self) -> usize {
        self.early.len() + self.outgoing.len()
    }

    fn is_established(&self) -> bool {
        matches!(self.state, State::Established | State::PeerClosed)
    }

    fn is_peer_closed(&self) -> bool {
        self.state == State::PeerClosed
    }

    fn peer_identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    fn close(&mut self) {
        if self.state != State::Failed {
            self.record(CLOSE, &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pump(
        from: &mut Framed,
        to: &mut Framed,
        plain: &mut BytesMut,
    ) -> Result<(), TransformError> {
        let mut wire = BytesMut::new();
        from.poll_wire(&mut wire);
        // One byte at a time: records must survive any segmentation.
        for b in wire.chunks(1) {
            to.receive(Instant::ZERO, b, plain)?;
        }
        Ok(())
    }

    #[test]
    fn plaintext_sealed_early_flows_after_the_handshake() {
        let (mut c, mut s) = (Framed::client(7), Framed::server());
        c.seal(b"GET / HTTP/1.1\r\n\r\n");
        assert!(!c.is_established());
        let mut at_server = BytesMut::new();
        pump(&mut c, &mut s, &mut at_server).unwrap();
        assert!(
            at_server.is_empty(),
            "nothing before the handshake completes"
        );
        assert_eq!(s.peer_identity(), Some("framed-client-7"));
        let mut at_client = BytesMut::new();
        pump(&mut s, &mut c, &mut at_client).unwrap();
        assert!(c.is_established());
        pump(&mut c, &mut s, &mut at_server).unwrap();
        assert_eq!(&at_server[..], b"GET / HTTP/1.1\r\n\r\n");
        s.seal(b"HTTP/1.1 200 OK\r\n\r\n");
        s.close();
        pump(&mut s, &mut c, &mut at_client).unwrap();
        assert_eq!(&at_client[..], b"HTTP/1.1 200 OK\r\n\r\n");
        // After the close record nothing more is read.
        s.seal(b"late");
        pump(&mut s, &mut c, &mut at_client).unwrap();
        assert_eq!(&at_client[..], b"HTTP/1.1 200 OK\r\n\r\n");
    }

    #[test]
    fn a_refused_peer_gets_an_alert_and_a_named_reason() {
        let (mut c, mut s) = (Framed::client(0), Framed::server());
        let err = pump(&mut c, &mut s, &mut BytesMut::new()).unwrap_err();
        assert_eq!(err.kind, TransformErrorKind::PeerRefused);
        assert!(err.to_string().contains("key 0"), "{err}");
        let mut wire = BytesMut::new();
        s.poll_wire(&mut wire);
        assert_eq!(&wire[..], &[ALERT, 0, 0]);
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let mut s = Framed::server();
        let err = s
            .receive(Instant::ZERO, b"GET / HTTP/1.1\r\n", &mut BytesMut::new())
            .unwrap_err();
        assert_eq!(err.kind, TransformErrorKind::Handshake);
    }
}
