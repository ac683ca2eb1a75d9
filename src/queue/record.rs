//! Queue-file record framing (global/record.c, global/rec_type.h), as pure codecs.
//!
//! A queue file is a sequence of records: one type byte, a length in 1..5 little-endian
//! base-128 groups (high bit = more), then that many data bytes. This module reads and writes
//! that framing, the fixed-width SIZE / pointer / warning-time values, and describes the
//! in-place patches qmgr applies. It never interprets envelope semantics (see
//! [`crate::queue::envelope`]).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};

/// A record type byte. Unknown bytes are representable because the reader must report them.
///
/// `FILT` and `CONT` are both `L`: which one a record is depends on the segment it is in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordType(pub u8);

impl RecordType {
    pub const SIZE: Self = Self(b'C');
    pub const TIME: Self = Self(b'T');
    pub const CTIME: Self = Self(b'c');
    pub const FULL: Self = Self(b'F');
    pub const INSP: Self = Self(b'I');
    /// Content filter `transport:nexthop` (envelope / extracted segment).
    pub const FILT: Self = Self(b'L');
    pub const FROM: Self = Self(b'S');
    pub const DONE: Self = Self(b'D');
    pub const RCPT: Self = Self(b'R');
    pub const ORCP: Self = Self(b'O');
    pub const DRCP: Self = Self(b'/');
    pub const WARN: Self = Self(b'W');
    pub const ATTR: Self = Self(b'A');
    pub const KILL: Self = Self(b'K');
    pub const RDR: Self = Self(b'>');
    pub const FLGS: Self = Self(b'f');
    pub const DELAY: Self = Self(b'd');
    pub const MESG: Self = Self(b'M');
    pub const NORM: Self = Self(b'N');
    /// Content line fragment without newline (content segment); same byte as [`Self::FILT`].
    pub const CONT: Self = Self(b'L');
    pub const DTXT: Self = Self(b'w');
    pub const XTRA: Self = Self(b'X');
    pub const RRTO: Self = Self(b'r');
    pub const ERTO: Self = Self(b'e');
    pub const PRIO: Self = Self(b'P');
    pub const PTR: Self = Self(b'p');
    pub const VERP: Self = Self(b'V');
    pub const DSN_RET: Self = Self(b'<');
    pub const DSN_ENVID: Self = Self(b'i');
    pub const DSN_ORCPT: Self = Self(b'o');
    pub const DSN_NOTIFY: Self = Self(b'n');
    pub const MILT_COUNT: Self = Self(b'm');
    pub const END: Self = Self(b'E');

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
            b'C' => "SIZE",
            b'T' => "TIME",
            b'c' => "CTIME",
            b'F' => "FULL",
            b'I' => "INSP",
            b'L' => "FILT",
            b'S' => "FROM",
            b'D' => "DONE",
            b'R' => "RCPT",
            b'O' => "ORCP",
            b'/' => "DRCP",
            b'W' => "WARN",
            b'A' => "ATTR",
            b'K' => "KILL",
            b'>' => "RDR",
            b'f' => "FLGS",
            b'd' => "DELAY",
            b'M' => "MESG",
            b'N' => "NORM",
            b'w' => "DTXT",
            b'X' => "XTRA",
            b'r' => "RRTO",
            b'e' => "ERTO",
            b'P' => "PRIO",
            b'p' => "PTR",
            b'V' => "VERP",
            b'<' => "DSN_RET",
            b'i' => "DSN_ENVID",
            b'o' => "DSN_ORCPT",
            b'n' => "DSN_NOTIFY",
            b'm' => "MILT_COUNT",
            b'E' => "END",
            _ => return None,
        })
    }

    /// The descriptive name of rec_type_name() (as postcat prints it), `unknown_record_type`
    /// for anything else. `m` (not in rec_type.c's table) is unknown there too.
    pub fn descriptive_name(self) -> &'static str {
        match self.0 {
            b'C' => "message_size",
            b'T' => "message_arrival_time",
            b'c' => "queue_file_create_time",
            b'F' => "sender_fullname",
            b'I' => "content_inspector",
            b'L' => "content_filter",
            b'S' => "sender",
            b'D' => "done_recipient",
            b'/' => "canceled_recipient",
            b'R' => "recipient",
            b'O' => "original_recipient",
            b'W' => "warning_message_time",
            b'A' => "named_attribute",
            b'p' => "pointer_record",
            b'K' => "killed_record",
            b'M' => "message_content",
            b'N' => "regular_text",
            b'w' => "padding",
            b'X' => "extracted_info",
            b'r' => "return_receipt",
            b'e' => "errors_to",
            b'P' => "priority",
            b'V' => "verp_delimiters",
            b'E' => "message_end",
            b'>' => "redirect_to",
            b'f' => "flags",
            b'<' => "dsn_return_flags",
            b'i' => "dsn_envelope_id",
            b'o' => "dsn_original_recipient",
            b'n' => "dsn_notify_flags",
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

/// Append the length encoding of `len` (7-bit groups, low first, high bit = more).
pub fn encode_length(len: usize, out: &mut Vec<u8>) {
    let mut rest = len;
    loop {
        let mut byte = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest != 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if rest == 0 {
            break;
        }
    }
}

/// A complete record (type, length, data) as bytes.
pub fn encode_record(rec_type: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 6);
    out.push(rec_type);
    encode_length(data.len(), &mut out);
    out.extend_from_slice(data);
    out
}

