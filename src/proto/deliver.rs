//! The delivery request qmgr sends to a delivery agent on `private/<transport>`, and the
//! agent's reply.
//!
//! Request: one list of 23 attributes, then one list per recipient (their number is the
//! 23rd attribute). Reply: the DSN "hop status" group, then `status` (0 = done, else defer).

use std::fmt;

use super::attr::{AttrError, AttrList, AttrMessage, AttrWriter, ScanMode};
use super::dsn::Dsn;
use super::msg_stats::{MsgStats, MsgStatsError};
use super::recipient::Recipient;

/// Request `flags` bits (`DEL_REQ_FLAG_*`, deliver_request.h).
pub mod request_flags {
    pub const SUCCESS: u32 = 0x1;
    pub const BOUNCE: u32 = 0x2;
    pub const MTA_VRFY: u32 = 0x100;
    pub const USR_VRFY: u32 = 0x200;
    pub const RECORD: u32 = 0x400;
    pub const CONN_LOAD: u32 = 0x800;
    pub const CONN_STORE: u32 = 0x1000;
    pub const REC_DLY_SENT: u32 = 0x2000;
}

/// Everything in one delivery request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryRequest {
    pub flags: u32,
    /// `queue_name`, `active` from qmgr.
    pub queue_name: Vec<u8>,
    pub queue_id: Vec<u8>,
    /// `offset`: start of the message content (size record field 2).
    pub data_offset: u64,
    /// `size`: content length.
    pub data_size: u64,
    pub nexthop: Vec<u8>,
    /// `7bit`, `8bit` or empty.
    pub encoding: Vec<u8>,
    pub smtputf8: u32,
    pub sender: Vec<u8>,
    pub envelope_id: Vec<u8>,
    pub ret_flags: u32,
    /// `time`.
    pub stats: MsgStats,
    pub log_client_name: Vec<u8>,
    pub log_client_address: Vec<u8>,
    pub log_client_port: Vec<u8>,
    pub log_protocol_name: Vec<u8>,
    pub log_helo_name: Vec<u8>,
    pub sasl_method: Vec<u8>,
    pub sasl_username: Vec<u8>,
    pub sasl_sender: Vec<u8>,
    pub log_ident: Vec<u8>,
    /// `local` or `remote`.
    pub rewrite_context: Vec<u8>,
    /// Sent as `recipient_count` plus one list each.
    pub recipients: Vec<Recipient>,
}

/// Why received lists are not a delivery request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliverError {
    Attr(AttrError),
    /// The `time` value is not an 88-byte MSG_STATS.
    Time(MsgStatsError),
    /// The number of recipient lists differs from `recipient_count`.
    RecipientCount {
        announced: u32,
        received: usize,
    },
}

impl fmt::Display for DeliverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliverError::Attr(err) => err.fmt(f),
            DeliverError::Time(err) => err.fmt(f),
            DeliverError::RecipientCount {
                announced,
                received,
            } => write!(
                f,
                "recipient_count {announced} but {received} recipient lists"
            ),
        }
    }
}

impl std::error::Error for DeliverError {}

impl From<AttrError> for DeliverError {
    fn from(err: AttrError) -> Self {
        DeliverError::Attr(err)
    }
}

impl DeliveryRequest {
    /// Decodes the common list (strict, as the agent's `deliver_request_get`); returns the
    /// request without recipients and the announced recipient count.
    pub fn decode_common(list: &AttrList) -> Result<(Self, u32), DeliverError> {
        let mut r = list.reader(ScanMode::Strict);
        let mut request = DeliveryRequest {
            flags: r.int("flags")?,
            queue_name: r.str("queue_name")?.to_vec(),
            queue_id: r.str("queue_id")?.to_vec(),
            data_offset: r.long("offset")?,
            data_size: r.long("size")?,
            nexthop: r.str("nexthop")?.to_vec(),
            encoding: r.str("encoding")?.to_vec(),
            smtputf8: r.int("smtputf8")?,
            sender: r.str("sender")?.to_vec(),
            envelope_id: r.str("envelope_id")?.to_vec(),
            ret_flags: r.int("ret_flags")?,
            ..DeliveryRequest::default()
        };
        request.stats = MsgStats::from_bytes(&r.data("time")?).map_err(DeliverError::Time)?;
        request.log_client_name = r.str("log_client_name")?.to_vec();
        request.log_client_address = r.str("log_client_address")?.to_vec();
        request.log_client_port = r.str("log_client_port")?.to_vec();
        request.log_protocol_name = r.str("log_protocol_name")?.to_vec();
        request.log_helo_name = r.str("log_helo_name")?.to_vec();
        request.sasl_method = r.str("sasl_method")?.to_vec();
        request.sasl_username = r.str("sasl_username")?.to_vec();
        request.sasl_sender = r.str("sasl_sender")?.to_vec();
        request.log_ident = r.str("log_ident")?.to_vec();
        request.rewrite_context = r.str("rewrite_context")?.to_vec();
        let count = r.int("recipient_count")?;
        r.end()?;
        Ok((request, count))
    }

