//! PeerAuthentication → the mTLS mode of a sidecar's inbound ports, as istiod composes it.
//!
//! pilot's `ComposePeerAuthentication` (pilot/pkg/security/authn/policy_applier.go), over the
//! policies that apply to the workload (`GetPeerAuthenticationsForWorkload`: those of the root
//! namespace and of the workload's namespace whose selector, if any, matches its labels):
//! - three scopes: mesh (root namespace, no selector), namespace (no selector), workload
//!   (a selector, outside the root namespace; a selector in the root namespace is ignored);
//! - in each scope the oldest policy wins (`creationTimestamp`, then name);
//! - PERMISSIVE to start with, then mesh, namespace and workload modes in that order, each
//!   replacing the one before unless it is UNSET (inherit);
//! - `portLevelMtls` is read from the workload policy only; an UNSET port inherits the
//!   workload's composed mode.
//!
//! A sidecar without a mesh identity cannot terminate mTLS: its ports are plaintext, and a
//! policy asking for STRICT is reported as an error (it cannot be honoured).

use std::collections::BTreeMap;

use trellis_engine::config::{InboundMode, InboundMtls};

use super::workload::{Workload, ROOT_NAMESPACE};
use crate::diag::Diagnostic;
use crate::istio::peer_authentication::{MtlsModeSpec, MutualTls};
use crate::istio::{PeerAuthenticationSpec, Resource, ResourceSet};

/// The composed policy of one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedPeerAuthentication {
    pub mode: InboundMode,
    pub per_port: BTreeMap<u32, InboundMode>,
}

fn mode_of(spec: &MtlsModeSpec) -> Option<InboundMode> {
    match spec {
        MtlsModeSpec::UNSET => None,
        MtlsModeSpec::DISABLE => Some(InboundMode::Disable),
        MtlsModeSpec::PERMISSIVE => Some(InboundMode::Permissive),
        MtlsModeSpec::STRICT => Some(InboundMode::Strict),
    }
}

fn set_mode(mtls: &Option<MutualTls>) -> Option<InboundMode> {
    mtls.as_ref().and_then(|m| mode_of(&m.mode))
}

/// Oldest first, as pilot compares `CreationTimestamp` (RFC 3339 strings in one form compare
/// as text; a missing one is Go's zero time, the oldest), then by name.
fn age_key(r: &Resource<PeerAuthenticationSpec>) -> (String, String) {
    let created = match &r.meta.creation_timestamp {
        Some(serde_yaml::Value::String(t)) => t.clone(),
        _ => String::new(),
    };
    (created, r.source.name.clone())
}

fn oldest<'a>(
    it: impl Iterator<Item = &'a Resource<PeerAuthenticationSpec>>,
) -> Option<&'a Resource<PeerAuthenticationSpec>> {
    it.min_by_key(|r| age_key(r))
}

/// pilot's `ComposePeerAuthentication` for `workload`.
pub fn compose(resources: &ResourceSet, workload: &Workload) -> MergedPeerAuthentication {
    let applicable = resources.peer_authentications.iter().filter(|r| {
        let ns = r.namespace();
        (ns == ROOT_NAMESPACE || ns == workload.namespace)
            && r.spec
                .selector
                .as_ref()
                .is_none_or(|s| workload.matches_labels(&s.match_labels))
    });
    let applicable: Vec<_> = applicable.collect();
    let mesh = oldest(
        applicable
            .iter()
            .copied()
            .filter(|r| !r.spec.has_selector() && r.namespace() == ROOT_NAMESPACE),
    );
    let namespace = oldest(
        applicable
            .iter()
            .copied()
            .filter(|r| !r.spec.has_selector() && r.namespace() != ROOT_NAMESPACE),
    );
    let workload_policy = oldest(
        applicable
            .iter()
            .copied()
            .filter(|r| r.spec.has_selector() && r.namespace() != ROOT_NAMESPACE),
    );
    let mut mode = InboundMode::Permissive;
    for scope in [mesh, namespace, workload_policy].into_iter().flatten() {
        if let Some(m) = set_mode(&scope.spec.mtls) {
            mode = m;
        }
    }
    let per_port = workload_policy
        .map(|w| {
            w.spec
                .port_level_mtls
                .iter()
                .map(|(port, m)| (*port, mode_of(&m.mode).unwrap_or(mode)))
                .collect()
        })
        .unwrap_or_default();
    MergedPeerAuthentication { mode, per_port }
}

/// The mode a destination service's namespace asks of its workloads, for auto mTLS
/// (`BestEffortInferServiceMTLSMode`: the namespace-level policy, else the mesh-level one,
/// else PERMISSIVE; workload-level policies are not consulted).
pub fn service_mode(resources: &ResourceSet, namespace: &str) -> InboundMode {
    let nobody = Workload {
        namespace: namespace.to_string(),
        ..Workload::default()
    };
    let only_scopes = ResourceSet {
        peer_authentications: resources
            .peer_authentications
            .iter()
            .filter(|r| !r.spec.has_selector())
            .cloned()
            .collect(),
        ..ResourceSet::default()
    };
    compose(&only_scopes, &nobody).mode
}

/// The inbound listener's mTLS for `workload`. `app_port`, when the listener forwards to one
/// workload port, picks that port's mode; otherwise per-port modes key on the original
/// destination port. Without an identity every port is plaintext (an error if a policy asks
/// for STRICT).
pub fn inbound_mtls(
    resources: &ResourceSet,
    workload: &Workload,
    has_identity: bool,
    app_port: Option<u16>,
    diags: &mut Vec<Diagnostic>,
) -> InboundMtls {
    let merged = compose(resources, workload);
    let mut ports: Vec<(u16, InboundMode)> = merged
        .per_port
        .iter()
        .filter_map(|(p, m)| Some((u16::try_from(*p).ok()?, *m)))
        .collect();
    ports.sort_unstable();
    let mtls = match app_port {
        Some(port) => InboundMtls::uniform(
            ports
                .iter()
                .find(|(p, _)| *p == port)
                .map_or(merged.mode, |(_, m)| *m),
        ),
        None => InboundMtls {
            mode: merged.mode,
            ports,
        },
    };
    if has_identity {
        return mtls;
    }
    let wants_strict = mtls.mode == InboundMode::Strict
        || mtls.ports.iter().any(|(_, m)| *m == InboundMode::Strict);
    if wants_strict {
        diags.push(Diagnostic::error(
            "PeerAuthentication asks for STRICT mTLS, but this proxy has no identity \
             (`identity:` certificate, key and root); its inbound ports refuse every connection",
        ));
        // Fail closed: STRICT without credentials refuses rather than serving plaintext.
        return mtls;
    }
    InboundMtls::uniform(InboundMode::Disable)
}

#[cfg(test)]
mod tests;
