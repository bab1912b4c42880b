//! Application probes through the sidecar (Istio's probe rewrite): the injector rewrites each
//! container's liveness/readiness/startup probe to `GET /app-health/<container>/livez|readyz|
//! startupz` on the sidecar's status port (15020) and puts the original probes in the
//! `ISTIO_KUBE_APP_PROBERS` environment variable as JSON, keyed by those paths. The status
//! server runs the original probe against the application on 127.0.0.1 and answers with its
//! outcome. With STRICT mTLS the kubelet could not reach the application's port directly
//! (it has no mesh certificate), and its probe must not count as mesh traffic.
//!
//! Semantics follow pilot-agent's status server (pilot/cmd/pilot-agent/status/server.go,
//! `handleAppProbe*`): an unknown path answers 400; `httpGet` forwards the prober's request
//! headers plus the probe's `httpHeaders`, answers the application's status (any 3xx becomes
//! 200) and at most 10 KiB of its body, and 500 when it cannot be reached within
//! `timeoutSeconds` (default 1, as Kubernetes'); `tcpSocket` answers 200 when a connection
//! opens in time, 500 otherwise. HTTPS and gRPC probes are recognised but not run (Trellis has
//! no TLS or gRPC client for them): they answer 500 saying so, and are reported at start-up.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde::Deserialize;

/// Where the application is probed: its own loopback, never captured.
const APP_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// pilot-agent's `maxRespBodyLength`.
const MAX_BODY: usize = 10 * 1024;
/// Kubernetes' default `timeoutSeconds`.
const DEFAULT_TIMEOUT_SECONDS: u32 = 1;

/// Why `ISTIO_KUBE_APP_PROBERS` was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppProbeError {
    #[error("ISTIO_KUBE_APP_PROBERS is not valid JSON of probers: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "ISTIO_KUBE_APP_PROBERS: {path:?} is not /app-health/<container>/livez|readyz|startupz \
         (or /app-lifecycle/<container>/prestopz|poststartz)"
    )]
    Path { path: String },
    #[error("ISTIO_KUBE_APP_PROBERS {path:?}: {reason}")]
    Prober { path: String, reason: String },
}

/// A Kubernetes port: a number, or a name the injector should have resolved.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum PortValue {
    Number(i64),
    Name(String),
}

#[derive(Clone, Debug, Deserialize)]
struct HeaderSpec {
    name: String,
    value: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpGetSpec {
    #[serde(default)]
    path: Option<String>,
    port: PortValue,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    http_headers: Vec<HeaderSpec>,
}

#[derive(Clone, Debug, Deserialize)]
struct TcpSocketSpec {
    port: PortValue,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProberSpec {
    #[serde(default)]
    http_get: Option<HttpGetSpec>,
    #[serde(default)]
    tcp_socket: Option<TcpSocketSpec>,
    #[serde(default)]
    grpc: Option<serde_json::Value>,
    #[serde(default)]
    timeout_seconds: Option<u32>,
}

/// One probe, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    Http {
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
        timeout: Duration,
    },
    Tcp {
        port: u16,
        timeout: Duration,
    },
    /// HTTPS or gRPC: known, not run (see the module docs).
    Unsupported {
        kind: &'static str,
    },
}

/// The probes by rewritten path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppProbers {
    probes: BTreeMap<String, Probe>,
}

/// What a probe answered: a status code and a body for the prober.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub status: u16,
    pub body: String,
}

fn valid_path(path: &str) -> bool {
    let mut parts = path.split('/');
    let (Some(""), Some(kind), Some(container), Some(probe), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    !container.is_empty()
        && match kind {
            "app-health" => matches!(probe, "livez" | "readyz" | "startupz"),
            "app-lifecycle" => matches!(probe, "prestopz" | "poststartz"),
            _ => false,
        }
}

fn port_of(path: &str, port: &PortValue) -> Result<u16, AppProbeError> {
    let bad = |reason: String| AppProbeError::Prober {
        path: path.to_string(),
        reason,
    };
    match port {
        PortValue::Number(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("port {n} is not 1-65535"))),
        PortValue::Name(name) => name.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            bad(format!(
                "port {name:?} is a name; the injector must resolve it to the container's number"
            ))
        }),
    }
}

