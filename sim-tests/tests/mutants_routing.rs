//! Planted bugs in route matching, rewrites, header edits, weighted choice and fault injection,
//! written against Istio's and Envoy's semantics (see `tests/mutants.rs` for how planted-bug
//! tests work and the seeds that first caught each).

#[macro_use]
mod common;
use common::*;
use sim_tests::sim::Invariant;

// ---- Planted bugs in routing and weighted choice, written against Istio's and Envoy's
// semantics (not against the checkers). Which invariant should catch each was written down
// before the reference model and its checks were: `Weights` (chi-square on small weights,
// exact on weight 0) for the cumulative-weight slip; `Routing` (the access log's route against
// the reference model's, and where the request arrived) for every string-matching slip;
// `Rewrite` (what the server received) for the rewrite and header-edit slips.

planted!(weighted_pick_inclusive, weighted_pick_inclusive);
planted!(prefix_match_ignores_case, prefix_match_ignores_case);
planted!(exact_match_as_prefix, exact_match_as_prefix);
planted!(regex_unanchored_end, regex_unanchored_end);
planted!(header_value_ignored, header_value_ignored);
planted!(rewrite_keeps_prefix, rewrite_keeps_prefix);
planted!(header_add_overwrites, header_add_overwrites);
planted!(fallback_always_tried, fallback_always_tried);
planted!(destination_edits_after_route, destination_edits_after_route);
planted!(
    local_replies_skip_route_edits,
    local_replies_skip_route_edits
);

/// Expected: `Rewrite` (a fault's abort on a forwarding rule comes back without the rule's
/// response `set`, which Envoy's local-reply path applies).
#[test]
fn catches_local_replies_without_the_route_edits() {
    let seed = first_catching_seed(
        local_replies_skip_route_edits,
        Invariant::Rewrite,
        VOCAB_BUDGET,
    );
    eprintln!("local replies without the route's response header edits caught by seed {seed}");
}

#[test]
fn catches_weighted_choice_off_by_one() {
    let seed = first_catching_seed(weighted_pick_inclusive, Invariant::Weights, VOCAB_BUDGET);
    eprintln!("weighted choice walking the weights with <= caught by seed {seed}");
}

/// Expected: `Routing` (a request taken by a fallback route while another rule applies to its
/// port and client).
#[test]
fn catches_fallback_always_tried() {
    let seed = first_catching_seed(fallback_always_tried, Invariant::Routing, VOCAB_BUDGET);
    eprintln!("fallback route tried while another applies caught by seed {seed}");
}

#[test]
fn catches_prefix_match_ignoring_case() {
    let seed = first_catching_seed(prefix_match_ignores_case, Invariant::Routing, VOCAB_BUDGET);
    eprintln!("prefix match ignoring case caught by seed {seed}");
}

#[test]
fn catches_exact_match_as_prefix() {
    let seed = first_catching_seed(exact_match_as_prefix, Invariant::Routing, VOCAB_BUDGET);
    eprintln!("exact match accepting a prefix caught by seed {seed}");
}

#[test]
fn catches_regex_anchored_at_the_start_only() {
    let seed = first_catching_seed(regex_unanchored_end, Invariant::Routing, VOCAB_BUDGET);
    eprintln!("regex not anchored at the end caught by seed {seed}");
}

#[test]
fn catches_header_value_ignored() {
    let seed = first_catching_seed(header_value_ignored, Invariant::Routing, VOCAB_BUDGET);
    eprintln!("header condition ignoring its value caught by seed {seed}");
}

#[test]
fn catches_rewrite_keeping_the_prefix() {
    let seed = first_catching_seed(rewrite_keeps_prefix, Invariant::Rewrite, VOCAB_BUDGET);
    eprintln!("prefix rewrite keeping the prefix caught by seed {seed}");
}

/// Expected: `Rewrite` (a header the rule and its destination both edit reaches the server
/// with the destination's value, where Envoy's order gives the rule's).
#[test]
fn catches_destination_edits_after_the_route() {
    let seed = first_catching_seed(
        destination_edits_after_route,
        Invariant::Rewrite,
        VOCAB_BUDGET,
    );
    eprintln!("destination header edits applied after the route's caught by seed {seed}");
}

#[test]
fn catches_header_add_overwriting() {
    let seed = first_catching_seed(header_add_overwrites, Invariant::Rewrite, VOCAB_BUDGET);
    eprintln!("header add overwriting caught by seed {seed}");
}

planted!(
    fault_abort_uses_delay_percent,
    fault_abort_uses_delay_percent
);

#[test]
fn catches_fault_abort_drawn_with_the_delay_percentage() {
    let seed = first_catching_seed(fault_abort_uses_delay_percent, Invariant::Faults, 500);
    eprintln!("fault abort drawn with the delay's percentage caught by seed {seed}");
}

planted!(path_dot_dot_keeps_parent, path_dot_dot_keeps_parent);

/// Expected: `Rewrite` (a dirty path's `seg/..` reaches the server with `seg` still in it,
/// where the normalized path has it removed).
#[test]
fn catches_dot_dot_keeping_its_parent_segment() {
    let seed = first_catching_seed(path_dot_dot_keeps_parent, Invariant::Rewrite, VOCAB_BUDGET);
    eprintln!("`..` keeping its parent segment caught by seed {seed}");
}

planted!(fault_abort_always_503, fault_abort_always_503);

/// Expected: `Faults` (an injected abort answered 503 where its rule sets 418, 500 or a gRPC
/// status, which answers 200).
#[test]
fn catches_fault_aborts_answering_503_always() {
    let seed = first_catching_seed(fault_abort_always_503, Invariant::Faults, 500);
    eprintln!("fault aborts answering 503 whatever the rule sets caught by seed {seed}");
}

// ---- CORS (Envoy's cors_filter.cc against the simulator's `cors` reference).
planted!(
    cors_unmatched_preflight_answered,
    cors_unmatched_preflight_answered
);
planted!(cors_star_methods_literal, cors_star_methods_literal);

/// Expected: `Rewrite` (a preflight from an origin the policy does not allow, forwarded by
/// Envoy under `unmatchedPreflights: FORWARD`, is answered by the proxy: its server never sees
/// it, and the client gets the proxy's 200).
#[test]
fn catches_unmatched_preflights_answered() {
    let seed = first_catching_seed(
        cors_unmatched_preflight_answered,
        Invariant::Rewrite,
        VOCAB_BUDGET,
    );
    eprintln!("unmatched CORS preflights answered by the proxy caught by seed {seed}");
}

/// Expected: `Rewrite` (a preflight's `access-control-allow-methods` is `*` where Envoy echoes
/// the requested method).
#[test]
fn catches_star_methods_sent_literally() {
    let seed = first_catching_seed(cors_star_methods_literal, Invariant::Rewrite, VOCAB_BUDGET);
    eprintln!("allowMethods * sent literally caught by seed {seed}");
}
