//! Diagnostics and errors shared by the loader, the translator and `explain`.
//!
//! Istio's own tooling separates two things and so do we: a resource that cannot be read at all
//! (a wrong type, an invalid enum value, a malformed duration) is an **error** that stops the
//! load, and names the file, the resource and the field path so a person can fix it; everything
//! that can be read but is questionable (an unknown field, a destination whose subset no
//! DestinationRule defines, weights that do not sum to 100) is a [`Diagnostic`] that travels next
//! to the result, so nothing is silently dropped and one bad rule does not hide the others.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// How serious a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Istio would reject or ignore this; the result is degraded (e.g. IST0101).
    Error,
    /// Read, but part of it is not applied or not understood (e.g. an unknown field).
    Warning,
    /// For information (e.g. a non-Istio document that was skipped).
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// Istio analyzer code for a reference to a resource that does not exist.
pub const IST0101: &str = "IST0101";

/// One finding about the input, with enough context to find it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Istio analyzer code where one applies (`IST0101` ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The file the resource came from (`<inline>` for inline resources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `Kind namespace/name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Field path inside the resource, e.g. `spec.http[0].route[1].destination.subset`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(severity: Severity, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            code: None,
            file: None,
            resource: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic::new(Severity::Error, message)
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic::new(Severity::Warning, message)
    }

    pub fn info(message: impl Into<String>) -> Self {
        Diagnostic::new(Severity::Info, message)
    }

    pub fn code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }

    pub fn file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.severity)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        f.write_str(":")?;
        if let Some(file) = &self.file {
            write!(f, " {file}:")?;
        }
        if let Some(resource) = &self.resource {
            write!(f, " {resource}:")?;
        }
        if let Some(field) = &self.field {
            write!(f, " field `{field}`:")?;
        }
        write!(f, " {}", self.message)
    }
}

fn at_line(line: &Option<usize>) -> String {
    match line {
        Some(l) => format!(":{l}"),
        None => String::new(),
    }
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("{file}{}: invalid YAML: {message}", at_line(.line))]
    Syntax {
        file: String,
        line: Option<usize>,
        message: String,
    },
    /// A resource has a field of the wrong type or an invalid value.
    #[error("{file}{}: {resource}: field `{field}`: {message}", at_line(.line))]
    Invalid {
        file: String,
        line: Option<usize>,
        /// `Kind namespace/name`, or the document index when the name is unknown.
        resource: String,
        field: String,
        message: String,
    },
    /// The request given to `explain` is malformed (e.g. a bad header).
    #[error("invalid request: {0}")]
    Request(String),
    /// The engine refused the translated configuration as a whole.
    #[error("translated configuration rejected by the engine: {0}")]
    Rejected(String),
}
