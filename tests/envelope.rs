//! Queue files written by the record writer to a real file, read back the way qmgr does,
//! and patched in place the way qmgr does.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};

use oqmgr::queue::envelope::{
    read_envelope, read_recipient_batch, ReadEvent, ReadOptions, Rejection, Severity,
    DEL_REQ_FLAG_RECORD, DEL_REQ_FLAG_REC_DLY_SENT,
};
use oqmgr::queue::record::{self, Patch, RecordReader, RecordType};
use queue_file_builder::QueueFileBuilder;

// The shared queue-file builder; it reaches the library through `record` above.
#[path = "support/queue_file_builder.rs"]
mod queue_file_builder;

const OPTS: ReadOptions<'static> = ReadOptions {
    recipient_cap: 100,
    verp_delimiter_filter: b"-=+",
    confirm_delay_cleared: true,
};

fn write_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    File::create(&path).unwrap().write_all(bytes).unwrap();
    path
}

fn apply(path: &std::path::Path, patch: &Patch) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(patch.offset)).unwrap();
    f.write_all(&patch.bytes).unwrap();
}

fn cleanup_like(recipients: usize) -> QueueFileBuilder {
    let mut b = QueueFileBuilder::new();
    b.env(b'T', b"1700000000 250000")
        .env(b'A', b"create_time=1700000000")
        .env(b'A', b"log_ident=4F2D81C0A3")
        .env(b'A', b"rewrite_context=local")
        .env(b'S', b"sender@src.example")
        .env(b'A', b"log_client_name=client.example")
        .env(b'A', b"log_client_address=192.0.2.7")
        .env(b'A', b"trace_flags=1024")
        .env(b'W', b"     1700014400");
    for i in 0..recipients {
        b.env(
            b'A',
            format!("dsn_orig_rcpt=rfc822;r{i}@d.example").as_bytes(),
        )
        .env(b'O', format!("r{i}@d.example").as_bytes())
        .env(b'R', format!("r{i}@d.example").as_bytes());
    }
    b.content = vec![
        (b'N', b"Subject: hello".to_vec()),
        (b'N', b"".to_vec()),
        (b'N', b"body".to_vec()),
    ];
    b.extra(b'A', b"encoding=7bit");
    b
}

#[test]
fn reads_a_file_on_disk_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let built = cleanup_like(250).build();
    let path = write_file(&dir, "4F2D81C0A3", &built.bytes);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut env = read_envelope(&mut file, &OPTS).unwrap();
    let opened = env.opened().unwrap();
    assert_eq!(opened.sender, b"sender@src.example");
    assert_eq!((opened.size, opened.nrcpt), (built.size.data_size, 250));
    assert_eq!(env.attrs.log_ident(), b"4F2D81C0A3");
    assert_eq!(env.attrs.log_client_address(), b"192.0.2.7");
    assert_eq!(env.attrs.encoding(), b"7bit");
    assert_eq!(env.arrival_time.usec, 250_000);
    let mut all = Vec::new();
    let mut batch_sizes = Vec::new();
    loop {
        batch_sizes.push(env.recipients.len());
        all.extend(env.recipients.iter().cloned());
        if env.resume_offset.is_none() {
            break;
        }
        read_recipient_batch(&mut file, &mut env, &OPTS).unwrap();
    }
    assert_eq!(batch_sizes, [100, 100, 50]);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.address(), format!("r{i}@d.example").into_bytes());
        assert_eq!(r.original(), r.address());
        assert_eq!(
            r.dsn_orig_rcpt(),
            format!("rfc822;r{i}@d.example").into_bytes()
        );
    }
}

#[test]
fn in_place_patches_change_what_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let built = cleanup_like(3).build();
    let path = write_file(&dir, "ABC", &built.bytes);
    let env = read_envelope(&mut File::open(&path).unwrap(), &OPTS).unwrap();
    assert_eq!(env.trace_flags, DEL_REQ_FLAG_RECORD);
    let trace_offset = env.trace_flags_offset.unwrap();
    let warn = env.warn.unwrap();
    assert_eq!(warn.time, 1_700_014_400);

    apply(&path, &Patch::mark_recipient_done(env.recipients[1].offset));
    apply(&path, &Patch::kill_record(trace_offset));
    apply(&path, &Patch::delay_warning_sent(warn.offset));

    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        bytes.len(),
        built.bytes.len(),
        "patches never change the size"
    );
    let again = read_envelope(&mut File::open(&path).unwrap(), &OPTS).unwrap();
    let names: Vec<_> = again
        .recipients
        .iter()
        .map(|r| r.address().to_vec())
        .collect();
    assert_eq!(names, [b"r0@d.example".to_vec(), b"r2@d.example".to_vec()]);
    assert_eq!(
        again.trace_flags, DEL_REQ_FLAG_REC_DLY_SENT,
        "killed trace flags, W = -1"
    );
    assert_eq!(again.warn.unwrap().time, -1);

    let mut reader = RecordReader::new(File::open(&path).unwrap()).unwrap();
    reader.seek_to(trace_offset).unwrap();
    assert_eq!(
        reader.next_record().unwrap().unwrap().rec_type,
        RecordType::KILL
    );
}

#[test]
fn truncated_file_on_disk_is_rejected_after_the_from_line() {
    let dir = tempfile::tempdir().unwrap();
    let built = cleanup_like(2).build();
    // Cut inside the extracted `A encoding=7bit` record.
    let cut = built.extracted_offsets[0] as usize + 5;
    let path = write_file(&dir, "TRUNC", &built.bytes[..cut]);
    let err = read_envelope(&mut File::open(&path).unwrap(), &OPTS).unwrap_err();
    assert!(matches!(err.events.first(), Some(ReadEvent::Opened(_))));
    assert_eq!(
        err.rejection.log_lines("active/TRUNC", "TRUNC"),
        [
            (
                Severity::Warning,
                "active/TRUNC: unexpected EOF in data, record type 65 length 13".to_string()
            ),
            (
                Severity::Warning,
                "TRUNC: message rejected: missing end record".to_string()
            ),
        ]
    );
    assert!(matches!(
        err.rejection,
        Rejection::MissingEndRecord { cause: Some(_) }
    ));
}

#[test]
fn garbage_file_on_disk_is_rejected_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "JUNK", b"\xff\xff\xff\xff\xff\xff\xffgarbage");
    let err = read_envelope(&mut File::open(&path).unwrap(), &OPTS).unwrap_err();
    assert_eq!(
        err.rejection.log_lines("active/JUNK", "JUNK")[0].1,
        "active/JUNK: too many length bits, record type 255"
    );
    assert!(err.opened().is_none());
}
