//! The sidecars' configuration in the security world, as the control plane would push it now:
//! an inbound sidecar's listener in its service's PeerAuthentication mode with its
//! AuthorizationPolicies and RequestAuthentication, forwarding to the workload; a mesh
//! caller's outbound clusters toward every service with its DestinationRule's TLS mode; and
//! every sidecar's identity (certificate, key and the trust bundle it holds now, which a root
//! rotation changes: [`super::rotation`]).

use std::sync::Arc;

use trellis_engine::config::{Config, Direction, Listener, UpstreamTls};
use trellis_engine::transport::policy::InboundMtls;

use super::spec::{CallerKind, PeerAuthMode};
use super::world::{pod, World, WORKLOAD};
use crate::build;

impl World<'_> {
    /// Engine `e`'s configuration as things stand.
    pub(crate) fn config_of(&self, e: usize) -> Arc<Config> {
        let mut config = build::base();
        config.version = format!("sec-{e}-{}", self.now.as_nanos());
        config.identity = Some(self.identity_of(e));
        let n_services = self.spec.services.len();
        if e < n_services {
            config.listeners = vec![Listener {
                tls: None,
                local_forward: None,
                inbound_protocols: None,
                outbound_capture: None,
                authentication: self.jwt.as_ref().and_then(|j| j.authentication(e)),
                edge: None,
                name: "inbound".into(),
                address: pod(e),
                route_table: "outbound".into(),
                direction: Direction::Inbound,
                passthrough: false,
                mtls: InboundMtls::uniform(match self.modes[e] {
                    PeerAuthMode::Disable => trellis_engine::config::InboundMode::Disable,
                    PeerAuthMode::Permissive => trellis_engine::config::InboundMode::Permissive,
                    PeerAuthMode::Strict => trellis_engine::config::InboundMode::Strict,
                }),
                authorization: self.authz.get(e).cloned().flatten(),
            }];
            config
                .clusters
                .push(build::cluster("inbound|9080", &[(WORKLOAD, &[])]));
            let route = build::route("inbound", vec![], &[("inbound|9080", 100)]);
            build::add_vhost(&mut config, "inbound", &["*"], vec![route]);
            return Arc::new(config);
        }
        let caller = (self.out_engine.iter())
            .position(|o| *o == Some(e))
            .map(|c| &self.spec.callers[c]);
        for (s, svc) in self.spec.services.iter().enumerate() {
            let addr = pod(s).to_string();
            let mut cluster = build::cluster(&svc.app, &[(addr.as_str(), &[])]);
            cluster.endpoints[0].sidecar = true;
            let sans = vec![format!(
                "spiffe://{}/ns/{}/sa/{}",
                super::ca::TRUST_DOMAIN,
                svc.namespace,
                svc.app
            )];
            cluster.tls = match caller.map(|c| c.kind) {
                Some(CallerKind::AutoMtls | CallerKind::Impostor) => UpstreamTls::Auto {
                    subject_alt_names: sans,
                },
                Some(CallerKind::IstioMutual) => UpstreamTls::IstioMutual {
                    sni: None,
                    subject_alt_names: sans,
                },
                _ => UpstreamTls::Disable,
            };
            cluster.pool.max_requests_per_connection =
                caller.map_or(0, |c| c.max_requests_per_connection);
            config.clusters.push(cluster);
            let route = build::route(&svc.app, vec![], &[(svc.app.as_str(), 100)]);
            build::add_vhost(&mut config, &svc.app, &[svc.app.as_str()], vec![route]);
        }
        Arc::new(config)
    }
}
