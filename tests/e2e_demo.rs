//! The default command's mesh end to end (issue 13, "the embedded default becomes a real
//! mesh"): the real binary runs `trellis demo`, whose control plane, sidecars, workloads and
//! traffic generator all live in that one process, and these tests read what it prints and
//! knock on its ports with curl.
//!
//! 1. `--self-check`: the seeded routing holds (jason → reviews-v2, everyone else split 50/50
//!    between v1 and v3), every answer shows the whole path productpage ← reviews ← ratings,
//!    every hop inside the mesh was mutual TLS (the callee's sidecar verified the caller's
//!    SPIFFE id and passed it on in `x-forwarded-client-cert`), the AuthorizationPolicy
//!    turns productpage away from ratings, the ratings fault aborts `end-user: tester`'s
//!    calls with 500, and outlier detection ejects the details replica that answers 503 after
//!    a request or two.
//! 2. Live edit: rewriting the reviews VirtualService in the directory the demo prints moves
//!    everyone's traffic to v2 while it runs (curl sees it, and so does the demo's own
//!    summary), and Ctrl-C (SIGINT) stops it cleanly, exit status 0. `--write-dir` writes a
//!    directory and refuses to write over one.
//! 3. `--dir`: the demo runs a directory written by `--write-dir` and passes its self-check.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::curl;

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trellis-e2e-demo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `reviews for everyone else: reviews-v1 40 (50%), reviews-v3 40 (50%)` → {v1: 40, v3: 40}.
fn split(stdout: &str, user: &str) -> BTreeMap<String, u64> {
    let prefix = format!("  reviews for {user}: ");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no split for {user} in:\n{stdout}"));
    line.split(", ")
        .filter_map(|part| {
            let mut words = part.split_whitespace();
            let who = words.next()?.to_string();
            let n = words.next()?.parse().ok()?;
            Some((who, n))
        })
        .collect()
}

#[test]
fn the_demo_routes_chains_and_authenticates_as_seeded() {
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["demo", "--self-check", "--requests", "160", "--rate", "40"])
        .args(["--summary-secs", "0", "--seed", "7"])
        .output()
        .expect("trellis demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "self-check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("self-check: ok"), "{stdout}");
    assert!(stdout.contains("requests: 160 (200 ×160)"), "{stdout}");

    // Jason: reviews v2 only; everyone else: v1 and v3, near 50/50 (four standard deviations).
    let jason = split(&stdout, "end-user jason");
    assert_eq!(jason.keys().collect::<Vec<_>>(), ["reviews-v2"], "{stdout}");
    assert_eq!(jason["reviews-v2"], 40, "{stdout}");
    let others = split(&stdout, "everyone else");
    assert_eq!(
        others.keys().collect::<Vec<_>>(),
        ["reviews-v1", "reviews-v3"],
        "{stdout}"
    );
    let n: u64 = others.values().sum();
    assert_eq!(n, 160 - 40 - 8, "{stdout}");
    let off = (others["reviews-v1"] as f64 - n as f64 / 2.0).abs();
    assert!(off <= 2.0 * (n as f64).sqrt(), "{stdout}");

    // Fault injection: tester's requests that reach reviews-v3 find ratings aborted, 500.
    let tester = split(&stdout, "end-user tester");
    assert_eq!(tester.values().sum::<u64>(), 8, "{stdout}");
    if let Some(n) = tester.get("reviews-v3") {
        let line = format!("productpage-v1 ← reviews-v3 ← ratings ✗ 500  ×{n}  [end-user tester]");
        assert!(stdout.contains(&line), "no {line:?} in:\n{stdout}");
    }

    // The whole path, in the answer productpage built from its callees' answers.
    assert!(
        stdout.contains("productpage-v1 ← reviews-v2 ← ratings-v1  ×40  [end-user jason]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("productpage-v1 ← reviews-v1  ×"),
        "{stdout}"
    );
    assert!(
        stdout.contains("productpage-v1 ← reviews-v3 ← ratings-v1  ×"),
        "{stdout}"
    );

    // mTLS: each callee's sidecar verified its caller's certificate and named it in XFCC.
    let productpage = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage";
    let reviews = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews";
    for hop in [
        format!("{productpage} → details-v1  ×"),
        format!("{productpage} → reviews-v2  ×40"),
        format!("{productpage} → reviews-v1  ×"),
        format!("{reviews} → ratings-v1  ×"),
    ] {
        assert!(stdout.contains(&hop), "no hop {hop:?} in:\n{stdout}");
    }
    // Only the edge was plaintext.
    let plaintext: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("(plaintext"))
        .collect();
    assert_eq!(plaintext.len(), 1, "{stdout}");
    assert!(plaintext[0].contains("→ productpage-v1  ×160"), "{stdout}");

    // Outlier ejection: the failing details replica got a request or two, then no more.
    let ejected: u64 = stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("outlier ejection: details-v1-1 answers 503; it got ")
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no outlier ejection line in:\n{stdout}"));
    assert!((1..=3).contains(&ejected), "{stdout}");

    assert!(
        stdout.contains("policy: productpage → ratings answered 403"),
        "{stdout}"
    );
}

/// The demo's stdout so far.
fn read_log(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    text
}

