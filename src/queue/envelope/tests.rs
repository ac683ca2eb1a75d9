use super::reader::split_nameval;
use super::*;
use crate::queue::queue_file_builder::QueueFileBuilder;
use crate::queue::record::{encode_record, Patch};
use crate::queue::record::{is_c_space, PointerError, QMGR_READ_FLAG_MIXED_RCPT_OTHER};
use proptest::prelude::*;
use std::io::Cursor;

const OPTS: ReadOptions<'static> = ReadOptions {
    recipient_cap: 1000,
    verp_delimiter_filter: b"-=+",
    confirm_delay_cleared: false,
};

fn read(bytes: &[u8]) -> Result<Envelope, ReadError> {
    read_envelope(&mut Cursor::new(bytes.to_vec()), &OPTS)
}

fn reject(bytes: &[u8]) -> String {
    read(bytes).unwrap_err().rejection.to_string()
}

fn warnings(env: &Envelope) -> Vec<String> {
    env.warnings()
        .filter_map(|e| e.log_line("active/ID", "ID"))
        .collect()
}

/// No records but one content line (data_size must be positive).
fn bare() -> QueueFileBuilder {
    let mut b = QueueFileBuilder::new();
    b.content.push((b'N', b"x".to_vec()));
    b
}

fn simple() -> QueueFileBuilder {
    QueueFileBuilder::simple(1_700_000_000, b"sender@example.com", &[b"a@example.net"])
}

#[test]
fn reads_a_simple_file() {
    let built = simple().build();
    let env = read(&built.bytes).unwrap();
    assert_eq!(&*env.sender, b"sender@example.com");
    assert_eq!(
        env.arrival_time,
        ArrivalTime {
            sec: 1_700_000_000,
            usec: 0
        }
    );
    assert_eq!(env.create_time, 1_700_000_000);
    assert_eq!(env.size, built.size);
    assert_eq!(env.recipients.len(), 1);
    assert_eq!(env.recipients[0].address(), b"a@example.net");
    assert_eq!(env.recipients[0].offset, built.envelope_offsets[3]);
    assert_eq!(env.attrs.rewrite_context(), b"local");
    assert_eq!(env.resume_offset, None);
    assert_eq!(
        env.opened(),
        Some(&Opened {
            sender: b"sender@example.com".to_vec(),
            size: built.size.data_size,
            nrcpt: 1
        })
    );
    assert!(warnings(&env).is_empty());
}

