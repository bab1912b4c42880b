//! What a verified token tells the rest of the request: Envoy's `jwt_authn` dynamic metadata
//! (`payload_in_metadata: payload`, the payload as a struct, with the space-delimited claims
//! split into lists, `authenticator.cc` `setPayloadMetadata`), which AuthorizationPolicy's
//! `requestPrincipals` and `request.auth.*` match; and the claim values Envoy copies into
//! headers (`addJWTClaimToHeader`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

/// The payload of the verified token, as authorization sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JwtPayload(Map<String, Value>);

impl JwtPayload {
    /// The payload with each of `space_delimited` that holds a string turned into the list of
    /// its space-separated words (a string of spaces only stays as it is, as in Envoy).
    pub fn normalized(mut payload: Map<String, Value>, space_delimited: &[String]) -> JwtPayload {
        for claim in space_delimited {
            let Some(Value::String(text)) = payload.get(claim) else {
                continue;
            };
            let words: Vec<Value> = text
                .split(' ')
                .filter(|w| !w.is_empty())
                .map(|w| Value::String(w.to_string()))
                .collect();
            if !words.is_empty() {
                payload.insert(claim.clone(), Value::Array(words));
            }
        }
        JwtPayload(payload)
    }

    /// The claim at `path` (each step a key of a nested object).
    pub fn get<S: AsRef<str>>(&self, path: &[S]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut value = self.0.get(first.as_ref())?;
        for key in rest {
            value = value.as_object()?.get(key.as_ref())?;
        }
        Some(value)
    }

    /// `request.auth.principal`: `<iss>/<sub>`.
    pub fn principal(&self) -> String {
        let text = |k: &str| self.0.get(k).and_then(Value::as_str).unwrap_or("");
        format!("{}/{}", text("iss"), text("sub"))
    }

    pub fn claims(&self) -> &Map<String, Value> {
        &self.0
    }
}

/// The header value Envoy writes for claim `name` (`a.b` reaches into nested objects):
/// strings as they are, whole non-negative numbers as integers and other numbers as C's `%f`,
/// booleans as `true`/`false`, objects and lists as base64 of their JSON. `None` when the
/// claim is absent, null, or the empty string.
pub fn claim_header_value(payload: &Map<String, Value>, name: &str) -> Option<String> {
    let mut steps = name.split('.');
    let mut value = payload.get(steps.next()?)?;
    for key in steps {
        value = value.as_object()?.get(key)?;
    }
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(whole), _) => whole.to_string(),
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => {
                (f as u64).to_string()
            }
            (None, Some(f)) => format!("{f:.6}"),
            (None, None) => return None,
        },
        Value::Bool(b) => b.to_string(),
        Value::Object(_) | Value::Array(_) => STANDARD.encode(value.to_string()),
        Value::Null => return None,
    };
    (!text.is_empty()).then_some(text)
}
