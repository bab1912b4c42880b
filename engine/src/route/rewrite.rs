//! What a matched route does to the request: path rewrite, redirect location, header edits.
//!
//! Istio semantics (HTTPRewrite, HTTPRedirect, Headers.HeaderOperations) with Envoy's details:
//! - `rewrite.uri` is Envoy's `prefix_rewrite`: it replaces the matched prefix when the
//!   RouteMatch that matched used a uri `Prefix`, the whole path for an exact or regex uri, and
//!   the leading `/` when the match had no uri condition (pilot's default match is `prefix: /`); `uri_regex` is a replace-all of an UNANCHORED regex on
//!   the path (Envoy `regex_rewrite`), with RE2 `\1` groups. The query string always survives.
//! - A redirect keeps what it does not override. Like Envoy, when only the scheme changes and
//!   the request's port was the old scheme's default (`http://a:80` → https), that port is
//!   dropped; a configured port replaces the request's port.
//! - Header edits run remove, then set, then add (Envoy's `HeaderParser` order). `Router::new` rejects invalid names and values
//!   (and edits of `host`, which only `rewrite.authority` may change), so skipping invalid
//!   entries at run time is a formality.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};

use crate::http1::{valid_value, FieldName, Fields};

use crate::config::{HeaderOps, Redirect};

use super::error::{Location, RouteError};
use super::matcher::{REGEX_DFA_LIMIT, REGEX_SIZE_LIMIT};
use super::vhost::strip_port;

/// Builds the unanchored, size-bounded regex of a `uri_regex` rewrite.
pub(crate) fn compile_rewrite_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

/// Converts an RE2 rewrite template (`\1`, `\\`) to the `regex` crate's syntax (`${1}`, with
/// literal `$` escaped as `$$`). A backslash before anything else is kept literally.
pub(crate) fn convert_template(template: &str) -> String {
    let mut out = String::with_capacity(template.len() + 8);
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    chars.next();
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            other => out.push(other),
        }
    }
    out
}

/// Splits `path` into the path proper and `?query` (the `?` included), if any.
pub(crate) fn split_query(path: &str) -> (&str, &str) {
    match path.find('?') {
        Some(i) => (path.get(..i).unwrap_or(path), path.get(i..).unwrap_or("")),
        None => (path, ""),
    }
}

/// Appends the original `?query` to a rewritten path. If the new path already carries a query,
/// the original parameters follow it after `&`.
pub(crate) fn with_query(mut new_path: String, query: &str) -> String {
    if let Some(params) = query.strip_prefix('?') {
        new_path.push(if new_path.contains('?') { '&' } else { '?' });
        new_path.push_str(params);
    }
    new_path
}

/// The path after a `rewrite.uri`: `prefix` is the uri Prefix the request matched on (and
/// whether it matched ignoring case), if it matched on one. If the path does not actually start
/// with that prefix (a caller passing another path), the whole path is replaced.
pub(crate) fn prefix_rewrite(
    path: &str,
    replacement: &str,
    prefix: Option<(&str, bool)>,
) -> String {
    let (p, query) = split_query(path);
    let rest = prefix.and_then(|(pre, ignore_case)| {
        let head = p.get(..pre.len())?;
        let same = if ignore_case {
            head.eq_ignore_ascii_case(pre)
        } else {
            head == pre
        };
        same.then(|| p.get(pre.len()..)).flatten()
    });
    let mut out = String::with_capacity(replacement.len() + p.len() + query.len());
    out.push_str(replacement);
    #[cfg(feature = "mutants")]
    let rest = match rest {
        Some(_) if crate::mutants::route().rewrite_keeps_prefix => Some(p),
        other => other,
    };
    if let Some(rest) = rest {
        out.push_str(rest);
    }
    with_query(out, query)
}

/// The path after a `uri_regex` rewrite with a compiled `re` and an RE2 `template`.
pub(crate) fn regex_rewrite(path: &str, re: &regex::Regex, template: &str) -> String {
    let (p, query) = split_query(path);
    let rewritten = re.replace_all(p, convert_template(template).as_str());
    with_query(rewritten.into_owned(), query)
}

fn default_port(scheme: &str) -> Option<&'static str> {
    if scheme.eq_ignore_ascii_case("http") {
        Some("80")
    } else if scheme.eq_ignore_ascii_case("https") {
        Some("443")
    } else {
        None
    }
}

