use super::*;
use crate::queue::queue_file_builder::QueueFileBuilder;
use proptest::prelude::*;
use std::io::Cursor;

fn len_bytes(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    encode_length(n, &mut v);
    v
}

#[test]
fn length_encoding_examples() {
    assert_eq!(len_bytes(0), [0x00]);
    assert_eq!(len_bytes(95), [0x5f]);
    assert_eq!(len_bytes(127), [0x7f]);
    assert_eq!(len_bytes(128), [0x80, 0x01]);
    assert_eq!(len_bytes(200), [0xc8, 0x01]);
    assert_eq!(len_bytes(16384), [0x80, 0x80, 0x01]);
    assert_eq!(len_bytes(1 << 28), [0x80, 0x80, 0x80, 0x80, 0x01]);
    assert_eq!(decode_length(&[0xc8, 0x01, 0xff]), Ok((200, 2)));
    assert_eq!(decode_length(&[0x80, 0x80, 0x01]), Ok((16384, 3)));
}

#[test]
fn length_decoding_limits_match_rec_get_raw() {
    // Five groups are accepted (3.7), a continuation bit on the fifth is not.
    assert_eq!(
        decode_length(&[0xff, 0xff, 0xff, 0xff, 0x07]),
        Ok((0x7fff_ffff, 5))
    );
    assert_eq!(
        decode_length(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
        Err(LengthError::TooManyBits)
    );
    // Bit 31 from the fifth group makes the C int negative.
    assert!(matches!(
        decode_length(&[0x80, 0x80, 0x80, 0x80, 0x08]),
        Err(LengthError::Negative(_))
    ));
    // Bits beyond 31 are lost in the C int shift.
    assert_eq!(decode_length(&[0x81, 0x80, 0x80, 0x80, 0x10]), Ok((1, 5)));
    assert_eq!(decode_length(&[0x80]), Err(LengthError::Eof));
}

#[test]
fn reader_yields_records_with_offsets() {
    let mut file = encode_record(b'C', b"x");
    file.extend(encode_record(b'T', &[b'a'; 200]));
    file.extend(encode_record(b'E', b""));
    let mut r = RecordReader::new(Cursor::new(file)).unwrap();
    let a = r.next_record().unwrap().unwrap();
    assert_eq!(
        (a.offset, a.rec_type, a.data),
        (0, RecordType::SIZE, b"x".to_vec())
    );
    let b = r.next_record().unwrap().unwrap();
    assert_eq!((b.offset, b.data.len()), (3, 200));
    let c = r.next_record().unwrap().unwrap();
    assert_eq!((c.offset, c.rec_type), (206, RecordType::END));
    assert_eq!(r.next_record(), Ok(None));
    r.seek_to(3).unwrap();
    assert_eq!(r.next_record().unwrap().unwrap().offset, 3);
}

#[test]
fn reader_errors_have_c_wording() {
    let mut r = RecordReader::new(Cursor::new(b"t\x68short".to_vec())).unwrap();
    let e = r.next_record().unwrap_err();
    assert_eq!(
        e.to_string(),
        "unexpected EOF in data, record type 116 length 104"
    );
    let mut r = RecordReader::new(Cursor::new(b"t\x80".to_vec())).unwrap();
    assert_eq!(
        r.next_record().unwrap_err().to_string(),
        "unexpected EOF reading length, record type 116"
    );
    let mut r = RecordReader::new(Cursor::new(b"t\x80\x80\x80\x80\x80\x00".to_vec())).unwrap();
    assert_eq!(
        r.next_record().unwrap_err().to_string(),
        "too many length bits, record type 116"
    );
    let mut r = RecordReader::new(Cursor::new(b"t\x05hello".to_vec()))
        .unwrap()
        .with_max_len(4);
    assert_eq!(
        r.next_record().unwrap_err().to_string(),
        "illegal length 5, record type 116"
    );
    assert_eq!(r.position(), 7);
}

#[test]
fn size_record_format_and_parse() {
    let s = SizeRecord {
        data_size: 330,
        data_offset: 712,
        rcpt_count: 2,
        qmgr_flags: 0,
        content_length: 330,
        smtputf8: 1,
    };
    let text = s.format();
    assert_eq!(text.len(), 95);
    assert_eq!(encode_record(b'C', text.as_bytes())[..2], [0x43, 0x5f]);
    assert_eq!(
        parse_size_record(text.as_bytes()),
        SizeParse::Fields {
            record: s,
            count: 6
        }
    );
    assert_eq!(s.check(), Ok(()));
    // Three fields: flags default to "mixed".
    let SizeParse::Fields { record, count: 3 } = parse_size_record(b" 10\t20\n3") else {
        panic!("three fields")
    };
    assert_eq!(record.qmgr_flags, QMGR_READ_FLAG_MIXED_RCPT_OTHER);
    assert_eq!(record.effective_content_length(), 10);
    assert_eq!(
        parse_size_record(b"  42"),
        SizeParse::Legacy { data_size: 42 }
    );
    assert_eq!(parse_size_record(b"1 2"), SizeParse::Weird);
    assert_eq!(parse_size_record(b""), SizeParse::Weird);
    assert_eq!(parse_size_record(b"x 1 2 3"), SizeParse::Weird);
}

#[test]
fn size_record_checks() {
    let ok = SizeRecord {
        data_size: 1,
        data_offset: 1,
        rcpt_count: 0,
        qmgr_flags: 0x1f,
        content_length: 0,
        smtputf8: 0,
    };
    assert_eq!(ok.check(), Ok(()));
    let bad = |f: fn(&mut SizeRecord)| {
        let mut s = ok;
        f(&mut s);
        s.check()
    };
    assert_eq!(bad(|s| s.data_size = 0), Err(SizeRecordError::Invalid));
    assert_eq!(bad(|s| s.data_offset = -1), Err(SizeRecordError::Invalid));
    assert_eq!(
        bad(|s| s.qmgr_flags = 0x20),
        Err(SizeRecordError::InvalidFlags)
    );
    assert_eq!(
        bad(|s| s.content_length = -1),
        Err(SizeRecordError::Invalid)
    );
}

#[test]
fn pointer_and_warn_values() {
    assert_eq!(format_long15(0), "              0");
    assert_eq!(parse_pointer(b"              0"), Ok(0));
    assert_eq!(parse_pointer(b"           1234"), Ok(1234));
    assert_eq!(parse_pointer(b""), Ok(0));
    assert!(parse_pointer(b"12 ").is_err());
    assert!(parse_pointer(b"-5").is_err());
    assert!(parse_pointer(b"99999999999999999999").is_err());
    assert_eq!(
        parse_pointer(b"  12x").unwrap_err().to_string(),
        "malformed pointer record value: 12x"
    );
    assert_eq!(parse_warn_time(b"     1700000000"), 1_700_000_000);
    assert_eq!(parse_warn_time(b"             -1"), -1);
}

#[test]
fn pointer_follower_counts_reverse_jumps() {
    let mut f = PointerFollower::new();
    assert_eq!(f.target(b"0"), Ok(None));
    assert_eq!(f.target(b"100"), Ok(Some(100)));
    for _ in 0..REVERSE_JUMP_LIMIT {
        assert_eq!(f.target(b"50"), Ok(Some(50)));
    }
    assert_eq!(f.target(b"50"), Err(PointerError::TooManyReverseJumps));
}

#[test]
fn patches() {
    let p = Patch::delay_warning_sent(40);
    assert_eq!(p.bytes.len(), 17);
    assert_eq!(&p.bytes[..2], b"W\x0f");
    assert_eq!(&p.bytes[2..], b"             -1");
    assert_eq!(Patch::mark_recipient_done(7).bytes, b"D");
    assert_eq!(Patch::kill_record(9).bytes, b"K");
    let mut image = b"xxRyy".to_vec();
    Patch::mark_recipient_done(2).apply_to(&mut image);
    assert_eq!(image, b"xxDyy");
    Patch::kill_record(99).apply_to(&mut image);
    assert_eq!(image, b"xxDyy");
}

#[test]
fn type_names() {
    assert_eq!(RecordType::from_name("CONT"), Some(RecordType(b'L')));
    assert_eq!(RecordType::from_name("FILT"), Some(RecordType(b'L')));
    for t in RecordType::ALL {
        assert_eq!(RecordType::from_name(t.name().unwrap()), Some(t));
    }
    assert_eq!(RecordType(b'Z').name(), None);
    assert_eq!(RecordType::SIZE.descriptive_name(), "message_size");
    assert!(type_in_set(ENVELOPE_TYPES, b'W'));
    assert!(!type_in_set(ENVELOPE_TYPES, b'E'));
    assert!(type_in_set(EXTRACTED_TYPES, b'E'));
    assert!(type_in_set(CONTENT_TYPES, b'N'));
}

#[test]
fn c_number_parsing() {
    assert_eq!(c_atol(b"99999999999999999999"), i64::MAX);
    assert_eq!(c_atol(b"-99999999999999999999"), i64::MIN);
    assert_eq!(c_atoi(b"4294967297"), 1);
}

#[test]
fn builder_produces_consistent_size() {
    let built = QueueFileBuilder::simple(1_700_000_000, b"a@x", &[b"b@y"]).build();
    let mut r = RecordReader::new(Cursor::new(built.bytes.clone())).unwrap();
    let c = r.next_record().unwrap().unwrap();
    let SizeParse::Fields { record, .. } = parse_size_record(&c.data) else {
        panic!("size")
    };
    assert_eq!(record, built.size);
    r.seek_to((record.data_offset + record.data_size) as u64)
        .unwrap();
    assert_eq!(r.next_record().unwrap().unwrap().rec_type, RecordType::XTRA);
}

proptest! {
    #[test]
    fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), max in 0u64..64) {
        let mut r = RecordReader::new(Cursor::new(bytes)).unwrap().with_max_len(max);
        for _ in 0..600 {
            match r.next_record() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }

    #[test]
    fn records_round_trip(records in proptest::collection::vec(
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..20)) {
        let mut w = RecordWriter::new(Vec::new());
        let mut offsets = Vec::new();
        for (t, d) in &records {
            offsets.push(w.put(*t, d).unwrap());
        }
        let bytes = w.into_inner();
        let mut r = RecordReader::new(Cursor::new(bytes)).unwrap();
        for ((t, d), off) in records.iter().zip(offsets) {
            let rec = r.next_record().unwrap().unwrap();
            prop_assert_eq!(rec.offset, off);
            prop_assert_eq!(rec.rec_type, RecordType(*t));
            prop_assert_eq!(&rec.data, d);
        }
        prop_assert_eq!(r.next_record(), Ok(None));
    }

    #[test]
    fn length_round_trip(n in 0usize..(1 << 31)) {
        let bytes = len_bytes(n);
        prop_assert_eq!(decode_length(&bytes), Ok((n as u64, bytes.len())));
    }

    #[test]
    fn size_round_trip(a in any::<i64>(), b in any::<i64>(), c in any::<i32>(),
                       d in any::<i32>(), e in any::<i64>(), f in any::<i32>()) {
        let s = SizeRecord { data_size: a, data_offset: b, rcpt_count: c, qmgr_flags: d,
                             content_length: e, smtputf8: f };
        prop_assert_eq!(parse_size_record(s.format().as_bytes()),
                        SizeParse::Fields { record: s, count: 6 });
    }
}
