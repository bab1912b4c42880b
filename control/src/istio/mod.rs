//! Istio resources as users write them, and the set a loader reads from files.
//!
//! Types follow the CRD schemas (`networking.istio.io` v1, v1beta1 and v1alpha3 share shapes;
//! `security.istio.io` v1 and v1beta1 too).
//! Each resource keeps its [`Source`] (file, kind, namespace, name) so that every diagnostic,
//! error and `explain` line can say where a decision came from.

pub mod authorization_policy;
pub mod common;
pub mod destination_rule;
pub mod duration;
pub mod gateway;
pub mod loader;
pub mod peer_authentication;
pub mod request_authentication;
pub mod secret;
pub mod service_entry;
pub mod virtual_service;

use std::fmt;

use serde::Serialize;

pub use authorization_policy::AuthorizationPolicySpec;
pub use common::ObjectMeta;
pub use destination_rule::DestinationRuleSpec;
pub use gateway::{GatewaySpec, SidecarSpec};
pub use loader::{load_dir, load_file, parse_str, parse_value};
pub use peer_authentication::PeerAuthenticationSpec;
pub use request_authentication::RequestAuthenticationSpec;
pub use service_entry::ServiceEntrySpec;
pub use virtual_service::VirtualServiceSpec;

use crate::diag::Diagnostic;

/// The namespace a resource without `metadata.namespace` lives in.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Where a resource came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Source {
    /// The file it was read from (`<inline>` when given as a string).
    pub file: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Source {
    /// `namespace/name`.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl fmt::Display for Source {
    /// `Kind namespace/name`, the form used in every diagnostic.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One loaded resource: its origin, metadata and typed spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource<S> {
    pub source: Source,
    pub meta: ObjectMeta,
    pub spec: S,
}

impl<S> Resource<S> {
    pub fn namespace(&self) -> &str {
        &self.source.namespace
    }

    /// A diagnostic about this resource (file and `Kind namespace/name` filled in).
    pub fn diag(&self, d: Diagnostic) -> Diagnostic {
        d.file(self.source.file.clone())
            .resource(self.source.to_string())
    }
}

/// Every Istio resource read from a set of files, in file order, plus what the loader noticed
/// (unknown fields, skipped documents).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceSet {
    pub virtual_services: Vec<Resource<VirtualServiceSpec>>,
    pub destination_rules: Vec<Resource<DestinationRuleSpec>>,
    pub service_entries: Vec<Resource<ServiceEntrySpec>>,
    pub gateways: Vec<Resource<GatewaySpec>>,
    pub sidecars: Vec<Resource<SidecarSpec>>,
    pub peer_authentications: Vec<Resource<PeerAuthenticationSpec>>,
    /// `security.istio.io` AuthorizationPolicies.
    pub authorization_policies: Vec<Resource<AuthorizationPolicySpec>>,
    /// `security.istio.io` RequestAuthentications (`translate/request_authn.rs`).
    pub request_authentications: Vec<Resource<RequestAuthenticationSpec>>,
    /// Kubernetes `v1` Secrets (TLS credentials for Gateway servers' `credentialName`).
    pub secrets: Vec<secret::TlsSecret>,
    pub diagnostics: Vec<Diagnostic>,
}

impl ResourceSet {
    /// Append everything from `other` (used when a config names several sources).
    pub fn extend(&mut self, other: ResourceSet) {
        self.virtual_services.extend(other.virtual_services);
        self.destination_rules.extend(other.destination_rules);
        self.service_entries.extend(other.service_entries);
        self.gateways.extend(other.gateways);
        self.sidecars.extend(other.sidecars);
        self.peer_authentications.extend(other.peer_authentications);
        self.authorization_policies
            .extend(other.authorization_policies);
        self.request_authentications
            .extend(other.request_authentications);
        self.secrets.extend(other.secrets);
        self.diagnostics.extend(other.diagnostics);
    }

    /// Number of Istio resources held.
    pub fn len(&self) -> usize {
        self.virtual_services.len()
            + self.destination_rules.len()
            + self.service_entries.len()
            + self.gateways.len()
            + self.sidecars.len()
            + self.peer_authentications.len()
            + self.authorization_policies.len()
            + self.request_authentications.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