/// The reviews workload curl's request through productpage reached, for user `jason` or not.
fn reviews_for(ingress: &str, jason: bool) -> Option<String> {
    let mut args = vec!["-H", "Host: productpage"];
    if jason {
        args.extend(["-H", "end-user: jason"]);
    }
    let url = format!("http://{ingress}/productpage");
    args.push(&url);
    let out = curl(&args);
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    body.get("reviews")?.as_str().map(str::to_string)
}

const ALL_TO_V2: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
    - route:
        - destination: {host: reviews, subset: v2}
";

#[test]
fn editing_the_reviews_virtual_service_moves_traffic_while_the_demo_runs() {
    let tmp = tempdir("live");
    // `--write-dir` writes a directory to edit, and never over one that is not empty.
    let written = tmp.join("bookinfo");
    let write = || {
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["demo", "--write-dir"])
            .arg(&written)
            .output()
            .expect("trellis demo --write-dir runs")
    };
    let first = write();
    assert!(first.status.success(), "{first:?}");
    assert!(written.join("reviews-routing.yaml").is_file(), "{first:?}");
    assert!(!write().status.success(), "written over");

    // The demo on its own seeded directory, which it prints, as a user starts it: the
    // ports it names are held until bound (a `--write-dir` directory's could be taken by then).
    let log = tmp.join("demo.out");
    let mut demo = Killed(
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args([
                "demo",
                "--duration",
                "120",
                "--rate",
                "10",
                "--summary-secs",
                "1",
            ])
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(tmp.join("demo.err")).expect("log"))
            .spawn()
            .expect("trellis demo starts"),
    );

    // The banner names productpage's ingress; traffic starts once the mesh answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (ingress, routing) = loop {
        let out = read_log(&log);
        if out.contains("traffic:") {
            let url = out
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("curl -s -H 'Host: productpage' http://")
                })
                .and_then(|rest| rest.strip_suffix("/productpage"))
                .unwrap_or_else(|| panic!("no productpage curl in:\n{out}"))
                .to_string();
            let routing = out
                .lines()
                .find_map(|l| l.trim().strip_prefix("edit ")?.split_whitespace().next())
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("no file to edit in:\n{out}"));
            break (url, routing);
        }
        let exited = demo.0.try_wait().ok().flatten();
        assert!(
            Instant::now() < deadline && exited.is_none(),
            "the demo did not start ({exited:?}):\n{out}\n{}",
            read_log(&tmp.join("demo.err"))
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let before: Vec<String> = (0..10)
        .filter_map(|_| reviews_for(&ingress, false))
        .collect();
    assert_eq!(before.len(), 10, "{before:?}");
    assert!(
        before
            .iter()
            .all(|r| r == "reviews-v1" || r == "reviews-v3"),
        "{before:?}"
    );
    assert_eq!(reviews_for(&ingress, true).as_deref(), Some("reviews-v2"));

    std::fs::write(&routing, ALL_TO_V2).expect("edit the VirtualService");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut in_a_row = 0;
    while in_a_row < 10 {
        assert!(
            Instant::now() < deadline,
            "traffic did not move to v2:\n{}",
            read_log(&log)
        );
        if reviews_for(&ingress, false).as_deref() == Some("reviews-v2") {
            in_a_row += 1;
        } else {
            in_a_row = 0;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The demo's own short summary shows it too, a second or two later.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = read_log(&log);
        if out
            .lines()
            .any(|l| l.contains("everyone else: reviews-v2") && !l.contains("reviews-v1"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no summary shows v2:\n{out}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Ctrl-C: a final summary and a clean exit.
    // SAFETY: kill(2) on the child's own pid.
    unsafe { libc::kill(demo.0.id() as libc::pid_t, libc::SIGINT) };
    let status = wait_with_timeout(&mut demo.0, Duration::from_secs(20));
    assert_eq!(status, Some(0), "{}", read_log(&log));
    assert!(read_log(&log).contains("summary:"), "{}", read_log(&log));
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The demo's process, killed on drop (a failed assertion must not leave it running).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_with_timeout(child: &mut std::process::Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_written_directory_runs_with_dir() {
    let tmp = tempdir("dir");
    // The written directory names ports that are free when written; one may be taken by the
    // time the demo binds it (another demo starting meanwhile), which the demo says: write
    // again then.
    for attempt in 0..3 {
        let dir = tmp.join(format!("bookinfo-{attempt}"));
        let written = Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["demo", "--write-dir"])
            .arg(&dir)
            .output()
            .expect("trellis demo --write-dir runs");
        assert!(written.status.success(), "{written:?}");
        let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["demo", "--dir"])
            .arg(&dir)
            .args([
                "--self-check",
                "--requests",
                "80",
                "--rate",
                "40",
                "--summary-secs",
                "0",
            ])
            .output()
            .expect("trellis demo --dir runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && stderr.contains("Address already in use") {
            continue;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("watching {}", dir.display())),
            "{stdout}"
        );
        assert!(stdout.contains("self-check: ok"), "{stdout}");
        let _ = std::fs::remove_dir_all(&tmp);
        return;
    }
    panic!("three written directories in a row had a port taken");
}
