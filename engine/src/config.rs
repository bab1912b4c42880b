//! The engine's configuration model: one immutable snapshot of everything a proxy needs.
//!
//! This is what the control plane fills from Istio resources (VirtualService, DestinationRule,
//! ServiceEntry ...) and what `trellis proxy --config FILE` ends up as. It is free of Kubernetes
//! types, but every route and policy field means what its Istio counterpart means; the doc on
//! each field names that counterpart.
//!
//! Shape, in Envoy's terms: listeners → a route table (RDS) → virtual hosts (domains) → ordered
//! routes → weighted clusters. A [`Cluster`] is already flattened per subset, like Envoy's
//! `outbound|9080|v1|reviews.default.svc.cluster.local`: its endpoints are the service's
//! endpoints whose labels select the subset, and its policy is the DestinationRule's policy with
//! the subset's override applied.
//!
//! The snapshot is shared as `Arc<Config>`; swapping it never touches requests in flight.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use crate::transport::policy::{
    ClientCertificate, InboundMode, InboundMtls, MeshIdentity, OriginationTls, UpstreamTls,
};

mod cors;
pub use cors::{CorsPolicy, UnmatchedPreflights};
mod inbound;
pub use inbound::{InboundProtocols, PortProtocol};
mod listener;
pub use listener::{Direction, EdgeHeaders, ForwardClientCert, Listener};
mod mirror;
mod outbound;
pub use mirror::{MirrorFraction, MirrorPolicy};
pub use outbound::{OutboundCapture, BLACK_HOLE_CLUSTER, PASSTHROUGH_CLUSTER};
mod tcp;
pub use tcp::{Cidr, TcpDestination, TcpRoute, DEFAULT_TCP_IDLE_TIMEOUT};

/// One complete configuration snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// Opaque version label (shown in logs and `explain`), e.g. a hash or a counter.
    pub version: String,
    pub listeners: Vec<Listener>,
    pub route_tables: Vec<RouteTable>,
    pub clusters: Vec<Cluster>,
    /// Limits and timeouts of the HTTP connection manager, shared by every listener.
    pub http: HttpSettings,
    /// The sidecar's certificate, key and trust bundle, when it has a mesh identity. Without
    /// one, only plaintext listeners and clusters can work.
    pub identity: Option<Arc<MeshIdentity>>,
    /// L4 filter chains (VirtualService `tcp`/`tls` rules and TCP services' default routes):
    /// a connection one of them takes is proxied as bytes, never parsed as HTTP.
    pub tcp_routes: Vec<TcpRoute>,
}

impl Config {
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    pub fn route_table(&self, name: &str) -> Option<&RouteTable> {
        self.route_tables.iter().find(|t| t.name == name)
    }
}

/// A named set of virtual hosts (Envoy's RouteConfiguration).
#[derive(Clone, Debug, PartialEq)]
pub struct RouteTable {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    /// Envoy's `validate_clusters`: a table that names a cluster the snapshot lacks is
    /// refused. Off, such a destination is answered 503 NC when a request picks it. Pilot
    /// turns it off on every table it builds (`ValidateClusters: proto.BoolFalse` in
    /// pilot/pkg/networking/core/httproute.go and gateway.go), so a VirtualService naming a
    /// subset no DestinationRule defines is served and answered 503. On by default, as Envoy
    /// does for a table written in its own config, so a typo in a hand-written one is caught.
    pub validate_clusters: bool,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            name: String::new(),
            virtual_hosts: Vec::new(),
            validate_clusters: true,
        }
    }
}

/// Requests whose authority matches one of `domains`, and the ordered routes that apply to them.
/// Built from a VirtualService's `hosts` (or a service's default route when no VirtualService
/// names it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VirtualHost {
    /// For `explain` and logs, e.g. `reviews.default` (the VirtualService) or the service host.
    pub name: String,
    /// Authorities served: exact (`reviews`, `reviews:9080`), suffix wildcard (`*.example.com`),
    /// prefix wildcard (`reviews.*`) or `*`. The most specific match wins, as in Envoy: exact, then
    /// longest suffix wildcard, then longest prefix wildcard, then `*`. A domain without a port
    /// also matches the authority with its port stripped.
    pub domains: Vec<String>,
    /// Tried in order; the first whose match conditions hold is used (VirtualService `http[]`).
    pub routes: Vec<Route>,
}

