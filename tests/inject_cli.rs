//! `trellis inject` on Istio's samples (bookinfo, httpbin, sleep, curl, helloworld) and on
//! tests/inject/kinds.yaml (every workload kind, the annotations the template reads, probes,
//! documents to leave alone), against golden files in tests/golden/inject/.
//!
//! Native sidecars (`--native-sidecars true`, or `ENABLE_NATIVE_SIDECARS=true` as istioctl
//! kube-inject reads it) have golden files of their own, `*.native.yaml`, for bookinfo, a Job
//! (tests/inject/job.yaml) and kinds.yaml; every golden file validates strictly against the
//! Kubernetes 1.33 schemas (Python `kubernetes-validate`, tests/inject/validate_k8s.py).
//!
//! `TRELLIS_UPDATE_GOLDEN=1 cargo test --test inject_cli` rewrites the golden files; review the
//! diff before committing it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn trellis(args: &[&str], stdin: Option<&str>) -> Output {
    trellis_env(args, stdin, None)
}

/// `trellis` with `ENABLE_NATIVE_SIDECARS` set to `native_env`, or unset (whatever the test
/// runner's environment says).
fn trellis_env(args: &[&str], stdin: Option<&str>, native_env: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trellis"));
    command.env_remove(NATIVE_ENV);
    if let Some(value) = native_env {
        command.env(NATIVE_ENV, value);
    }
    let mut child = command
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

const NATIVE_ENV: &str = "ENABLE_NATIVE_SIDECARS";

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

/// The inputs of the native golden files: bookinfo, a Job, and every kind.
fn native_samples() -> Vec<(&'static str, PathBuf)> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let all = samples();
    vec![
        ("bookinfo", all[0].1.clone()),
        ("job", here.join("tests/inject/job.yaml")),
        ("kinds", here.join("tests/inject/kinds.yaml")),
    ]
}

#[test]
fn samples_inject_as_the_golden_files_say() {
    check_goldens(samples(), &[], "");
}

#[test]
fn native_sidecars_inject_as_their_golden_files_say() {
    check_goldens(native_samples(), &["--native-sidecars", "true"], ".native");
}

/// Inject each input with `extra` and compare with `tests/golden/inject/NAME{suffix}.yaml`.
fn check_goldens(inputs: Vec<(&'static str, PathBuf)>, extra: &[&str], suffix: &str) {
    let update = std::env::var_os("TRELLIS_UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for (name, input) in inputs {
        assert!(input.exists(), "missing input {}", input.display());
        let injected = inject(&input, extra);
        let golden = golden_path(&format!("{name}{suffix}"));
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

/// `ENABLE_NATIVE_SIDECARS` as istioctl kube-inject reads it (`IntoObject` in
/// pkg/kube/inject/inject.go: no kube client, so only an explicit `true`; the value parsed as
/// `EnableNativeSidecars` in pilot/pkg/features/pilot.go), and the flag over it.
#[test]
fn only_an_explicit_true_turns_native_sidecars_on_without_a_cluster() {
    let bookinfo = &samples()[0].1;
    let path = bookinfo.to_str().expect("utf-8 path");
    let run = |extra: &[&str], env: Option<&str>| {
        let mut args = vec!["inject", "-f", path];
        args.extend_from_slice(extra);
        let out = trellis_env(&args, None, env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).expect("utf-8"),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let classic = std::fs::read_to_string(golden_path("bookinfo")).expect("golden");
    let native = std::fs::read_to_string(golden_path("bookinfo.native")).expect("native golden");
    assert_ne!(classic, native);
    assert_eq!(
        run(&[], Some("true")).0,
        native,
        "ENABLE_NATIVE_SIDECARS=true"
    );
    for env in [None, Some("auto"), Some("false")] {
        assert_eq!(run(&[], env).0, classic, "ENABLE_NATIVE_SIDECARS={env:?}");
    }
    // Istio reads an unknown value as false, and says so.
    let (out, warning) = run(&[], Some("yes"));
    assert_eq!(out, classic);
    assert!(
        warning.contains("Unknown value for ENABLE_NATIVE_SIDECARS: yes, defaulting to false"),
        "{warning}"
    );
    assert_eq!(
        run(&["--native-sidecars", "false"], Some("true")).0,
        classic
    );
    assert_eq!(run(&["--native-sidecars", "auto"], Some("true")).0, classic);
    assert_eq!(run(&["--native-sidecars", "true"], Some("false")).0, native);
    let bad = trellis(&["inject", "-f", path, "--native-sidecars", "yes"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected true, false or auto"));
}

#[test]
fn injecting_a_natively_injected_file_changes_nothing() {
    for (name, input) in native_samples() {
        let once = inject(&input, &["--native-sidecars", "true"]);
        for mode in ["true", "false"] {
            let twice = trellis(
                &["inject", "-f", "-", "--native-sidecars", mode],
                Some(&once),
            );
            assert!(twice.status.success(), "{name}");
            assert_eq!(
                String::from_utf8_lossy(&twice.stdout),
                once,
                "{name}: a second injection (native {mode}) changed it"
            );
            let skipped = String::from_utf8_lossy(&twice.stderr);
            assert!(
                skipped.contains("already has a sidecar"),
                "{name}: {skipped}"
            );
        }
    }
}

fn pod_template<'d>(docs: &'d [serde_yaml::Value], name: &str) -> &'d serde_yaml::Value {
    let doc = docs
        .iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{name}"));
    match doc["kind"].as_str() {
        Some("CronJob") => &doc["spec"]["jobTemplate"]["spec"]["template"],
        _ => &doc["spec"]["template"],
    }
}

fn container_names(list: &serde_yaml::Value) -> Vec<&str> {
    list.as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The Job of tests/inject/job.yaml as Istio injects a native sidecar
/// (pkg/kube/inject/testdata/inject/native-sidecar.yaml.injected): `istio-init`, then
/// `istio-proxy` with `restartPolicy: Always` and the startupProbe, then the Job's own init
/// container; no postStart hold; the status lists both as init containers. The CronJob's
/// `sidecar.istio.io/nativeSidecar: "false"` keeps the classic form.
#[test]
fn the_native_form_is_istios() {
    let injected = inject(&native_samples()[1].1, &["--native-sidecars", "true"]);
    let docs: Vec<serde_yaml::Value> = documents(&injected)
        .iter()
        .filter_map(|d| serde_yaml::from_str(d).ok())
        .collect();
    let job = pod_template(&docs, "fetch");
    let inits = &job["spec"]["initContainers"];
    assert_eq!(
        container_names(inits),
        ["istio-init", "istio-proxy", "wait-for-httpbin"]
    );
    assert_eq!(container_names(&job["spec"]["containers"]), ["fetch"]);
    let proxy = &inits[1];
    assert_eq!(proxy["restartPolicy"].as_str(), Some("Always"));
    // No postStart hold; Istio's preStop drain (injection-template.yaml's `$nativeSidecar`
    // branch: `pilot-agent request --debug-port=15020 POST drain`).
    assert!(proxy["lifecycle"]["postStart"].is_null(), "{proxy:?}");
    let hook: Vec<&str> = (proxy["lifecycle"]["preStop"]["exec"]["command"].as_sequence())
        .map(|c| c.iter().filter_map(|a| a.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        hook,
        ["trellis", "request", "--debug-port=15020", "POST", "drain"]
    );
    let startup = &proxy["startupProbe"];
    assert_eq!(startup["httpGet"]["port"].as_u64(), Some(15021));
    assert_eq!(startup["httpGet"]["path"].as_str(), Some("/healthz/ready"));
    assert_eq!(startup["periodSeconds"].as_u64(), Some(1));
    assert_eq!(startup["timeoutSeconds"].as_u64(), Some(3));
    assert_eq!(startup["failureThreshold"].as_u64(), Some(600));
    assert_eq!(
        job["metadata"]["annotations"]["sidecar.istio.io/status"].as_str(),
        Some(
            r#"{"initContainers":["istio-init","istio-proxy"],"containers":null,"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"imagePullSecrets":null,"revision":"default"}"#
        )
    );
    assert_eq!(
        job["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str(),
        Some("fetch")
    );
    let cron = pod_template(&docs, "fetch-nightly");
    assert_eq!(
        container_names(&cron["spec"]["containers"]),
        ["istio-proxy", "fetch"]
    );
    assert_eq!(
        container_names(&cron["spec"]["initContainers"]),
        ["istio-init"]
    );
}

/// Every golden file, classic and native, is valid Kubernetes 1.33 (the first release with
/// native sidecars on by default and GA) for the strict schema validator.
#[test]
fn golden_files_validate_against_the_kubernetes_schemas() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut goldens: Vec<PathBuf> = std::fs::read_dir(here.join("tests/golden/inject"))
        .expect("golden dir")
        .map(|e| e.expect("entry").path())
        .collect();
    goldens.sort();
    assert!(goldens
        .iter()
        .any(|p| p.to_string_lossy().ends_with(".native.yaml")));
    let out = Command::new("python3")
        .arg(here.join("tests/inject/validate_k8s.py"))
        .arg("1.33.0")
        .args(&goldens)
        .output()
        .expect("python3 is required (scripts/test.sh installs it and kubernetes-validate)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "validation failed:\n{report}");
    assert!(report.contains(" 0 failures"), "{report}");
}
