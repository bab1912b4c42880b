//! Planted bugs in mesh security, caught by the security world's invariants (see
//! `tests/mutants.rs` for how planted-bug tests work). Which invariant should catch each was
//! decided from the bug, before looking for a seed: an expired certificate accepted breaks
//! `CertExpiry`; ALLOW consulted before DENY lets through requests the reference denies
//! (`Authorization`); STRICT admitting plaintext breaks `MtlsStrict`; an expired JWT accepted
//! reaches the workload, and a missing one refused is a 401 the reference does not give
//! (`Authentication`: Envoy's jwt_verify_lib `verifyTimeConstraint`, and the
//! `allow_missing` pilot puts beside every provider, `convertToEnvoyJwtConfig` in
//! pilot/pkg/security/authn/policy_applier.go).

#[macro_use]
mod common;
use common::*;
use sim_tests::sim::Invariant;

/// A quarter of the seeds have a security world; of those, the bug needs the right swarm
/// (expiring certificates, both policy actions on one workload, STRICT with plaintext callers).
const SECURITY_BUDGET: u64 = 300;

planted!(verify_ignores_expiry, verify_ignores_expiry);
planted!(authz_allow_before_deny, authz_allow_before_deny);
planted!(strict_admits_plaintext, strict_admits_plaintext);
planted!(verify_ignores_issuer, verify_ignores_issuer);
planted!(jwt_expiry_ignored, jwt_expiry_ignored);
planted!(jwt_missing_token_rejected, jwt_missing_token_rejected);
planted!(bundle_newest_root_only, bundle_newest_root_only);
planted!(
    permissive_terminates_foreign_tls,
    permissive_terminates_foreign_tls
);

/// Expected: `PeerIdentity` (an impostor's certificate, signed outside the trust bundle,
/// accepted: the workload is told an identity the CA never issued to its caller).
#[test]
fn catches_verification_ignoring_the_issuer() {
    let seed = first_catching_seed(
        verify_ignores_issuer,
        Invariant::PeerIdentity,
        SECURITY_BUDGET,
    );
    eprintln!("verification ignoring the issuer caught by seed {seed}");
}

#[test]
fn catches_verification_ignoring_expiry() {
    let seed = first_catching_seed(
        verify_ignores_expiry,
        Invariant::CertExpiry,
        SECURITY_BUDGET,
    );
    eprintln!("verification ignoring certificate expiry caught by seed {seed}");
}

#[test]
fn catches_allow_evaluated_before_deny() {
    let seed = first_catching_seed(
        authz_allow_before_deny,
        Invariant::Authorization,
        SECURITY_BUDGET,
    );
    eprintln!("ALLOW evaluated before DENY caught by seed {seed}");
}

#[test]
fn catches_strict_admitting_plaintext() {
    let seed = first_catching_seed(
        strict_admits_plaintext,
        Invariant::MtlsStrict,
        SECURITY_BUDGET,
    );
    eprintln!("STRICT admitting plaintext caught by seed {seed}");
}

/// Caught by seed 42 (a token expired an hour before the run reached its workload).
#[test]
fn catches_jwt_expiry_ignored() {
    let seed = first_catching_seed(
        jwt_expiry_ignored,
        Invariant::Authentication,
        SECURITY_BUDGET,
    );
    eprintln!("JWT expiry ignored caught by seed {seed}");
}

/// Caught by seed 5 (a request without a token answered 401).
#[test]
fn catches_jwt_missing_token_rejected() {
    let seed = first_catching_seed(
        jwt_missing_token_rejected,
        Invariant::Authentication,
        SECURITY_BUDGET,
    );
    eprintln!("a missing JWT refused caught by seed {seed}");
}

/// The first seed that catches `bundle_newest_root_only` (a root rotation whose overlap
/// bundle, holding both roots, is read as the new root alone: a workload not yet re-issued
/// is refused as signed by an unknown CA).
const CATCHES_BUNDLE_NEWEST_ROOT_ONLY: u64 = 4;

/// Expected: `RootRotation` (a handshake refused for an unknown CA although the verifier's
/// bundle held the root: Istio trusts every root of the bundle through the overlap,
/// `RotatingCa::rotate` in control/src/ca/rotating.rs).
#[test]
fn catches_a_bundle_update_keeping_only_the_newest_root() {
    let seed = first_catching_seed(
        bundle_newest_root_only,
        Invariant::RootRotation,
        SECURITY_BUDGET,
    );
    eprintln!("a bundle keeping only its newest root caught by seed {seed}");
    assert_eq!(
        seed, CATCHES_BUNDLE_NEWEST_ROOT_ONLY,
        "the catching seed moved"
    );
}

planted!(
    identity_update_closes_connections,
    identity_update_closes_connections
);

/// Expected: `RootRotation` (a renewal or a rotation's bundle or certificate push closed
/// established connections: Envoy's SDS secret updates reach new handshakes only, and the
/// brief of issue 11 asks for renewal "without dropping established connections").
#[test]
fn catches_an_identity_update_closing_established_connections() {
    let seed = first_catching_seed(
        identity_update_closes_connections,
        Invariant::RootRotation,
        SECURITY_BUDGET,
    );
    eprintln!("an identity update closing connections caught by seed {seed}");
    assert_eq!(
        seed, CATCHES_IDENTITY_UPDATE_CLOSING,
        "the catching seed moved"
    );
}

/// The first seed that catches `identity_update_closes_connections` (a certificate renewal,
/// then the rotation's bundle push, each closing an inbound sidecar's open connection).
const CATCHES_IDENTITY_UPDATE_CLOSING: u64 = 4;

/// Expected: `InboundChain` (a TLS client outside the mesh, offering no Istio ALPN, answered
/// with the sidecar's own handshake under PERMISSIVE, where pilot's chains for an HTTP port
/// take no such client and Envoy closes it: filterchain_options.go).
#[test]
fn catches_permissive_terminating_foreign_tls() {
    let seed = first_catching_seed(
        permissive_terminates_foreign_tls,
        Invariant::InboundChain,
        SECURITY_BUDGET,
    );
    eprintln!("PERMISSIVE terminating a TLS client outside the mesh caught by seed {seed}");
}
