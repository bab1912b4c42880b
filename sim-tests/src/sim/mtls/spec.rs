//! What one seed's mesh-security world holds, as plain data (serializable with the scenario,
//! so a failure report replays it): server workloads behind inbound sidecars, the callers
//! (mesh workloads through their own sidecars, or plaintext clients outside the mesh), the
//! certificates' lifetimes, the PeerAuthentication mode and AuthorizationPolicy changes pushed
//! during the run, and the network's faults.
//!
//! Drawn by [`SecuritySpec::from_seed`] from a stream of its own, so the rest of a seed's
//! scenario stays as it was before this world existed.

use serde::{Deserialize, Serialize};

use super::jwt::{JwtSpec, TokenSpec};
use super::policy::{AuthzAction, OperationSpec, PolicySpec, RuleSpec, SourceSpec};

/// PeerAuthentication's mode on a workload's inbound port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PeerAuthMode {
    Disable,
    Permissive,
    Strict,
}

/// How a caller reaches the services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallerKind {
    /// A mesh workload whose sidecar uses auto mTLS (no DestinationRule `tls`): ISTIO_MUTUAL
    /// to every endpoint that runs a sidecar, expecting the service's account.
    AutoMtls,
    /// A mesh workload with a DestinationRule `tls.mode: ISTIO_MUTUAL`.
    IstioMutual,
    /// A mesh workload with a DestinationRule `tls.mode: DISABLE`: its sidecar sends plaintext.
    MeshPlaintext,
    /// Outside the mesh: no sidecar, plaintext straight to the service's pod.
    External,
    /// Outside the mesh, with TLS of its own (curl `https://`): a ClientHello offering `h2`
    /// and `http/1.1`, no Istio ALPN and no certificate, straight to the service's pod. No
    /// inbound chain of pilot's for an HTTP port takes it under PERMISSIVE (closed without a
    /// byte); STRICT's terminates it (and refuses it); DISABLE's reads it as HTTP (400).
    ExternalTls,
    /// A sidecar with auto mTLS whose certificate claims the first caller's identity but was
    /// signed by a CA outside the trust bundle: every handshake must refuse it.
    Impostor,
}

impl CallerKind {
    /// Whether the caller sends through a sidecar of its own (and so has a certificate).
    pub fn has_sidecar(self) -> bool {
        !matches!(self, CallerKind::External | CallerKind::ExternalTls)
    }

    /// Whether the hop to the inbound sidecar is mutual TLS.
    pub fn is_mtls(self) -> bool {
        matches!(
            self,
            CallerKind::AutoMtls | CallerKind::IstioMutual | CallerKind::Impostor
        )
    }
}

/// When a workload's certificate stops being valid, and when a renewed one is pushed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertLife {
    /// The first certificate's notAfter, in simulated ms (a whole second); `None`: a day
    /// past the run.
    pub expires_ms: Option<u64>,
    /// A renewed certificate (valid for a day) reaches the sidecar at this time.
    pub renew_ms: Option<u64>,
}

/// A server workload with an inbound sidecar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecService {
    /// Its `app` label and service account.
    pub app: String,
    pub namespace: String,
    pub mode: PeerAuthMode,
    pub cert: CertLife,
}

/// One request a caller makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecRequest {
    pub at_ms: u64,
    pub service: usize,
    pub method: String,
    pub path: String,
    /// Carry a forged `x-forwarded-client-cert` naming an identity the caller does not have.
    pub forged_xfcc: bool,
    /// The JWT sent in `Authorization: Bearer`, in the seeds whose world has JWT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenSpec>,
}

/// A calling workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecCaller {
    pub kind: CallerKind,
    pub namespace: String,
    pub account: String,
    pub cert: CertLife,
    /// The sidecar's `maxRequestsPerConnection` toward the services (0: unlimited): small
    /// values make fresh handshakes all through the run.
    pub max_requests_per_connection: u32,
    pub requests: Vec<SecRequest>,
}

