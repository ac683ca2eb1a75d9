//! A test-only builder of queue files, shared by the library's unit tests and the
//! integration tests, and kept out of the library itself.
//!
//! Include it with `#[path]` from a module whose parent has the library's record module in
//! scope as `record` (`crate::queue::record` in the library, `oqmgr::queue::record` in
//! integration tests); that alias is its only link to the crate.

// Each includer uses only part of the builder.
#![allow(dead_code)]

use super::record::{
    Patch, RecordWriter, SizeRecord, REC_TYPE_ATTR, REC_TYPE_END, REC_TYPE_FROM, REC_TYPE_MESG,
    REC_TYPE_NORM, REC_TYPE_RCPT, REC_TYPE_SIZE, REC_TYPE_TIME, REC_TYPE_XTRA,
};

/// Builder of a cleanup(8)-like queue file: `C` (computed), envelope records, `M`, content,
/// `X`, extracted records, `E`. Records are given raw so tests can build odd files too.
#[derive(Debug, Clone, Default)]
pub struct QueueFileBuilder {
    /// Envelope records after `C` (e.g. `T`, `A create_time=..`, `S`, `R` ...).
    pub envelope: Vec<(u8, Vec<u8>)>,
    /// Content records between `M` and `X` (usually `N`).
    pub content: Vec<(u8, Vec<u8>)>,
    /// Extracted records between `X` and `E`.
    pub extracted: Vec<(u8, Vec<u8>)>,
    /// SIZE field 4 (default 0: pure recipient sequences).
    pub qmgr_flags: i32,
    /// SIZE field 5; `None` = data_size (what cleanup writes for unmodified content).
    pub content_length: Option<i64>,
    /// SIZE field 6.
    pub smtputf8: i32,
    /// Bytes appended after `E` (records reached through `p` pointers).
    pub trailer: Vec<u8>,
}

/// Where the parts of a built file landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltQueueFile {
    pub bytes: Vec<u8>,
    pub size: SizeRecord,
    /// Offset of every envelope record, then every extracted record, in order.
    pub envelope_offsets: Vec<u64>,
    pub extracted_offsets: Vec<u64>,
    /// Offset of the `X` record.
    pub xtra_offset: u64,
    /// Offset of the `E` record.
    pub end_offset: u64,
}

impl QueueFileBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A minimal valid message: arrival time, create_time, sender, recipients, one body line.
    pub fn simple(arrival: i64, sender: &[u8], recipients: &[&[u8]]) -> Self {
        let mut b = Self::new();
        b.env(REC_TYPE_TIME, format!("{arrival} 0").as_bytes());
        b.env(REC_TYPE_ATTR, format!("create_time={arrival}").as_bytes());
        b.env(REC_TYPE_FROM, sender);
        for r in recipients {
            b.env(REC_TYPE_RCPT, r);
        }
        b.content.push((REC_TYPE_NORM, b"Subject: test".to_vec()));
        b.content.push((REC_TYPE_NORM, Vec::new()));
        b.content.push((REC_TYPE_NORM, b"body".to_vec()));
        b
    }

    /// Append an envelope record.
    pub fn env(&mut self, rec_type: u8, data: &[u8]) -> &mut Self {
        self.envelope.push((rec_type, data.to_vec()));
        self
    }

    /// Append an extracted-segment record.
    pub fn extra(&mut self, rec_type: u8, data: &[u8]) -> &mut Self {
        self.extracted.push((rec_type, data.to_vec()));
        self
    }

    /// Produce the file bytes with a SIZE record that matches them.
    pub fn build(&self) -> BuiltQueueFile {
        let placeholder = SizeRecord {
            data_size: 0,
            data_offset: 0,
            rcpt_count: 0,
            qmgr_flags: 0,
            content_length: 0,
            smtputf8: 0,
        };
        let mut w = RecordWriter::new(Vec::new());
        // Writing to a Vec cannot fail.
        let put = |w: &mut RecordWriter<Vec<u8>>, t: u8, d: &[u8]| w.put(t, d).unwrap_or(0);
        put(&mut w, REC_TYPE_SIZE, placeholder.format().as_bytes());
        let mut rcpt_count = 0;
        let mut envelope_offsets = Vec::new();
        for (t, d) in &self.envelope {
            rcpt_count += i32::from(*t == REC_TYPE_RCPT);
            envelope_offsets.push(put(&mut w, *t, d));
        }
        put(&mut w, REC_TYPE_MESG, b"");
        let data_offset = w.position();
        for (t, d) in &self.content {
            put(&mut w, *t, d);
        }
        let xtra_offset = put(&mut w, REC_TYPE_XTRA, b"");
        let mut extracted_offsets = Vec::new();
        for (t, d) in &self.extracted {
            rcpt_count += i32::from(*t == REC_TYPE_RCPT);
            extracted_offsets.push(put(&mut w, *t, d));
        }
        let end_offset = put(&mut w, REC_TYPE_END, b"");
        let mut bytes = w.into_inner();
        bytes.extend_from_slice(&self.trailer);
        let data_size = (xtra_offset - data_offset) as i64;
        let size = SizeRecord {
            data_size,
            data_offset: data_offset as i64,
            rcpt_count,
            qmgr_flags: self.qmgr_flags,
            content_length: self.content_length.unwrap_or(data_size),
            smtputf8: self.smtputf8,
        };
        Patch {
            offset: 2,
            bytes: size.format().into_bytes(),
        }
        .apply_to(&mut bytes);
        BuiltQueueFile {
            bytes,
            size,
            envelope_offsets,
            extracted_offsets,
            xtra_offset,
            end_offset,
        }
    }
}
