//! `analyze`: Istio's configuration analyzers (`istioctl analyze`) over a directory of YAML.
//!
//! Users coming from Istio know its messages by code, so every finding here is an Istio
//! analysis message with Istio's code, level and wording (the templates of
//! `pkg/config/analysis/msg/messages.yaml`), printed in istioctl's format and sorted as
//! istioctl sorts them (level, code, resource, text; duplicates removed). The checks:
//!
//! - [`references`]: IST0101 ReferencedResourceNotFound (destination hosts, ports and subsets,
//!   DestinationRule hosts are [`dr_subsets`]'s), IST0112 VirtualServiceDestinationPortSelectorRequired and IST0127
//!   NoMatchingWorkloadsFound (DestinationRule selectors);
//! - [`vs_gateways`]: IST0101 (gateways), IST0132 VirtualServiceHostNotFoundInGateway, IST0165
//!   ReferencedInternalGateway;
//! - [`schema`]: IST0106 SchemaValidationError (what istiod's validation webhook rejects);
//! - [`conflicts`]: IST0109 ConflictingMeshGatewayVirtualServiceHosts;
//! - [`rules`]: IST0130 VirtualServiceUnreachableRule and IST0131 VirtualServiceIneffectiveMatch;
//! - [`ca_certificates`]: IST0128/IST0129 NoServerCertificateVerification (DestinationRule TLS);
//! - [`port_names`]: IST0118 PortNameIsNotUnderNamingConvention, IST0150;
//! - [`service_entries`]: IST0134 ServiceEntryAddressesRequired, IST0177;
//! - [`sidecars`] and [`telemetry`] (over [`selectors`]): IST0101 (selectors), IST0110/IST0111,
//!   IST0159/IST0160, IST0167 IneffectivePolicy;
//! - [`authz`]: AuthorizationPolicy IST0127 and IST0101 (namespaces);
//! - [`conflicting_gateways`]: IST0145 ConflictingGateways;
//! - [`gateway_ports`], [`gateway_secrets`], [`gateway_certificates`]: IST0162
//!   GatewayPortNotDefinedOnService, IST0101 (gateway selectors and `credentialName`s), IST0138
//!   GatewayDuplicateCertificate, against istioctl's default ingress gateway ([`defaults`]);
//! - [`ingress_subsets`]: IST0140 IngressRouteRulesNotAffected;
//! - [`injection`]: IST0102/IST0148, IST0103 PodMissingProxy, IST0123;
//! - [`rule_overlaps`]: IST0131 for overlapping prefix matches;
//! - [`dr_subsets`]: IST0173 DestinationRuleSubsetNotSelectPods, IST0174
//!   UnknownDestinationRuleHost;
//! - [`deployment_services`]: IST0116 DeploymentAssociatedToMultipleServices, IST0137
//!   DeploymentConflictingPorts; [`application_uid`]: IST0144 InvalidApplicationUID;
//! - [`annotations`] (over [`annotation_table`] and [`annotation_values`]): IST0107
//!   MisplacedAnnotation, IST0108 UnknownAnnotation, IST0125 InvalidAnnotation, IST0135
//!   DeprecatedAnnotation;
//! - [`deprecation`]: IST0002 Deprecated; [`jwt_claim_routes`]: IST0149
//!   JwtClaimBasedRoutingWithoutRequestAuthN; [`blocked_cidrs`]: IST0175
//!   JwksUriFetchUnrestricted; [`conditions`]: IST0171 NegativeConditionStatus;
//! - [`image_auto`]: IST0146/IST0147 ImageAutoWithoutInjection; [`webhooks`]: IST0139
//!   InvalidWebhook (both over [`label_selector`]); [`injection_image`]: IST0158
//!   PodsIstioProxyImageMismatchInNamespace; [`external_control_plane`]: IST0163/IST0164;
//! - [`gateway_api_selectors`]: IST0166 IneffectiveSelector; [`gateway_api_crds`]: IST0176
//!   GatewayAPICRDVersionBelowMinimum;
//! - [`envoy_filters`]: IST0151..IST0155 (EnvoyFilter patch operations);
//!   [`telemetry_providers`]: IST0157 InvalidTelemetryProvider, IST0002 (Lightstep);
//!   [`mesh_networks`]: IST0126 UnknownMeshNetworksServiceRegistry (these and others read the
//!   mesh config and MeshNetworks, [`mesh_config`]);
//! - [`maturity`]: IST0136 AlphaAnnotation, only when asked ([`OptIn`]), as istioctl leaves it
//!   out of its default set.
//!
//! `control/tests/istio_analyzer_cases.rs` runs these over Istio's own analyzer test table.
//!
//! Documents that cannot be read become IST0106 messages (see [`input`]) and unknown fields,
//! which Trellis reads and ignores, become IST0133 SchemaWarning: Istio's own code for "valid,
//! but not as you meant it", a Warning like the loader's.
//!
//! Destination hosts are only judged when the input names at least one service (a Kubernetes
//! Service or a ServiceEntry): a directory of Istio resources alone says nothing about which
//! services exist, and flagging every host would bury real findings. In that case nothing is
//! reported for hosts (subsets are still checked: they only need DestinationRules). A
//! DestinationRule's own host is the exception: [`dr_subsets`] judges it as Istio does.