#[test]
fn reads_all_fields() {
    let mut b = bare();
    b.env(b'T', b"1700000000 123456")
        .env(b'A', b"create_time=1690000000")
        .env(b'F', b"Full Name")
        .env(b'A', b"client_name=legacy.example")
        .env(b'A', b"log_client_name=mail.example")
        .env(b'A', b"log_client_address=192.0.2.1")
        .env(b'A', b"log_client_port=2525")
        .env(b'A', b"log_protocol_name=ESMTP")
        .env(b'A', b"log_helo_name=helo.example")
        .env(b'A', b"sasl_method=PLAIN")
        .env(b'A', b"sasl_username=user")
        .env(b'A', b"sasl_sender=s")
        .env(b'A', b"log_ident=ident")
        .env(b'A', b"rewrite_context=remote")
        .env(b'S', b"s@example.com")
        .env(b'V', b"+=")
        .env(b'<', b"2")
        .env(b'i', b"ENVID1")
        .env(b'A', b"trace_flags=1024")
        .env(b'W', b"     1700003600")
        .env(b'I', b"inspect:")
        .env(b'A', b"notify_flags=6")
        .env(b'A', b"dsn_orig_rcpt=rfc822;o@example.net")
        .env(b'O', b"orig@example.net")
        .env(b'R', b"r1@example.net")
        .env(b'D', b"done@example.net")
        .env(b'/', b"cancelled@example.net")
        .env(b'n', b"1")
        .env(b'o', b"rfc822;x")
        .env(b'R', b"r2@example.net")
        .env(b'p', b"              0");
    b.content.push((b'N', b"body".to_vec()));
    b.content.push((b'L', b"not a filter".to_vec()));
    b.extra(b'L', b"smtp:[127.0.0.1]:10025")
        .extra(b'>', b"redirect@example.org")
        .extra(b'A', b"encoding=8bit")
        .extra(b'R', b"r3@example.net")
        .extra(b'p', b"              0");
    b.smtputf8 = 1;
    let built = b.build();
    let env = read(&built.bytes).unwrap();
    assert_eq!(
        env.arrival_time,
        ArrivalTime {
            sec: 1_700_000_000,
            usec: 123_456
        }
    );
    assert_eq!(env.create_time, 1_690_000_000);
    assert_eq!(env.attrs.log_client_name(), b"mail.example");
    assert_eq!(env.attrs.log_client_address(), b"192.0.2.1");
    assert_eq!(env.attrs.log_client_port(), b"2525");
    assert_eq!(env.attrs.log_protocol_name(), b"ESMTP");
    assert_eq!(env.attrs.log_helo_name(), b"helo.example");
    assert_eq!(env.attrs.sasl_method(), b"PLAIN");
    assert_eq!(env.attrs.sasl_username(), b"user");
    assert_eq!(env.attrs.sasl_sender(), b"s");
    assert_eq!(env.attrs.log_ident(), b"ident");
    assert_eq!(env.attrs.rewrite_context(), b"remote");
    assert_eq!(env.verp_delimiters(), Some(&b"+="[..]));
    assert_eq!(env.dsn_ret, 2);
    assert_eq!(env.attrs.dsn_envid(), b"ENVID1");
    assert_eq!(env.trace_flags, DEL_REQ_FLAG_RECORD);
    assert_eq!(env.trace_flags_offset, Some(built.envelope_offsets[18]));
    assert_eq!(
        env.warn,
        Some(WarnRecord {
            offset: built.envelope_offsets[19],
            time: 1_700_003_600
        })
    );
    assert_eq!(env.inspect_transport(), Some(&b"inspect:"[..]));
    assert_eq!(env.filter_transport(), Some(&b"smtp:[127.0.0.1]:10025"[..]));
    assert_eq!(env.redirect_address(), Some(&b"redirect@example.org"[..]));
    assert_eq!(env.attrs.encoding(), b"8bit");
    assert_eq!(env.smtputf8, 1);
    let r: Vec<_> = env.recipients.iter().map(|r| r.address()).collect();
    assert_eq!(
        r,
        [&b"r1@example.net"[..], b"r2@example.net", b"r3@example.net"]
    );
    assert_eq!(env.recipients[0].original(), b"orig@example.net");
    assert_eq!(&*env.recipients[0].dsn_orig_rcpt(), b"rfc822;o@example.net");
    assert_eq!(env.recipients[0].notify_flags, 6);
    assert_eq!(env.recipients[1].original(), b"");
    assert_eq!(&*env.recipients[1].dsn_orig_rcpt(), b"rfc822;x");
    assert_eq!(env.recipients[1].notify_flags, 1);
    assert_eq!(env.recipients[2].offset, built.extracted_offsets[3]);
    assert!(warnings(&env).is_empty(), "{:?}", warnings(&env));
}

#[test]
fn legacy_client_attributes_only_without_log_ones() {
    let mut b = simple();
    b.env(b'A', b"client_name=old.example")
        .env(b'A', b"client_name=second.example")
        .env(b'A', b"helo_name=h");
    let env = read(&b.build().bytes).unwrap();
    assert_eq!(env.attrs.log_client_name(), b"old.example");
    assert_eq!(env.attrs.log_helo_name(), b"h");
}

