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
//! Responses go back through the same codec, keyed by the stream they answer: a head, body
//! data and an end (or a whole answer the proxy makes itself), encoded into the connection's
//! outgoing buffer. The codec owns each stream's response framing (HTTP/1.1: content-length
//! or chunked; HTTP/2 would write frames), so the proxy never writes protocol bytes itself.
//!
//! ```text
//!   transport ──plaintext──▶ recv buffer ──decode()──▶ Head{s} Data{s} End{s} … ──▶ requests
//!   proxy ──encode_head(s) encode_data(s) encode_end(s) / encode_local(s)──▶ out buffer
//!   proxy ──finish_stream(s)──▶ codec      (the request on s is answered or abandoned)
//! ```

mod http1;

pub use self::http1::Http1Server;

use bytes::{Bytes, BytesMut};

use crate::http1::{BodyError, HeaderPool, Limits, ParseError, RequestHead, ResponseHead};

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
        trailers: crate::http1::Trailers,
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
    /// bytes of it still unread are dropped with it, and so is its response's framing state;
    /// HTTP/1.1 reads the next head from here.
    fn finish_stream(&mut self, stream: StreamId);

    // ---- responses, written into the connection's outgoing buffer `out` ----

    /// An interim (1xx) response on `stream`; the final response follows.
    fn encode_interim(&mut self, stream: StreamId, head: &ResponseHead, out: &mut BytesMut);

    /// `100 Continue` on `stream`: the client may send the body it held back.
    fn encode_continue(&mut self, stream: StreamId, out: &mut BytesMut);

    /// The final response head on `stream`. `head.framing` frames the body that
    /// [`ServerCodec::encode_data`] and [`ServerCodec::encode_end`] write next; `room`: body
    /// bytes about to follow (reserved with the head, so both leave in one write).
    fn encode_head(
        &mut self,
        stream: StreamId,
        head: &ResponseHead,
        room: usize,
        out: &mut BytesMut,
    );

    /// The next piece of `stream`'s response body.
    fn encode_data(&mut self, stream: StreamId, data: &[u8], out: &mut BytesMut);

    /// The end of `stream`'s response body, with trailers (empty if none).
    fn encode_end(
        &mut self,
        stream: StreamId,
        trailers: &crate::http1::Trailers,
        out: &mut BytesMut,
    );

    /// A whole response the proxy makes itself on `stream`: `status`, `headers`, `body`;
    /// `close`: the connection closes after it (HTTP/1.1 says so in the head).
    fn encode_local(&mut self, stream: StreamId, local: LocalResponse<'_>, out: &mut BytesMut);

    /// The connection's bytes cannot be read as requests: the answer that goes out before the
    /// connection closes (HTTP/1.1: a response with `connection: close`), on no stream.
    fn encode_connection_error(&mut self, local: LocalResponse<'_>, out: &mut BytesMut);
}

/// A response the proxy makes itself (see [`ServerCodec::encode_local`]).
#[derive(Clone, Copy, Debug)]
pub struct LocalResponse<'a> {
    pub status: u16,
    /// Fields besides those the codec controls (framing, connection).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// The connection closes after this response.
    pub close: bool,
}
