//! A scenario: the whole mesh a run simulates, as plain data (serde for files, Debug for
//! failure reports), generated from one seed by swarm testing.
//!
//! Swarm testing (Groce et al.) turns a random *subset* of features and faults on per seed
//! instead of all of them at low rates: a seed with only outlier detection and crashes stresses
//! ejection far harder than a seed where every feature dilutes every other. Everything here is
//! data; [`crate::sim::model`] turns it into engine configs and the reference model, and
//! [`crate::sim::shrink`] makes it smaller while keeping it valid.
//!
//! Config churn is data too: [`ConfigPush`]es replace one service's routing rules at a given
//! time, reaching each sidecar after its own delivery delay, and every push makes a new
//! *generation* of that service's routing. The reference model answers per generation, and
//! every request is checked against the generation its sidecar ran when the request started.

use serde::{Deserialize, Serialize};

pub use super::clients_net::{
    ClientSpec, ConnectionSpec, EndpointRef, Fault, FaultKind, Load, NetSpec, MAX_PIPELINE,
};
pub use super::vocab::{
    ActionSpec, HeaderEdits, HeaderOpsSpec, MatchSpec, RequestShape, RequestVocab, RewriteSpec,
    RuleVocab, StrMatch,
};

/// Everything one simulation run needs, reproducible from this value alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Seeds the world's RNG (network jitter, server behaviour, arrivals) and every engine's.
    pub seed: u64,
    pub services: Vec<Service>,
    /// Client sidecars (real engines), each with its local client workload.
    pub clients: Vec<ClientSpec>,
    pub net: NetSpec,
    pub faults: Vec<Fault>,
    /// Simulated time during which clients start requests.
    pub duration_ms: u64,
    /// Config churn: VirtualService edits pushed during the run, in sending order (absent
    /// from scenario files written before churn existed, and left out when empty, so those
    /// files and the scenarios of seeds without churn stay byte for byte as they were).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_pushes: Vec<ConfigPush>,
    /// What clients put in their requests when the rules use the routing vocabulary (paths,
    /// queries, methods, authorities, headers); `None`: the original `GET`/`POST /r/{id}` with
    /// an optional `x-user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestVocab>,
    /// Message framing other than Content-Length: chunked request bodies from clients and
    /// chunked responses from servers (percent of each); `None`: Content-Length throughout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framing: Option<FramingSpec>,
    /// HEAD requests, and responses that end their connection (`connection: close`, or a body
    /// delimited by the close); `None`: GET and POST answered with a length or chunks, on
    /// connections kept open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<MessageSpec>,
    /// Keep-alive, pipelining, `connection: close` and HTTP/1.0 between clients and their
    /// sidecars; `None`: one connection per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionSpec>,
    /// Servers that send an interim answer (`103 Early Hints`) before some responses; `None`:
    /// final answers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interim: Option<InterimSpec>,
    /// The sidecars' HTTP connection-manager settings and the clients that probe their head
    /// limits; `None`: the engine's defaults, and no probing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,
    /// Istio's `outboundTrafficPolicy: ALLOW_ANY`: the sidecars' listener passes a request for
    /// an unknown host through to its connection's original destination, and every client
    /// connection has one ([`super::model::ORIGINAL_DST`], where nothing listens). `false`:
    /// `REGISTRY_ONLY`, unknown hosts answer 404 NR, and connections have none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passthrough: bool,
    /// The sidecars' listener is declared inbound (15006-style) instead of outbound. The engine
    /// gives the direction no behaviour yet (inbound interception comes with the sidecar
    /// deployment), so the reference model ignores it: a run is the same trace either way
    /// (`tests/listener_direction.rs`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inbound_listener: bool,
    /// The mesh-security world run after the routing mesh: mTLS hops, PeerAuthentication
    /// modes, AuthorizationPolicies and certificate expiry ([`super::mtls`]); `None` in the
    /// seeds without it (and in scenario files written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<super::mtls::SecuritySpec>,
    /// The traffic-mirroring world run after the routing mesh: one sidecar, a route with
    /// `mirrors` ([`super::mirror`]); `None` in the seeds without it (and in scenario files
    /// written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<super::mirror::MirrorSpec>,
    /// The control-plane world run after the routing mesh: the real push server and clients
    /// under partitions and restarts, held to convergence ([`super::plane`]); `None` in the
    /// seeds without it (and in scenario files written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plane: Option<super::plane::PlaneSpec>,
    /// The L4 world run after the routing mesh: TCP services, the sniffed and undeclared
    /// ports of an outbound capture listener ([`super::tcp`]); `None` in the seeds without it
    /// (and in scenario files written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<super::tcp::TcpSpec>,
    /// The ingress-gateway world run after the routing mesh: a Gateway and VirtualServices
    /// translated by the control plane, HTTPS clients ([`super::gateway`]); `None` in the
    /// seeds without it (and in scenario files written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<super::gateway::GatewaySpec>,
}