impl AppProbers {
    /// Parse `ISTIO_KUBE_APP_PROBERS` (an empty string means no probes).
    pub fn parse(json: &str) -> Result<AppProbers, AppProbeError> {
        if json.trim().is_empty() {
            return Ok(AppProbers::default());
        }
        let specs: BTreeMap<String, ProberSpec> = serde_json::from_str(json)?;
        let mut probes = BTreeMap::new();
        for (path, spec) in specs {
            if !valid_path(&path) {
                return Err(AppProbeError::Path { path });
            }
            let timeout = Duration::from_secs(u64::from(
                spec.timeout_seconds
                    .filter(|t| *t > 0)
                    .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
            ));
            let probe = match (&spec.http_get, &spec.tcp_socket, &spec.grpc) {
                (Some(get), None, None) => {
                    let https = get
                        .scheme
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case("https"));
                    if https {
                        Probe::Unsupported { kind: "HTTPS" }
                    } else {
                        let raw = get.path.clone().unwrap_or_default();
                        Probe::Http {
                            port: port_of(&path, &get.port)?,
                            path: if raw.starts_with('/') {
                                raw
                            } else {
                                format!("/{raw}")
                            },
                            headers: get
                                .http_headers
                                .iter()
                                .map(|h| (h.name.clone(), h.value.clone()))
                                .collect(),
                            timeout,
                        }
                    }
                }
                (None, Some(tcp), None) => Probe::Tcp {
                    port: port_of(&path, &tcp.port)?,
                    timeout,
                },
                (None, None, Some(_)) => Probe::Unsupported { kind: "gRPC" },
                _ => {
                    return Err(AppProbeError::Prober {
                        path,
                        reason: "needs exactly one of httpGet, tcpSocket, grpc".into(),
                    })
                }
            };
            if let Probe::Unsupported { kind } = probe {
                tracing::warn!(%path, kind, "application probe kind not supported: it will answer 500");
            }
            probes.insert(path, probe);
        }
        Ok(AppProbers { probes })
    }

    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&Probe> {
        self.probes.get(path)
    }

    /// Run the probe for `path`, forwarding the prober's `headers` to an HTTP probe.
    pub fn probe(&self, path: &str, headers: &[(String, String)]) -> ProbeOutcome {
        match self.probes.get(path) {
            None => ProbeOutcome {
                status: 400,
                body: format!("app prober config does not exist for {path}\n"),
            },
            Some(probe) => run_probe(probe, headers),
        }
    }
}

fn failed(reason: String) -> ProbeOutcome {
    ProbeOutcome {
        status: 500,
        body: reason,
    }
}

fn run_probe(probe: &Probe, incoming: &[(String, String)]) -> ProbeOutcome {
    match probe {
        Probe::Tcp { port, timeout } => {
            match TcpStream::connect_timeout(&SocketAddr::new(APP_HOST, *port), *timeout) {
                Ok(_) => ProbeOutcome {
                    status: 200,
                    body: String::new(),
                },
                Err(e) => failed(format!("tcp probe of port {port} failed: {e}\n")),
            }
        }
        Probe::Http {
            port,
            path,
            headers,
            timeout,
        } => match http_get(*port, path, incoming, headers, *timeout) {
            Ok((status, _)) if (300..400).contains(&status) => ProbeOutcome {
                status: 200,
                body: String::new(),
            },
            Ok((status, body)) => ProbeOutcome { status, body },
            Err(e) => failed(format!("request to probe app failed: {e}\n")),
        },
        Probe::Unsupported { kind } => failed(format!(
            "{kind} application probes are not supported by the Trellis sidecar\n"
        )),
    }
}