/// Incremental length decoder with rec_get_raw()'s exact arithmetic: at most 5 groups
/// (a continuation bit on the 5th is "too many length bits"), the 5th group shifted in
/// 32-bit int arithmetic so that bit 31 makes the length negative (then "illegal length").
#[derive(Debug, Clone, Default)]
pub struct LengthDecoder {
    len: i64,
    shift: u32,
}

/// Progress of [`LengthDecoder::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthStep {
    /// Another length byte is needed.
    More,
    /// The length is complete (may be negative: the caller must reject that).
    Done(i64),
    /// The previous byte had the continuation bit but 5 bytes were already consumed.
    TooManyBits,
}

impl LengthDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether another byte may still be consumed (false: "too many length bits").
    pub fn wants_byte(&self) -> bool {
        self.shift < 32
    }

    /// Feed one length byte.
    pub fn push(&mut self, byte: u8) -> LengthStep {
        if !self.wants_byte() {
            return LengthStep::TooManyBits;
        }
        // C: `len |= (len_byte & 0177) << shift` with an int left operand.
        let group = ((u32::from(byte & 0x7f)) << self.shift) as i32;
        self.len |= i64::from(group);
        if byte & 0x80 == 0 {
            return LengthStep::Done(self.len);
        }
        self.shift += 7;
        if self.wants_byte() {
            LengthStep::More
        } else {
            LengthStep::TooManyBits
        }
    }
}

/// Errors decoding a length from a byte slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthError {
    /// Input ended inside the length.
    Eof,
    /// A continuation bit on the 5th length byte.
    TooManyBits,
    /// The decoded length is negative (bit 31 set by the 5th byte).
    Negative(i64),
}

/// Decode a length at the start of `bytes`: (length, bytes consumed).
pub fn decode_length(bytes: &[u8]) -> Result<(u64, usize), LengthError> {
    let mut decoder = LengthDecoder::new();
    for (i, &b) in bytes.iter().enumerate() {
        match decoder.push(b) {
            LengthStep::More => {}
            LengthStep::Done(len) if len < 0 => return Err(LengthError::Negative(len)),
            LengthStep::Done(len) => return Ok((len as u64, i + 1)),
            LengthStep::TooManyBits => return Err(LengthError::TooManyBits),
        }
    }
    Err(LengthError::Eof)
}

/// A record read from a queue file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// File offset of the type byte.
    pub offset: u64,
    pub rec_type: RecordType,
    /// Raw data; may contain NUL bytes (C consumers stop at the first one).
    pub data: Vec<u8>,
}

