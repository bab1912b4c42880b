//! The HTTP codec seam of a client connection: what the proxy asks of a protocol that turns
//! received bytes into requests.
//!
//! The proxy never parses a client's bytes itself. It hands the connection's receive buffer
//! (plaintext, after the transport) to the connection's [`ServerCodec`] and gets back events
//! tagged with a [`StreamId`]: a request head, body data, the body's end. HTTP/1.1
//! ([`Http1Server`]) has one stream at a time and refuses to look at a pipelined request
//! before the current one is finished; a multiplexed protocol (HTTP/2) implements the same
//! trait with many streams interleaved on one connection, each event naming its stream.
//!
//! ```text
//!   transport ──plaintext──▶ recv buffer ──decode()──▶ Head{s} Data{s} End{s} … ──▶ requests
//!   proxy ──finish_stream(s)──▶ codec      (the request on s is answered or abandoned)
//! ```
//!
//! Responses are still written with [`crate::http1`]'s encoders by the proxy; moving them
//! behind this trait comes with the second protocol.

mod http1;

pub use self::http1::Http1Server;

use bytes::{Bytes, BytesMut};

use crate::http1::{BodyError, HeaderPool, Limits, ParseError, RequestHead};

/// A request's stream on its connection. HTTP/1.1 numbers its requests in order; HTTP/2 would
/// use its stream identifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u32);

/// What a codec made of the bytes buffered so far.
#[derive(Debug)]
pub enum RequestEvent {
    /// A request head opened `stream`. Body events follow unless the head frames no body
    /// (`head.framing` is [`crate::http1::BodyFraming::None`]).
    Head { stream: StreamId, head: RequestHead },
    /// The next piece of `stream`'s body (never empty).
    Data { stream: StreamId, data: Bytes },
    /// `stream`'s body is complete, with its trailers (empty if none).
    End {
        stream: StreamId,
        trailers: http::HeaderMap,
    },
    /// Nothing to report until more bytes arrive (or, for HTTP/1.1, until the current request
    /// is finished: a pipelined request waits, unread, in the buffer).
    NeedMore,
}

/// Why a codec gave up.
#[derive(Debug)]
pub enum DecodeError {
    /// The bytes are not a valid request head: the connection's framing can no longer be
    /// trusted, so it is answered (the error's status) and closed.
    Head(ParseError),
    /// `stream`'s body is malformed or was cut short.
    Body { stream: StreamId, error: BodyError },
}

/// What decoding borrows from the engine: the snapshot's limits and the reused header maps.
pub struct DecodeContext<'a> {
    pub limits: &'a Limits,
    pub pool: &'a mut HeaderPool,
}

/// A protocol that reads requests from a client connection.
pub trait ServerCodec: Send {
    /// Decode the next event from `buf`, taking the bytes it consumed. `eof`: the client
    /// will send nothing more (a body delimited by the close ends here; anything else is cut).
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        eof: bool,
        cx: DecodeContext<'_>,
    ) -> Result<RequestEvent, DecodeError>;

    /// The request on `stream` is over (answered, abandoned, or turned into a tunnel). Body
    /// bytes of it still unread are dropped with it; HTTP/1.1 reads the next head from here.
    fn finish_stream(&mut self, stream: StreamId);
}
