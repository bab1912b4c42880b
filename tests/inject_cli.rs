//! `trellis inject` on Istio's samples (bookinfo, httpbin, sleep, curl, helloworld) and on
//! tests/inject/kinds.yaml (every workload kind, the annotations the template reads, probes,
//! documents to leave alone), against golden files in tests/golden/inject/.
//!
//! `TRELLIS_UPDATE_GOLDEN=1 cargo test --test inject_cli` rewrites the golden files; review the
//! diff before committing it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn trellis(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trellis");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("trellis output")
}

fn inject(path: &Path, extra: &[&str]) -> String {
    let path = path.to_str().expect("utf-8 path");
    let mut args = vec!["inject", "-f", path];
    args.extend_from_slice(extra);
    let out = trellis(&args, None);
    assert!(
        out.status.success(),
        "trellis inject -f {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn samples() -> Vec<(&'static str, PathBuf)> {
    let istio = trellis_control::shared_dir().join("istio/samples");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    vec![
        (
            "bookinfo",
            istio.join("bookinfo/platform/kube/bookinfo.yaml"),
        ),
        ("httpbin", istio.join("httpbin/httpbin.yaml")),
        ("sleep", istio.join("sleep/sleep.yaml")),
        ("curl", istio.join("curl/curl.yaml")),
        ("helloworld", istio.join("helloworld/helloworld.yaml")),
        ("kinds", here.join("tests/inject/kinds.yaml")),
    ]
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/inject/{name}.yaml"))
}

#[test]
fn samples_inject_as_the_golden_files_say() {
    let update = std::env::var_os("TRELLIS_UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for (name, input) in samples() {
        assert!(input.exists(), "missing input {}", input.display());
        let injected = inject(&input, &[]);
        let golden = golden_path(name);
        if update {
            std::fs::write(&golden, &injected).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (TRELLIS_UPDATE_GOLDEN=1 writes it)",
                golden.display()
            )
        });
        if injected != expected {
            mismatches.push(name);
        }
    }
    assert!(
        mismatches.is_empty(),
        "injection differs from the golden files of {mismatches:?} (TRELLIS_UPDATE_GOLDEN=1 rewrites them)"
    );
}

#[test]
fn injecting_an_injected_file_changes_nothing() {
    for (name, input) in samples() {
        let once = inject(&input, &[]);
        let twice = trellis(&["inject", "-f", "-"], Some(&once));
        assert!(
            twice.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&twice.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&twice.stdout),
            once,
            "{name}: second injection changed it"
        );
        let skipped = String::from_utf8_lossy(&twice.stderr);
        assert!(
            skipped.contains("already has a sidecar"),
            "{name}: {skipped}"
        );
    }
}

/// The documents of a file, split on `---` lines, as text.
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(last) = docs.last_mut() {
            last.push_str(line);
        }
    }
    docs
}

fn kind_of(doc: &str) -> Option<String> {
    let value: serde_yaml::Value = serde_yaml::from_str(doc).ok()?;
    Some(value.get("kind")?.as_str()?.to_string())
}

#[test]
fn services_secrets_config_maps_and_opted_out_pods_pass_through_byte_for_byte() {
    for (name, input) in samples() {
        let original = std::fs::read_to_string(&input).expect("read input");
        let injected = inject(&input, &[]);
        let (before, after) = (documents(&original), documents(&injected));
        assert_eq!(before.len(), after.len(), "{name}: documents added or lost");
        for (b, a) in before.iter().zip(&after) {
            let kind = kind_of(b);
            let workload = matches!(
                kind.as_deref(),
                Some(
                    "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob" | "Pod" | "List"
                )
            );
            if !workload {
                assert_eq!(a, b, "{name}: a {kind:?} document changed");
            }
            let opted_out = b.contains("sidecar.istio.io/inject: \"false\"");
            let host_network = b.contains("hostNetwork: true");
            if workload && (opted_out || host_network) {
                assert_eq!(a, b, "{name}: a workload that must be left alone changed");
            }
            if workload && !(opted_out || host_network) {
                assert!(
                    a.contains("istio-proxy"),
                    "{name}: a workload was not injected:\n{a}"
                );
            }
        }
    }
}

#[test]
fn namespace_labels_decide_as_the_webhook_configuration() {
    let bookinfo = &samples()[0].1;
    let original = std::fs::read_to_string(bookinfo).expect("read bookinfo");
    let disabled = inject(
        bookinfo,
        &["--namespace-labels", "istio-injection=disabled"],
    );
    assert_eq!(
        disabled, original,
        "istio-injection=disabled injects nothing"
    );
    let unlabelled = inject(bookinfo, &["--namespace-labels", "team=books"]);
    assert_eq!(
        unlabelled, original,
        "an unlabelled namespace is not selected"
    );
    let enabled = inject(bookinfo, &["--namespace-labels", "istio-injection=enabled"]);
    assert_eq!(enabled, inject(bookinfo, &[]));
}