/// A framing error. Display is rec_get_raw()'s warning text without the `<path>: ` prefix.
/// Read errors other than EOF are reported as EOF, as VSTREAM_GETC does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    TooManyLengthBits { rec_type: u8 },
    EofInLength { rec_type: u8 },
    IllegalLength { rec_type: u8, len: i64 },
    EofInData { rec_type: u8, len: i64 },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyLengthBits { rec_type } => {
                write!(f, "too many length bits, record type {rec_type}")
            }
            Self::EofInLength { rec_type } => {
                write!(f, "unexpected EOF reading length, record type {rec_type}")
            }
            Self::IllegalLength { rec_type, len } => {
                write!(f, "illegal length {len}, record type {rec_type}")
            }
            Self::EofInData { rec_type, len } => write!(
                f,
                "unexpected EOF in data, record type {rec_type} length {len}"
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// Sequential record reader over any seekable byte source, tracking the file offset.
///
/// Reads through a buffer; a record's data is read as it arrives (never pre-allocated from
/// the untrusted length), so memory stays bounded by the record actually present.
pub struct RecordReader<R> {
    inner: BufReader<R>,
    pos: u64,
    max_len: u64,
}

impl<R: Read + Seek> RecordReader<R> {
    /// Start reading at the source's current position, with no record size limit.
    pub fn new(mut inner: R) -> io::Result<Self> {
        let pos = inner.stream_position()?;
        Ok(Self {
            inner: BufReader::with_capacity(8192, inner),
            pos,
            max_len: 0,
        })
    }

    /// Reject records longer than `max_len` bytes (0 = unlimited, as qmgr uses).
    pub fn with_max_len(mut self, max_len: u64) -> Self {
        self.max_len = max_len;
        self
    }

    /// The offset of the next byte to be read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Continue reading at the absolute offset `offset` (beyond EOF is allowed).
    pub fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        let buffered = self.inner.buffer().len() as u64;
        if offset >= self.pos && offset - self.pos <= buffered {
            self.inner.consume((offset - self.pos) as usize);
        } else {
            let target = i64::try_from(offset)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
            self.inner.seek(SeekFrom::Start(target as u64))?;
        }
        self.pos = offset;
        Ok(())
    }

    /// Give back the underlying source (its position is unspecified).
    pub fn into_inner(self) -> R {
        self.inner.into_inner()
    }

    fn getc(&mut self) -> Option<u8> {
        loop {
            match self.inner.fill_buf() {
                Ok(buf) => {
                    let byte = *buf.first()?;
                    self.inner.consume(1);
                    self.pos += 1;
                    return Some(byte);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
        }
    }

    /// Read up to `len` bytes into `out`; returns how many arrived.
    fn read_data(&mut self, len: u64, out: &mut Vec<u8>) -> u64 {
        let mut got = 0u64;
        while got < len {
            let chunk = match self.inner.fill_buf() {
                Ok([]) => break,
                Ok(buf) => {
                    let take = usize::try_from(len - got)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    out.extend_from_slice(&buf[..take]);
                    take
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            self.inner.consume(chunk);
            self.pos += chunk as u64;
            got += chunk as u64;
        }
        got
    }

    /// Skip up to `len` bytes (what rec_get_raw does after an illegal length).
    fn skip_data(&mut self, len: u64) {
        let mut left = len;
        while left > 0 {
            let chunk = match self.inner.fill_buf() {
                Ok([]) => break,
                Ok(buf) => usize::try_from(left).unwrap_or(usize::MAX).min(buf.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            self.inner.consume(chunk);
            self.pos += chunk as u64;
            left -= chunk as u64;
        }
    }

    /// The next record, `Ok(None)` at a clean end of file (EOF before a type byte).
    pub fn next_record(&mut self) -> Result<Option<Record>, RecordError> {
        let offset = self.pos;
        let Some(rec_type) = self.getc() else {
            return Ok(None);
        };
        let mut decoder = LengthDecoder::new();
        let len = loop {
            if !decoder.wants_byte() {
                return Err(RecordError::TooManyLengthBits { rec_type });
            }
            let Some(byte) = self.getc() else {
                return Err(RecordError::EofInLength { rec_type });
            };
            match decoder.push(byte) {
                LengthStep::Done(len) => break len,
                LengthStep::More | LengthStep::TooManyBits => {}
            }
        };
        if len < 0 || (self.max_len > 0 && len as u64 > self.max_len) {
            if len > 0 {
                self.skip_data(len as u64);
            }
            return Err(RecordError::IllegalLength { rec_type, len });
        }
        let mut data = Vec::new();
        if self.read_data(len as u64, &mut data) != len as u64 {
            return Err(RecordError::EofInData { rec_type, len });
        }
        Ok(Some(Record {
            offset,
            rec_type: RecordType(rec_type),
            data,
        }))
    }
}

/// The data up to the first NUL: what C code sees of a record through `vstring_str()`.
pub fn c_string(data: &[u8]) -> &[u8] {
    match memchr::memchr(0, data) {
        Some(end) => data.get(..end).unwrap_or(data),
        None => data,
    }
}

pub use crate::cnum::{atoi as c_atoi, atol as c_atol, is_space as is_c_space};

/// The SIZE record (first record of a queue file). `%15ld` x 6, so 95 bytes of data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SizeRecord {
    /// Offset of the `X` record minus `data_offset`.
    pub data_size: i64,
    /// Offset of the first content record (just after `M`).
    pub data_offset: i64,
    /// Recipient count (for logging only).
    pub rcpt_count: i32,
    /// qmgr read flags: bit 0 "recipients mixed with other records", bits 1-4 DSN NOTIFY union.
    pub qmgr_flags: i32,
    /// Content length; 0 means "use data_size" (Postfix < 2.4).
    pub content_length: i64,
    /// SMTPUTF8 flags: 1 requested, 2 header, 4 sender.
    pub smtputf8: i32,
}

/// qmgr read flag: recipient records are mixed with other records (QMGR_READ_FLAG_MIXED_RCPT_OTHER).
pub const QMGR_READ_FLAG_MIXED_RCPT_OTHER: i32 = 0x1;
/// All qmgr read flags a queue file may carry (QMGR_READ_FLAG_USER).
pub const QMGR_READ_FLAG_USER: i32 = 0x1f;

/// How a SIZE record's data scanned (qmgr's `sscanf("%ld %ld %d %d %ld %d")`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeParse {
    /// Three or more fields (Postfix >= 1.0); absent fields have their defaults
    /// (qmgr_flags = MIXED_RCPT_OTHER, content_length = 0, smtputf8 = 0).
    Fields { record: SizeRecord, count: usize },
    /// Exactly one field: a pre-1.0 file whose `M` record gives the extracted offset.
    Legacy { data_size: i64 },
    /// Zero or two fields.
    Weird,
}

/// Why a scanned SIZE record is unusable. Display is qmgr's text without `<id>: `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeRecordError {
    /// data_offset or data_size not positive, or negative content length.
    Invalid,
    /// qmgr flag bits outside [`QMGR_READ_FLAG_USER`].
    InvalidFlags,
}

impl SizeRecord {
    /// The record data: six `%15ld` fields separated by single spaces.
    pub fn format(&self) -> String {
        format!(
            "{:>15} {:>15} {:>15} {:>15} {:>15} {:>15}",
            self.data_size,
            self.data_offset,
            self.rcpt_count,
            self.qmgr_flags,
            self.content_length,
            self.smtputf8
        )
    }

    /// qmgr's validity checks on a record scanned with three or more fields.
    pub fn check(&self) -> Result<(), SizeRecordError> {
        if self.data_offset <= 0 || self.data_size <= 0 {
            return Err(SizeRecordError::Invalid);
        }
        if self.qmgr_flags & !QMGR_READ_FLAG_USER != 0 {
            return Err(SizeRecordError::InvalidFlags);
        }
        if self.content_length < 0 {
            return Err(SizeRecordError::Invalid);
        }
        Ok(())
    }

    /// The content length a delivery request carries (field 5, or data_size when 0).
    pub fn effective_content_length(&self) -> i64 {
        if self.content_length == 0 {
            self.data_size
        } else {
            self.content_length
        }
    }
}

/// Scan SIZE record data the way qmgr's sscanf does (white-space tolerant, stops at the
/// first field that is not a number; `int` fields are truncated from long like glibc).
pub fn parse_size_record(data: &[u8]) -> SizeParse {
    let mut fields = [0i64; 6];
    let mut count = 0usize;
    let mut rest = c_string(data);
    for field in fields.iter_mut() {
        let parsed = crate::cnum::strtol(rest);
        let (value, used, ok) = (parsed.value, parsed.end, parsed.has_digits());
        if !ok {
            break;
        }
        *field = value;
        count += 1;
        rest = rest.get(used..).unwrap_or(&[]);
    }
    match count {
        1 => SizeParse::Legacy {
            data_size: fields[0],
        },
        0 | 2 => SizeParse::Weird,
        _ => SizeParse::Fields {
            record: SizeRecord {
                data_size: fields[0],
                data_offset: fields[1],
                rcpt_count: fields[2] as i32,
                qmgr_flags: if count >= 4 {
                    fields[3] as i32
                } else {
                    QMGR_READ_FLAG_MIXED_RCPT_OTHER
                },
                content_length: fields[4],
                smtputf8: fields[5] as i32,
            },
            count,
        },
    }
}

/// Format a pointer (`p`) or warning-time (`W`) value: `%15ld`.
pub fn format_long15(value: i64) -> String {
    format!("{value:>15}")
}

/// A `p` record value qmgr cannot use (rec_goto). Display without the `<path>: ` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointerError {
    /// Not all digits after leading white space, or overflow.
    Malformed { value: Vec<u8> },
    /// More than [`REVERSE_JUMP_LIMIT`] jumps to an offset not past the previous target.
    TooManyReverseJumps,
    /// Seeking to the target failed (error text of the OS).
    Seek { error: String },
}

impl fmt::Display for PointerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { value } => {
                write!(f, "malformed pointer record value: {}", show_bytes(value))
            }
            Self::TooManyReverseJumps => f.write_str("too many reverse jump records"),
            Self::Seek { error } => write!(f, "seek error after pointer record: {error}"),
        }
    }
}

