//! Queue-file record framing (global/record.c, global/rec_type.h), as pure codecs.
//!
//! A queue file is a sequence of records: one type byte, a length in 1..5 little-endian
//! base-128 groups (high bit = more), then that many data bytes. This module reads and writes
//! that framing, the fixed-width SIZE / pointer / warning-time values, and describes the
//! in-place patches qmgr applies. It never interprets envelope semantics (see
//! [`crate::queue::envelope`]).
//!
//! Here: the record types and type sets, and small helpers on record data; `framing` has
//! the length codec and the writer, `reader` the reader, `values` the SIZE, pointer and
//! warning-time values, `patch` the in-place updates.

use std::fmt;

mod framing;
mod patch;
mod reader;
mod values;

pub use framing::{
    decode_length, encode_length, encode_record, LengthDecoder, LengthError, LengthStep,
    RecordWriter,
};
pub use patch::Patch;
pub use reader::{Record, RecordError, RecordReader};
pub use values::{
    format_long15, parse_pointer, parse_size_record, parse_warn_time, PointerError,
    PointerFollower, SizeParse, SizeRecord, SizeRecordError, QMGR_READ_FLAG_MIXED_RCPT_OTHER,
    QMGR_READ_FLAG_USER, REVERSE_JUMP_LIMIT,
};

// The record type bytes of rec_type.h, by their Postfix names.
/// SIZE record: content offsets, recipient count, qmgr flags.
pub const REC_TYPE_SIZE: u8 = b'C';
/// Arrival time.
pub const REC_TYPE_TIME: u8 = b'T';
/// Queue file creation time.
pub const REC_TYPE_CTIME: u8 = b'c';
/// Sender full name.
pub const REC_TYPE_FULL: u8 = b'F';
/// Content inspector transport.
pub const REC_TYPE_INSP: u8 = b'I';
/// Content filter `transport:nexthop` (envelope / extracted segment).
pub const REC_TYPE_FILT: u8 = b'L';
/// Sender.
pub const REC_TYPE_FROM: u8 = b'S';
/// Recipient done.
pub const REC_TYPE_DONE: u8 = b'D';
/// Recipient.
pub const REC_TYPE_RCPT: u8 = b'R';
/// Original recipient.
pub const REC_TYPE_ORCP: u8 = b'O';
/// Canceled recipient.
pub const REC_TYPE_DRCP: u8 = b'/';
/// Delay warning time.
pub const REC_TYPE_WARN: u8 = b'W';
/// Named attribute `name=value`.
pub const REC_TYPE_ATTR: u8 = b'A';
/// Killed record.
pub const REC_TYPE_KILL: u8 = b'K';
/// Redirect address.
pub const REC_TYPE_RDR: u8 = b'>';
/// Cleanup processing flags.
pub const REC_TYPE_FLGS: u8 = b'f';
/// Cleanup delay.
pub const REC_TYPE_DELAY: u8 = b'd';
/// Start of content.
pub const REC_TYPE_MESG: u8 = b'M';
/// Content line with newline.
pub const REC_TYPE_NORM: u8 = b'N';
/// Content line fragment without newline (content segment); same byte as FILT.
pub const REC_TYPE_CONT: u8 = b'L';
/// Padding.
pub const REC_TYPE_DTXT: u8 = b'w';
/// Start of the extracted segment.
pub const REC_TYPE_XTRA: u8 = b'X';
/// Return-receipt address.
pub const REC_TYPE_RRTO: u8 = b'r';
/// Errors-to address.
pub const REC_TYPE_ERTO: u8 = b'e';
/// Priority.
pub const REC_TYPE_PRIO: u8 = b'P';
/// Pointer to the next record.
pub const REC_TYPE_PTR: u8 = b'p';
/// VERP delimiters.
pub const REC_TYPE_VERP: u8 = b'V';
/// DSN RET.
pub const REC_TYPE_DSN_RET: u8 = b'<';
/// DSN envelope id.
pub const REC_TYPE_DSN_ENVID: u8 = b'i';
/// DSN original recipient.
pub const REC_TYPE_DSN_ORCPT: u8 = b'o';
/// DSN NOTIFY.
pub const REC_TYPE_DSN_NOTIFY: u8 = b'n';
/// Milter header count.
pub const REC_TYPE_MILT_COUNT: u8 = b'm';
/// End of the queue file.
pub const REC_TYPE_END: u8 = b'E';

/// A record type byte. Unknown bytes are representable because the reader must report them.
///
/// `FILT` and `CONT` are both `L`: which one a record is depends on the segment it is in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordType(pub u8);

