//! What reading logs or rejects, with the C daemon's wording.

use std::fmt;

use super::types::Opened;
use crate::queue::record::{show_bytes, PointerError, RecordError};

/// Non-fatal oddities, logged by C as `warning: <id>: <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// An `o` while a previous one was still pending.
    OutOfOrderDsnOrcptAddress(Vec<u8>),
    /// An `o` left pending at the end of reading.
    OutOfOrderDsnOrcpt(Vec<u8>),
    /// An `n` while a previous one was still pending.
    OutOfOrderDsnNotify(i32),
    /// An `n` that is not decimal, is 0, or mixes NEVER with other bits.
    MalformedDsnNotify(Vec<u8>),
    /// An `O` while a previous one was still pending, or left at the end.
    OutOfOrderOrigRecipient(Vec<u8>),
    /// A `<` that is not 1 or 2.
    MalformedDsnRet(Vec<u8>),
    /// A second sasl_method / sasl_username / sasl_sender / log_ident / rewrite_context.
    MultipleAttribute { name: &'static str, value: Vec<u8> },
    /// A `V` record for the null sender.
    VerpNullSender,
    /// A `V` record that is not two characters from verp_delimiter_filter.
    BadVerp(Vec<u8>),
}

fn prefix(bytes: &[u8], max: usize) -> String {
    show_bytes(bytes.get(..max).unwrap_or(bytes))
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfOrderDsnOrcptAddress(v) => write!(
                f,
                "ignoring out-of-order DSN original recipient address <{}>",
                prefix(v, 200)
            ),
            Self::OutOfOrderDsnOrcpt(v) => write!(
                f,
                "ignoring out-of-order DSN original recipient <{}>",
                prefix(v, 200)
            ),
            Self::OutOfOrderDsnNotify(n) => {
                write!(f, "ignoring out-of-order DSN notify flags <{n}>")
            }
            Self::MalformedDsnNotify(v) => {
                write!(
                    f,
                    "ignoring malformed DSN notify flags <{}>",
                    prefix(v, 200)
                )
            }
            Self::OutOfOrderOrigRecipient(v) => write!(
                f,
                "ignoring out-of-order original recipient <{}>",
                prefix(v, 200)
            ),
            Self::MalformedDsnRet(v) => write!(
                f,
                "ignoring malformed DSN RET flags in queue file record:{}",
                prefix(v, 100)
            ),
            Self::MultipleAttribute { name, value } => {
                write!(
                    f,
                    "ignoring multiple {name} attribute: {}",
                    show_bytes(value)
                )
            }
            Self::VerpNullSender => f.write_str("ignoring VERP request for null sender"),
            Self::BadVerp(v) => write!(f, "ignoring bad VERP request: \"{}\"", prefix(v, 100)),
        }
    }
}

/// A record-layer warning, logged by C as `warning: <queue>/<id>: <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileWarning {
    Record(RecordError),
    Pointer(PointerError),
}

impl fmt::Display for FileWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Record(e) => e.fmt(f),
            Self::Pointer(e) => e.fmt(f),
        }
    }
}

/// Something the C daemon logs while reading, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEvent {
    /// info `<id>: from=<..>, size=N, nrcpt=N (queue active)`.
    Opened(Opened),
    /// warning `<id>: <text>`.
    Warning(Warning),
    /// warning `<queue>/<id>: <text>` (record framing or pointer trouble).
    FileWarning(FileWarning),
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Fatal,
}

