//! Head encoding: exact wire output, sanitising, and parse → strip → encode → parse.

use bytes::BytesMut;

use super::*;

fn text(out: &BytesMut) -> &str {
    std::str::from_utf8(out).unwrap()
}

#[test]
fn request_head_forwarded() {
    let raw = b"POST http://Up.Stream:8080/x?y HTTP/1.1\r\nHost: ignored\r\nX-A: 1\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n";
    let (mut head, _) = parse_request_head(raw, &Limits::default())
        .unwrap()
        .unwrap();
    strip_hop_by_hop(&mut head.headers);
    let mut out = BytesMut::new();
    encode_request_head(&head, &mut out);
    assert_eq!(
        text(&out),
        "POST /x?y HTTP/1.1\r\nhost: Up.Stream:8080\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let (again, n) = parse_request_head(&out, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(n, out.len());
    assert_eq!(
        (again.target, again.authority, again.framing),
        (head.target, head.authority, head.framing)
    );
}

#[test]
fn request_head_content_length_and_upgrade() {
    let raw = b"GET /ws HTTP/1.0\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    let (mut head, _) = parse_request_head(raw, &Limits::default())
        .unwrap()
        .unwrap();
    strip_hop_by_hop(&mut head.headers);
    head.upgrade = Some("websocket".into());
    let mut out = BytesMut::new();
    encode_request_head(&head, &mut out);
    assert_eq!(
        text(&out),
        "GET /ws HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
    );
}

#[test]
fn request_head_sanitises_rewritten_strings() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let (mut head, _) = parse_request_head(raw, &Limits::default())
        .unwrap()
        .unwrap();
    head.target = "/a b\r\nX: y".into();
    head.authority = "h\r\nx: 1".into();
    let mut out = BytesMut::new();
    encode_request_head(&head, &mut out);
    assert_eq!(
        text(&out),
        "GET /a%20b%0D%0AX:%20y HTTP/1.1\r\nhost: hx: 1\r\n\r\n"
    );
}

#[test]
fn response_head_forwarded() {
    let raw = b"HTTP/1.1 200 Fine\r\nContent-Length: 5\r\nX-B: 2\r\nConnection: close\r\n\r\n";
    let (mut head, _) = parse_response_head(raw, &Limits::default(), &http::Method::GET)
        .unwrap()
        .unwrap();
    strip_hop_by_hop(&mut head.headers);
    let mut out = BytesMut::new();
    encode_response_head(&head, &mut out);
    assert_eq!(
        text(&out),
        "HTTP/1.1 200 Fine\r\nx-b: 2\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"
    );
}

#[test]
fn response_head_close_delimited_and_empty_reason() {
    let raw = b"HTTP/1.0 404\r\n\r\n";
    let (head, _) = parse_response_head(raw, &Limits::default(), &http::Method::GET)
        .unwrap()
        .unwrap();
    assert_eq!(head.framing, BodyFraming::CloseDelimited);
    let mut out = BytesMut::new();
    encode_response_head(&head, &mut out);
    assert_eq!(
        text(&out),
        "HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n"
    );
    let mut chunked = head.clone();
    chunked.framing = BodyFraming::Chunked;
    chunked.keep_alive = true;
    let mut out = BytesMut::new();
    encode_response_head(&chunked, &mut out);
    assert_eq!(
        text(&out),
        "HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn local_response_full() {
    let mut out = BytesMut::new();
    encode_local_response(
        503,
        &[("X-Envoy-Overloaded", "true"), ("retry-after", " 1 ")],
        b"no healthy upstream",
        true,
        &mut out,
    );
    assert_eq!(
        text(&out),
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 19\r\ncontent-type: text/plain\r\nx-envoy-overloaded: true\r\nretry-after: 1\r\nconnection: close\r\n\r\nno healthy upstream"
    );
    let (head, n) = parse_response_head(&out, &Limits::default(), &http::Method::GET)
        .unwrap()
        .unwrap();
    assert_eq!(
        (head.status, head.framing, head.keep_alive),
        (503, BodyFraming::ContentLength(19), false)
    );
    assert_eq!(&out[n..], b"no healthy upstream");
}

#[test]
fn local_response_empty_body_and_overrides() {
    let mut out = BytesMut::new();
    encode_local_response(
        302,
        &[
            ("location", "/new\r\nSet-Cookie: x"),
            ("content-length", "99"),
            ("bad name", "x"),
        ],
        b"",
        false,
        &mut out,
    );
    assert_eq!(
        text(&out),
        "HTTP/1.1 302 Found\r\ncontent-length: 0\r\nlocation: /newSet-Cookie: x\r\n\r\n"
    );
    let mut out = BytesMut::new();
    encode_local_response(
        200,
        &[("Content-Type", "application/json")],
        b"{}",
        false,
        &mut out,
    );
    assert_eq!(
        text(&out),
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"
    );
}

#[test]
fn local_response_bodiless_statuses() {
    for status in [100u16, 204, 304] {
        let mut out = BytesMut::new();
        encode_local_response(status, &[], b"ignored", false, &mut out);
        let s = text(&out);
        assert!(
            !s.contains("content-length") && !s.ends_with("ignored"),
            "{s}"
        );
        assert!(s.starts_with(&format!("HTTP/1.1 {status} ")));
    }
}

#[test]
fn reason_phrases_in_status_line() {
    let mut out = BytesMut::new();
    encode_local_response(431, &[], b"", true, &mut out);
    assert!(text(&out).starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
}

#[test]
fn numbers_are_written_as_format_writes_them() {
    // Statuses (the one-write status line for 100..=999, the old path outside it) and content
    // lengths (two digits per step, the name laid out before them) against `format!`.
    for status in (0..1200u16).chain([9999, 10_000, u16::MAX]) {
        let head = ResponseHead {
            version: Version::Http11,
            status,
            reason: "R".into(),
            headers: Fields::new(),
            framing: BodyFraming::None,
            keep_alive: true,
        };
        let mut out = BytesMut::new();
        encode_response_head(&head, &mut out);
        assert_eq!(text(&out), format!("HTTP/1.1 {status} R\r\n\r\n"));
    }
    let mut lengths = vec![
        0,
        9,
        10,
        99,
        100,
        999,
        1000,
        1024,
        65_535,
        u64::MAX,
        u64::MAX - 1,
    ];
    lengths.extend((0..64).map(|shift| 1u64 << shift));
    lengths.extend((1..20).map(|exp| 10u64.pow(exp) - 1));
    lengths.extend((1..20).map(|exp| 10u64.pow(exp)));
    for n in lengths {
        let mut head = parse_response_head(
            b"HTTP/1.1 200 OK\r\n\r\n",
            &Limits::default(),
            &http::Method::GET,
        )
        .unwrap()
        .unwrap()
        .0;
        head.framing = BodyFraming::ContentLength(n);
        // Parsed without a length the head was close-delimited: not kept alive.
        head.keep_alive = true;
        let mut out = BytesMut::new();
        encode_response_head(&head, &mut out);
        assert_eq!(
            text(&out),
            format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n")
        );
        let mut out = BytesMut::new();
        super::encode::put_decimal(&mut out, n);
        assert_eq!(text(&out), n.to_string());
    }
}
