//! HTTP/1.1 behind the [`ServerCodec`] seam: one request at a time, in order.

use bytes::BytesMut;

use super::{DecodeContext, DecodeError, RequestEvent, ServerCodec, StreamId};
use crate::http1::{take_request_head_pooled, BodyDecoder, BodyEvent, BodyFraming};

/// Where the connection's one request is.
#[derive(Debug)]
enum State {
    /// Between requests: the next bytes are a request head.
    AwaitHead,
    /// Reading `stream`'s body.
    Body {
        stream: StreamId,
        decoder: BodyDecoder,
    },
    /// `stream` was read whole and is not finished yet: what follows in the buffer is a
    /// pipelined request, left unread until the proxy finishes this one (so answering many
    /// pipelined requests needs no more memory than answering one).
    AwaitFinish { stream: StreamId },
}

/// The server side of an HTTP/1.1 connection (RFC 9112, with [`crate::http1`]'s hardening).
#[derive(Debug)]
pub struct Http1Server {
    state: State,
    /// The stream the next head opens.
    next: u32,
}

impl Default for Http1Server {
    fn default() -> Self {
        Http1Server {
            state: State::AwaitHead,
            next: 1,
        }
    }
}

impl Http1Server {
    pub fn new() -> Self {
        Self::default()
    }
}

impl ServerCodec for Http1Server {
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        eof: bool,
        cx: DecodeContext<'_>,
    ) -> Result<RequestEvent, DecodeError> {
        match &mut self.state {
            State::AwaitHead => {
                let Some(head) =
                    take_request_head_pooled(buf, cx.limits, cx.pool).map_err(DecodeError::Head)?
                else {
                    return Ok(RequestEvent::NeedMore);
                };
                let stream = StreamId(self.next);
                self.next = self.next.wrapping_add(1);
                self.state = match head.framing {
                    BodyFraming::None => State::AwaitFinish { stream },
                    framing => State::Body {
                        stream,
                        decoder: BodyDecoder::new(framing, cx.limits),
                    },
                };
                Ok(RequestEvent::Head { stream, head })
            }
            State::Body { stream, decoder } => {
                let stream = *stream;
                let event = match decoder.decode(buf) {
                    Ok(BodyEvent::NeedMore) if eof => decoder.finish_on_eof(),
                    other => other,
                };
                match event.map_err(|error| DecodeError::Body { stream, error })? {
                    BodyEvent::Data(data) => Ok(RequestEvent::Data { stream, data }),
                    BodyEvent::Done { trailers } => {
                        self.state = State::AwaitFinish { stream };
                        Ok(RequestEvent::End { stream, trailers })
                    }
                    BodyEvent::NeedMore => Ok(RequestEvent::NeedMore),
                }
            }
            State::AwaitFinish { .. } => Ok(RequestEvent::NeedMore),
        }
    }

    fn finish_stream(&mut self, stream: StreamId) {
        debug_assert!(
            match &self.state {
                State::AwaitHead => false,
                State::Body { stream: s, .. } | State::AwaitFinish { stream: s } => *s == stream,
            },
            "finishing {stream:?}, which is not the connection's request ({:?})",
            self.state
        );
        self.state = State::AwaitHead;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{HeaderPool, Limits};

    fn decode(codec: &mut Http1Server, buf: &mut BytesMut, eof: bool) -> RequestEvent {
        let limits = Limits::default();
        let mut pool = HeaderPool::default();
        let cx = DecodeContext {
            limits: &limits,
            pool: &mut pool,
        };
        codec.decode(buf, eof, cx).unwrap()
    }

    #[test]
    fn a_pipelined_request_waits_until_the_first_is_finished() {
        let mut codec = Http1Server::new();
        let mut buf = BytesMut::from(
            &b"POST /a HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\nhiGET /b HTTP/1.1\r\nhost: h\r\n\r\n"[..],
        );
        let RequestEvent::Head { stream, head } = decode(&mut codec, &mut buf, false) else {
            panic!("head")
        };
        assert_eq!((stream, head.target.as_str()), (StreamId(1), "/a"));
        assert!(matches!(
            decode(&mut codec, &mut buf, false),
            RequestEvent::Data { stream: StreamId(1), data } if &data[..] == b"hi"
        ));
        assert!(matches!(
            decode(&mut codec, &mut buf, false),
            RequestEvent::End {
                stream: StreamId(1),
                ..
            }
        ));
        // The next head is in the buffer, but not read before stream 1 is finished.
        assert!(matches!(
            decode(&mut codec, &mut buf, false),
            RequestEvent::NeedMore
        ));
        assert!(buf.starts_with(b"GET /b"));
        codec.finish_stream(StreamId(1));
        let RequestEvent::Head { stream, head } = decode(&mut codec, &mut buf, false) else {
            panic!("head")
        };
        assert_eq!((stream, head.target.as_str()), (StreamId(2), "/b"));
    }

    #[test]
    fn a_body_cut_by_eof_is_an_error_of_its_stream() {
        let mut codec = Http1Server::new();
        let mut buf =
            BytesMut::from(&b"POST /a HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\n\r\nhi"[..]);
        decode(&mut codec, &mut buf, false);
        decode(&mut codec, &mut buf, false);
        let limits = Limits::default();
        let mut pool = HeaderPool::default();
        let cx = DecodeContext {
            limits: &limits,
            pool: &mut pool,
        };
        let err = codec.decode(&mut buf, true, cx).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Body {
                    stream: StreamId(1),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_bad_head_is_a_head_error() {
        let mut codec = Http1Server::new();
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nhost: h\r\nbad header\r\n\r\n"[..]);
        let limits = Limits::default();
        let mut pool = HeaderPool::default();
        let cx = DecodeContext {
            limits: &limits,
            pool: &mut pool,
        };
        assert!(matches!(
            codec.decode(&mut buf, false, cx),
            Err(DecodeError::Head(_))
        ));
    }
}
