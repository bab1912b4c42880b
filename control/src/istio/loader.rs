//! Reading Istio resources from YAML files and directories.
//!
//! Each document is read twice: once as an untyped value, to learn its `apiVersion`, `kind` and
//! name (so every error can name the resource), and once into its typed struct through
//! `serde_ignored` (every key the struct does not know becomes a warning with its field path)
//! and `serde_path_to_error` (a wrong type or invalid value becomes an error with its field path
//! and line). Documents of other kinds (Service, Deployment ...) are skipped with a note, since
//! Istio samples mix them with Istio resources.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::common::Document;
use super::{Resource, ResourceSet, Source, DEFAULT_NAMESPACE};
use crate::diag::{ConfigError, Diagnostic};

const NETWORKING_GROUP: &str = "networking.istio.io";
const NETWORKING_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];
const SECURITY_GROUP: &str = "security.istio.io";
const SECURITY_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// Read every `*.yaml` / `*.yml` file under `dir` (recursively, in path order).
pub fn load_dir(dir: &Path) -> Result<ResourceSet, ConfigError> {
    let mut files = Vec::new();
    collect_yaml_files(dir, &mut files)?;
    files.sort();
    let mut set = ResourceSet::default();
    for file in files {
        set.extend(load_file(&file)?);
    }
    Ok(set)
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ConfigError> {
    let io_err = |source| ConfigError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        if path.is_dir() {
            collect_yaml_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Read one YAML file (possibly several `---` documents).
pub fn load_file(path: &Path) -> Result<ResourceSet, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(&text, &path.display().to_string())
}

/// Parse YAML text; `file` is the name used in diagnostics and errors.
pub fn parse_str(text: &str, file: &str) -> Result<ResourceSet, ConfigError> {
    let mut set = ResourceSet::default();
    let untyped = serde_yaml::Deserializer::from_str(text);
    let typed = serde_yaml::Deserializer::from_str(text);
    for (index, (untyped_doc, typed_doc)) in untyped.zip(typed).enumerate() {
        let value =
            serde_yaml::Value::deserialize(untyped_doc).map_err(|e| ConfigError::Syntax {
                file: file.to_string(),
                line: e.location().map(|l| l.line()),
                message: strip_location(&e.to_string()),
            })?;
        if value.is_null() {
            continue;
        }
        read_document(&value, typed_doc, file, index, &mut set)?;
    }
    Ok(set)
}

/// Read one document already parsed (`value`), e.g. an object from the Kubernetes API: the
/// same checks and warnings as a document of a file, without line numbers.
pub fn parse_value(
    value: &serde_yaml::Value,
    file: &str,
    index: usize,
) -> Result<ResourceSet, ConfigError> {
    let mut set = ResourceSet::default();
    if !value.is_null() {
        read_document(value, value, file, index, &mut set)?;
    }
    Ok(set)
}

fn str_at<'a>(value: &'a serde_yaml::Value, path: &[&str]) -> Option<&'a str> {
    let mut v = value;
    for key in path {
        v = v.get(*key)?;
    }
    v.as_str()
}

