//! What a read produces: the envelope, its request attributes, and the flag values it holds.

use super::diagnostics::{opened_in, ReadEvent};
use crate::proto::deliver::request_flags;
use crate::queue::record::SizeRecord;

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
    /// Offset of the `W` type byte (for [`crate::queue::record::Patch::delay_warning_sent`]).
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

/// The strings a delivery request copies from the envelope, packed into one allocation: a
/// message stays in memory for its whole delivery, and these are a dozen short strings. The
/// buffer starts with each field's length as a LEB128 number (one byte for a field under 128
/// bytes), then the fields in [`RequestAttrs::new`]'s order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestAttrs {
    buf: Box<[u8]>,
}

/// The number of fields.
const REQUEST_ATTRS: usize = 12;

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
    pub fn new(fields: [&[u8]; REQUEST_ATTRS]) -> RequestAttrs {
        let mut buf =
            Vec::with_capacity(fields.iter().map(|f| f.len()).sum::<usize>() + REQUEST_ATTRS);
        for field in fields {
            let mut len = field.len();
            while len >= 0x80 {
                buf.push((len & 0x7f) as u8 | 0x80);
                len >>= 7;
            }
            buf.push(len as u8);
        }
        for field in fields {
            buf.extend_from_slice(field);
        }
        RequestAttrs {
            buf: buf.into_boxed_slice(),
        }
    }

    fn field(&self, index: usize) -> &[u8] {
        let mut pos = 0;
        let mut start = 0;
        let mut wanted = 0;
        for i in 0..REQUEST_ATTRS {
            let mut len = 0usize;
            let mut shift = 0;
            while let Some(&b) = self.buf.get(pos) {
                pos += 1;
                len |= usize::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            if i < index {
                start += len;
            } else if i == index {
                wanted = len;
            }
        }
        let start = pos + start;
        self.buf.get(start..start + wanted).unwrap_or_default()
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
    pub sender: Box<[u8]>,
    /// The current batch, in file order.
    pub recipients: Vec<Recipient>,
    /// Where the next batch starts, when the cap stopped the previous one.
    pub resume_offset: Option<u64>,
    /// The content filter, inspection transport, redirect address and VERP delimiters:
    /// see [`Envelope::filter_transport`] and the others.
    pub rare: Option<Box<RareFields>>,
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

/// The envelope strings few messages have, boxed together: the active queue holds thousands
/// of envelopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RareFields {
    pub filter_transport: Option<Box<[u8]>>,
    pub inspect_transport: Option<Box<[u8]>>,
    pub redirect_address: Option<Box<[u8]>>,
    pub verp_delimiters: Option<Box<[u8]>>,
}

impl RareFields {
    /// `None` when no field is set.
    pub fn boxed(self) -> Option<Box<RareFields>> {
        (self != RareFields::default()).then(|| Box::new(self))
    }
}

impl Envelope {
    /// `L` in the envelope or extracted segment (last wins).
    pub fn filter_transport(&self) -> Option<&[u8]> {
        self.rare.as_ref()?.filter_transport.as_deref()
    }

    /// `I` (last wins).
    pub fn inspect_transport(&self) -> Option<&[u8]> {
        self.rare.as_ref()?.inspect_transport.as_deref()
    }

    /// `>` (last wins).
    pub fn redirect_address(&self) -> Option<&[u8]> {
        self.rare.as_ref()?.redirect_address.as_deref()
    }

    /// Valid `V` delimiters (first valid wins); deliveries then carry one recipient each.
    pub fn verp_delimiters(&self) -> Option<&[u8]> {
        self.rare.as_ref()?.verp_delimiters.as_deref()
    }

    /// Sets the VERP delimiters.
    pub fn set_verp_delimiters(&mut self, delimiters: Option<&[u8]>) {
        let mut rare = self.rare.take().map(|r| *r).unwrap_or_default();
        rare.verp_delimiters = delimiters.map(Box::from);
        self.rare = rare.boxed();
    }

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

#[cfg(test)]
mod tests {
    use super::RequestAttrs;

    #[test]
    fn request_attrs_keep_fields_of_any_length() {
        let long = vec![b'x'; 200];
        let longer = vec![b'y'; 70000];
        let fields: [&[u8]; 12] = [
            b"name", b"", &long, b"p", &longer, b"", b"u", b"s", b"ident", b"local", b"8bit",
            b"envid",
        ];
        let a = RequestAttrs::new(fields);
        let got = [
            a.log_client_name(),
            a.log_client_address(),
            a.log_client_port(),
            a.log_protocol_name(),
            a.log_helo_name(),
            a.sasl_method(),
            a.sasl_username(),
            a.sasl_sender(),
            a.log_ident(),
            a.rewrite_context(),
            a.encoding(),
            a.dsn_envid(),
        ];
        assert_eq!(got, fields);
        assert_eq!(RequestAttrs::default().rewrite_context(), b"");
        assert_eq!(std::mem::size_of::<RequestAttrs>(), 16);
    }
}