/// Headers never forwarded: hop-by-hop, framing, and the ones this request sets itself.
fn forwardable(name: &str) -> bool {
    ![
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "keep-alive",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

fn http_get(
    port: u16,
    path: &str,
    incoming: &[(String, String)],
    probe_headers: &[(String, String)],
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::new(APP_HOST, port);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // The probe's own headers win over the prober's (a probe may set Host).
    let mut headers: Vec<(String, String)> = incoming
        .iter()
        .filter(|(n, _)| forwardable(n))
        .filter(|(n, _)| !probe_headers.iter().any(|(p, _)| p.eq_ignore_ascii_case(n)))
        .cloned()
        .collect();
    let host = probe_headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| addr.to_string());
    headers.extend(
        probe_headers
            .iter()
            .filter(|(n, _)| forwardable(n))
            .cloned(),
    );
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (name, value) in &headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream
        .take((MAX_BODY + 16 * 1024) as u64)
        .read_to_end(&mut response)?;
    let mut parsed_headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut parsed_headers);
    let head_len = match parsed.parse(&response) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the application's answer is not HTTP",
            ))
        }
    };
    let status = parsed.code.unwrap_or(500);
    let body = response.get(head_len..).unwrap_or(&[]);
    let body = body.get(..MAX_BODY.min(body.len())).unwrap_or(&[]);
    Ok((status, String::from_utf8_lossy(body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_istio_probers_and_refuses_bad_ones() {
        let json = r#"{
            "/app-health/web/livez": {"httpGet": {"path": "healthz", "port": 8080, "scheme": "HTTP",
                "httpHeaders": [{"name": "x-probe", "value": "1"}]}, "timeoutSeconds": 3},
            "/app-health/web/readyz": {"tcpSocket": {"port": "8080"}},
            "/app-health/web/startupz": {"grpc": {"port": 9000}}
        }"#;
        let probers = AppProbers::parse(json).unwrap();
        assert_eq!(
            probers.get("/app-health/web/livez"),
            Some(&Probe::Http {
                port: 8080,
                path: "/healthz".into(),
                headers: vec![("x-probe".into(), "1".into())],
                timeout: Duration::from_secs(3),
            })
        );
        assert_eq!(
            probers.get("/app-health/web/readyz"),
            Some(&Probe::Tcp {
                port: 8080,
                timeout: Duration::from_secs(1)
            })
        );
        assert_eq!(
            probers.get("/app-health/web/startupz"),
            Some(&Probe::Unsupported { kind: "gRPC" })
        );
        assert!(AppProbers::parse("").unwrap().is_empty());
        for (bad, says) in [
            (
                r#"{"/healthz/web": {"tcpSocket": {"port": 1}}}"#,
                "is not /app-health",
            ),
            (
                r#"{"/app-health/web/livez": {"tcpSocket": {"port": "http"}}}"#,
                "is a name",
            ),
            (
                r#"{"/app-health/web/livez": {"tcpSocket": {"port": 70000}}}"#,
                "not 1-65535",
            ),
            (r#"{"/app-health/web/livez": {}}"#, "exactly one of"),
            ("[1,2]", "not valid JSON"),
        ] {
            let err = AppProbers::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn probes_answer_as_pilot_agent() {
        let app = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = app.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in app.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 2048];
                let n = stream.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                let answer = if req.starts_with("get /moved") {
                    "HTTP/1.1 302 Found\r\nlocation: /x\r\ncontent-length: 0\r\n\r\n".to_string()
                } else if req.starts_with("get /sick") {
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nsick".to_string()
                } else {
                    let probe =
                        req.contains("x-probe: 1") && req.contains("user-agent: kube-probe");
                    let body = format!("ok probe-headers={probe}");
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        let json = format!(
            r#"{{"/app-health/a/livez": {{"httpGet": {{"path": "/live", "port": {port},
                  "httpHeaders": [{{"name": "x-probe", "value": "1"}}]}}}},
                "/app-health/a/readyz": {{"httpGet": {{"path": "/sick", "port": {port}}}}},
                "/app-health/a/startupz": {{"httpGet": {{"path": "/moved", "port": {port}}}}},
                "/app-lifecycle/a/prestopz": {{"tcpSocket": {{"port": {port}}}}},
                "/app-lifecycle/a/poststartz": {{"tcpSocket": {{"port": 1}}}}}}"#
        );
        let probers = AppProbers::parse(&json).unwrap();
        let kubelet = vec![("User-Agent".to_string(), "kube-probe/1.30".to_string())];
        let live = probers.probe("/app-health/a/livez", &kubelet);
        assert_eq!(live.status, 200);
        assert_eq!(live.body, "ok probe-headers=true");
        let ready = probers.probe("/app-health/a/readyz", &kubelet);
        assert_eq!((ready.status, ready.body.as_str()), (503, "sick"));
        assert_eq!(
            probers.probe("/app-health/a/startupz", &kubelet).status,
            200
        );
        assert_eq!(probers.probe("/app-lifecycle/a/prestopz", &[]).status, 200);
        assert_eq!(
            probers.probe("/app-lifecycle/a/poststartz", &[]).status,
            500
        );
        assert_eq!(probers.probe("/app-health/other/livez", &[]).status, 400);
    }
}
