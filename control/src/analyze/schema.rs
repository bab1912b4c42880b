//! IST0106 SchemaValidationError: what istiod's validation webhook would reject, checked on
//! resources the loader could read (what it could not read is reported by [`super::input`]).
//!
//! Wording follows istiod's validation (`pkg/config/validation`) where it is known: weights
//! (`percentage 888 is not in range 0..100`, `total destination weight 1887 != 100`), regexes
//! (`"uri": <error>; Istio uses RE2 style regex-based match (...)`), conflicting actions
//! (`HTTP route cannot contain both route and redirect`), durations (`duration must be greater
//! than 1ms`). Each message carries the field path of what it is about.

use std::time::Duration;

use super::input::Inputs;
use super::message::{schema_error, Message};
use crate::istio::common::{Percent, StringMatchSpec};
use crate::istio::duration::IstioDuration;
use crate::istio::virtual_service::{HttpMatchRequest, HttpRoute};
use crate::istio::{Resource, VirtualServiceSpec};

/// Run the schema checks on every VirtualService.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    for vs in &inputs.resources.virtual_services {
        let mut found = Vec::new();
        virtual_service(vs, &mut found);
        out.extend(found.into_iter().map(|m| inputs.blame(&vs.source, m)));
    }
}

fn virtual_service(vs: &Resource<VirtualServiceSpec>, out: &mut Vec<Message>) {
    let spec = &vs.spec;
    // No hosts makes a delegate (ValidateVirtualService in pkg/config/validation/validation.go).
    let delegate = spec.hosts.is_empty();
    if delegate {
        let mut not_in_delegate = |present: bool, msg: &str, field: &str| {
            if present {
                out.push(schema_error(msg).field(field.to_string()));
            }
        };
        not_in_delegate(
            !spec.gateways.is_empty(),
            "delegate virtual service must have no gateways specified",
            "spec.gateways",
        );
        not_in_delegate(
            !spec.tls.is_empty(),
            "delegate virtual service must have no tls route specified",
            "spec.tls",
        );
        not_in_delegate(
            !spec.tcp.is_empty(),
            "delegate virtual service must have no tcp route specified",
            "spec.tcp",
        );
    }
    let mesh = spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh");
    for (i, host) in spec.hosts.iter().enumerate() {
        if mesh && host == "*" {
            out.push(
                schema_error(
                    "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                )
                .field(format!("spec.hosts[{i}]")),
            );
        }
    }
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        out.push(schema_error(
            "http, tcp or tls must be provided in virtual service",
        ));
    }
    for (i, rule) in spec.http.iter().enumerate() {
        http_route(rule, delegate, &format!("spec.http[{i}]"), out);
    }
}

/// What a rule that routes may not combine (validateHTTPRouteConflict).
fn route_conflicts(rule: &HttpRoute, conflict: &mut impl FnMut(&str)) {
    let has_route = !rule.route.is_empty();
    if rule.redirect.is_some() {
        if has_route {
            conflict("HTTP route cannot contain both route and redirect");
        }
        if rule.fault.is_some() {
            conflict("HTTP route cannot contain both fault and redirect");
        }
        if rule.rewrite.is_some() {
            conflict("HTTP route rule cannot contain both rewrite and redirect");
        }
        if rule.direct_response.is_some() {
            conflict("HTTP route cannot contain both redirect and direct response");
        }
    }
    if rule.direct_response.is_some() && has_route {
        conflict("HTTP route cannot contain both route and direct response");
    }
    if !has_route && rule.redirect.is_none() && rule.direct_response.is_none() {
        conflict("HTTP route, redirect or direct response is required");
    }
}

