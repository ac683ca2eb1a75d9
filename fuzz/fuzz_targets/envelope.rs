//! The envelope reader as the daemon drives it: read_envelope, then recipient batches until
//! none is left, with each delivered recipient marked done in the file between batches (as
//! qmgr patches its queue files). Small recipient caps exercise the batches; one-number SIZE
//! records take the pre-1.0 (legacy) scan.
//!
//! Input: one control byte (recipient cap 0-15, confirm_delay_cleared, VERP filter), then
//! the queue file.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use oqmgr::queue::envelope::{read_envelope, read_recipient_batch, ReadError, ReadOptions};
use oqmgr::queue::record::Patch;

const QUEUE_PATH: &str = "active/4ZyxwvQmSdz";
const QUEUE_ID: &str = "4ZyxwvQmSdz";

fn log_error(e: &ReadError) {
    let _ = e.to_string();
    let _ = e.rejection.log_lines(QUEUE_PATH, QUEUE_ID);
    let _ = e.rejection.is_fatal();
    for event in &e.events {
        let _ = event.log_line(QUEUE_PATH, QUEUE_ID);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, file)) = data.split_first() else {
        return;
    };
    let options = ReadOptions {
        recipient_cap: usize::from(control & 0x0f),
        verp_delimiter_filter: if control & 0x10 != 0 { b"-=+" } else { b"" },
        confirm_delay_cleared: control & 0x20 != 0,
    };
    let mut image = file.to_vec();
    let mut envelope = match read_envelope(&mut Cursor::new(&image[..]), &options) {
        Ok(envelope) => envelope,
        Err(e) => return log_error(&e),
    };
    for event in envelope.warnings() {
        let _ = event.log_line(QUEUE_PATH, QUEUE_ID);
    }
    let cap = options.recipient_cap.max(1);
    // Every batch but the last delivers at least one recipient, which is then marked done:
    // the batches must end within one per recipient record.
    let mut batches = 0usize;
    loop {
        assert!(
            envelope.recipients.len() <= cap,
            "batch of {} over the cap {cap}",
            envelope.recipients.len()
        );
        for rcpt in &envelope.recipients {
            assert!(
                (rcpt.offset as usize) < image.len(),
                "recipient offset past the end"
            );
            Patch::mark_recipient_done(rcpt.offset).apply_to(&mut image);
        }
        if envelope.resume_offset.is_none() {
            break;
        }
        batches += 1;
        assert!(
            batches <= image.len() / 2 + 1,
            "recipient batches never end"
        );
        match read_recipient_batch(&mut Cursor::new(&image[..]), &mut envelope, &options) {
            Ok(events) => {
                for event in events {
                    let _ = event.log_line(QUEUE_PATH, QUEUE_ID);
                }
            }
            Err(e) => return log_error(&e),
        }
    }
});