#[test]
fn rejections_have_c_wording() {
    let built = simple().build();
    // Truncated before E.
    let cut = &built.bytes[..built.end_offset as usize];
    assert_eq!(reject(cut), "message rejected: missing end record");
    // Truncated inside a record: the framing warning is logged first.
    let mut b = simple();
    b.extra(b'A', b"encoding=8bit");
    let built = b.build();
    let cut = &built.bytes[..built.end_offset as usize - 3];
    let err = read(cut).unwrap_err();
    assert_eq!(
        err.rejection.log_lines("active/ID", "ID"),
        vec![
            (
                Severity::Warning,
                "active/ID: unexpected EOF in data, record type 65 length 13".to_string()
            ),
            (
                Severity::Warning,
                "ID: message rejected: missing end record".to_string()
            ),
        ]
    );
    assert!(
        err.opened().is_some(),
        "from= line is logged before rejection"
    );

    let mut no_time = bare();
    no_time.env(b'S', b"s").env(b'R', b"r");
    assert_eq!(
        reject(&no_time.build().bytes),
        "message rejected: missing arrival time record"
    );
    let mut no_sender = bare();
    no_sender.env(b'T', b"5 0").env(b'R', b"r");
    assert_eq!(
        reject(&no_sender.build().bytes),
        "message rejected: missing sender record"
    );
    let no_size = [
        encode_record(b'T', b"5"),
        encode_record(b'S', b""),
        encode_record(b'E', b""),
    ]
    .concat();
    assert_eq!(reject(&no_size), "message rejected: missing size record");
    let weird = [encode_record(b'C', b"1 2"), encode_record(b'E', b"")].concat();
    assert_eq!(reject(&weird), "message rejected: weird size record");
    let invalid = [encode_record(b'C', b"0 2 3"), encode_record(b'E', b"")].concat();
    assert_eq!(reject(&invalid), "invalid size record: 0 2 3");
    let flags = [encode_record(b'C', b"1 2 3 64"), encode_record(b'E', b"")].concat();
    assert_eq!(reject(&flags), "invalid flags in size record: 1 2 3 64");
    let negative = [encode_record(b'C', b"1 2 3 0 -1"), encode_record(b'E', b"")].concat();
    assert_eq!(reject(&negative), "invalid size record: 1 2 3 0 -1");
    let mut bad_attr = simple();
    bad_attr.env(b'A', b"novalue");
    assert_eq!(
        reject(&bad_attr.build().bytes),
        "bad attribute record: missing '=' after attribute name: novalue"
    );
    let mut bad_attr = simple();
    bad_attr.env(b'A', b"  =x");
    assert_eq!(
        reject(&bad_attr.build().bytes),
        "bad attribute record: missing attribute name:   =x"
    );
    let mut unexpected = simple();
    unexpected.env(b'N', b"content in envelope");
    let built = unexpected.build();
    assert_eq!(
        reject(&built.bytes),
        format!(
            "Unexpected record type 'N' at offset {}",
            built.envelope_offsets[4]
        )
    );
    // After the content, X must follow.
    let mut built = simple().build();
    built.bytes[built.xtra_offset as usize] = b'R';
    assert_eq!(
        reject(&built.bytes),
        format!("Unexpected record type 'R' at offset {}", built.xtra_offset)
    );
    let nul_type = [encode_record(b'C', b"1 2 3"), vec![0, 0]].concat();
    assert_eq!(reject(&nul_type), "message rejected: missing end record");
}

#[test]
fn pointer_errors_are_not_missing_end() {
    let mut b = simple();
    b.env(b'p', b"12x");
    let err = read(&b.build().bytes).unwrap_err();
    assert_eq!(
        err.rejection.log_lines("active/ID", "ID"),
        vec![(
            Severity::Warning,
            "active/ID: malformed pointer record value: 12x".to_string()
        )]
    );
}

#[test]
fn pointers_are_followed() {
    // Envelope ends with a pointer to a recipient appended after E, which points back.
    let mut b = simple();
    b.env(b'p', &[b'0'; 15]);
    let mut built = b.build();
    let ptr_offset = built.envelope_offsets[4];
    let appended = built.bytes.len() as u64;
    let back = ptr_offset + 17;
    built
        .bytes
        .extend(encode_record(b'R', b"appended@example.net"));
    built
        .bytes
        .extend(encode_record(b'p', format!("{back:>15}").as_bytes()));
    Patch {
        offset: ptr_offset + 2,
        bytes: format!("{appended:>15}").into_bytes(),
    }
    .apply_to(&mut built.bytes);
    let env = read(&built.bytes).unwrap();
    let r: Vec<_> = env
        .recipients
        .iter()
        .map(|r| (r.address().to_vec(), r.offset))
        .collect();
    assert_eq!(
        r,
        vec![
            (b"a@example.net".to_vec(), built.envelope_offsets[3]),
            (b"appended@example.net".to_vec(), appended)
        ]
    );
}