/// A change pushed to every inbound sidecar at once: one service's mode, or the mesh's whole
/// set of AuthorizationPolicies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecChange {
    Mode {
        service: usize,
        mode: PeerAuthMode,
    },
    Policies(Vec<PolicySpec>),
    /// A service's RequestAuthentication pushed on or off.
    Jwt {
        service: usize,
        on: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecPush {
    pub at_ms: u64,
    pub change: SecChange,
}

/// The pod network between sidecars (and from outside callers to inbound sidecars).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecNet {
    /// One-way latency is drawn from 0..=this, per write.
    pub latency_ms: u64,
    /// Writes are cut into pieces at random points (TLS records arrive in fragments).
    pub split: bool,
    /// Percent of writes that are lost once and retransmitted 200 ms later (TCP keeps order).
    pub loss_percent: u8,
    /// Per mille of writes that reset their connection instead of arriving.
    pub reset_permille: u16,
    pub partitions: Vec<SecPartition>,
}

/// A service's pod is cut off: connects fail, bytes wait for the end (or every connection
/// is reset at the start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecPartition {
    pub service: usize,
    pub from_ms: u64,
    pub for_ms: u64,
    pub reset: bool,
}

/// The whole security world of a seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecuritySpec {
    pub services: Vec<SecService>,
    pub callers: Vec<SecCaller>,
    /// The AuthorizationPolicies in force at the start.
    pub policies: Vec<PolicySpec>,
    /// In time order.
    pub pushes: Vec<SecPush>,
    pub net: SecNet,
    pub duration_ms: u64,
    /// RequestAuthentications ([`super::jwt`]), in a third of the seeds with this world.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
    /// A root rotation while requests flow ([`super::rotation`]), in some seeds with this world.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<super::rotation::RotationSpec>,
}

const NAMESPACES: [&str; 3] = ["default", "shop", "ops"];
pub(crate) const METHODS: [&str; 3] = ["GET", "POST", "DELETE"];
pub(crate) const PATHS: [&str; 6] = [
    "/",
    "/api/v1/items",
    "/api/v2/items",
    "/admin/keys",
    "/static/app.js",
    "/healthz",
];
const PATH_PATTERNS: [&str; 7] = [
    "/api/*",
    "*.js",
    "/admin/keys",
    "*",
    "/",
    "/api/v1/*",
    "/healthz",
];

/// Which parts of the security world a seed switches on (its swarm).
struct SecSwarm {
    modes_churn: bool,
    policies: bool,
    policy_churn: bool,
    expiry: bool,
    partitions: bool,
    lossy: bool,
    resets: bool,
}

