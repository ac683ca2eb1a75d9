//! Real queue files written by Postfix 3.7.11's cleanup(8) (tests/data/queue/, see its
//! README): every field the envelope reader decodes is checked against the `postcat -bdehor`
//! output committed beside each file (and the exact `T` value from the `.records` dump,
//! since postcat prints arrival time at one-second resolution).

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;

use oqmgr::queue::envelope::{read_envelope, read_recipient_batch, Envelope, ReadOptions};

const OPTS: ReadOptions<'static> = ReadOptions {
    recipient_cap: 1000,
    verp_delimiter_filter: b"-=+",
    confirm_delay_cleared: false,
};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/queue")
}

fn cases() -> Vec<(String, String)> {
    let ids = std::fs::read_to_string(data_dir().join("queue-ids.txt")).unwrap();
    ids.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            (
                parts.next().unwrap().to_string(),
                parts.next().unwrap().to_string(),
            )
        })
        .collect()
}

/// One postcat record line: offset, decimal type, name, value (raw bytes).
#[derive(Debug)]
struct Line {
    offset: u64,
    rec_type: u8,
    name: String,
    value: Vec<u8>,
}

#[derive(PartialEq, Clone, Copy)]
enum Section {
    Envelope,
    Content,
    Extracted,
    End,
}

/// The envelope and extracted records of a postcat listing, each with its section.
fn parse_postcat(text: &[u8]) -> Vec<(Section, Line)> {
    let mut section = Section::Envelope;
    let mut out = Vec::new();
    for raw in text.split(|&b| b == b'\n') {
        let trimmed = raw.trim_ascii_start();
        if trimmed.is_empty() || trimmed.starts_with(b"*** ") {
            continue;
        }
        let off_end = trimmed.iter().position(|&b| b == b' ').unwrap();
        let offset: u64 = std::str::from_utf8(&trimmed[..off_end])
            .unwrap()
            .parse()
            .unwrap();
        let rest = trimmed[off_end..].trim_ascii_start();
        let type_end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        let rec_type: u8 = std::str::from_utf8(&rest[..type_end])
            .unwrap()
            .parse()
            .unwrap();
        let body = rest.get(type_end + 1..).unwrap_or(&[]);
        if body.starts_with(b"*** ") {
            section = if body.starts_with(b"*** MESSAGE CONTENTS") {
                Section::Content
            } else if body.starts_with(b"*** HEADER EXTRACTED") {
                Section::Extracted
            } else {
                Section::End
            };
            continue;
        }
        if section == Section::Content || section == Section::End {
            continue;
        }
        let colon = body.iter().position(|&b| b == b':').unwrap();
        let name = String::from_utf8(body[..colon].to_vec()).unwrap();
        let value = body[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&body[colon + 1..]);
        out.push((
            section,
            Line {
                offset,
                rec_type,
                name,
                value: value.to_vec(),
            },
        ));
    }
    out
}

/// `Sun Nov 29 14:10:37 2026` (UTC) as seconds since the epoch.
fn parse_date(text: &[u8]) -> i64 {
    let text = std::str::from_utf8(text).unwrap();
    let f: Vec<&str> = text.split_whitespace().collect();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| *m == f[1]).unwrap() as i64 + 1;
    let day: i64 = f[2].parse().unwrap();
    let hms: Vec<i64> = f[3].split(':').map(|x| x.parse().unwrap()).collect();
    let year: i64 = f[4].parse().unwrap();
    // Days from civil (proleptic Gregorian).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
}

/// The exact `T` record data from the `.records` dump.
fn arrival_from_records(case: &str) -> (i64, i64) {
    let text = std::fs::read_to_string(data_dir().join(format!("{case}.records"))).unwrap();
    let line = text
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("T"))
        .unwrap();
    let data: Vec<i64> = line
        .splitn(4, ' ')
        .nth(3)
        .unwrap()
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    (data[0], data[1])
}

fn read_case(case: &str, options: &ReadOptions<'_>) -> (File, Envelope) {
    let mut file = File::open(data_dir().join(case)).unwrap();
    let env = read_envelope(&mut file, options)
        .unwrap_or_else(|e| panic!("{case}: {e} ({:?})", e.events));
    (file, env)
}

#[derive(Default, Debug, PartialEq)]
struct ExpectedRecipient {
    offset: u64,
    address: Vec<u8>,
    orig: Vec<u8>,
    orcpt: Vec<u8>,
    notify: i32,
}

