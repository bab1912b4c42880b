//! Istio `HTTPMatchRequest` → the engine's [`RouteMatch`].
//!
//! A condition that cannot be expressed faithfully is never silently widened: an invalid regex
//! or an ambiguous string match makes the whole match unusable (reported as an error), and a
//! match that only applies to gateways is left out of the sidecar table, as istiod does.

use trellis_engine::config::{HeaderMatch, QueryParamMatch, RouteMatch, StringMatch};

use crate::diag::Diagnostic;
use crate::istio::common::StringMatchSpec;
use crate::istio::virtual_service::HttpMatchRequest;

/// What became of one `match[]` entry.
pub enum MatchOutcome {
    Use(Box<RouteMatch>),
    /// Applies to gateways only; not part of the sidecar table.
    GatewayOnly,
    /// Could not be translated (diagnostics say why).
    Invalid,
}

/// Translate `m`, found at field path `at`. Diagnostics carry only the field path.
pub fn translate_match(
    m: &HttpMatchRequest,
    at: &str,
    diags: &mut Vec<Diagnostic>,
) -> MatchOutcome {
    if !m.gateways.is_empty() && !m.gateways.iter().any(|g| g == "mesh") {
        return MatchOutcome::GatewayOnly;
    }
    let mut ok = true;
    let mut field =
        |spec: &Option<StringMatchSpec>, name: &str, diags: &mut Vec<Diagnostic>| match spec {
            None => None,
            Some(s) => match string_match(s, &format!("{at}.{name}"), diags) {
                Ok(v) => v,
                Err(InvalidMatch) => {
                    ok = false;
                    None
                }
            },
        };
    let uri = field(&m.uri, "uri", diags);
    let scheme = field(&m.scheme, "scheme", diags);
    let method = field(&m.method, "method", diags);
    let authority = field(&m.authority, "authority", diags);
    let mut headers = Vec::new();
    for (name, spec) in &m.headers {
        match string_match(spec, &format!("{at}.headers.{name}"), diags) {
            Ok(value) => headers.push(HeaderMatch {
                name: name.to_ascii_lowercase(),
                value,
            }),
            Err(InvalidMatch) => ok = false,
        }
    }
    let mut without_headers = Vec::new();
    for (name, spec) in &m.without_headers {
        match presence_or_string_match(spec, &format!("{at}.withoutHeaders.{name}"), diags) {
            Ok(value) => without_headers.push(HeaderMatch {
                name: name.to_ascii_lowercase(),
                value,
            }),
            Err(InvalidMatch) => ok = false,
        }
    }
    let mut query_params = Vec::new();
    for (name, spec) in &m.query_params {
        match string_match(spec, &format!("{at}.queryParams.{name}"), diags) {
            Ok(value) => query_params.push(QueryParamMatch {
                name: name.clone(),
                value,
            }),
            Err(InvalidMatch) => ok = false,
        }
    }
    let port = match m.port {
        None | Some(0) => None,
        Some(p) => match u16::try_from(p) {
            Ok(p) => Some(p),
            Err(_) => {
                diags.push(
                    Diagnostic::error(format!("port {p} is out of range"))
                        .field(format!("{at}.port")),
                );
                ok = false;
                None
            }
        },
    };
    // Decided for the proxy before a match gets here (`client::rule_for_client` on a sidecar,
    // `binding::rule_at_gateway` on a gateway), as pilot's sourceMatchHTTP does.
    if m.source_namespace.is_some() {
        diags.push(
            Diagnostic::warning(
                "sourceNamespace is decided per proxy before matches are translated; ignored here",
            )
            .field(format!("{at}.sourceNamespace")),
        );
    }
    if !ok {
        return MatchOutcome::Invalid;
    }
    MatchOutcome::Use(Box::new(RouteMatch {
        name: m.name.clone(),
        uri,
        ignore_uri_case: m.ignore_uri_case,
        scheme,
        method,
        authority,
        headers,
        without_headers,
        query_params,
        port,
        source_labels: m.source_labels.clone(),
    }))
}

/// A string match that cannot be used (the diagnostic is already pushed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidMatch;

