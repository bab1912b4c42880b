//! What a run produced: counts, latencies, the trace hash, violations, and (optionally) the
//! timeline a plot is drawn from.

use std::collections::BTreeMap;
use std::time::Duration;

use trellis_engine::Instant;

use super::check::Violation;

/// What a world run beside the routing mesh (security, mirroring) came to: its violations,
/// outcomes and trace hash join the seed's [`RunReport`] ([`RunReport::join`]).
#[derive(Debug, Default)]
pub struct WorldOutcome {
    pub violations: Vec<Violation>,
    pub trace: u64,
    pub outcomes: BTreeMap<String, u64>,
}

impl RunReport {
    /// Add a side world's violations, outcomes and trace (mixed in with a rotation of its
    /// own, so two worlds with equal traces do not cancel).
    pub fn join(&mut self, world: WorldOutcome, rotate: u32) {
        self.violations.extend(world.violations);
        self.trace_hash = (self.trace_hash ^ world.trace).rotate_left(rotate);
        for (outcome, n) in world.outcomes {
            *self.outcomes.entry(outcome).or_default() += n;
        }
    }
}

impl WorldOutcome {
    /// A world that could not be built: one `ConfigApplied` violation saying why.
    pub fn unbuilt(world: &str, msg: &str) -> WorldOutcome {
        WorldOutcome {
            violations: vec![Violation {
                invariant: super::check::Invariant::ConfigApplied,
                at: Instant::ZERO,
                detail: format!("the {world} world could not be built: {msg}"),
            }],
            ..WorldOutcome::default()
        }
    }
}

/// How one client request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server's response arrived whole (any status the server chose).
    Response(u16),
    /// The mesh answered itself: status and Envoy response flags.
    Mesh(u16, String),
    /// The connection closed before a whole response (a cut stream).
    Truncated,
    /// The client gave up waiting.
    ClientTimeout,
    /// The caller went away first: a workload that crashed while its calls were in flight.
    Cancelled,
}

impl Outcome {
    /// A short class name for summaries ("200", "503 UF", "truncated", ...).
    pub fn kind(&self) -> String {
        match self {
            Outcome::Response(s) => format!("{s}"),
            Outcome::Mesh(s, flags) => format!("{s} {flags}"),
            Outcome::Truncated => "truncated".into(),
            Outcome::ClientTimeout => "client-timeout".into(),
            Outcome::Cancelled => "cancelled".into(),
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Response(s) if *s < 500)
    }
}

/// One request on the timeline.
#[derive(Clone, Debug)]
pub struct TimelineRequest {
    pub start: Instant,
    pub latency: Duration,
    pub ok: bool,
    pub mesh_error: bool,
    /// A call a workload made (two-tier meshes), not a client request.
    pub call: bool,
}

/// One fault window on the timeline.
#[derive(Clone, Debug)]
pub struct TimelineFault {
    pub from: Instant,
    pub until: Instant,
    pub label: String,
}

/// What a plot needs.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub requests: Vec<TimelineRequest>,
    pub faults: Vec<TimelineFault>,
    /// Ejection instants with a label (`sidecar/cluster/host`).
    pub ejections: Vec<(Instant, String)>,
    /// Config pushes reaching a sidecar, with a label (`push/sidecar → version`).
    pub pushes: Vec<(Instant, String)>,
}

/// The result of one run.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    pub seed: u64,
    /// Every request, client requests and workloads' downstream calls alike.
    pub requests: u64,
    /// Of those, calls that a workload made while serving a request (two-tier meshes).
    pub calls: u64,
    /// Outcome kind → count.
    pub outcomes: BTreeMap<String, u64>,
    pub ejections: u64,
    /// Of those, ejections with a multiplier above one (a host ejected again before its
    /// backoff decayed), and ejections that `max_ejection_time` cut short.
    pub ejections_multiplied: u64,
    pub ejections_capped: u64,
    /// Client-observed latencies in simulated time, sorted.
    pub latencies: Vec<Duration>,
    pub sim_time: Duration,
    pub events: u64,
    pub trace_hash: u64,
    pub violations: Vec<Violation>,
    pub timeline: Option<Timeline>,
    /// Config pushes that reached a sidecar, and the requests in flight there at each.
    pub pushes_delivered: u64,
    pub in_flight_at_push: u64,
    /// One record per request, in start order (only with `RunOptions::records`).
    pub records: Vec<RequestRecord>,
    /// The weighted-split chi-square statistics of the run, summed: a swarm adds these across
    /// seeds to see a bias too small for any one run.
    pub split_aggregate: super::stats::Aggregate,
    /// The weighted random balancer's chi-square statistics of the run, summed (one per
    /// cluster and eligible set with unequal weights, see `balance`): a swarm adds these
    /// across seeds to see a slip of one unit of weight no single run could.
    pub random_aggregate: super::stats::Aggregate,
}

