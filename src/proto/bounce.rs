//! Requests to bounce(8) running as `private/bounce`, `private/defer` and `private/trace`,
//! and its `{status}` reply.

use super::attr::{AttrError, AttrList, AttrMessage, AttrWriter, ScanMode};
use super::dsn::Dsn;
use super::recipient::Recipient;

/// `nrequest` codes (`BOUNCE_CMD_*`, bounce.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceCommand {
    Append = 0,
    Flush = 1,
    Warn = 2,
    Verp = 3,
    One = 4,
    Trace = 5,
}

impl BounceCommand {
    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn from_code(code: u32) -> Option<Self> {
        [
            BounceCommand::Append,
            BounceCommand::Flush,
            BounceCommand::Warn,
            BounceCommand::Verp,
            BounceCommand::One,
            BounceCommand::Trace,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}

/// Request `flags` bits (`BOUNCE_FLAG_*`).
pub mod bounce_flags {
    pub const KEEP: u32 = 0;
    pub const CLEAN: u32 = 1;
    /// Delete the recipients from the queue file (defer flush on expiry).
    pub const DELRCPT: u32 = 2;
}

/// A flush-style request: bounce flush/verp, trace flush, defer flush and defer warn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushRequest {
    /// `nrequest`.
    pub command: BounceCommand,
    pub flags: u32,
    /// `queue_name`, `active` from qmgr.
    pub queue_name: Vec<u8>,
    pub queue_id: Vec<u8>,
    pub encoding: Vec<u8>,
    /// Size-record flags.
    pub smtputf8: u32,
    pub sender: Vec<u8>,
    pub envelope_id: Vec<u8>,
    pub ret_flags: u32,
    /// Sent only for [`BounceCommand::Verp`].
    pub verp_delimiters: Option<Vec<u8>>,
}

impl FlushRequest {
    /// Server-side decode (for test peers).
    pub fn decode(list: &AttrList) -> Result<Self, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        let code = r.int("nrequest")?;
        let command = BounceCommand::from_code(code)
            .filter(|c| *c != BounceCommand::Append)
            .ok_or(AttrError::UnexpectedValue {
                name: "nrequest".to_string(),
                value: code.to_string().into_bytes(),
                expected: "1".to_string(),
            })?;
        let mut request = FlushRequest {
            command,
            flags: r.int("flags")?,
            queue_name: r.str("queue_name")?.to_vec(),
            queue_id: r.str("queue_id")?.to_vec(),
            encoding: r.str("encoding")?.to_vec(),
            smtputf8: r.int("smtputf8")?,
            sender: r.str("sender")?.to_vec(),
            envelope_id: r.str("envelope_id")?.to_vec(),
            ret_flags: r.int("ret_flags")?,
            verp_delimiters: None,
        };
        if r.peek_name() == Some(&b"verp_delimiters"[..]) {
            request.verp_delimiters = Some(r.str("verp_delimiters")?.to_vec());
        }
        r.end()?;
        Ok(request)
    }
}

impl AttrMessage for FlushRequest {
    fn write(&self, w: &mut AttrWriter) {
        w.int("nrequest", self.command.code())
            .int("flags", self.flags)
            .str("queue_name", &self.queue_name)
            .str("queue_id", &self.queue_id)
            .str("encoding", &self.encoding)
            .int("smtputf8", self.smtputf8)
            .str("sender", &self.sender)
            .str("envelope_id", &self.envelope_id)
            .int("ret_flags", self.ret_flags);
        if let Some(delimiters) = &self.verp_delimiters {
            w.str("verp_delimiters", delimiters);
        }
        w.end();
    }
}

/// An append-style request (`defer_append`): `nrequest=0`, one recipient and its DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    pub flags: u32,
    pub queue_id: Vec<u8>,
    pub recipient: Recipient,
    pub dsn: Dsn,
}

impl AppendRequest {
    /// Server-side decode (for test peers).
    pub fn decode(list: &AttrList) -> Result<Self, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        r.expect_str("nrequest", "0")?;
        let request = AppendRequest {
            flags: r.int("flags")?,
            queue_id: r.str("queue_id")?.to_vec(),
            recipient: Recipient::read(&mut r)?,
            dsn: Dsn::read(&mut r)?,
        };
        r.end()?;
        Ok(request)
    }
}

impl AttrMessage for AppendRequest {
    fn write(&self, w: &mut AttrWriter) {
        w.int("nrequest", BounceCommand::Append.code())
            .int("flags", self.flags)
            .str("queue_id", &self.queue_id);
        self.recipient.write(w);
        self.dsn.write(w);
        w.end();
    }
}

/// The `{status}` reply; 0 = OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusReply {
    pub status: i32,
}

impl StatusReply {
    /// Decodes as the bounce clients do (strict).
    pub fn decode(list: &AttrList) -> Result<Self, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        let status = r.int_signed("status")?;
        r.end()?;
        Ok(StatusReply { status })
    }
}

impl AttrMessage for StatusReply {
    fn write(&self, w: &mut AttrWriter) {
        w.int_signed("status", self.status).end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::attr::AttrDecoder;

    fn one(bytes: &[u8]) -> AttrList {
        AttrDecoder::default().feed(bytes).unwrap().remove(0)
    }

    #[test]
    fn verp_flush_round_trips() {
        let request = FlushRequest {
            command: BounceCommand::Verp,
            flags: bounce_flags::KEEP,
            queue_name: b"active".to_vec(),
            queue_id: b"ID".to_vec(),
            encoding: b"8bit".to_vec(),
            smtputf8: 0,
            sender: b"s@x".to_vec(),
            envelope_id: Vec::new(),
            ret_flags: 0,
            verp_delimiters: Some(b"+=".to_vec()),
        };
        let bytes = request.to_bytes();
        assert!(bytes.ends_with(b"ret_flags\x000\0verp_delimiters\0+=\0\0"));
        assert_eq!(FlushRequest::decode(&one(&bytes)), Ok(request));
    }

    #[test]
    fn append_round_trips() {
        let request = AppendRequest {
            flags: 0,
            queue_id: b"ID".to_vec(),
            recipient: Recipient::new(b"", b"r@x", 42, b"", 0),
            dsn: Dsn {
                status: b"4.3.0".to_vec(),
                action: b"delayed".to_vec(),
                reason: b"mail transport unavailable".to_vec(),
                ..Dsn::default()
            },
        };
        let bytes = request.to_bytes();
        assert!(
            bytes.starts_with(b"nrequest\x000\0flags\x000\0queue_id\0ID\0original_recipient\0\0")
        );
        let list = one(&bytes);
        assert_eq!(list.len(), 15);
        assert_eq!(AppendRequest::decode(&list), Ok(request));
    }

    #[test]
    fn status_reply() {
        assert_eq!(StatusReply { status: 0 }.to_bytes(), b"status\x000\0\0");
        assert_eq!(
            StatusReply::decode(&one(b"status\x004294967295\0\0")),
            Ok(StatusReply { status: -1 })
        );
        assert!(StatusReply::decode(&one(b"status\x000\0x\0\0\0")).is_err());
    }
}
