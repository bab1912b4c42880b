//! Planted bugs for the simulator's self-test (cargo feature `mutants`, off by default).
//!
//! A simulator that never fails proves nothing. With the feature on, a test can switch one of
//! these realistic bugs on in one engine ([`crate::Engine::set_mutations`]) and check that the
//! deterministic mesh simulator in `sim-tests` catches it within a few seeds. Without the
//! feature this module, the knob and every branch that reads it are compiled out, so the
//! production engine pays nothing.

/// Which planted bugs are switched on in one engine. All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mutations {
    /// Outlier detection checks the ejection cap without counting the host about to be
    /// ejected, so `max_ejection_percent` can be exceeded by one host.
    pub ejection_cap_off_by_one: bool,
    /// A retry forgets the route's overall deadline, which the next attempt then re-arms from
    /// its own start: a retried request can outlive its `timeout`.
    pub retry_ignores_deadline: bool,
    /// The connection-pool breaker increments before it compares, and compares the old value,
    /// so `maxConnections` lets one connection too many through.
    pub pool_limit_after_increment: bool,
    /// The consecutive-5xx detector fires one error late (`>` where `>=` belongs), so a host
    /// that keeps failing survives its `consecutive_5xx`-th failure.
    pub outlier_threshold_off_by_one: bool,
    /// The outlier sweep returns hosts whose ejection ends within the next interval, one
    /// interval early.
    pub sweep_returns_early: bool,
    /// A connection to an ejected host that finishes a request is handed to the oldest pending
    /// request of the cluster, which was picked for another host.
    pub handoff_to_ejected: bool,
    /// The route timeout is disarmed once the response head goes downstream, so a body that
    /// dribbles in slowly can outlive the route's `timeout` (Envoy's covers the whole response).
    pub route_timeout_stops_at_head: bool,
    /// A retry re-reads its route from the configuration running now instead of the snapshot
    /// the request started on: after a config swap, a request in flight retries on the new
    /// rules (the new rule's destinations and name), breaking "requests in flight finish on
    /// the snapshot they started with".
    pub config_applies_to_in_flight: bool,
    /// A request in flight pushes its stream idle deadline back by the running config's
    /// `stream_idle_timeout` instead of its own snapshot's: a swap to a shorter one cuts
    /// responses that were streaming under the old.
    pub idle_timeout_from_running_config: bool,
    /// Weighted choice walks the cumulative weights with `<=` where `<` belongs: each
    /// destination takes one unit of the next one's weight (and a weight-0 destination gets
    /// one).
    pub weighted_pick_inclusive: bool,
    /// A uri `prefix` match compares ignoring case even without `ignoreUriCase`.
    pub prefix_match_ignores_case: bool,
    /// An `exact` string match accepts any value that starts with it (a prefix match).
    pub exact_match_as_prefix: bool,
    /// Regex matches are anchored at the start only, so `/api/v[0-9]+` accepts `/api/v1/x`.
    pub regex_unanchored_end: bool,
    /// A header condition with a value holds whenever the header is present.
    pub header_value_ignored: bool,
    /// A prefix rewrite keeps the matched prefix too (`/old/x` → `/new//old/x`).
    pub rewrite_keeps_prefix: bool,
    /// Header `add` edits overwrite instead of appending.
    pub header_add_overwrites: bool,
    /// The fault filter's abort draws with the delay's percentage when the rule has both.
    pub fault_abort_uses_delay_percent: bool,
    /// `retriable-status-codes` (and bare codes in `retryOn`) are never consulted.
    pub retriable_codes_ignored: bool,
    /// A connection is retired after `maxRequestsPerConnection` + 1 requests (`>` for `>=`).
    pub requests_per_connection_off_by_one: bool,
    /// Suffix wildcard domains are tried shortest first (`*.example` before `*.b.example`).
    pub wildcard_shortest_first: bool,
    /// A repeated query parameter is matched on its last occurrence instead of its first.
    pub query_last_occurrence: bool,
    /// Retries compare the retries used with `>` where `>=` belongs: one attempt too many.
    pub retry_one_attempt_too_many: bool,
    /// `gateway-error` is read as 500..=504, so a 500 is retried under `gateway-error` alone.
    pub gateway_error_retries_500: bool,
    /// A retry forgets the hosts already tried (Envoy's `previous_hosts` predicate dropped).
    pub retry_forgets_tried_hosts: bool,
    /// Weighted random searches its prefix sums with `<` where `<=` belongs: the draw that
    /// lands on a host's upper bound goes to that host instead of the next.
    pub random_prefix_bound_off_by_one: bool,
    /// Weighted round robin's schedule moves a host to the next cycle after its turn with `>`
    /// where `>=` belongs: every host takes one turn more than its weight per cycle, so a
    /// cycle is no longer exact (weights 3,1 give 4:2 instead of 3:1).
    pub round_robin_extra_turn: bool,
    /// Least request (equal weights) compares its sampled candidates the wrong way round, so
    /// the busiest candidate wins and a host busier than every other can be chosen.
    pub least_request_prefers_busier: bool,
    /// Outlier sweeps never decay the ejection multiplier, so a host that recovered and fails
    /// again much later is ejected for as long as if it had never stopped failing.
    pub multiplier_never_decays: bool,
    /// Multiplier decay forgets Envoy's guard (no decay within one interval of the host's
    /// return): the sweep that returns a host decays it too.
    pub decay_ignores_return_guard: bool,
    /// The ejection length is `base × multiplier` without the `max_ejection_time` cap.
    pub ejection_ignores_max: bool,
    /// The ejection length is computed from the multiplier before this ejection's increment,
    /// so every ejection is one base time short (the first lasts no time at all).
    pub ejection_length_before_increment: bool,
    /// A non-5xx response does not reset the consecutive-5xx counter, so scattered errors add
    /// up to an ejection.
    pub success_keeps_5xx_streak: bool,
    /// The consecutive-5xx detector fires one error early (`counter + 1 >= threshold`), so a
    /// host is ejected after `consecutive_5xx - 1` failures in a row.
    pub outlier_threshold_one_early: bool,
    /// With `split_external_local_origin_errors`, local-origin failures still count toward
    /// the consecutive-5xx detector (as 503/504) besides the local-origin one.
    pub split_still_counts_local_as_5xx: bool,
    /// A redirect with a configured `port` keeps the request's own port on the host too
    /// (`http://a:8080:443/`), where Envoy drops it.
    pub redirect_keeps_request_port: bool,
    /// The field-count limit rejects a head with exactly `max_headers` fields (`>=` for `>`).
    pub header_count_inclusive: bool,
    /// Panic mode is never entered: `minHealthPercent` is not read, so a cluster whose hosts
    /// are all ejected answers "no healthy upstream".
    pub panic_threshold_ignored: bool,
    /// Panic mode of a cluster without localities ignores the overprovisioning factor: below
    /// `minHealthPercent` available it spreads over every host even when the cluster's health
    /// (140 % × available share) is full (what Trellis once did; Envoy never panics then).
    pub panic_without_overprovisioning: bool,
    /// Panic per priority level judged by the whole cluster's healthy share instead of the
    /// level's own (`isHostSetInPanic` takes the level's host set).
    pub priority_panic_per_cluster: bool,
    /// The retry budget (`maxRetries`) is taken without being checked: every retry starts.
    pub retry_budget_ignored: bool,
    /// `refused-stream` retries an HTTP/1 attempt that ended without a response head (a reset,
    /// a closed pooled connection, an unparsable answer) as if it were HTTP/2's
    /// REFUSED_STREAM (Trellis once did so for closed pooled connections; Envoy never does).
    pub refused_stream_covers_resets: bool,
    /// `http2MaxRequests` lets one request more through (`>` for `>=`).
    pub max_requests_off_by_one: bool,
    /// A connection going back to the pool gets no idle deadline: `idleTimeout` never closes
    /// it, and it is reused however long it sat idle.
    pub pool_idle_timer_never_armed: bool,
    /// A rule that redirects or answers itself skips its fault (what Trellis once did; pilot
    /// puts the fault on the route whatever its action, and Envoy's fault filter runs first).
    pub faults_skip_local_answers: bool,
    /// A fallback route (`Route::fallback`) is tried like any other, even while another route
    /// applies to the request's port and client.
    pub fallback_always_tried: bool,
    /// A redirect's `prefixRewrite` is dropped (the path kept), as Trellis once ignored it.
    pub redirect_ignores_prefix_rewrite: bool,
    /// Ring hash and Maglev draw a random hash even when the request has a key.
    pub consistent_hash_ignores_key: bool,
    /// Peer verification lets an expired certificate through: webpki's expiry verdict is
    /// taken for a pass, on both ends of a mesh hop.
    pub verify_ignores_expiry: bool,
    /// Peer verification lets a certificate that chains to no root of the trust bundle
    /// through (webpki's unknown-issuer verdict taken for a pass).
    pub verify_ignores_issuer: bool,
    /// The RBAC chain consults ALLOW before DENY: a request an ALLOW policy matches is let
    /// through even when a DENY policy matches it too (Istio: CUSTOM, then DENY, then ALLOW).
    pub authz_allow_before_deny: bool,
    /// The inbound peek lets plaintext through under STRICT as under PERMISSIVE.
    pub strict_admits_plaintext: bool,
    /// A mirror policy's fraction is read the wrong way round: a request is mirrored when
    /// its draw falls outside `numerator` (0 % mirrors everything, 100 % nothing).
    pub mirror_percentage_inverted: bool,
    /// The mirrored request's host gets Envoy's `-shadow` suffix even though the policy
    /// turns it off (pilot does since Istio 1.28).
    pub mirror_shadow_suffix_always: bool,
    /// Mirrors are started with every attempt of a request, retries included (Envoy starts
    /// its shadows with the first upstream request only).
    pub mirror_every_attempt: bool,
    /// A JWT's `exp` is never checked: an expired token verifies.
    pub jwt_expiry_ignored: bool,
    /// `allow_missing` is forgotten: a request without a token is refused (401) by a
    /// RequestAuthentication, which Istio lets through to authorization.
    pub jwt_missing_token_rejected: bool,
    /// A trust-bundle update keeps only its newest (last) root: during a root rotation's
    /// overlap the old root is no longer trusted, so certificates it signed are refused before
    /// their workloads are re-issued (Istio trusts every root of the bundle until the overlap
    /// ends).
    pub bundle_newest_root_only: bool,
    /// A new identity (a renewed certificate, a new trust bundle) closes every open
    /// downstream connection, where Envoy's SDS update reaches new handshakes only and established
    /// connections keep serving.
    pub identity_update_closes_connections: bool,
    /// A destination's header edits apply after its route's (what Trellis once did), where
    /// Envoy's WeightedClusterEntry evaluates the cluster weight's before the route's: a
    /// destination's `set` then wins over its rule's.
    pub destination_edits_after_route: bool,
    /// Local replies after a forwarding route matched (a fault's abort, the router's own
    /// 503s) go out without the route's response header edits, as Trellis once sent them
    /// (Envoy's local-reply path applies the route entry's `finalizeResponseHeaders`).
    pub local_replies_skip_route_edits: bool,
    /// A connection whose protocol was detected as HTTP is handed to the HTTP codec without
    /// the bytes read while detecting: its first request is lost.
    pub sniff_handoff_drops_bytes: bool,
    /// A priority's health ignores the overprovisioning factor (counts 100 % where Envoy
    /// counts 140 %): a level with a quarter of its hosts ejected already fails load over to
    /// the next priority.
    pub locality_health_without_overprovisioning: bool,
    /// Locality weights are never read: a weighted level (`distribute`, or failover with a
    /// `failover` entry) pools its hosts as an unweighted one does.
    pub locality_weights_ignored: bool,
    /// Path canonicalization drops a `..` segment without removing the segment before it
    /// (`/a/../b` becomes `/a/b`): routes and the upstream see a path the client never meant.
    pub path_dot_dot_keeps_parent: bool,
    /// An L4 session does not pass the upstream's EOF on to the client while the client is
    /// still sending: a server that finishes first is heard only when the whole session ends.
    pub tcp_upstream_eof_held: bool,
    /// An L4 session's idle deadline is set when it starts relaying and never pushed back by
    /// bytes: a busy connection is cut `idle_timeout` after it connected.
    pub tcp_idle_ignores_activity: bool,
    /// An L4 rule's weights are never drawn: every connection goes to its first destination
    /// with a positive weight.
    pub tcp_weights_ignored: bool,
    /// An L4 chain's `server_names` wildcards all rank alike, whatever their suffix: the first
    /// matching chain wins where Envoy takes the longest wildcard (`*.a.example.com` before
    /// `*.example.com`).
    pub sni_wildcards_rank_alike: bool,
    /// An L4 chain's `application_protocols` are not checked: a ClientHello without any of
    /// them (a plain TLS client naming a cluster at an AUTO_PASSTHROUGH gateway) is taken as
    /// if the chain listed none, where Envoy closes it.
    pub l4_alpn_ignored: bool,
    /// An RBAC `authenticated` principal is matched against the peer certificate's URI SANs
    /// only, where Envoy tries its DNS SANs and subject too: a gateway client whose
    /// certificate names only a DNS name never satisfies `principals: ["*"]`.
    pub authz_principal_uri_only: bool,
    /// A connection a gateway's `TLS` server terminated for TCP picks its chain without the
    /// SNI its handshake saw: only a chain without server names can take it.
    pub gateway_tcp_chain_without_sni: bool,
    /// An injected abort answers 503 whatever status its rule sets (a gRPC abort's 200
    /// included).
    pub fault_abort_always_503: bool,
    /// A CORS preflight from an origin the policy does not allow is answered by the proxy
    /// even under `unmatchedPreflights: FORWARD` (Envoy forwards it).
    pub cors_unmatched_preflight_answered: bool,
    /// `allowMethods: ["*"]` is sent as a literal `*` where Envoy echoes the preflight's
    /// `access-control-request-method`.
    pub cors_star_methods_literal: bool,
    /// An L4 chain's `prefix_ranges` only filter: every chain whose prefixes hold the
    /// destination (or that has none) stays a candidate, and the first in order wins, where
    /// Envoy keeps only the longest matching prefix.
    pub tcp_subnets_first_match: bool,
    /// An L4 chain's `sourceLabels` are not checked: a labelled rule takes every client.
    pub tcp_source_labels_ignored: bool,
    /// A gateway port's filter chains are tried by wildcard before exact `server_names`: a
    /// ClientHello for `x.y.example.com` takes the `*.example.com` server's chain although
    /// another server names it exactly.
    pub gateway_sni_wildcard_first: bool,
    /// A `MUTUAL` gateway server lets clients without a certificate through, as
    /// `OPTIONAL_MUTUAL` does.
    pub gateway_mutual_optional: bool,
    /// A gateway port's passthrough chains are only tried when no terminating chain, the
    /// `*` server's catch-all included, takes the ClientHello, where Envoy ranks every
    /// chain's names together.
    pub gateway_passthrough_after_catch_all: bool,
    /// An edge listener with N trusted hops takes the client's address one `x-forwarded-for`
    /// entry further left than Envoy's `getLastAddressFromXFF(headers, N - 1)`, for
    /// `x-envoy-external-address` and `remoteIpBlocks` alike.
    pub xff_trusted_hop_one_too_far: bool,
    /// A JWT removed from the query leaves the other parameters as written, where Envoy
    /// writes them back sorted by name and decoded (`JwtParamLocation::removeJwt`).
    pub jwt_param_removal_keeps_query: bool,
    /// The headers a JWT provider writes (`outputPayloadToHeader`, `outputClaimToHeaders`)
    /// are not removed from the request first: a client's forged copy reaches the workload
    /// beside, or instead of, the verified one.
    pub jwt_output_headers_unsanitized: bool,
    /// An inbound port under PERMISSIVE terminates every TLS client as STRICT does, where
    /// pilot's mTLS chains match Istio's ALPNs only: a client outside the mesh with TLS of its
    /// own meets the sidecar's handshake instead of its workload (TCP) or a close (HTTP).
    pub permissive_terminates_foreign_tls: bool,
    /// The answer to a HEAD is framed by its `content-length` as a GET's would be: the sidecar
    /// waits for a body that never comes (RFC 9112 §6.3 rule 1).
    pub head_response_framed_by_length: bool,
    /// An upstream response's `connection: close` is ignored: the connection goes back to the
    /// pool and the next request is written to a server that is closing it (RFC 9112 §9.6).
    pub upstream_close_ignored: bool,
    /// An upstream connection that is gone (reset, error) ends a body delimited by the close
    /// as its FIN would: the client gets a clean end for a body that was cut.
    pub reset_ends_close_delimited_body: bool,
    /// A client's `connection: close` (HTTP/1.1) is ignored: the sidecar keeps the connection
    /// open after the response (RFC 9112 §9.6: it must close it).
    pub client_close_ignored: bool,
    /// The body framing for the client is chosen as for HTTP/1.1 whatever its version: an
    /// HTTP/1.0 client is sent chunked coding it cannot decode (RFC 9112 §6.1, §7.1).
    pub http10_sent_chunked: bool,
    /// An HTTP/1.0 client that asked for keep-alive keeps its connection, but the response
    /// does not say `connection: keep-alive`, so the client takes it as ended (RFC 9112 §9.3).
    pub http10_keep_alive_unannounced: bool,
    /// A connection that a request or response ended stays open while pipelined requests
    /// wait on it, and serves them (RFC 9112 §9.6: no further request may be processed).
    pub pipelined_after_close_served: bool,
    /// A kept-alive connection's idle timer is not re-armed when its request finishes: an
    /// idle client connection is never closed.
    pub idle_timer_not_rearmed: bool,
    /// An interim answer (103) does not end retrying: a 5xx after it is retried, where Envoy's
    /// router resets its retry state on one (`Filter::onUpstream1xxHeaders`).
    pub interim_keeps_retrying: bool,
}

// The planted bugs switched on for this thread, for code with no engine at hand (compiled
// routes, which engines share; the HTTP parser; cluster state): a thread-local copy (the
// simulator runs one mesh per thread), set by `Engine::set_mutations` and reset whenever an
// engine is created, so a run without a hook sees none of them.
thread_local! {
    static ROUTE: std::cell::Cell<Mutations> = std::cell::Cell::new(Mutations::default());
}

/// The planted bugs switched on in this thread.
pub(crate) fn route() -> Mutations {
    ROUTE.with(std::cell::Cell::get)
}

pub(crate) fn set_route(m: &Mutations) {
    ROUTE.with(|r| r.set(*m));
}

pub(crate) fn reset_route() {
    ROUTE.with(|r| r.set(Mutations::default()));
}