/// validateHTTPRoute and validateHTTPRouteConflict (pkg/config/validation/virtualservice.go):
/// a root rule (one with `delegate`) may carry nothing that routes; a delegate's rules may not
/// delegate again.
fn http_route(rule: &HttpRoute, in_delegate: bool, at: &str, out: &mut Vec<Message>) {
    let mut conflict = |msg: &str| out.push(schema_error(msg).field(at.to_string()));
    if rule.delegate.is_some() && !in_delegate {
        let name = rule.name.as_deref().unwrap_or_default();
        if rule.redirect.is_some() {
            conflict(&format!("root HTTP route {name} must not specify redirect"));
        }
        if !rule.route.is_empty() {
            conflict(&format!("root HTTP route {name} must not specify route"));
        }
    } else {
        if rule.delegate.is_some() {
            conflict("delegate HTTP route cannot contain delegate");
        }
        route_conflicts(rule, &mut conflict);
    }
    weights(rule, at, out);
    for (i, m) in rule.matches.iter().enumerate() {
        http_match(m, &format!("{at}.match[{i}]"), out);
    }
    duration(rule.timeout, &format!("{at}.timeout"), out);
    if let Some(r) = &rule.retries {
        if r.attempts.is_some_and(|a| a < 0) {
            out.push(
                schema_error("attempts cannot be negative").field(format!("{at}.retries.attempts")),
            );
        }
        duration(
            r.per_try_timeout,
            &format!("{at}.retries.perTryTimeout"),
            out,
        );
    }
    if let Some(f) = &rule.fault {
        if let Some(d) = &f.delay {
            percent(d.percentage, &format!("{at}.fault.delay.percentage"), out);
        }
        if let Some(a) = &f.abort {
            percent(a.percentage, &format!("{at}.fault.abort.percentage"), out);
        }
    }
    if let Some(p) = rule.mirror_percentage.filter(|p| p.value > 100.0) {
        out.push(
            schema_error(format!(
                "mirror_percentage must have a max value of 100 (it has {:.6})",
                p.value
            ))
            .field(format!("{at}.mirrorPercentage")),
        );
    }
}

/// Each weight in 0..=100 and, with several destinations, a total of 100.
fn weights(rule: &HttpRoute, at: &str, out: &mut Vec<Message>) {
    let mut total: i64 = 0;
    for (j, d) in rule.route.iter().enumerate() {
        let w = d.weight.unwrap_or(0);
        if !(0..=100).contains(&w) {
            out.push(
                schema_error(format!("percentage {w} is not in range 0..100"))
                    .field(format!("{at}.route[{j}].weight")),
            );
        }
        total += i64::from(w);
    }
    if rule.route.len() > 1 && total != 100 {
        out.push(
            schema_error(format!("total destination weight {total} != 100"))
                .field(format!("{at}.route")),
        );
    }
}

fn percent(p: Option<Percent>, at: &str, out: &mut Vec<Message>) {
    if let Some(p) = p.filter(|p| !(0.0..=100.0).contains(&p.value)) {
        out.push(
            schema_error(format!("percentage {} is not in range 0..100", p.value))
                .field(at.to_string()),
        );
    }
}

/// istiod's `ValidateDuration`: at least 1ms, millisecond precision (zero means unset).
fn duration(d: Option<IstioDuration>, at: &str, out: &mut Vec<Message>) {
    let Some(IstioDuration(d)) = d.filter(|d| !d.0.is_zero()) else {
        return;
    };
    let problem = if d < Duration::from_millis(1) {
        "duration must be greater than 1ms"
    } else if d.subsec_nanos() % 1_000_000 != 0 {
        "only durations to ms precision are supported"
    } else {
        return;
    };
    out.push(schema_error(problem).field(at.to_string()));
}

fn http_match(m: &HttpMatchRequest, at: &str, out: &mut Vec<Message>) {
    let singles = [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ];
    for (name, spec) in singles {
        if let Some(spec) = spec {
            string_match(spec, name, &format!("{at}.{name}"), out);
        }
    }
    let maps = [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
        ("queryParams", &m.query_params),
    ];
    for (name, map) in maps {
        for (key, spec) in map {
            // `*` is pilot's presence match there (validateHTTPRouteMatchRequest,
            // pkg/config/validation/virtualservice.go).
            if name == "withoutHeaders" && spec.regex.as_deref() == Some("*") {
                continue;
            }
            string_match(
                spec,
                &format!("{name}.{key}"),
                &format!("{at}.{name}.{key}"),
                out,
            );
        }
    }
}

