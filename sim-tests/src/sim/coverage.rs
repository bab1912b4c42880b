//! What the generated scenarios cover: every feature of the routing and policy vocabulary (the
//! Istio field and, where it matters, the edge value: an empty prefix, a regex with anchors,
//! weight 0, a `max_ejection_time` that binds ...), and in how many seeds of a range it
//! appears. `trellis sim --coverage A..B` prints the table; a test holds every feature to at
//! least one seed of the CI range, so a field the generator stops producing is noticed.

use std::collections::BTreeMap;

use super::reference;
use super::scenario::{ActionSpec, FaultKind, Load, MatchSpec, Rule, Scenario, StrMatch};

pub use super::coverage_rows::ALL;

fn str_kind(m: &StrMatch) -> &'static str {
    match m {
        StrMatch::Exact(_) => "exact",
        StrMatch::Prefix(_) => "prefix",
        StrMatch::Regex(_) => "regex",
    }
}

fn match_features(m: &MatchSpec, out: &mut Vec<&'static str>) {
    if let Some(u) = &m.uri {
        out.push(match u {
            StrMatch::Exact(_) => "match.uri exact",
            StrMatch::Prefix(_) => "match.uri prefix",
            StrMatch::Regex(_) => "match.uri regex",
        });
        match u {
            StrMatch::Prefix(p) if p.is_empty() || p == "/" => {
                out.push("match.uri prefix \"\" or \"/\"")
            }
            StrMatch::Regex(r) if r.starts_with('^') && r.ends_with('$') => {
                out.push("match.uri regex with ^...$ anchors")
            }
            _ => {}
        }
        if m.ignore_uri_case {
            out.push(match u {
                StrMatch::Regex(_) => "match.ignoreUriCase with regex",
                _ => "match.ignoreUriCase exact/prefix",
            });
        }
    }
    if m.method.is_some() {
        out.push("match.method");
    }
    if let Some(a) = &m.authority {
        out.push("match.authority");
        if matches!(a, StrMatch::Exact(v) if v.contains(':')) {
            out.push("match.authority with port");
        }
    }
    if m.scheme.is_some() {
        out.push("match.scheme");
    }
    for (_, v) in &m.headers {
        out.push(match v {
            None => "match.headers present {}",
            Some(StrMatch::Regex(r)) if r == "*" => "match.headers regex *",
            Some(StrMatch::Exact(e)) if e.is_empty() => "match.headers exact \"\"",
            Some(StrMatch::Prefix(p)) if p.is_empty() => "match.headers prefix \"\"",
            Some(m) => match str_kind(m) {
                "exact" => "match.headers exact",
                "prefix" => "match.headers prefix",
                _ => "match.headers regex",
            },
        });
    }
    for (_, v) in &m.without_headers {
        out.push(match v {
            None => "match.withoutHeaders present",
            Some(StrMatch::Regex(r)) if r == "*" => "match.withoutHeaders present",
            Some(_) => "match.withoutHeaders value",
        });
    }
    for (_, v) in &m.query_params {
        out.push(match v {
            None => "match.queryParams present",
            Some(StrMatch::Regex(r)) if r == "*" => "match.queryParams present",
            Some(_) => "match.queryParams value",
        });
    }
    match m.port {
        Some(super::reference::LISTENER_PORT) => out.push("match.port (listener's)"),
        Some(8080) => out.push("match.port 8080 (the original destination's, with passthrough)"),
        Some(_) => out.push("match.port (another)"),
        None => {}
    }
    out.extend((!m.source_labels.is_empty()).then_some("match.sourceLabels"));
}

