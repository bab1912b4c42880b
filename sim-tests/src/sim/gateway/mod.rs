//! # An ingress gateway in the simulator: a world of its own
//!
//! The routing mesh's sidecars are configured by the simulator directly; a gateway is
//! configured the way users configure one. In the seeds whose swarm has it
//! ([`GatewaySpec::from_seed`], a sixth of them) this world runs after the others: one or two
//! Gateways selecting one gateway proxy, with plain-text HTTP servers on port 80 (some with
//! `httpsRedirect`) and TLS servers on port 443 (`SIMPLE`, `MUTUAL`, `OPTIONAL_MUTUAL`, each
//! its own certificate from a Secret named by `credentialName`, `ISTIO_MUTUAL`, `PASSTHROUGH`,
//! and `TLS` servers terminated for TCP in `SIMPLE` or `MUTUAL` mode; in a third of these
//! worlds an `AUTO_PASSTHROUGH` server too, Istio's east-west gateway), hosts drawn from
//! exact names, wildcards and `*`; VirtualServices bound to a Gateway or not (short and
//! qualified names, `mesh`, both, another gateway) with `http` rules matching `uri.prefix`,
//! `port`, `gateways`, `sourceLabels` and `sourceNamespace`, and `tls` rules by `sniHosts`;
//! backends behind ServiceEntries. All of it is written as Istio YAML and translated by the
//! control plane (`translate_gateway`), and served by a real engine with its TLS transport.
//! Clients open one connection per request, over TLS with a real rustls client (a server name
//! or none, a certificate or none) or in plain text, and write `Host` as a name, with a port,
//! or in upper case. East-west clients name a cluster in their SNI
//! (`outbound_.<port>_.<subset>_.<host>`, declared or not, its subset defined or not, with or
//! without endpoints) from a sidecar's mTLS (Istio's ALPNs, a workload certificate) or from a
//! plain TLS client (`http/1.1` only, which the AUTO_PASSTHROUGH chains must not take).
//!
//! In two fifths of the worlds AuthorizationPolicies in `istio-system` select the gateway (or
//! every workload, or another one): [`authz`] decides them as pilot's builder and Envoy's RBAC
//! filters do, 403 on HTTP chains, closed L4 chains, nothing on AUTO_PASSTHROUGH ones. In two
//! fifths (independently) a RequestAuthentication with one or two `jwtRules` (issuers,
//! `fromHeaders`, `fromParams`, `audiences`, `forwardOriginalToken`) meets clients' tokens in
//! every place and state ([`jwt`]: 401, 403 for an audience, the token removed or forwarded,
//! `requestPrincipals`); in two fifths the gateway trusts 1–2 proxies in front
//! (`numTrustedProxies`) and clients write `x-forwarded-for` and `x-forwarded-proto` ([`edge`]:
//! the client address for `remoteIpBlocks`, the fields the backend receives).
//!
//! The checks ([`checks`]) hold every request to the reference ([`reference`], [`chains`]
//! and [`authz`]), written from pilot's gateway translation and Envoy's filter-chain and
//! virtual-host matching. Its violations, outcomes (`gateway:*`) and trace hash join the
//! seed's report; planted bugs in the engine's chain selection and client-certificate check
//! are caught by a seed (`tests/mutants_config.rs`).

pub mod authz;
pub mod chains;
mod checks;
mod config;
mod draw;
pub mod edge;
pub mod hosts;
pub mod jwt;
pub mod reference;
pub mod spec;
mod wire;
mod world;

use trellis_engine::Engine;

pub use spec::GatewaySpec;

/// Run the gateway world of `spec` (seeded by `seed`); `hook` is called on its engine (as
/// `40_000`), to plant bugs.
pub fn run(
    spec: &GatewaySpec,
    seed: u64,
    hook: Option<fn(usize, &mut Engine)>,
) -> super::report::WorldOutcome {
    match world::World::new(spec, seed, hook) {
        Ok(mut world) => {
            let trace = world.run();
            world.check();
            super::report::WorldOutcome {
                violations: std::mem::take(&mut world.violations.list),
                trace,
                outcomes: std::mem::take(&mut world.outcomes),
            }
        }
        Err(msg) => super::report::WorldOutcome::unbuilt("gateway", &msg),
    }
}
