//! What can happen in a simulated mesh: the events the world's queue holds ([`Ev`]: arrivals,
//! deliveries, connects, server replies, timers of the world, faults, config pushes), and the
//! knobs of one run that are not part of the scenario ([`RunOptions`]). [`super::mesh`] fires
//! them in order.

use bytes::Bytes;
use trellis_engine::{ConnId, Engine};

/// Knobs of one run that are not part of the scenario.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Called on every sidecar's engine right after it is built (e.g. to plant a bug with the
    /// engine's `mutants` feature).
    pub engine_hook: Option<fn(usize, &mut Engine)>,
    /// Keep a timeline for plotting.
    pub timeline: bool,
    /// A planted driver bug for the self-test: ignore `Output::ReadInterest` and keep feeding
    /// the engine whatever arrives (the simulator's behaviour before it honoured backpressure).
    pub ignore_read_interest: bool,
    /// Keep one [`super::report::RequestRecord`] per request in the report.
    pub records: bool,
    /// Called on each control-plane incarnation of a seed's control-plane world
    /// ([`super::plane`]), to plant a bug with the control crate's `mutants` feature.
    pub plane_hook: Option<fn(&mut trellis_control::plane::push::Server)>,
}

pub(crate) enum Ev {
    Arrival {
        client: usize,
    },
    LoopStart {
        client: usize,
        loop_id: usize,
    },
    GiveUp {
        req: usize,
    },
    ConnectDone {
        sc: usize,
        conn: ConnId,
        ok: bool,
    },
    ToServer {
        sc: usize,
        conn: ConnId,
        data: Bytes,
    },
    ServerReply {
        sc: usize,
        conn: ConnId,
        epoch: u32,
        data: Bytes,
        after: AfterReply,
        /// The response status (0 when the reply is not HTTP, and on every piece but the
        /// first of a response sent in pieces).
        status: u16,
        /// More pieces of this response follow.
        more: bool,
    },
    ToEngine {
        sc: usize,
        conn: ConnId,
        data: Bytes,
        completes: bool,
        /// The status of the response head this data starts with, if any.
        status: u16,
    },
    EngineEof {
        sc: usize,
        conn: ConnId,
    },
    EngineReset {
        sc: usize,
        conn: ConnId,
    },
    /// The client has read the response that ended a connection: its sidecar must have
    /// closed it ([`super::client_conn`]).
    CloseCheck {
        sc: usize,
        conn: ConnId,
    },
    /// A client connection has been idle since `since` for longer than the idle timeout.
    IdleCheck {
        sc: usize,
        conn: ConnId,
        since: trellis_engine::Instant,
    },
    /// Reading was switched back on: hand the held bytes to the engine.
    Resume {
        sc: usize,
        conn: ConnId,
    },
    /// A slow client has read `bytes` more of what its sidecar wrote.
    ClientRead {
        req: usize,
        bytes: usize,
    },
    /// A calling workload's downstream calls have all ended and its service time is over.
    ServeDone {
        serve: usize,
    },
    FaultStart(usize),
    FaultEnd(usize),
    /// Config push `push` reaches sidecar `sc`.
    ConfigPush {
        sc: usize,
        push: usize,
    },
}

/// What a server does with its connection once a reply (or its last piece) is out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterReply {
    /// Keeps it open for the next request.
    KeepOpen,
    /// Closes it after a response whole by its own framing, having said `connection: close`.
    Close,
    /// Closes it, the close ending a response framed by neither length nor chunks.
    CloseEnds,
    /// Closes it after bytes that are no HTTP response.
    Garbage,
    /// Resets it partway through a body delimited by the close.
    Reset,
}

impl AfterReply {
    /// The server closes the connection after this reply.
    pub(crate) fn closes(self) -> bool {
        self != AfterReply::KeepOpen
    }

    /// The server told the sidecar, by a field or by the framing, that the connection ends
    /// with this response: the sidecar must not write another request on it (RFC 9112 §9.6).
    pub(crate) fn announced(self) -> bool {
        matches!(self, AfterReply::Close | AfterReply::CloseEnds)
    }
}