/// The sidecars' `HttpSettings` (Envoy's HCM limits and timeouts), small enough for clients to
/// reach, and how often a client pads a request to one of the head limits' edges.
///
/// Reference semantics, from the settings' documented meaning: a request line (method, target,
/// version, no CRLF) longer than `max_request_line_bytes` is answered 414; otherwise a head
/// (request line, fields and the empty line, CRLFs counted) longer than `max_header_bytes`, or
/// with more than `max_headers` fields, 431. The line limit is drawn below the head limit, so
/// a long line is 414 however the head arrives. Neither timeout may end a request whose head
/// arrived whole (every client here sends it in one piece): they are for heads that stall and
/// connections with no request, never for requests in flight. A request body of at most
/// `retry_buffer_bytes` (decoded) is kept for retries; a larger one turns retries off.
///
/// The engine applies the head limits to upstream responses too; they are drawn above what the
/// simulated servers answer, so response limits are not probed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpSpec {
    pub max_request_line_bytes: u32,
    pub max_header_bytes: u32,
    pub max_headers: u32,
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub retry_buffer_bytes: u32,
    /// Percent of client requests (those with a drawn shape) padded to probe one limit.
    pub probe_percent: u8,
}

/// How often clients and servers frame bodies with chunked transfer coding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FramingSpec {
    pub chunked_requests_percent: u8,
    pub chunked_responses_percent: u8,
}

/// How often clients send HEAD and servers end a connection with their response (RFC 9112
/// §6.3 and §9.6): what decides a response's framing besides its own fields, and when a
/// connection may carry another request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageSpec {
    /// Of the plain GETs (requests without a routing-vocabulary shape), the share sent as
    /// HEAD: the answer's `content-length` describes a body that never comes.
    pub head_percent: u8,
    /// Of the servers' answers, the share that says `connection: close` and closes after it.
    pub close_percent: u8,
    /// Of the servers' 200s to GET and POST, the share framed by neither length nor chunks:
    /// the body ends where the server closes (HTTP/1.0 style, still legal in HTTP/1.1).
    pub until_close_percent: u8,
    /// Of those bodies delimited by the close, the share the server cuts with a reset partway:
    /// the client must not get a clean end for them (RFC 9112 §8).
    pub cut_percent: u8,
}

/// Interim answers from servers (RFC 9110 §15.2). Reference semantics, Envoy's: a 103 goes on
/// to HTTP/1.1 clients and never to HTTP/1.0 ones, and once one came the request is not retried
/// (`Filter::onUpstream1xxHeaders` resets the router's retry state).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterimSpec {
    /// Of the servers' answers, the share preceded by a `103 Early Hints`.
    pub early_hints_percent: u8,
}

/// A VirtualService edit from the control plane: service `service`'s `http[]` rules become
/// `rules` (new weights, matches, timeouts, retries, faults, destinations moved between
/// versions). Each push is a new *generation* of that service's routing: generation 0 is
/// [`Service::rules`], generation `g` the `g`-th push for the service in list order.
///
/// Only routing churns: clusters, endpoints and DestinationRule policy (outlier detection,
/// pool limits, load balancing) stay fixed for the run, so the ejection and pool checks, which
/// index hosts per cluster, keep their meaning across pushes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigPush {
    /// When the control plane sends it.
    pub at_ms: u64,
    /// `(sidecar, delay_ms)`: which sidecars receive it and how long after `at_ms` (a control
    /// plane never reaches every proxy at the same instant). Each sidecar's pushes arrive in
    /// sending order, as on one xDS stream: a push never overtakes an earlier one. Sidecars not
    /// listed never receive it.
    pub deliveries: Vec<(usize, u64)>,
    pub service: usize,
    /// The service's new rules, tried in order.
    pub rules: Vec<Rule>,
    /// The push also changes the sidecars' HTTP `stream_idle_timeout` (Envoy's, mesh-wide in
    /// the sidecar; default 5 min) to this many milliseconds. Requests in flight keep the one
    /// of the snapshot they started on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_ms: Option<u64>,
}

