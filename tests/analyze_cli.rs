//! End-to-end: the `trellis analyze` binary on Istio's bookinfo samples and on a broken
//! VirtualService, checking output, JSON and istioctl's exit statuses (0 clean, 79 issues at or
//! above the threshold, 1 unreadable input).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn trellis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .output()
        .expect("run the trellis binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A fresh directory under the target dir's temp area, removed at the end of the test.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("trellis-analyze-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.0.join(file), text).expect("write temp file");
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn bookinfo_samples_report_istio_messages_and_exit_79() {
    let dir = trellis_control::shared_dir().join("istio/samples/bookinfo");
    let out = trellis(&["analyze", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(79), "{out:?}");
    let text = stdout(&out);
    // The networking samples are alternatives for the same hosts: together they conflict.
    assert!(
        text.lines().any(|l| l.starts_with("Error [IST0109] (VirtualService reviews.default ")
            && l.contains("associated with mesh gateway define the same host */reviews.default.svc.cluster.local")),
        "{text}"
    );
    // Istio's own fault-injection sample has a rule after a catch-all.
    assert!(
        text.contains("Warning [IST0130] (VirtualService details.default ")
            && text.contains(
                "VirtualService rule #1 not used (only the last rule can have no matches)."
            ),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Analyzers found issues"));
}

/// bookinfo's workloads with the sample rules copied into a directory.
fn bookinfo_with(rules: &str) -> (TempDir, std::process::Output) {
    let samples = trellis_control::shared_dir().join("istio/samples/bookinfo");
    let dir = TempDir::new("clean");
    for (from, to) in [
        ("platform/kube/bookinfo.yaml", "bookinfo.yaml"),
        (rules, "rules.yaml"),
        (
            "networking/virtual-service-reviews-80-20.yaml",
            "reviews.yaml",
        ),
    ] {
        let text = std::fs::read_to_string(samples.join(from)).expect("read sample");
        dir.write(to, &text);
    }
    let out = trellis(&["analyze", "--dir", dir.path().to_str().unwrap()]);
    (dir, out)
}

#[test]
fn one_consistent_bookinfo_setup_is_clean() {
    let (dir, out) = bookinfo_with("networking/destination-rule-reviews.yaml");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!(
            "\u{2714} No validation issues found when analyzing {}.\n",
            dir.path().display()
        )
    );
}

/// `destination-rule-all.yaml` names subsets bookinfo.yaml deploys no workload for (details
/// v2, ratings v2, v2-mysql, v2-mysql-vm): Istio's `destinationrule.SubsetSelectPodAnalyzer`
/// (pkg/config/analysis/analyzers/destinationrule/subset.go) reports each as IST0173, an Error
/// in msg/messages.yaml; nothing else is wrong with the set.
#[test]
fn bookinfo_subsets_without_workloads_are_ist0173() {
    let (_dir, out) = bookinfo_with("networking/destination-rule-all.yaml");
    assert_eq!(out.status.code(), Some(79), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (rule, subset) in [
        ("details", "v2"),
        ("ratings", "v2"),
        ("ratings", "v2-mysql"),
        ("ratings", "v2-mysql-vm"),
    ] {
        assert!(
            lines.iter().any(|l| l
                .starts_with(&format!("Error [IST0173] (DestinationRule {rule}.default "))
                && l.contains(&format!("The Subset {subset} defined"))),
            "{rule} {subset}: {text}"
        );
    }
}

const BROKEN: &str = r#"apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: [reviews-gateway]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
      weight: 80
    - destination: {host: ratingz}
      weight: 30
"#;

#[test]
fn broken_virtual_service_is_reported_in_istio_format() {
    let dir = TempDir::new("broken");
    dir.write("reviews.yaml", BROKEN);
    // A file that cannot be parsed does not hide the other's findings.
    dir.write("garbage.yaml", "kind: [unclosed\n");
    let path = dir.path().to_str().unwrap();
    let out = trellis(&["analyze", "--dir", path]);
    assert_eq!(out.status.code(), Some(79), "{out:?}");
    let file = dir.path().join("reviews.yaml");
    let at = format!("{}:7", file.display());
    let want = [
        format!(
            r#"Error [IST0101] (VirtualService reviews.default {at}) Referenced gateway not found: "reviews-gateway""#
        ),
        format!(
            r#"Error [IST0101] (VirtualService reviews.default {at}) Referenced host not found: "ratingz""#
        ),
        format!(
            r#"Error [IST0101] (VirtualService reviews.default {at}) Referenced host+subset in destinationrule not found: "reviews+v2""#
        ),
    ];
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("Error [IST0101] ("), "{text}");
    for w in &want {
        assert!(lines.contains(&w.as_str()), "missing {w}\n{text}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("Error [IST0106] (")
            && l.contains(
                "garbage.yaml:2) Schema validation error: invalid YAML: did not find expected"
            )),
        "{text}"
    );
    assert!(
        lines.contains(&format!("Error [IST0106] (VirtualService reviews.default {at}) Schema validation error: total destination weight 110 != 100").as_str()),
        "{text}"
    );

    let json = trellis(&["analyze", "--dir", path, "--json"]);
    assert_eq!(json.status.code(), Some(79));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON output");
    let first = &v.as_array().expect("an array of messages")[0];
    assert_eq!(first["level"], "Error");
    assert_eq!(first["code"], "IST0101");
    assert!(first["documentationUrl"]
        .as_str()
        .is_some_and(|u| u.ends_with("/ist0101/")));
}

#[test]
fn failure_threshold_decides_the_exit_status() {
    let dir = TempDir::new("threshold");
    // Only an IST0130 warning: a second catch-all rule.
    dir.write(
        "vs.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route: [{destination: {host: r}}]\n  - route: [{destination: {host: r}}]\n",
    );
    let path = dir.path().to_str().unwrap();
    let default = trellis(&["analyze", "--dir", path]);
    assert_eq!(default.status.code(), Some(0), "{default:?}");
    assert!(stdout(&default).starts_with("Warning [IST0130] (VirtualService r.default "));
    let strict = trellis(&["analyze", "--dir", path, "--failure-threshold", "Warning"]);
    assert_eq!(strict.status.code(), Some(79), "{strict:?}");
    let bad = trellis(&["analyze", "--dir", path, "--failure-threshold", "fatal"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "clap rejects an unknown level: {bad:?}"
    );
}

#[test]
fn unreadable_input_exits_1() {
    let out = trellis(&["analyze", "--dir", "/nonexistent/trellis-analyze"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot analyze"));
}

/// istioctl's `--meshConfigFile`: with Istio's defaults, ServiceEntries without addresses get
/// IST0134 (`serviceentry.ProtocolAddressesAnalyzer`); a mesh config turning on DNS capture
/// and auto-allocation (`ISTIO_META_DNS_CAPTURE`/`ISTIO_META_DNS_AUTO_ALLOCATE`) silences them,
/// as Istio's case "missing Addresses and Protocol in Service Entry with
/// ISTIO_META_DNS_AUTO_ALLOCATE enabled" expects.
#[test]
fn the_mesh_config_file_is_read_as_istioctl_reads_it() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("control/tests/analyzer_testdata");
    let dir = TempDir::new("meshcfg");
    let entries =
        std::fs::read_to_string(data.join("serviceentry-missing-addresses-protocol.yaml"))
            .expect("read Istio's test input");
    dir.write("entries.yaml", &entries);
    let mesh = data.join("serviceentry-missing-addresses-protocol-mesh-cfg.yaml");

    let defaults = trellis(&["analyze", "--dir", dir.path().to_str().unwrap()]);
    let text = stdout(&defaults);
    assert!(text.contains("[IST0134]"), "{text}");

    let with_mesh = trellis(&[
        "analyze",
        "--dir",
        dir.path().to_str().unwrap(),
        "--meshConfigFile",
        mesh.to_str().unwrap(),
    ]);
    let text = stdout(&with_mesh);
    assert!(!text.contains("[IST0134]"), "{text}");

    let missing = trellis(&[
        "analyze",
        "--dir",
        dir.path().to_str().unwrap(),
        "--meshConfigFile",
        "/nonexistent/mesh.yaml",
    ]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read the mesh config"),
        "{missing:?}"
    );
}
