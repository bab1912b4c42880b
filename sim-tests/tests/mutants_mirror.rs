//! Planted bugs in traffic mirroring, caught by the mirroring world's invariant (see
//! `tests/mutants.rs` for how planted-bug tests work). Each breaks `Mirroring`, decided from
//! the bug before looking for a seed: the fraction read the wrong way round mirrors at 0 % and
//! not at 100 % (Envoy's `evaluateFractionalPercent`, `draw % denominator < numerator`); the
//! `-shadow` suffix where pilot turns it off changes the copy's authority (Envoy's
//! `shadowAppendedHost`, DISABLE_SHADOW_HOST_SUFFIX in pilot/pkg/features/pilot.go); shadows
//! started with a retry send a request's copy twice (Envoy starts them in
//! `Filter::decodeHeaders`, never in `doRetry`: source/common/router/router.cc).

#[macro_use]
mod common;
use common::*;
use sim_tests::sim::Invariant;

/// A fifth of the seeds have a mirroring world; of those, the bug needs the right swarm (a
/// 0 % or 100 % mirror, a retried primary).
const MIRROR_BUDGET: u64 = 300;

planted!(mirror_percentage_inverted, mirror_percentage_inverted);
planted!(mirror_shadow_suffix_always, mirror_shadow_suffix_always);
planted!(mirror_every_attempt, mirror_every_attempt);

/// Caught by seed 2 (a 33.3 % mirror copied 94 of 141 requests).
#[test]
fn catches_the_mirror_percentage_inverted() {
    let seed = first_catching_seed(
        mirror_percentage_inverted,
        Invariant::Mirroring,
        MIRROR_BUDGET,
    );
    eprintln!("mirror percentage inverted caught by seed {seed}");
}

/// Caught by seed 2 (copies with authority `rewritten.example-shadow`).
#[test]
fn catches_the_shadow_suffix_appended() {
    let seed = first_catching_seed(
        mirror_shadow_suffix_always,
        Invariant::Mirroring,
        MIRROR_BUDGET,
    );
    eprintln!("shadow host suffix appended caught by seed {seed}");
}

/// Caught by seed 5 (two copies of a retried request at one mirror).
#[test]
fn catches_mirrors_started_with_retries() {
    let seed = first_catching_seed(mirror_every_attempt, Invariant::Mirroring, MIRROR_BUDGET);
    eprintln!("mirrors started with every attempt caught by seed {seed}");
}
