//! Queue-file record framing: the record reader over arbitrary file bytes, and the value
//! parsers every record's data goes through (SIZE, pointer, warning time, lengths).
//!
//! Input: one control byte (record size limit, a seek), then the file image.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use oqmgr::queue::record::{
    c_string, decode_length, encode_record, parse_pointer, parse_size_record, parse_warn_time,
    show_bytes, LengthDecoder, LengthStep, PointerFollower, RecordReader, SizeParse,
};

fuzz_target!(|data: &[u8]| {
    let Some((&control, image)) = data.split_first() else {
        return;
    };
    let max_len = match control & 3 {
        0 => 0,
        1 => 16,
        2 => 1024,
        _ => u64::from(control),
    };
    let Ok(reader) = RecordReader::new(Cursor::new(image)) else {
        return;
    };
    let mut reader = reader.with_max_len(max_len);
    if control & 4 != 0 {
        // A seek anywhere, even past the end, as pointer records ask.
        let target = u64::from(control >> 3) * 7;
        if reader.seek_to(target).is_err() {
            return;
        }
    }
    let mut pointers = PointerFollower::new();
    let mut rewritten = Vec::new();
    let mut records = Vec::new();
    // Each record (or error) consumes at least its type byte: the loop must end.
    let mut steps = 0usize;
    loop {
        steps += 1;
        assert!(steps <= image.len() + 1, "record reader makes no progress");
        let before = reader.position();
        let record = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(e) => {
                let _ = e.to_string();
                assert!(reader.position() > before, "an error consumed nothing");
                continue;
            }
        };
        assert_eq!(record.offset, before);
        if max_len > 0 {
            assert!(record.data.len() as u64 <= max_len);
        }
        // The writer's framing of the record, read back below.
        let bytes = encode_record(record.rec_type.0, &record.data);
        assert_eq!(
            decode_length(&bytes[1..]).map(|(len, _)| len),
            Ok(record.data.len() as u64)
        );
        rewritten.extend_from_slice(&bytes);

        let _ = (record.rec_type.name(), record.rec_type.descriptive_name());
        let _ = format!("{:?}", record.rec_type);
        let value = c_string(&record.data);
        let _ = show_bytes(value);
        match parse_size_record(value) {
            SizeParse::Fields { record: size, .. } => {
                let _ = size.check();
                let _ = size.format();
                let _ = size.effective_content_length();
            }
            SizeParse::Legacy { .. } | SizeParse::Weird => {}
        }
        let _ = parse_pointer(value).map_err(|e| e.to_string());
        let _ = pointers.target(value).map_err(|e| e.to_string());
        let _ = parse_warn_time(value);
        let _ = decode_length(&record.data);
        let mut lengths = LengthDecoder::new();
        for &byte in &record.data {
            if !lengths.wants_byte() {
                break;
            }
            if let LengthStep::Done(_) = lengths.push(byte) {
                break;
            }
        }
        records.push(record);
    }
    // The records round-trip through the writer's framing.
    let mut again = RecordReader::new(Cursor::new(&rewritten[..])).expect("in-memory");
    for record in records {
        let copy = again.next_record().expect("own framing").expect("a record");
        assert_eq!((copy.rec_type, copy.data), (record.rec_type, record.data));
    }
    assert!(matches!(again.next_record(), Ok(None)));
});
