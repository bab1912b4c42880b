//! The routing vocabulary of a scenario, as plain data: Istio `HTTPMatchRequest` conditions,
//! the actions a rule may take instead of forwarding (redirect, direct response), rewrites and
//! header edits, and the shapes of the requests clients send.
//!
//! A rule without [`RuleVocab`] is the simulator's original rule (an optional `x-user` exact
//! match, weighted destinations); a rule with one carries any of the fields below. Generation
//! is in [`super::gen_routes`], the reference semantics (what Istio and Envoy do with each
//! field) in [`super::reference`], the mapping to engine configuration in [`super::model`].

use serde::{Deserialize, Serialize};

/// Istio `StringMatch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StrMatch {
    Exact(String),
    Prefix(String),
    /// RE2 syntax, matched against the whole value. `*` alone is Istio's special "present"
    /// match for headers and query parameters (istio/istio#20629), not a regex.
    Regex(String),
}

impl StrMatch {
    /// The engine's matcher, the way the control plane translates an Istio `StringMatch`.
    pub fn engine(&self) -> trellis_engine::config::StringMatch {
        use trellis_engine::config::StringMatch;
        match self {
            StrMatch::Exact(v) => StringMatch::Exact(v.clone()),
            StrMatch::Prefix(v) => StringMatch::Prefix(v.clone()),
            StrMatch::Regex(v) => StringMatch::Regex(v.clone()),
        }
    }
}

/// A condition on a header or query parameter: `None` matches presence (Istio's `{}`).
pub type NamedMatch = (String, Option<StrMatch>);

/// Istio `HTTPMatchRequest`: every condition present must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StrMatch>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_uri_case: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StrMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StrMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StrMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<NamedMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without_headers: Vec<NamedMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<NamedMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_labels: Vec<(String, String)>,
}

/// What a rule does instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionSpec {
    /// Istio `HTTPRedirect` (`uri`, `authority`, `scheme`, `port`, `redirectCode`; 0 means
    /// Istio's default 301).
    Redirect {
        uri: Option<String>,
        authority: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scheme: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        status: u16,
        /// `prefixRewrite`: replaces the prefix the request matched on (wins over `uri`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix_rewrite: Option<String>,
        /// `derivePort: FROM_REQUEST_PORT` (never with `port`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        port_from_request: bool,
    },
    /// Istio `HTTPDirectResponse` with an optional string body.
    Direct { status: u16, body: Option<String> },
}

/// Istio `HTTPRewrite`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewriteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// `uriRegexRewrite`: `(match, rewrite)`, RE2 with `\1`-style groups (never with `uri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_regex: Option<(String, String)>,
}

/// Istio `Headers.HeaderOperations` for one direction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderOpsSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderOpsSpec {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// Istio `Headers`: edits of the request going upstream and of the response going back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderEdits {
    #[serde(default)]
    pub request: HeaderOpsSpec,
    #[serde(default)]
    pub response: HeaderOpsSpec,
}

/// Everything a rule may carry beyond the original `x-user` match and weighted destinations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleVocab {
    /// `match[]` blocks, ORed together (and with the rule's `user` match when it has one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<MatchSpec>,
    /// `redirect` or `directResponse`; `None` forwards to the rule's destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<RewriteSpec>,
    /// Rule-level `headers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edits: Option<HeaderEdits>,
    /// Destination-level `headers`, by version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dest_edits: Vec<(usize, HeaderEdits)>,
    /// A fallback route (the engine's `Route::fallback`, what the control plane makes of a
    /// service's default route when port or client filters leave its VirtualService without a
    /// rule): tried only when no other rule applies to the request's port and client.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallback: bool,
    /// Destination-level Host rewrites, by version (the engine's `WeightedCluster::authority`:
    /// what pilot makes of a destination's `headers.request.set.host`); they win over the
    /// rule's `rewrite.authority` for requests sent to that version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dest_authorities: Vec<(usize, String)>,
    /// `corsPolicy` ([`super::cors`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<super::cors::CorsSpec>,
}

/// What clients may put in a request, for scenarios with the routing vocabulary: each request
/// draws each part independently from these pools (values chosen to probe the rules' edges:
/// case differences, one character short or long, empty values, anchors).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestVocab {
    pub paths: Vec<String>,
    /// Query strings without the `?` (an empty entry means no query).
    pub queries: Vec<String>,
    pub methods: Vec<String>,
    /// Host header values for service `s`: each entry is a suffix appended to `svc{s}`
    /// (`""`, `":80"`, ...), or `!upper` (`SVC{s}`: virtual hosts ignore case, authority
    /// matches do not), `!unknown` (`unknown{s}.example`), `!foo` (`foo.bar{s}`) or `!deep`
    /// (`x.b.example:8080`): hosts only wildcard domains (if any) serve, else 404 NR.
    pub authorities: Vec<String>,
    /// Header name → values it may carry (`None`: left out).
    pub headers: Vec<(String, Vec<Option<String>>)>,
    /// Extra virtual-host domains `(pattern, service)`: suffix (`*.example`), prefix
    /// (`foo.*`) and catch-all (`*`) wildcards on some services' VirtualServices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wildcards: Vec<(String, usize)>,
    /// Percent of requests whose path is sent dirty ([`super::path_dirt`]); 0 in the seeds
    /// without (and in files written before it existed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub path_dirt_percent: u8,
    /// The sidecars' `meshConfig.pathNormalization` (Istio's default `BASE` when absent).
    #[serde(default, skip_serializing_if = "super::path_dirt::PathMode::is_base")]
    pub normalization: super::path_dirt::PathMode,
    /// Percent of requests sent with an `Origin` ([`super::cors`]); 0 in the seeds without.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cors_percent: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// One request's shape, drawn from a [`RequestVocab`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestShape {
    pub method: String,
    /// The path without the query, as the mesh must see it (normalized).
    pub path: String,
    /// The path as the client sends it, when that differs from `path` ([`super::path_dirt`]).
    pub sent_path: Option<String>,
    /// The query without `?`; empty: none.
    pub query: String,
    pub authority: String,
    /// Extra headers, in sending order (no `host`, `x-sim-id`, `content-length`).
    pub headers: Vec<(String, String)>,
}

impl RequestShape {
    /// The request target as sent: path and query.
    pub fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    /// The request target on the wire: the sent path and the query.
    pub fn sent_target(&self) -> String {
        match &self.sent_path {
            None => self.target(),
            Some(p) if self.query.is_empty() => p.clone(),
            Some(p) => format!("{p}?{}", self.query),
        }
    }

    /// The first value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