impl RecordType {
    pub const SIZE: Self = Self(REC_TYPE_SIZE);
    pub const TIME: Self = Self(REC_TYPE_TIME);
    pub const CTIME: Self = Self(REC_TYPE_CTIME);
    pub const FULL: Self = Self(REC_TYPE_FULL);
    pub const INSP: Self = Self(REC_TYPE_INSP);
    /// Content filter `transport:nexthop` (envelope / extracted segment).
    pub const FILT: Self = Self(REC_TYPE_FILT);
    pub const FROM: Self = Self(REC_TYPE_FROM);
    pub const DONE: Self = Self(REC_TYPE_DONE);
    pub const RCPT: Self = Self(REC_TYPE_RCPT);
    pub const ORCP: Self = Self(REC_TYPE_ORCP);
    pub const DRCP: Self = Self(REC_TYPE_DRCP);
    pub const WARN: Self = Self(REC_TYPE_WARN);
    pub const ATTR: Self = Self(REC_TYPE_ATTR);
    pub const KILL: Self = Self(REC_TYPE_KILL);
    pub const RDR: Self = Self(REC_TYPE_RDR);
    pub const FLGS: Self = Self(REC_TYPE_FLGS);
    pub const DELAY: Self = Self(REC_TYPE_DELAY);
    pub const MESG: Self = Self(REC_TYPE_MESG);
    pub const NORM: Self = Self(REC_TYPE_NORM);
    /// Content line fragment without newline (content segment); same byte as [`Self::FILT`].
    pub const CONT: Self = Self(REC_TYPE_CONT);
    pub const DTXT: Self = Self(REC_TYPE_DTXT);
    pub const XTRA: Self = Self(REC_TYPE_XTRA);
    pub const RRTO: Self = Self(REC_TYPE_RRTO);
    pub const ERTO: Self = Self(REC_TYPE_ERTO);
    pub const PRIO: Self = Self(REC_TYPE_PRIO);
    pub const PTR: Self = Self(REC_TYPE_PTR);
    pub const VERP: Self = Self(REC_TYPE_VERP);
    pub const DSN_RET: Self = Self(REC_TYPE_DSN_RET);
    pub const DSN_ENVID: Self = Self(REC_TYPE_DSN_ENVID);
    pub const DSN_ORCPT: Self = Self(REC_TYPE_DSN_ORCPT);
    pub const DSN_NOTIFY: Self = Self(REC_TYPE_DSN_NOTIFY);
    pub const MILT_COUNT: Self = Self(REC_TYPE_MILT_COUNT);
    pub const END: Self = Self(REC_TYPE_END);

    /// Every Postfix 3.7 record type, `L` once (as FILT).
    pub const ALL: [Self; 32] = [
        Self::SIZE,
        Self::TIME,
        Self::CTIME,
        Self::FULL,
        Self::INSP,
        Self::FILT,
        Self::FROM,
        Self::DONE,
        Self::RCPT,
        Self::ORCP,
        Self::DRCP,
        Self::WARN,
        Self::ATTR,
        Self::KILL,
        Self::RDR,
        Self::FLGS,
        Self::DELAY,
        Self::MESG,
        Self::NORM,
        Self::DTXT,
        Self::XTRA,
        Self::RRTO,
        Self::ERTO,
        Self::PRIO,
        Self::PTR,
        Self::VERP,
        Self::DSN_RET,
        Self::DSN_ENVID,
        Self::DSN_ORCPT,
        Self::DSN_NOTIFY,
        Self::MILT_COUNT,
        Self::END,
    ];

    /// The byte value.
    pub fn byte(self) -> u8 {
        self.0
    }

    /// The type for a symbolic name such as `SIZE` or `DSN_NOTIFY` (`CONT` gives `L`).
    pub fn from_name(name: &str) -> Option<Self> {
        if name == "CONT" {
            return Some(Self::CONT);
        }
        Self::ALL.iter().copied().find(|t| t.name() == Some(name))
    }

