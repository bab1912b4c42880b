//! Request-head rules, one small raw request per rule with the expected outcome.

use super::*;

fn parse(raw: &[u8]) -> Result<Option<(RequestHead, usize)>, ParseError> {
    parse_request_head(raw, &Limits::default())
}

/// The parsed head, or the status the proxy would answer with.
fn req(raw: &str) -> Result<RequestHead, u16> {
    match parse(raw.as_bytes()) {
        Ok(Some((h, n))) => {
            assert_eq!(n, raw.len(), "consumed");
            Ok(h)
        }
        Ok(None) => panic!("incomplete: {raw:?}"),
        Err(e) => Err(e.status()),
    }
}

fn status(raw: &str) -> u16 {
    match req(raw) {
        Ok(_) => 200,
        Err(s) => s,
    }
}

#[test]
fn simple_get() {
    let h = req("GET /a/b?c=d HTTP/1.1\r\nHost: Example.com:8080\r\nAccept: */*\r\nX-A: 1\r\nx-a: 2\r\n\r\n").unwrap();
    assert_eq!(h.method, http::Method::GET);
    assert_eq!(h.target, "/a/b?c=d");
    assert_eq!((h.path(), h.query()), ("/a/b", Some("c=d")));
    assert_eq!(h.version, Version::Http11);
    assert_eq!(h.authority, "Example.com:8080");
    assert!(h.headers.get("host").is_none());
    let xa: Vec<_> = h.headers.get_all("x-a").collect();
    assert_eq!(xa, [b"1", b"2"]);
    assert_eq!(h.framing, BodyFraming::None);
    assert!(h.keep_alive && !h.expect_continue && h.upgrade.is_none());
}

#[test]
fn incomplete_and_consumed() {
    let full = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
    for cut in 0..full.len() - 4 {
        assert!(parse(&full[..cut]).unwrap().is_none(), "cut {cut}");
    }
    let (_, n) = parse(full).unwrap().unwrap();
    assert_eq!(n, full.len() - 4);
}

/// A method is a token whatever follows it: a byte that can be neither part of one nor what
/// ends it condemns an unfinished first line at once (Envoy's `BalsaParser::execute` refuses
/// from the first byte, `HPE_INVALID_METHOD`); what may still become a valid line waits.
#[test]
fn a_byte_no_method_can_hold_is_refused_before_the_line_ends() {
    let client_hello = &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..];
    for early in [client_hello, b"G@T", b"GET\x00", b"\x80", b"\r\nG(T"] {
        assert_eq!(
            parse(early).map(|o| o.is_some()),
            Err(ParseError::InvalidMethod),
            "{early:?}"
        );
    }
    for waiting in [&b"GE"[..], b"GET", b"GET ", b"GET\r", b" ", b"GET /a\x01"] {
        assert!(matches!(parse(waiting), Ok(None)), "{waiting:?}");
    }
}

/// Refusing early never refuses a line that would have been accepted whole.
#[quickcheck_macros::quickcheck]
fn an_early_refusal_is_the_whole_lines_too(method: Vec<u8>, cut: usize) -> bool {
    let mut full = method;
    full.extend_from_slice(b" / HTTP/1.1\r\nhost: a\r\n\r\n");
    let prefix = &full[..cut % (full.len() + 1)];
    !matches!(parse(prefix), Err(ParseError::InvalidMethod)) || parse(&full).is_err()
}