/// One VirtualService `http` rule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Route {
    /// For `explain` and telemetry: `<virtualservice>.<namespace>` plus the rule's `name` or index.
    pub name: String,
    /// `match[]`: the rule applies when ANY of these match; an empty list matches everything.
    pub matches: Vec<RouteMatch>,
    pub action: RouteAction,
    /// `rewrite`: applied to the upstream request when the action forwards.
    pub rewrite: Option<Rewrite>,
    /// `headers.request` / `headers.response` at the rule level.
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// `timeout`: whole-request deadline across retries. `None` = no timeout (Istio's default).
    pub timeout: Option<Duration>,
    /// `retries`.
    pub retries: RetryPolicy,
    /// `fault`.
    pub fault: Option<FaultPolicy>,
    /// `mirror` (then each of `mirrors`): copies of the forwarded request, fire and forget.
    /// Pilot writes them on forwarding rules only (applyHTTPRouteDestination).
    pub mirrors: Vec<MirrorPolicy>,
    /// `corsPolicy`: preflights answered here, CORS headers added to responses (pilot puts it
    /// on the route whatever the action, as the CORS filter's per-route config).
    pub cors: Option<CorsPolicy>,
    /// Tried only when no other route of the virtual host applies to the request's port and
    /// client: every non-fallback route has matches, and each names another `port` or
    /// `source_labels` the client lacks. istiod builds a sidecar's routes per listener port and
    /// per client and leaves such rules out; a service whose VirtualService is left with no
    /// rule gets its default route instead (TranslateRoute, BuildHTTPRoutesForVirtualService
    /// and BuildSidecarVirtualHostWrapper in pilot/pkg/networking/core/route/route.go). A rule
    /// that applies but does not match still ends in 404, as in Envoy. The control plane puts
    /// the service's default routes last with this flag set.
    pub fallback: bool,
}

/// Istio `HTTPMatchRequest`: every condition present must hold (AND).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteMatch {
    /// `name` of the match, for `explain`.
    pub name: Option<String>,
    /// `uri`: matched against the path without the query string.
    pub uri: Option<StringMatch>,
    /// `ignoreUriCase`: compare `uri` case-insensitively, for exact and prefix only (Envoy's
    /// `case_sensitive` is ignored for `safe_regex`).
    pub ignore_uri_case: bool,
    /// `scheme` (`http`/`https`).
    pub scheme: Option<StringMatch>,
    /// `method`.
    pub method: Option<StringMatch>,
    /// `authority`: the Host / :authority value.
    pub authority: Option<StringMatch>,
    /// `headers`: name (lower case) → condition.
    pub headers: Vec<HeaderMatch>,
    /// `withoutHeaders`: the rule matches only if NONE of these conditions holds. A condition
    /// with a value treats an absent header as the empty value (Envoy's
    /// `treat_missing_header_as_empty`, which pilot sets), so one that matches "" excludes
    /// requests without the header; a presence condition excludes requests that have it.
    pub without_headers: Vec<HeaderMatch>,
    /// `queryParams`: name → condition (exact/regex; prefix is accepted too).
    pub query_params: Vec<QueryParamMatch>,
    /// `port`: the destination port of the request (original destination or listener port).
    pub port: Option<u16>,
    /// `sourceLabels`: the client workload's labels must include all of these.
    pub source_labels: BTreeMap<String, String>,
}

/// Istio `StringMatch`. Regexes use RE2 syntax and must match the whole value (Envoy's
/// `safe_regex`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// A condition on one header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Lower-case header name.
    pub name: String,
    /// `None` means "the header is present" (Istio's empty `{}` match).
    pub value: Option<StringMatch>,
}

/// A condition on one query parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryParamMatch {
    pub name: String,
    /// `None` means "the parameter is present".
    pub value: Option<StringMatch>,
}

/// What a route does with a matching request.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteAction {
    /// `route[]`: forward to one of these, chosen by weight.
    Forward(Vec<WeightedCluster>),
    /// `redirect`.
    Redirect(Redirect),
    /// `directResponse`.
    DirectResponse { status: u16, body: Option<String> },
}

impl Default for RouteAction {
    fn default() -> Self {
        RouteAction::Forward(Vec::new())
    }
}

