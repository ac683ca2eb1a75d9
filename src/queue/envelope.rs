//! The envelope a queue manager needs, read the way oqmgr's qmgr_message_read() does.
//!
//! Pure: the caller hands in the opened (and locked) queue file; warnings are returned as
//! values in the order the C daemon would log them, never logged here.
//!
//! Recipients are read in batches of at most `recipient_cap`: [`read_envelope`] reads all
//! non-recipient information plus the first batch, [`read_recipient_batch`] continues from
//! [`Envelope::resume_offset`].

use std::fmt;
use std::io::{Read, Seek};

use super::record::{
    c_atoi, c_atol, c_string, is_c_space, parse_size_record, parse_warn_time, show_bytes,
    PointerError, PointerFollower, RecordError, RecordReader, SizeParse, SizeRecord,
    ENVELOPE_TYPES, EXTRACTED_TYPES, QMGR_READ_FLAG_MIXED_RCPT_OTHER,
};
use crate::proto::deliver::request_flags;

// The trace flags as the file's `trace_flags` attribute holds them (a C int); the values are
// the delivery request's flag bits.
/// Delivery request flag: MTA-requested address probe.
pub const DEL_REQ_FLAG_MTA_VRFY: i32 = request_flags::MTA_VRFY as i32;
/// Delivery request flag: user-requested address probe (`sendmail -bv`).
pub const DEL_REQ_FLAG_USR_VRFY: i32 = request_flags::USR_VRFY as i32;
/// Delivery request flag: record and deliver (`sendmail -v`).
pub const DEL_REQ_FLAG_RECORD: i32 = request_flags::RECORD as i32;
/// Delivery request flag: a delay warning was sent ("delay cleared" wanted).
pub const DEL_REQ_FLAG_REC_DLY_SENT: i32 = request_flags::REC_DLY_SENT as i32;
/// The trace flags a queue file may carry (DEL_REQ_TRACE_FLAGS_MASK).
pub const DEL_REQ_TRACE_FLAGS_MASK: i32 =
    DEL_REQ_FLAG_MTA_VRFY | DEL_REQ_FLAG_USR_VRFY | DEL_REQ_FLAG_RECORD | DEL_REQ_FLAG_REC_DLY_SENT;

/// DSN NOTIFY bits.
pub const DSN_NOTIFY_NEVER: i32 = 1;
pub const DSN_NOTIFY_SUCCESS: i32 = 2;
pub const DSN_NOTIFY_FAILURE: i32 = 4;
pub const DSN_NOTIFY_DELAY: i32 = 8;
/// DSN RET values.
pub const DSN_RET_FULL: i32 = 1;
pub const DSN_RET_HDRS: i32 = 2;

/// What the caller's configuration contributes to reading.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions<'a> {
    /// In-memory recipients per batch; see [`recipient_cap`]. 0 behaves like 1.
    pub recipient_cap: usize,
    /// `verp_delimiter_filter` (default `-=+`).
    pub verp_delimiter_filter: &'a [u8],
    /// `confirm_delay_cleared`.
    pub confirm_delay_cleared: bool,
}

/// The batch size qmgr uses: the smallest count `n` with
/// `n >= qmgr_message_recipient_limit * (qmgr_fudge_factor / 100.0)`.
pub fn recipient_cap(recipient_limit: i64, fudge_factor: i64) -> usize {
    let cap = (recipient_limit as f64) * (fudge_factor as f64 / 100.0);
    if cap.is_nan() || cap <= 0.0 {
        0
    } else {
        cap.ceil().min(usize::MAX as f64) as usize
    }
}

/// Arrival time from the `T` record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArrivalTime {
    pub sec: i64,
    pub usec: i64,
}

/// One recipient to deliver (an `R` record and what preceded it): the same value that travels
/// in a delivery request.
pub use crate::proto::recipient::Recipient;

/// The first `W` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarnRecord {
    /// Offset of the `W` type byte (for [`super::record::Patch::delay_warning_sent`]).
    pub offset: u64,
    /// Time of the next delay warning; -1 once sent.
    pub time: i64,
}

