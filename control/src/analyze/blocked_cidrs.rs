//! IST0175 JwksUriFetchUnrestricted: RequestAuthentications exist but istiod may fetch their
//! `jwksUri`s from any address.
//!
//! istiod fetches JWKS documents itself, so a RequestAuthentication author can make it reach
//! internal addresses unless `BLOCKED_CIDRS_IN_JWKS_URIS` restricts them. As Istio's
//! `authn.BlockedCIDRsAnalyzer` (`pkg/config/analysis/analyzers/authn/blockedcidrs.go`): when
//! the input holds any RequestAuthentication, every istiod Deployment (label `app: istiod`)
//! none of whose containers sets that variable to a non-empty value is reported, with the
//! policies named `namespace/name` (five at most, then a count).

use super::codes::JWKS_URI_FETCH_UNRESTRICTED;
use super::input::Inputs;
use super::message::Message;
use super::object::{seq_at, str_at};

const BLOCKED_CIDRS: &str = "BLOCKED_CIDRS_IN_JWKS_URIS";

/// Istio's `formatRANames`.
fn format_names(names: &[String]) -> String {
    const MAX_DISPLAY: usize = 5;
    if names.len() <= MAX_DISPLAY {
        return names.join(", ");
    }
    format!(
        "{}, and {} more",
        names[..MAX_DISPLAY].join(", "),
        names.len() - MAX_DISPLAY
    )
}

/// Run the check on istiod's Deployments.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let mut names: Vec<String> = inputs
        .objects_of("RequestAuthentication")
        .filter(|o| o.api_version.starts_with("security.istio.io/"))
        .map(|o| format!("{}/{}", o.namespace(), o.name()))
        .collect();
    if names.is_empty() {
        return;
    }
    names.sort();
    for d in inputs.kube_objects_of("Deployment") {
        if d.labels().get("app").map(String::as_str) != Some("istiod") {
            continue;
        }
        let containers = seq_at(&d.value, &["spec", "template", "spec", "containers"]);
        let configured = containers.iter().any(|c| {
            seq_at(c, &["env"]).iter().any(|e| {
                str_at(e, &["name"]) == Some(BLOCKED_CIDRS)
                    && str_at(e, &["value"]).is_some_and(|v| !v.is_empty())
            })
        });
        if !configured {
            let m = Message::new(
                JWKS_URI_FETCH_UNRESTRICTED,
                format!(
                    "{BLOCKED_CIDRS} is not configured but {} RequestAuthentication resource(s) exist ({}). Consider configuring it to restrict JWKS URI fetches to trusted networks.",
                    names.len(),
                    format_names(&names)
                ),
            );
            out.push(inputs.blame(&d.source, m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::format_names;
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    /// analyzers_test.go "blockedCIDRsMissing", "blockedCIDRsConfigured", "blockedCIDRsNoRA".
    #[test]
    fn istio_cases() {
        let a = analyze_str(
            include_str!("../../tests/analyzer_testdata/blocked-cidrs-missing.yaml"),
            "blocked-cidrs-missing.yaml",
        );
        assert_eq!(
            lines(&a, "IST0175"),
            vec!["Warning [IST0175] (Deployment istiod.istio-system) BLOCKED_CIDRS_IN_JWKS_URIS is not configured but 2 RequestAuthentication resource(s) exist (default/jwt-auth, istio-system/jwt-auth-2). Consider configuring it to restrict JWKS URI fetches to trusted networks."]
        );
        for text in [
            include_str!("../../tests/analyzer_testdata/blocked-cidrs-configured.yaml"),
            include_str!("../../tests/analyzer_testdata/blocked-cidrs-no-ra.yaml"),
        ] {
            let a = analyze_str(text, "x.yaml");
            assert!(lines(&a, "IST0175").is_empty(), "{a}");
        }
    }

    #[test]
    fn long_lists_are_cut_at_five() {
        let names: Vec<String> = (1..=7).map(|i| format!("ns/ra{i}")).collect();
        assert_eq!(
            format_names(&names),
            "ns/ra1, ns/ra2, ns/ra3, ns/ra4, ns/ra5, and 2 more"
        );
    }
}