/// Istio `HTTPRouteDestination`: destination (host + subset + port, resolved to a cluster name by
/// the control plane) and its weight.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WeightedCluster {
    /// Name of a [`Cluster`] in the same snapshot.
    pub cluster: String,
    /// Relative weight. Istio weights sum to 100; a single destination has weight 100.
    pub weight: u32,
    /// `headers` on the destination: Envoy's cluster-weight header edits, applied before the
    /// route's own (so the route's `set` and `remove` win). Pilot writes a lone destination's
    /// edits into the route's instead (processDestination in
    /// pilot/pkg/networking/core/route/route.go), which the control plane mirrors.
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// A `host` (or `:authority`) set or added by the destination's `headers.request`, which
    /// pilot turns into this cluster's `host_rewrite_literal` (processWeightedDestination in
    /// pilot/pkg/networking/core/route/route.go). When the request goes to this destination
    /// it replaces the Host header, winning over the route's `rewrite.authority`, as Envoy's
    /// per-cluster rewrite does.
    pub authority: Option<String>,
}

/// Istio `HTTPRedirect`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Redirect {
    /// Replaces the whole path (query kept unless the new uri has one).
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub port: Option<u16>,
    pub scheme: Option<String>,
    /// `redirectCode`, default 301.
    pub status: u16,
    /// `prefixRewrite` (Envoy `RedirectAction.prefix_rewrite`): replaces the path prefix the
    /// request matched on, as [`Rewrite::uri`] does for a forwarded request; it wins over
    /// `uri` (ApplyRedirect in pilot/pkg/networking/core/route/route.go).
    pub prefix_rewrite: Option<String>,
    /// `derivePort: FROM_REQUEST_PORT`: the port the request came on, left out when it is
    /// the scheme's default (pilot's ApplyRedirect sets Envoy's `port_redirect` to the
    /// listener port it builds the route for). `FROM_PROTOCOL_DEFAULT` is no port at all.
    pub port_from_request: bool,
    /// The answer of a virtual host with Envoy's `require_tls: ALL` to a plain-text request
    /// (pilot sets it for a Gateway server's `tls.httpsRedirect`): `https://` + the `Host` as
    /// received + the path, nothing else applied (`SslRedirector`, `createSslRedirectPath` in
    /// source/common/http/utility.cc) — unlike a scheme redirect, a port in `Host` stays.
    pub require_tls: bool,
}

/// Istio `HTTPRewrite`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rewrite {
    /// `uri` (Envoy `prefix_rewrite`): replaces the matched uri prefix, the whole path after an
    /// exact or regex uri match, and the leading `/` when the match had no uri condition (or the
    /// route has no match at all), as pilot's default `prefix: /` match makes Envoy do.
    pub uri: Option<String>,
    /// `uriRegexRewrite`: `(match, rewrite)` applied to the path; `\1`-style groups allowed.
    pub uri_regex: Option<(String, String)>,
    /// `authority`: replaces the Host header.
    pub authority: Option<String>,
}

/// Istio `Headers.HeaderOperations`: applied in Envoy's order, remove, then set, then add.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderOps {
    /// Overwrite (or create) these headers.
    pub set: Vec<(String, String)>,
    /// Append these values.
    pub add: Vec<(String, String)>,
    /// Remove these headers (names, case-insensitive).
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// Istio `HTTPRetry`, with Envoy's retry semantics.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// `attempts`: retries allowed after the first try (0 disables retries).
    pub attempts: u32,
    /// `perTryTimeout`; `None` = only the route timeout applies.
    pub per_try_timeout: Option<Duration>,
    /// `retryOn`.
    pub retry_on: RetryOn,
    /// Base interval of the jittered exponential backoff (Envoy: 25 ms); the maximum is 10×.
    pub backoff_base: Duration,
}

impl Default for RetryPolicy {
    /// Istio's default when a route says nothing (and its `retryOn` when `retries` sets none):
    /// 2 attempts on `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`
    /// with no status code listed, so a 503 is not retried (`defaultRetryOn` and
    /// `newRetryPolicy` in pilot/pkg/networking/core/route/retry/retry.go; 503 left the default
    /// in Istio 1.24 behind EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY, whose switch went with the
    /// 1.23 compatibility profile, istio/istio#56023).
    /// `unavailable` and `cancelled` are gRPC conditions the engine never sees.
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            per_try_timeout: None,
            retry_on: RetryOn {
                connect_failure: true,
                refused_stream: true,
                ..RetryOn::default()
            },
            backoff_base: Duration::from_millis(25),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            attempts: 0,
            retry_on: RetryOn::default(),
            ..RetryPolicy::default()
        }
    }
}