fn rule_features(rule: &Rule, out: &mut Vec<&'static str>) {
    let blocks = super::reference::blocks(rule);
    if blocks.is_empty() {
        out.push("match.none (catch-all rule)");
    }
    if rule.user.is_some() {
        out.push("match.x-user exact (original vocabulary)");
    }
    if blocks.len() > 1 {
        out.push("match several blocks (OR)");
    }
    for b in rule.vocab.iter().flat_map(|v| &v.matches) {
        match_features(b, out);
    }
    if let Some(v) = &rule.vocab {
        match &v.action {
            Some(ActionSpec::Redirect {
                uri,
                authority,
                scheme,
                port,
                status,
                prefix_rewrite,
                port_from_request,
            }) => {
                out.push("redirect");
                if prefix_rewrite.is_some() {
                    out.push("redirect prefixRewrite");
                }
                if *port_from_request {
                    out.push("redirect derivePort FROM_REQUEST_PORT");
                }
                if uri.is_some() {
                    out.push("redirect uri");
                }
                if authority.is_some() {
                    out.push("redirect authority");
                }
                match scheme.as_deref() {
                    Some("https") => out.push("redirect scheme change"),
                    Some(_) => out.push("redirect scheme same"),
                    None => {}
                }
                if port.is_some() {
                    out.push("redirect port");
                }
                if matches!(status, 302 | 307 | 308) {
                    out.push("redirect code 302/307/308");
                }
            }
            Some(ActionSpec::Direct { body, .. }) => {
                out.push("directResponse");
                if body.is_some() {
                    out.push("directResponse body");
                }
            }
            None => {}
        }
        if let Some(rw) = &v.rewrite {
            if rw.uri.is_some() {
                out.push("rewrite uri");
                if v.matches.iter().all(|m| m.uri.is_none()) {
                    out.push("rewrite uri on a rule without uri match");
                }
            }
            if rw.uri_regex.is_some() {
                out.push("rewrite uriRegexRewrite");
            }
            if rw.authority.is_some() {
                out.push("rewrite authority");
            }
        }
        if let Some(e) = &v.edits {
            if !e.request.is_empty() {
                out.push("headers request set/add/remove");
            }
            if !e.response.is_empty() {
                out.push("headers response set/add/remove");
            }
        }
        if !v.dest_edits.is_empty() {
            out.push("destination headers");
        }
    }
    if rule.forwards() {
        let ws: Vec<u32> = rule.dests.iter().map(|(_, w)| *w).collect();
        if ws.len() == 1 {
            out.push("weights: one destination");
        } else {
            if ws.contains(&0) {
                out.push("weights: weight 0 next to positive");
            }
            if ws.contains(&1) && ws.contains(&99) {
                out.push("weights: 1 against 99");
            }
            if ws.iter().all(|w| *w <= 3) {
                out.push("weights: all small (<= 3)");
            }
            if ws.len() >= 4 {
                out.push("weights: 4 or more destinations");
            }
        }
    }
    if rule.timeout_ms.is_some() {
        out.push("timeout");
    }
    if let Some(rt) = &rule.retries {
        for (on, name) in [
            (rt.on_5xx, "retries 5xx"),
            (rt.on_gateway_error, "retries gateway-error"),
            (rt.on_retriable_4xx, "retries retriable-4xx"),
            (
                !rt.status_codes.is_empty(),
                "retries retriable-status-codes",
            ),
            (rt.on_connect_failure, "retries connect-failure"),
            (rt.on_reset, "retries reset"),
            (rt.on_refused_stream, "retries refused-stream"),
            (rt.per_try_ms.is_some(), "retries perTryTimeout"),
            (rt.attempts == 0, "retries attempts 0"),
        ] {
            if on {
                out.push(name);
            }
        }
    }
    if let Some(f) = &rule.fault {
        if f.delay_percent > 0 {
            out.push("fault delay");
        }
        if f.abort_percent > 0 {
            out.push(match f.grpc_status {
                None => "fault abort",
                Some(_) => "fault abort grpcStatus",
            });
        }
    }
}