/// A service: versions (each one engine cluster, `svc{i}-v{j}`) and its routing rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub versions: Vec<Version>,
    /// VirtualService `http[]` rules, tried in order.
    pub rules: Vec<Rule>,
    /// Services this one depends on (indices, each greater than this service's own, so calls
    /// form a DAG): every request an endpoint of this service serves makes one call to each,
    /// in parallel, through the endpoint's own sidecar, and answers once they have all ended
    /// (502 when any of them did not end in a 2xx). Empty: a leaf service.
    #[serde(default)]
    pub calls: Vec<usize>,
}

/// One version (subset) of a service: its endpoints and DestinationRule policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub endpoints: Vec<EndpointSpec>,
    /// 0 `ROUND_ROBIN`, 1 `LEAST_REQUEST`, 2 `RANDOM`, 3 unset (Istio's default, which pilot
    /// leaves to Envoy's cluster default as least request: `LEAST_REQUEST` since Istio 1.14),
    /// 4 `consistentHash` ring hash on `useSourceIp`, 5 the same with Maglev.
    pub lb: u8,
    pub outlier: Option<OutlierSpec>,
    pub pool: Option<PoolSpec>,
    /// `connectionPool.http.idleTimeout` in milliseconds (`None`: Istio's 1 h). An upstream
    /// connection idle longer than this is closed, never reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_idle_ms: Option<u64>,
    /// `connectionPool.http.maxRetries` (`None`: Istio's default, unlimited): requests of one
    /// sidecar to the cluster that are retrying at once (from a retry's start to the request's
    /// end, as Envoy's retry resource is held) never outnumber it; 0 lets none retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Least request's `choice_count` (Envoy's, default 2; Istio does not expose it): how many
    /// hosts it samples. Whatever the count, it never picks the unique busiest host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub least_request_choices: Option<u32>,
    /// `localityLbSetting` and the endpoints' localities ([`super::locality`]); `None`: one
    /// priority, every host pooled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<super::locality::LocalitySpec>,
}

/// How one server workload behaves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// Service time: `base + exponential(mean = jitter)`.
    pub latency_base_ms: u32,
    pub latency_jitter_ms: u32,
    /// Chance (percent) of answering 503.
    pub error_percent: u8,
    /// Chance of answering bytes that are not HTTP.
    pub garbage_percent: u8,
    /// Chance of never answering a request.
    pub hang_percent: u8,
    /// Chance that a response dribbles out slow-loris style: its head, then the body in
    /// several pieces, each up to `trickle_gap_ms` after the one before.
    #[serde(default)]
    pub trickle_percent: u8,
    #[serde(default)]
    pub trickle_gap_ms: u32,
    /// Chance that a request's service time gets a long pause on top, heavy-tailed (Pareto)
    /// up to `tail_ms`: with `latency_*`, a bimodal, long-tailed latency distribution.
    #[serde(default)]
    pub tail_percent: u8,
    #[serde(default)]
    pub tail_ms: u32,
    /// The status its errors (`error_percent`) answer: 500, 502, 503, 504 or 409, statuses
    /// that retry conditions tell apart (0, as in files written before it existed: 503).
    #[serde(default)]
    pub error_status: u16,
    /// Its load-balancing weight in its cluster (0, as in older files: 1).
    #[serde(default)]
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutlierSpec {
    pub consecutive_5xx: u32,
    pub interval_ms: u64,
    pub base_ejection_ms: u64,
    pub max_ejection_percent: u32,
    /// Envoy's `max_ejection_time` (`None`: its default, 300 s). Never below the base time.
    #[serde(default)]
    pub max_ejection_ms: Option<u64>,
    /// `consecutiveGatewayErrors` (502, 503, 504 and, unsplit, local-origin failures; 0: off).
    #[serde(default)]
    pub consecutive_gateway_errors: u32,
    /// `splitExternalLocalOriginErrors` on, with this `consecutiveLocalOriginFailures`
    /// (`None`: not split, local-origin failures count as 503/504).
    #[serde(default)]
    pub split_local_origin: Option<u32>,
    /// `minHealthPercent` (Envoy's panic threshold; 0, Istio's default: off). Below this share
    /// of hosts not ejected the balancer picks among all hosts, ejected ones included, so a
    /// cluster with endpoints never answers "no healthy upstream" (UH).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_health_percent: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub max_connections: u32,
    pub max_pending: u32,
    pub connect_timeout_ms: u64,
    /// 0 = unlimited.
    pub max_requests_per_connection: u32,
    /// `http.http2MaxRequests` (requests in flight to the cluster); 0 = unlimited.
    #[serde(default)]
    pub max_requests: u32,
}

