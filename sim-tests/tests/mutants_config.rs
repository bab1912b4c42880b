//! Planted bugs for the last engine config fields the generator learned (2026-12-02): each
//! switched on in every sidecar, and the simulator must catch it within its budget (see
//! `tests/mutants.rs` for the others and how this works).
//!
//! Added with the last engine config fields in the generator (redirect scheme and port, HTTP
//! head limits, `minHealthPercent`; each from a stream of its own or drawn only inside a
//! redirect, so most seeds kept their scenario; the random prefix bound now shows by seeds
//! 0..=347): a redirect with a `port` keeping the request's own port on the host → seed 13
//! (`Routing`: `https://svc0:8080:80/…` where Envoy's `newUri` gives `https://svc0:80/…`); the
//! field-count limit rejecting exactly `max_headers` fields → seed 6 (`HeadLimits`, a padded
//! request at the limit's edge); panic mode never entered → seed 4 (`EjectedHostUsed`: a
//! cluster with `minHealthPercent` 50 answered UH); the retry budget taken unchecked → seed 0
//! (`PoolLimit`: a request retrying to a cluster with `maxRetries` 0); `refused-stream`
//! covering HTTP/1 attempts that ended without a response head → seed 7 (`Retries`, under
//! `connect-failure,refused-stream`). The reset checks that catch it (Envoy's
//! `wouldRetryFromReset`) first found the engine itself not retrying unparsable responses
//! under `5xx`/`gateway-error`/`reset`, and resets under `gateway-error`: fixed. With the
//! `http2MaxRequests` bound on by default (its false alarms were the driver counting a
//! connection busy from its connect): one request more than the limit → seed 5 (`PoolLimit`).
//! Once the engine restructure landed, the pool idle timer never armed → seed 0 (`PoolLimit`:
//! a request on a connection idle 223 ms with `idleTimeout` 1 ms). Faults now apply to rules that
//! redirect or answer themselves (pilot's `TypedPerFilterConfig` on every route; the engine
//! used to skip them): skipping them again → seed 54 (`Faults`; redirect rules carry no fault, as Istio validation refuses one).

#[macro_use]
mod common;
use common::*;
use sim_tests::sim::Invariant;

planted!(redirect_keeps_request_port, redirect_keeps_request_port);
planted!(
    redirect_ignores_prefix_rewrite,
    redirect_ignores_prefix_rewrite
);
planted!(header_count_inclusive, header_count_inclusive);
planted!(panic_threshold_ignored, panic_threshold_ignored);

/// Expected: `Routing` (the redirect's `Location` differs from Envoy's `newUri`; a rule that
/// answers itself reports there).
#[test]
fn catches_redirect_keeping_the_request_port() {
    let seed = first_catching_seed(
        redirect_keeps_request_port,
        Invariant::Routing,
        VOCAB_BUDGET,
    );
    eprintln!("redirect keeping the request's port caught by seed {seed}");
}

/// Expected: `Routing` (the redirect's `Location` keeps the path where `prefixRewrite`
/// swaps the matched prefix: pilot's ApplyRedirect, Envoy's rewritePathByPrefixOrRegex).
#[test]
fn catches_redirect_ignoring_prefix_rewrite() {
    let seed = first_catching_seed(
        redirect_ignores_prefix_rewrite,
        Invariant::Routing,
        VOCAB_BUDGET,
    );
    eprintln!("redirect ignoring prefixRewrite caught by seed {seed}");
}

/// Expected: `HeadLimits` (a head with exactly `max_headers` fields answered 431).
#[test]
fn catches_header_count_limit_off_by_one() {
    let seed = first_catching_seed(header_count_inclusive, Invariant::HeadLimits, RARE_BUDGET);
    eprintln!("header count limit off by one caught by seed {seed}");
}

/// Expected: `EjectedHostUsed` (a cluster in panic mode answered UH).
#[test]
fn catches_panic_threshold_ignored() {
    let seed = first_catching_seed(
        panic_threshold_ignored,
        Invariant::EjectedHostUsed,
        RARE_BUDGET,
    );
    eprintln!("minHealthPercent ignored caught by seed {seed}");
}

planted!(retry_budget_ignored, retry_budget_ignored);

/// Expected: `PoolLimit` (more requests retrying to a cluster at once than `maxRetries`).
#[test]
fn catches_retry_budget_ignored() {
    let seed = first_catching_seed(retry_budget_ignored, Invariant::PoolLimit, RARE_BUDGET);
    eprintln!("maxRetries ignored caught by seed {seed}");
}

planted!(refused_stream_covers_resets, refused_stream_covers_resets);

/// Expected: `Retries` (an attempt reset before a head retried under `refused-stream` alone).
#[test]
fn catches_refused_stream_covering_resets() {
    let seed = first_catching_seed(
        refused_stream_covers_resets,
        Invariant::Retries,
        RARE_BUDGET,
    );
    eprintln!("refused-stream covering HTTP/1 resets caught by seed {seed}");
}