/// The features one scenario has.
pub fn features(scn: &Scenario) -> Vec<&'static str> {
    let mut out = Vec::new();
    let rules = scn
        .services
        .iter()
        .flat_map(|s| &s.rules)
        .chain(scn.config_pushes.iter().flat_map(|p| &p.rules));
    for rule in rules {
        rule_features(rule, &mut out);
    }
    // `match[].name`: the model names the blocks of every other rule of a service.
    let named = |rules: &[Rule]| {
        rules
            .iter()
            .enumerate()
            .any(|(r, rule)| r % 2 == 1 && !reference::blocks(rule).is_empty())
    };
    if scn.services.iter().any(|s| named(&s.rules))
        || scn.config_pushes.iter().any(|p| named(&p.rules))
    {
        out.push("match name");
    }
    out.extend((scn.requests.as_ref()).and_then(super::path_dirt::coverage_row));
    out.extend(super::cors::coverage_rows(scn));
    for svc in &scn.services {
        if !svc.calls.is_empty() {
            out.push("two- or three-tier meshes");
        }
        for ver in &svc.versions {
            out.push(match ver.lb {
                0 => "lb ROUND_ROBIN",
                1 => "lb LEAST_REQUEST",
                2 => "lb RANDOM",
                4 => "lb consistentHash ring hash",
                5 => "lb consistentHash maglev",
                _ => "lb unset (Istio default)",
            });
            if ver
                .outlier
                .as_ref()
                .is_some_and(|o| o.min_health_percent > 0)
            {
                out.push("outlier minHealthPercent (panic mode)");
                if ver.locality.is_some() {
                    out.push("outlier minHealthPercent with localities (panic per priority)");
                }
            }
            out.extend(
                ver.locality
                    .as_ref()
                    .map(super::locality::LocalitySpec::coverage_row),
            );
            if ver.upstream_idle_ms.is_some() {
                out.push("pool idleTimeout of milliseconds");
            }
            if ver.max_retries.is_some() {
                out.push("pool maxRetries (retry budget)");
            }
            if ver.least_request_choices.is_some() {
                out.push("lb LEAST_REQUEST with 3 to 5 choices");
            }
            let w0 = ver.endpoints.first().map_or(1, |e| e.weight);
            if ver.endpoints.iter().any(|e| e.weight != w0) {
                out.push("endpoint weights uneven");
            }
            if let Some(o) = &ver.outlier {
                if o.consecutive_5xx > 0 {
                    out.push("outlierDetection consecutive5xx");
                }
                if o.consecutive_gateway_errors > 0 {
                    out.push("outlierDetection consecutiveGatewayErrors");
                }
                if o.split_local_origin.is_some() {
                    out.push("outlierDetection split local-origin");
                }
                if o.max_ejection_ms
                    .is_some_and(|m| m < o.base_ejection_ms * 4)
                {
                    out.push("outlierDetection maxEjectionTime binding");
                }
            }
            if let Some(p) = &ver.pool {
                out.push("connectionPool");
                if p.max_requests_per_connection > 0 {
                    out.push("connectionPool maxRequestsPerConnection");
                }
                if p.max_requests > 0 {
                    out.push("connectionPool http2MaxRequests");
                }
            }
            for ep in &ver.endpoints {
                if ep.error_percent > 0 && matches!(ep.error_status, 500 | 502 | 504 | 409) {
                    out.push("server error statuses 500/502/504/409");
                }
                if ep.garbage_percent > 0 {
                    out.push("server garbage");
                }
                if ep.hang_percent > 0 {
                    out.push("server hangs");
                }
                if ep.trickle_percent > 0 {
                    out.push("slow-loris servers");
                }
                if ep.tail_percent > 0 {
                    out.push("long-tailed service times");
                }
            }
        }
    }
    for f in &scn.faults {
        out.push(match f.kind {
            FaultKind::Crash(_) => "fault crash",
            FaultKind::Hang(_) => "fault hang",
            FaultKind::Slow(..) => "fault slow",
            FaultKind::Partition { .. } => "fault partition",
            FaultKind::CallerPartition { .. } => "fault caller partition",
        });
    }
    if scn.net.loss_percent > 0 {
        out.push("network loss");
    }
    if scn.net.reset_permille > 0 {
        out.push("network resets");
    }
    if scn.net.client_read_bpms > 0 {
        out.push("backpressure (slow clients)");
    }
    if !scn.config_pushes.is_empty() {
        out.push("config churn");
    }
    if scn.config_pushes.iter().any(|p| p.stream_idle_ms.is_some()) {
        out.push("config churn shortening stream idle");
    }
    if scn.framing.is_some() {
        out.push("chunked request bodies");
        out.push("chunked responses");
    }
    if let Some(m) = &scn.messages {
        // Requests with the routing vocabulary keep their drawn method.
        if m.head_percent > 0 && scn.requests.is_none() {
            out.push("HEAD requests");
        }
        if m.close_percent > 0 {
            out.push("responses with connection: close");
        }
        if m.until_close_percent > 0 {
            out.push("response bodies delimited by the close");
            if m.cut_percent > 0 {
                out.push("response bodies delimited by the close, cut by a reset");
            }
        }
    }
    if scn.interim.is_some() {
        out.push("interim answers (103 Early Hints)");
    }
    if let Some(c) = &scn.connections {
        let rows = [
            (c.reuse_percent, "client connections kept alive and reused"),
            // Only open-loop clients that read at once pipeline.
            (
                c.pipeline_percent
                    * u8::from(
                        scn.net.client_read_bpms == 0
                            && scn
                                .clients
                                .iter()
                                .any(|k| matches!(k.load, Load::Open { .. })),
                    ),
                "pipelined requests",
            ),
            (c.close_percent, "requests with connection: close"),
            (c.http10_percent, "HTTP/1.0 requests"),
            (
                c.http10_percent.min(c.http10_keep_alive_percent),
                "HTTP/1.0 requests with keep-alive",
            ),
            (
                c.after_close_percent
                    .min(c.close_percent.max(c.http10_percent)),
                "requests written after their connection was ended",
            ),
            (
                c.drop_idle_percent,
                "idle client connections closed by the client",
            ),
        ];
        out.extend(rows.iter().filter(|(p, _)| *p > 0).map(|(_, row)| *row));
    }
    if scn.inbound_listener {
        out.push("listener direction inbound");
    }
    if scn.passthrough && scn.requests.is_some() {
        out.push("listener passthrough (ALLOW_ANY) with unknown hosts");
    }
    if scn.passthrough && !scn.inbound_listener && scn.requests.is_some() {
        out.push("outbound capture: redirected connections sniffed before the HTTP codec");
    }
    if let Some(h) = &scn.http {
        out.push("HTTP limits and timeouts set");
        if h.probe_percent > 0 && scn.requests.is_some() {
            out.push("head limits probed (414/431 edges)");
        }
        if h.retry_buffer_bytes < 3000 {
            out.push("retry buffer smaller than some bodies");
        }
        if h.header_read_timeout_ms < 10 || h.idle_timeout_ms < 10 {
            out.push("header-read/idle timeouts of milliseconds");
        }
    }
    if let Some(v) = &scn.requests {
        if v.wildcards.iter().any(|(p, _)| p != "*") {
            out.push("hosts: wildcard domains");
        }
        if v.wildcards.iter().any(|(p, _)| p == "*") {
            out.push("hosts: catch-all *");
        }
    }
    for c in &scn.clients {
        out.push(match c.load {
            Load::Open { .. } => "open-loop clients",
            Load::Closed { .. } => "closed-loop clients",
        });
    }
    out.extend(
        scn.mirror
            .iter()
            .flat_map(super::mirror::MirrorSpec::coverage_rows),
    );
    out.extend(scn.tcp.iter().flat_map(super::tcp::TcpSpec::coverage_rows));
    out.extend((scn.gateway.iter()).flat_map(super::gateway::GatewaySpec::coverage_rows));
    if scn.security.as_ref().is_some_and(|s| s.jwt.is_some()) {
        out.push("RequestAuthentication (JWT, security world)");
    }
    let external_tls = |s: &super::mtls::SecuritySpec| {
        (s.callers.iter()).any(|c| c.kind == super::mtls::spec::CallerKind::ExternalTls)
    };
    if scn.security.as_ref().is_some_and(external_tls) {
        out.push("TLS clients outside the mesh, no Istio ALPN (security world)");
    }
    out.sort_unstable();
    out.dedup();
    debug_assert!(out.iter().all(|f| ALL.contains(f)), "{out:?}");
    out
}

