//! The `explain` report: plain data (serialized for `--json`) and its text form for people.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::diag::Diagnostic;
use crate::istio::Source;

/// Everything `explain` found out about one request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExplainReport {
    pub request: RequestSummary,
    /// Version label of the translated snapshot.
    pub config_version: String,
    /// `matched`, `no_virtual_host` or `no_route`.
    pub outcome: Outcome,
    pub virtual_host: Option<VirtualHostReport>,
    /// Every rule tried, in order, up to the one that matched.
    pub rules: Vec<RuleReport>,
    pub matched: Option<MatchedRule>,
    /// Everything the loader and translator reported about the directory.
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Matched,
    NoVirtualHost,
    NoRoute,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RequestSummary {
    pub authority: String,
    pub path: String,
    pub method: String,
    pub port: u16,
    pub headers: Vec<(String, String)>,
    pub source_labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VirtualHostReport {
    pub name: String,
    /// The configured domain that matched the authority, and how (`Exact`, `SuffixWildcard` ...).
    pub domain: String,
    pub domain_match: String,
    /// The VirtualService it was built from (`None`: a service's default route).
    pub virtual_service: Option<Source>,
    pub default_for_service: Option<String>,
}

/// One rule tried.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleReport {
    /// Index in the VirtualService's `http[]` (or in the default routes).
    pub index: usize,
    pub name: Option<String>,
    pub matched: bool,
    /// Which `match[]` entry matched.
    pub match_index: Option<usize>,
    /// For a rule that did not match: per `match[]` entry, the first condition that failed.
    pub failures: Vec<String>,
}

/// The rule used and what it does.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MatchedRule {
    pub index: usize,
    pub name: Option<String>,
    pub route_name: String,
    pub action: ActionReport,
    pub timeout: Option<String>,
    pub retries: RetryReport,
    pub fault: Option<FaultReport>,
    pub rewrite: Option<RewriteReport>,
    pub request_headers: HeaderOpsReport,
    pub response_headers: HeaderOpsReport,
    /// Where copies of the request go (`mirror`, then `mirrors`), and for which share.
    pub mirrors: Vec<MirrorReport>,
    /// `corsPolicy`: answered preflights and decorated responses.
    pub cors: Option<CorsReport>,
}

/// The rule's CORS policy as the proxy applies it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CorsReport {
    /// Each allowed origin match, as `exact "..."`, `prefix "..."` or `regex "..."`.
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<String>,
    pub allow_credentials: bool,
    /// What a preflight from another origin gets: `forwarded` or `answered 200`.
    pub unmatched_preflights: &'static str,
}

