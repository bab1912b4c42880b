//! IST0128 NoServerCertificateVerificationDestinationLevel and IST0129
//! NoServerCertificateVerificationPortLevel: a DestinationRule that originates TLS (`SIMPLE` or
//! `MUTUAL`) without `caCertificates` does not verify the server it talks to.
//!
//! As Istio's `destinationrule.CaCertificateAnalyzer`: a `credentialName` on a rule with a
//! `workloadSelector` counts as verification (the secret can carry the CA, and only a
//! selected gateway can read it); the top-level policy and each port-level policy are judged
//! on their own.

use super::codes::{
    NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL,
    NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL,
};
use super::input::Inputs;
use super::message::Message;
use crate::istio::destination_rule::{ClientTlsSettings, TlsMode};

/// The TLS mode, when `tls` originates TLS without a way to verify the server.
fn unverified(tls: Option<&ClientTlsSettings>, has_selector: bool) -> Option<&'static str> {
    let tls = tls?;
    let mode = match tls.mode? {
        TlsMode::SIMPLE => "SIMPLE",
        TlsMode::MUTUAL => "MUTUAL",
        _ => return None,
    };
    let has_ca = tls
        .ca_certificates
        .as_deref()
        .is_some_and(|c| !c.is_empty());
    let has_credential = tls
        .credential_name
        .as_deref()
        .is_some_and(|c| !c.is_empty());
    let verified = has_ca || (has_credential && has_selector);
    (!verified).then_some(mode)
}

/// Run the check on every DestinationRule.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    for dr in &inputs.resources.destination_rules {
        let Some(policy) = &dr.spec.traffic_policy else {
            continue;
        };
        let has_selector = dr.spec.workload_selector.is_some();
        let (name, ns, host) = (&dr.source.name, dr.namespace(), &dr.spec.host);
        let full_name = format!("{ns}/{name}");
        if let Some(mode) = unverified(policy.tls.as_ref(), has_selector) {
            let m = Message::new(
                NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL,
                format!(
                    "DestinationRule {full_name} in namespace {ns} has TLS mode set to {mode} but no caCertificates are set to validate server identity for host: {host}"
                ),
            );
            out.push(inputs.blame(&dr.source, m.field("spec.trafficPolicy.tls")));
        }
        for (i, p) in policy.port_level_settings.iter().enumerate() {
            let Some(mode) = unverified(p.tls.as_ref(), has_selector) else {
                continue;
            };
            let port = p
                .port
                .as_ref()
                .map_or(String::new(), |p| format!("number:{}", p.number));
            let m = Message::new(
                NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL,
                format!(
                    "DestinationRule {full_name} in namespace {ns} has TLS mode set to {mode} but no caCertificates are set to validate server identity for host: {host} at port {port}"
                ),
            );
            let field = format!("spec.trafficPolicy.portLevelSettings[{i}].tls");
            out.push(inputs.blame(&dr.source, m.field(field)));
        }
    }
}
