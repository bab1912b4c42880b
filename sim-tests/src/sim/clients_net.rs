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
