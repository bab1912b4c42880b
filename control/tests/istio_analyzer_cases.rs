//! Istio's own analyzer test table, run through `trellis analyze`.
//!
//! `analyzer_testdata/cases.txt` restates the cases of istio/istio's
//! `pkg/config/analysis/analyzers/analyzers_test.go` that Trellis claims (their inputs are copied
//! beside it, see its README). For each case we analyze the inputs, keep the messages whose code
//! the Istio analyzer under test can emit, and compare them as a multiset of (code, origin) with
//! what Istio expects. The totals are recorded in RESEARCH.md ("Istio's analyzer cases"); the
//! test holds the line on them so a regression is seen: run it with `--nocapture` for the
//! per-case table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use trellis_control::analyze::{analyze_with, Inputs, OptIn};

/// Expected messages found, out of the 216 in `cases.txt`.
const FOUND_AT_LEAST: usize = 216;
/// Messages Trellis gives that Istio does not expect.
const FALSE_AT_MOST: usize = 10;

struct Case {
    name: String,
    files: Vec<String>,
    codes: Vec<String>,
    /// The case's `meshConfigFile` and `meshNetworksFile`.
    mesh: Option<String>,
    mesh_networks: Option<String>,
    /// Analyzers Istio's `All()` leaves out that the case runs (`skipAll`).
    opt_in: OptIn,
    /// (code, `Kind namespace/name`).
    expected: Vec<(String, String)>,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/analyzer_testdata")
}

fn read_cases() -> Vec<Case> {
    let text = std::fs::read_to_string(data_dir().join("cases.txt")).expect("cases.txt");
    let mut cases: Vec<Case> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, rest)) = line.split_once(' ') else {
            continue;
        };
        let words = || rest.split_whitespace().map(str::to_string);
        match (key, cases.last_mut()) {
            ("case", _) => cases.push(Case {
                name: rest.to_string(),
                files: Vec::new(),
                codes: Vec::new(),
                mesh: None,
                mesh_networks: None,
                opt_in: OptIn::default(),
                expected: Vec::new(),
            }),
            ("mesh", Some(c)) => c.mesh = Some(rest.to_string()),
            ("meshnetworks", Some(c)) => c.mesh_networks = Some(rest.to_string()),
            ("optin", Some(c)) => {
                assert_eq!(rest, "alpha", "cases.txt: unknown opt-in {rest:?}");
                c.opt_in.alpha = true;
            }
            ("files", Some(c)) => c.files.extend(words()),
            ("codes", Some(c)) => c.codes.extend(words()),
            ("expect", Some(c)) => {
                let (code, origin) = rest.split_once(' ').expect("expect CODE ORIGIN");
                c.expected.push((code.to_string(), normalize(origin)));
            }
            _ => panic!("cases.txt: unexpected line {line:?}"),
        }
    }
    cases
}

/// Istio's origin `Kind ns/name` (or `Kind name` where the input has no namespace, which the
/// analyzer reads as `default`) as `Kind ns/name`.
fn normalize(origin: &str) -> String {
    let (kind, rest) = origin.split_once(' ').expect("Kind name");
    match rest.split_once('/') {
        Some(_) => origin.to_string(),
        None => format!("{kind} default/{rest}"),
    }
}

/// Trellis's origin `Kind name.namespace` (`Kind name` for a cluster-scoped kind) as
/// `Kind namespace/name`.
fn ours(resource: &str) -> String {
    let (kind, rest) = resource.split_once(' ').unwrap_or(("", resource));
    let cluster_scoped = matches!(
        kind,
        "Namespace"
            | "CustomResourceDefinition"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
            | "GatewayClass"
    );
    if cluster_scoped {
        return format!("{kind} default/{rest}");
    }
    match rest.rsplit_once('.') {
        Some((name, ns)) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} default/{rest}"),
    }
}

#[test]
fn istio_analyzer_cases() {
    let (mut total, mut found, mut false_found) = (0, 0, 0);
    let mut report = String::new();
    for case in read_cases() {
        let mut inputs = Inputs::default();
        for f in &case.files {
            let text = std::fs::read_to_string(data_dir().join(f)).expect("testdata file");
            inputs.add_str(&text, f);
        }
        let read = |f: &String| std::fs::read_to_string(data_dir().join(f)).expect("mesh file");
        if let Some(f) = &case.mesh {
            inputs
                .set_mesh_config_str(&read(f), f)
                .expect("mesh config");
        }
        if let Some(f) = &case.mesh_networks {
            inputs
                .set_mesh_networks_str(&read(f), f)
                .expect("mesh networks");
        }
        let analysis = analyze_with(&inputs, &case.name, case.opt_in);
        let mut got: BTreeMap<(String, String), usize> = BTreeMap::new();
        for m in &analysis.messages {
            if case.codes.iter().any(|c| c == m.code) {
                let origin = ours(m.resource.as_deref().unwrap_or(""));
                *got.entry((m.code.to_string(), origin)).or_default() += 1;
            }
        }
        let mut missing = Vec::new();
        for e in &case.expected {
            total += 1;
            match got.get_mut(e) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    found += 1;
                }
                _ => missing.push(format!("{} {}", e.0, e.1)),
            }
        }
        let extra: Vec<String> = got
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|((code, origin), n)| format!("{code} {origin} x{n}"))
            .collect();
        false_found += got.values().sum::<usize>();
        let status = if missing.is_empty() && extra.is_empty() {
            "ok"
        } else {
            "DIFF"
        };
        report.push_str(&format!("{status:4} {}\n", case.name));
        for m in &missing {
            report.push_str(&format!("       missing {m}\n"));
        }
        for x in &extra {
            report.push_str(&format!("       false   {x}\n"));
        }
    }
    println!("{report}");
    println!(
        "Istio's analyzer cases: found {found}/{total} expected messages, {false_found} false"
    );
    assert!(found >= FOUND_AT_LEAST, "found {found} < {FOUND_AT_LEAST}");
    assert!(
        false_found <= FALSE_AT_MOST,
        "false {false_found} > {FALSE_AT_MOST}"
    );
}