#[test]
fn pointer_loops_are_cut() {
    let mut b = simple();
    b.env(b'p', &[b'0'; 15]);
    let mut built = b.build();
    let ptr = built.envelope_offsets[4];
    Patch {
        offset: ptr + 2,
        bytes: format!("{ptr:>15}").into_bytes(),
    }
    .apply_to(&mut built.bytes);
    assert_eq!(
        read(&built.bytes).unwrap_err().rejection,
        Rejection::Pointer(PointerError::TooManyReverseJumps)
    );
}

#[test]
fn content_is_skipped() {
    // Content records that would be invalid in the envelope are never looked at.
    let mut b = simple();
    b.content = vec![(b'N', b"S fake".to_vec()), (b'Z', b"junk".to_vec())];
    let env = read(&b.build().bytes).unwrap();
    assert_eq!(&*env.sender, b"sender@example.com");
}

#[test]
fn warnings_have_c_wording() {
    let mut b = bare();
    b.env(b'T', b"5 0")
        .env(b'V', b"+=")
        .env(b'S', b"s@x")
        .env(b'V', b"ab")
        .env(b'V', b"+")
        .env(b'<', b"3")
        .env(b'A', b"sasl_method=a")
        .env(b'A', b"sasl_method=b")
        .env(b'A', b"rewrite_context=remote")
        .env(b'A', b"rewrite_context=local")
        .env(b'O', b"o1")
        .env(b'O', b"o2")
        .env(b'o', b"x1")
        .env(b'o', b"x2")
        .env(b'n', b"3")
        .env(b'n', b"2")
        .env(b'n', b"4")
        .env(b'n', b"x")
        .env(b'R', b"r")
        .env(b'O', b"left");
    b.extra(b'o', b"leftorcpt");
    let env = read(&b.build().bytes).unwrap();
    assert_eq!(
        warnings(&env),
        [
            "ID: ignoring VERP request for null sender",
            "ID: ignoring bad VERP request: \"ab\"",
            "ID: ignoring bad VERP request: \"+\"",
            "ID: ignoring malformed DSN RET flags in queue file record:3",
            "ID: ignoring multiple sasl_method attribute: b",
            "ID: ignoring multiple rewrite_context attribute: local",
            "ID: ignoring out-of-order original recipient <o1>",
            "ID: ignoring out-of-order DSN original recipient address <x1>",
            "ID: ignoring malformed DSN notify flags <3>",
            "ID: ignoring out-of-order DSN notify flags <2>",
            "ID: ignoring out-of-order DSN notify flags <4>",
            "ID: ignoring malformed DSN notify flags <x>",
            "ID: ignoring out-of-order DSN original recipient <leftorcpt>",
            "ID: ignoring out-of-order original recipient <left>",
        ]
    );
    assert_eq!(env.verp_delimiters(), None);
    assert_eq!(env.recipients[0].original(), b"o2");
    assert_eq!(&*env.recipients[0].dsn_orig_rcpt(), b"x2");
    assert_eq!(env.recipients[0].notify_flags, 0);
    assert_eq!(env.attrs.rewrite_context(), b"remote");
    assert_eq!(env.dsn_ret, 0);
}

#[test]
fn trace_flags_and_delay_cleared() {
    let mut b = simple();
    b.env(b'A', b"trace_flags=65535")
        .env(b'W', b"             -1");
    let bytes = b.build().bytes;
    let env = read(&bytes).unwrap();
    assert_eq!(env.trace_flags, 0x2700);
    assert_eq!(env.trace_flags_offset, None);
    let opts = ReadOptions {
        confirm_delay_cleared: true,
        ..OPTS
    };
    let mut b = simple();
    b.env(b'W', b"             -1");
    let env = read_envelope(&mut Cursor::new(b.build().bytes), &opts).unwrap();
    assert_eq!(env.trace_flags, DEL_REQ_FLAG_REC_DLY_SENT);
}