impl std::error::Error for PointerError {}

/// Parse a `p` record value: leading white space, then only digits (empty = 0 = dummy).
pub fn parse_pointer(data: &[u8]) -> Result<u64, PointerError> {
    let value = c_string(data);
    let start = value
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(value.len());
    let digits = value.get(start..).unwrap_or(&[]);
    let mut result: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(PointerError::Malformed {
                value: digits.to_vec(),
            });
        }
        result = match result
            .checked_mul(10)
            .and_then(|r| r.checked_add(u64::from(d - b'0')))
            .filter(|&r| r <= i64::MAX as u64)
        {
            Some(r) => r,
            None => {
                return Err(PointerError::Malformed {
                    value: digits.to_vec(),
                })
            }
        };
    }
    Ok(result)
}

/// Parse a `W` record value (atol).
pub fn parse_warn_time(data: &[u8]) -> i64 {
    c_atol(c_string(data))
}

/// rec_goto()'s loop guard: jumps to offsets at or before the previous target.
pub const REVERSE_JUMP_LIMIT: u32 = 10_000;

/// Pointer-following state of one queue file (rec_goto's saved offset and reverse count).
#[derive(Debug, Clone, Default)]
pub struct PointerFollower {
    saved_offset: u64,
    reverse_count: u32,
}