/// The redirect status to send: `redirect.status`, or Istio's default 301 when unset (0).
pub fn redirect_status(redirect: &Redirect) -> u16 {
    if redirect.status == 0 {
        301
    } else {
        redirect.status
    }
}

/// Location for a redirect: scheme/authority/port/uri replaced as configured, else kept from the
/// request (Istio HTTPRedirect semantics). `path` is the request target (with any query); a
/// configured `uri` replaces the path and keeps the request's query unless it has its own.
pub fn redirect_location(redirect: &Redirect, scheme: &str, authority: &str, path: &str) -> String {
    if redirect.require_tls {
        return format!("https://{authority}{path}");
    }
    let new_scheme = redirect.scheme.as_deref().unwrap_or(scheme);
    let host = match &redirect.authority {
        Some(a) if redirect.port.is_some() => strip_port(a).unwrap_or(a),
        Some(a) => a.as_str(),
        None => match strip_port(authority) {
            Some(name) => {
                let port = authority.get(name.len() + 1..).unwrap_or("");
                let scheme_changed = !new_scheme.eq_ignore_ascii_case(scheme);
                let drop_port = redirect.port.is_some()
                    || (scheme_changed && default_port(scheme) == Some(port));
                #[cfg(feature = "mutants")]
                let drop_port = drop_port
                    && !(crate::mutants::route().redirect_keeps_request_port
                        && redirect.port.is_some());
                if drop_port {
                    name
                } else {
                    authority
                }
            }
            None => authority,
        },
    };
    let (req_path, query) = split_query(path);
    let new_path = match &redirect.uri {
        Some(uri) if uri.contains('?') => uri.clone(),
        Some(uri) => with_query(uri.clone(), query),
        None if req_path.is_empty() => with_query("/".to_owned(), query),
        None => path.to_owned(),
    };
    match redirect.port {
        Some(port) => format!("{new_scheme}://{host}:{port}{new_path}"),
        None => format!("{new_scheme}://{host}{new_path}"),
    }
}

/// Applies `ops` to `headers` as Envoy's `HeaderParser` does: remove first ("remove-before-add
/// is the default behaviour users expect"), then set (overwrite), then add (append). Invalid
/// names or values are skipped (`Router::new` already rejects them; the value check left here
/// is a vectorised scan that keeps a line break out of the head whatever path the ops took).
pub fn apply_header_ops(ops: &HeaderOps, headers: &mut Fields) {
    for name in &ops.remove {
        headers.remove(name.as_str());
    }
    let field = |name: &str, value: &str| {
        let name = FieldName::new(name)?;
        valid_value(value.as_bytes()).then(|| (name, Bytes::copy_from_slice(value.as_bytes())))
    };
    for (name, value) in &ops.set {
        if let Some((n, v)) = field(name, value) {
            headers.insert(n, v);
        }
    }
    for (name, value) in &ops.add {
        if let Some((n, v)) = field(name, value) {
            #[cfg(feature = "mutants")]
            if crate::mutants::route().header_add_overwrites {
                headers.insert(n, v);
                continue;
            }
            headers.append(n, v);
        }
    }
}

/// Checks that every header edit in `ops` is applicable; `request` side edits may not touch
/// `host` (Envoy refuses that too; `rewrite.authority` is the way to change it).
pub(crate) fn validate_header_ops(
    ops: &HeaderOps,
    at: &Location,
    field: &str,
    request: bool,
) -> Result<(), RouteError> {
    let check_name = |name: &str| -> Result<(), RouteError> {
        let parsed =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| RouteError::InvalidHeaderName {
                at: Box::new(at.clone()),
                field: field.to_owned(),
                name: name.to_owned(),
            })?;
        if request && parsed == http::header::HOST {
            return Err(RouteError::ProtectedHeader {
                at: Box::new(at.clone()),
                field: field.to_owned(),
                name: name.to_owned(),
            });
        }
        Ok(())
    };
    for (name, value) in ops.set.iter().chain(&ops.add) {
        check_name(name)?;
        if HeaderValue::from_str(value).is_err() {
            return Err(RouteError::InvalidHeaderValue {
                at: Box::new(at.clone()),
                field: field.to_owned(),
                name: name.clone(),
                value: value.clone(),
            });
        }
    }
    ops.remove.iter().try_for_each(|n| check_name(n))
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
