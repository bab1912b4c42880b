//! AuthorizationPolicy and RequestAuthentication on a gateway proxy's listeners.
//!
//! A gateway is a workload like any other to Istio's security policies: pilot builds the same
//! RBAC and `jwt_authn` HTTP filters for a gateway's listeners as for a sidecar's inbound ones
//! (`buildGatewayHTTPFilterChain` → `BuildHTTP` with the gateway's labels, through
//! `ListAuthorizationPolicies` and `PolicyMatcherForProxy` in pilot/pkg/model). So the policies
//! that attach are those of the root namespace and of the gateway's namespace whose
//! `selector.matchLabels` the gateway's labels include, exactly as for a sidecar
//! ([`super::super::authz::attached_to`]): e.g. a policy in `istio-system` selecting
//! `istio: ingressgateway` guards bookinfo's ingress gateway. `targetRef(s)` name Gateway API
//! gateways and waypoints, which an Istio `Gateway` proxy is not: reported, not applied.
//!
//! What the filters then see differs from a sidecar in one way, set by the listener's edge
//! headers ([`trellis_engine::config::EdgeHeaders`]): `remoteIpBlocks` match the client
//! address the gateway computed from its peer (and trusted hops), not an `x-forwarded-for` the
//! client wrote.

use trellis_engine::config::Config;

use super::GatewayOptions;
use crate::diag::Diagnostic;
use crate::istio::ResourceSet;
use crate::jwks_resolver::JwksSource;
use crate::translate::{authentication_for, authorization_for, tcp_authorization_for, Workload};

/// The service account of Istio's ingress gateway Deployment (manifests/charts/gateway),
/// used when the proxy's `workload:` does not name one: it only shows in the identity a
/// policy could match, never in which policies attach.
pub const DEFAULT_GATEWAY_SERVICE_ACCOUNT: &str = "istio-ingressgateway-service-account";

/// The workload a gateway proxy is, for the policies that select it.
pub fn gateway_workload(opts: &GatewayOptions, service_account: Option<&str>) -> Workload {
    Workload {
        namespace: opts.namespace.clone(),
        service_account: service_account
            .unwrap_or(DEFAULT_GATEWAY_SERVICE_ACCOUNT)
            .to_string(),
        labels: opts.labels.clone(),
        locality: None,
    }
}

/// Attach the gateway's AuthorizationPolicies and RequestAuthentications to every edge
/// listener of `config` (the ones [`super::translate_gateway`] made); returns what
/// translation noticed.
pub fn secure_listeners(
    config: &mut Config,
    resources: &ResourceSet,
    opts: &GatewayOptions,
    service_account: Option<&str>,
    jwks: &dyn JwksSource,
) -> Vec<Diagnostic> {
    let workload = gateway_workload(opts, service_account);
    let authz = authorization_for(resources, &workload);
    let authn = authentication_for(resources, &workload, jwks);
    for listener in config.listeners.iter_mut().filter(|l| l.edge.is_some()) {
        listener.authorization = authz.authorization.clone();
        listener.authentication = authn.authentication.clone();
    }
    // The L4 chains of TCP and TLS servers: pilot builds them with buildOutboundNetworkFilters,
    // whose buildCompleteNetworkFilters puts the gateway's `authzBuilder.BuildTCP()` in front
    // (pilot/pkg/networking/core/networkfilter.go): the same policies compiled for TCP.
    let tcp = tcp_authorization_for(resources, &workload);
    let edge: Vec<&str> = (config.listeners.iter())
        .filter(|l| l.edge.is_some())
        .map(|l| l.name.as_str())
        .collect();
    // AUTO_PASSTHROUGH chains are built without authz (builtAutoPassthroughFilterChains:
    // "We do not want any authz here"): the destination's sidecar enforces its own.
    for chain in (config.tcp_routes.iter_mut())
        .filter(|r| r.listener.as_deref().is_some_and(|l| edge.contains(&l)))
        .filter(|r| !super::auto_passthrough::is_chain(r))
    {
        chain.authorization = tcp.authorization.clone();
    }
    let skipped = tcp.diagnostics.into_iter();
    let skipped = skipped.filter(|d| d.severity == crate::diag::Severity::Info);
    authz
        .diagnostics
        .into_iter()
        .chain(authn.diagnostics)
        .chain(skipped)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::istio::parse_str;
    use crate::jwks_resolver::NoFetch;
    use crate::translate::{translate_gateway, Registry};

    const GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
"#;

    fn secured(policies: &str) -> (Config, Vec<Diagnostic>) {
        let set = parse_str(&format!("{GATEWAY}\n---\n{policies}"), "t.yaml").expect("parses");
        let opts = GatewayOptions {
            labels: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
            ..GatewayOptions::default()
        };
        let mut config = translate_gateway(&set, &Registry::default(), &opts).config;
        let diags = secure_listeners(&mut config, &set, &opts, None, &NoFetch);
        (config, diags)
    }

    /// Istio's "Ingress Gateway" authorization task (istio.io, tasks/security/authorization/
    /// authz-ingress): a policy in `istio-system` selecting `istio: ingressgateway` applies to
    /// the ingress gateway.
    #[test]
    fn a_policy_selecting_the_gateway_labels_guards_its_listeners() {
        let (config, diags) = secured(
            r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress-policy, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - from: [{source: {remoteIpBlocks: ["10.0.0.0/8"]}}]
"#,
        );
        assert!(diags.is_empty(), "{diags:?}");
        let listener = &config.listeners[0];
        assert!(listener.edge.is_some());
        let authz = listener.authorization.as_ref().expect("policy attached");
        assert_eq!(authz.filters.len(), 1);
    }

    /// ListAuthorizationPolicies: a policy of another (non-root) namespace, or one whose
    /// selector names labels the gateway lacks, does not attach.
    #[test]
    fn policies_for_other_workloads_do_not_attach() {
        let (config, _) = secured(
            r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: app-only, namespace: default}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-labels, namespace: istio-system}
spec:
  selector: {matchLabels: {app: productpage}}
  action: DENY
  rules: [{}]
"#,
        );
        assert!(config.listeners[0].authorization.is_none());
    }

    /// RequestAuthentication at the ingress gateway (istio.io, tasks/security/authentication/
    /// authn-policy "End-user authentication"): the jwt_authn filter goes on the gateway.
    #[test]
    fn request_authentication_attaches_to_the_gateway() {
        let (config, diags) = secured(
            r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt-example, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules:
  - issuer: "testing@secure.istio.io"
    jwks: '{"keys":[{"e":"AQAB","kid":"DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ","kty":"RSA","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ"}]}'
"#,
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert!(config.listeners[0].authentication.is_some());
    }
}
