//! Tests of the ordered field list (`field_list.rs`).

use super::*;

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs.iter().copied().collect()
}

fn pairs(f: &Fields) -> Vec<(String, String)> {
    f.iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

#[test]
fn received_fields_point_into_the_head() {
    let head = Bytes::from_static(b"x-a: 1\r\nset-cookie: b\r\n");
    let mut f = Fields::with_capacity(2);
    f.set_head(head);
    f.push_received((0, 3), (5, 1));
    f.push_received((8, 10), (20, 1));
    assert_eq!(f.get("X-A"), Some(&b"1"[..]));
    assert_eq!(f.get_shared("set-cookie").as_deref(), Some(&b"b"[..]));
    assert_eq!(f.len(), 2);
}

#[test]
fn canonical_received_lines_are_written_as_runs() {
    let head = Bytes::from_static(b"a: 1\r\nb: 22\r\nc:3\r\nd: 4 \r\ne: 5\r\nf:\t6\r\ng: 7\r\n");
    let mut f = Fields::with_capacity(8);
    f.set_head(head.clone());
    // Each line's name and OWS-trimmed value, as offsets (what the parser pushes).
    let mut at = 0;
    for line in head.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let colon = line.iter().position(|&b| b == b':').unwrap();
        let value = &line[colon + 1..line.len() - 1];
        let lead = value
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let trail = value.iter().rev().take_while(|&&b| b == b' ').count();
        let v = at + colon + 1 + lead;
        f.push_received((at, colon), (v, value.len() - lead - trail));
        at += line.len() + 1;
    }
    f.append(FieldName::from_static("h"), Bytes::from_static(b"8"));
    // `e` follows `d`, whose line is not canonical, so it starts a run of its own; `g`
    // follows `f` (a tab after the colon).
    assert_eq!(
        f.pieces().collect::<Vec<_>>(),
        [
            Piece::Lines(b"a: 1\r\nb: 22\r\n"),
            Piece::Field(b"c", b"3"),
            Piece::Field(b"d", b"4"),
            Piece::Lines(b"e: 5\r\n"),
            Piece::Field(b"f", b"6"),
            Piece::Lines(b"g: 7\r\n"),
            Piece::Field(b"h", b"8"),
        ]
    );
    // A removed field splits a run: what is left is not contiguous in the head.
    f.remove("b");
    f.remove("c");
    f.remove("d");
    assert_eq!(
        f.pieces().take(2).collect::<Vec<_>>(),
        [Piece::Lines(b"a: 1\r\n"), Piece::Lines(b"e: 5\r\n")]
    );
}

#[test]
fn order_and_duplicates_are_kept() {
    let mut f = fields(&[
        ("a", "1"),
        ("set-cookie", "x"),
        ("b", "2"),
        ("set-cookie", "y"),
    ]);
    let cookies: Vec<&[u8]> = f.get_all("Set-Cookie").collect();
    assert_eq!(cookies, [&b"x"[..], b"y"]);
    assert!(f.remove("a"));
    assert!(!f.remove("a"));
    assert_eq!(
        pairs(&f),
        [("set-cookie", "x"), ("b", "2"), ("set-cookie", "y")]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
}

/// `retain` keeps what `Vec::retain` over the same calls keeps, in order, whatever
/// `keep` answers for each field (asked once a field, in order).
#[quickcheck_macros::quickcheck]
fn retain_agrees_with_vec_retain(names: Vec<u8>, answers: Vec<bool>) -> bool {
    let drawn: Vec<(String, String)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("n{}", n % 5), i.to_string()))
        .collect();
    let text: Vec<(&str, &str)> = drawn.iter().map(|(n, v)| (&n[..], &v[..])).collect();
    let mut ours = fields(&text);
    let mut asked = 0;
    ours.retain(|_, _| {
        asked += 1;
        answers.get(asked - 1).copied().unwrap_or(true)
    });
    let mut expected = drawn.clone();
    let mut at = 0;
    expected.retain(|_| {
        at += 1;
        answers.get(at - 1).copied().unwrap_or(true)
    });
    asked == drawn.len() && pairs(&ours) == expected
}

