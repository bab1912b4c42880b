//! IST0163 InvalidExternalControlPlaneConfig and IST0164
//! ExternalControlPlaneAddressIsNotAHostname: Istio's webhook configurations on a remote
//! cluster whose address for the external control plane is missing or is an IP.
//!
//! As Istio's `externalcontrolplane.ExternalControlPlaneAnalyzer`
//! (`pkg/config/analysis/analyzers/externalcontrolplane/externalcontrolplane.go`): the webhooks
//! of a ValidatingWebhookConfiguration named `istiod-default-validator` or `istio-validator*`,
//! and of a MutatingWebhookConfiguration named `istio-sidecar-injector*`, each need a
//! `clientConfig.url` or `clientConfig.service`; a URL that Go's `url.Parse` refuses is
//! invalid, and one whose host is an IP address gets the Info.

use std::net::IpAddr;

use super::codes::{
    EXTERNAL_CONTROL_PLANE_ADDRESS_IS_NOT_A_HOSTNAME, INVALID_EXTERNAL_CONTROL_PLANE_CONFIG,
};
use super::input::Inputs;
use super::message::Message;
use super::object::{seq_at, str_at, Object};

/// The host of `url` as Go's `url.Parse(..).Hostname()` gives it, or `Err` where `url.Parse`
/// fails (control characters, a space or a non-numeric port in the authority).
fn hostname(url: &str) -> Result<String, ()> {
    if url.chars().any(|c| c.is_control()) {
        return Err(());
    }
    let Some((_, rest)) = url.split_once("://") else {
        // No authority: a path (or opaque) URL, whose Hostname is empty.
        return Ok(String::new());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.contains(' ') {
        return Err(());
    }
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or(())?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if port.is_some_and(|p| !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(());
    }
    Ok(host.to_string())
}

/// Judge one webhook's `clientConfig`.
fn check_webhook(
    inputs: &Inputs,
    config: &Object,
    hook: &serde_yaml::Value,
    out: &mut Vec<Message>,
) {
    let name = str_at(hook, &["name"]).unwrap_or_default();
    let client = hook.get("clientConfig");
    let url = client.and_then(|c| c.get("url")).and_then(|u| u.as_str());
    let service = client
        .and_then(|c| c.get("service"))
        .is_some_and(|s| !s.is_null());
    let invalid = |url: &str, why: &str| {
        Message::new(
            INVALID_EXTERNAL_CONTROL_PLANE_CONFIG,
            format!("The hostname ({url}) that was provided for the webhook ({name}) to reach the ingress gateway on the external control plane cluster {why}. Traffic may not flow properly."),
        )
    };
    let m = match url.map(|u| (u, hostname(u))) {
        Some((u, Err(()))) => invalid(u, "was provided in an invalid format"),
        Some((u, Ok(host))) if host.parse::<IpAddr>().is_ok() => Message::new(
            EXTERNAL_CONTROL_PLANE_ADDRESS_IS_NOT_A_HOSTNAME,
            format!("The address ({u}) that was provided for the webhook ({name}) to reach the ingress gateway on the external control plane cluster is an IP address. This is not recommended for a production environment."),
        ),
        Some(_) => return,
        None if service => return,
        None => invalid("", "is blank"),
    };
    out.push(inputs.blame(&config.source, m));
}

/// Run the check on Istio's webhook configurations.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    for config in inputs.kube_objects_of("ValidatingWebhookConfiguration") {
        let name = config.name();
        if name == "istiod-default-validator" || name.starts_with("istio-validator") {
            for hook in seq_at(&config.value, &["webhooks"]) {
                check_webhook(inputs, config, hook, out);
            }
        }
    }
    for config in inputs.kube_objects_of("MutatingWebhookConfiguration") {
        if config.name().starts_with("istio-sidecar-injector") {
            for hook in seq_at(&config.value, &["webhooks"]) {
                check_webhook(inputs, config, hook, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hostname;
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    fn case(text: &str) -> (Vec<String>, Vec<String>) {
        let a = analyze_str(text, "ecp.yaml");
        (lines(&a, "IST0163"), lines(&a, "IST0164"))
    }

    /// analyzers_test.go "externalControlPlaneMissingWebhooks" (both inputs).
    #[test]
    fn missing_urls() {
        let (invalid, ip) = case(include_str!(
            "../../tests/analyzer_testdata/externalcontrolplane-missing-urls.yaml"
        ));
        assert_eq!(
            invalid,
            vec![
                "Warning [IST0163] (MutatingWebhookConfiguration istio-sidecar-injector-external-istiod) The hostname () that was provided for the webhook (rev.namespace.sidecar-injector.istio.io) to reach the ingress gateway on the external control plane cluster is blank. Traffic may not flow properly.",
                "Warning [IST0163] (ValidatingWebhookConfiguration istio-validator-external-istiod) The hostname () that was provided for the webhook (rev.validation.istio.io) to reach the ingress gateway on the external control plane cluster is blank. Traffic may not flow properly.",
            ]
        );
        assert!(ip.is_empty());
        let (invalid, _) = case(include_str!(
            "../../tests/analyzer_testdata/externalcontrolplane-missing-urls-custom-ns.yaml"
        ));
        assert_eq!(invalid.len(), 2, "{invalid:#?}");
    }

    /// "externalControlPlaneUsingIpAddresses" and the two "externalControlPlaneValidWebhooks".
    #[test]
    fn ip_addresses_and_valid_urls() {
        let (invalid, ip) = case(include_str!(
            "../../tests/analyzer_testdata/externalcontrolplane-using-ip-addr.yaml"
        ));
        assert!(invalid.is_empty());
        assert_eq!(
            ip,
            vec!["Info [IST0164] (MutatingWebhookConfiguration istio-sidecar-injector-external-istiod) The address (https://1.1.1.1:5100/inject/cluster/your-cluster-name/net/network1) that was provided for the webhook (rev.namespace.sidecar-injector.istio.io) to reach the ingress gateway on the external control plane cluster is an IP address. This is not recommended for a production environment."]
        );
        for text in [
            include_str!("../../tests/analyzer_testdata/externalcontrolplane-valid-urls.yaml"),
            include_str!(
                "../../tests/analyzer_testdata/externalcontrolplane-valid-urls-custom-ns.yaml"
            ),
        ] {
            assert_eq!(case(text), (vec![], vec![]));
        }
    }

    #[test]
    fn hostnames_as_go_parses_them() {
        assert_eq!(hostname("https://u@[::1]:443/x").as_deref(), Ok("::1"));
        assert_eq!(
            hostname("https://test.com:15017/v").as_deref(),
            Ok("test.com")
        );
        assert_eq!(hostname("https://test.com:abc/v"), Err(()));
        assert_eq!(hostname("").as_deref(), Ok(""));
    }
}
