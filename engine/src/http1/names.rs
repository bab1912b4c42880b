//! Field names the engine reads or writes, as static [`FieldName`]s (call sites read
//! `names::VIA`).
//!
//! A static name is a `Bytes` over the program's own text: adding a field under it allocates
//! nothing, where a name built from a `&str` would be copied every request.

use crate::http1::FieldName;

pub const X_REQUEST_ID: FieldName = FieldName::from_static("x-request-id");
pub const X_FORWARDED_PROTO: FieldName = FieldName::from_static("x-forwarded-proto");
pub const X_FORWARDED_CLIENT_CERT: FieldName = FieldName::from_static("x-forwarded-client-cert");
pub const VIA: FieldName = FieldName::from_static("via");
pub const EXPECT: FieldName = FieldName::from_static("expect");
pub const CONTENT_LENGTH: FieldName = FieldName::from_static("content-length");
pub const TRANSFER_ENCODING: FieldName = FieldName::from_static("transfer-encoding");
pub const CONNECTION: FieldName = FieldName::from_static("connection");
pub const UPGRADE: FieldName = FieldName::from_static("upgrade");
pub const SET_COOKIE: FieldName = FieldName::from_static("set-cookie");
pub const COOKIE: FieldName = FieldName::from_static("cookie");
pub const CONTENT_TYPE: FieldName = FieldName::from_static("content-type");
pub const MAX_FORWARDS: FieldName = FieldName::from_static("max-forwards");
pub const AUTHORIZATION: FieldName = FieldName::from_static("authorization");
pub const X_FORWARDED_FOR: FieldName = FieldName::from_static("x-forwarded-for");

/// Every constant above, for the test that they are lower-case tokens.
#[cfg(test)]
pub(crate) const ALL: [FieldName; 15] = [
    X_REQUEST_ID,
    X_FORWARDED_PROTO,
    X_FORWARDED_CLIENT_CERT,
    VIA,
    EXPECT,
    CONTENT_LENGTH,
    TRANSFER_ENCODING,
    CONNECTION,
    UPGRADE,
    SET_COOKIE,
    COOKIE,
    CONTENT_TYPE,
    MAX_FORWARDS,
    AUTHORIZATION,
    X_FORWARDED_FOR,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_names_are_lower_case_tokens() {
        for name in &ALL {
            assert_eq!(FieldName::new(name.as_str()).as_ref(), Some(name), "{name}");
        }
    }
}