#[test]
fn first_values_win_where_c_says_so() {
    let mut b = bare();
    b.env(b'T', b"100 5")
        .env(b'T', b"200 6")
        .env(b'c', b"50")
        .env(b'A', b"create_time=60")
        .env(b'S', b"first")
        .env(b'S', b"second")
        .env(b'W', b"10")
        .env(b'W', b"20")
        .env(b'i', b"e1")
        .env(b'i', b"e2")
        .env(b'L', b"f1")
        .env(b'R', b"r");
    b.extra(b'L', b"f2")
        .extra(b'A', b"encoding=7bit")
        .extra(b'A', b"encoding=8bit");
    let built = b.build();
    let env = read(&built.bytes).unwrap();
    assert_eq!(env.arrival_time, ArrivalTime { sec: 100, usec: 5 });
    assert_eq!(env.create_time, 50);
    assert_eq!(&*env.sender, b"first");
    assert_eq!(env.warn.unwrap().time, 10);
    assert_eq!(env.attrs.dsn_envid(), b"e2");
    assert_eq!(env.filter_transport(), Some(&b"f2"[..]));
    assert_eq!(env.attrs.encoding(), b"8bit");
}

fn batch_file(n: usize, mixed: bool) -> (Vec<u8>, Vec<u64>) {
    let mut b = QueueFileBuilder::simple(5, b"s@x", &[]);
    for i in 0..n {
        if i % 3 == 0 {
            b.env(b'O', format!("orig{i}").as_bytes());
        }
        b.env(b'R', format!("r{i}@x").as_bytes());
    }
    b.extra(b'A', b"encoding=8bit");
    if mixed {
        b.qmgr_flags = QMGR_READ_FLAG_MIXED_RCPT_OTHER;
    }
    let built = b.build();
    let offsets = b
        .envelope
        .iter()
        .zip(&built.envelope_offsets)
        .filter(|((t, _), _)| *t == b'R')
        .map(|(_, o)| *o)
        .collect();
    (built.bytes, offsets)
}

#[test]
fn recipients_come_in_batches() {
    for mixed in [false, true] {
        let (bytes, offsets) = batch_file(250, mixed);
        let opts = ReadOptions {
            recipient_cap: 100,
            ..OPTS
        };
        let mut file = Cursor::new(bytes);
        let mut env = read_envelope(&mut file, &opts).unwrap();
        assert_eq!(
            env.attrs.encoding(),
            b"8bit",
            "extracted segment read in first pass"
        );
        let mut seen = Vec::new();
        let mut batches = 0;
        loop {
            batches += 1;
            assert!(env.recipients.len() <= 100);
            seen.extend(
                env.recipients
                    .iter()
                    .map(|r| (r.offset, r.address().to_vec(), r.original().to_vec())),
            );
            if env.resume_offset.is_none() {
                break;
            }
            read_recipient_batch(&mut file, &mut env, &opts).unwrap();
        }
        assert_eq!(batches, 3);
        let expected: Vec<_> = (0..250)
            .map(|i| {
                let orig = if i % 3 == 0 {
                    format!("orig{i}").into_bytes()
                } else {
                    Vec::new()
                };
                (offsets[i], format!("r{i}@x").into_bytes(), orig)
            })
            .collect();
        assert_eq!(seen, expected);
    }
}

#[test]
fn recipient_cap_matches_fudge_arithmetic() {
    assert_eq!(recipient_cap(20000, 100), 20000);
    assert_eq!(recipient_cap(15, 50), 8);
    assert_eq!(recipient_cap(0, 100), 0);
}

#[test]
fn legacy_size_record() {
    // Pre-1.0: SIZE has one field; the M record holds the extracted offset.
    let mut bytes = encode_record(b'C', b"0");
    bytes.extend(encode_record(b'T', b"5"));
    bytes.extend(encode_record(b'S', b"s"));
    bytes.extend(encode_record(b'R', b"r"));
    let m = bytes.len();
    bytes.extend(encode_record(b'M', b"000"));
    let data_offset = bytes.len();
    bytes.extend(encode_record(b'N', b"body"));
    let xtra = bytes.len();
    bytes.extend(encode_record(b'X', b""));
    bytes.extend(encode_record(b'E', b""));
    let value = format!("{xtra:03}");
    bytes[m + 2..m + 5].copy_from_slice(value.as_bytes());
    let env = read(&bytes).unwrap();
    assert_eq!(env.size.data_offset, data_offset as i64);
    assert_eq!(env.size.data_size, (xtra - data_offset) as i64);
    assert_eq!(env.recipients.len(), 1);
    bytes[m + 2..m + 5].copy_from_slice(b"001");
    let err = read(&bytes).unwrap_err();
    assert!(err.rejection.is_fatal());
    assert_eq!(err.rejection.to_string(), "bad extra offset 001");
}

