//! One analyzer finding in Istio's shape: a level, an `IST` code, the resource it blames, and
//! the message text from Istio's own template (`pkg/config/analysis/msg/messages.yaml`).
//!
//! The printed form is exactly `istioctl analyze`'s: `<Level> [<code>] (<Kind name.namespace>
//! <file:line>) <message>`, with the file reference only where the resource came from a file
//! (istioctl prints one for local files too), and the JSON form uses istioctl's keys (`code`,
//! `level`, `message`, `origin`, `reference`, `documentationUrl`) plus our `field` path.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Istio's analysis message levels, most severe first (so `Ord` sorts as istioctl does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Level {
    Error,
    Warning,
    Info,
}

impl Level {
    /// Whether a message at this level reaches `threshold` (`Warning` reaches `Info`).
    pub fn at_least(self, threshold: Level) -> bool {
        self <= threshold
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Error => "Error",
            Level::Warning => "Warning",
            Level::Info => "Info",
        })
    }
}

/// A level name that is not `error`, `warning` or `info`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {0:?} (expected error, warning or info)")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;

    /// Case-insensitive, as istioctl's `--failure-threshold` accepts.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(Level::Error),
            "warning" => Ok(Level::Warning),
            "info" => Ok(Level::Info),
            _ => Err(UnknownLevel(s.to_string())),
        }
    }
}

/// An Istio analyzer message type: code, level and name as istio.io documents them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    pub code: &'static str,
    pub level: Level,
    pub name: &'static str,
}

pub const REFERENCED_RESOURCE_NOT_FOUND: Code = Code {
    code: "IST0101",
    level: Level::Error,
    name: "ReferencedResourceNotFound",
};
pub const SCHEMA_VALIDATION_ERROR: Code = Code {
    code: "IST0106",
    level: Level::Error,
    name: "SchemaValidationError",
};
pub const CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS: Code = Code {
    code: "IST0109",
    level: Level::Error,
    name: "ConflictingMeshGatewayVirtualServiceHosts",
};
pub const VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED: Code = Code {
    code: "IST0112",
    level: Level::Error,
    name: "VirtualServiceDestinationPortSelectorRequired",
};
pub const NO_MATCHING_WORKLOADS_FOUND: Code = Code {
    code: "IST0127",
    level: Level::Warning,
    name: "NoMatchingWorkloadsFound",
};
pub const VIRTUAL_SERVICE_UNREACHABLE_RULE: Code = Code {
    code: "IST0130",
    level: Level::Warning,
    name: "VirtualServiceUnreachableRule",
};
pub const VIRTUAL_SERVICE_INEFFECTIVE_MATCH: Code = Code {
    code: "IST0131",
    level: Level::Info,
    name: "VirtualServiceIneffectiveMatch",
};
pub const SCHEMA_WARNING: Code = Code {
    code: "IST0133",
    level: Level::Warning,
    name: "SchemaWarning",
};

/// Where istio.io documents each code.
pub const DOCS_BASE: &str = "https://istio.io/latest/docs/reference/config/analysis";

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    pub level: Level,
    pub code: &'static str,
    /// The message type's name, e.g. `ReferencedResourceNotFound`.
    #[serde(skip)]
    pub name: &'static str,
    /// The blamed resource, `Kind name.namespace` (istioctl's "origin").
    #[serde(rename = "origin", skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// `file:line` of the resource (istioctl's "reference").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Field path inside the resource, e.g. `spec.http[0].route[1].weight`, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The text after the origin, e.g. `Referenced gateway not found: "bogus"`.
    pub message: String,
    #[serde(rename = "documentationUrl")]
    pub documentation_url: String,
}

impl Message {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Message {
            level: code.level,
            code: code.code,
            name: code.name,
            resource: None,
            reference: None,
            field: None,
            message: message.into(),
            documentation_url: format!("{DOCS_BASE}/{}/", code.code.to_ascii_lowercase()),
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// istioctl's sort key: level, code, origin, then the printed line.
    pub(crate) fn sort_key(&self) -> (Level, &str, &Option<String>, String) {
        (self.level, self.code, &self.resource, self.to_string())
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.level, self.code)?;
        match (&self.resource, &self.reference) {
            (Some(r), Some(at)) => write!(f, " ({r} {at})")?,
            (Some(r), None) => write!(f, " ({r})")?,
            (None, Some(at)) => write!(f, " ({at})")?,
            (None, None) => {}
        }
        write!(f, " {}", self.message)
    }
}

/// Istio's `ReferencedResourceNotFound` text: `Referenced <kind> not found: "<value>"`.
pub fn referenced_not_found(kind: &str, value: &str) -> Message {
    Message::new(
        REFERENCED_RESOURCE_NOT_FOUND,
        format!("Referenced {kind} not found: {}", go_quote(value)),
    )
}

/// Istio's `SchemaValidationError` text.
pub fn schema_error(detail: impl fmt::Display) -> Message {
    Message::new(
        SCHEMA_VALIDATION_ERROR,
        format!("Schema validation error: {detail}"),
    )
}

/// Istio's `SchemaWarning` text.
pub fn schema_warning(detail: impl fmt::Display) -> Message {
    Message::new(
        SCHEMA_WARNING,
        format!("Schema validation warning: {detail}"),
    )
}

/// Go's `%q`: a double-quoted string with Go escapes (what Istio's templates print).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_istioctl() {
        let mut m = referenced_not_found("gateway", "httpbin-gateway-bogus");
        m.resource = Some("VirtualService httpbin.default".into());
        assert_eq!(
            m.to_string(),
            r#"Error [IST0101] (VirtualService httpbin.default) Referenced gateway not found: "httpbin-gateway-bogus""#
        );
        m.reference = Some("vs.yaml:3".into());
        assert_eq!(
            m.to_string(),
            r#"Error [IST0101] (VirtualService httpbin.default vs.yaml:3) Referenced gateway not found: "httpbin-gateway-bogus""#
        );
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["origin"], "VirtualService httpbin.default");
        assert_eq!(json["reference"], "vs.yaml:3");
        assert_eq!(json["level"], "Error");
        assert_eq!(
            json["documentationUrl"],
            "https://istio.io/latest/docs/reference/config/analysis/ist0101/"
        );
    }

    #[test]
    fn levels_parse_and_compare() {
        assert_eq!("WARNING".parse::<Level>(), Ok(Level::Warning));
        assert!("fatal".parse::<Level>().is_err());
        assert!(Level::Error.at_least(Level::Warning));
        assert!(Level::Warning.at_least(Level::Warning));
        assert!(!Level::Info.at_least(Level::Warning));
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
