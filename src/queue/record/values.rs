//! Fixed-width record values: the SIZE record, `p` pointers and `W` warning times.

use std::fmt;

use super::{c_atol, c_string, is_c_space, show_bytes};

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
