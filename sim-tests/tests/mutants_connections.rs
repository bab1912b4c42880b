//! Planted bugs in how a sidecar treats its clients' connections (RFC 9112 §9), caught by the
//! client side of the world (`sim::client_conn`; see `tests/mutants.rs` for how planted-bug
//! tests work). A fifth of the seeds draw the connection stream (keep-alive, pipelining,
//! `connection: close`, HTTP/1.0); the seeds that draw none kept their scenarios, so the other
//! planted bugs keep their catching seeds.
//!
//! Each expects `Framing`, decided from the bug before looking for a seed: a client's
//! `connection: close` ignored leaves open a connection the sidecar must close; a kept
//! connection's idle timer not re-armed leaves an idle one open past the idle timeout; a
//! connection ended by a request or response that serves the requests pipelined behind it
//! processes what §9.6 forbids; chunked coding sent to an HTTP/1.0 client is a framing it
//! cannot read; an HTTP/1.0 keep-alive kept without saying so leaves open a connection the
//! client takes as ended.

#[macro_use]
mod common;
use common::*;
use sim_tests::sim::Invariant;

planted!(client_close_ignored, client_close_ignored);
planted!(idle_timer_not_rearmed, idle_timer_not_rearmed);
planted!(pipelined_after_close_served, pipelined_after_close_served);
planted!(http10_sent_chunked, http10_sent_chunked);
planted!(http10_keep_alive_unannounced, http10_keep_alive_unannounced);
planted!(interim_keeps_retrying, interim_keeps_retrying);

/// Caught by seed 1 (`Framing`: a connection kept open after a request with
/// `connection: close`).
#[test]
fn catches_a_client_close_ignored() {
    let seed = first_catching_seed(client_close_ignored, Invariant::Framing, BUDGET);
    eprintln!("a client's connection: close ignored caught by seed {seed}");
}

/// Caught by seed 10 (`Framing`: a connection idle since 0.9 ms kept open past its 1 ms idle
/// timeout).
#[test]
fn catches_an_idle_timer_not_rearmed() {
    let seed = first_catching_seed(idle_timer_not_rearmed, Invariant::Framing, RARE_BUDGET);
    eprintln!("a kept connection's idle timer not re-armed caught by seed {seed}");
}

/// Caught by seed 1 (`Framing`: request 4, pipelined behind one with `connection: close`,
/// logged).
#[test]
fn catches_requests_served_after_the_connection_ended() {
    let seed = first_catching_seed(pipelined_after_close_served, Invariant::Framing, BUDGET);
    eprintln!("requests pipelined after the end served caught by seed {seed}");
}

/// Caught by seed 25 (`Framing`: a response to an HTTP/1.0 request carrying `transfer-encoding`).
#[test]
fn catches_chunked_coding_sent_to_http10() {
    let seed = first_catching_seed(http10_sent_chunked, Invariant::Framing, RARE_BUDGET);
    eprintln!("chunked coding sent to an HTTP/1.0 client caught by seed {seed}");
}

/// Caught by seed 1 (`Framing`: a connection kept open after an HTTP/1.0 response without
/// keep-alive).
#[test]
fn catches_an_http10_keep_alive_unannounced() {
    let seed = first_catching_seed(http10_keep_alive_unannounced, Invariant::Framing, BUDGET);
    eprintln!("an HTTP/1.0 keep-alive kept without saying so caught by seed {seed}");
}

/// From the interim stream (`InterimSpec`, servers sending `103 Early Hints`): a 5xx after an
/// interim answer retried. Caught by seed 91 (`Retries`: attempt 2 of request 28 got a 103
/// and was retried).
#[test]
fn catches_retries_after_an_interim_answer() {
    let seed = first_catching_seed(interim_keeps_retrying, Invariant::Retries, RARE_BUDGET);
    eprintln!("a retry after an interim answer caught by seed {seed}");
}
