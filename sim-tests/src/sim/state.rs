//! The parts of the simulated world the mesh loop drives: server workloads (endpoints), the
//! server's end of each upstream connection, sidecars and the driver's view of their
//! connections, client requests and what became of them, and calling workloads' serves.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use trellis_engine::{ConnId, Engine, Instant};

use super::ejection::HostWatch;

/// A server workload (one endpoint).
pub(crate) struct Endpoint {
    pub service: usize,
    pub cluster: usize,
    pub spec: super::scenario::EndpointSpec,
    pub up: bool,
    /// Bumped on every crash: replies scheduled before it are dropped.
    pub epoch: u32,
    pub hung: u32,
    pub slow: Duration,
    /// The workload's own sidecar, for endpoints of services that call other services.
    pub sidecar: Option<usize>,
}

/// A calling workload serving one request: waiting for the calls it made downstream, then
/// answering on the upstream connection it came in on.
pub(crate) struct Serve {
    /// Where the request came from: sidecar, its upstream connection, the epoch it arrived in.
    pub sc: usize,
    pub conn: ConnId,
    pub epoch: u32,
    pub ep: usize,
    /// The request being served.
    pub req: usize,
    /// The calls it made (request ids) and how many have not ended yet.
    pub calls: Vec<usize>,
    pub waiting: usize,
    /// Some call ended in anything but a 2xx.
    pub failed: bool,
    /// The service time to add once the calls are done.
    pub delay: Duration,
    /// Still running (false once the workload crashed).
    pub alive: bool,
}

/// The server's end of one upstream connection.
pub(crate) struct ServerSide {
    pub recv: BytesMut,
    /// The request being read, once its head is parsed.
    pub current: Option<super::server::Incoming>,
    pub alive: bool,
    pub epoch: u32,
    /// Its last response ended the connection, and said so ([`super::events::AfterReply::announced`]).
    pub said_close: bool,
    /// Its next response starts with an interim answer (`103 Early Hints`): marked on the
    /// attempt when that response's first piece reaches the engine.
    pub early_hints: bool,
}

/// An upstream connection of a sidecar, with the server's end of it.
pub(crate) struct UpConn {
    pub ep: usize,
    pub cluster: usize,
    /// A request is outstanding on it (set by a request going out, cleared when a whole
    /// response reaches the engine).
    pub busy: bool,
    /// When its last response reached the engine whole, if none went out since: the
    /// connection has been idle in the engine's pool from then.
    pub idle_since: Option<Instant>,
    pub server: ServerSide,
    /// Whether the engine wants to read from this connection (backpressure).
    pub reading: bool,
    /// Bytes that arrived while reading was off (or not yet read), in read-sized pieces.
    pub held: std::collections::VecDeque<Piece>,
    /// The server's FIN arrived behind the held bytes.
    pub held_eof: bool,
}

/// One read's worth of bytes waiting for the engine.
pub(crate) struct Piece {
    pub data: Bytes,
    /// The last piece of a whole response: the connection is no longer busy once it is read.
    pub completes: bool,
    /// The status of the response head this piece starts with (0: none).
    pub status: u16,
}

/// One sidecar: an engine and the driver's view of its connections.
pub(crate) struct Sidecar {
    pub engine: Engine,
    pub up: BTreeMap<ConnId, UpConn>,
    /// Connects to an address where nothing listens (a passthrough's original destination),
    /// refused once their `ConnectDone` fires, unless the engine closed them first.
    pub refused: std::collections::BTreeSet<ConnId>,
    /// The clients' connections to this sidecar.
    pub down: BTreeMap<ConnId, DownConn>,
    /// Open upstream sockets per cluster (driver-side count).
    pub open: Vec<u32>,
    /// The driver's view of every host's outlier state, per cluster, as of the end of the
    /// last engine call.
    pub hosts: Vec<Vec<HostWatch>>,
    /// Per cluster, panic mode as of the end of the last engine call: on now, and the last
    /// instant it was on (a request queued for a connection keeps the host picked then).
    pub panic: Vec<(bool, Option<Instant>)>,
    /// Per downstream connection, the requests written on it whose access-log records have not
    /// arrived, in the order they were written: the sidecar serves them one at a time in that
    /// order, so the next record on the connection is the front one's.
    pub log_req: BTreeMap<ConnId, VecDeque<usize>>,
    /// The generation of each service's rules this sidecar's engine runs.
    pub generations: Vec<usize>,
    /// The stream idle timeout the last push that set one gave this sidecar.
    pub stream_idle: Option<Duration>,
    /// Per cluster, its slot in the engine (`Inspect::cluster_index`), resolved once per
    /// config the engine applied (`slots_for`): looking clusters up by name after every
    /// engine call was a tenth of the simulator's time.
    pub slots: Vec<Option<usize>>,
    pub slots_for: Option<u64>,
    /// How many of `hosts` are ejected (kept in step with every change of `ejected`).
    pub watched_ejected: usize,
}

impl Sidecar {
    /// Make `slots` valid for the engine's current config.
    pub fn resolve_slots(&mut self, cluster_names: &[String]) {
        let applied = self.engine.stats().config_applied;
        if self.slots_for != Some(applied) {
            self.slots = (cluster_names.iter())
                .map(|n| self.engine.inspect().cluster_index(n))
                .collect();
            self.slots_for = Some(applied);
        }
    }
}

