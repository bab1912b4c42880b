//! A gateway connection before and after its ClientHello: the filter chain is chosen by the
//! SNI the client sent, then the connection runs as a [`TlsTransform`] with that chain's
//! config.
//!
//! Envoy reads the ClientHello with its `tls_inspector` listener filter, picks the filter chain
//! (see [`super::termination`]), and only then starts the chain's TLS. rustls's [`Acceptor`]
//! is the same step: it buffers bytes until the ClientHello is whole, shows it, and turns into
//! a [`ServerConnection`] with whichever config the caller picks. Both phases are states of
//! one enum, so a connection cannot run TLS before its chain is chosen.
//!
//! On a port that also has `PASSTHROUGH` servers, the ClientHello's bytes are kept while it is
//! read; when its SNI selects a passthrough chain they are handed on untouched (Envoy's
//! `tls_inspector` only peeks, so a passthrough chain's `tcp_proxy` sends the very bytes the
//! client sent), and from then on the transform copies bytes both ways.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use rustls::server::{Acceptor, ServerConnection};
use rustls::{Connection, Error};

use super::clock::EngineClock;
use super::seeded::with_rng;
use super::termination::{Choice, FilterChains};
use super::transform::{describe, TlsTransform};
use crate::time::Instant;
use crate::transport::policy::Plaintext;
use crate::transport::{ByteTransform, ChainKind, TransformError, TransformErrorKind};

/// A terminating gateway connection (see the module docs).
pub struct SniTermination {
    phase: Phase,
    chains: Arc<FilterChains>,
    clock: Arc<EngineClock>,
    /// The seeded provider's RNG, handed to the TLS phase; `None` in production.
    rng: Option<fastrand::Rng>,
    peer: String,
    /// An alert for a ClientHello that could not be served, waiting for `poll_wire`.
    outgoing: BytesMut,
    /// The chosen chain's own route table, once chosen.
    route_table: Option<Arc<str>>,
    /// Every byte received while the ClientHello is read, when the port has passthrough
    /// chains: a passed-through connection hands them on untouched. Bounded by what the
    /// acceptor takes before it has a whole ClientHello or refuses one.
    hello: BytesMut,
    /// The SNI of a passed-through connection.
    sni: Option<String>,
    /// What the chosen terminating chain's decrypted bytes are.
    plaintext: Plaintext,
}

enum Phase {
    /// Waiting for the whole ClientHello.
    Hello(Box<Acceptor>),
    /// The chain is chosen: TLS runs.
    Tls(Box<TlsTransform>),
    /// A `PASSTHROUGH` chain was chosen: bytes pass untouched both ways.
    PassThrough,
    /// The ClientHello was refused; only the alert is left to send.
    Refused,
}

impl SniTermination {
    pub fn new(
        chains: Arc<FilterChains>,
        clock: Arc<EngineClock>,
        rng: Option<fastrand::Rng>,
        peer: String,
    ) -> Self {
        debug_assert!(!chains.is_empty(), "a terminating port has a server");
        SniTermination {
            phase: Phase::Hello(Box::default()),
            chains,
            clock,
            rng,
            peer,
            outgoing: BytesMut::new(),
            route_table: None,
            hello: BytesMut::new(),
            sni: None,
            plaintext: Plaintext::Http,
        }
    }

    /// The ALPN protocol agreed, once established.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.phase {
            Phase::Tls(tls) => tls.alpn_protocol(),
            _ => None,
        }
    }

    fn refuse(&mut self, error: TransformError) -> TransformError {
        self.phase = Phase::Refused;
        error
    }

    /// The ClientHello is whole: pick the chain and start its TLS with the bytes that follow.
    fn start(
        &mut self,
        now: Instant,
        accepted: rustls::server::Accepted,
        rest: &[u8],
        plain: &mut BytesMut,
    ) -> Result<(), TransformError> {
        let sni = accepted.client_hello().server_name().map(str::to_string);
        let offered: Option<Vec<&[u8]>> = accepted.client_hello().alpn().map(Iterator::collect);
        let hello = std::mem::take(&mut self.hello);
        let chosen = self
            .chains
            .select(sni.as_deref())
            .map(|choice| match choice {
                Choice::Terminate(s) => Some((
                    s.config_for(offered.as_deref()),
                    s.local_uris.clone(),
                    s.route_table.cloned(),
                    s.mesh,
                    s.plaintext,
                )),
                Choice::PassThrough => None,
            });
        let Some(chosen) = chosen else {
            let error = TransformError::new(
                TransformErrorKind::Handshake,
                format!(
                    "no Gateway server on this port serves SNI {} (no filter chain match; \
                     peer: {})",
                    sni.as_deref()
                        .map_or_else(|| "(none sent)".to_string(), |s| format!("{s:?}")),
                    self.peer
                ),
            );
            return Err(self.refuse(error));
        };
        let Some((config, local_uris, route_table, mesh, plaintext)) = chosen else {
            // A PASSTHROUGH server's chain: the ClientHello and whatever followed it go on as
            // they came, for the L4 chain the same SNI selects.
            debug_assert!(
                !hello.is_empty(),
                "a passthrough port keeps the ClientHello"
            );
            plain.extend_from_slice(&hello);
            self.sni = sni;
            self.phase = Phase::PassThrough;
            return Ok(());
        };
        self.route_table = route_table;
        self.plaintext = plaintext;
        self.clock.set(now);
        let converted: Result<ServerConnection, _> =
            with_rng(&mut self.rng, || accepted.into_connection(config));
        let conn = match converted {
            Ok(conn) => conn,
            Err((error, mut alert)) => {
                let _ = alert.write_all(&mut (&mut self.outgoing).writer());
                let error = describe(&error, &self.peer);
                return Err(self.refuse(error));
            }
        };
        // The XFCC element a gateway sets (SANITIZE_SET with `cert: true`). Only an
        // ISTIO_MUTUAL chain's verified client is a mesh peer (its id a principal).
        let tls = TlsTransform::new(
            Connection::Server(conn),
            self.clock.clone(),
            self.rng.take(),
            self.peer.clone(),
        )
        .with_gateway_client_cert_details(local_uris);
        let mut tls = Box::new(if mesh { tls } else { tls.outside_mesh() });
        let fed = tls.receive(now, rest, plain);
        self.phase = Phase::Tls(tls);
        fed
    }
}

