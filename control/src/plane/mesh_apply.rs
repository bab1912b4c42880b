//! What a sidecar fed by the control plane does with the mesh config pushed to it
//! ([`MeshSettings`]), each field where pilot uses it.
//!
//! - `defaultHttpRetryPolicy`: the retry policy of every route that sets none: a
//!   VirtualService rule without `retries` (`translateRoute`: `policy := in.Retries; if nil,
//!   opts.Mesh.GetDefaultHttpRetryPolicy()`) and a service's default route
//!   (`BuildDefaultHTTPOutboundRoute`), both pilot/pkg/networking/core/route/route.go, through
//!   `retry.ConvertPolicy`, which Trellis's VirtualService `retries` already follows.
//! - `enableAutoMtls: false`: clusters without a DestinationRule `tls` are plaintext
//!   ([`upstream_tls::auto_mtls_off`]).
//! - `pathNormalization`: the HTTP settings' normalization.
//! - `outboundTrafficPolicy.mode` on the outbound listeners: `ALLOW_ANY` passes requests for
//!   unknown hosts through to their original destination (the listener's `passthrough`, the
//!   `allow_any` virtual host to `PassthroughCluster`); `REGISTRY_ONLY` answers them 502, as
//!   pilot's `block_all` catch-all virtual host does (`buildCatchAllVirtualHost`,
//!   pilot/pkg/networking/core/httproute.go: a `DirectResponse` of status 502). The same
//!   `passthrough` decides the engine's catch-all for redirected connections that are not
//!   HTTP: `PassthroughCluster`, or `BlackHoleCluster`, which closes them
//!   ([`trellis_engine::config::OutboundCapture`]). A `Sidecar` resource's own
//!   `outboundTrafficPolicy` has already replaced the mesh config's in the document
//!   ([`MeshSettings::under_sidecar`]).
//!
//! Which wins over the sidecar's own file (`trellis proxy --config`): the mesh config, for
//! each field it sets; a field it leaves unset keeps the file's value (`http.pathNormalization`,
//! a listener's `passthrough`, which default to `BASE` and `false`). The control plane owns
//! mesh-wide settings, as istiod does, so one edit reaches every sidecar; the file keeps
//! working alone for a sidecar with no control plane, and a mesh config that says nothing
//! does not change how an existing sidecar behaves (the precedent of
//! `protocolDetectionTimeout`, whose file setting is a listener's).

use trellis_engine::config::{Config, Route, RouteAction, VirtualHost};

use super::mesh_settings::{MeshSettings, OutboundTrafficMode};
use crate::diag::Diagnostic;
use crate::istio::ResourceSet;
use crate::translate::{routes, upstream_tls, Translation};

/// pilot's name of the REGISTRY_ONLY catch-all (`util.BlackHole`,
/// pilot/pkg/networking/util/util.go).
pub const BLACK_HOLE: &str = "block_all";

/// Before translation: the VirtualService rules that set no `retries` take the mesh's
/// `defaultHttpRetryPolicy`.
pub fn default_retries_into_rules(resources: &mut ResourceSet, mesh: &MeshSettings) {
    let Some(policy) = mesh.default_http_retry_policy() else {
        return;
    };
    for vs in &mut resources.virtual_services {
        for rule in vs.spec.http.iter_mut().filter(|r| r.retries.is_none()) {
            rule.retries = Some(policy.clone());
        }
    }
}

/// After translation: the mesh's `defaultHttpRetryPolicy` on the services' default routes
/// (and the same routes a VirtualService falls back to), and `enableAutoMtls`.
pub fn apply_to_translation(translation: &mut Translation, mesh: &MeshSettings) {
    if let Some(policy) = mesh.default_http_retry_policy() {
        let mut diags: Vec<Diagnostic> = Vec::new();
        let converted = routes::retries(Some(&policy), "defaultHttpRetryPolicy", &mut diags);
        let defaults: Vec<&String> = (translation.virtual_hosts.iter())
            .filter(|(_, origin)| origin.virtual_service.is_none())
            .map(|(name, _)| name)
            .collect();
        for table in &mut translation.config.route_tables {
            for vhost in &mut table.virtual_hosts {
                let default_host = defaults.contains(&&vhost.name);
                for route in vhost.routes.iter_mut() {
                    if default_host || route.fallback {
                        route.retries = converted.clone();
                    }
                }
            }
        }
        translation.diagnostics.extend(diags);
    }
    if !mesh.auto_mtls() {
        upstream_tls::auto_mtls_off(&mut translation.config);
    }
}

/// On the sidecar's listeners and HTTP settings (the file's, joined to the translation): the
/// fields the mesh config sets win over the file's.
pub fn apply_to_listeners(config: &mut Config, mesh: &MeshSettings) {
    if mesh.path_normalization.is_some() {
        config.http.path_normalization = mesh.path_normalization();
    }
    let Some(mode) = mesh.outbound_traffic_policy else {
        return;
    };
    let mut tables = Vec::new();
    for listener in (config.listeners.iter_mut())
        .filter(|l| crate::translate::outbound_capture::is_sidecar_outbound(l))
    {
        listener.passthrough = mode == OutboundTrafficMode::AllowAny;
        if !tables.contains(&listener.route_table) {
            tables.push(listener.route_table.clone());
        }
    }
    if mode == OutboundTrafficMode::RegistryOnly {
        for table in config
            .route_tables
            .iter_mut()
            .filter(|t| tables.contains(&t.name))
        {
            // A VirtualService for `*` already catches every unknown host (Envoy would refuse
            // the domain twice); pilot's catch-all only ever comes last.
            let caught = (table.virtual_hosts.iter()).any(|v| v.domains.iter().any(|d| d == "*"));
            if !caught {
                table.virtual_hosts.push(black_hole());
            }
        }
    }
}

/// pilot's `block_all` virtual host: every request for a host no other virtual host serves
/// is answered 502 by the proxy itself.
fn black_hole() -> VirtualHost {
    VirtualHost {
        name: BLACK_HOLE.to_string(),
        domains: vec!["*".to_string()],
        routes: vec![Route {
            name: BLACK_HOLE.to_string(),
            matches: Vec::new(),
            action: RouteAction::DirectResponse {
                status: 502,
                body: None,
            },
            ..Route::default()
        }],
    }
}

#[cfg(test)]
#[path = "mesh_apply_tests.rs"]
mod tests;
