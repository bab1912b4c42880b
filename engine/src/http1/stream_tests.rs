//! Stream properties: how bytes are split across reads never changes what is parsed.

use bytes::{Buf, BytesMut};
use quickcheck_macros::quickcheck;

use super::*;

/// What a parsed request amounts to, for comparison.
#[derive(Debug, PartialEq, Eq)]
struct Message {
    method: String,
    target: String,
    authority: String,
    headers: Vec<(String, Vec<u8>)>,
    framing: BodyFraming,
    body: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
}

fn fields(list: &crate::http1::Fields) -> Vec<(String, Vec<u8>)> {
    list.iter()
        .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v.to_vec()))
        .collect()
}

fn trailer_fields(map: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// Feeds the pieces in order through parse_request_head + BodyDecoder, like a connection would.
fn drive<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<Message>, String> {
    let limits = Limits::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut current: Option<(RequestHead, BodyDecoder, Vec<u8>)> = None;
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match current.as_mut() {
                None => match parse_request_head(&buf, &limits).map_err(|e| e.to_string())? {
                    None => break,
                    Some((head, n)) => {
                        buf.advance(n);
                        let dec = BodyDecoder::new(head.framing, &limits);
                        current = Some((head, dec, Vec::new()));
                    }
                },
                Some((head, dec, body)) => match dec.decode(&mut buf).map_err(|e| e.to_string())? {
                    BodyEvent::Data(d) => body.extend_from_slice(&d),
                    BodyEvent::NeedMore => break,
                    BodyEvent::Done { trailers } => {
                        let body = std::mem::take(body);
                        out.push(Message {
                            method: head.method.to_string(),
                            target: head.target.to_string(),
                            authority: head.authority.to_string(),
                            headers: fields(&head.headers),
                            framing: head.framing,
                            body,
                            trailers: trailer_fields(&trailers.into_map()),
                        });
                        current = None;
                    }
                },
            }
        }
    }
    if current.is_some() || !buf.is_empty() {
        return Err("stream ended inside a message".into());
    }
    Ok(out)
}