#[test]
fn insert_replaces_the_first_in_place_and_drops_the_rest() {
    let mut f = fields(&[("a", "1"), ("c", "x"), ("b", "2"), ("c", "y")]);
    f.insert(FieldName::from_static("c"), Bytes::from_static(b"z"));
    f.insert(FieldName::from_static("d"), Bytes::from_static(b"4"));
    assert_eq!(
        pairs(&f),
        [("a", "1"), ("c", "z"), ("b", "2"), ("d", "4")].map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
}

#[test]
fn names_are_tokens_lower_cased() {
    assert_eq!(FieldName::new("X-Custom").unwrap().as_str(), "x-custom");
    assert!(FieldName::new("a b").is_none());
    assert!(FieldName::new("").is_none());
    assert!(FieldName::new(&"a".repeat(MAX_NAME_LEN + 1)).is_none());
}

#[test]
fn values_checked_as_header_value_did() {
    for v in [
        &b"a\x00b"[..],
        b"\x0bchunked",
        b"a\rb",
        b"a\x7fb",
        b"a\x1bb",
        b"a\nb",
    ] {
        assert!(!valid_value(v), "{v:?}");
        assert!(http::HeaderValue::from_bytes(v).is_err());
    }
    for v in [&b"a\tb \xff"[..], b"", b"x y"] {
        assert!(valid_value(v), "{v:?}");
        assert!(http::HeaderValue::from_bytes(v).is_ok());
    }
    for v in [&b"a\tb"[..], b"a\xffb", b"\xc3\xa9"] {
        let ours = value_str(v);
        let theirs = http::HeaderValue::from_bytes(v).unwrap();
        assert_eq!(ours, theirs.to_str().ok(), "{v:?}");
    }
}

/// The lengths read from the spans are those of the bytes looked up, for received and added
/// fields alike (what the encoder's reserve hint summed before).
#[quickcheck_macros::quickcheck]
fn lengths_from_spans_agree_with_the_bytes(lines: Vec<(u8, u8)>) -> bool {
    let mut head = Vec::new();
    let mut spans = Vec::new();
    for (i, &(n, v)) in lines.iter().take(10).enumerate() {
        let (name, value) = (
            format!("n{}", "x".repeat(usize::from(n % 7))),
            "v".repeat(usize::from(v % 9)),
        );
        let name_at = (head.len(), name.len());
        head.extend_from_slice(format!("{name}: ").as_bytes());
        spans.push((name_at, (head.len(), value.len()), i % 3 == 0));
        head.extend_from_slice(format!("{value}\r\n").as_bytes());
    }
    let mut f = Fields::new();
    for &(name, value, added) in &spans {
        if added {
            f.append_text("x-added", "some value");
        }
        f.push_received(name, value);
    }
    f.set_head(Bytes::from(head));
    let looked_up: usize = f.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    f.lines_len() == looked_up && f.get("x-added").is_some() == spans.iter().any(|s| s.2)
}

/// The one-pass search for two names answers as comparing each name from `iter` with both
/// (names of received and added fields, of the lengths searched and others, any case asked).
#[quickcheck_macros::quickcheck]
fn contains_each_agrees_with_comparing_every_name(names: Vec<(u8, bool)>, asked: (u8, u8)) -> bool {
    const NAMES: [&str; 6] = [
        "x-request-id",
        "x-forwarded-proto",
        "x-request-ix",
        "via",
        "a",
        "X-Request-Id",
    ];
    let mut head = Vec::new();
    let mut f = Fields::new();
    for &(n, added) in names.iter().take(10) {
        let name = NAMES[usize::from(n) % NAMES.len()].to_ascii_lowercase();
        if added {
            f.append_text(&name, "v");
        } else {
            let at = head.len();
            head.extend_from_slice(format!("{name}: v\r\n").as_bytes());
            f.push_received((at, name.len()), (at + name.len() + 2, 1));
        }
    }
    f.set_head(Bytes::from(head));
    let (a, b) = (
        NAMES[usize::from(asked.0) % NAMES.len()].as_bytes(),
        NAMES[usize::from(asked.1) % NAMES.len()].as_bytes(),
    );
    let expected = f.iter().fold((false, false), |(x, y), (name, _)| {
        (
            x | name.eq_ignore_ascii_case(a),
            y | name.eq_ignore_ascii_case(b),
        )
    });
    f.contains_each(a, b) == expected
}