/// A client's connection to its sidecar, as the client sees it.
pub(crate) struct DownConn {
    /// Requests written on it whose responses the client has not read whole, oldest first:
    /// the front one reads what the sidecar writes next.
    pub waiting: VecDeque<usize>,
    /// It belongs to a client workload, which may write another request on it (a calling
    /// workload's connections carry one call each).
    pub reusable: bool,
    /// A request or response ended it: the client writes nothing more that it expects
    /// answered, and waits for the sidecar's close.
    pub ending: bool,
    /// When it last became idle (no request waiting), if it is idle.
    pub idle_since: Option<Instant>,
    /// Bytes the sidecar wrote on it that the (slow) client has not read yet.
    pub unread: usize,
    /// Whether the engine wants to read from it, and the requests' bytes (with their ids)
    /// held while it does not.
    pub reading: bool,
    pub held: VecDeque<(usize, Bytes)>,
    /// The request (or the request whose response) that ended it, and how.
    pub ended_by: Option<(usize, &'static str)>,
}

impl DownConn {
    pub fn new(reusable: bool) -> Self {
        DownConn {
            waiting: VecDeque::new(),
            reusable,
            ending: false,
            idle_since: None,
            unread: 0,
            reading: true,
            held: VecDeque::new(),
            ended_by: None,
        }
    }
}

/// One client request and what became of it.
pub(crate) struct ClientRequest {
    pub sidecar: usize,
    /// For a call made by a workload serving another request: that serve.
    pub serve: Option<usize>,
    pub loop_id: Option<usize>,
    pub service: usize,
    pub user: Option<String>,
    /// The generation of the service's rules the sidecar ran when the request's head went in:
    /// `rule`, `bound` and every check of this request follow it.
    pub generation: usize,
    /// The stream idle timeout of the snapshot it started on.
    pub stream_idle: Duration,
    pub rule: Option<usize>,
    /// The status the head limits call for (414 or 431), from the head the client wrote and
    /// the scenario's [`super::scenario::HttpSpec`]; such a request is never routed.
    pub reject: Option<u16>,
    /// The match block of `rule` the request matched by (`None`: a rule without blocks).
    pub block: Option<usize>,
    /// The request's authority names a virtual host (`false`: 404 NR whatever the rules).
    pub routable: bool,
    /// How long the client waits when the route promises no bound.
    pub patience: Duration,
    /// Method, path, query, authority and headers sent (routing-vocabulary scenarios).
    pub shape: Option<Box<super::scenario::RequestShape>>,
    pub bound: Option<Duration>,
    pub start: Instant,
    pub body_len: usize,
    pub resp_len: usize,
    /// Sent as HEAD ([`super::scenario::MessageSpec::head_percent`]).
    pub head: bool,
    pub conn: ConnId,
    /// Sent as HTTP/1.0 ([`super::scenario::ConnectionSpec::http10_percent`]).
    pub http10: bool,
    /// The request ends its connection by itself: it says `connection: close`, or it is
    /// HTTP/1.0 without `keep-alive`.
    pub ends_conn: bool,
    /// Written after a request or response that ended the connection: the sidecar must never
    /// forward, answer or log it (RFC 9112 §9.6).
    pub unserved: bool,
    /// Written on a connection an earlier request had used, kept alive.
    pub reused: bool,
    /// Written while other requests waited on its connection (pipelining): the engine starts
    /// it in the call that finishes the one before it.
    pub pipelined: bool,
    /// Its bytes reached the engine (a connection whose reading is off holds them).
    pub delivered: bool,
    /// When it ended, every request before it on its connection had been answered whole (or
    /// it was the first): the sidecar had it, so it logs it exactly once.
    pub ended_first: bool,
    /// Access-log records that named it.
    pub logs: u32,
    /// What the client has read of the response.
    pub reading: super::response_read::Reading,
    pub outcome: Option<super::report::Outcome>,
    pub end: Option<Instant>,
    /// Bytes the sidecar wrote to this client that the client has not read yet.
    pub unread: usize,
    /// When the client will have read everything written so far.
    pub read_until: Instant,
    /// When the request reached an endpoint, and that endpoint's version (one entry per
    /// attempt that got there).
    pub reached: Vec<(Instant, usize)>,
}

#[derive(Clone, Debug)]
pub(crate) struct ClusterInfo {
    pub service: usize,
    pub version: usize,
    pub max_connections: Option<u32>,
    /// `http2MaxRequests`, when the scenario sets one.
    pub max_requests: Option<u32>,
    pub max_ejection_percent: Option<u32>,
    pub consecutive_5xx: Option<u32>,
    /// `consecutive_gateway_errors` (0: off).
    pub gateway: u32,
    /// With `split_external_local_origin_errors`: `consecutive_local_origin_failures`.
    pub local: Option<u32>,
    pub base_ejection: Duration,
    /// `max_ejection_time` as configured (Envoy's 300 s unless the scenario says otherwise).
    pub max_ejection: Duration,
    pub interval: Duration,
    /// Endpoint indices (into `Mesh::endpoints`) in cluster host order.
    pub endpoints: Vec<usize>,
}
