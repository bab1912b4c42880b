//! A pod's containers as the Docker test reaches them: `docker exec`, curl from the
//! application container, the sidecar's logs and access-log lines.

use super::docker;

/// A pod: its application container (which owns the network namespace) and its sidecar.
pub struct Pod {
    pub app: String,
    pub sidecar: String,
    /// The SPIFFE id of the certificate its sidecar got from the control plane.
    pub id: String,
}

/// `docker exec CONTAINER ARGS`: stdout, or the error text when the command fails (the
/// callers poll, and show the last answer when they give up).
pub fn exec(container: &str, args: &[&str]) -> String {
    let mut all = vec!["exec", container];
    all.extend(args);
    docker(&all).unwrap_or_else(|e| e)
}

/// A response as curl saw it: status, headers (lower-cased names) and body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `curl` from a pod's application container: what the application itself would send.
pub fn curl_from(pod: &Pod, url: &str, extra: &[&str]) -> Response {
    curl_in(&pod.app, url, extra).unwrap_or_else(|e| panic!("curl {url} from {}: {e}", pod.app))
}

/// `curl` in any container: the response, or curl's failure (e.g. a connection the server
/// closed without answering) as the error.
pub fn curl_in(container: &str, url: &str, extra: &[&str]) -> Result<Response, String> {
    let mut args = vec!["exec", container, "curl", "-sS", "-i", "--max-time", "20"];
    args.extend(extra);
    args.push(url);
    let out = docker(&args)?;
    parse_response(&out).ok_or_else(|| format!("curl {url}: not an HTTP response:\n{out}"))
}

pub fn parse_response(text: &str) -> Option<Response> {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.trim_end(), ""));
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

/// A container's output (stdout then stderr), without the terminal colours `tracing` adds.
pub fn logs(container: &str) -> String {
    match super::run_docker(&["logs", container]) {
        Ok(out) => strip_ansi(&format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => e,
    }
}

/// Remove ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn running(container: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", container]).is_ok_and(|s| s == "true")
}

/// Access-log lines (target `trellis::access`) of a sidecar that mention `needle`.
pub fn access_lines(sidecar: &str, needle: &str) -> Vec<String> {
    logs(sidecar)
        .lines()
        .filter(|l| l.contains("trellis::access") && l.contains(needle))
        .map(String::from)
        .collect()
}
