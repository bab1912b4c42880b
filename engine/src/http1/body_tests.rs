//! Body decoder rules: Content-Length, chunked (sizes, extensions, CRLF, trailers), close.

use bytes::BytesMut;

use super::*;

/// Feeds `raw` at once; returns the concatenated data, trailers, and what is left in the buffer.
fn decode_all(
    framing: BodyFraming,
    raw: &[u8],
) -> Result<(Vec<u8>, http::HeaderMap, Vec<u8>), BodyError> {
    let mut dec = BodyDecoder::new(framing, &Limits::default());
    let mut buf = BytesMut::from(raw);
    let mut data = Vec::new();
    loop {
        match dec.decode(&mut buf)? {
            BodyEvent::Data(d) => {
                assert!(!d.is_empty());
                data.extend_from_slice(&d);
            }
            BodyEvent::Done { trailers } => return Ok((data, trailers.into_map(), buf.to_vec())),
            BodyEvent::NeedMore => return Err(BodyError::Truncated),
        }
    }
}

fn chunked(raw: &str) -> Result<Vec<u8>, BodyError> {
    decode_all(BodyFraming::Chunked, raw.as_bytes()).map(|(d, _, _)| d)
}

#[test]
fn content_length_splits_exactly() {
    let (data, _, rest) = decode_all(BodyFraming::ContentLength(5), b"helloGET /").unwrap();
    assert_eq!(
        (data.as_slice(), rest.as_slice()),
        (&b"hello"[..], &b"GET /"[..])
    );
}

#[test]
fn content_length_streams_and_counts_down() {
    let mut dec = BodyDecoder::new(BodyFraming::ContentLength(6), &Limits::default());
    assert_eq!(dec.remaining(), Some(6));
    let mut buf = BytesMut::from(&b"abc"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), BodyEvent::Data("abc".into()));
    assert_eq!(dec.decode(&mut buf).unwrap(), BodyEvent::NeedMore);
    assert_eq!(dec.remaining(), Some(3));
    assert_eq!(dec.finish_on_eof(), Err(BodyError::Truncated));
    buf.extend_from_slice(b"defX");
    assert_eq!(dec.decode(&mut buf).unwrap(), BodyEvent::Data("def".into()));
    assert!(dec.is_done());
    assert!(matches!(
        dec.decode(&mut buf).unwrap(),
        BodyEvent::Done { .. }
    ));
    assert_eq!(&buf[..], b"X");
}

#[test]
fn data_is_split_off_without_copying() {
    let mut dec = BodyDecoder::new(BodyFraming::ContentLength(4), &Limits::default());
    let mut buf = BytesMut::from(&b"abcdef"[..]);
    let start = buf.as_ptr();
    let BodyEvent::Data(d) = dec.decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(d.as_ptr(), start);
}

#[test]
fn none_and_empty_bodies_are_done() {
    for f in [BodyFraming::None, BodyFraming::ContentLength(0)] {
        let mut dec = BodyDecoder::new(f, &Limits::default());
        assert!(dec.is_done());
        let mut buf = BytesMut::from(&b"next"[..]);
        assert!(matches!(
            dec.decode(&mut buf).unwrap(),
            BodyEvent::Done { .. }
        ));
        assert_eq!(&buf[..], b"next");
        assert!(matches!(dec.finish_on_eof(), Ok(BodyEvent::Done { .. })));
    }
}

#[test]
fn close_delimited_until_eof() {
    let mut dec = BodyDecoder::new(BodyFraming::CloseDelimited, &Limits::default());
    let mut buf = BytesMut::from(&b"abc"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), BodyEvent::Data("abc".into()));
    assert_eq!(dec.decode(&mut buf).unwrap(), BodyEvent::NeedMore);
    assert_eq!(dec.remaining(), None);
    assert!(matches!(dec.finish_on_eof(), Ok(BodyEvent::Done { .. })));
    assert!(dec.is_done());
}