/// One mirror of the rule: its cluster and the percentage of requests copied there.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MirrorReport {
    pub cluster: String,
    pub percent: f64,
    /// Envoy's `-shadow` appended to the copy's host.
    pub host_suffix: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ActionReport {
    Forward {
        destinations: Vec<DestinationReport>,
    },
    Redirect {
        location: RedirectReport,
    },
    DirectResponse {
        status: u16,
        body: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RedirectReport {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub port: Option<u16>,
    pub scheme: Option<String>,
    pub status: u16,
    /// `prefixRewrite`.
    pub prefix_rewrite: Option<String>,
    /// `derivePort: FROM_REQUEST_PORT`.
    pub port_from_request: bool,
    /// The `Location` this request gets, as the engine computes it.
    pub location: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DestinationReport {
    pub cluster: String,
    /// No cluster of that name exists (an unknown host, port or subset): Envoy answers 503
    /// with flag NC for the requests drawn to it.
    pub missing_cluster: bool,
    pub weight: u32,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub subset: Option<String>,
    pub subset_labels: BTreeMap<String, String>,
    pub destination_rule: Option<Source>,
    pub policy: Option<PolicyReport>,
    pub request_headers: HeaderOpsReport,
    pub response_headers: HeaderOpsReport,
}

/// Effective traffic policy of a cluster. Limits are `None` when unlimited.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyReport {
    pub load_balancer: String,
    pub connect_timeout: String,
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_requests_per_connection: Option<u32>,
    pub max_retries: Option<u32>,
    pub idle_timeout: Option<String>,
    pub outlier_detection: Option<OutlierReport>,
    /// `None`: unset (Istio's auto mTLS applies).
    pub tls_mode: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutlierReport {
    pub consecutive_5xx: u32,
    pub consecutive_gateway_errors: u32,
    pub interval: String,
    pub base_ejection_time: String,
    pub max_ejection_percent: u32,
    pub min_health_percent: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetryReport {
    pub attempts: u32,
    pub per_try_timeout: Option<String>,
    /// Conditions in Envoy's `retryOn` spelling.
    pub retry_on: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultReport {
    pub delay: Option<(String, f64)>,
    pub abort: Option<(u16, f64)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RewriteReport {
    pub uri: Option<String>,
    pub uri_regex: Option<(String, String)>,
    pub authority: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HeaderOpsReport {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderOpsReport {
    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

fn limit(v: Option<u32>) -> String {
    v.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

fn write_ops(
    f: &mut fmt::Formatter<'_>,
    indent: &str,
    what: &str,
    ops: &HeaderOpsReport,
) -> fmt::Result {
    if ops.is_empty() {
        return Ok(());
    }
    write!(f, "{indent}{what} headers:")?;
    for (k, v) in &ops.set {
        write!(f, " set {k}={v:?};")?;
    }
    for (k, v) in &ops.add {
        write!(f, " add {k}={v:?};")?;
    }
    for k in &ops.remove {
        write!(f, " remove {k};")?;
    }
    writeln!(f)
}

impl fmt::Display for ExplainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        writeln!(
            f,
            "Request: {} {}{} (port {})",
            r.method, r.authority, r.path, r.port
        )?;
        for (k, v) in &r.headers {
            writeln!(f, "  header {k}: {v}")?;
        }
        for (k, v) in &r.source_labels {
            writeln!(f, "  source label {k}={v}")?;
        }
        writeln!(f, "Config version: {}", self.config_version)?;
        match &self.virtual_host {
            None => writeln!(f, "Virtual host: none serves {:?} (404 NR)", r.authority)?,
            Some(v) => {
                write!(f, "Virtual host: {}", v.name)?;
                match (&v.virtual_service, &v.default_for_service) {
                    (Some(vs), _) => write!(
                        f,
                        " from VirtualService {} ({})",
                        vs.qualified_name(),
                        vs.file
                    )?,
                    (None, Some(svc)) => {
                        write!(f, " (default route of service {svc}; no VirtualService)")?
                    }
                    _ => {}
                }
                writeln!(f, ", domain {:?} ({})", v.domain, v.domain_match)?;
            }
        }
        if !self.rules.is_empty() {
            writeln!(f, "Rules tried:")?;
        }
        for rule in &self.rules {
            let name = rule
                .name
                .as_ref()
                .map(|n| format!(" {n:?}"))
                .unwrap_or_default();
            if rule.matched {
                match rule.match_index {
                    Some(i) => writeln!(f, "  http[{}]{name}: MATCHED by match[{i}]", rule.index)?,
                    None => writeln!(
                        f,
                        "  http[{}]{name}: MATCHED (no match conditions)",
                        rule.index
                    )?,
                }
            } else {
                writeln!(f, "  http[{}]{name}: no match", rule.index)?;
                for (i, why) in rule.failures.iter().enumerate() {
                    writeln!(f, "    match[{i}]: {why}")?;
                }
            }
        }
        if self.outcome == Outcome::NoRoute {
            writeln!(f, "No rule matched (404 NR)")?;
        }
        if let Some(m) = &self.matched {
            let name = m
                .name
                .as_ref()
                .map(|n| format!(" {n:?}"))
                .unwrap_or_default();
            writeln!(
                f,
                "Matched rule: http[{}]{name} (route {})",
                m.index, m.route_name
            )?;
            match &m.action {
                ActionReport::Forward { destinations } => {
                    if destinations.is_empty() {
                        writeln!(f, "  Destinations: none usable (503; see diagnostics)")?;
                    }
                    for d in destinations {
                        write!(
                            f,
                            "  -> weight {:>3}  {}",
                            d.weight,
                            d.host.as_deref().unwrap_or("?")
                        )?;
                        if let Some(p) = d.port {
                            write!(f, ":{p}")?;
                        }
                        if let Some(s) = &d.subset {
                            write!(f, " subset {s}")?;
                        }
                        writeln!(f, "  [cluster {}]", d.cluster)?;
                        if d.missing_cluster {
                            writeln!(
                                f,
                                "       no such cluster: requests drawn here are answered 503 (NC)"
                            )?;
                        }
                        if !d.subset_labels.is_empty() {
                            let labels: Vec<String> = d
                                .subset_labels
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect();
                            writeln!(f, "       subset labels: {}", labels.join(","))?;
                        }
                        match &d.destination_rule {
                            Some(dr) => writeln!(
                                f,
                                "       DestinationRule {} ({})",
                                dr.qualified_name(),
                                dr.file
                            )?,
                            None => writeln!(f, "       no DestinationRule (Istio defaults)")?,
                        }
                        if let Some(p) = &d.policy {
                            writeln!(
                                f,
                                "       load balancer {}; connect timeout {}; tls {}",
                                p.load_balancer,
                                p.connect_timeout,
                                p.tls_mode.as_deref().unwrap_or("unset (auto mTLS)")
                            )?;
                            writeln!(
                                f,
                                "       pool: max connections {}, pending {}, requests {}, per connection {}, retries {}",
                                limit(p.max_connections),
                                limit(p.max_pending_requests),
                                limit(p.max_requests),
                                limit(p.max_requests_per_connection),
                                limit(p.max_retries)
                            )?;
                            match &p.outlier_detection {
                                None => writeln!(f, "       outlier detection: off")?,
                                Some(o) => writeln!(
                                    f,
                                    "       outlier detection: {} consecutive 5xx, {} gateway errors, every {}, eject {} (max {}%)",
                                    o.consecutive_5xx, o.consecutive_gateway_errors, o.interval, o.base_ejection_time, o.max_ejection_percent
                                )?,
                            }
                        }
                        write_ops(f, "       ", "request", &d.request_headers)?;
                        write_ops(f, "       ", "response", &d.response_headers)?;
                    }
                }
                ActionReport::Redirect { location } => {
                    writeln!(
                        f,
                        "  Redirect {}: uri {:?} authority {:?} port {:?} scheme {:?}",
                        location.status,
                        location.uri,
                        location.authority,
                        location.port,
                        location.scheme
                    )?;
                    if let Some(l) = &location.location {
                        writeln!(f, "  Location: {l}")?;
                    }
                }
                ActionReport::DirectResponse { status, body } => {
                    writeln!(f, "  Direct response {status} body {body:?}")?
                }
            }
            writeln!(f, "  timeout: {}", m.timeout.as_deref().unwrap_or("none"))?;
            if m.retries.attempts == 0 {
                writeln!(f, "  retries: none")?;
            } else {
                writeln!(
                    f,
                    "  retries: {} attempts on {}{}",
                    m.retries.attempts,
                    m.retries.retry_on.join(","),
                    m.retries
                        .per_try_timeout
                        .as_ref()
                        .map(|t| format!(", per try {t}"))
                        .unwrap_or_default()
                )?;
            }
            if let Some(fault) = &m.fault {
                if let Some((d, p)) = &fault.delay {
                    writeln!(f, "  fault: delay {d} for {p}% of requests")?;
                }
                if let Some((s, p)) = &fault.abort {
                    writeln!(f, "  fault: abort with {s} for {p}% of requests")?;
                }
            }
            if let Some(rw) = &m.rewrite {
                writeln!(
                    f,
                    "  rewrite: uri {:?} regex {:?} authority {:?}",
                    rw.uri, rw.uri_regex, rw.authority
                )?;
            }
            write_ops(f, "  ", "request", &m.request_headers)?;
            write_ops(f, "  ", "response", &m.response_headers)?;
            for mirror in &m.mirrors {
                writeln!(
                    f,
                    "  mirror: {} for {}% of requests{}",
                    mirror.cluster,
                    mirror.percent,
                    if mirror.host_suffix {
                        ", host + \"-shadow\""
                    } else {
                        ""
                    }
                )?;
            }
            if let Some(cors) = &m.cors {
                writeln!(f, "  cors: origins [{}]", cors.allow_origins.join(", "))?;
                writeln!(
                    f,
                    "    methods {:?} headers {:?} expose {:?} max-age {} credentials {}",
                    cors.allow_methods.join(","),
                    cors.allow_headers.join(","),
                    cors.expose_headers.join(","),
                    cors.max_age.as_deref().unwrap_or("-"),
                    cors.allow_credentials
                )?;
                writeln!(
                    f,
                    "    preflights from other origins: {}",
                    cors.unmatched_preflights
                )?;
            }
        }
        if !self.diagnostics.is_empty() {
            writeln!(f, "Diagnostics:")?;
            for d in &self.diagnostics {
                writeln!(f, "  {d}")?;
            }
        }
        Ok(())
    }
}
