//! The parts of a [`super::scenario::Scenario`] around the services: its client workloads and
//! their load, the network between sidecars and servers, and the faults scheduled on it.

use serde::{Deserialize, Serialize};

/// One client workload, bound to its own sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientSpec {
    pub load: Load,
    /// Services it calls (indices), chosen uniformly per request.
    pub targets: Vec<usize>,
    /// `x-user` values it sends (one per request, or none when empty / by chance).
    pub users: Vec<String>,
    /// Percent of requests that are POSTs with a body.
    pub post_percent: u8,
    pub max_body: u32,
    pub max_response: u32,
    /// The client's own patience when the route promises no bound.
    pub deadline_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Load {
    /// Poisson arrivals at this mean rate (requests per simulated second).
    Open { rate: u32 },
    /// `concurrency` loops: request, wait for the end, think, repeat.
    Closed { concurrency: u32, think_ms: u64 },
}

/// The network between sidecars and servers (client ↔ own sidecar is loopback).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetSpec {
    pub latency_us: u64,
    pub jitter_us: u64,
    /// Bytes per millisecond on each link.
    pub bandwidth_bpms: u64,
    /// Chance (percent) a segment is lost and retransmitted after `rto_ms`.
    pub loss_percent: u8,
    pub rto_ms: u64,
    /// Chance (per mille) a send resets its connection.
    pub reset_permille: u16,
    /// How fast clients read what their sidecar writes them, in bytes per millisecond (0: at
    /// once). A slow reader holds the sidecar's writes undrained, which is what backpressure
    /// is for.
    #[serde(default)]
    pub client_read_bpms: u64,
    /// The sidecars' per-connection buffer limit (`connection_buffer_bytes`; 0: the engine's
    /// default).
    #[serde(default)]
    pub buffer_bytes: u32,
}

/// Which endpoint: `(service, version, index)`.
pub type EndpointRef = (usize, usize, usize);

/// A scheduled fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub at_ms: u64,
    /// How long it lasts (crash: until restart).
    pub for_ms: u64,
    pub kind: FaultKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FaultKind {
    /// The process dies (open connections reset, new ones refused), then restarts.
    Crash(EndpointRef),
    /// The process stops answering (connections stay open; slow-loris-like).
    Hang(EndpointRef),
    /// Every answer takes this much longer.
    Slow(EndpointRef, u64),
    /// The link between the sidecar of a calling endpoint (a workload of a service with
    /// `calls`) and every endpoint of `service` is cut; as [`FaultKind::Partition`] otherwise.
    CallerPartition {
        caller: EndpointRef,
        service: usize,
        outbound: bool,
        inbound: bool,
        reset: bool,
    },
    /// The link between a sidecar and every endpoint of a service is cut.
    Partition {
        sidecar: usize,
        service: usize,
        /// Which directions: sidecar → server, server → sidecar.
        outbound: bool,
        inbound: bool,
        /// Reset (RST from the network) instead of silently dropping.
        reset: bool,
    },
}

/// How clients use their connections to their sidecar (RFC 9112 §9): besides one connection
/// per request, keep-alive reuse, pipelining, `connection: close` and HTTP/1.0. `None` in
/// [`super::scenario::Scenario::connections`]: one connection per request, closed by the
/// client once it has read the response.
///
/// What the sidecar owes such clients (the client side of the world checks each):
/// responses in the order of the requests, each framed so that the next one can be found; a
/// connection kept open after a response that did not end it, and closed after one that did
/// (a request or response with `connection: close`, an HTTP/1.0 exchange without
/// `keep-alive`), with no request after that point ever forwarded, answered or logged (§9.6);
/// no chunked body to an HTTP/1.0 client (§7.1: such a body is delimited by the close); an idle
/// connection closed once the listener's idle timeout passes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectionSpec {
    /// Of a client's requests, the share sent on an idle connection it already holds (when it
    /// holds one) instead of a new one.
    pub reuse_percent: u8,
    /// Of an open-loop client's requests, the share written behind requests still waiting
    /// for their responses on one of its connections (at most [`MAX_PIPELINE`] deep).
    pub pipeline_percent: u8,
    /// Of the requests, the share that says `connection: close`.
    pub close_percent: u8,
    /// Of the requests without a chunked body, the share sent as HTTP/1.0 ...
    pub http10_percent: u8,
    /// ... and of those, the share that asks to keep the connection (`connection: keep-alive`).
    pub http10_keep_alive_percent: u8,
    /// Of the requests that end their connection, the share a client follows at once with one
    /// more on the same connection (which it must not do: §9.6), to see the sidecar ignore it.
    pub after_close_percent: u8,
    /// When a client does not reuse an idle connection, the share of times it closes one.
    pub drop_idle_percent: u8,
}

/// The most requests a client keeps waiting on one connection.
pub const MAX_PIPELINE: usize = 3;