/// Envoy `x-envoy-retry-on` conditions (the subset Istio users write in `retryOn`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// `5xx`: any 5xx response, a connect failure, a reset (an unparsable response too) or a
    /// per-try timeout.
    pub server_error: bool,
    /// `gateway-error`: 502, 503, 504, and like `5xx` a connect failure, a reset or a per-try
    /// timeout.
    pub gateway_error: bool,
    /// `connect-failure`: the upstream connection could not be made (or timed out connecting).
    pub connect_failure: bool,
    /// `reset`: the upstream reset/closed before a response head arrived.
    pub reset: bool,
    /// `retriable-4xx`: 409.
    pub retriable_4xx: bool,
    /// `refused-stream`: an HTTP/2 REFUSED_STREAM. HTTP/1 has none: a pooled connection the
    /// upstream closed as the request went out is a reset (`reset`, `5xx`, `gateway-error`),
    /// as in Envoy.
    pub refused_stream: bool,
    /// `retriable-status-codes` plus bare status codes listed in `retryOn`.
    pub retriable_status_codes: Vec<u16>,
}

/// Istio `HTTPFaultInjection`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPolicy {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FaultDelay {
    /// `fixedDelay`.
    pub fixed: Duration,
    /// `percentage.value` (0..=100).
    pub percent: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultAbort {
    /// `httpStatus`; 200 for a gRPC abort (Envoy's FaultFilter::abortStatus).
    pub status: u16,
    /// `percentage.value` (0..=100).
    pub percent: f64,
    /// `grpcStatus` as its numeric code: a gRPC request gets a trailers-only answer (HTTP 200,
    /// `content-type: application/grpc`, `grpc-status`, `grpc-message`), any other request a
    /// plain 200 (Envoy's FaultFilter::abortWithStatus and Utility::sendLocalReply).
    pub grpc_status: Option<u32>,
}

/// An upstream cluster: the endpoints of one service (one subset of it) and the traffic policy
/// (DestinationRule `trafficPolicy`) that applies to them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cluster {
    /// e.g. `outbound|9080|v1|reviews.default.svc.cluster.local`.
    pub name: String,
    /// The service host this cluster serves (for `explain`, telemetry and the Host header).
    pub service: String,
    /// The subset name, if any.
    pub subset: Option<String>,
    pub endpoints: Vec<Endpoint>,
    pub lb: LbPolicy,
    /// The consistent-hash key when `lb` is [`LbPolicy::RingHash`] or [`LbPolicy::Maglev`]
    /// (pilot writes it as the route's hash policy; here it travels with the cluster).
    pub hash_key: Option<HashKey>,
    /// `outlierDetection`; `None` disables it.
    pub outlier: Option<OutlierDetection>,
    pub pool: ConnectionPool,
    /// How connections to its hosts are protected (DestinationRule `tls`, or auto mTLS).
    pub tls: UpstreamTls,
    /// Priorities and localities (Istio's `localityLbSetting`, laid out per proxy by the
    /// translation); `None`: one priority, all hosts pooled.
    pub locality: Option<crate::locality::LocalityLb>,
}

/// One upstream host.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub address: SocketAddr,
    /// Load-balancing weight (>= 1).
    pub weight: u32,
    /// Workload labels (e.g. `version: v1`); subsets select on these.
    pub labels: BTreeMap<String, String>,
    /// The host runs a sidecar that terminates mesh mTLS (Istio's endpoint label
    /// `security.istio.io/tlsMode: istio`): auto mTLS dials it with ISTIO_MUTUAL.
    pub sidecar: bool,
}

/// DestinationRule `loadBalancer.simple`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LbPolicy {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Power of `choice_count` choices over active requests (Envoy default 2); Istio's default.
    LeastRequest { choice_count: u32 },
    /// Weighted random.
    Random,
    /// Istio's `UNSPECIFIED`/default: least request with two choices.
    #[default]
    Default,
    /// `consistentHash` with `ringHash` (or the legacy `minimumRingSize`, or neither): Envoy's
    /// ring hash, keyed by [`Cluster::hash_key`].
    RingHash { minimum_ring_size: u64 },
    /// `consistentHash.maglev`: Envoy's Maglev table of `table_size` slots (a prime).
    Maglev { table_size: u64 },
}

/// DestinationRule `consistentHash`'s key: what of a request is hashed to pick its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// `httpHeaderName` (lowercase).
    Header(String),
    /// `httpCookie`.
    Cookie(HashCookie),
    /// `useSourceIp`.
    SourceIp,
    /// `httpQueryParameterName`.
    QueryParameter(String),
}

/// `consistentHash.httpCookie`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashCookie {
    pub name: String,
    pub path: Option<String>,
    /// With a ttl, a request without the cookie gets one generated and set on its response.
    pub ttl: Option<Duration>,
    /// `attributes` (name, value) added to a generated cookie.
    pub attributes: Vec<(String, String)>,
}