impl PointerFollower {
    pub fn new() -> Self {
        Self::default()
    }

    /// Where a `p` record sends the reader: `Ok(None)` for a dummy (0) pointer.
    pub fn target(&mut self, data: &[u8]) -> Result<Option<u64>, PointerError> {
        let offset = parse_pointer(data)?;
        if offset == 0 {
            return Ok(None);
        }
        if offset <= self.saved_offset {
            self.reverse_count += 1;
            if self.reverse_count > REVERSE_JUMP_LIMIT {
                return Err(PointerError::TooManyReverseJumps);
            }
        }
        self.saved_offset = offset;
        Ok(Some(offset))
    }
}

/// Bytes to write at an offset of a queue file (qmgr's in-place updates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

impl Patch {
    /// Mark a recipient done: `D` over the `R` type byte at the recipient's offset.
    pub fn mark_recipient_done(rcpt_offset: u64) -> Self {
        Self {
            offset: rcpt_offset,
            bytes: vec![RecordType::DONE.0],
        }
    }

    /// Kill a record (the trace_flags attribute): `K` over its type byte.
    pub fn kill_record(offset: u64) -> Self {
        Self {
            offset,
            bytes: vec![RecordType::KILL.0],
        }
    }

    /// Delay warning sent: the whole `W` record rewritten with -1 (17 bytes).
    pub fn delay_warning_sent(warn_offset: u64) -> Self {
        Self {
            offset: warn_offset,
            bytes: encode_record(RecordType::WARN.0, format_long15(-1).as_bytes()),
        }
    }