/// Why a queue file is rejected (moved to `corrupt`), or a fatal error.
/// Display gives the primary text without any prefix; [`Rejection::log_lines`] gives the
/// complete lines the C daemon logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// EOF or a framing error (`cause`, logged first) before the `E` record.
    MissingEndRecord {
        cause: Option<RecordError>,
    },
    /// A bad `p` record; C logs only the pointer warning (no "missing end record").
    Pointer(PointerError),
    /// A record type not allowed where it appeared.
    UnexpectedRecordType {
        rec_type: u8,
        offset: u64,
    },
    /// An `A` record that is not `name=value`.
    BadAttribute {
        reason: &'static str,
        record: Vec<u8>,
    },
    /// SIZE record with non-positive offset/size or negative content length.
    InvalidSizeRecord {
        record: Vec<u8>,
    },
    /// SIZE record with unknown qmgr flag bits.
    InvalidSizeFlags {
        record: Vec<u8>,
    },
    /// SIZE record with zero or two numeric fields.
    WeirdSizeRecord,
    MissingArrivalTime,
    MissingSender,
    MissingSizeRecord,
    /// Fatal (C: msg_fatal): seeking in the queue file failed.
    SeekFailed {
        error: String,
    },
    /// Fatal: a pre-1.0 file whose `M` record does not point past the content start.
    LegacyBadExtraOffset {
        value: Vec<u8>,
    },
    /// Fatal: a pre-1.0 file without `M` or `E`.
    LegacyOutOfOrder,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingEndRecord { .. } => f.write_str("message rejected: missing end record"),
            Self::Pointer(e) => e.fmt(f),
            Self::UnexpectedRecordType { rec_type, offset } => write!(
                f,
                "Unexpected record type '{}' at offset {offset}",
                show_bytes(&[*rec_type])
            ),
            Self::BadAttribute { reason, record } => {
                write!(f, "bad attribute record: {reason}: {}", prefix(record, 200))
            }
            Self::InvalidSizeRecord { record } => {
                write!(f, "invalid size record: {}", prefix(record, 100))
            }
            Self::InvalidSizeFlags { record } => {
                write!(f, "invalid flags in size record: {}", prefix(record, 100))
            }
            Self::WeirdSizeRecord => f.write_str("message rejected: weird size record"),
            Self::MissingArrivalTime => {
                f.write_str("message rejected: missing arrival time record")
            }
            Self::MissingSender => f.write_str("message rejected: missing sender record"),
            Self::MissingSizeRecord => f.write_str("message rejected: missing size record"),
            Self::SeekFailed { error } => write!(f, "seek file: {error}"),
            Self::LegacyBadExtraOffset { value } => {
                write!(f, "bad extra offset {}", show_bytes(value))
            }
            Self::LegacyOutOfOrder => f.write_str("envelope records out of order"),
        }
    }
}

impl Rejection {
    /// The lines the C daemon logs for this rejection, given the queue file path as opened
    /// (e.g. `active/4F2D81C0A3`) and the queue id.
    pub fn log_lines(&self, queue_path: &str, queue_id: &str) -> Vec<(Severity, String)> {
        match self {
            Self::MissingEndRecord { cause } => {
                let mut lines = Vec::new();
                if let Some(cause) = cause {
                    lines.push((Severity::Warning, format!("{queue_path}: {cause}")));
                }
                lines.push((Severity::Warning, format!("{queue_id}: {self}")));
                lines
            }
            Self::Pointer(_) => vec![(Severity::Warning, format!("{queue_path}: {self}"))],
            Self::UnexpectedRecordType { .. } => vec![(Severity::Warning, self.to_string())],
            Self::SeekFailed { error } => {
                vec![(Severity::Fatal, format!("seek file {queue_path}: {error}"))]
            }
            Self::LegacyBadExtraOffset { value } => vec![(
                Severity::Fatal,
                format!("bad extra offset {} file {queue_path}", show_bytes(value)),
            )],
            Self::LegacyOutOfOrder => vec![(Severity::Fatal, format!("{queue_id}: {self}"))],
            _ => vec![(Severity::Warning, format!("{queue_id}: {self}"))],
        }
    }

    /// Whether the C daemon exits (msg_fatal) rather than moving the file to `corrupt`.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::SeekFailed { .. } | Self::LegacyBadExtraOffset { .. } | Self::LegacyOutOfOrder
        )
    }
}

impl ReadEvent {
    /// The complete log line for a warning event (`None` for [`ReadEvent::Opened`], whose
    /// sender the caller must render in external form).
    pub fn log_line(&self, queue_path: &str, queue_id: &str) -> Option<String> {
        match self {
            Self::Opened(_) => None,
            Self::Warning(w) => Some(format!("{queue_id}: {w}")),
            Self::FileWarning(w) => Some(format!("{queue_path}: {w}")),
        }
    }
}

/// A failed read: the rejection plus everything logged before it (including the
/// `from=<..>` line when the `S` record was reached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    pub rejection: Rejection,
    pub events: Vec<ReadEvent>,
}

impl ReadError {
    /// The `from=<..>, size=.., nrcpt=..` information, when the `S` record was read.
    pub fn opened(&self) -> Option<&Opened> {
        opened_in(&self.events)
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.rejection.fmt(f)
    }
}

impl std::error::Error for ReadError {}

pub(super) fn opened_in(events: &[ReadEvent]) -> Option<&Opened> {
    events.iter().find_map(|e| match e {
        ReadEvent::Opened(o) => Some(o),
        _ => None,
    })
}

/// A failed seek in the queue file: fatal, with strerror() text.
pub(super) fn seek_failed(e: std::io::Error) -> Rejection {
    Rejection::SeekFailed {
        error: crate::maillog::strerror(&e),
    }
}