/// A routing rule: an optional `x-user` exact match, weighted destinations, policy, and
/// optionally the rest of Istio's vocabulary ([`RuleVocab`]: more match blocks, redirects,
/// direct responses, rewrites, header edits).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Matches requests whose `x-user` header equals this value; `None` matches all (unless
    /// `vocab` has match blocks: then this is one more block, ORed with them).
    pub user: Option<String>,
    /// `(version index, weight)`. Weight 0 is allowed next to positive weights (Istio drops
    /// such a destination); a single destination is used whatever its weight.
    pub dests: Vec<(usize, u32)>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<RetrySpec>,
    pub fault: Option<FaultSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<Box<RuleVocab>>,
}

impl Version {
    /// Whether its balancer is least request: `LEAST_REQUEST`, or Istio's default.
    pub fn least_request(&self) -> bool {
        matches!(self.lb, 1 | 3)
    }
}

impl Rule {
    /// Whether the rule forwards (to its destinations) rather than redirecting or answering
    /// itself.
    pub fn forwards(&self) -> bool {
        self.vocab.as_ref().is_none_or(|v| v.action.is_none())
    }

    /// Whether the destination list is one Istio accepts for forwarding: one destination, or
    /// several with at least one positive weight.
    pub fn dests_valid(&self) -> bool {
        self.dests.len() == 1 || self.dests.iter().any(|(_, w)| *w > 0)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrySpec {
    pub attempts: u32,
    pub per_try_ms: Option<u64>,
    pub on_5xx: bool,
    pub on_connect_failure: bool,
    pub on_reset: bool,
    pub backoff_base_ms: u64,
    /// `gateway-error`: 502, 503, 504.
    #[serde(default)]
    pub on_gateway_error: bool,
    /// `retriable-4xx`: 409.
    #[serde(default)]
    pub on_retriable_4xx: bool,
    /// `retriable-status-codes` (bare codes in `retryOn`).
    #[serde(default)]
    pub status_codes: Vec<u16>,
    /// `refused-stream`: an HTTP/2 REFUSED_STREAM only, so over HTTP/1 it covers nothing, a
    /// connection closed as the request went out included (Envoy reports that as a reset).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_refused_stream: bool,
}

impl RetrySpec {
    /// Whether a response with `status` is retried under this `retryOn`, by Envoy's
    /// documented conditions (the reference model; written from the docs, not the engine).
    pub fn retries_status(&self, status: u16) -> bool {
        (self.on_5xx && (500..=599).contains(&status))
            || (self.on_gateway_error && (502..=504).contains(&status))
            || (self.on_retriable_4xx && status == 409)
            || self.status_codes.contains(&status)
    }
}

impl EndpointSpec {
    /// The status this endpoint's errors answer.
    pub fn error_status(&self) -> u16 {
        match self.error_status {
            0 => 503,
            s => s,
        }
    }

    /// Its balancing weight (at least 1).
    pub fn weight(&self) -> u32 {
        self.weight.max(1)
    }
}

/// Istio fault injection on a rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    pub delay_ms: u64,
    pub delay_percent: u8,
    pub abort_status: u16,
    pub abort_percent: u8,
    /// `abort.grpcStatus` (its numeric code) instead of `httpStatus`: pilot leaves Envoy's
    /// `http_status` unset, and the fault filter answers 200 (a gRPC request gets the status
    /// as `grpc-status` in a trailers-only answer; others a plain 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
}

impl FaultSpec {
    /// The status an injected abort answers with: 200 for a gRPC abort (Envoy's
    /// `FaultFilter::abortHttpStatus` has none, and `sendLocalReply` answers gRPC's 200).
    pub fn abort_http_status(&self) -> u16 {
        if self.grpc_status.is_some() {
            200
        } else {
            self.abort_status
        }
    }
}

impl Scenario {
    /// Endpoints in `(service, version, index)` order.
    pub fn endpoints(&self) -> impl Iterator<Item = (EndpointRef, &EndpointSpec)> {
        self.services.iter().enumerate().flat_map(|(s, svc)| {
            svc.versions.iter().enumerate().flat_map(move |(v, ver)| {
                ver.endpoints
                    .iter()
                    .enumerate()
                    .map(move |(i, e)| ((s, v, i), e))
            })
        })
    }

    /// The workloads that call other services, in endpoint order: each gets its own sidecar,
    /// after the client sidecars (sidecar `clients.len() + k` belongs to the `k`-th of these).
    pub fn callers(&self) -> impl Iterator<Item = EndpointRef> + '_ {
        self.endpoints()
            .map(|(e, _)| e)
            .filter(|(s, _, _)| !self.services[*s].calls.is_empty())
    }

