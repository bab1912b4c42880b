//! HTTP/1.1 codec (RFC 9112): parsing and encoding message heads, streaming body framing.
//!
//! The codec is sans-IO and stateless where it can be: head parsers take the bytes buffered
//! so far and return a head, "need more", or a typed error; body decoders are small state
//! machines that split data off the caller's buffer without copying. It is deliberately
//! stricter than HAProxy and nginx: every MUST that RFC 9110/9112 put on an intermediary is
//! enforced, and every construct known from request-smuggling research (CL.TE, TE.CL, TE.TE,
//! bare LF, obs-fold, whitespace before the colon, duplicate or malformed lengths) is an
//! error, never a guess.
//!
//! Files, one concept each: [`limits`](Limits), errors, character classes and line scanning
//! (`syntax`), finding a byte sixteen bytes a compare (`byte_search`), field lines (`fields`), the ordered field list of a head (`field_list`), framing fields (`framing`), Host validation (`host`), the mesh's own field names (`names`), reused field lists (`pool`),
//! head types (`head`), the target and authority as spans of the head (`head_str`), request and response parsing, hop-by-hop removal (`hop`), head
//! encoding (`encode`), body decoding (`body`) and encoding (`body_encoder`).

mod body;
mod body_encoder;
pub(crate) mod byte_search;
mod encode;
mod error;
mod field_list;
mod fields;
mod framing;
mod head;
mod head_str;
mod hop;
mod host;
mod limits;
pub mod names;
mod pool;
mod reason;
mod request;
mod response;
mod syntax;

#[cfg(test)]
mod body_tests;
#[cfg(test)]
mod encode_tests;
#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod stream_tests;

pub use body::{BodyDecoder, BodyEvent, Trailers};
pub use body_encoder::BodyEncoder;
pub use encode::{
    encode_local_response, encode_request_head, encode_response_head,
    encode_response_head_with_room,
};
pub use error::{BodyError, ParseError};
pub use field_list::{valid_value, value_str, FieldName, Fields};
pub use head::{BodyFraming, RequestHead, ResponseHead, Version};
pub use head_str::{HeadStr, Target};
pub use hop::{strip_hop_by_hop, strip_hop_by_hop_and};
pub use limits::{Limits, MAX_CHUNK_LINE_BYTES};
pub use pool::HeaderPool;
pub use reason::reason_phrase;
pub use request::{parse_request_head, take_request_head, take_request_head_pooled};
pub use response::{parse_response_head, take_response_head, take_response_head_pooled};