/// One `StringMatch`: exactly one of exact/prefix/regex, and a regex that compiles.
fn string_match(spec: &StringMatchSpec, where_: &str, at: &str, out: &mut Vec<Message>) {
    let set: Vec<&str> = [
        ("exact", spec.exact.is_some()),
        ("prefix", spec.prefix.is_some()),
        ("regex", spec.regex.is_some()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| *n)
    .collect();
    if set.len() > 1 {
        out.push(
            schema_error(format!(
                "{where_:?}: only one of exact, prefix or regex may be set (found {})",
                set.join(", ")
            ))
            .field(at.to_string()),
        );
    }
    let Some(re) = &spec.regex else {
        return;
    };
    let problem = if re.is_empty() {
        "regex string match should not be empty".to_string()
    } else if re.len() > 1024 {
        "regex is too large, max length allowed is 1024".to_string()
    } else if let Err(e) = regex::Regex::new(re) {
        format!(
            "error parsing regexp: {}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)",
            regex_problem(&e)
        )
    } else {
        return;
    };
    out.push(schema_error(format!("{where_:?}: {problem}")).field(format!("{at}.regex")));
}

/// The `regex` crate's multi-line error, on one line: its last line says what is wrong.
fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&text);
    last.trim().trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    //! The istio.io examples for this module's codes.
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    #[test]
    fn ist0106_weights_docs_example() {
        let text = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings-bogus-weight-default
  namespace: default
spec:
  hosts:
  - ratings
  http:
  - route:
    - destination:
        host: ratings
        subset: v1
      weight: 999
    - destination:
        host: ratings
        subset: v2
      weight: 888
"#;
        let a = analyze_str(text, "w.yaml");
        let got = lines(&a, "IST0106");
        assert_eq!(
        got,
        vec![
            "Error [IST0106] (VirtualService ratings-bogus-weight-default.default) Schema validation error: percentage 888 is not in range 0..100",
            "Error [IST0106] (VirtualService ratings-bogus-weight-default.default) Schema validation error: percentage 999 is not in range 0..100",
            "Error [IST0106] (VirtualService ratings-bogus-weight-default.default) Schema validation error: total destination weight 1887 != 100",
        ]
    );
        let fields: Vec<_> = a
            .with_code("IST0106")
            .map(|m| m.field.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            fields,
            vec![
                "spec.http[0].route[1].weight",
                "spec.http[0].route[0].weight",
                "spec.http[0].route"
            ]
        );
    }

    #[test]
    fn ist0106_matches_actions_and_durations() {
        let text = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad}
spec:
  hosts: ["*"]
  http:
  - match:
    - uri: {prefix: /a, exact: /a}
      headers:
        end-user: {regex: "(jason"}
    route:
    - destination: {host: a}
    redirect: {uri: /b}
  - match:
    - uri: {regex: ""}
    timeout: 500us
    retries: {attempts: -1, perTryTimeout: 1500500us}
    directResponse: {status: 503}
  - {}
"#;
        let a = analyze_str(text, "bad.yaml");
        let got: Vec<String> = a
            .with_code("IST0106")
            .map(|m| format!("{} | {}", m.field.clone().unwrap_or_default(), m.message))
            .collect();
        let want = [
        r#"spec.http[0].match[0].headers.end-user.regex | Schema validation error: "headers.end-user": error parsing regexp: unclosed group; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"#,
        r#"spec.http[0].match[0].uri | Schema validation error: "uri": only one of exact, prefix or regex may be set (found exact, prefix)"#,
        r#"spec.http[1].match[0].uri.regex | Schema validation error: "uri": regex string match should not be empty"#,
        "spec.http[1].retries.attempts | Schema validation error: attempts cannot be negative",
        "spec.http[1].timeout | Schema validation error: duration must be greater than 1ms",
        "spec.http[1].retries.perTryTimeout | Schema validation error: only durations to ms precision are supported",
        "spec.http[0] | Schema validation error: HTTP route cannot contain both route and redirect",
        "spec.http[2] | Schema validation error: HTTP route, redirect or direct response is required",
        "spec.hosts[0] | Schema validation error: wildcard host * is not allowed for virtual services bound to the mesh gateway",
    ];
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want_sorted: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted, "{a}");
    }
}