    /// Decodes one per-recipient list.
    pub fn decode_recipient(list: &AttrList) -> Result<Recipient, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        let recipient = Recipient::read(&mut r)?;
        r.end()?;
        Ok(recipient)
    }

    /// Decodes a whole request: the common list followed by exactly `recipient_count`
    /// recipient lists.
    pub fn decode(lists: &[AttrList]) -> Result<Self, DeliverError> {
        let Some((common, rest)) = lists.split_first() else {
            return Err(AttrError::Missing {
                wanted: "flags".to_string(),
            }
            .into());
        };
        let (mut request, count) = Self::decode_common(common)?;
        if usize::try_from(count).ok() != Some(rest.len()) {
            return Err(DeliverError::RecipientCount {
                announced: count,
                received: rest.len(),
            });
        }
        request.recipients = rest
            .iter()
            .map(Self::decode_recipient)
            .collect::<Result<_, _>>()?;
        Ok(request)
    }
}

/// A request's fields borrowed from wherever they live: the queue manager writes its requests
/// from the envelope through this, without copying every string into a [`DeliveryRequest`].
#[derive(Debug, Clone, Copy)]
pub struct RequestRef<'a> {
    pub flags: u32,
    pub queue_name: &'a [u8],
    pub queue_id: &'a [u8],
    pub data_offset: u64,
    pub data_size: u64,
    pub nexthop: &'a [u8],
    pub encoding: &'a [u8],
    pub smtputf8: u32,
    pub sender: &'a [u8],
    pub envelope_id: &'a [u8],
    pub ret_flags: u32,
    pub stats: MsgStats,
    pub log_client_name: &'a [u8],
    pub log_client_address: &'a [u8],
    pub log_client_port: &'a [u8],
    pub log_protocol_name: &'a [u8],
    pub log_helo_name: &'a [u8],
    pub sasl_method: &'a [u8],
    pub sasl_username: &'a [u8],
    pub sasl_sender: &'a [u8],
    pub log_ident: &'a [u8],
    pub rewrite_context: &'a [u8],
    pub recipients: &'a [Recipient],
}

impl DeliveryRequest {
    /// The same request, borrowed.
    pub fn borrowed(&self) -> RequestRef<'_> {
        RequestRef {
            flags: self.flags,
            queue_name: &self.queue_name,
            queue_id: &self.queue_id,
            data_offset: self.data_offset,
            data_size: self.data_size,
            nexthop: &self.nexthop,
            encoding: &self.encoding,
            smtputf8: self.smtputf8,
            sender: &self.sender,
            envelope_id: &self.envelope_id,
            ret_flags: self.ret_flags,
            stats: self.stats,
            log_client_name: &self.log_client_name,
            log_client_address: &self.log_client_address,
            log_client_port: &self.log_client_port,
            log_protocol_name: &self.log_protocol_name,
            log_helo_name: &self.log_helo_name,
            sasl_method: &self.sasl_method,
            sasl_username: &self.sasl_username,
            sasl_sender: &self.sasl_sender,
            log_ident: &self.log_ident,
            rewrite_context: &self.rewrite_context,
            recipients: &self.recipients,
        }
    }
}

impl RequestRef<'_> {
    /// The owned copy (tests and the simulation keep requests around).
    pub fn to_request(&self) -> DeliveryRequest {
        DeliveryRequest {
            flags: self.flags,
            queue_name: self.queue_name.to_vec(),
            queue_id: self.queue_id.to_vec(),
            data_offset: self.data_offset,
            data_size: self.data_size,
            nexthop: self.nexthop.to_vec(),
            encoding: self.encoding.to_vec(),
            smtputf8: self.smtputf8,
            sender: self.sender.to_vec(),
            envelope_id: self.envelope_id.to_vec(),
            ret_flags: self.ret_flags,
            stats: self.stats,
            log_client_name: self.log_client_name.to_vec(),
            log_client_address: self.log_client_address.to_vec(),
            log_client_port: self.log_client_port.to_vec(),
            log_protocol_name: self.log_protocol_name.to_vec(),
            log_helo_name: self.log_helo_name.to_vec(),
            sasl_method: self.sasl_method.to_vec(),
            sasl_username: self.sasl_username.to_vec(),
            sasl_sender: self.sasl_sender.to_vec(),
            log_ident: self.log_ident.to_vec(),
            rewrite_context: self.rewrite_context.to_vec(),
            recipients: self.recipients.to_vec(),
        }
    }
}

impl AttrMessage for DeliveryRequest {
    fn write(&self, w: &mut AttrWriter) {
        self.borrowed().write(w);
    }
}

