//! `trellis install` / `uninstall` and the checked-in Kustomize base (deploy/base): the base is
//! exactly what the generator writes; every manifest validates, strictly, against the
//! Kubernetes OpenAPI schemas (Python `kubernetes-validate`), and Istio's samples validate
//! against both Istio's CRD schemas and the ones generated from Trellis's Rust types
//! (`jsonschema`), which refuse broken resources (tests/install/validate.py).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The Kubernetes version the manifests are checked against.
const KUBERNETES_VERSION: &str = "1.33.0";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn trellis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .output()
        .expect("run trellis")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trellis-install-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn base_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/base"))
        .expect("deploy/base")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

#[test]
fn deploy_base_is_exactly_what_the_generator_writes() {
    let dir = scratch("base");
    let out = trellis(&["install", "--kustomize-base", dir.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut generated: Vec<String> = std::fs::read_dir(&dir)
        .expect("generated")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    generated.sort();
    let checked_in: Vec<String> = base_files()
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        generated, checked_in,
        "deploy/base has other files than the generator writes"
    );
    for name in generated {
        let fresh = std::fs::read(dir.join(&name)).expect("generated file");
        let kept = std::fs::read(repo().join("deploy/base").join(&name)).expect("checked-in file");
        assert!(
            fresh == kept,
            "deploy/base/{name} is stale: run `cargo run -- install --kustomize-base deploy/base`"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `trellis install --ca-dir DIR` into `dir/install.yaml`.
fn install_into(dir: &Path) -> String {
    let ca = dir.join("ca");
    let out = trellis(&["install", "--ca-dir", ca.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    std::fs::write(dir.join("install.yaml"), &text).expect("write install.yaml");
    text
}

#[test]
fn manifests_validate_against_kubernetes_and_istio_schemas() {
    let dir = scratch("validate");
    install_into(&dir);
    let shared = trellis_control::shared_dir().join("istio");
    let mut command = Command::new("python3");
    command
        .arg(repo().join("tests/install/validate.py"))
        .arg(KUBERNETES_VERSION)
        .arg(shared.join("crds/customresourcedefinitions.gen.yaml"));
    for file in base_files() {
        if file.file_name().is_some_and(|n| n != "kustomization.yaml") {
            command.arg(file);
        }
    }
    command.arg(dir.join("install.yaml")).arg("--");
    let mut samples: Vec<PathBuf> = std::fs::read_dir(shared.join("samples/bookinfo/networking"))
        .expect("bookinfo networking samples")
        .map(|e| e.expect("entry").path())
        .collect();
    samples.sort();
    command.args(samples);
    command.arg(repo().join("tests/install/security-samples.yaml"));
    let out = command
        .output()
        .expect("python3 is required (scripts/test.sh installs it and kubernetes-validate)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "validation failed:\n{report}");
    assert!(report.contains(" 0 failures"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn documents(text: &str) -> Vec<serde_yaml::Value> {
    text.split("\n---\n")
        .map(|d| serde_yaml::from_str(d).expect("YAML document"))
        .collect()
}

#[test]
fn install_carries_the_ca_and_a_webhook_trusting_its_root_and_keeps_it_on_reinstall() {
    let dir = scratch("ca");
    let first = install_into(&dir);
    let docs = documents(&first);
    let secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret")
        .expect("the cacerts secret");
    assert_eq!(secret["metadata"]["name"], "cacerts");
    let root = secret["data"]["root-cert.pem"]
        .as_str()
        .expect("root-cert.pem");
    let webhook = docs
        .iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .expect("webhook configuration");
    for hook in webhook["webhooks"].as_sequence().expect("webhooks") {
        assert_eq!(hook["clientConfig"]["caBundle"].as_str(), Some(root));
        assert_eq!(hook["clientConfig"]["service"]["path"], "/inject");
    }
    let on_disk = std::fs::read_to_string(dir.join("ca/root-cert.pem")).expect("CA written");
    assert!(!on_disk.is_empty());
    let second = install_into(&dir);
    assert_eq!(
        first, second,
        "a second install with the same --ca-dir changes nothing"
    );
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    let position = |k: &str| kinds.iter().position(|x| *x == k).expect(k);
    assert!(position("CustomResourceDefinition") < position("Deployment"));
    assert!(position("Deployment") < position("MutatingWebhookConfiguration"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads only, but for the two writes istiod's ClusterRole makes too
/// (manifests/charts/istio-control/istio-discovery/templates/clusterrole.yaml): ConfigMaps
/// (the `istio-ca-root-cert` in every namespace: get, create, update) and TokenReviews
/// (create, to check the tokens sidecars send with their first CSR). No Secret, no wildcard.
/// ConfigMaps are listed and watched by one name only, the mesh config's `istio`.
/// Nodes are read with `list` and `watch` only: the injection webhook's
/// `ENABLE_NATIVE_SIDECARS=auto` watches their kubelet versions (`DetectNativeSidecar` in
/// pkg/kube/inject/webhook.go, over istiod's Node informer), and an informer never `get`s.
#[test]
fn the_cluster_role_reads_and_writes_only_root_configmaps_and_tokenreviews() {
    let rbac = std::fs::read_to_string(repo().join("deploy/base/rbac.yaml")).expect("rbac.yaml");
    let role = documents(&rbac)
        .into_iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("ClusterRole");
    let mut writes = Vec::new();
    let mut nodes = 0;
    for rule in role["rules"].as_sequence().expect("rules") {
        let verbs: Vec<&str> = rule["verbs"]
            .as_sequence()
            .expect("verbs")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let resources: Vec<&str> = rule["resources"]
            .as_sequence()
            .expect("resources")
            .iter()
            .filter_map(|r| r.as_str())
            .collect();
        assert!(
            resources.iter().all(|r| *r != "*" && *r != "secrets"),
            "{rule:?}"
        );
        let names: Vec<&str> = (rule["resourceNames"].as_sequence().into_iter().flatten())
            .filter_map(|n| n.as_str())
            .collect();
        if resources == ["nodes"] {
            assert_eq!(verbs, ["list", "watch"], "{rule:?}");
            nodes += 1;
        } else if resources == ["configmaps"] && verbs.contains(&"list") {
            assert_eq!(names, ["istio"], "ConfigMaps are listed by name: {rule:?}");
            assert_eq!(verbs, ["list", "watch"], "{rule:?}");
        } else if verbs != ["get", "list", "watch"] {
            writes.push((resources, verbs));
        }
    }
    assert_eq!(nodes, 1, "one rule for nodes");
    assert_eq!(
        writes,
        [
            (vec!["configmaps"], vec!["get", "create", "update"]),
            (vec!["tokenreviews"], vec!["create"]),
        ]
    );
}

/// The sidecars' channel is TLS in a cluster: the control plane runs without
/// `--insecure-plaintext`, and with `--kube` (the ConfigMaps and the TokenReviews).
#[test]
fn the_control_plane_serves_sidecars_over_tls() {
    let text = std::fs::read_to_string(repo().join("deploy/base/control-plane.yaml"))
        .expect("control-plane.yaml");
    let deployment = documents(&text)
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(!args.contains(&"--insecure-plaintext"), "{args:?}");
    assert!(args.contains(&"--kube"), "{args:?}");
}

#[test]
fn uninstall_removes_the_webhook_first_and_keeps_crds_unless_purged() {
    let out = trellis(&["uninstall"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let docs = documents(&text);
    assert_eq!(docs[0]["kind"], "MutatingWebhookConfiguration");
    assert!(docs.iter().all(|d| d["kind"] != "CustomResourceDefinition"));
    let purge = String::from_utf8(trellis(&["uninstall", "--purge"]).stdout).expect("utf-8");
    assert_eq!(purge.matches("kind: CustomResourceDefinition").count(), 8);
}

#[test]
fn apply_without_kubectl_says_what_is_missing() {
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["uninstall", "--apply"])
        .env("PATH", "/nonexistent")
        .output()
        .expect("run trellis");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kubectl is not on PATH"), "{err}");
}
