//! # Root rotation under request load (issue 11)
//!
//! In some seeds with a security world ([`RotationSpec::draw`], a stream of its own, so the
//! seeds without a rotation keep their trace), the mesh CA moves to a new root while requests
//! flow, as the control plane's `ca::rotating::RotatingCa` does it:
//!
//! 1. the new root joins the trust bundle at once, and the bundle holding both roots (old
//!    first, as `TrustBundle::pem` lists them) is pushed to every sidecar, reaching each one
//!    within [`PUSH_SPREAD_MS`] ([`Step::Both`]);
//! 2. from then on the CA signs with the new root: workloads are re-issued certificates at
//!    staggered times ([`Step::Reissue`]), most early in the overlap, some late in it, and
//!    a few only after it ended (a workload whose renewal missed the overlap), and a renewal
//!    due after the new root took over gets its certificate instead;
//! 3. when the overlap ends the old root leaves the bundle, pushed to every sidecar again
//!    ([`Step::NextOnly`]).
//!
//! Bundles and certificates reach a sidecar as a config push of its identity (istiod's SDS
//! `ROOTCA` and `default` secrets), which must not drop its established connections. The
//! checks ([`super::checks`], [`Invariant::RootRotation`]): during the overlap no handshake
//! between sidecars is refused because of which root signed whom; after it a certificate
//! still chained only to the old root is refused (and nothing else is); and a bundle or
//! certificate update closes no established connection.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use trellis_engine::config::MeshIdentity;
use trellis_engine::transport::TransformError;
use trellis_engine::{ConnId, Instant};

use super::ca::{Roots, SimCa, FIRST_ROOT, NEXT_ROOT};
use super::spec::{CallerKind, SecuritySpec};
use super::world::{Ev, World};
use crate::sim::check::Invariant;

/// How long one bundle push takes to reach every sidecar.
pub const PUSH_SPREAD_MS: u64 = 150;

/// What a rotation does at one sidecar, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationSidecar {
    /// When the bundle holding both roots reaches it.
    pub both_ms: u64,
    /// When its certificate signed by the new root reaches it; `None` for an impostor's
    /// sidecar, which the mesh CA does not serve.
    pub reissue_ms: Option<u64>,
    /// When the bundle of the new root alone reaches it.
    pub next_only_ms: u64,
}

/// A root rotation: the overlap, and each sidecar's pushes (engines' order: the services'
/// inbound sidecars, then the sidecars of the mesh callers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationSpec {
    /// When the new root joins the bundle (its push leaves).
    pub start_ms: u64,
    /// When the overlap ends and the old root leaves the bundle.
    pub end_ms: u64,
    pub sidecars: Vec<RotationSidecar>,
}

/// A rotation's step at one sidecar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Both,
    Reissue,
    NextOnly,
}

impl RotationSpec {
    /// The rotation of `seed`'s security world `spec`, in two seeds of five that have one.
    pub fn draw(seed: u64, spec: &SecuritySpec) -> Option<RotationSpec> {
        let mut r = fastrand::Rng::with_seed(seed ^ 0x2007_0a7e_0000_0026);
        if r.u8(0..100) >= 40 {
            return None;
        }
        let d = spec.duration_ms;
        let start_ms = r.u64(d / 10..=d * 3 / 10);
        let end_ms = start_ms + r.u64(d / 4..=d / 2);
        let overlap = end_ms - start_ms;
        // The CA signs with the new root once every sidecar trusts it.
        let signs_from = start_ms + PUSH_SPREAD_MS + 1;
        let callers = (spec.callers.iter())
            .filter(|c| c.kind.has_sidecar())
            .map(|c| c.kind == CallerKind::Impostor);
        let impostors: Vec<bool> = std::iter::repeat_n(false, spec.services.len())
            .chain(callers)
            .collect();
        let sidecars = (impostors.into_iter())
            .map(|impostor| {
                let both_ms = start_ms + r.u64(0..=PUSH_SPREAD_MS);
                let next_only_ms = end_ms + r.u64(0..=PUSH_SPREAD_MS);
                let reissue_ms = match r.u8(0..100) {
                    _ if impostor => None,
                    0..=49 => Some(r.u64(signs_from..start_ms + overlap / 2)),
                    50..=84 => Some(r.u64(end_ms - overlap / 5..end_ms)),
                    _ => Some(r.u64(end_ms + 1..=end_ms + 1500)),
                };
                RotationSidecar {
                    both_ms,
                    reissue_ms,
                    next_only_ms,
                }
            })
            .collect();
        Some(RotationSpec {
            start_ms,
            end_ms,
            sidecars,
        })
    }