/// Feature → seeds of `seeds` whose scenario has it (every feature of [`ALL`] listed).
pub fn seeds_per_feature(seeds: std::ops::Range<u64>) -> BTreeMap<&'static str, u64> {
    let mut counts: BTreeMap<&'static str, u64> = ALL.iter().map(|f| (*f, 0)).collect();
    for seed in seeds {
        for f in features(&Scenario::from_seed(seed)) {
            *counts.entry(f).or_default() += 1;
        }
    }
    counts
}

/// The coverage table as text: one line per feature in [`ALL`] order.
pub fn table(seeds: std::ops::Range<u64>) -> String {
    let n = seeds.end - seeds.start;
    let counts = seeds_per_feature(seeds.clone());
    let mut out = format!(
        "feature{:>38}seeds of {}..{} ({n})\n",
        "", seeds.start, seeds.end
    );
    for f in ALL {
        let c = counts.get(f).copied().unwrap_or(0);
        out.push_str(&format!(
            "{f:<45}{c:>6}  {:>5.1} %\n",
            100.0 * c as f64 / n.max(1) as f64
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    /// Every feature of the vocabulary appears in the CI seed range: a field the generator
    /// stops producing (or never produced) fails here, not silently.
    #[test]
    fn every_feature_appears_in_the_ci_seed_range() {
        let counts = super::seeds_per_feature(0..500);
        let missing: Vec<_> = counts.iter().filter(|(_, c)| **c == 0).collect();
        assert!(
            missing.is_empty(),
            "never generated in seeds 0..500: {missing:?}"
        );
    }
}