impl AttrMessage for RequestRef<'_> {
    /// Appends the whole request: common list, then one list per recipient.
    fn write(&self, w: &mut AttrWriter) {
        let count = u32::try_from(self.recipients.len()).unwrap_or(u32::MAX);
        w.int("flags", self.flags)
            .str("queue_name", self.queue_name)
            .str("queue_id", self.queue_id)
            .long("offset", self.data_offset)
            .long("size", self.data_size)
            .str("nexthop", self.nexthop)
            .str("encoding", self.encoding)
            .int("smtputf8", self.smtputf8)
            .str("sender", self.sender)
            .str("envelope_id", self.envelope_id)
            .int("ret_flags", self.ret_flags)
            .data("time", &self.stats.to_bytes())
            .str("log_client_name", self.log_client_name)
            .str("log_client_address", self.log_client_address)
            .str("log_client_port", self.log_client_port)
            .str("log_protocol_name", self.log_protocol_name)
            .str("log_helo_name", self.log_helo_name)
            .str("sasl_method", self.sasl_method)
            .str("sasl_username", self.sasl_username)
            .str("sasl_sender", self.sasl_sender)
            .str("log_ident", self.log_ident)
            .str("rewrite_context", self.rewrite_context)
            .int("recipient_count", count)
            .end();
        for recipient in self.recipients {
            recipient.write(w);
            w.end();
        }
    }
}

/// How a delivery attempt ended, as qmgr classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// `status` 0: every recipient reached a final state.
    Done,
    /// `status` non-zero: some recipients were deferred.
    Defer,
    /// No well-formed reply (agent died, garbage): the mail is deferred; the destination is
    /// throttled only by a hop status an earlier reply left behind (see
    /// `Scheduler::agent_reply_scan`).
    Crash,
}

impl DeliveryOutcome {
    /// The outcome of a reply decode: any error is a crash.
    pub fn of(reply: &Result<DeliveryReply, AttrError>) -> Self {
        match reply {
            Ok(reply) => reply.outcome(),
            Err(_) => DeliveryOutcome::Crash,
        }
    }
}

/// The agent's reply: `{status, diag_type, diag_text, mta_type, mta_mname, action, reason,
/// status}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReply {
    /// Non-empty `hop_status.status` = "avoid this destination".
    pub hop_status: Dsn,
    /// The second `status`: 0 = done; agents send -1 (`4294967295`) to defer.
    pub status: i32,
}

impl DeliveryReply {
    /// Decodes as qmgr does (strict; any failure means [`DeliveryOutcome::Crash`]).
    pub fn decode(list: &AttrList) -> Result<Self, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        let reply = DeliveryReply {
            hop_status: Dsn::read(&mut r)?,
            status: r.int_signed("status")?,
        };
        r.end()?;
        Ok(reply)
    }

    pub fn outcome(&self) -> DeliveryOutcome {
        if self.status == 0 {
            DeliveryOutcome::Done
        } else {
            DeliveryOutcome::Defer
        }
    }
}

impl AttrMessage for DeliveryReply {
    fn write(&self, w: &mut AttrWriter) {
        self.hop_status.write(w);
        w.int_signed("status", self.status).end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::attr::AttrDecoder;
    use proptest::prelude::*;

    fn sample() -> DeliveryRequest {
        DeliveryRequest {
            flags: 3,
            queue_name: b"active".to_vec(),
            queue_id: b"ABC".to_vec(),
            data_offset: 600,
            data_size: 300,
            nexthop: b"d.lab".to_vec(),
            sender: b"s@x".to_vec(),
            rewrite_context: b"local".to_vec(),
            recipients: vec![
                Recipient::new(b"", b"a@d.lab", 500, b"", 0),
                Recipient::new(b"B@d.lab", b"b@d.lab", 520, b"rfc822;B@d.lab", 2),
            ],
            ..DeliveryRequest::default()
        }
    }

    #[test]
    fn request_round_trips_with_recipient_lists() {
        let request = sample();
        let lists = AttrDecoder::default().feed(&request.to_bytes()).unwrap();
        assert_eq!(lists.len(), 3);
        assert_eq!(lists[0].len(), 23);
        assert_eq!(DeliveryRequest::decode(&lists), Ok(request));
        assert_eq!(
            DeliveryRequest::decode(&lists[..2]),
            Err(DeliverError::RecipientCount {
                announced: 2,
                received: 1
            })
        );
    }

    #[test]
    fn reply_outcomes() {
        let defer = DeliveryReply {
            hop_status: Dsn {
                status: b"4.4.1".to_vec(),
                reason: b"refused".to_vec(),
                ..Dsn::default()
            },
            status: -1,
        };
        let bytes = defer.to_bytes();
        assert!(bytes.ends_with(b"status\x004294967295\0\0"));
        let list = AttrDecoder::default().feed(&bytes).unwrap().remove(0);
        let decoded = DeliveryReply::decode(&list);
        assert_eq!(decoded.as_ref(), Ok(&defer));
        assert_eq!(DeliveryOutcome::of(&decoded), DeliveryOutcome::Defer);
        let only_status = AttrList::from_pairs(&[("status", "0")]);
        assert_eq!(
            DeliveryOutcome::of(&DeliveryReply::decode(&only_status)),
            DeliveryOutcome::Crash
        );
    }

    proptest! {
        #[test]
        fn arbitrary_lists_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(lists) = AttrDecoder::default().feed(&bytes) {
                let _ = DeliveryRequest::decode(&lists);
                for list in &lists {
                    let _ = DeliveryReply::decode(list);
                }
            }
        }
    }
}