    /// From when the CA signs with the new root (every sidecar trusts it by then).
    pub fn signs_from(&self) -> Instant {
        Instant::from_millis(self.start_ms + PUSH_SPREAD_MS + 1)
    }
}

/// A rotation's progress in the world.
pub(crate) struct RotationState {
    /// Per engine: the roots its bundle holds now.
    pub roots: Vec<Roots>,
    /// Per engine: its certificate signed by the new root (an index into the world's
    /// certificates), and whether it holds it yet.
    next_cert: Vec<Option<usize>>,
    reissued: Vec<bool>,
    first_pem: String,
    next_pem: String,
    signs_from: Instant,
}

/// `spiffe://<td>/ns/<ns>/sa/<sa>` → (`ns`, `sa`).
fn ns_sa(spiffe: &str) -> Option<(&str, &str)> {
    let mut parts = spiffe.rsplit('/');
    let sa = parts.next()?;
    let _ = parts.next()?;
    Some((parts.next()?, sa))
}

/// Issue the new root's certificates and schedule the rotation's pushes (nothing in the seeds
/// without a rotation).
pub(crate) fn setup(w: &mut World<'_>, seed: u64) -> Result<(), String> {
    let sec: &SecuritySpec = w.spec;
    let Some(spec) = &sec.rotation else {
        return Ok(());
    };
    let n = w.engines.len();
    if spec.sidecars.len() != n {
        let have = spec.sidecars.len();
        return Err(format!(
            "the rotation names {have} sidecars; the world has {n}"
        ));
    }
    let mut ca = SimCa::successor(seed).map_err(|e| e.to_string())?;
    let first_pem = (w.certs.iter())
        .find(|c| c.root == FIRST_ROOT)
        .map(|c| c.identity.bundle_pem.clone())
        .ok_or("no certificate of the mesh's root to rotate from")?;
    let far = w.spec.duration_ms + 86_400_000;
    let mut next_cert = Vec::with_capacity(n);
    for (e, s) in spec.sidecars.iter().enumerate() {
        let Some(at) = s.reissue_ms else {
            next_cert.push(None);
            continue;
        };
        let spiffe = &w.certs[w.current_cert[e]].spiffe;
        let (ns, sa) = ns_sa(spiffe).ok_or_else(|| format!("not a SPIFFE id: {spiffe}"))?;
        let (ns, sa) = (ns.to_string(), sa.to_string());
        let cert = ca.issue(&ns, &sa, at, far).map_err(|e| e.to_string())?;
        next_cert.push(Some(w.certs.len()));
        w.certs.push(cert);
        w.queue.push(
            Instant::from_millis(at),
            Ev::Rotation {
                e,
                step: Step::Reissue,
            },
        );
    }
    for (e, s) in spec.sidecars.iter().enumerate() {
        let both = Instant::from_millis(s.both_ms);
        w.queue.push(
            both,
            Ev::Rotation {
                e,
                step: Step::Both,
            },
        );
        let next_only = Instant::from_millis(s.next_only_ms);
        let step = Step::NextOnly;
        w.queue.push(next_only, Ev::Rotation { e, step });
    }
    w.rotation = Some(RotationState {
        roots: vec![FIRST_ROOT; n],
        next_cert,
        reissued: vec![false; n],
        first_pem,
        next_pem: ca.root_pem().to_string(),
        signs_from: spec.signs_from(),
    });
    Ok(())
}