#[test]
fn every_real_queue_file_decodes_as_postcat_shows() {
    let cases = cases();
    assert!(cases.len() >= 10, "vectors present: {cases:?}");
    for (case, queue_id) in &cases {
        let postcat = std::fs::read(data_dir().join(format!("{case}.postcat"))).unwrap();
        let lines = parse_postcat(&postcat);
        let (_, env) = read_case(case, &OPTS);
        let ctx = |what: &str| format!("{case}: {what}");

        // Size record.
        let size_line = &lines
            .iter()
            .find(|(_, l)| l.name == "message_size")
            .unwrap()
            .1;
        let fields: Vec<i64> = std::str::from_utf8(&size_line.value)
            .unwrap()
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(env.size.data_size, fields[0], "{}", ctx("data_size"));
        assert_eq!(env.size.data_offset, fields[1], "{}", ctx("data_offset"));
        assert_eq!(
            i64::from(env.size.rcpt_count),
            fields[2],
            "{}",
            ctx("nrcpt")
        );
        assert_eq!(
            i64::from(env.size.qmgr_flags),
            fields[3],
            "{}",
            ctx("flags")
        );
        let content_length = if fields[4] == 0 { fields[0] } else { fields[4] };
        assert_eq!(env.size.content_length, content_length, "{}", ctx("length"));
        assert_eq!(i64::from(env.smtputf8), fields[5], "{}", ctx("smtputf8"));

        // Times.
        let (sec, usec) = arrival_from_records(case);
        let arrival_line = &lines
            .iter()
            .find(|(_, l)| l.name == "message_arrival_time")
            .unwrap()
            .1;
        assert_eq!(
            parse_date(&arrival_line.value),
            sec,
            "{}",
            ctx("T vs postcat")
        );
        assert_eq!((env.arrival_time.sec, env.arrival_time.usec), (sec, usec));
        let ctime = lines.iter().find(|(_, l)| l.name == "create_time").unwrap();
        assert_eq!(
            env.create_time,
            parse_date(&ctime.1.value),
            "{}",
            ctx("create_time")
        );

        // Sender and the from= line.
        let sender = &lines
            .iter()
            .find(|(_, l)| l.name == "sender")
            .unwrap()
            .1
            .value;
        assert_eq!(&*env.sender, &sender[..], "{}", ctx("sender"));
        let opened = env.opened().unwrap();
        assert_eq!(&opened.sender, sender);
        assert_eq!(opened.size, content_length);
        assert_eq!(i64::from(opened.nrcpt), fields[2]);

        // Recipients with what precedes them; done recipients are skipped.
        let mut expected = Vec::new();
        let mut pending = ExpectedRecipient::default();
        let mut attrs: HashMap<String, Vec<u8>> = HashMap::new();
        let mut first_attrs: HashMap<String, Vec<u8>> = HashMap::new();
        let mut warn = None;
        let mut verp = None;
        let mut filter = None;
        let mut redirect = None;
        for (_, line) in &lines {
            match line.name.as_str() {
                "named_attribute" => {
                    let eq = line.value.iter().position(|&b| b == b'=').unwrap();
                    let name = String::from_utf8(line.value[..eq].to_vec()).unwrap();
                    let value = line.value[eq + 1..].to_vec();
                    match name.as_str() {
                        "dsn_orig_rcpt" => pending.orcpt = value,
                        "notify_flags" => {
                            pending.notify = std::str::from_utf8(&value).unwrap().parse().unwrap()
                        }
                        _ => {
                            first_attrs.entry(name.clone()).or_insert(value.clone());
                            attrs.insert(name, value);
                        }
                    }
                }
                "original_recipient" => pending.orig = line.value.clone(),
                "recipient" => {
                    pending.offset = line.offset;
                    pending.address = line.value.clone();
                    expected.push(std::mem::take(&mut pending));
                }
                "done_recipient" | "canceled_recipient" => pending = Default::default(),
                "warning_message_time" if warn.is_none() => {
                    warn = Some((line.offset, parse_date(&line.value)))
                }
                "verp_delimiters" => verp = Some(line.value.clone()),
                "content_filter" => filter = Some(line.value.clone()),
                "redirect_to" => redirect = Some(line.value.clone()),
                _ => {}
            }
            assert_ne!(
                line.rec_type,
                b'p',
                "{}",
                ctx("no pointer records expected")
            );
        }
        let got: Vec<ExpectedRecipient> = env
            .recipients
            .iter()
            .map(|r| ExpectedRecipient {
                offset: r.offset,
                address: r.address().to_vec(),
                orig: r.original().to_vec(),
                orcpt: r.dsn_orig_rcpt().to_vec(),
                notify: r.notify_flags as i32,
            })
            .collect();
        assert_eq!(got, expected, "{}", ctx("recipients"));
        assert_eq!(env.resume_offset, None);

        assert_eq!(
            env.warn.map(|w| (w.offset, w.time)),
            warn,
            "{}",
            ctx("W record")
        );
        assert_eq!(env.verp_delimiters(), verp.as_deref(), "{}", ctx("VERP"));
        assert_eq!(
            env.filter_transport(),
            filter.as_deref(),
            "{}",
            ctx("filter")
        );
        assert_eq!(
            env.redirect_address(),
            redirect.as_deref(),
            "{}",
            ctx("redirect")
        );
        assert_eq!(env.inspect_transport(), None);
        let attr =
            |name: &str, default: &[u8]| attrs.get(name).cloned().unwrap_or(default.to_vec());
        let first =
            |name: &str, default: &[u8]| first_attrs.get(name).cloned().unwrap_or(default.to_vec());
        assert_eq!(
            env.attrs.encoding(),
            attr("encoding", b""),
            "{}",
            ctx("encoding")
        );
        assert_eq!(
            env.attrs.dsn_envid(),
            attr("envelope_id", b""),
            "{}",
            ctx("envid")
        );
        let ret = attr("ret_flags", b"0");
        assert_eq!(
            i64::from(env.dsn_ret),
            std::str::from_utf8(&ret).unwrap().parse::<i64>().unwrap(),
            "{}",
            ctx("ret")
        );
        assert_eq!(env.attrs.log_client_name(), attr("log_client_name", b""));
        assert_eq!(
            env.attrs.log_client_address(),
            attr("log_client_address", b"")
        );
        assert_eq!(env.attrs.log_client_port(), attr("log_client_port", b""));
        assert_eq!(
            env.attrs.log_protocol_name(),
            attr("log_protocol_name", b"")
        );
        assert_eq!(env.attrs.log_helo_name(), attr("log_helo_name", b""));
        assert_eq!(env.attrs.sasl_method(), first("sasl_method", b""));
        assert_eq!(env.attrs.sasl_username(), first("sasl_username", b""));
        assert_eq!(env.attrs.sasl_sender(), first("sasl_sender", b""));
        assert_eq!(env.attrs.log_ident(), first("log_ident", b""));
        assert_eq!(
            env.attrs.log_ident(),
            queue_id.as_bytes(),
            "{}",
            ctx("log_ident = queue id")
        );
        assert_eq!(
            env.attrs.rewrite_context(),
            first("rewrite_context", b"local")
        );
        assert_eq!(env.trace_flags, 0);
        assert_eq!(env.trace_flags_offset, None);
        let warnings: Vec<_> = env.warnings().collect();
        assert!(warnings.is_empty(), "{}: {warnings:?}", ctx("warnings"));
    }
}

