#[test]
fn end_of_input_warnings_are_attr_scans() {
    let stream = "private/rewrite socket";
    let mut d = AttrDecoder::default();
    assert_eq!(d.eof_warning(stream), None, "between lists: quiet");
    d.feed(b"flags\x000\0").unwrap();
    assert_eq!(
        d.eof_warning(stream).as_deref(),
        Some("premature end-of-input on private/rewrite socket while reading input attribute name")
    );
    d.feed(b"trans").unwrap();
    assert_eq!(
        d.eof_warning(stream).as_deref(),
        Some("unexpected end-of-input from private/rewrite socket while reading input attribute name")
    );
    d.feed(b"port\0").unwrap();
    assert_eq!(
        d.eof_warning(stream).as_deref(),
        Some(
            "premature end-of-input on private/rewrite socket while reading input attribute value"
        )
    );
    d.feed(b"sm").unwrap();
    assert_eq!(
        d.eof_warning(stream).as_deref(),
        Some("unexpected end-of-input from private/rewrite socket while reading input attribute value")
    );
}

use super::*;
use proptest::prelude::*;

const RESOLVE_REPLY: &[u8] =
    b"flags\x000\0transport\0discard\0nexthop\0d1.lab\0recipient\0alice@d1.lab\0flags\x004096\0\0";

