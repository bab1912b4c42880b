//! HTTP/1.1 behind the [`ServerCodec`] seam: one request at a time, in order, and its
//! response written with [`crate::http1`]'s encoders.

use bytes::BytesMut;

use super::{DecodeContext, DecodeError, LocalResponse, RequestEvent, ServerCodec, StreamId};
use crate::http1::{
    encode_local_response, encode_response_head, encode_response_head_with_room,
    take_request_head_pooled, BodyDecoder, BodyEncoder, BodyEvent, BodyFraming, ResponseHead,
    Trailers,
};

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
    /// The framing of the response being written, and the stream it answers: set by its head,
    /// dropped when the stream is finished.
    response: Option<(StreamId, BodyEncoder)>,
}

impl Default for Http1Server {
    fn default() -> Self {
        Http1Server {
            state: State::AwaitHead,
            next: 1,
            response: None,
        }
    }
}

impl Http1Server {
    /// The body encoder of `stream`'s response (whose head went out).
    fn body(&mut self, stream: StreamId) -> Option<&mut BodyEncoder> {
        debug_assert!(
            self.response.as_ref().is_some_and(|(s, _)| *s == stream),
            "body of {stream:?} before its head (response: {:?})",
            self.response.as_ref().map(|(s, _)| s)
        );
        match &mut self.response {
            Some((s, encoder)) if *s == stream => Some(encoder),
            _ => None,
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
            // One match, the event built in its arm: `map_err`, `?` and `let else` each moved
            // the ~200-byte head once more (a `memcpy` call apiece) on its way to the event.
            State::AwaitHead => match take_request_head_pooled(buf, cx.limits, cx.pool) {
                Ok(Some(head)) => {
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
                Ok(None) => Ok(RequestEvent::NeedMore),
                Err(e) => Err(DecodeError::Head(e)),
            },
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
        self.response = None;
    }

    fn encode_interim(&mut self, _stream: StreamId, head: &ResponseHead, out: &mut BytesMut) {
        debug_assert!((100..200).contains(&head.status), "interim {}", head.status);
        encode_response_head(head, out);
    }

    fn encode_continue(&mut self, _stream: StreamId, out: &mut BytesMut) {
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    fn encode_head(
        &mut self,
        stream: StreamId,
        head: &ResponseHead,
        room: usize,
        out: &mut BytesMut,
    ) {
        debug_assert!(
            self.response.is_none(),
            "a second response head on {stream:?}"
        );
        encode_response_head_with_room(head, room, out);
        self.response = Some((stream, BodyEncoder::new(head.framing)));
    }

    fn encode_data(&mut self, stream: StreamId, data: &[u8], out: &mut BytesMut) {
        if let Some(encoder) = self.body(stream) {
            encoder.encode_data(data, out);
        }
    }

    fn encode_end(&mut self, stream: StreamId, trailers: &Trailers, out: &mut BytesMut) {
        if let Some(encoder) = self.body(stream) {
            encoder.encode_end(trailers, out);
        }
    }

    fn encode_local(&mut self, _stream: StreamId, local: LocalResponse<'_>, out: &mut BytesMut) {
        encode_local_response(local.status, local.headers, local.body, local.close, out);
    }

    fn encode_connection_error(&mut self, local: LocalResponse<'_>, out: &mut BytesMut) {
        debug_assert!(local.close, "a connection error closes the connection");
        encode_local_response(local.status, local.headers, local.body, local.close, out);
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

    fn response(status: u16, framing: BodyFraming) -> ResponseHead {
        ResponseHead {
            version: crate::http1::Version::Http11,
            status,
            reason: "".into(),
            headers: crate::http1::Fields::new(),
            framing,
            keep_alive: true,
        }
    }

    /// The codec keeps each response's framing: a chunked body is chunked and ended, and the
    /// next stream's response starts afresh once the first stream is finished.
    #[test]
    fn responses_are_framed_per_stream() {
        let mut codec = Http1Server::new();
        let mut buf = BytesMut::from(
            &b"GET /a HTTP/1.1\r\nhost: h\r\n\r\nGET /b HTTP/1.1\r\nhost: h\r\n\r\n"[..],
        );
        assert!(matches!(
            decode(&mut codec, &mut buf, false),
            RequestEvent::Head {
                stream: StreamId(1),
                ..
            }
        ));
        let mut out = BytesMut::new();
        codec.encode_interim(StreamId(1), &response(103, BodyFraming::None), &mut out);
        codec.encode_head(
            StreamId(1),
            &response(200, BodyFraming::Chunked),
            2,
            &mut out,
        );
        codec.encode_data(StreamId(1), b"hi", &mut out);
        codec.encode_end(StreamId(1), &Trailers::none(), &mut out);
        codec.finish_stream(StreamId(1));
        assert!(matches!(
            decode(&mut codec, &mut buf, false),
            RequestEvent::Head {
                stream: StreamId(2),
                ..
            }
        ));
        codec.encode_head(
            StreamId(2),
            &response(200, BodyFraming::ContentLength(2)),
            0,
            &mut out,
        );
        codec.encode_data(StreamId(2), b"ok", &mut out);
        codec.encode_end(StreamId(2), &Trailers::none(), &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 103 Early Hints\r\n\r\n\
             HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
             HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        );
    }

    #[test]
    fn local_answers_are_http1_local_responses() {
        let mut codec = Http1Server::new();
        let local = LocalResponse {
            status: 404,
            headers: &[("x-a", "b")],
            body: b"",
            close: false,
        };
        let mut out = BytesMut::new();
        codec.encode_local(StreamId(1), local, &mut out);
        let mut expected = BytesMut::new();
        crate::http1::encode_local_response(404, &[("x-a", "b")], b"", false, &mut expected);
        assert_eq!(out, expected);
        let mut out = BytesMut::new();
        codec.encode_continue(StreamId(1), &mut out);
        assert_eq!(&out[..], b"HTTP/1.1 100 Continue\r\n\r\n");
    }
}
