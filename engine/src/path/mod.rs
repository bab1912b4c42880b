//! Request path normalization: what Istio's `meshConfig.pathNormalization` makes Envoy do to
//! `:path` when a request head arrives, before routing and every filter, so that routes,
//! authorization, rewrites, the access log and the upstream all see one path.
//!
//! Without it `DENY paths: ["/admin*"]` would not see `/public/../admin`, which the
//! application resolves to `/admin`, and a route for `/b` would not take `/a/../b`. Istio's
//! default is `BASE`: pilot sets the connection manager's `normalize_path`
//! (`pilot/pkg/networking/core/listener_builder.go`, the switch on
//! `MeshConfig_ProxyPathNormalization_*`); `MERGE_SLASHES` adds `merge_slashes`,
//! `DECODE_AND_MERGE_SLASHES` also `path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD`,
//! `NONE` turns all of it off. Envoy applies them in `ConnectionManagerUtility::
//! maybeNormalizePath` (`source/common/http/conn_manager_utility.cc`): unescape slashes, then
//! canonicalize ([`canonical`]), then merge slashes ([`slashes`]); the query after the first
//! `?` is kept exactly as received. A path canonicalization refuses (a NUL) is answered 400.
//!
//! [`normalize`] borrows the target whenever it comes out unchanged; a path with no dot,
//! `%`, `\`, character to escape or (when merging) `//` is recognised in one scan.

mod canonical;
mod slashes;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use crate::http1::byte_search::find_byte;
use crate::http1::Target;

/// Istio's `meshConfig.pathNormalization.normalization` (`DEFAULT` is `BASE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathNormalization {
    /// The path is routed and forwarded as received.
    None,
    /// RFC 3986 normalization (Envoy's `normalize_path`).
    #[default]
    Base,
    /// `Base`, then runs of `/` collapsed (`merge_slashes`).
    MergeSlashes,
    /// `%2F`/`%5C` decoded first (`UNESCAPE_AND_FORWARD`), then `MergeSlashes`.
    DecodeAndMergeSlashes,
}

impl PathNormalization {
    fn merges(self) -> bool {
        matches!(
            self,
            PathNormalization::MergeSlashes | PathNormalization::DecodeAndMergeSlashes
        )
    }
}

/// A path Envoy's canonicalization refuses (Envoy answers 400, response code details
/// `path_normalization_failed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("path normalization failed: the path holds a NUL (raw or %00)")]
pub struct PathError;

/// `target` (path and query) normalized as `mode` says: borrowed when unchanged (or when the
/// normalized path is a prefix of the received one and there is no query).
///
/// Any target is accepted as Envoy accepts any `:path` (one without a leading `/` gets one);
/// the proxy only passes origin-form targets, never `*` or CONNECT's `host:port`.
pub fn normalize(target: &str, mode: PathNormalization) -> Result<Cow<'_, str>, PathError> {
    if mode == PathNormalization::None {
        return Ok(Cow::Borrowed(target));
    }
    let split = find_byte(b'?', target.as_bytes()).unwrap_or(target.len());
    normalize_split(target, split, mode)
}

/// [`normalize`] of a parsed request target, whose path end the parser recorded
/// ([`Target::path_len`], the same search for the first '?'), so it is not searched again.
pub fn normalize_target(
    target: &Target,
    mode: PathNormalization,
) -> Result<Cow<'_, str>, PathError> {
    if mode == PathNormalization::None {
        return Ok(Cow::Borrowed(target.as_str()));
    }
    normalize_split(target.as_str(), target.path_len(), mode)
}

/// [`normalize`], the target's path being its first `split` bytes (`split` is where its first
/// '?' is, or its length).
fn normalize_split(
    target: &str,
    split: usize,
    mode: PathNormalization,
) -> Result<Cow<'_, str>, PathError> {
    // Always a char boundary: a '?' (ASCII) or the end.
    let (path, query) = target.split_at_checked(split).unwrap_or((target, ""));
    if canonical::is_plain(path.as_bytes())
        && !(mode.merges() && memchr::memmem::find(path.as_bytes(), b"//").is_some())
    {
        return Ok(Cow::Borrowed(target));
    }
    let mut out = Cow::Borrowed(path);
    if mode == PathNormalization::DecodeAndMergeSlashes {
        out = slashes::unescape_slashes(path);
    }
    out = then(out, |p| {
        canonical::canonical(p).map_err(|canonical::Refused| PathError)
    })?;
    if mode.merges() {
        out = then(out, |p| Ok(slashes::merge_slashes(p)))?;
    }
    Ok(match out {
        Cow::Borrowed(p) if p.len() == path.len() => Cow::Borrowed(target),
        Cow::Borrowed(p) if query.is_empty() => Cow::Borrowed(p),
        out => Cow::Owned(out.into_owned() + query),
    })
}

/// Applies one step to the path so far, borrowing from the received target while it can.
fn then<'a>(
    path: Cow<'a, str>,
    step: impl for<'b> Fn(&'b str) -> Result<Cow<'b, str>, PathError>,
) -> Result<Cow<'a, str>, PathError> {
    Ok(match path {
        Cow::Borrowed(p) => step(p)?,
        Cow::Owned(p) => match step(&p)? {
            Cow::Borrowed(q) if q.len() == p.len() => Cow::Owned(p),
            q => Cow::Owned(q.into_owned()),
        },
    })
}