fn pairs(list: &AttrList) -> Vec<(String, String)> {
    list.attrs()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

#[test]
fn writer_produces_wire_form() {
    let mut w = AttrWriter::new();
    w.str("request", b"resolve")
        .str("sender", b"")
        .int("flags", 4096)
        .int_signed("status", -1)
        .long("offset", 639)
        .data("time", b"foo")
        .end();
    assert_eq!(
        w.as_bytes(),
        b"request\0resolve\0sender\0\0flags\x004096\0status\x004294967295\0offset\x00639\0time\0Zm9v\0\0"
    );
}

#[test]
fn writer_cuts_values_at_nul_like_c_strings() {
    let mut w = AttrWriter::new();
    w.str("a", b"x\0y").end();
    assert_eq!(w.into_bytes(), b"a\0x\0\0");
}

#[test]
fn decoder_keeps_duplicates_in_order() {
    let lists = AttrDecoder::default().feed(RESOLVE_REPLY).unwrap();
    assert_eq!(lists.len(), 1);
    let got = pairs(&lists[0]);
    assert_eq!(got[0], ("flags".into(), "0".into()));
    assert_eq!(got[4], ("flags".into(), "4096".into()));
    assert_eq!(lists[0].to_bytes(), RESOLVE_REPLY);
}

#[test]
fn decoder_handles_byte_at_a_time_and_several_lists_per_chunk() {
    let mut stream = b"protocol\0trivial_rewrite_protocol\0\0".to_vec();
    stream.extend_from_slice(RESOLVE_REPLY);
    stream.extend_from_slice(b"\0");
    let whole = AttrDecoder::default().feed(&stream).unwrap();
    assert_eq!(whole.len(), 3);
    assert!(whole[2].is_empty());

    let mut dec = AttrDecoder::default();
    let mut lists = Vec::new();
    for byte in &stream {
        lists.extend(dec.feed(std::slice::from_ref(byte)).unwrap());
    }
    assert_eq!(lists, whole);
    assert!(dec.is_idle());
    assert_eq!(dec.finish(), Ok(()));
}

#[test]
fn push_stops_after_each_list() {
    let mut dec = AttrDecoder::default();
    let input = b"a\0b\0\0c\0d\0\0";
    let (used, list) = dec.push(input).unwrap();
    assert_eq!(used, 5);
    assert_eq!(list.unwrap().get("a"), Some(&b"b"[..]));
    let (used, list) = dec.push(&input[5..]).unwrap();
    assert_eq!(used, 5);
    assert_eq!(list.unwrap().get("c"), Some(&b"d"[..]));
}

#[test]
fn truncation_at_end_of_input() {
    let cases: [(&[u8], Field, bool); 4] = [
        (b"status", Field::Name, true),
        (b"status\0", Field::Value, false),
        (b"status\x000", Field::Value, true),
        (b"status\x000\0", Field::Name, false),
    ];
    for (input, field, partial) in cases {
        let mut dec = AttrDecoder::default();
        assert!(dec.feed(input).unwrap().is_empty());
        assert!(!dec.is_idle());
        assert_eq!(dec.finish(), Err(AttrError::Truncated { field, partial }));
    }
    let err = AttrError::Truncated {
        field: Field::Name,
        partial: false,
    };
    assert_eq!(
        err.warning("private/smtp"),
        "premature end-of-input on private/smtp while reading input attribute name"
    );
}

#[test]
fn limits_reject_floods_and_poison_the_stream() {
    let limits = DecodeLimits {
        max_attr_bytes: 8,
        max_list_bytes: 20,
        max_attrs: 3,
    };
    let mut dec = AttrDecoder::new(limits);
    assert_eq!(
        dec.feed(b"name\0value\0"),
        Err(AttrError::AttrTooLong { limit: 8 })
    );
    assert_eq!(dec.feed(b"\0"), Err(AttrError::AttrTooLong { limit: 8 }));
    assert_eq!(dec.finish(), Err(AttrError::AttrTooLong { limit: 8 }));

    let mut dec = AttrDecoder::new(limits);
    assert_eq!(
        dec.feed(b"aaaa\0bbbb\0cccc\0dddd\0e"),
        Err(AttrError::ListTooLong { limit: 20 })
    );

    let mut dec = AttrDecoder::new(limits);
    assert_eq!(
        dec.feed(b"a\0\0b\0\0c\0\0d\0"),
        Err(AttrError::TooManyAttrs { limit: 3 })
    );

    // An endless attribute without NUL is refused once it passes the limit.
    let mut dec = AttrDecoder::new(limits);
    assert_eq!(dec.feed(b"12345678").unwrap(), vec![]);
    assert_eq!(dec.feed(b"9"), Err(AttrError::AttrTooLong { limit: 8 }));
}

#[test]
fn reader_strict_matches_attr_scan() {
    let list = AttrDecoder::default()
        .feed(RESOLVE_REPLY)
        .unwrap()
        .remove(0);
    let mut r = list.reader(ScanMode::Strict);
    assert_eq!(r.int("flags"), Ok(0));
    assert_eq!(r.str("transport"), Ok(&b"discard"[..]));
    assert_eq!(r.str("nexthop"), Ok(&b"d1.lab"[..]));
    assert_eq!(r.str("recipient"), Ok(&b"alice@d1.lab"[..]));
    assert_eq!(r.int("flags"), Ok(4096));
    assert_eq!(r.end(), Ok(()));

    let mut r = list.reader(ScanMode::Strict);
    let err = r.str("transport").unwrap_err();
    assert_eq!(
        err.warning("private/rewrite"),
        "unexpected attribute flags from private/rewrite (expecting: transport)"
    );

    let mut r = list.reader(ScanMode::Strict);
    r.int("flags").unwrap();
    assert_eq!(
        r.end().unwrap_err().warning("private/rewrite"),
        "unexpected attribute transport from private/rewrite (expecting: (list terminator))"
    );
}

#[test]
fn reader_skip_unknown_and_missing() {
    let list = AttrList::from_pairs(&[("x", "1"), ("status", "0"), ("y", "2")]);
    let mut r = list.reader(ScanMode::SkipUnknown);
    assert_eq!(r.int("status"), Ok(0));
    assert_eq!(r.end(), Ok(()));

    let mut r = list.reader(ScanMode::SkipUnknown);
    assert_eq!(
        r.int("reason").unwrap_err().warning("private/verify"),
        "missing attribute reason in input from private/verify"
    );
}

#[test]
fn numbers_must_be_pure_decimal() {
    for bad in ["", " 1", "+1", "-1", "1x", "4294967296", "0x10"] {
        let list = AttrList::from_pairs(&[("n", bad)]);
        assert_eq!(
            list.reader(ScanMode::Strict).int("n"),
            Err(AttrError::MalformedNumber {
                value: bad.as_bytes().to_vec()
            }),
            "{bad:?}"
        );
    }
    let list = AttrList::from_pairs(&[("n", "4294967295"), ("l", "18446744073709551615")]);
    let mut r = list.reader(ScanMode::Strict);
    assert_eq!(r.int_signed("n"), Ok(-1));
    assert_eq!(r.long("l"), Ok(u64::MAX));
    let list = AttrList::from_pairs(&[("l", "18446744073709551616")]);
    let err = list.reader(ScanMode::Strict).long("l").unwrap_err();
    assert_eq!(
        err.warning("p"),
        "malformed numerical data from p while reading input attribute value: 18446744073709551616"
    );
}

#[test]
fn data_and_fixed_values() {
    let list = AttrList::from_pairs(&[("time", "Zm9v"), ("bad", "Zm9")]);
    let mut r = list.reader(ScanMode::Strict);
    assert_eq!(r.data("time"), Ok(b"foo".to_vec()));
    assert!(matches!(
        r.data("bad"),
        Err(AttrError::MalformedBase64 { .. })
    ));

    let list = AttrList::from_pairs(&[("protocol", "delivery_status_protocol")]);
    let err = list
        .reader(ScanMode::Strict)
        .expect_str("protocol", "delivery_request_protocol")
        .unwrap_err();
    assert_eq!(
        err.warning("private/smtp"),
        "unexpected protocol delivery_status_protocol from private/smtp (expected: delivery_request_protocol)"
    );
}

fn attr_list() -> impl Strategy<Value = AttrList> {
    let name = proptest::collection::vec(1u8..=255, 1..12);
    let value = proptest::collection::vec(1u8..=255, 0..40);
    proptest::collection::vec((name, value), 0..10).prop_map(|attrs| AttrList::from_pairs(&attrs))
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let limits = DecodeLimits { max_attr_bytes: 64, max_list_bytes: 200, max_attrs: 8 };
        let mut dec = AttrDecoder::new(limits);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut start = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            if let Ok(lists) = dec.feed(&bytes[start..cut]) {
                for list in lists {
                    let mut r = list.reader(ScanMode::SkipUnknown);
                    let _ = r.int("flags");
                    let _ = r.long("offset");
                    let _ = r.data("time");
                    let _ = r.end();
                }
            }
            start = cut;
        }
        let _ = dec.finish();
    }

    #[test]
    fn lists_round_trip_in_any_chunking(
        lists in proptest::collection::vec(attr_list(), 0..5),
        chunk in 1usize..40,
    ) {
        let mut wire = Vec::new();
        for list in &lists {
            list.encode_into(&mut wire);
        }
        let mut dec = AttrDecoder::default();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            got.extend(dec.feed(piece).unwrap());
        }
        prop_assert_eq!(dec.finish(), Ok(()));
        prop_assert_eq!(got, lists);
    }

    #[test]
    fn numbers_round_trip(int in any::<u32>(), signed in any::<i32>(), long in any::<u64>()) {
        let mut w = AttrWriter::new();
        w.int("i", int).int_signed("s", signed).long("l", long).end();
        let list = AttrDecoder::default().feed(w.as_bytes()).unwrap().remove(0);
        let mut r = list.reader(ScanMode::Strict);
        prop_assert_eq!(r.int("i"), Ok(int));
        prop_assert_eq!(r.int_signed("s"), Ok(signed));
        prop_assert_eq!(r.long("l"), Ok(long));
        prop_assert_eq!(r.end(), Ok(()));
    }

    #[test]
    fn numbers_print_as_plain_decimal(long in any::<u64>()) {
        let mut w = AttrWriter::new();
        w.long("l", long);
        let want = format!("l\0{long}\0");
        prop_assert_eq!(w.as_bytes(), want.as_bytes());
    }

    #[test]
    fn parts_print_as_their_concatenation(a in proptest::collection::vec(any::<u8>(), 0..8),
                                          b in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut joined = a.clone();
        joined.extend_from_slice(&b);
        let (mut one, mut two) = (AttrWriter::new(), AttrWriter::new());
        one.str("v", &joined);
        two.str_parts("v", &[&a, &b]);
        prop_assert_eq!(one.as_bytes(), two.as_bytes());
    }
}
