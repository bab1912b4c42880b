//! Tests of the simulated servers' request parsing.

use super::*;

fn parse(head: &str) -> Result<Option<(usize, Option<usize>, String)>, String> {
    parse_head(head.as_bytes(), false).map(|r| {
        r.map(|(used, i)| {
            let body = match i.body {
                BodyIn::Length(n) => format!("length {n}"),
                BodyIn::Chunked(_) => "chunked".to_string(),
            };
            (used, i.id, body)
        })
    })
}

#[test]
fn heads_and_their_framing() {
    let get = "GET /r/7 HTTP/1.1\r\nhost: a\r\nx-sim-id: 7\r\n\r\nrest";
    assert_eq!(
        parse(get),
        Ok(Some((get.len() - 4, Some(7), "length 0".into())))
    );
    let post = "POST /r/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nX-Sim-Id: 1\r\n\r\n";
    assert_eq!(
        parse(post),
        Ok(Some((post.len(), Some(1), "length 12".into())))
    );
    let te = "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n";
    assert_eq!(parse(te).unwrap().unwrap().2, "chunked");
    // Incomplete: wait.
    assert_eq!(parse("GET / HTTP/1.1\r\nhost: a\r\n"), Ok(None));
    // A missing or bad x-sim-id is the server's routing check, not a parse error.
    assert_eq!(
        parse("GET / HTTP/1.1\r\nhost: a\r\nx-sim-id: x\r\n\r\n")
            .unwrap()
            .unwrap()
            .1,
        None
    );
}

#[test]
fn framing_errors_and_bad_syntax_are_refused() {
    for bad in [
        "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: +3\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: \r\n\r\n",
        "GET / HTTP/1.1\r\nx-sim-id: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: a\n\r\n",
        "GET / HTTP/1.1\r\nbad name: a\r\n\r\n",
        "G\x00T / HTTP/1.1\r\n\r\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} accepted");
    }
    // Same-valued repeats are one length.
    let same = "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n";
    assert_eq!(parse(same).unwrap().unwrap().2, "length 3");
    // An endless head is refused once it is provably too large.
    let endless = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(70_000));
    assert!(parse_head(endless.as_bytes(), false).is_err());
}

#[test]
fn chunked_bodies_in_any_pieces() {
    let wire = b"5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\n\r\nNEXT";
    for piece in 1..wire.len() {
        let mut decoder = BodyReader::new(Framing::Chunked);
        let (mut body, mut held, mut at, mut done) = (Vec::new(), Vec::new(), 0, false);
        while !done && at < wire.len() {
            let end = (at + piece).min(wire.len());
            held.extend_from_slice(&wire[at..end]);
            at = end;
            let (used, d) = read_chunked(&mut decoder, &mut body, &held).unwrap();
            held.drain(..used);
            done = d;
        }
        assert!(done, "piece {piece}");
        assert_eq!(body, b"hello, world");
        held.extend_from_slice(&wire[at..]);
        assert_eq!(held, b"NEXT", "piece {piece}");
    }
    let mut decoder = BodyReader::new(Framing::Chunked);
    assert!(read_chunked(&mut decoder, &mut Vec::new(), b"5\r\nhelloXX").is_err());
}