/// Read one document: `value` untyped (to classify it), `typed` the same document as a
/// deserializer (YAML text, which knows lines, or the value itself).
pub(crate) fn read_document<'de, D>(
    value: &serde_yaml::Value,
    typed: D,
    file: &str,
    index: usize,
    set: &mut ResourceSet,
) -> Result<(), ConfigError>
where
    D: serde::Deserializer<'de, Error = serde_yaml::Error>,
{
    let (Some(api_version), Some(kind)) =
        (str_at(value, &["apiVersion"]), str_at(value, &["kind"]))
    else {
        set.diagnostics.push(
            Diagnostic::info(format!(
                "document {index} has no apiVersion/kind; not a Kubernetes resource, skipped"
            ))
            .file(file),
        );
        return Ok(());
    };
    let source = Source {
        file: file.to_string(),
        kind: kind.to_string(),
        namespace: str_at(value, &["metadata", "namespace"])
            .filter(|ns| !ns.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string(),
        name: str_at(value, &["metadata", "name"])
            .map(str::to_string)
            .unwrap_or_else(|| format!("<document {index}>")),
    };
    if (api_version, kind) == ("v1", "Secret") {
        // TLS credentials for gateways (`credentialName`): kept, never pushed to sidecars.
        let secret =
            super::secret::TlsSecret::from_value(value, source.clone()).map_err(|message| {
                ConfigError::Invalid {
                    file: file.to_string(),
                    line: None,
                    resource: source.to_string(),
                    field: "data".to_string(),
                    message,
                }
            })?;
        set.secrets.push(secret);
        return Ok(());
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let versions: &[&str] = match group {
        NETWORKING_GROUP => &NETWORKING_VERSIONS,
        SECURITY_GROUP => &SECURITY_VERSIONS,
        _ => &[],
    };
    if versions.is_empty() {
        let note = if group.ends_with(".istio.io") {
            Diagnostic::warning(format!(
                "{api_version} {kind} is not supported by Trellis yet; skipped"
            ))
        } else {
            Diagnostic::info(format!(
                "not an Istio networking resource ({api_version}); skipped"
            ))
        };
        set.diagnostics
            .push(note.file(file).resource(source.to_string()));
        return Ok(());
    }
    if !versions.contains(&version) {
        return Err(ConfigError::Invalid {
            file: file.to_string(),
            line: None,
            resource: source.to_string(),
            field: "apiVersion".to_string(),
            message: format!(
                "unsupported version {version:?} of {group} (expected one of {})",
                versions.join(", ")
            ),
        });
    }
    if str_at(value, &["metadata", "name"]).is_none_or(str::is_empty) {
        return Err(ConfigError::Invalid {
            file: file.to_string(),
            line: None,
            resource: source.to_string(),
            field: "metadata.name".to_string(),
            message: "missing (every resource needs a name)".to_string(),
        });
    }
    match (group, kind) {
        (SECURITY_GROUP, "PeerAuthentication") => {
            set.peer_authentications
                .push(typed_resource(typed, source, &mut set.diagnostics)?)
        }
        (SECURITY_GROUP, "AuthorizationPolicy") => {
            set.authorization_policies
                .push(typed_resource(typed, source, &mut set.diagnostics)?)
        }
        (SECURITY_GROUP, "RequestAuthentication") => set
            .request_authentications
            .push(typed_resource(typed, source, &mut set.diagnostics)?),
        (SECURITY_GROUP, other) => set.diagnostics.push(
            Diagnostic::warning(format!(
                "{SECURITY_GROUP} kind {other} is not supported by Trellis yet; skipped"
            ))
            .file(file)
            .resource(source.to_string()),
        ),
        (_, "VirtualService") => {
            set.virtual_services
                .push(typed_resource(typed, source, &mut set.diagnostics)?)
        }
        (_, "DestinationRule") => {
            set.destination_rules
                .push(typed_resource(typed, source, &mut set.diagnostics)?)
        }
        (_, "ServiceEntry") => {
            set.service_entries
                .push(typed_resource(typed, source, &mut set.diagnostics)?)
        }
        (_, "Gateway") => set
            .gateways
            .push(typed_resource(typed, source, &mut set.diagnostics)?),
        (_, "Sidecar") => set
            .sidecars
            .push(typed_resource(typed, source, &mut set.diagnostics)?),
        (_, other) => set.diagnostics.push(
            Diagnostic::warning(format!(
                "{NETWORKING_GROUP} kind {other} is not supported by Trellis yet; skipped"
            ))
            .file(file)
            .resource(source.to_string()),
        ),
    }
    Ok(())
}

/// Deserialize one document into `Document<S>`, reporting unknown fields and failing with the
/// field path on a wrong type or value.
fn typed_resource<'de, S, D>(
    de: D,
    source: Source,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<Resource<S>, ConfigError>
where
    S: DeserializeOwned + Default,
    D: serde::Deserializer<'de, Error = serde_yaml::Error>,
{
    let mut unknown: Vec<String> = Vec::new();
    let result: Result<Document<S>, _> = {
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(format_path(&path));
        let ignoring = serde_ignored::Deserializer::new(de, &mut record);
        serde_path_to_error::deserialize(ignoring)
    };
    let doc = result.map_err(|e| ConfigError::Invalid {
        file: source.file.clone(),
        line: e.inner().location().map(|l| l.line()),
        resource: source.to_string(),
        field: e.path().to_string(),
        message: strip_location(&e.inner().to_string()),
    })?;
    for field in unknown {
        diagnostics.push(
            Diagnostic::warning("unknown field, ignored")
                .file(source.file.clone())
                .resource(source.to_string())
                .field(field),
        );
    }
    Ok(Resource {
        source,
        meta: doc.metadata,
        spec: doc.spec,
    })
}

/// `spec.http[0].foo`, the same notation `serde_path_to_error` uses.
pub(crate) fn format_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", format_path(parent)),
        Path::Map { parent, key } => {
            let p = format_path(parent);
            if p.is_empty() {
                key.to_string()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => format_path(parent),
    }
}

/// serde_yaml appends " at line L column C"; we report the line separately.
pub(crate) fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      wieght: 10
"#;

    #[test]
    fn reads_virtual_service_and_reports_unknown_field() {
        let set = parse_str(VS, "vs.yaml").unwrap();
        assert_eq!(set.virtual_services.len(), 1);
        let vs = &set.virtual_services[0];
        assert_eq!(vs.source.to_string(), "VirtualService shop/reviews");
        assert_eq!(
            vs.spec.http[0].route[0].destination.subset.as_deref(),
            Some("v1")
        );
        assert_eq!(set.diagnostics.len(), 1, "{:?}", set.diagnostics);
        let d = &set.diagnostics[0];
        assert_eq!(d.field.as_deref(), Some("spec.http[0].route[0].wieght"));
        assert_eq!(d.file.as_deref(), Some("vs.yaml"));
        assert_eq!(d.resource.as_deref(), Some("VirtualService shop/reviews"));
    }

    #[test]
    fn wrong_type_is_an_error_with_path_and_line() {
        let text = "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n  hosts: [r]\n  http:\n  - timeout: soon\n";
        let err = parse_str(text, "bad.yaml").unwrap_err();
        let ConfigError::Invalid {
            file,
            line,
            resource,
            field,
            message,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(file, "bad.yaml");
        assert_eq!(resource, "VirtualService default/r");
        assert_eq!(field, "spec.http[0].timeout");
        assert_eq!(*line, Some(8));
        assert!(message.contains("invalid duration"), "{message}");
        let shown = err.to_string();
        assert!(
            shown.starts_with("bad.yaml:8: VirtualService default/r: field `spec.http[0].timeout`"),
            "{shown}"
        );
    }

    #[test]
    fn line_numbers_count_from_the_start_of_the_file() {
        let text = format!("{VS}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: b}}\nspec:\n  hosts: [b]\n  http:\n  - timeout: 5 parsecs\n");
        let bad_line = text.lines().position(|l| l.contains("parsecs")).unwrap() + 1;
        let err = parse_str(&text, "multi.yaml").unwrap_err();
        let ConfigError::Invalid { line, resource, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*line, Some(bad_line));
        assert_eq!(resource, "VirtualService default/b");
    }

    #[test]
    fn invalid_enum_value_is_an_error() {
        let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: d\n  trafficPolicy:\n    loadBalancer:\n      simple: FASTEST\n";
        let err = parse_str(text, "dr.yaml").unwrap_err().to_string();
        assert!(
            err.contains("spec.trafficPolicy.loadBalancer.simple"),
            "{err}"
        );
        assert!(err.contains("FASTEST"), "{err}");
    }

    #[test]
    fn skips_non_istio_kinds_with_a_note_and_reads_multi_documents() {
        let text = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: reviews}}\nspec: {{}}\n---\n{VS}\n---\n");
        let set = parse_str(&text, "all.yaml").unwrap();
        assert_eq!(set.virtual_services.len(), 1);
        assert!(set
            .diagnostics
            .iter()
            .any(|d| d.message.contains("not an Istio networking resource")));
    }

    #[test]
    fn syntax_error_names_file() {
        let err = parse_str("a: [unclosed", "x.yaml").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        assert!(err.to_string().starts_with("x.yaml"));
    }

    #[test]
    fn missing_name_is_an_error() {
        let text = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {}\nspec: {}\n";
        let err = parse_str(text, "g.yaml").unwrap_err().to_string();
        assert!(err.contains("metadata.name"), "{err}");
    }
}