impl SecuritySpec {
    /// The security world of `seed`, or `None` in the seeds that have none (three in four).
    pub fn from_seed(seed: u64) -> Option<SecuritySpec> {
        let mut r = fastrand::Rng::with_seed(seed ^ 0x5ec0_7e15_0000_0004);
        if r.u8(0..100) >= 25 {
            return None;
        }
        let mut p = |percent: u8| r.u8(0..100) < percent;
        let sw = SecSwarm {
            modes_churn: p(50),
            policies: p(70),
            policy_churn: p(40),
            expiry: p(50),
            partitions: p(35),
            lossy: p(30),
            resets: p(20),
        };
        let duration_ms = 1000 * r.u64(3..=8);
        let n_services = r.usize(1..=3);
        let services: Vec<SecService> = (0..n_services)
            .map(|s| SecService {
                app: format!("svc{s}"),
                namespace: NAMESPACES[r.usize(0..2)].to_string(),
                mode: draw_mode(&mut r),
                cert: draw_life(&mut r, &sw, duration_ms),
            })
            .collect();
        let n_callers = r.usize(1..=4);
        let mut callers: Vec<SecCaller> = (0..n_callers)
            .map(|c| {
                let kind = match r.u8(0..10) {
                    0..=3 => CallerKind::AutoMtls,
                    4..=5 => CallerKind::IstioMutual,
                    6 => CallerKind::MeshPlaintext,
                    7 => CallerKind::Impostor,
                    _ => CallerKind::External,
                };
                let n_requests = r.usize(2..=9);
                let mut requests: Vec<SecRequest> = (0..n_requests)
                    .map(|_| SecRequest {
                        at_ms: r.u64(0..duration_ms),
                        service: r.usize(0..n_services),
                        method: METHODS[r.usize(0..METHODS.len())].to_string(),
                        path: PATHS[r.usize(0..PATHS.len())].to_string(),
                        forged_xfcc: r.u8(0..100) < 20,
                        token: None,
                    })
                    .collect();
                requests.sort_by_key(|q| q.at_ms);
                SecCaller {
                    kind,
                    namespace: NAMESPACES[r.usize(0..NAMESPACES.len())].to_string(),
                    account: format!("caller{c}"),
                    cert: draw_life(&mut r, &sw, duration_ms),
                    max_requests_per_connection: [0, 0, 1, 2, 3][r.usize(0..5)],
                    requests,
                }
            })
            .collect();
        // At least one mesh caller with mTLS, so every seed with this world shakes hands.
        // The impostor claims the first caller's identity, which must be a real one.
        if !matches!(
            callers[0].kind,
            CallerKind::AutoMtls | CallerKind::IstioMutual
        ) {
            callers[0].kind = CallerKind::AutoMtls;
        }
        let principals = principal_pool(&callers);
        let policies = if sw.policies {
            draw_policies(&mut r, &services, &principals)
        } else {
            Vec::new()
        };
        let mut pushes = Vec::new();
        if sw.modes_churn {
            for _ in 0..r.usize(1..=3) {
                pushes.push(SecPush {
                    at_ms: r.u64(0..duration_ms),
                    change: SecChange::Mode {
                        service: r.usize(0..n_services),
                        mode: draw_mode(&mut r),
                    },
                });
            }
        }
        if sw.policy_churn {
            for _ in 0..r.usize(1..=2) {
                let set = if r.u8(0..100) < 20 {
                    Vec::new()
                } else {
                    draw_policies(&mut r, &services, &principals)
                };
                pushes.push(SecPush {
                    at_ms: r.u64(0..duration_ms),
                    change: SecChange::Policies(set),
                });
            }
        }
        pushes.sort_by_key(|p| p.at_ms);
        let net = SecNet {
            latency_ms: r.u64(0..=30),
            split: r.bool(),
            loss_percent: if sw.lossy { r.u8(1..=20) } else { 0 },
            reset_permille: if sw.resets { r.u16(1..=30) } else { 0 },
            partitions: if sw.partitions {
                (0..r.usize(1..=2))
                    .map(|_| SecPartition {
                        service: r.usize(0..n_services),
                        from_ms: r.u64(0..duration_ms),
                        for_ms: r.u64(50..=1500),
                        reset: r.bool(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        };
        let mut spec = SecuritySpec {
            services,
            callers,
            policies,
            pushes,
            net,
            duration_ms,
            jwt: None,
            rotation: None,
        };
        draw_jwt(seed, &mut spec);
        draw_external_tls(seed, &mut spec);
        spec.rotation = super::rotation::RotationSpec::draw(seed, &spec);
        Some(spec)
    }
}

/// In two worlds of five, from a stream of its own (so the others keep their draws): one
/// more caller, outside the mesh with TLS of its own ([`CallerKind::ExternalTls`]), last so
/// that no other caller's requests or sidecar move.
fn draw_external_tls(seed: u64, spec: &mut SecuritySpec) {
    let mut r = fastrand::Rng::with_seed(seed ^ 0xf0e1_9a71_0000_0017);
    if r.u8(0..100) >= 40 {
        return;
    }
    let d = spec.duration_ms;
    let n = spec.services.len();
    let mut requests: Vec<SecRequest> = (0..r.usize(2..=6))
        .map(|_| SecRequest {
            at_ms: r.u64(0..d),
            service: r.usize(0..n),
            method: "GET".into(),
            path: "/".into(),
            forged_xfcc: false,
            token: None,
        })
        .collect();
    requests.sort_by_key(|q| q.at_ms);
    spec.callers.push(SecCaller {
        kind: CallerKind::ExternalTls,
        namespace: NAMESPACES[0].to_string(),
        account: format!("caller{}", spec.callers.len()),
        cert: CertLife::default(),
        max_requests_per_connection: 0,
        requests,
    });
}

/// JWT from a stream of its own (so the seeds without it keep their worlds): which services
/// have a RequestAuthentication and when it is pushed on or off, every request's token, and,
/// in half of them, a policy on request principals (Istio's "require JWT" DENY on
/// `notRequestPrincipals: ["*"]`, or an ALLOW naming principals).
fn draw_jwt(seed: u64, spec: &mut SecuritySpec) {
    let mut r = fastrand::Rng::with_seed(seed ^ 0x1a7_0000_0000_0016);
    if r.u8(0..100) >= 35 {
        return;
    }
    let n = spec.services.len();
    let d = spec.duration_ms;
    let mut initially: Vec<bool> = (0..n).map(|_| r.u8(0..100) < 70).collect();
    if !initially.contains(&true) {
        initially[r.usize(0..n)] = true;
    }
    for caller in &mut spec.callers {
        for q in &mut caller.requests {
            q.token = super::jwt::draw_token(&mut r, d);
        }
    }
    for _ in 0..r.usize(0..=2) {
        let (service, on) = (r.usize(0..n), r.bool());
        let change = SecChange::Jwt { service, on };
        spec.pushes.push(SecPush {
            at_ms: r.u64(0..d),
            change,
        });
    }
    spec.pushes.sort_by_key(|p| p.at_ms);
    if r.bool() {
        let svc = &spec.services[r.usize(0..n)];
        let pool = super::jwt::principal_pool();
        let (action, source) = if r.bool() {
            let source = SourceSpec {
                not_request_principals: vec!["*".into()],
                ..Default::default()
            };
            (AuthzAction::Deny, source)
        } else {
            let source = SourceSpec {
                request_principals: vec![pool[r.usize(0..pool.len())].clone()],
                ..Default::default()
            };
            (AuthzAction::Allow, source)
        };
        spec.policies.push(PolicySpec {
            name: format!("jwt-{}", svc.app),
            namespace: svc.namespace.clone(),
            selector: Some(svc.app.clone()),
            action,
            rules: Some(vec![RuleSpec {
                from: vec![source],
                to: Vec::new(),
            }]),
        });
    }
    spec.jwt = Some(JwtSpec { initially });
}

fn draw_mode(r: &mut fastrand::Rng) -> PeerAuthMode {
    match r.u8(0..10) {
        0..=1 => PeerAuthMode::Disable,
        2..=5 => PeerAuthMode::Permissive,
        _ => PeerAuthMode::Strict,
    }
}

/// A certificate that expires inside the run in the seeds whose swarm has expiry (three
/// workloads in five there), renewed before or after its end, or never.
fn draw_life(r: &mut fastrand::Rng, sw: &SecSwarm, duration_ms: u64) -> CertLife {
    if !sw.expiry || r.u8(0..100) >= 60 {
        return CertLife::default();
    }
    let expires_ms = 1000 * r.u64(1..duration_ms / 1000);
    let renew_ms = match r.u8(0..3) {
        0 => None,
        1 => Some(r.u64(expires_ms.saturating_sub(800)..expires_ms)),
        _ => Some(r.u64(expires_ms + 1..expires_ms + 2000)),
    };
    CertLife {
        expires_ms: Some(expires_ms),
        renew_ms,
    }
}

/// Principals policies name: every caller's, a namespace prefix, an account suffix, any
/// authenticated peer, and one the CA never issued.
fn principal_pool(callers: &[SecCaller]) -> Vec<String> {
    let mut pool: Vec<String> = callers
        .iter()
        .map(|c| format!("cluster.local/ns/{}/sa/{}", c.namespace, c.account))
        .collect();
    pool.push("cluster.local/ns/shop/*".into());
    pool.push("*/sa/caller1".into());
    pool.push("*".into());
    pool.push("cluster.local/ns/default/sa/ghost".into());
    pool
}

fn pick<T: Clone>(r: &mut fastrand::Rng, from: &[T], max: usize) -> Vec<T> {
    let n = r.usize(1..=max.min(from.len()));
    (0..n)
        .map(|_| from[r.usize(0..from.len())].clone())
        .collect()
}

fn draw_policies(
    r: &mut fastrand::Rng,
    services: &[SecService],
    principals: &[String],
) -> Vec<PolicySpec> {
    (0..r.usize(1..=4))
        .map(|i| {
            let action = match r.u8(0..10) {
                0..=4 => AuthzAction::Allow,
                5..=8 => AuthzAction::Deny,
                _ => AuthzAction::Audit,
            };
            let target = &services[r.usize(0..services.len())];
            let namespace = match r.u8(0..10) {
                0 => "istio-system".to_string(),
                _ => target.namespace.clone(),
            };
            let selector = (r.u8(0..10) < 7).then(|| target.app.clone());
            let rules = match r.u8(0..10) {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(
                    (0..r.usize(1..=2))
                        .map(|_| draw_rule(r, principals))
                        .collect(),
                ),
            };
            PolicySpec {
                name: format!("p{i}"),
                namespace,
                selector,
                action,
                rules,
            }
        })
        .collect()
}

fn draw_rule(r: &mut fastrand::Rng, principals: &[String]) -> RuleSpec {
    let from = match r.u8(0..4) {
        0 => Vec::new(),
        _ => (0..r.usize(1..=2))
            .map(|_| {
                let mut s = SourceSpec::default();
                match r.u8(0..4) {
                    0 => s.principals = pick(r, principals, 2),
                    1 => s.not_principals = pick(r, principals, 2),
                    2 => {
                        s.namespaces = pick(r, &NAMESPACES, 2)
                            .iter()
                            .map(|n| n.to_string())
                            .collect()
                    }
                    _ => {
                        s.not_namespaces = pick(r, &NAMESPACES, 1)
                            .iter()
                            .map(|n| n.to_string())
                            .collect()
                    }
                }
                s
            })
            .collect(),
    };
    let to = match r.u8(0..4) {
        0 => Vec::new(),
        _ => (0..r.usize(1..=2))
            .map(|_| {
                let mut o = OperationSpec::default();
                match r.u8(0..5) {
                    0 => o.methods = pick(r, &METHODS, 2).iter().map(|m| m.to_string()).collect(),
                    1 => {
                        o.not_methods = pick(r, &METHODS, 1).iter().map(|m| m.to_string()).collect()
                    }
                    2 => {
                        o.not_paths = pick(r, &PATH_PATTERNS, 2)
                            .iter()
                            .map(|p| p.to_string())
                            .collect()
                    }
                    3 => {
                        o.methods = pick(r, &METHODS, 2).iter().map(|m| m.to_string()).collect();
                        o.paths = pick(r, &PATH_PATTERNS, 2)
                            .iter()
                            .map(|p| p.to_string())
                            .collect();
                    }
                    _ => {
                        o.paths = pick(r, &PATH_PATTERNS, 2)
                            .iter()
                            .map(|p| p.to_string())
                            .collect()
                    }
                }
                o
            })
            .collect(),
    };
    RuleSpec { from, to }
}