    /// Fix every cross-reference after parts were removed: dangling destinations, targets and
    /// fault references go; rules left without destinations go; empty lists get a minimum.
    /// Returns `false` when nothing runnable is left.
    pub fn normalize(&mut self) -> bool {
        self.services.retain(|s| !s.versions.is_empty());
        for svc in &mut self.services {
            for ver in &mut svc.versions {
                if ver.endpoints.is_empty() {
                    ver.endpoints.push(EndpointSpec::healthy());
                }
            }
            let versions = svc.versions.len();
            for rule in &mut svc.rules {
                rule.normalize(versions);
            }
            svc.rules.retain(Rule::runnable);
        }
        let services = self.services.len();
        for (s, svc) in self.services.iter_mut().enumerate() {
            svc.calls.retain(|&c| c > s && c < services);
            svc.calls.sort_unstable();
            svc.calls.dedup();
        }
        for c in &mut self.clients {
            c.targets.retain(|t| *t < services);
        }
        if let Some(v) = &mut self.requests {
            v.wildcards.retain(|(_, s)| *s < services);
        }
        self.clients.retain(|c| !c.targets.is_empty());
        let sidecars = self.clients.len();
        let valid_ep = |svcs: &[Service], (s, v, i): EndpointRef| {
            svcs.get(s)
                .and_then(|x| x.versions.get(v))
                .is_some_and(|x| i < x.endpoints.len())
        };
        // Client sidecars, then the calling workloads' own.
        let all_sidecars = sidecars + self.callers().count();
        for push in &mut self.config_pushes {
            if let Some(svc) = self.services.get(push.service) {
                let versions = svc.versions.len();
                for rule in &mut push.rules {
                    rule.normalize(versions);
                }
                push.rules.retain(Rule::runnable);
            }
            push.deliveries.retain(|(sc, _)| *sc < all_sidecars);
        }
        self.config_pushes
            .retain(|p| p.service < services && !p.deliveries.is_empty());
        // Sending order is list order; keep it by time (stable, so generations keep theirs).
        self.config_pushes.sort_by_key(|p| p.at_ms);
        let svcs = self.services.clone();
        self.faults.retain(|f| match &f.kind {
            FaultKind::Crash(e) | FaultKind::Hang(e) | FaultKind::Slow(e, _) => valid_ep(&svcs, *e),
            FaultKind::Partition {
                sidecar, service, ..
            } => *sidecar < sidecars && *service < services,
            FaultKind::CallerPartition {
                caller, service, ..
            } => {
                valid_ep(&svcs, *caller)
                    && *service < services
                    && svcs[caller.0].calls.contains(service)
            }
        });
        !self.services.is_empty() && !self.clients.is_empty() && self.duration_ms > 0
    }
}

impl Scenario {
    /// The rules of generation `generation` of service `s` (0: the service's own rules; `g`:
    /// the `g`-th push for `s`), if that generation exists.
    pub fn rules(&self, s: usize, generation: usize) -> Option<&[Rule]> {
        if generation == 0 {
            return self.services.get(s).map(|svc| svc.rules.as_slice());
        }
        self.config_pushes
            .iter()
            .filter(|p| p.service == s)
            .nth(generation - 1)
            .map(|p| p.rules.as_slice())
    }

    /// The generation push `p` makes of its service.
    pub fn push_generation(&self, p: usize) -> usize {
        let s = self.config_pushes[p].service;
        1 + self.config_pushes[..p]
            .iter()
            .filter(|q| q.service == s)
            .count()
    }
}

impl Rule {
    /// Drop references to versions that do not exist (`versions` of them). Rules without the
    /// vocabulary keep only positive weights, as before weight 0 existed.
    fn normalize(&mut self, versions: usize) {
        match &mut self.vocab {
            None => self.dests.retain(|(v, w)| *v < versions && *w > 0),
            Some(vocab) => {
                self.dests.retain(|(v, _)| *v < versions);
                vocab.dest_edits.retain(|(v, _)| *v < versions);
            }
        }
    }

    /// Whether the rule can be configured: it answers itself, or it has destinations Istio
    /// accepts.
    fn runnable(&self) -> bool {
        !self.forwards() || (!self.dests.is_empty() && self.dests_valid())
    }
}

impl EndpointSpec {
    pub fn healthy() -> Self {
        EndpointSpec {
            latency_base_ms: 1,
            latency_jitter_ms: 0,
            error_percent: 0,
            garbage_percent: 0,
            hang_percent: 0,
            trickle_percent: 0,
            trickle_gap_ms: 0,
            tail_percent: 0,
            tail_ms: 0,
            error_status: 0,
            weight: 0,
        }
    }
}