planted!(max_requests_off_by_one, max_requests_off_by_one);

/// Expected: `PoolLimit` (more requests in flight to a cluster than `http2MaxRequests`).
#[test]
fn catches_max_requests_off_by_one() {
    let seed = first_catching_seed(max_requests_off_by_one, Invariant::PoolLimit, RARE_BUDGET);
    eprintln!("http2MaxRequests off by one caught by seed {seed}");
}

planted!(pool_idle_timer_never_armed, pool_idle_timer_never_armed);

/// Expected: `PoolLimit` (a request sent on a connection idle past `idleTimeout`).
#[test]
fn catches_pool_idle_timer_never_armed() {
    let seed = first_catching_seed(pool_idle_timer_never_armed, Invariant::PoolLimit, BUDGET);
    eprintln!("pool idle timer never armed caught by seed {seed}");
}

planted!(faults_skip_local_answers, faults_skip_local_answers);

/// Expected: `Faults` (a redirect or direct-response rule's delay or abort never drawn).
#[test]
fn catches_faults_skipped_on_local_answers() {
    let seed = first_catching_seed(faults_skip_local_answers, Invariant::Faults, RARE_BUDGET);
    eprintln!("faults skipped on redirects and direct responses caught by seed {seed}");
}

planted!(sniff_handoff_drops_bytes, sniff_handoff_drops_bytes);

/// Expected: `AccessLog` (a redirected client's request, handed from protocol detection to the
/// HTTP codec without the bytes read while detecting, never shows up as the request the
/// client sent). Passthrough scenarios serve their redirected clients through the outbound
/// capture table, so every request there crosses the detection.
#[test]
fn catches_sniff_handoff_dropping_bytes() {
    let seed = first_catching_seed(sniff_handoff_drops_bytes, Invariant::AccessLog, BUDGET);
    eprintln!("protocol detection losing the bytes it read caught by seed {seed}");
}

planted!(tcp_upstream_eof_held, tcp_upstream_eof_held);

/// Expected: `Bytes` (in the L4 world, a server that finished first: its EOF reaches the
/// client only when the client finishes too, where Envoy's `tcp_proxy` passes it on at once).
#[test]
fn catches_an_l4_upstream_eof_held_back() {
    let seed = first_catching_seed(tcp_upstream_eof_held, Invariant::Bytes, RARE_BUDGET);
    eprintln!("the upstream's EOF held back caught by seed {seed}");
}

planted!(tcp_idle_ignores_activity, tcp_idle_ignores_activity);

/// Expected: `Deadline` (in the L4 world, a connection still relaying cut before its idle
/// timeout passed without a byte).
#[test]
fn catches_an_l4_idle_timeout_blind_to_bytes() {
    let seed = first_catching_seed(tcp_idle_ignores_activity, Invariant::Deadline, RARE_BUDGET);
    eprintln!("an idle timeout blind to bytes caught by seed {seed}");
}

planted!(tcp_weights_ignored, tcp_weights_ignored);

/// Expected: `Weights` (in the L4 world, a service's connections all on its first cluster
/// where its weights split them).
#[test]
fn catches_l4_weights_ignored() {
    let seed = first_catching_seed(tcp_weights_ignored, Invariant::Weights, RARE_BUDGET);
    eprintln!("L4 weights ignored caught by seed {seed}");
}

planted!(sni_wildcards_rank_alike, sni_wildcards_rank_alike);

/// Expected: `Routing` (in the L4 world, a ClientHello for `c.a.example.com` taken by the
/// `*.example.com` rule where `*.a.example.com` is the longer match).
#[test]
fn catches_sni_wildcards_ranked_alike() {
    let seed = first_catching_seed(sni_wildcards_rank_alike, Invariant::Routing, RARE_BUDGET);
    eprintln!("SNI wildcards ranked alike caught by seed {seed}");
}

planted!(tcp_subnets_first_match, tcp_subnets_first_match);

/// Expected: `Routing` (in the L4 world, a connection dialling an address a
/// `destinationSubnets` rule holds taken by the service's own rule, listed first, where
/// Envoy's longest matching prefix picks the subnet rule).
#[test]
fn catches_l4_subnets_matched_in_order() {
    let seed = first_catching_seed(tcp_subnets_first_match, Invariant::Routing, RARE_BUDGET);
    eprintln!("destinationSubnets matched in order caught by seed {seed}");
}

planted!(tcp_source_labels_ignored, tcp_source_labels_ignored);

/// Expected: `Routing` (in the L4 world, a client without a labelled rule's labels taken by
/// it, listed before the service's own rule).
#[test]
fn catches_l4_source_labels_ignored() {
    let seed = first_catching_seed(tcp_source_labels_ignored, Invariant::Routing, RARE_BUDGET);
    eprintln!("L4 sourceLabels ignored caught by seed {seed}");
}

planted!(gateway_sni_wildcard_first, gateway_sni_wildcard_first);