pub mod annotation_table;
pub mod annotation_values;
pub mod annotations;
pub mod application_uid;
pub mod authz;
pub mod blocked_cidrs;
pub mod ca_certificates;
pub mod codes;
pub mod conditions;
pub mod conflicting_gateways;
pub mod conflicts;
pub mod defaults;
pub mod deployment_services;
pub mod deprecation;
pub mod dr_subsets;
pub mod envoy_filters;
pub mod external_control_plane;
pub mod gateway_api_crds;
pub mod gateway_api_selectors;
pub mod gateway_certificates;
pub mod gateway_ports;
pub mod gateway_secrets;
pub mod image_auto;
pub mod ingress_subsets;
pub mod injection;
pub mod injection_image;
pub mod input;
pub mod jwt_claim_routes;
pub mod label_selector;
pub mod maturity;
pub mod mesh_config;
pub mod mesh_networks;
pub mod message;
pub mod object;
pub mod port_names;
pub mod references;
pub mod rule_overlaps;
pub mod rules;
pub mod schema;
pub mod selectors;
pub mod service_entries;
pub mod sidecars;
pub mod telemetry;
pub mod telemetry_providers;
pub mod vs_gateways;
pub mod webhooks;

use std::fmt;
use std::path::Path;

use serde::Serialize;

pub use input::{Inputs, KubeService, KubeServicePort, Workload};
pub use mesh_config::{Mesh, MeshDocument, MeshFileError};
pub use message::{Level, Message, UnknownLevel};
pub use object::Object;

use crate::diag::ConfigError;

/// The result of an analysis: messages sorted and deduplicated as istioctl does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Analysis {
    /// What was analyzed (the directory), for the "no issues" line.
    #[serde(skip)]
    pub target: String,
    pub messages: Vec<Message>,
}

impl Analysis {
    /// Whether any message is at or above `threshold` (istioctl's `--failure-threshold`).
    pub fn fails(&self, threshold: Level) -> bool {
        self.messages.iter().any(|m| m.level.at_least(threshold))
    }

    /// Messages with this code.
    pub fn with_code<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a Message> + 'a {
        self.messages.iter().filter(move |m| m.code == code)
    }
}

impl fmt::Display for Analysis {
    /// One istioctl line per message, or istioctl's all-clear line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.messages.is_empty() {
            return writeln!(
                f,
                "\u{2714} No validation issues found when analyzing {}.",
                self.target
            );
        }
        for m in &self.messages {
            writeln!(f, "{m}")?;
        }
        Ok(())
    }
}

/// Analyze every YAML file under `dir`. Fails only when the directory or a file cannot be
/// read; everything wrong inside the files is a message.
pub fn analyze_dir(dir: &Path) -> Result<Analysis, ConfigError> {
    let inputs = Inputs::read_dir(dir)?;
    Ok(analyze_resources(&inputs, &dir.display().to_string()))
}

/// Istio's analyzers that `istioctl analyze` does not run by default (`skipAll` in Istio's
/// analyzer test table), each run only when set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptIn {
    /// `maturity.AlphaAnalyzer`: IST0136 AlphaAnnotation.
    pub alpha: bool,
}

/// Run every default check over already read inputs; `target` names them in the all-clear
/// line.
pub fn analyze_resources(inputs: &Inputs, target: &str) -> Analysis {
    analyze_with(inputs, target, OptIn::default())
}

/// [`analyze_resources`] plus the analyzers `opt_in` asks for.
pub fn analyze_with(inputs: &Inputs, target: &str, opt_in: OptIn) -> Analysis {
    let mut messages = inputs.messages.clone();
    references::check(inputs, &mut messages);
    schema::check(inputs, &mut messages);
    conflicts::check(inputs, &mut messages);
    rules::check(inputs, &mut messages);
    vs_gateways::check(inputs, &mut messages);
    ca_certificates::check(inputs, &mut messages);
    port_names::check(inputs, &mut messages);
    service_entries::check(inputs, &mut messages);
    sidecars::check(inputs, &mut messages);
    telemetry::check(inputs, &mut messages);
    authz::check(inputs, &mut messages);
    conflicting_gateways::check(inputs, &mut messages);
    gateway_ports::check(inputs, &mut messages);
    gateway_secrets::check(inputs, &mut messages);
    gateway_certificates::check(inputs, &mut messages);
    injection::check(inputs, &mut messages);
    dr_subsets::check(inputs, &mut messages);
    ingress_subsets::check(inputs, &mut messages);
    deployment_services::check(inputs, &mut messages);
    application_uid::check(inputs, &mut messages);
    annotations::check(inputs, &mut messages);
    deprecation::check(inputs, &mut messages);
    jwt_claim_routes::check(inputs, &mut messages);
    blocked_cidrs::check(inputs, &mut messages);
    conditions::check(inputs, &mut messages);
    image_auto::check(inputs, &mut messages);
    webhooks::check(inputs, &mut messages);
    injection_image::check(inputs, &mut messages);
    external_control_plane::check(inputs, &mut messages);
    gateway_api_selectors::check(inputs, &mut messages);
    gateway_api_crds::check(inputs, &mut messages);
    envoy_filters::check(inputs, &mut messages);
    telemetry_providers::check(inputs, &mut messages);
    mesh_networks::check(inputs, &mut messages);
    if opt_in.alpha {
        maturity::check(inputs, &mut messages);
    }
    messages.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    messages.dedup_by(|a, b| a.to_string() == b.to_string());
    Analysis {
        target: target.to_string(),
        messages,
    }
}

/// Analyze YAML text (tests, and callers that hold the text already).
pub fn analyze_str(text: &str, file: &str) -> Analysis {
    analyze_resources(&Inputs::read_str(text, file), file)
}

#[cfg(test)]
mod tests;
