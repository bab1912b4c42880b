//! Real programs the tests drive. A missing one is a loud failure, never a skip: CI installs
//! them (scripts/test.sh's `need` list).

use std::process::{Command, Output, Stdio};

/// Panic with an install hint unless `tool` is on PATH.
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is required by the end-to-end tests (scripts/test.sh installs it)"
    );
}

/// Run curl (silent, errors shown, 30 s cap) and return its output whatever its exit status.
pub fn curl_output(args: &[&str]) -> Output {
    require("curl");
    Command::new("curl")
        .args(["-s", "-S", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl runs")
}

/// Run curl and insist it succeeded.
pub fn curl(args: &[&str]) -> Output {
    let out = curl_output(args);
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// curl's stdout as text.
pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `curl -i`'s status code and lower-cased head, plus the body.
pub fn split_response(out: &Output) -> (u16, String, Vec<u8>) {
    let raw = &out.stdout;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, raw[end..].to_vec())
}