impl World<'_> {
    /// The roots engine `e`'s bundle holds now.
    pub(crate) fn roots_of(&self, e: usize) -> Roots {
        self.rotation.as_ref().map_or(FIRST_ROOT, |r| r.roots[e])
    }

    /// Engine `e`'s identity as pushed now: its certificate, with the bundle it holds now.
    pub(crate) fn identity_of(&self, e: usize) -> Arc<MeshIdentity> {
        let cert = &self.certs[self.current_cert[e]];
        let Some(rot) = &self.rotation else {
            return cert.identity.clone();
        };
        let mut bundle = String::new();
        if rot.roots[e] & FIRST_ROOT != 0 {
            bundle += &rot.first_pem;
        }
        if rot.roots[e] & NEXT_ROOT != 0 {
            bundle += &rot.next_pem;
        }
        Arc::new(MeshIdentity {
            bundle_pem: bundle,
            ..(*cert.identity).clone()
        })
    }

    pub(crate) fn rotation_step(&mut self, e: usize, step: Step) {
        let Some(rot) = &mut self.rotation else {
            return;
        };
        match step {
            Step::Both => rot.roots[e] = FIRST_ROOT | NEXT_ROOT,
            Step::NextOnly => rot.roots[e] = NEXT_ROOT,
            Step::Reissue => {
                let Some(cert) = rot.next_cert[e].filter(|_| !rot.reissued[e]) else {
                    return; // a renewal brought it already
                };
                rot.reissued[e] = true;
                self.current_cert[e] = cert;
            }
        }
        self.trace.bytes(&[0x2a, e as u8, step as u8]);
        self.count(&format!("rotation-{step:?}"));
        self.update_keeping_connections(e, &format!("root rotation step {step:?}"));
    }

    /// A certificate renewal reaches engine `e`: the certificate drawn for it, or, once the
    /// new root signs, the new root's (a workload holding that one already keeps it).
    pub(crate) fn renew(&mut self, e: usize, cert: usize) {
        let now = self.now;
        let cert = match &mut self.rotation {
            Some(rot) if rot.reissued[e] => return,
            Some(rot) if now >= rot.signs_from && rot.next_cert[e].is_some() => {
                rot.reissued[e] = true;
                rot.next_cert[e].unwrap_or(cert)
            }
            _ => cert,
        };
        self.current_cert[e] = cert;
        self.update_keeping_connections(e, "certificate renewal");
    }

    /// Push engine `e`'s configuration after a bundle or certificate update: no connection it
    /// had established may be closed by it (Envoy's SDS updates reach new handshakes only).
    fn update_keeping_connections(&mut self, e: usize, why: &str) {
        let open: Vec<(usize, ConnId)> = (self.ends.keys().chain(self.down_req.keys()))
            .filter(|(x, _)| *x == e)
            .copied()
            .collect();
        self.reconfigure(e);
        let dropped = (open.iter())
            .filter(|k| !self.ends.contains_key(k) && !self.down_req.contains_key(k))
            .count();
        if dropped > 0 {
            let msg = format!(
                "a {why} at sidecar {e} closed {dropped} of its {} established connections",
                open.len()
            );
            self.violation(Invariant::RootRotation, msg);
        }
    }

    /// A connection of engine `e` failed in its transport (a refused handshake, mostly).
    pub(crate) fn transport_failed(
        &mut self,
        e: usize,
        conn: ConnId,
        upstream: bool,
        error: &TransformError,
    ) {
        self.trace.bytes(error.to_string().as_bytes());
        let side = if upstream { "client" } else { "server" };
        self.count(&format!("tls-refused-by-{side}:{}", error.kind));
        self.check_refusal(e, conn, upstream, error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_split_into_namespace_and_account() {
        assert_eq!(
            ns_sa("spiffe://cluster.local/ns/shop/sa/caller1"),
            Some(("shop", "caller1"))
        );
        assert_eq!(ns_sa("caller1"), None);
    }

    /// Pushes follow `RotatingCa`'s order at every sidecar (control/src/ca/rotating.rs,
    /// `serving_stays_with_the_old_root_for_the_overlap_workloads_move_at_once`): both roots
    /// before any certificate of the new one, the old root gone only after the overlap, and
    /// every mesh workload but the stragglers re-issued within it.
    #[test]
    fn every_drawn_rotation_trusts_the_new_root_everywhere_before_it_signs() {
        let mut drawn = 0;
        for seed in 0..400 {
            let Some(sec) = SecuritySpec::from_seed(seed) else {
                continue;
            };
            let Some(rot) = &sec.rotation else {
                continue;
            };
            drawn += 1;
            let last_both = rot.sidecars.iter().map(|s| s.both_ms).max();
            let signs = rot.signs_from();
            assert!(last_both.is_some_and(|t| Instant::from_millis(t) < signs));
            for s in &rot.sidecars {
                assert!(s
                    .reissue_ms
                    .is_none_or(|t| Instant::from_millis(t) >= signs));
                assert!(s.next_only_ms >= rot.end_ms && rot.end_ms > rot.start_ms);
            }
        }
        assert!(drawn > 10, "only {drawn} rotations in 400 seeds");
    }
}