/// `Ok(None)`: an empty match (`{}`), which Istio reads as "present" for headers and query
/// parameters and as "anything" elsewhere.
pub fn string_match(
    spec: &StringMatchSpec,
    at: &str,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<StringMatch>, InvalidMatch> {
    any_string_match(spec, at, false, diags)
}

/// [`string_match`] for a `withoutHeaders` condition, where pilot turns the special regex `*`
/// into a presence match (so the rule needs the header absent).
pub fn presence_or_string_match(
    spec: &StringMatchSpec,
    at: &str,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<StringMatch>, InvalidMatch> {
    any_string_match(spec, at, true, diags)
}

fn any_string_match(
    spec: &StringMatchSpec,
    at: &str,
    presence_allowed: bool,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<StringMatch>, InvalidMatch> {
    let set = [&spec.exact, &spec.prefix, &spec.regex]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if set > 1 {
        diags.push(
            Diagnostic::error("only one of exact, prefix, regex may be set").field(at.to_string()),
        );
        return Err(InvalidMatch);
    }
    if let Some(v) = &spec.exact {
        return Ok(Some(StringMatch::Exact(v.clone())));
    }
    if let Some(v) = &spec.prefix {
        return Ok(Some(StringMatch::Prefix(v.clone())));
    }
    if let Some(re) = &spec.regex {
        // `*` is not RE2: pilot reads it as "present" (canBeConvertedToPresentMatch in
        // pilot/pkg/networking/core/route/route.go, istio/istio#20629). Istio's validation
        // (validateHTTPRouteMatchRequest, pkg/config/validation/virtualservice.go) lets it
        // through for withoutHeaders only; elsewhere `*` stays an invalid regex.
        if re == "*" && presence_allowed {
            return Ok(None);
        }
        if let Err(e) = regex::Regex::new(re) {
            diags.push(
                Diagnostic::error(format!("invalid regex {re:?}: {e}"))
                    .field(format!("{at}.regex")),
            );
            return Err(InvalidMatch);
        }
        return Ok(Some(StringMatch::Regex(re.clone())));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(yaml: &str) -> HttpMatchRequest {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn every_condition_is_mapped() {
        let spec = m(r#"
name: jason
uri: {prefix: /api}
ignoreUriCase: true
method: {exact: GET}
scheme: {exact: https}
authority: {regex: "a.*"}
headers:
  End-User: {exact: jason}
  x-present: {}
withoutHeaders:
  x-debug: {exact: "1"}
queryParams:
  v: {regex: "\\d+"}
port: 9080
sourceLabels: {app: productpage}
"#);
        let mut d = Vec::new();
        let MatchOutcome::Use(r) = translate_match(&spec, "spec.http[0].match[0]", &mut d) else {
            panic!("{d:?}")
        };
        assert!(d.is_empty());
        assert_eq!(r.name.as_deref(), Some("jason"));
        assert_eq!(r.uri, Some(StringMatch::Prefix("/api".into())));
        assert!(r.ignore_uri_case);
        assert_eq!(r.method, Some(StringMatch::Exact("GET".into())));
        assert_eq!(r.scheme, Some(StringMatch::Exact("https".into())));
        assert_eq!(r.authority, Some(StringMatch::Regex("a.*".into())));
        assert_eq!(
            r.headers,
            vec![
                HeaderMatch {
                    name: "end-user".into(),
                    value: Some(StringMatch::Exact("jason".into()))
                },
                HeaderMatch {
                    name: "x-present".into(),
                    value: None
                },
            ]
        );
        assert_eq!(r.without_headers.len(), 1);
        assert_eq!(
            r.query_params[0].value,
            Some(StringMatch::Regex("\\d+".into()))
        );
        assert_eq!(r.port, Some(9080));
        assert_eq!(
            r.source_labels.get("app").map(String::as_str),
            Some("productpage")
        );
    }

    #[test]
    fn bad_regex_and_ambiguous_match_are_invalid() {
        let mut d = Vec::new();
        let bad = m("uri: {regex: \"(\"}");
        assert!(matches!(
            translate_match(&bad, "m", &mut d),
            MatchOutcome::Invalid
        ));
        assert_eq!(d[0].field.as_deref(), Some("m.uri.regex"));
        let both = m("headers: {a: {exact: x, prefix: y}}");
        assert!(matches!(
            translate_match(&both, "m", &mut d),
            MatchOutcome::Invalid
        ));
    }

    #[test]
    fn gateway_only_match_is_left_out() {
        let g = m("gateways: [my-gw]\nuri: {exact: /}");
        assert!(matches!(
            translate_match(&g, "m", &mut Vec::new()),
            MatchOutcome::GatewayOnly
        ));
        let mesh = m("gateways: [my-gw, mesh]");
        assert!(matches!(
            translate_match(&mesh, "m", &mut Vec::new()),
            MatchOutcome::Use(_)
        ));
    }

    /// Istio: `withoutHeaders: {x: {regex: "*"}}` is a presence match, inverted: the rule holds
    /// only when `x` is absent (canBeConvertedToPresentMatch and TranslateRouteMatch in
    /// pilot/pkg/networking/core/route/route.go: present_match with invert_match and no
    /// treat_missing_header_as_empty). Validation (validateHTTPRouteMatchRequest in
    /// pkg/config/validation/virtualservice.go) allows `*` there only; under `headers` or
    /// `queryParams` it is an invalid RE2 regex and the rule is refused.
    #[test]
    fn without_headers_star_regex_is_a_presence_match() {
        let mut d = Vec::new();
        let MatchOutcome::Use(r) = translate_match(
            &m("withoutHeaders: {x-canary: {regex: \"*\"}}"),
            "m",
            &mut d,
        ) else {
            panic!("{d:?}")
        };
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            r.without_headers,
            vec![HeaderMatch {
                name: "x-canary".into(),
                value: None
            }]
        );
        for yaml in [
            "headers: {x: {regex: \"*\"}}",
            "queryParams: {x: {regex: \"*\"}}",
        ] {
            assert!(matches!(
                translate_match(&m(yaml), "m", &mut Vec::new()),
                MatchOutcome::Invalid
            ));
        }
    }
}
