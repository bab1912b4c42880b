//! The HTTP heads of the gateway world as its clients and backends read them (httparse, a
//! parser nobody here wrote).

use std::collections::BTreeMap;

/// A complete response as a client read it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Response {
    pub status: u16,
    pub backend: Option<usize>,
    pub location: Option<String>,
}

/// What a backend reads of a request head: the request it names (`x-sim-req`), its target,
/// `Host`, and the fields the gateway's edge rules and JWT filter decide
/// ([`EDGE_FIELDS`], each one's values joined by a line feed, so that a doubled field shows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BackendHead {
    pub req: Option<usize>,
    pub path: String,
    pub host: String,
    pub fields: BTreeMap<String, String>,
}

/// The fields a backend records.
const EDGE_FIELDS: [&str; 7] = [
    "x-forwarded-for",
    "x-envoy-external-address",
    "x-forwarded-proto",
    "authorization",
    super::jwt::ASSERTION_HEADER,
    super::jwt::PAYLOAD_HEADER,
    super::jwt::SUB_HEADER,
];

/// The value of the field `name` among `headers`, if it is text.
fn field<'b>(headers: &[httparse::Header<'b>], name: &str) -> Option<&'b str> {
    (headers.iter())
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
}

/// A whole request head at the start of `buf`: its length, and what the backend reads of it.
pub(crate) fn parse_request(buf: &[u8]) -> Option<(usize, BackendHead)> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Request::new(&mut fields);
    let httparse::Status::Complete(len) = head.parse(buf).ok()? else {
        return None;
    };
    let mut edge = BTreeMap::new();
    for name in EDGE_FIELDS {
        let values: Vec<&str> = (head.headers.iter())
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .collect();
        if !values.is_empty() {
            edge.insert(name.to_string(), values.join("\n"));
        }
    }
    Some((
        len,
        BackendHead {
            req: field(head.headers, "x-sim-req").and_then(|v| v.parse::<usize>().ok()),
            path: head.path.unwrap_or_default().to_string(),
            host: field(head.headers, "host").unwrap_or_default().to_string(),
            fields: edge,
        },
    ))
}

/// A whole response in `buf` (head and `content-length` body), or `None` while incomplete.
pub(crate) fn parse_response(buf: &[u8]) -> Option<Response> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Response::new(&mut fields);
    let httparse::Status::Complete(len) = head.parse(buf).ok()? else {
        return None;
    };
    let content_length = field(head.headers, "content-length");
    let body = content_length.map_or(Some(0), |v| v.trim().parse::<usize>().ok())?;
    if buf.len() < len + body {
        return None;
    }
    Some(Response {
        status: head.code.unwrap_or(0),
        backend: field(head.headers, "x-backend").and_then(|v| v.parse().ok()),
        location: field(head.headers, "location").map(str::to_string),
    })
}