#[test]
fn chunked_basic_and_extensions() {
    assert_eq!(
        chunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap(),
        b"hello world"
    );
    assert_eq!(
        chunked("A\r\n0123456789\r\n0\r\n\r\n").unwrap(),
        b"0123456789"
    );
    assert_eq!(chunked("000005\r\nhello\r\n00\r\n\r\n").unwrap(), b"hello");
    assert_eq!(
        chunked("5;a=b;c\r\nhello\r\n0;last\r\n\r\n").unwrap(),
        b"hello"
    );
    assert_eq!(
        chunked("5 ; a = \"q \\\" ;x\" ;b\r\nhello\r\n0\r\n\r\n").unwrap(),
        b"hello"
    );
    let (_, _, rest) = decode_all(BodyFraming::Chunked, b"1\r\nx\r\n0\r\n\r\nGET").unwrap();
    assert_eq!(rest, b"GET");
}

#[test]
fn chunk_size_errors() {
    assert_eq!(chunked("g\r\n"), Err(BodyError::InvalidChunkSize));
    assert_eq!(chunked("\r\n"), Err(BodyError::InvalidChunkSize));
    assert_eq!(chunked("-1\r\n"), Err(BodyError::InvalidChunkSize));
    assert_eq!(
        chunked(" 5\r\nhello\r\n0\r\n\r\n"),
        Err(BodyError::InvalidChunkSize)
    );
    assert_eq!(
        chunked("0x5\r\nhello\r\n0\r\n\r\n"),
        Err(BodyError::InvalidChunkExtension)
    );
    assert_eq!(
        chunked("5 \r\nhello\r\n0\r\n\r\n"),
        Err(BodyError::InvalidChunkExtension)
    );
    assert_eq!(
        chunked("5\x0b\r\nhello\r\n0\r\n\r\n"),
        Err(BodyError::InvalidChunkExtension)
    );
    assert_eq!(
        chunked("12345678901234567\r\n"),
        Err(BodyError::ChunkSizeOverflow)
    );
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, &Limits::default());
    let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nab"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), BodyEvent::Data("ab".into()));
}

#[test]
fn chunk_extension_errors() {
    for ext in [
        ";",
        ";=x",
        ";a=",
        ";a=\"open",
        ";a b",
        ";a=b c",
        ";a=\"x\"y",
        ";a=\x01",
    ] {
        let raw = format!("5{ext}\r\nhello\r\n0\r\n\r\n");
        assert_eq!(
            chunked(&raw),
            Err(BodyError::InvalidChunkExtension),
            "{ext:?}"
        );
    }
}

#[test]
fn crlf_required_everywhere() {
    assert_eq!(
        chunked("5\nhello\r\n0\r\n\r\n"),
        Err(BodyError::MissingCrlf)
    );
    assert_eq!(
        chunked("5\r\nhello\n0\r\n\r\n"),
        Err(BodyError::MissingCrlf)
    );
    assert_eq!(
        chunked("5\r\nhelloXX0\r\n\r\n"),
        Err(BodyError::MissingCrlf)
    );
    assert_eq!(
        chunked("5\r\nhello\rX0\r\n\r\n"),
        Err(BodyError::MissingCrlf)
    );
    assert_eq!(
        chunked("5\r\nhello\r\n0\n\r\n"),
        Err(BodyError::MissingCrlf)
    );
    assert_eq!(
        chunked("5\r\nhello\r\n0\r\n\n"),
        Err(BodyError::MissingCrlf)
    );
    assert_eq!(
        chunked("5\r\nhello\r\n0\r\nA: b\n\r\n"),
        Err(BodyError::MissingCrlf)
    );
}

#[test]
fn size_line_is_bounded() {
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, &Limits::default());
    let mut raw = b"5;".to_vec();
    raw.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE_BYTES));
    let mut buf = BytesMut::from(&raw[..]);
    assert_eq!(dec.decode(&mut buf), Err(BodyError::ChunkLineTooLong));
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, &Limits::default());
    let mut buf = BytesMut::from(&raw[..100]);
    assert_eq!(dec.decode(&mut buf), Ok(BodyEvent::NeedMore));
}