#[test]
fn many_recipients_come_in_batches_without_loss() {
    let options = ReadOptions {
        recipient_cap: 128,
        ..OPTS
    };
    let (_, whole) = read_case("many-rcpt", &OPTS);
    assert_eq!(whole.recipients.len(), 300);
    let (mut file, mut env) = read_case("many-rcpt", &options);
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    loop {
        sizes.push(env.recipients.len());
        got.append(&mut env.recipients);
        if env.resume_offset.is_none() {
            break;
        }
        read_recipient_batch(&mut file, &mut env, &options).unwrap();
    }
    assert_eq!(sizes, [128, 128, 44]);
    assert_eq!(got, whole.recipients);
}

#[test]
fn partly_done_matches_the_c_oqmgr_log() {
    let (_, env) = read_case("partly-done", &OPTS);
    let log = std::fs::read_to_string(data_dir().join("partly-done.maillog")).unwrap();
    let opened = env.opened().unwrap();
    let line = format!(
        "from=<{}>, size={}, nrcpt={} (queue active)",
        String::from_utf8_lossy(&opened.sender),
        opened.size,
        opened.nrcpt
    );
    assert!(log.contains(&line), "{line} not in {log}");
    let left: Vec<_> = env
        .recipients
        .iter()
        .map(|r| r.address().to_vec())
        .collect();
    assert_eq!(left, [b"later@later.example".to_vec()]);
}
