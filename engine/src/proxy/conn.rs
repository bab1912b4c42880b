//! Per-connection state, downstream and upstream.
//!
//! Every connection carries an outgoing buffer that gathers what the engine writes while it
//! handles one input; the engine flushes it as a single `Output::Send` at the end of the call,
//! so a response head and the first body bytes leave in one write.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;

use crate::codec::ServerCodec;
use crate::time::Instant;
use crate::transport::Transport;

use super::ids::{ConnId, DownstreamId, RequestId, UpstreamId};
use super::slab::Slab;

pub(crate) struct Conn {
    pub side: Side,
    /// What runs between the socket and the codec (TLS, or nothing).
    pub transport: Transport,
    /// Bytes written by the codec, not yet handed to the driver (before the transport).
    pub out: BytesMut,
    /// Bytes handed to the driver and not yet reported written (`WriteDrained`).
    pub unacked: usize,
    /// Already in the engine's dirty list.
    pub dirty: bool,
    /// A close was decided: `Some(graceful)`. The connection ignores inputs from then on and is
    /// removed once its last bytes are flushed.
    pub closing: Option<bool>,
    /// Whether reading is currently enabled in the driver.
    pub reading: bool,
    /// The instant of the timer entry armed for this connection, if any.
    pub wake: Option<Instant>,
    /// Half-close asked for (L4 relay): once this call's bytes are flushed, the driver gets
    /// `Output::Shutdown`; set at most once per connection.
    pub shutdown: Shutdown,
}

/// Where a connection's write side is in a half-close.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Shutdown {
    #[default]
    Open,
    /// To be asked of the driver at the next flush, after the bytes written so far.
    Wanted,
    /// `Output::Shutdown` was emitted.
    Sent,
}

impl Conn {
    pub fn new(side: Side, transport: Transport) -> Self {
        Conn {
            side,
            transport,
            out: BytesMut::new(),
            unacked: 0,
            dirty: false,
            closing: None,
            reading: true,
            wake: None,
            shutdown: Shutdown::Open,
        }
    }

    /// Bytes the peer has not yet taken from us: buffered here, in the transport and in the
    /// driver.
    pub fn backlog(&self) -> usize {
        self.out.len() + self.transport.held() + self.unacked
    }

    pub fn is_open(&self) -> bool {
        self.closing.is_none()
    }
}

pub(crate) enum Side {
    Down(Downstream),
    Up(Upstream),
}

/// A client connection accepted by a listener.
pub(crate) struct Downstream {
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub original_dst: Option<SocketAddr>,
    pub source_labels: Arc<BTreeMap<String, String>>,
    pub recv: BytesMut,
    /// Turns `recv` into requests (HTTP/1.1 today).
    pub codec: Box<dyn ServerCodec>,
    pub read_closed: bool,
    pub state: DownState,
    /// Close after the current response (protocol error, `Connection: close`, HTTP/1.0 ...).
    pub close_after_response: bool,
    /// Its listener is draining ([`crate::Input::DrainListeners`]): the next response says
    /// `connection: close`, and the connection closes after it.
    pub draining: bool,
    /// Already in the engine's work queue (`Work::Resume`): at most one entry per connection.
    pub resume_queued: bool,
    pub idle_deadline: Option<Instant>,
    pub head_deadline: Option<Instant>,
    /// The L4 session while [`DownState::Tcp`] (`tcp`): its route, upstream and counters.
    pub tcp: Option<Box<super::tcp_session::TcpSession>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DownState {
    /// Between requests; nothing buffered.
    Idle,
    /// Part of a request head has arrived (the header-read timer runs).
    ReadingHead,
    /// A request is in progress.
    Active(RequestId),
    /// Upgraded: bytes are relayed raw to this upstream connection.
    Tunnel(UpstreamId),
    /// Proxied at L4 (a [`crate::config::TcpRoute`] took it): `Downstream::tcp` holds the
    /// session; bytes are never parsed as HTTP.
    Tcp,
}

/// A connection the engine opened to an upstream host.
pub(crate) struct Upstream {
    pub slot: usize,
    pub host: usize,
    /// The cluster-state generation `host` refers to (host indices change on config swaps).
    pub host_gen: u32,
    pub addr: SocketAddr,
    pub recv: BytesMut,
    pub state: UpState,
    pub read_closed: bool,
    /// Requests this connection has carried (maxRequestsPerConnection).
    pub requests: u32,
    pub connect_deadline: Option<Instant>,
    pub idle_deadline: Option<Instant>,
    /// The mirrored request this connection carries while [`UpState::Shadow`].
    pub mirror: Option<Box<super::mirror::Mirror>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpState {
    /// Connect asked for; the request that wants it, if it still does.
    Connecting(Option<RequestId>),
    /// In the pool, ready for a request.
    Idle,
    /// Carrying this request.
    Busy(RequestId),
    /// Upgraded: relaying raw bytes to this downstream connection.
    Tunnel(DownstreamId),
    /// Carrying (or connecting for) a mirrored request, whose state is `Upstream::mirror`.
    Shadow,
    /// Connecting for, then relaying the bytes of, this L4 downstream connection (`tcp`).
    Tcp(DownstreamId),
}

/// Typed access to the connection slab: a downstream id finds only a downstream connection,
/// an upstream id only an upstream one.
impl Slab<ConnId, Conn> {
    /// The downstream connection `id`, open or closing.
    pub fn down(&self, id: DownstreamId) -> Option<&Downstream> {
        match self.get(id.conn()) {
            Some(Conn {
                side: Side::Down(d),
                ..
            }) => Some(d),
            _ => None,
        }
    }

    /// The downstream connection `id`, open or closing.
    pub fn down_mut(&mut self, id: DownstreamId) -> Option<&mut Downstream> {
        match self.get_mut(id.conn()) {
            Some(Conn {
                side: Side::Down(d),
                ..
            }) => Some(d),
            _ => None,
        }
    }

    /// The downstream connection `id` if no close was decided for it.
    pub fn open_down_mut(&mut self, id: DownstreamId) -> Option<&mut Downstream> {
        match self.get_mut(id.conn()) {
            Some(Conn {
                side: Side::Down(d),
                closing: None,
                ..
            }) => Some(d),
            _ => None,
        }
    }

    /// The upstream connection `id`, open or closing.
    pub fn up(&self, id: UpstreamId) -> Option<&Upstream> {
        match self.get(id.conn()) {
            Some(Conn {
                side: Side::Up(u), ..
            }) => Some(u),
            _ => None,
        }
    }

    /// The upstream connection `id`, open or closing.
    pub fn up_mut(&mut self, id: UpstreamId) -> Option<&mut Upstream> {
        match self.get_mut(id.conn()) {
            Some(Conn {
                side: Side::Up(u), ..
            }) => Some(u),
            _ => None,
        }
    }

    /// The upstream connection `id` if no close was decided for it.
    pub fn open_up_mut(&mut self, id: UpstreamId) -> Option<&mut Upstream> {
        match self.get_mut(id.conn()) {
            Some(Conn {
                side: Side::Up(u),
                closing: None,
                ..
            }) => Some(u),
            _ => None,
        }
    }
}