#[test]
fn trailers_parsed_and_filtered() {
    let raw = "3\r\nabc\r\n0\r\nX-Checksum: 1\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\nHost: evil\r\nX-Two: a\r\nx-two: b\r\n\r\n";
    let (data, trailers, rest) = decode_all(BodyFraming::Chunked, raw.as_bytes()).unwrap();
    assert_eq!(data, b"abc");
    assert!(rest.is_empty());
    assert_eq!(trailers.get("x-checksum").unwrap(), "1");
    assert_eq!(trailers.get_all("x-two").iter().count(), 2);
    assert!(trailers.get("content-length").is_none());
    assert!(trailers.get("transfer-encoding").is_none());
    assert!(trailers.get("host").is_none());
}

#[test]
fn trailer_errors() {
    assert_eq!(
        chunked("0\r\nBad Name: x\r\n\r\n"),
        Err(BodyError::InvalidTrailer)
    );
    assert_eq!(
        chunked("0\r\n folded\r\n\r\n"),
        Err(BodyError::InvalidTrailer)
    );
    assert_eq!(
        chunked("0\r\nA: b\x00\r\n\r\n"),
        Err(BodyError::InvalidTrailer)
    );
    let limits = Limits {
        max_request_line_bytes: 64,
        max_header_bytes: 32,
        max_headers: 2,
    };
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, &limits);
    let mut buf = BytesMut::from(&b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"[..]);
    assert_eq!(dec.decode(&mut buf), Err(BodyError::TrailersTooLarge));
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, &limits);
    let mut buf = BytesMut::from(format!("0\r\nA: {}", "x".repeat(40)).as_bytes());
    assert_eq!(dec.decode(&mut buf), Err(BodyError::TrailersTooLarge));
}

#[test]
fn chunked_byte_by_byte_and_truncation() {
    let raw = b"5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nT: v\r\n\r\n";
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, &Limits::default());
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut trailers = None;
    for &b in raw {
        buf.extend_from_slice(&[b]);
        loop {
            match dec.decode(&mut buf).unwrap() {
                BodyEvent::Data(d) => data.extend_from_slice(&d),
                BodyEvent::Done { trailers: t } => {
                    trailers = Some(t);
                    break;
                }
                BodyEvent::NeedMore => {
                    if trailers.is_none() {
                        assert_eq!(dec.clone().finish_on_eof(), Err(BodyError::Truncated));
                    }
                    break;
                }
            }
        }
    }
    assert_eq!(data, b"hello!");
    assert_eq!(trailers.unwrap().into_map().get("t").unwrap(), "v");
    assert!(dec.is_done());
}

/// Boxed and with an empty map kept as none, trailers read as the map they were made from
/// (what holding `Some(map)` inline gave): the same fields in order, the same map back, and
/// equal exactly when the maps are equal or both empty.
#[quickcheck_macros::quickcheck]
fn trailers_read_as_the_map_they_hold(a: Vec<(u8, u8)>, b: Vec<(u8, u8)>) -> bool {
    let map = |pairs: &[(u8, u8)]| {
        let mut m = http::HeaderMap::new();
        for &(n, v) in pairs.iter().take(4) {
            let name = http::HeaderName::from_static(["x-a", "x-b", "etag"][usize::from(n % 3)]);
            m.append(name, http::HeaderValue::from(u16::from(v % 4)));
        }
        m
    };
    let (ma, mb) = (map(&a), map(&b));
    let (ta, tb) = (Trailers::from(ma.clone()), Trailers::from(mb.clone()));
    ta.iter().eq(ma.iter())
        && (ta == tb) == (ma == mb || (ma.is_empty() && mb.is_empty()))
        && (ta == Trailers::none()) == ma.is_empty()
        && ta.into_map() == ma
}
