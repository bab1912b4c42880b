//! The pod's annotations as `trellis init` reads them: the Kubernetes downward API's
//! annotations file, which Istio mounts at /etc/istio/pod/annotations (`key="value"` per line,
//! the value quoted and escaped as Go's `%q`). The pairs feed
//! [`super::spec::CaptureOptions::with_annotations`].

use super::CaptureError;

/// Read the Kubernetes downward API's annotations file (`key="value"` per line, the value
/// quoted and escaped as Go's `%q`; Istio mounts it at /etc/istio/pod/annotations).
pub fn parse_downward_api_annotations(text: &str) -> Result<Vec<(String, String)>, CaptureError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |reason: &str| CaptureError::Annotations {
            line: n + 1,
            reason: reason.to_string(),
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| bad("expected key=\"value\""))?;
        let value = unquote(value.trim()).ok_or_else(|| bad("the value is not a quoted string"))?;
        out.push((key.trim().to_string(), value));
    }
    Ok(out)
}

/// Undo Go's `%q` for the escapes annotation values contain.
fn unquote(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downward_api_file() {
        let text = "kubectl.kubernetes.io/default-container=\"app\"\n\
                    traffic.sidecar.istio.io/excludeOutboundIPRanges=\"10.0.0.0/8,172.16.0.0/12\"\n\
                    odd=\"a \\\"quoted\\\" \\\\ value\"\n";
        let parsed = parse_downward_api_annotations(text).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[1].1, "10.0.0.0/8,172.16.0.0/12");
        assert_eq!(parsed[2].1, "a \"quoted\" \\ value");
        let err = parse_downward_api_annotations("a=b\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
