//! The mirroring world of a seed, as plain data: one sidecar, one route to a primary cluster
//! with one or two `mirrors`, the behaviour of every upstream, and the client requests.
//!
//! Percentages are written as Istio's `mirrorPercentage.value` (a double, percent) and
//! translated as pilot's TranslateRequestMirrorPolicy does (pilot/pkg/networking/core/route/
//! route.go: `uint32(value * 10000)` per million); no percentage is pilot's 100 % default.
//! The shadow host suffix is off, as pilot writes it since Istio 1.28
//! (DISABLE_SHADOW_HOST_SUFFIX in pilot/pkg/features/pilot.go): the mirror's authority is the
//! primary's, unchanged.

use serde::{Deserialize, Serialize};

/// The percentages the swarm draws: the edges (0, 100 and none) and fractions.
const PERCENTS: [Option<f64>; 9] = [
    None,
    Some(0.0),
    Some(100.0),
    Some(50.0),
    Some(12.5),
    Some(33.3),
    Some(80.0),
    Some(0.5),
    Some(99.9),
];

/// One upstream endpoint's behaviour: every answer comes `latency_ms` after the request is
/// whole; a request may instead be left hanging, answered 503, or have its connection reset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Upstream {
    pub latency_ms: u64,
    pub hang_percent: u8,
    pub error_percent: u8,
    pub reset_percent: u8,
}

/// One mirror of the route: its cluster's endpoints and Istio's `percentage`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MirrorDest {
    /// `mirrors[].percentage.value`; `None`: pilot's 100 %.
    pub percent: Option<f64>,
    pub endpoints: Vec<Upstream>,
    /// Nothing listens at the cluster's endpoints: every connect is refused.
    pub down: bool,
}

impl MirrorDest {
    /// Envoy's `FractionalPercent` as pilot writes it: `(numerator, denominator)`.
    pub fn fraction(&self) -> (u32, u32) {
        match self.percent {
            None => (100, 100),
            Some(p) => ((p * 10_000.0) as u32, 1_000_000),
        }
    }

    /// The share of requests mirrored, 0..=1.
    pub fn share(&self) -> f64 {
        let (n, d) = self.fraction();
        (f64::from(n) / f64::from(d)).min(1.0)
    }
}

/// One client request: a connection of its own (`connection: close`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MirrorRequest {
    pub at_ms: u64,
    pub body_len: usize,
}

/// The whole mirroring world of one seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MirrorSpec {
    pub duration_ms: u64,
    pub primary: Vec<Upstream>,
    pub mirrors: Vec<MirrorDest>,
    /// Retries of the primary on 5xx and resets (`attempts`); 0: none.
    pub retries: u32,
    pub timeout_ms: Option<u64>,
    /// The route's `rewrite.authority`, which the mirror's copy carries too.
    pub authority_rewrite: Option<String>,
    pub requests: Vec<MirrorRequest>,
}

fn upstream(r: &mut fastrand::Rng, slow: bool) -> Upstream {
    Upstream {
        latency_ms: if slow {
            r.u64(1..=3_000)
        } else {
            r.u64(1..=40)
        },
        hang_percent: if r.u8(0..100) < 20 { r.u8(1..=30) } else { 0 },
        error_percent: if r.u8(0..100) < 50 { r.u8(1..=40) } else { 0 },
        reset_percent: if r.u8(0..100) < 20 { r.u8(1..=20) } else { 0 },
    }
}

impl MirrorSpec {
    /// The coverage table's rows for this world.
    pub fn coverage_rows(&self) -> Vec<&'static str> {
        let mut out = vec!["mirrors (mirroring world)"];
        for d in &self.mirrors {
            let edge = matches!(d.percent, None | Some(0.0) | Some(100.0));
            out.push(if edge {
                "mirror percentage 0 or 100"
            } else {
                "mirror percentage fractional"
            });
        }
        out
    }

    /// The mirroring world of `seed`, in a fifth of the seeds (a stream of its own, so the
    /// routing mesh and the security world of every seed stay as they were).
    pub fn from_seed(seed: u64) -> Option<MirrorSpec> {
        let mut r = fastrand::Rng::with_seed(seed ^ 0x3144_0450_0000_0015);
        if r.u8(0..100) >= 20 {
            return None;
        }
        let duration_ms = r.u64(1_000..=4_000);
        let primary = (0..r.usize(1..=2))
            .map(|_| upstream(&mut r, false))
            .collect();
        let mirrors = (0..r.usize(1..=2))
            .map(|_| {
                let slow = r.bool();
                MirrorDest {
                    percent: PERCENTS[r.usize(0..PERCENTS.len())],
                    endpoints: (0..r.usize(1..=2))
                        .map(|_| upstream(&mut r, slow))
                        .collect(),
                    down: r.u8(0..100) < 15,
                }
            })
            .collect();
        let retries = if r.bool() { r.u32(1..=2) } else { 0 };
        let timeout_ms = r.bool().then(|| r.u64(50..=1_000));
        let authority_rewrite = (r.u8(0..100) < 30).then(|| "rewritten.example".to_string());
        let n = r.usize(20..=150);
        let mut requests: Vec<MirrorRequest> = (0..n)
            .map(|_| MirrorRequest {
                at_ms: r.u64(0..duration_ms),
                body_len: if r.bool() { 0 } else { r.usize(1..=3_000) },
            })
            .collect();
        requests.sort_by_key(|q| q.at_ms);
        Some(MirrorSpec {
            duration_ms,
            primary,
            mirrors,
            retries,
            timeout_ms,
            authority_rewrite,
            requests,
        })
    }
}