#[test]
fn split_nameval_trims() {
    assert_eq!(split_nameval(b" a = b c  "), Ok((&b"a"[..], &b"b c"[..])));
    assert_eq!(split_nameval(b"a="), Ok((&b"a"[..], &b""[..])));
    assert!(split_nameval(b"a b=c").is_err());
    assert!(split_nameval(b"").is_err());
}

#[test]
fn nul_truncates_values_like_c() {
    let mut b = QueueFileBuilder::simple(5, b"s@x\0hidden", &[b"r\0x"]);
    b.env(b'A', b"log_ident=a\0b");
    let env = read(&b.build().bytes).unwrap();
    assert_eq!(&*env.sender, b"s@x");
    assert_eq!(env.recipients[0].address(), b"r");
    assert_eq!(env.attrs.log_ident(), b"a");
}

fn addr() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 0..40)
}

proptest! {
    #[test]
    fn envelope_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                    cap in 0usize..4) {
        let opts = ReadOptions { recipient_cap: cap, ..OPTS };
        let mut file = Cursor::new(bytes);
        if let Ok(mut env) = read_envelope(&mut file, &opts) {
            for _ in 0..10 {
                if env.resume_offset.is_none() || read_recipient_batch(&mut file, &mut env, &opts).is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn mutated_files_never_panic(pos in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
        let mut bytes = simple().build().bytes;
        if let Some(b) = bytes.get_mut(pos) { *b = byte; }
        bytes.truncate(bytes.len().saturating_sub(cut % 8));
        let _ = read(&bytes);
    }

    #[test]
    fn envelopes_round_trip(sender in addr(),
                            rcpts in proptest::collection::vec((addr(), addr(), addr(), 0usize..5), 0..12),
                            arrival in 1i64..i64::MAX, usec in 0i64..1_000_000,
                            ident in addr(), cap in 1usize..5, mixed in any::<bool>()) {
        let notify = [0, 1, 2, 6, 14];
        let mut b = QueueFileBuilder::new();
        b.env(b'T', format!("{arrival} {usec}").as_bytes());
        b.env(b'S', &sender);
        b.env(b'A', &[&b"log_ident="[..], &ident].concat());
        for (addr, orig, orcpt, n) in &rcpts {
            if notify[*n] != 0 { b.env(b'A', format!("notify_flags={}", notify[*n]).as_bytes()); }
            if !orcpt.is_empty() { b.env(b'o', orcpt); }
            if !orig.is_empty() { b.env(b'O', orig); }
            b.env(b'R', addr);
        }
        b.content.push((b'N', b"x".to_vec()));
        if mixed { b.qmgr_flags = 1; }
        let opts = ReadOptions { recipient_cap: cap, ..OPTS };
        let mut file = Cursor::new(b.build().bytes);
        let mut env = read_envelope(&mut file, &opts).unwrap();
        prop_assert_eq!(&*env.sender, &sender[..]);
        prop_assert_eq!(env.arrival_time, ArrivalTime { sec: arrival, usec });
        let trimmed: &[u8] = {
            let s = ident.iter().position(|&c| !is_c_space(c)).unwrap_or(ident.len());
            let e = ident.iter().rposition(|&c| !is_c_space(c)).map_or(s, |i| i + 1);
            &ident[s..e.max(s)]
        };
        prop_assert_eq!(&env.attrs.log_ident(), &trimmed.to_vec());
        let mut got = Vec::new();
        loop {
            got.append(&mut env.recipients);
            if env.resume_offset.is_none() { break; }
            read_recipient_batch(&mut file, &mut env, &opts).unwrap();
        }
        prop_assert_eq!(got.len(), rcpts.len());
        for (r, (addr, orig, orcpt, n)) in got.iter().zip(&rcpts) {
            prop_assert_eq!(&r.address().to_vec(), addr);
            prop_assert_eq!(&r.original().to_vec(), orig);
            prop_assert_eq!(&r.dsn_orig_rcpt().to_vec(), orcpt);
            prop_assert_eq!(r.notify_flags, notify[*n]);
        }
    }
}
