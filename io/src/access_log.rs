//! Access logs: the engine records each finished request; the runtime prints it.
//!
//! One line per request through `tracing` at info level, target `trellis::access`, shaped like
//! Envoy's default text format so people who read Istio sidecar logs read these at once:
//!
//! ```text
//! [12.345678s] "GET /reviews/1" 200 - 0 11 3ms "reviews" outbound|9080|v2|reviews 127.0.0.1:40001 route=reviews.jason attempts=1 c4 127.0.0.1:50000
//! ```
//!
//! The timestamp is engine time (seconds since the driver started); the engine never reads a
//! wall clock and this runtime does not invent one per line.

use trellis_engine::proxy::RequestLog;

/// The access-log line of one request.
pub fn format_line(log: &RequestLog) -> String {
    format!(
        "[{}] \"{} {}\" {} {} {} {} {}ms \"{}\" {} {} route={} attempts={} {} {}",
        log.start,
        or_dash(&log.method),
        or_dash(&log.path),
        log.status,
        log.flags_string(),
        log.request_body_bytes,
        log.response_body_bytes,
        log.duration.as_millis(),
        log.authority,
        log.cluster.as_deref().unwrap_or("-"),
        log.upstream_host
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".to_string()),
        log.route.as_deref().unwrap_or("-"),
        log.attempts,
        log.downstream,
        log.peer
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".to_string()),
    )
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// Emit every record through `tracing` (info, target `trellis::access`).
/// Log every record in `logs` and empty it (keeping its capacity).
pub fn emit(logs: &mut Vec<RequestLog>) {
    for log in logs.drain(..) {
        tracing::info!(target: "trellis::access", "{}", format_line(&log));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use trellis_engine::proxy::ResponseFlag;
    use trellis_engine::{ConnId, Instant};

    fn record() -> RequestLog {
        RequestLog {
            downstream: ConnId(4),
            peer: Some("127.0.0.1:50000".parse().unwrap()),
            start: Instant::from_millis(12_345),
            duration: Duration::from_micros(3_400),
            method: "GET".into(),
            authority: "reviews".into(),
            path: "/reviews/1".into(),
            status: 200,
            flags: vec![],
            route: Some("reviews.jason".into()),
            cluster: Some("outbound|9080|v2|reviews".into()),
            upstream_host: Some("127.0.0.1:40001".parse().unwrap()),
            attempts: 1,
            request_body_bytes: 0,
            response_body_bytes: 11,
        }
    }

    #[test]
    fn proxied_request_line() {
        assert_eq!(
            format_line(&record()),
            "[12.345000s] \"GET /reviews/1\" 200 - 0 11 3ms \"reviews\" \
             outbound|9080|v2|reviews 127.0.0.1:40001 route=reviews.jason attempts=1 c4 127.0.0.1:50000"
        );
    }

    #[test]
    fn mesh_generated_error_line() {
        let mut r = record();
        r.status = 503;
        r.flags = vec![
            ResponseFlag::UpstreamConnectionFailure,
            ResponseFlag::UpstreamRetryLimitExceeded,
        ];
        r.upstream_host = None;
        r.route = None;
        r.method = "".into();
        r.peer = None;
        let line = format_line(&r);
        assert!(line.contains("\"- /reviews/1\" 503 UF,URX "), "{line}");
        assert!(line.contains(" - route=- attempts=1 c4 -"), "{line}");
    }
}