/// Builds a valid pipelined stream: per request a kind (no body / Content-Length / chunked),
/// a body, and chunk sizes for the chunked ones.
fn build_stream(requests: &[(u8, Vec<u8>, Vec<u8>)]) -> (Vec<u8>, usize) {
    let mut raw = Vec::new();
    let mut count = 0;
    for (i, (kind, body, sizes)) in requests.iter().take(6).enumerate() {
        let body: Vec<u8> = body.iter().copied().take(300).collect();
        count += 1;
        match kind % 3 {
            0 => raw.extend_from_slice(
                format!("GET /r{i}?k={kind} HTTP/1.1\r\nHost: svc-{i}.ns\r\nX-Id: {i}\r\n\r\n")
                    .as_bytes(),
            ),
            1 => {
                raw.extend_from_slice(
                    format!(
                        "PUT /r{i} HTTP/1.1\r\nHost: svc.ns:80\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                raw.extend_from_slice(&body);
            }
            _ => {
                raw.extend_from_slice(
                    format!("\r\nPOST http://Abs.Host/r{i} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes(),
                );
                let mut rest = &body[..];
                let mut sizes = sizes.iter().cycle();
                while !rest.is_empty() {
                    let want = usize::from(*sizes.next().unwrap_or(&7))
                        .max(1)
                        .min(rest.len());
                    let (chunk, tail) = rest.split_at(want);
                    let ext = if want % 2 == 0 { ";ext=\"v\"" } else { "" };
                    raw.extend_from_slice(format!("{want:X}{ext}\r\n").as_bytes());
                    raw.extend_from_slice(chunk);
                    raw.extend_from_slice(b"\r\n");
                    rest = tail;
                }
                raw.extend_from_slice(format!("0\r\nX-Trailer: t{i}\r\n\r\n").as_bytes());
            }
        }
    }
    (raw, count)
}

/// Splits `data` at the given (wrapped) cut points, in order.
fn split<'a>(data: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    if data.is_empty() {
        return vec![data];
    }
    let mut points: Vec<usize> = cuts.iter().map(|&c| usize::from(c) % data.len()).collect();
    points.sort_unstable();
    points.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for p in points {
        pieces.push(&data[start..p]);
        start = p;
    }
    pieces.push(&data[start..]);
    pieces
}

#[quickcheck]
fn arbitrary_chunking_gives_same_messages(
    requests: Vec<(u8, Vec<u8>, Vec<u8>)>,
    cuts: Vec<u16>,
) -> bool {
    let (raw, count) = build_stream(&requests);
    let whole = drive([&raw[..]]).expect("valid stream parses");
    assert_eq!(whole.len(), count);
    let pieces = split(&raw, &cuts);
    let bytewise = drive(raw.chunks(1)).expect("byte-by-byte parses");
    drive(pieces).expect("split stream parses") == whole && bytewise == whole
}

#[test]
fn stream_messages_are_what_was_sent() {
    let reqs = vec![
        (2u8, b"hello world".to_vec(), vec![3u8, 4]),
        (1, b"abc".to_vec(), vec![]),
        (0, vec![], vec![]),
    ];
    let (raw, _) = build_stream(&reqs);
    let msgs = drive([&raw[..]]).unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(
        (msgs[0].authority.as_str(), msgs[0].target.as_str()),
        ("Abs.Host", "/r0")
    );
    assert_eq!(msgs[0].body, b"hello world");
    assert_eq!(
        msgs[0].trailers,
        vec![("x-trailer".to_string(), b"t0".to_vec())]
    );
    assert_eq!(
        (msgs[1].framing, msgs[1].body.as_slice()),
        (BodyFraming::ContentLength(3), &b"abc"[..])
    );
    assert_eq!(
        (msgs[2].framing, msgs[2].target.as_str()),
        (BodyFraming::None, "/r2?k=0")
    );
}

#[quickcheck]
fn chunked_encoder_round_trips(parts: Vec<Vec<u8>>, cuts: Vec<u16>, trailer: Option<u8>) -> bool {
    let mut enc = BodyEncoder::new(BodyFraming::Chunked);
    let mut wire = BytesMut::new();
    for p in &parts {
        enc.encode_data(p, &mut wire);
    }
    let mut trailers = http::HeaderMap::new();
    if let Some(t) = trailer {
        trailers.append("x-sum", http::HeaderValue::from(u16::from(t)));
    }
    let sent = trailers.clone().into();
    enc.encode_end(&sent, &mut wire);
    wire.extend_from_slice(b"NEXT");

    let mut dec = BodyDecoder::new(BodyFraming::Chunked, &Limits::default());
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut got = None;
    for piece in split(&wire, &cuts) {
        buf.extend_from_slice(piece);
        while got.is_none() {
            match dec.decode(&mut buf).expect("valid chunked") {
                BodyEvent::Data(d) => data.extend_from_slice(&d),
                BodyEvent::Done { trailers } => got = Some(trailers.into_map()),
                BodyEvent::NeedMore => break,
            }
        }
    }
    data == parts.concat()
        && got.as_ref().map(trailer_fields) == Some(trailer_fields(&trailers))
        && &buf[..] == b"NEXT"
}

#[quickcheck]
fn content_length_encoder_round_trips(parts: Vec<Vec<u8>>, cuts: Vec<u16>) -> bool {
    let total: usize = parts.iter().map(Vec::len).sum();
    let framing = BodyFraming::ContentLength(total as u64);
    let mut enc = BodyEncoder::new(framing);
    let mut wire = BytesMut::new();
    for p in &parts {
        enc.encode_data(p, &mut wire);
    }
    enc.encode_end(&super::Trailers::none(), &mut wire);
    let mut dec = BodyDecoder::new(framing, &Limits::default());
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    for piece in split(&wire, &cuts) {
        buf.extend_from_slice(piece);
        while let BodyEvent::Data(d) = dec.decode(&mut buf).expect("valid body") {
            data.extend_from_slice(&d);
        }
    }
    dec.is_done() && data == parts.concat()
}

#[quickcheck]
fn body_decoder_never_panics(data: Vec<u8>, cuts: Vec<u16>) -> bool {
    for framing in [
        BodyFraming::Chunked,
        BodyFraming::ContentLength(17),
        BodyFraming::CloseDelimited,
    ] {
        let mut dec = BodyDecoder::new(framing, &Limits::default());
        let mut buf = BytesMut::new();
        'feed: for piece in split(&data, &cuts) {
            buf.extend_from_slice(piece);
            loop {
                match dec.decode(&mut buf) {
                    Ok(BodyEvent::Data(_)) => {}
                    Ok(_) => break,
                    Err(_) => break 'feed,
                }
            }
        }
        let _ = dec.finish_on_eof();
    }
    true
}
