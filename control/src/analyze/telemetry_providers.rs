//! Telemetry providers against the mesh config: IST0157 InvalidTelemetryProvider and IST0002
//! Deprecated (the Lightstep provider).
//!
//! An `accessLogging` entry of a Telemetry that names no provider and is not `disabled` falls
//! back to the mesh config's `defaultProviders.accessLogging`; when that is empty (Istio's
//! default) the entry does nothing, which Istio's `telemetry.ProviderAnalyzer` (`providers.go`)
//! reports once per such entry. And a `tracing` provider that the mesh config defines as
//! `lightstep` is deprecated in favour of OpenTelemetry: `telemetry.LightstepAnalyzer`
//! (`lightstep.go`) reports each use. Trellis does not serve Telemetry; the documents are read
//! as written.

use serde_yaml::Value;

use super::codes::{DEPRECATED, INVALID_TELEMETRY_PROVIDER};
use super::input::Inputs;
use super::message::{go_quote, Message};
use super::object::{seq_at, str_at, Object};

/// Run both checks.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let telemetries: Vec<&Object> = inputs
        .objects_of("Telemetry")
        .filter(|o| o.api_version.starts_with("telemetry.istio.io/"))
        .collect();
    invalid_providers(inputs, &telemetries, out);
    lightstep(inputs, &telemetries, out);
}

/// `ProviderAnalyzer.Analyze`.
fn invalid_providers(inputs: &Inputs, telemetries: &[&Object], out: &mut Vec<Message>) {
    let mesh = &inputs.mesh.config;
    let defaults = mesh
        .at(&["defaultProviders", "accessLogging"])
        .and_then(Value::as_sequence)
        .is_some_and(|p| !p.is_empty());
    if defaults {
        return;
    }
    for t in telemetries {
        for (i, logging) in t.seq_at(&["spec", "accessLogging"]).iter().enumerate() {
            let disabled = logging.get("disabled").and_then(Value::as_bool) == Some(true);
            if disabled || !seq_at(logging, &["providers"]).is_empty() {
                continue;
            }
            let m = Message::new(
                INVALID_TELEMETRY_PROVIDER,
                format!(
                    "The Telemetry {} in namespace {} with empty providers will be ignored.",
                    t.name(),
                    go_quote(t.namespace())
                ),
            );
            out.push(inputs.blame(&t.source, m.field(format!("spec.accessLogging[{i}]"))));
        }
    }
}

/// `LightstepAnalyzer.Analyze`.
fn lightstep(inputs: &Inputs, telemetries: &[&Object], out: &mut Vec<Message>) {
    let names: Vec<&str> = inputs
        .mesh
        .config
        .extension_providers()
        .iter()
        .filter(|p| p.get("lightstep").is_some_and(|l| !l.is_null()))
        .filter_map(|p| str_at(p, &["name"]))
        .collect();
    if names.is_empty() {
        return;
    }
    for t in telemetries {
        for (i, tracing) in t.seq_at(&["spec", "tracing"]).iter().enumerate() {
            for p in seq_at(tracing, &["providers"]) {
                let name = str_at(p, &["name"]).unwrap_or_default();
                if names.contains(&name) {
                    let m = Message::new(
                        DEPRECATED,
                        format!("Deprecated: The Lightstep provider {name} is deprecated, please migrate to OpenTelemetry provider."),
                    );
                    out.push(inputs.blame(&t.source, m.field(format!("spec.tracing[{i}]"))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::tests::lines;
    use crate::analyze::{analyze_resources, Inputs};

    /// analyzers_test.go "Analyze invalid telemetry" (both cases), after `ProviderAnalyzer`.
    #[test]
    fn empty_providers_without_mesh_defaults() {
        let invalid = include_str!("../../tests/analyzer_testdata/telemetry-invalid-provider.yaml");
        let a = analyze_resources(&Inputs::read_str(invalid, "t.yaml"), "t");
        assert_eq!(
            lines(&a, "IST0157"),
            vec![
                r#"Warning [IST0157] (Telemetry mesh-default.istio-system) The Telemetry mesh-default in namespace "istio-system" with empty providers will be ignored."#
            ]
        );
        let disabled =
            include_str!("../../tests/analyzer_testdata/telemetry-disable-provider.yaml");
        let a = analyze_resources(&Inputs::read_str(disabled, "t.yaml"), "t");
        assert!(lines(&a, "IST0157").is_empty(), "{a}");
        // With mesh-wide default access logging providers the entry is not empty after all.
        let mut inputs = Inputs::read_str(invalid, "t.yaml");
        let mesh = "defaultProviders:\n  accessLogging: [envoy]\n";
        inputs.set_mesh_config_str(mesh, "mesh.yaml").unwrap();
        assert!(lines(&analyze_resources(&inputs, "t"), "IST0157").is_empty());
    }

    /// analyzers_test.go "Telemetry Lightstep", after `LightstepAnalyzer`.
    #[test]
    fn lightstep_provider_is_deprecated() {
        let text = include_str!("../../tests/analyzer_testdata/telemetry-lightstep.yaml");
        let mesh =
            include_str!("../../tests/analyzer_testdata/telemetry-lightstep-meshconfig.yaml");
        let a = analyze_resources(&Inputs::read_str(text, "t.yaml"), "t");
        assert!(
            lines(&a, "IST0002").is_empty(),
            "no mesh config, no lightstep: {a}"
        );
        let mut inputs = Inputs::read_str(text, "t.yaml");
        inputs.set_mesh_config_str(mesh, "mesh.yaml").unwrap();
        assert_eq!(
            lines(&analyze_resources(&inputs, "t"), "IST0002"),
            vec!["Warning [IST0002] (Telemetry mesh-default.istio-system) Deprecated: The Lightstep provider lightstep is deprecated, please migrate to OpenTelemetry provider."]
        );
    }
}