/// What became of one request, for tests that assert on individual requests.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub sidecar: usize,
    pub service: usize,
    /// The generation of the service's rules its sidecar ran when it started.
    pub generation: usize,
    /// The reference model's rule for it (within that generation).
    pub rule: Option<usize>,
    pub start: Instant,
    pub end: Option<Instant>,
    pub outcome: Option<Outcome>,
    /// When it reached an endpoint and that endpoint's version, one per attempt that got there.
    pub reached: Vec<(Instant, usize)>,
}

impl RunReport {
    /// The `q`-quantile (0..=1) of simulated latency.
    pub fn quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }

    pub fn errors(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(k, _)| !k.starts_with('2') && !k.starts_with('4'))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The `q`-quantile of sorted `values` (nearest rank).
pub fn quantile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((values.len() as f64) * q).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// A stable 64-bit hash (same on every platform and Rust version) for trace hashes: FNV-1a's
/// constants applied to 8-byte words (then the tail bytes), with a final avalanche.
#[derive(Clone, Copy, Debug)]
pub struct TraceHash(u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    pub fn bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        for b in chunks.remainder() {
            self.word(u64::from(*b));
        }
        self.word(bytes.len() as u64);
    }

    fn word(&mut self, w: u64) {
        self.0 ^= w;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    }

    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    pub fn finish(self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }
}

impl super::mesh::Mesh<'_> {
    /// The end of a run: the checks that need the whole run, then the report.
    pub(crate) fn finish(mut self) -> RunReport {
        self.final_checks();
        self.check_attempts();
        self.check_balance();
        let mut report = RunReport {
            seed: self.scn.seed,
            requests: self.requests.len() as u64,
            calls: self.requests.iter().filter(|r| r.serve.is_some()).count() as u64,
            ejections: self.ejections,
            sim_time: self.now - Instant::ZERO,
            events: self.events,
            pushes_delivered: self.pushes_delivered,
            in_flight_at_push: self.in_flight_at_push,
            split_aggregate: self.split_aggregate,
            random_aggregate: self.att.random_aggregate,
            ejections_multiplied: self.outlier_calls.multiplied,
            ejections_capped: self.outlier_calls.capped,
            ..Default::default()
        };
        if self.opts.records {
            report.records = (self.requests.iter())
                .map(|r| super::report::RequestRecord {
                    sidecar: r.sidecar,
                    service: r.service,
                    generation: r.generation,
                    rule: r.rule,
                    start: r.start,
                    end: r.end,
                    outcome: r.outcome.clone(),
                    reached: r.reached.clone(),
                })
                .collect();
        }
        for r in &self.requests {
            if let (Some(o), Some(end)) = (&r.outcome, r.end) {
                *report.outcomes.entry(o.kind()).or_default() += 1;
                report.latencies.push(end - r.start);
                self.trace.u64(end.as_nanos());
                self.trace.bytes(o.kind().as_bytes());
            }
        }
        if self.scn.connections.is_some() {
            // How the clients used their connections (summary only, not in the trace).
            for r in &self.requests {
                let uses = [
                    (r.reused, "conn:reused"),
                    (r.pipelined, "conn:pipelined"),
                    (r.unserved, "conn:unserved"),
                    (r.http10, "conn:http10"),
                    (r.ends_conn, "conn:ends-connection"),
                ];
                for (_, kind) in uses.iter().filter(|(yes, _)| *yes) {
                    *report.outcomes.entry((*kind).into()).or_default() += 1;
                }
            }
        }
        report.latencies.sort_unstable();
        report.trace_hash = self.trace.finish();
        report.violations = std::mem::take(&mut self.violations.list);
        report.timeline = self.timeline.take();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn trace_hash_is_stable_and_order_sensitive() {
        let mut a = TraceHash::default();
        a.bytes(b"hello world, twelve+");
        a.u64(7);
        let mut b = TraceHash::default();
        b.u64(7);
        b.bytes(b"hello world, twelve+");
        assert_ne!(a.finish(), b.finish());
        let mut c = TraceHash::default();
        c.bytes(b"hello world, twelve+");
        c.u64(7);
        assert_eq!(a.finish(), c.finish());
    }
}