/// Expected: `GatewayTls` (in the gateway world, a ClientHello naming a server's host exactly
/// served through a wildcard server's chain: the client refuses that server's certificate).
#[test]
fn catches_gateway_sni_wildcard_first() {
    let seed = first_catching_seed(
        gateway_sni_wildcard_first,
        Invariant::GatewayTls,
        RARE_BUDGET,
    );
    eprintln!("gateway SNI wildcard before exact caught by seed {seed}");
}

planted!(gateway_mutual_optional, gateway_mutual_optional);

/// Expected: `GatewayTls` (in the gateway world, a client without a certificate served by a
/// `MUTUAL` server).
#[test]
fn catches_gateway_mutual_optional() {
    let seed = first_catching_seed(gateway_mutual_optional, Invariant::GatewayTls, RARE_BUDGET);
    eprintln!("gateway MUTUAL without a client certificate caught by seed {seed}");
}

planted!(gateway_alpn_ignored, l4_alpn_ignored);

/// Expected: `Routing` (in the gateway world, a plain TLS client naming a cluster in its SNI
/// relayed by an AUTO_PASSTHROUGH chain that asks for Istio's mTLS ALPNs, which it does not
/// offer: pilot's `allIstioMtlsALPNs`, so that no one reaches a cluster without mTLS).
#[test]
fn catches_gateway_alpn_ignored() {
    let seed = first_catching_seed(gateway_alpn_ignored, Invariant::Routing, RARE_BUDGET);
    eprintln!("AUTO_PASSTHROUGH chain without its ALPN check caught by seed {seed}");
}

planted!(gateway_principal_uri_only, authz_principal_uri_only);

/// Expected: `Authorization` (in the gateway world, a client whose certificate from the
/// clients' CA names only a DNS name judged by `principals`/`notPrincipals: ["*"]` as if it
/// had no principal: Envoy's authenticated matcher tries DNS SANs and the subject too).
#[test]
fn catches_gateway_principal_uri_only() {
    let seed = first_catching_seed(
        gateway_principal_uri_only,
        Invariant::Authorization,
        RARE_BUDGET,
    );
    eprintln!("RBAC principals matched on URI SANs only caught by seed {seed}");
}

planted!(gateway_tcp_without_sni, gateway_tcp_chain_without_sni);

/// Expected: `Routing` (in the gateway world, a client of a `TLS` server terminated for TCP
/// whose chain names hosts: chosen without its SNI, no chain takes it and nothing is relayed).
#[test]
fn catches_gateway_tcp_without_sni() {
    let seed = first_catching_seed(gateway_tcp_without_sni, Invariant::Routing, RARE_BUDGET);
    eprintln!("terminated TCP chain chosen without the SNI caught by seed {seed}");
}

planted!(
    gateway_passthrough_after_catch_all,
    gateway_passthrough_after_catch_all
);

/// Expected: `Routing` (in the gateway world, a ClientHello a passthrough chain names taken
/// by a terminating `*` server instead).
#[test]
fn catches_gateway_passthrough_after_catch_all() {
    let seed = first_catching_seed(
        gateway_passthrough_after_catch_all,
        Invariant::Routing,
        RARE_BUDGET,
    );
    eprintln!("gateway passthrough ranked after the catch-all caught by seed {seed}");
}

planted!(xff_trusted_hop_one_too_far, xff_trusted_hop_one_too_far);

/// Expected: `Routing` (in the gateway world, with `numTrustedProxies` and a client writing
/// `x-forwarded-for`, the backend's `x-envoy-external-address` is an entry further left than
/// Envoy's `getLastAddressFromXFF(headers, N - 1)`).
#[test]
fn catches_xff_trusted_hop_one_too_far() {
    let seed = first_catching_seed(xff_trusted_hop_one_too_far, Invariant::Routing, RARE_BUDGET);
    eprintln!("trusted client address one hop too far caught by seed {seed}");
}

planted!(jwt_param_removal_keeps_query, jwt_param_removal_keeps_query);

/// Expected: `Routing` (in the gateway world, a verified token removed from a query with
/// other parameters leaves them as written, where Envoy's `JwtParamLocation::removeJwt`
/// writes them back sorted by name and decoded).
#[test]
fn catches_jwt_param_removal_keeping_the_query() {
    let seed = first_catching_seed(
        jwt_param_removal_keeps_query,
        Invariant::Routing,
        RARE_BUDGET,
    );
    eprintln!("JWT parameter removal keeping the query caught by seed {seed}");
}

planted!(
    jwt_output_headers_unsanitized,
    jwt_output_headers_unsanitized
);

/// Expected: `Routing` (in the gateway world, a client's own `x-jwt-payload` or `x-jwt-sub`
/// reaches the backend where the provider writing it removes it first).
#[test]
fn catches_jwt_output_headers_unsanitized() {
    let seed = first_catching_seed(
        jwt_output_headers_unsanitized,
        Invariant::Routing,
        RARE_BUDGET,
    );
    eprintln!("forged JWT output headers kept caught by seed {seed}");
}