/// What qmgr logs when it reads the `S` record:
/// `<id>: from=<sender>, size=<size>, nrcpt=<nrcpt> (queue active)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Internal form; the caller converts it per info_log_address_format.
    pub sender: Vec<u8>,
    /// Content length known when `S` was read (0 if no SIZE record came before it).
    pub size: i64,
    /// SIZE record recipient count known when `S` was read.
    pub nrcpt: i32,
}

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

fn opened_in(events: &[ReadEvent]) -> Option<&Opened> {
    events.iter().find_map(|e| match e {
        ReadEvent::Opened(o) => Some(o),
        _ => None,
    })
}

/// The strings a delivery request copies from the envelope, packed into one allocation: a
/// message stays in memory for its whole delivery, and these are a dozen short strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestAttrs {
    buf: Box<[u8]>,
    /// End offset of each field in `buf`, in [`RequestAttrs::new`]'s order.
    ends: [u32; 12],
}

macro_rules! request_attrs {
    ($($(#[$doc:meta])* $name:ident = $index:expr;)*) => {
        impl RequestAttrs {
            $( $(#[$doc])* pub fn $name(&self) -> &[u8] { self.field($index) } )*
        }
    };
}

request_attrs! {
    /// `log_client_name` (or the legacy `client_name`).
    log_client_name = 0;
    /// `log_client_address` (or the legacy `client_address`).
    log_client_address = 1;
    /// `log_client_port` (or the legacy `client_port`).
    log_client_port = 2;
    /// `log_protocol_name` (or the legacy `protocol_name`).
    log_protocol_name = 3;
    /// `log_helo_name` (or the legacy `helo_name`).
    log_helo_name = 4;
    /// `sasl_method`.
    sasl_method = 5;
    /// `sasl_username`.
    sasl_username = 6;
    /// `sasl_sender`.
    sasl_sender = 7;
    /// `log_ident`.
    log_ident = 8;
    /// `rewrite_context` (`local` when absent).
    rewrite_context = 9;
    /// `encoding`: `7bit`, `8bit` or empty.
    encoding = 10;
    /// DSN envelope ID (`i` / `A envelope_id`), else empty.
    dsn_envid = 11;
}

impl RequestAttrs {
    /// Packs the twelve fields, in the accessors' order.
    pub fn new(fields: [&[u8]; 12]) -> RequestAttrs {
        let mut buf = Vec::with_capacity(fields.iter().map(|f| f.len()).sum());
        let mut ends = [0u32; 12];
        for (end, field) in ends.iter_mut().zip(fields) {
            buf.extend_from_slice(field);
            *end = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        }
        RequestAttrs {
            buf: buf.into_boxed_slice(),
            ends,
        }
    }

    fn field(&self, index: usize) -> &[u8] {
        let start = match index {
            0 => 0,
            i => self.ends.get(i - 1).copied().unwrap_or(0) as usize,
        };
        let end = self.ends.get(index).copied().unwrap_or(0) as usize;
        self.buf.get(start..end).unwrap_or_default()
    }
}

/// The envelope of a queue file as qmgr holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// SIZE record; `content_length` already replaced by data_size when it was 0, and
    /// `qmgr_flags` the read flags (MIXED_RCPT_OTHER when the record had only 3 fields).
    pub size: SizeRecord,
    pub arrival_time: ArrivalTime,
    /// `A create_time` / `c`, else arrival seconds.
    pub create_time: i64,
    pub sender: Vec<u8>,
    /// The current batch, in file order.
    pub recipients: Vec<Recipient>,
    /// Where the next batch starts, when the cap stopped the previous one.
    pub resume_offset: Option<u64>,
    /// `L` in the envelope or extracted segment (last wins).
    pub filter_transport: Option<Vec<u8>>,
    /// `I` (last wins).
    pub inspect_transport: Option<Vec<u8>>,
    /// `>` (last wins).
    pub redirect_address: Option<Vec<u8>>,
    /// Valid `V` delimiters (first valid wins); deliveries then carry one recipient each.
    pub verp_delimiters: Option<Vec<u8>>,
    /// First `W` record.
    pub warn: Option<WarnRecord>,
    /// Trace flags (masked), plus REC_DLY_SENT when confirm_delay_cleared and W < 0.
    pub trace_flags: i32,
    /// Offset of the `A trace_flags` record when its value was exactly RECORD.
    pub trace_flags_offset: Option<u64>,
    /// 0, [`DSN_RET_FULL`] or [`DSN_RET_HDRS`].
    pub dsn_ret: i32,
    /// SIZE field 6.
    pub smtputf8: i32,
    /// The envelope ID, encoding and client/log attributes a delivery request carries.
    pub attrs: RequestAttrs,
    /// Everything logged while reading, in order.
    pub events: Vec<ReadEvent>,
}

impl Envelope {
    /// The `from=<..>` information logged at the `S` record.
    pub fn opened(&self) -> Option<&Opened> {
        opened_in(&self.events)
    }

    /// The warning events (both kinds) in order; see [`ReadEvent::log_line`].
    pub fn warnings(&self) -> impl Iterator<Item = &ReadEvent> {
        self.events
            .iter()
            .filter(|e| !matches!(e, ReadEvent::Opened(_)))
    }
}

/// In-progress state, with C's "not yet seen" as `None`.
#[derive(Default)]
struct Draft {
    size: Option<SizeRecord>,
    seen_all_non_rcpt: bool,
    arrival: ArrivalTime,
    create_time: i64,
    sender: Option<Vec<u8>>,
    recipients: Vec<Recipient>,
    resume_offset: Option<u64>,
    filter: Option<Vec<u8>>,
    inspect: Option<Vec<u8>>,
    redirect: Option<Vec<u8>>,
    verp: Option<Vec<u8>>,
    warn: Option<WarnRecord>,
    trace_flags: i32,
    trace_flags_offset: Option<u64>,
    dsn_envid: Option<Vec<u8>>,
    dsn_ret: i32,
    encoding: Option<Vec<u8>>,
    client_name: Option<Vec<u8>>,
    client_addr: Option<Vec<u8>>,
    client_port: Option<Vec<u8>>,
    client_proto: Option<Vec<u8>>,
    client_helo: Option<Vec<u8>>,
    sasl_method: Option<Vec<u8>>,
    sasl_username: Option<Vec<u8>>,
    sasl_sender: Option<Vec<u8>>,
    log_ident: Option<Vec<u8>>,
    rewrite_context: Option<Vec<u8>>,
    events: Vec<ReadEvent>,
}

impl Draft {
    /// Where a client attribute goes, by its pre-2.3 name (`client_name`, ...).
    fn client_slot(&mut self, legacy_name: &[u8]) -> Option<&mut Option<Vec<u8>>> {
        match legacy_name {
            b"client_name" => Some(&mut self.client_name),
            b"client_address" => Some(&mut self.client_addr),
            b"client_port" => Some(&mut self.client_port),
            b"protocol_name" => Some(&mut self.client_proto),
            b"helo_name" => Some(&mut self.client_helo),
            _ => None,
        }
    }

    fn data_offset(&self) -> i64 {
        self.size.map_or(0, |s| s.data_offset)
    }
    fn data_size(&self) -> i64 {
        self.size.map_or(0, |s| s.data_size)
    }
    fn read_flags(&self) -> i32 {
        self.size
            .map_or(QMGR_READ_FLAG_MIXED_RCPT_OTHER, |s| s.qmgr_flags)
    }
    fn warn(&mut self, w: Warning) {
        self.events.push(ReadEvent::Warning(w));
    }
}

/// Read a queue file from its start: all non-recipient information and the first batch of
/// recipients. The file should be opened read-write and locked by the caller.
pub fn read_envelope<R: Read + Seek>(
    file: &mut R,
    options: &ReadOptions<'_>,
) -> Result<Envelope, ReadError> {
    let mut draft = Draft::default();
    let outcome = read_records(file, &mut draft, options, 0);
    if let Err(rejection) = outcome {
        return Err(ReadError {
            rejection,
            events: draft.events,
        });
    }
    let fail = |rejection, draft: Draft| {
        Err(ReadError {
            rejection,
            events: draft.events,
        })
    };
    if draft.arrival.sec == 0 {
        return fail(Rejection::MissingArrivalTime, draft);
    }
    let Some(sender) = draft.sender.take() else {
        return fail(Rejection::MissingSender, draft);
    };
    let size = match draft.size {
        Some(size) if size.data_offset != 0 => size,
        _ => return fail(Rejection::MissingSizeRecord, draft),
    };
    let mut trace_flags = draft.trace_flags;
    if options.confirm_delay_cleared && draft.warn.is_some_and(|w| w.time < 0) {
        trace_flags |= DEL_REQ_FLAG_REC_DLY_SENT;
    }
    Ok(Envelope {
        size,
        arrival_time: draft.arrival,
        create_time: if draft.create_time == 0 {
            draft.arrival.sec
        } else {
            draft.create_time
        },
        sender,
        recipients: draft.recipients,
        resume_offset: draft.resume_offset,
        filter_transport: draft.filter,
        inspect_transport: draft.inspect,
        redirect_address: draft.redirect,
        verp_delimiters: draft.verp,
        warn: draft.warn,
        trace_flags,
        trace_flags_offset: draft.trace_flags_offset,
        dsn_ret: draft.dsn_ret,
        smtputf8: size.smtputf8,
        attrs: RequestAttrs::new([
            &draft.client_name.unwrap_or_default(),
            &draft.client_addr.unwrap_or_default(),
            &draft.client_port.unwrap_or_default(),
            &draft.client_proto.unwrap_or_default(),
            &draft.client_helo.unwrap_or_default(),
            &draft.sasl_method.unwrap_or_default(),
            &draft.sasl_username.unwrap_or_default(),
            &draft.sasl_sender.unwrap_or_default(),
            &draft.log_ident.unwrap_or_default(),
            &draft.rewrite_context.unwrap_or_else(|| b"local".to_vec()),
            &draft.encoding.unwrap_or_default(),
            &draft.dsn_envid.unwrap_or_default(),
        ]),
        events: draft.events,
    })
}

/// Read the next batch of recipients from `envelope.resume_offset` into
/// `envelope.recipients` (replacing the previous batch) and update `resume_offset`.
/// Returns the events of this read. Without a resume offset there is nothing to read and
/// the batch is empty. On error the envelope's recipients are emptied and `resume_offset`
/// is left unchanged, as qmgr leaves `rcpt_offset`.
pub fn read_recipient_batch<R: Read + Seek>(
    file: &mut R,
    envelope: &mut Envelope,
    options: &ReadOptions<'_>,
) -> Result<Vec<ReadEvent>, ReadError> {
    envelope.recipients.clear();
    let Some(start) = envelope.resume_offset else {
        return Ok(Vec::new());
    };
    let mut draft = Draft {
        size: Some(envelope.size),
        seen_all_non_rcpt: true,
        ..Draft::default()
    };
    match read_records(file, &mut draft, options, start) {
        Ok(()) => {
            envelope.recipients = draft.recipients;
            envelope.resume_offset = draft.resume_offset;
            Ok(draft.events)
        }
        Err(rejection) => Err(ReadError {
            rejection,
            events: draft.events,
        }),
    }
}

fn seek_failed(e: std::io::Error) -> Rejection {
    Rejection::SeekFailed {
        error: crate::maillog::strerror(&e),
    }
}

/// Attribute names that stand for record types (rec_attr_map).
fn mapped_attribute(name: &[u8]) -> Option<u8> {
    Some(match name {
        b"dsn_orig_rcpt" => b'o',
        b"notify_flags" => b'n',
        b"envelope_id" => b'i',
        b"ret_flags" => b'<',
        b"create_time" => b'c',
        _ => return None,
    })
}

/// split_nameval(): `name = value` with white space trimmed around both.
fn split_nameval(buf: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let name_start = buf
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(buf.len());
    let rest = buf.get(name_start..).unwrap_or(&[]);
    if rest.first().is_none_or(|&b| b == b'=') {
        return Err("missing attribute name");
    }
    let name_len = rest
        .iter()
        .position(|&b| is_c_space(b) || b == b'=')
        .unwrap_or(rest.len());
    let (name, after) = rest.split_at(name_len);
    let eq = after.iter().position(|&b| !is_c_space(b));
    let Some(value) = eq
        .filter(|&i| after.get(i) == Some(&b'='))
        .and_then(|i| after.get(i + 1..))
    else {
        return Err("missing '=' after attribute name");
    };
    let value_start = value
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(value.len());
    let value = value.get(value_start..).unwrap_or(&[]);
    let value_end = value
        .iter()
        .rposition(|&b| !is_c_space(b))
        .map_or(0, |i| i + 1);
    Ok((name, value.get(..value_end).unwrap_or(value)))
}

fn all_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

fn dsn_notify_ok(n: i32) -> bool {
    n == DSN_NOTIFY_NEVER || n == n & (DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY)
}

/// REC_TYPE_TIME_SCAN: seconds by atol, then microseconds by atol after the leading digits.
fn scan_time(s: &[u8]) -> ArrivalTime {
    let sec = c_atol(s);
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    ArrivalTime {
        sec,
        usec: c_atol(s.get(digits..).unwrap_or(&[])),
    }
}

fn verp_ok(delims: &[u8], filter: &[u8]) -> bool {
    delims.len() == 2 && delims.iter().all(|d| filter.contains(d))
}

/// The record loop of qmgr_message_read(). `Ok` means it ended at `E` or at the recipient
/// cap; the caller applies the final sanity checks.
fn read_records<R: Read + Seek>(
    file: &mut R,
    d: &mut Draft,
    options: &ReadOptions<'_>,
    start: u64,
) -> Result<(), Rejection> {
    let mut reader = RecordReader::new(&mut *file).map_err(seek_failed)?;
    reader.seek_to(start).map_err(seek_failed)?;
    let mut pointers = PointerFollower::new();
    let mut orig_rcpt: Option<Vec<u8>> = None;
    let mut dsn_orcpt: Option<Vec<u8>> = None;
    let mut dsn_notify: i32 = 0;
    let mut have_log_client_attr = false;
    let cap = options.recipient_cap;

    let result = loop {
        let mut only_xtra = false;
        let mut curr = reader.position();
        let data_offset = d.data_offset();
        if data_offset > 0 && curr == data_offset as u64 {
            // Skip the message content; the extracted segment must follow.
            let target = curr.saturating_add(d.data_size().max(0) as u64);
            reader.seek_to(target).map_err(seek_failed)?;
            curr = target;
            only_xtra = true;
        }
        let record = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => break Err(Rejection::MissingEndRecord { cause: None }),
            Err(e) => break Err(Rejection::MissingEndRecord { cause: Some(e) }),
        };
        let rec_type = record.rec_type.0;
        if rec_type == b'p' {
            match pointers.target(c_string(&record.data)) {
                Ok(None) => continue,
                Ok(Some(target)) => match reader.seek_to(target) {
                    Ok(()) => continue,
                    Err(e) => {
                        break Err(Rejection::Pointer(PointerError::Seek {
                            error: e.to_string(),
                        }))
                    }
                },
                Err(e) => break Err(Rejection::Pointer(e)),
            }
        }
        if rec_type == 0 {
            // C: a type byte of 0 is indistinguishable from "no record".
            break Err(Rejection::MissingEndRecord { cause: None });
        }
        let allowed = if only_xtra {
            rec_type == b'X'
        } else {
            ENVELOPE_TYPES.contains(&rec_type) || EXTRACTED_TYPES.contains(&rec_type)
        };
        if !allowed {
            break Err(Rejection::UnexpectedRecordType {
                rec_type,
                offset: curr,
            });
        }
        if rec_type == b'E' {
            d.seen_all_non_rcpt = true;
            break Ok(());
        }
        let raw = c_string(&record.data);
        let mut start: &[u8] = raw;
        let mut kind = rec_type;
        let mut attr: (&[u8], &[u8]) = (b"", b"");
        if rec_type == b'A' {
            match split_nameval(raw) {
                Ok((name, value)) => {
                    attr = (name, value);
                    if let Some(mapped) = mapped_attribute(name) {
                        start = value;
                        kind = mapped;
                    }
                }
                Err(reason) => {
                    break Err(Rejection::BadAttribute {
                        reason,
                        record: raw.to_vec(),
                    })
                }
            }
        }

        // Recipient records and the records that qualify the next recipient.
        match kind {
            b'R' => {
                if d.resume_offset.is_none() {
                    d.recipients.push(Recipient {
                        offset: curr,
                        address: start.to_vec(),
                        original: orig_rcpt.take().unwrap_or_default(),
                        dsn_orig_rcpt: dsn_orcpt.take().unwrap_or_default(),
                        notify_flags: std::mem::take(&mut dsn_notify) as u32,
                    });
                    if d.recipients.len() >= cap {
                        d.resume_offset = Some(reader.position());
                        if d.seen_all_non_rcpt {
                            break Ok(());
                        }
                        if d.read_flags() & QMGR_READ_FLAG_MIXED_RCPT_OTHER != 0 {
                            continue;
                        }
                        // Pure recipient sections: what remains unseen is the extracted
                        // segment, if we are still before the content.
                        if curr as i128 > i128::from(d.data_offset()) {
                            d.seen_all_non_rcpt = true;
                            break Ok(());
                        }
                        reader
                            .seek_to(d.data_offset().max(0) as u64)
                            .map_err(seek_failed)?;
                    }
                }
                continue;
            }
            b'D' | b'/' => {
                if d.resume_offset.is_none() {
                    dsn_orcpt = None;
                    orig_rcpt = None;
                    dsn_notify = 0;
                }
                continue;
            }
            b'o' => {
                if let Some(previous) = dsn_orcpt.take() {
                    d.warn(Warning::OutOfOrderDsnOrcptAddress(previous));
                }
                if d.resume_offset.is_none() {
                    dsn_orcpt = Some(start.to_vec());
                }
                continue;
            }
            b'n' => {
                if dsn_notify != 0 {
                    d.warn(Warning::OutOfOrderDsnNotify(dsn_notify));
                    dsn_notify = 0;
                }
                if d.resume_offset.is_none() {
                    let n = c_atoi(start);
                    if !all_digits(start) || n == 0 || !dsn_notify_ok(n) {
                        d.warn(Warning::MalformedDsnNotify(start.to_vec()));
                    } else {
                        dsn_notify = n;
                    }
                    continue;
                }
                // C falls through here; no handler below matches `n`.
            }
            b'O' => {
                if let Some(previous) = orig_rcpt.take() {
                    d.warn(Warning::OutOfOrderOrigRecipient(previous));
                }
                if d.resume_offset.is_none() {
                    orig_rcpt = Some(start.to_vec());
                }
                continue;
            }
            _ => {}
        }

        // Non-recipient records.
        if d.seen_all_non_rcpt {
            continue;
        }
        match kind {
            b'C' => {
                if d.data_offset() == 0 {
                    match parse_size_record(start) {
                        SizeParse::Fields { record, .. } => {
                            d.size = Some(record);
                            if record.data_offset <= 0 || record.data_size <= 0 {
                                break Err(Rejection::InvalidSizeRecord {
                                    record: start.to_vec(),
                                });
                            }
                            if record.qmgr_flags & !super::record::QMGR_READ_FLAG_USER != 0 {
                                break Err(Rejection::InvalidSizeFlags {
                                    record: start.to_vec(),
                                });
                            }
                        }
                        SizeParse::Legacy { data_size } => {
                            let (data_offset, data_size) =
                                legacy_scan(&mut reader, &mut pointers, d, data_size)?;
                            d.size = Some(SizeRecord {
                                data_size,
                                data_offset,
                                rcpt_count: 0,
                                qmgr_flags: QMGR_READ_FLAG_MIXED_RCPT_OTHER,
                                content_length: 0,
                                smtputf8: 0,
                            });
                        }
                        SizeParse::Weird => break Err(Rejection::WeirdSizeRecord),
                    }
                }
                if let Some(size) = d.size.as_mut() {
                    if size.content_length == 0 {
                        size.content_length = size.data_size;
                    } else if size.content_length < 0 {
                        break Err(Rejection::InvalidSizeRecord {
                            record: start.to_vec(),
                        });
                    }
                }
            }
            b'T' if d.arrival.sec == 0 => d.arrival = scan_time(start),
            b'c' if d.create_time == 0 => d.create_time = c_atol(start),
            b'L' => d.filter = Some(start.to_vec()),
            b'I' => d.inspect = Some(start.to_vec()),
            b'>' => d.redirect = Some(start.to_vec()),
            b'S' if d.sender.is_none() => {
                d.sender = Some(start.to_vec());
                let (size, nrcpt) = d.size.map_or((0, 0), |s| (s.content_length, s.rcpt_count));
                d.events.push(ReadEvent::Opened(Opened {
                    sender: start.to_vec(),
                    size,
                    nrcpt,
                }));
            }
            b'i' => d.dsn_envid = Some(start.to_vec()),
            b'<' => {
                let n = c_atoi(start);
                if !all_digits(start) || n == 0 || !(n == DSN_RET_FULL || n == DSN_RET_HDRS) {
                    d.warn(Warning::MalformedDsnRet(start.to_vec()));
                } else {
                    d.dsn_ret = n;
                }
            }
            b'A' => read_attribute(d, attr, curr, &mut have_log_client_attr),
            // C keys "seen" on a non-zero offset.
            b'W' if d.warn.is_none_or(|w| w.offset == 0) => {
                d.warn = Some(WarnRecord {
                    offset: curr,
                    time: parse_warn_time(start),
                });
            }
            b'V' if d.verp.is_none() => {
                if d.sender.as_ref().is_none_or(|s| s.is_empty()) {
                    d.warn(Warning::VerpNullSender);
                } else if !verp_ok(start, options.verp_delimiter_filter) {
                    d.warn(Warning::BadVerp(start.to_vec()));
                } else {
                    d.verp = Some(start.to_vec());
                }
            }
            _ => {}
        }
    };

    if result.is_ok() {
        if let Some(left) = dsn_orcpt {
            d.warn(Warning::OutOfOrderDsnOrcpt(left));
        }
        if let Some(left) = orig_rcpt {
            d.warn(Warning::OutOfOrderOrigRecipient(left));
        }
    }
    result
}

/// Named attributes other than the mapped ones.
fn read_attribute(d: &mut Draft, (name, value): (&[u8], &[u8]), offset: u64, have_log: &mut bool) {
    let set_first = |slot: &mut Option<Vec<u8>>, have_log: bool| {
        if !have_log && slot.is_none() {
            *slot = Some(value.to_vec());
        }
    };
    let first_or_warn = |slot: &mut Option<Vec<u8>>, name: &'static str| {
        if slot.is_none() {
            *slot = Some(value.to_vec());
            None
        } else {
            Some(Warning::MultipleAttribute {
                name,
                value: value.to_vec(),
            })
        }
    };
    let warning = match name {
        b"encoding" => {
            d.encoding = Some(value.to_vec());
            None
        }
        // Pre-2.3 names, used only when no log_* attribute was seen.
        b"client_name" | b"client_address" | b"client_port" | b"protocol_name" | b"helo_name" => {
            if let Some(slot) = d.client_slot(name) {
                set_first(slot, *have_log);
            }
            None
        }
        b"log_client_name"
        | b"log_client_address"
        | b"log_client_port"
        | b"log_protocol_name"
        | b"log_helo_name" => {
            if let Some(slot) = d.client_slot(&name[4..]) {
                *slot = Some(value.to_vec());
            }
            *have_log = true;
            None
        }
        b"sasl_method" => first_or_warn(&mut d.sasl_method, "sasl_method"),
        b"sasl_username" => first_or_warn(&mut d.sasl_username, "sasl_username"),
        b"sasl_sender" => first_or_warn(&mut d.sasl_sender, "sasl_sender"),
        b"log_ident" => first_or_warn(&mut d.log_ident, "log_ident"),
        b"rewrite_context" => first_or_warn(&mut d.rewrite_context, "rewrite_context"),
        b"trace_flags" => {
            if d.trace_flags == 0 {
                d.trace_flags = c_atoi(value) & DEL_REQ_TRACE_FLAGS_MASK;
                d.trace_flags_offset = (d.trace_flags == DEL_REQ_FLAG_RECORD).then_some(offset);
            }
            None
        }
        _ => None,
    };
    if let Some(w) = warning {
        d.warn(w);
    }
}

/// qmgr_message_oldstyle_scan(): a pre-1.0 file's content offsets come from its `M` record.
/// Reads from the start with pointer following and padding skipping, then restores the
/// position. Returns (data_offset, data_size).
fn legacy_scan<R: Read + Seek>(
    reader: &mut RecordReader<R>,
    pointers: &mut PointerFollower,
    d: &mut Draft,
    mut data_size: i64,
) -> Result<(i64, i64), Rejection> {
    let orig = reader.position();
    reader.seek_to(0).map_err(seek_failed)?;
    let mut data_offset: i64 = 0;
    let mut saw_end = false;
    loop {
        let record = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(e) => {
                d.events
                    .push(ReadEvent::FileWarning(FileWarning::Record(e)));
                break;
            }
        };
        match record.rec_type.0 {
            0 => break,
            b'p' => match pointers.target(c_string(&record.data)) {
                Ok(None) => {}
                Ok(Some(target)) => {
                    if let Err(e) = reader.seek_to(target) {
                        d.events.push(ReadEvent::FileWarning(FileWarning::Pointer(
                            PointerError::Seek {
                                error: e.to_string(),
                            },
                        )));
                        break;
                    }
                }
                Err(e) => {
                    d.events
                        .push(ReadEvent::FileWarning(FileWarning::Pointer(e)));
                    break;
                }
            },
            b'w' => {}
            b'E' => {
                saw_end = true;
                break;
            }
            b'M' if data_offset == 0 => {
                data_offset = reader.position() as i64;
                let value = c_string(&record.data);
                let extra = c_atol(value);
                if extra <= data_offset {
                    return Err(Rejection::LegacyBadExtraOffset {
                        value: value.to_vec(),
                    });
                }
                reader.seek_to(extra as u64).map_err(seek_failed)?;
                data_size = extra - data_offset;
            }
            _ => {}
        }
    }
    reader.seek_to(orig).map_err(seek_failed)?;
    if data_offset == 0 || !saw_end {
        return Err(Rejection::LegacyOutOfOrder);
    }
    Ok((data_offset, data_size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::queue_file_builder::QueueFileBuilder;
    use crate::queue::record::{encode_record, Patch};
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
        assert_eq!(env.sender, b"sender@example.com");
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
        assert_eq!(env.recipients[0].address, b"a@example.net");
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
        assert_eq!(env.verp_delimiters.as_deref(), Some(&b"+="[..]));
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
        assert_eq!(env.inspect_transport.as_deref(), Some(&b"inspect:"[..]));
        assert_eq!(
            env.filter_transport.as_deref(),
            Some(&b"smtp:[127.0.0.1]:10025"[..])
        );
        assert_eq!(
            env.redirect_address.as_deref(),
            Some(&b"redirect@example.org"[..])
        );
        assert_eq!(env.attrs.encoding(), b"8bit");
        assert_eq!(env.smtputf8, 1);
        let r: Vec<_> = env
            .recipients
            .iter()
            .map(|r| r.address.as_slice())
            .collect();
        assert_eq!(
            r,
            [&b"r1@example.net"[..], b"r2@example.net", b"r3@example.net"]
        );
        assert_eq!(env.recipients[0].original, b"orig@example.net");
        assert_eq!(env.recipients[0].dsn_orig_rcpt, b"rfc822;o@example.net");
        assert_eq!(env.recipients[0].notify_flags, 6);
        assert_eq!(env.recipients[1].original, b"");
        assert_eq!(env.recipients[1].dsn_orig_rcpt, b"rfc822;x");
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
            .map(|r| (r.address.clone(), r.offset))
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
        assert_eq!(env.sender, b"sender@example.com");
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
        assert_eq!(env.verp_delimiters, None);
        assert_eq!(env.recipients[0].original, b"o2");
        assert_eq!(env.recipients[0].dsn_orig_rcpt, b"x2");
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
        assert_eq!(env.sender, b"first");
        assert_eq!(env.warn.unwrap().time, 10);
        assert_eq!(env.attrs.dsn_envid(), b"e2");
        assert_eq!(env.filter_transport.as_deref(), Some(&b"f2"[..]));
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
                        .map(|r| (r.offset, r.address.clone(), r.original.clone())),
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
        assert_eq!(env.sender, b"s@x");
        assert_eq!(env.recipients[0].address, b"r");
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
            prop_assert_eq!(&env.sender, &sender);
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
                prop_assert_eq!(&r.address, addr);
                prop_assert_eq!(&r.original, orig);
                prop_assert_eq!(&r.dsn_orig_rcpt, orcpt);
                prop_assert_eq!(r.notify_flags, notify[*n]);
            }
        }
    }
}