    /// Apply to an in-memory image (tests, fixtures). Out-of-range parts are ignored.
    pub fn apply_to(&self, image: &mut [u8]) {
        let Ok(start) = usize::try_from(self.offset) else {
            return;
        };
        for (i, &b) in self.bytes.iter().enumerate() {
            if let Some(slot) = start.checked_add(i).and_then(|j| image.get_mut(j)) {
                *slot = b;
            }
        }
    }
}

/// Record writer over any `Write`, tracking the offset (rec_put).
pub struct RecordWriter<W> {
    inner: W,
    pos: u64,
}

impl<W: Write> RecordWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, pos: 0 }
    }

    /// Offset of the next record.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Write one record; returns its offset.
    pub fn put(&mut self, rec_type: u8, data: &[u8]) -> io::Result<u64> {
        let offset = self.pos;
        let bytes = encode_record(rec_type, data);
        self.inner.write_all(&bytes)?;
        self.pos += bytes.len() as u64;
        Ok(offset)
    }

    /// Write raw bytes (e.g. a deliberately broken record).
    pub fn put_raw(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let offset = self.pos;
        self.inner.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(offset)
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

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
        b.env(b'T', format!("{arrival} 0").as_bytes());
        b.env(b'A', format!("create_time={arrival}").as_bytes());
        b.env(b'S', sender);
        for r in recipients {
            b.env(b'R', r);
        }
        b.content.push((b'N', b"Subject: test".to_vec()));
        b.content.push((b'N', Vec::new()));
        b.content.push((b'N', b"body".to_vec()));
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
        put(&mut w, b'C', placeholder.format().as_bytes());
        let mut rcpt_count = 0;
        let mut envelope_offsets = Vec::new();
        for (t, d) in &self.envelope {
            rcpt_count += i32::from(*t == b'R');
            envelope_offsets.push(put(&mut w, *t, d));
        }
        put(&mut w, b'M', b"");
        let data_offset = w.position();
        for (t, d) in &self.content {
            put(&mut w, *t, d);
        }
        let xtra_offset = put(&mut w, b'X', b"");
        let mut extracted_offsets = Vec::new();
        for (t, d) in &self.extracted {
            rcpt_count += i32::from(*t == b'R');
            extracted_offsets.push(put(&mut w, *t, d));
        }
        let end_offset = put(&mut w, b'E', b"");
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

/// Bytes as text for messages: valid UTF-8 as is, each invalid sequence as `?`.
pub fn show_bytes(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\u{fffd}', "?")
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