#[test]
fn the_sidecar_is_istios_shape() {
    let injected = inject(&samples()[0].1, &[]);
    let docs: Vec<serde_yaml::Value> = documents(&injected)
        .iter()
        .filter_map(|d| serde_yaml::from_str(d).ok())
        .collect();
    let reviews = docs
        .iter()
        .find(|d| d["metadata"]["name"].as_str() == Some("reviews-v1"))
        .expect("reviews-v1");
    let pod = &reviews["spec"]["template"];
    let containers = pod["spec"]["containers"].as_sequence().expect("containers");
    assert_eq!(
        containers[0]["name"].as_str(),
        Some("istio-proxy"),
        "sidecar first (hold)"
    );
    let proxy = &containers[0];
    let ports: Vec<u64> = proxy["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    assert_eq!(ports, [15001, 15006, 15000, 15020, 15021, 15090]);
    assert_eq!(proxy["securityContext"]["runAsUser"].as_u64(), Some(1337));
    assert_eq!(
        proxy["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        proxy["readinessProbe"]["httpGet"]["port"].as_u64(),
        Some(15021)
    );
    assert_eq!(
        proxy["lifecycle"]["postStart"]["exec"]["command"],
        serde_yaml::from_str::<serde_yaml::Value>("[trellis, wait-ready]").expect("yaml")
    );
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["args"][0].as_str(), Some("init"));
    assert_eq!(init["securityContext"]["runAsUser"].as_u64(), Some(0));
    let token = pod["spec"]["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some("istio-token"))
        .expect("istio-token volume");
    assert_eq!(
        token["projected"]["sources"][0]["serviceAccountToken"]["audience"].as_str(),
        Some("istio-ca")
    );
    // The channel is TLS: the mesh roots from the ConfigMap istiod (here trellis control
    // --kube) writes into every namespace, mounted where Istio's injection template mounts
    // them, and the token above sent with the first CSR.
    let roots = pod["spec"]["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some("istiod-ca-cert"))
        .expect("istiod-ca-cert volume");
    assert_eq!(
        roots["configMap"]["name"].as_str(),
        Some("istio-ca-root-cert")
    );
    let mounts = proxy["volumeMounts"].as_sequence().expect("mounts");
    let mounted = |name: &str| {
        mounts
            .iter()
            .find(|m| m["name"].as_str() == Some(name))
            .and_then(|m| m["mountPath"].as_str())
            .map(str::to_string)
    };
    assert_eq!(
        mounted("istiod-ca-cert").as_deref(),
        Some("/var/run/secrets/istio")
    );
    assert_eq!(
        mounted("istio-token").as_deref(),
        Some("/var/run/secrets/tokens")
    );
    let args: Vec<&str> = proxy["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(!args.contains(&"--insecure-plaintext"), "{args:?}");
    let after = |flag: &str| {
        args.iter()
            .position(|a| *a == flag)
            .and_then(|i| args.get(i + 1))
            .copied()
    };
    assert_eq!(
        after("--control-plane-ca"),
        Some("/var/run/secrets/istio/root-cert.pem")
    );
    assert_eq!(
        after("--control-plane-token"),
        Some("/var/run/secrets/tokens/istio-token")
    );
    assert_eq!(
        pod["metadata"]["labels"]["security.istio.io/tlsMode"].as_str(),
        Some("istio")
    );
    assert!(pod["metadata"]["annotations"]["sidecar.istio.io/status"].is_string());
}

#[test]
fn bad_input_is_refused_with_the_document_named() {
    let out = trellis(
        &["inject", "-f", "-"],
        Some("kind: Service\n---\nkind: [\n"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("document 2"), "{err}");
    let bad_annotation = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {readiness.status.sidecar.istio.io/periodSeconds: soon}\nspec:\n  containers: [{name: a}]\n";
    let out = trellis(&["inject", "-f", "-"], Some(bad_annotation));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("periodSeconds") && err.contains("soon"),
        "{err}"
    );
    let missing = trellis(&["inject", "-f", "/nonexistent/app.yaml"], None);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/app.yaml"));
}

#[test]
fn the_sidecars_config_annotation_is_a_config_trellis_proxy_accepts() {
    let injected = inject(&samples()[0].1, &[]);
    let dir = std::env::temp_dir().join(format!("trellis-inject-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut checked = 0;
    for doc in documents(&injected) {
        let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(&doc) else {
            continue;
        };
        let annotations = &value["spec"]["template"]["metadata"]["annotations"];
        let Some(config) = annotations["sidecar.trellis.dev/proxyConfig"].as_str() else {
            continue;
        };
        // What the downward API volume puts at /etc/istio/pod/trellis-proxy.yaml.
        let file = dir.join(format!("{checked}.yaml"));
        std::fs::write(&file, config).expect("write config");
        let out = trellis(
            &["proxy", "--check", "--config", file.to_str().expect("path")],
            None,
        );
        assert!(
            out.status.success(),
            "{config}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = String::from_utf8_lossy(&out.stdout);
        assert!(
            summary.contains("2 listener(s)") && summary.contains("(0 error(s))"),
            "{summary}"
        );
        checked += 1;
    }
    assert_eq!(checked, 6, "bookinfo has six Deployments");
    let _ = std::fs::remove_dir_all(&dir);
}