impl ByteTransform for SniTermination {
    fn receive(
        &mut self,
        now: Instant,
        wire: &[u8],
        plain: &mut BytesMut,
    ) -> Result<(), TransformError> {
        if matches!(self.phase, Phase::Hello(_)) && self.chains.has_passthrough() {
            self.hello.extend_from_slice(wire);
        }
        let acceptor = match &mut self.phase {
            Phase::Tls(tls) => return tls.receive(now, wire, plain),
            Phase::PassThrough => {
                plain.extend_from_slice(wire);
                return Ok(());
            }
            Phase::Refused => {
                debug_assert!(false, "a refused transform is not fed");
                return Ok(());
            }
            Phase::Hello(acceptor) => acceptor,
        };
        let mut rest = wire;
        while !rest.is_empty() {
            if let Err(e) = acceptor.read_tls(&mut rest) {
                let error = describe(&Error::General(e.to_string()), &self.peer);
                return Err(self.refuse(error));
            }
            match acceptor.accept() {
                Ok(None) => {}
                Ok(Some(accepted)) => return self.start(now, accepted, rest, plain),
                Err((error, mut alert)) => {
                    let _ = alert.write_all(&mut (&mut self.outgoing).writer());
                    let error = describe(&error, &self.peer);
                    return Err(self.refuse(error));
                }
            }
        }
        Ok(())
    }

    fn seal(&mut self, plain: &[u8]) {
        match &mut self.phase {
            Phase::Tls(tls) => tls.seal(plain),
            Phase::PassThrough => self.outgoing.extend_from_slice(plain),
            // The codec writes nothing before the handshake: a gateway speaks second.
            _ => debug_assert!(plain.is_empty(), "nothing is sealed before the ClientHello"),
        }
    }

    fn poll_wire(&mut self, wire: &mut BytesMut) {
        if !self.outgoing.is_empty() {
            wire.extend_from_slice(&self.outgoing);
            self.outgoing.clear();
        }
        if let Phase::Tls(tls) = &mut self.phase {
            tls.poll_wire(wire);
        }
    }

    fn wants_write(&self) -> bool {
        !self.outgoing.is_empty() || matches!(&self.phase, Phase::Tls(tls) if tls.wants_write())
    }

    fn held(&self) -> usize {
        // A kept ClientHello counts too: it is memory this connection holds.
        self.outgoing.len()
            + self.hello.len()
            + match &self.phase {
                Phase::Tls(tls) => tls.held(),
                _ => 0,
            }
    }

    fn is_established(&self) -> bool {
        match &self.phase {
            Phase::Tls(tls) => tls.is_established(),
            Phase::PassThrough => true,
            _ => false,
        }
    }

    fn is_peer_closed(&self) -> bool {
        matches!(&self.phase, Phase::Tls(tls) if tls.is_peer_closed())
    }

    fn peer_identity(&self) -> Option<&str> {
        match &self.phase {
            Phase::Tls(tls) => tls.peer_identity(),
            _ => None,
        }
    }

    fn peer_principal_names(&self) -> &[String] {
        match &self.phase {
            Phase::Tls(tls) => tls.peer_principal_names(),
            _ => &[],
        }
    }

    fn client_cert_details(&self) -> Option<&str> {
        match &self.phase {
            Phase::Tls(tls) => tls.client_cert_details(),
            _ => None,
        }
    }

    fn server_name(&self) -> Option<&str> {
        match &self.phase {
            Phase::Tls(tls) => tls.server_name(),
            Phase::PassThrough => self.sni.as_deref(),
            _ => None,
        }
    }

    fn chain(&self) -> Option<ChainKind> {
        match &self.phase {
            Phase::Tls(_) => Some(match self.plaintext {
                Plaintext::Http => ChainKind::Terminated,
                Plaintext::Tcp => ChainKind::TerminatedTcp,
            }),
            Phase::PassThrough => Some(ChainKind::PassedThrough),
            Phase::Hello(_) | Phase::Refused => None,
        }
    }

    fn route_table(&self) -> Option<&str> {
        self.route_table.as_deref()
    }

    fn close(&mut self) {
        if let Phase::Tls(tls) = &mut self.phase {
            tls.close();
        }
    }
}