    /// The symbolic name (`REC_TYPE_<name>` in rec_type.h); `L` is reported as `FILT`.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            REC_TYPE_SIZE => "SIZE",
            REC_TYPE_TIME => "TIME",
            REC_TYPE_CTIME => "CTIME",
            REC_TYPE_FULL => "FULL",
            REC_TYPE_INSP => "INSP",
            REC_TYPE_FILT => "FILT",
            REC_TYPE_FROM => "FROM",
            REC_TYPE_DONE => "DONE",
            REC_TYPE_RCPT => "RCPT",
            REC_TYPE_ORCP => "ORCP",
            REC_TYPE_DRCP => "DRCP",
            REC_TYPE_WARN => "WARN",
            REC_TYPE_ATTR => "ATTR",
            REC_TYPE_KILL => "KILL",
            REC_TYPE_RDR => "RDR",
            REC_TYPE_FLGS => "FLGS",
            REC_TYPE_DELAY => "DELAY",
            REC_TYPE_MESG => "MESG",
            REC_TYPE_NORM => "NORM",
            REC_TYPE_DTXT => "DTXT",
            REC_TYPE_XTRA => "XTRA",
            REC_TYPE_RRTO => "RRTO",
            REC_TYPE_ERTO => "ERTO",
            REC_TYPE_PRIO => "PRIO",
            REC_TYPE_PTR => "PTR",
            REC_TYPE_VERP => "VERP",
            REC_TYPE_DSN_RET => "DSN_RET",
            REC_TYPE_DSN_ENVID => "DSN_ENVID",
            REC_TYPE_DSN_ORCPT => "DSN_ORCPT",
            REC_TYPE_DSN_NOTIFY => "DSN_NOTIFY",
            REC_TYPE_MILT_COUNT => "MILT_COUNT",
            REC_TYPE_END => "END",
            _ => return None,
        })
    }

    /// The descriptive name of rec_type_name() (as postcat prints it), `unknown_record_type`
    /// for anything else. `m` (not in rec_type.c's table) is unknown there too.
    pub fn descriptive_name(self) -> &'static str {
        match self.0 {
            REC_TYPE_SIZE => "message_size",
            REC_TYPE_TIME => "message_arrival_time",
            REC_TYPE_CTIME => "queue_file_create_time",
            REC_TYPE_FULL => "sender_fullname",
            REC_TYPE_INSP => "content_inspector",
            REC_TYPE_FILT => "content_filter",
            REC_TYPE_FROM => "sender",
            REC_TYPE_DONE => "done_recipient",
            REC_TYPE_DRCP => "canceled_recipient",
            REC_TYPE_RCPT => "recipient",
            REC_TYPE_ORCP => "original_recipient",
            REC_TYPE_WARN => "warning_message_time",
            REC_TYPE_ATTR => "named_attribute",
            REC_TYPE_PTR => "pointer_record",
            REC_TYPE_KILL => "killed_record",
            REC_TYPE_MESG => "message_content",
            REC_TYPE_NORM => "regular_text",
            REC_TYPE_DTXT => "padding",
            REC_TYPE_XTRA => "extracted_info",
            REC_TYPE_RRTO => "return_receipt",
            REC_TYPE_ERTO => "errors_to",
            REC_TYPE_PRIO => "priority",
            REC_TYPE_VERP => "verp_delimiters",
            REC_TYPE_END => "message_end",
            REC_TYPE_RDR => "redirect_to",
            REC_TYPE_FLGS => "flags",
            REC_TYPE_DSN_RET => "dsn_return_flags",
            REC_TYPE_DSN_ENVID => "dsn_envelope_id",
            REC_TYPE_DSN_ORCPT => "dsn_original_recipient",
            REC_TYPE_DSN_NOTIFY => "dsn_notify_flags",
            _ => "unknown_record_type",
        }
    }
}

impl fmt::Debug for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "RecordType({name})"),
            None => write!(f, "RecordType({})", self.0),
        }
    }
}

/// Record types allowed in the envelope segment (REC_TYPE_ENVELOPE); `M` ends it.
pub const ENVELOPE_TYPES: &[u8] = b"MCTcFILSDRO/WVA>K<ion";
/// Record types allowed in the content segment (REC_TYPE_CONTENT); `X` ends it.
pub const CONTENT_TYPES: &[u8] = b"XLNw";
/// Record types allowed in the extracted segment (REC_TYPE_EXTRACT); `E` ends it.
pub const EXTRACTED_TYPES: &[u8] = b"EDRO/PreAFIL>Kon";

/// Whether `rec_type` is a member of one of the type sets above.
pub fn type_in_set(set: &[u8], rec_type: u8) -> bool {
    set.contains(&rec_type)
}

/// The data up to the first NUL: what C code sees of a record through `vstring_str()`.
pub fn c_string(data: &[u8]) -> &[u8] {
    match memchr::memchr(0, data) {
        Some(end) => data.get(..end).unwrap_or(data),
        None => data,
    }
}

pub use crate::cnum::{atoi as c_atoi, atol as c_atol, is_space as is_c_space};

/// Bytes as text for messages: valid UTF-8 as is, each invalid sequence as `?`.
pub fn show_bytes(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\u{fffd}', "?")
}

#[cfg(test)]
mod tests;