/// DestinationRule `outlierDetection`, with Istio's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierDetection {
    /// `consecutive5xxErrors` (default 5; 0 disables). Local-origin errors (connect failure,
    /// reset, timeout) count too, as Envoy does unless `split_external_local_origin_errors`.
    pub consecutive_5xx: u32,
    /// `consecutiveGatewayErrors`: 502/503/504 and local-origin errors (default 0 = disabled).
    pub consecutive_gateway_errors: u32,
    /// `consecutiveLocalOriginFailures`, used only when `split_external_local_origin_errors`.
    pub consecutive_local_origin_failures: u32,
    /// `splitExternalLocalOriginErrors`.
    pub split_external_local_origin_errors: bool,
    /// `interval`: sweep period (default 10 s). Hosts return and multipliers decay on sweeps.
    pub interval: Duration,
    /// `baseEjectionTime` (default 30 s), multiplied by the number of times ejected.
    pub base_ejection_time: Duration,
    /// Envoy's `max_ejection_time` (default 300 s), the cap on one ejection.
    pub max_ejection_time: Duration,
    /// `maxEjectionPercent` (default 10): never more than this share of hosts ejected at once.
    pub max_ejection_percent: u32,
    /// `minHealthPercent` (default 0 = panic mode off): below this share of available hosts the
    /// balancer ignores health and spreads over all hosts (Envoy's panic threshold).
    pub min_health_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_errors: 0,
            consecutive_local_origin_failures: 5,
            split_external_local_origin_errors: false,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            min_health_percent: 0,
        }
    }
}

/// DestinationRule `connectionPool` (Envoy circuit breakers), with Istio's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionPool {
    /// `tcp.maxConnections`: open upstream connections across all hosts of the cluster.
    pub max_connections: u32,
    /// `tcp.connectTimeout` (default 10 s).
    pub connect_timeout: Duration,
    /// `http.http1MaxPendingRequests`: requests waiting for a connection.
    pub max_pending_requests: u32,
    /// `http.http2MaxRequests`: requests in flight to the cluster.
    pub max_requests: u32,
    /// `http.maxRequestsPerConnection` (0 = unlimited).
    pub max_requests_per_connection: u32,
    /// `http.maxRetries`: retries in flight to the cluster at once.
    pub max_retries: u32,
    /// `http.idleTimeout`: close an upstream connection idle this long (default 1 h).
    pub idle_timeout: Option<Duration>,
}

impl Default for ConnectionPool {
    fn default() -> Self {
        ConnectionPool {
            max_connections: u32::MAX,
            connect_timeout: Duration::from_secs(10),
            max_pending_requests: u32::MAX,
            max_requests: u32::MAX,
            max_requests_per_connection: 0,
            max_retries: u32::MAX,
            idle_timeout: Some(Duration::from_secs(3600)),
        }
    }
}

/// Limits of the HTTP connection manager (Envoy HCM), applied to downstream and upstream
/// parsing.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSettings {
    /// Longest request line; longer answers 414.
    pub max_request_line_bytes: usize,
    /// Total size of a message head (start line + headers); larger answers 431.
    pub max_header_bytes: usize,
    /// Number of header fields; more answers 431.
    pub max_headers: usize,
    /// Time allowed to receive a whole request head once its first byte arrived (slowloris).
    pub header_read_timeout: Duration,
    /// Close a downstream connection with no request in flight after this long.
    pub idle_timeout: Duration,
    /// A request on which no bytes moved (request body in, response out) for this long is
    /// ended: 408 if the client was still sending, 504 if the upstream never answered, a cut
    /// response if it stalled mid-body (Envoy's `stream_idle_timeout`, default 5 min).
    pub stream_idle_timeout: Duration,
    /// Request bodies up to this size are kept so the request can be retried; larger bodies
    /// stream through and disable retries for that request.
    pub retry_buffer_bytes: usize,
    /// Per-connection buffered bytes before reading is paused (backpressure).
    pub connection_buffer_bytes: usize,
    /// What is done to a request's path before routing (Istio's
    /// `meshConfig.pathNormalization`, default `BASE`).
    pub path_normalization: crate::path::PathNormalization,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_request_line_bytes: 16 * 1024,
            max_header_bytes: 60 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
            stream_idle_timeout: Duration::from_secs(300),
            retry_buffer_bytes: 64 * 1024,
            connection_buffer_bytes: 1024 * 1024,
            path_normalization: crate::path::PathNormalization::Base,
        }
    }
}
