//! The mesh-security world of the simulator (`sim::mtls`): real mTLS handshakes on both ends
//! of every sidecar hop under delay, loss, resets and partitions, PeerAuthentication modes,
//! AuthorizationPolicies and certificate expiry switched by swarm streams, all held to the
//! security invariants; and a seed's trace hash is the same twice with mTLS on.

use std::collections::BTreeMap;

use sim_tests::sim::mtls::spec::{CallerKind, PeerAuthMode, SecChange};
use sim_tests::sim::swarm::{run_checked, seeds_from_env};
use sim_tests::sim::{run, RunOptions, Scenario};

/// Seeds with a security world among the first `n`.
fn security_seeds(range: std::ops::Range<u64>) -> Vec<u64> {
    range
        .filter(|&s| Scenario::from_seed(s).security.is_some())
        .collect()
}

#[test]
fn security_worlds_keep_every_invariant_and_exercise_each_outcome() {
    let seeds = security_seeds(seeds_from_env(0..160));
    assert!(
        seeds.len() >= 20,
        "a quarter of the seeds have one: {seeds:?}"
    );
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for &seed in &seeds {
        let report = run(&Scenario::from_seed(seed), RunOptions::default());
        assert!(
            report.violations.is_empty(),
            "seed {seed}: {:#?}",
            report.violations
        );
        for (k, n) in report
            .outcomes
            .iter()
            .filter(|(k, _)| k.starts_with("mtls:"))
        {
            *totals.entry(k.clone()).or_default() += n;
        }
    }
    eprintln!("{} security seeds: {totals:#?}", seeds.len());
    let at_least = |key: &str, n: u64| {
        let got = totals.get(key).copied().unwrap_or(0);
        assert!(got >= n, "{key}: {got} < {n} in {totals:#?}");
    };
    // Requests reach workloads over mTLS and plaintext, are denied by policy, and handshakes
    // are refused on both sides (STRICT refusing plaintext, expired certificates).
    at_least("mtls:delivered", 100);
    at_least("mtls:200", 100);
    at_least("mtls:403", 5);
    at_least("mtls:rbac-denied", 5);
    at_least("mtls:tls-refused-by-server:peer refused", 3);
}

#[test]
fn the_same_seed_gives_the_same_trace_hash_with_mtls_on() {
    for seed in security_seeds(0..40).into_iter().take(6) {
        let scn = Scenario::from_seed(seed);
        let spec = scn.security.as_ref().expect("a security world");
        assert!(spec.callers.iter().any(|c| c.kind.is_mtls()));
        let a = run_checked(&scn, RunOptions::default());
        assert!(a.violations.is_empty(), "seed {seed}: {:#?}", a.violations);
        let b = run(&scn, RunOptions::default());
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        // The security world contributes to the hash: without it the hash differs.
        let plain = Scenario {
            security: None,
            ..scn.clone()
        };
        assert_ne!(run(&plain, RunOptions::default()).trace_hash, a.trace_hash);
    }
}

/// The swarm streams turn every part on in some seeds and off in others.
#[test]
fn every_swarm_stream_appears() {
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    let mut note = |k: &'static str, on: bool| *seen.entry(k).or_default() += u32::from(on);
    let seeds = security_seeds(0..400);
    for &seed in &seeds {
        let spec = Scenario::from_seed(seed).security.expect("filtered");
        for c in &spec.callers {
            note(
                match c.kind {
                    CallerKind::AutoMtls => "auto mTLS",
                    CallerKind::IstioMutual => "ISTIO_MUTUAL",
                    CallerKind::MeshPlaintext => "DestinationRule DISABLE",
                    CallerKind::External => "outside the mesh",
                    CallerKind::ExternalTls => "outside the mesh, with TLS of its own",
                    CallerKind::Impostor => "impostor",
                },
                true,
            );
            note("caller cert expires", c.cert.expires_ms.is_some());
            note(
                "maxRequestsPerConnection",
                c.max_requests_per_connection > 0,
            );
        }
        for s in &spec.services {
            note(
                match s.mode {
                    PeerAuthMode::Disable => "DISABLE",
                    PeerAuthMode::Permissive => "PERMISSIVE",
                    PeerAuthMode::Strict => "STRICT",
                },
                true,
            );
            note("service cert expires", s.cert.expires_ms.is_some());
            note("renewal", s.cert.renew_ms.is_some());
        }
        note("policies", !spec.policies.is_empty());
        note("no policies", spec.policies.is_empty());
        for p in &spec.pushes {
            note(
                match p.change {
                    SecChange::Mode { .. } => "mode push",
                    SecChange::Policies(_) => "policy push",
                    SecChange::Jwt { .. } => "RequestAuthentication push",
                },
                true,
            );
        }
        note("RequestAuthentication", spec.jwt.is_some());
        let tokens = spec.callers.iter().flat_map(|c| &c.requests);
        note(
            "JWT sent",
            tokens.filter_map(|q| q.token.as_ref()).any(|t| t.key_ok),
        );
        let bad = spec.callers.iter().flat_map(|c| &c.requests);
        note(
            "bad JWT signature",
            bad.filter_map(|q| q.token.as_ref()).any(|t| !t.key_ok),
        );
        note("partition", !spec.net.partitions.is_empty());
        note("loss", spec.net.loss_percent > 0);
        note("resets", spec.net.reset_permille > 0);
        note("split writes", spec.net.split);
    }
    eprintln!("{} seeds: {seen:#?}", seeds.len());
    assert_eq!(seen.len(), 25, "{seen:#?}");
    assert!(seen.values().all(|&n| n >= 5), "{seen:#?}");
}