#[test]
fn leading_empty_lines_skipped() {
    let (h, n) = parse(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!((h.target.as_str(), n), ("/", 31));
    assert!(parse(b"\r\n\r").unwrap().is_none());
    assert_eq!(
        parse(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap_err()
            .status(),
        400
    );
}

#[test]
fn request_line_syntax() {
    assert_eq!(status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET /\r\n\r\n"), 400);
    assert_eq!(status("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GE\x01T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    let h = req("PURGE-X /c HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(h.method.as_str(), "PURGE-X");
}

#[test]
fn versions() {
    assert_eq!(
        req("GET / HTTP/1.0\r\n\r\n").unwrap().version,
        Version::Http10
    );
    for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"] {
        assert_eq!(status(&format!("GET / {v}\r\nHost: a\r\n\r\n")), 505, "{v}");
    }
    for v in [
        "http/1.1",
        "HTTP/1",
        "HTTP/1.1.1",
        "HTTP/11",
        "HTTP/a.b",
        "HTTPS/1.1",
        "HTTP/1.10",
    ] {
        assert_eq!(status(&format!("GET / {v}\r\nHost: a\r\n\r\n")), 400, "{v}");
    }
}

#[test]
fn request_line_limit_414_even_incomplete() {
    let limits = Limits {
        max_request_line_bytes: 32,
        ..Limits::default()
    };
    let long = format!("GET /{} HTTP/1.1", "a".repeat(40));
    assert_eq!(
        parse_request_head(long.as_bytes(), &limits)
            .unwrap_err()
            .status(),
        414
    );
    let full = format!("{long}\r\nHost: a\r\n\r\n");
    assert_eq!(
        parse_request_head(full.as_bytes(), &limits)
            .unwrap_err()
            .status(),
        414
    );
    // Exactly at the limit is fine, including an incomplete line ending in CR.
    let at = format!("GET /{} HTTP/1.1", "a".repeat(32 - 14));
    assert_eq!(at.len(), 32);
    assert!(parse_request_head(format!("{at}\r").as_bytes(), &limits)
        .unwrap()
        .is_none());
    assert!(
        parse_request_head(format!("{at}\r\nHost: a\r\n\r\n").as_bytes(), &limits)
            .unwrap()
            .is_some()
    );
}

#[test]
fn head_limits_431_even_incomplete() {
    let limits = Limits {
        max_request_line_bytes: 64,
        max_header_bytes: 128,
        max_headers: 3,
    };
    let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "b".repeat(120));
    assert_eq!(
        parse_request_head(big.as_bytes(), &limits)
            .unwrap_err()
            .status(),
        431
    );
    let many = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n";
    assert_eq!(
        parse_request_head(many.as_bytes(), &limits)
            .unwrap_err()
            .status(),
        431
    );
    let ok = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    assert!(parse_request_head(ok.as_bytes(), &limits)
        .unwrap()
        .is_some());
    let endless_crlf = "\r\n".repeat(100);
    assert_eq!(
        parse_request_head(endless_crlf.as_bytes(), &limits)
            .unwrap_err()
            .status(),
        431
    );
}

#[test]
fn line_endings() {
    assert_eq!(status("GET / HTTP/1.1\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\n\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\rHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nX\r: b\r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn field_syntax() {
    assert_eq!(
        status("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
        400
    );
    assert_eq!(
        status("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"),
        400
    );
    assert_eq!(
        status("GET / HTTP/1.1\r\n folded: x\r\nHost: a\r\n\r\n"),
        400
    );
    assert_eq!(status("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nX[a]: b\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n"), 400);
    assert_eq!(
        status("GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n"),
        400
    );
    assert_eq!(
        status("GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n"),
        400
    );
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n"), 400);
    let h = req("GET / HTTP/1.1\r\nHost: a\r\nX: \t a\tb \t\r\nY:\r\n\r\n").unwrap();
    assert_eq!(h.headers.get("x").unwrap(), b"a\tb");
    assert_eq!(h.headers.get("y").unwrap(), b"");
}

#[test]
fn host_rules() {
    assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
    for bad in [
        "", "a b", "a:99999", "a:", "u@a", "[::1", "a:1:2", "a/b", "a,b",
    ] {
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n")),
            400,
            "{bad:?}"
        );
    }
    assert_eq!(
        req("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")
            .unwrap()
            .authority,
        "[::1]:80"
    );
    assert_eq!(
        req("GET / HTTP/1.1\r\nHost: 10.1.2.3\r\n\r\n")
            .unwrap()
            .authority,
        "10.1.2.3"
    );
    // HTTP/1.0 may omit Host; if present it is still validated.
    assert_eq!(req("GET / HTTP/1.0\r\n\r\n").unwrap().authority, "");
    assert_eq!(
        req("GET / HTTP/1.0\r\nHost: A.b\r\n\r\n")
            .unwrap()
            .authority,
        "A.b"
    );
    assert_eq!(status("GET / HTTP/1.0\r\nHost: a b\r\n\r\n"), 400);
}

#[test]
fn target_forms() {
    let h = req("GET http://Other.Host:81/p?q HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(
        (h.target.as_str(), h.authority.as_str()),
        ("/p?q", "Other.Host:81")
    );
    assert_eq!(
        req("GET HTTPS://h HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .target,
        "/"
    );
    assert_eq!(
        req("GET http://h?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .target,
        "/?x=1"
    );
    assert_eq!(
        req("GET http://h/ HTTP/1.0\r\n\r\n").unwrap().authority,
        "h"
    );
    assert_eq!(status("GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET http://u@h/p HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET ftp://h/p HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET http://h/p HTTP/1.1\r\n\r\n"), 400);
    let o = req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!((o.target.as_str(), o.path()), ("*", "*"));
    assert_eq!(status("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET h:80 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET ?x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn connect_requests() {
    let c = req("CONNECT Example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n").unwrap();
    assert_eq!(c.method, http::Method::CONNECT);
    assert_eq!(
        (c.target.as_str(), c.authority.as_str()),
        ("Example.com:443", "Example.com:443")
    );
    assert!(c.upgrade.is_none());
    assert_eq!(c.framing, BodyFraming::None);
    assert_eq!(status("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(
        status("CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n"),
        400
    );
    assert_eq!(
        status("CONNECT http://a:1/ HTTP/1.1\r\nHost: a\r\n\r\n"),
        400
    );
    assert_eq!(
        status("CONNECT a:443 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n"),
        400
    );
}

#[test]
fn content_length_rules() {
    let cl = |v: &str| {
        req(&format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n"
        ))
    };
    assert_eq!(cl("5").unwrap().framing, BodyFraming::ContentLength(5));
    assert_eq!(cl("0").unwrap().framing, BodyFraming::ContentLength(0));
    assert_eq!(cl("5, 5").unwrap().framing, BodyFraming::ContentLength(5));
    assert_eq!(cl("007").unwrap().framing, BodyFraming::ContentLength(7));
    for bad in [
        "+5",
        "-5",
        "5 5",
        "0x5",
        "5a",
        "",
        "1,2",
        "99999999999999999999",
        "5,",
        "5;",
        "\"5\"",
    ] {
        assert_eq!(cl(bad).map(|_| ()), Err(400), "{bad:?}");
    }
    let twice = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(req(twice).unwrap().framing, BodyFraming::ContentLength(5));
    let differ = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
    assert_eq!(status(differ), 400);
}

#[test]
fn transfer_encoding_rules() {
    let te = |v: &str| {
        status(&format!(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n"
        ))
    };
    assert_eq!(te("chunked"), 200);
    assert_eq!(te("Chunked"), 200);
    assert_eq!(te("CHUNKED"), 200);
    assert_eq!(te("gzip"), 501);
    assert_eq!(te("gzip, chunked"), 501);
    assert_eq!(te("identity"), 501);
    assert_eq!(te("xchunked"), 501);
    assert_eq!(te("chunked, gzip"), 400);
    assert_eq!(te("chunked, chunked"), 400);
    assert_eq!(te(""), 400);
    assert_eq!(te("chunked;q=1"), 400);
    assert_eq!(te("\"chunked\""), 400);
    assert_eq!(te("\x0bchunked"), 400);
    assert_eq!(te("chunked\x0b"), 400);
    assert_eq!(te("chunked\x00"), 400);
    let ok = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n").unwrap();
    assert_eq!(ok.framing, BodyFraming::Chunked);
    let two_lines = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(status(two_lines), 400);
    let gzip_then = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(status(gzip_then), 501);
}

#[test]
fn smuggling_tricks_never_chunked() {
    for raw in [
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 3\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\tchunked\r\nContent-Length: 3\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\nContent-Length: 3\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\n: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nX: y\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n",
    ] {
        let s = status(raw);
        assert!(s == 400 || s == 501, "{raw:?} gave {s}");
    }
    // A field merely resembling Transfer-Encoding is an ordinary field.
    let h = req(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    )
    .unwrap();
    assert_eq!(h.framing, BodyFraming::ContentLength(3));
}

#[test]
fn expect_rules() {
    let e = |v: &str| {
        req(&format!(
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: {v}\r\nContent-Length: 1\r\n\r\n"
        ))
    };
    assert!(e("100-continue").unwrap().expect_continue);
    assert!(e("100-Continue").unwrap().expect_continue);
    assert_eq!(e("200-ok").map(|_| ()), Err(417));
    assert_eq!(e("100-continue, foo").map(|_| ()), Err(417));
    let h10 = req("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").unwrap();
    assert!(!h10.expect_continue);
}

#[test]
fn keep_alive_rules() {
    let ka = |raw: &str| req(raw).unwrap().keep_alive;
    assert!(ka("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(!ka(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n"
    ));
    assert!(!ka(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n"
    ));
    assert!(!ka(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n"
    ));
    assert!(ka(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"
    ));
    assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
    assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    assert!(!ka(
        "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
    ));
}

#[test]
fn upgrade_rules() {
    let up = |raw: &str| req(raw).unwrap().upgrade;
    assert_eq!(
        up("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n"),
        Some("websocket".to_string())
    );
    assert_eq!(
        up("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"),
        None
    );
    assert_eq!(
        up("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"),
        None
    );
    assert_eq!(
        up("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"),
        None
    );
    assert_eq!(
        up("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: H2C\r\n\r\n"),
        None
    );
    assert_eq!(
        up("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"),
        None
    );
    let h = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: x\r\n\r\n").unwrap();
    assert!(h.upgrade.is_none() && h.keep_alive);
}

#[test]
fn pipelined_heads_consume_exactly_one() {
    let two = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    let (h1, n1) = parse(two).unwrap().unwrap();
    let (h2, n2) = parse(&two[n1..]).unwrap().unwrap();
    assert_eq!((h1.target.as_str(), h2.target.as_str()), ("/1", "/2"));
    assert_eq!(n1 + n2, two.len());
}

#[quickcheck_macros::quickcheck]
fn never_panics_on_arbitrary_bytes(data: Vec<u8>) -> bool {
    let _ = parse_request_head(&data, &Limits::default());
    let small = Limits {
        max_request_line_bytes: 8,
        max_header_bytes: 16,
        max_headers: 2,
    };
    let _ = parse_request_head(&data, &small);
    true
}

#[quickcheck_macros::quickcheck]
fn never_panics_on_mutated_requests(edits: Vec<(u16, u8)>) -> bool {
    let mut raw = b"POST http://h:1/p?q HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: upgrade\r\nUpgrade: ws\r\nExpect: 100-continue\r\n\r\n".to_vec();
    for (pos, byte) in edits {
        let i = usize::from(pos) % raw.len();
        raw[i] = byte;
    }
    let _ = parse_request_head(&raw, &Limits::default());
    true
}

#[test]
fn take_request_head_agrees_with_parse_and_leaves_the_body() {
    let raw = b"POST /a?b HTTP/1.1\r\nHost: Example.COM\r\nX-A: 1\r\nX-A: 2\r\ncontent-length: 3\r\n\r\nabcGET";
    let (parsed, used) = parse_request_head(raw, &Limits::default())
        .unwrap()
        .unwrap();
    let mut buf = bytes::BytesMut::from(&raw[..]);
    let taken = super::take_request_head(&mut buf, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..], &raw[used..]);
    assert_eq!(taken.headers, parsed.headers);
    assert_eq!(taken.authority, parsed.authority);
    assert_eq!(taken.target, parsed.target);
    assert_eq!(taken.framing, parsed.framing);
    let mut partial = bytes::BytesMut::from(&raw[..20]);
    assert!(super::take_request_head(&mut partial, &Limits::default())
        .unwrap()
        .is_none());
    assert_eq!(partial.len(), 20, "nothing consumed while incomplete");
}
