//! Address verification updates qmgr sends to verify(8) on `private/verify`.

use super::attr::{AttrError, AttrList, AttrMessage, AttrWriter, ScanMode};

/// `recipient_status` values (`DEL_RCPT_STAT_*`).
pub mod recipient_status {
    pub const OK: u32 = 0;
    pub const DEFER: u32 = 1;
    pub const BOUNCE: u32 = 2;
}

/// `{request=update, address, recipient_status, reason}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyUpdate {
    pub address: Vec<u8>,
    pub recipient_status: u32,
    pub reason: Vec<u8>,
}

impl VerifyUpdate {
    /// Server-side decode (for test peers).
    pub fn decode(list: &AttrList) -> Result<Self, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        r.expect_str("request", "update")?;
        let update = VerifyUpdate {
            address: r.str("address")?.to_vec(),
            recipient_status: r.int("recipient_status")?,
            reason: r.str("reason")?.to_vec(),
        };
        r.end()?;
        Ok(update)
    }
}

impl AttrMessage for VerifyUpdate {
    fn write(&self, w: &mut AttrWriter) {
        w.str("request", b"update")
            .str("address", &self.address)
            .int("recipient_status", self.recipient_status)
            .str("reason", &self.reason)
            .end();
    }
}

/// verify(8)'s reply to an update: `{status}`, read like `verify_clnt` does
/// (`ATTR_FLAG_MISSING` only: unknown attributes are skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReply {
    pub status: i32,
}

impl VerifyReply {
    pub fn decode(list: &AttrList) -> Result<Self, AttrError> {
        let mut r = list.reader(ScanMode::SkipUnknown);
        let status = r.int_signed("status")?;
        r.end()?;
        Ok(VerifyReply { status })
    }
}

impl AttrMessage for VerifyReply {
    fn write(&self, w: &mut AttrWriter) {
        w.int_signed("status", self.status).end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::attr::AttrDecoder;

    #[test]
    fn update_round_trips() {
        let update = VerifyUpdate {
            address: b"a@b".to_vec(),
            recipient_status: recipient_status::DEFER,
            reason: b"delivery temporarily suspended".to_vec(),
        };
        let bytes = update.to_bytes();
        assert_eq!(
            bytes,
            b"request\0update\0address\0a@b\0recipient_status\x001\0reason\0delivery temporarily suspended\0\0"
        );
        let list = AttrDecoder::default().feed(&bytes).unwrap().remove(0);
        assert_eq!(VerifyUpdate::decode(&list), Ok(update));
    }

    #[test]
    fn reply_skips_unknown_attributes() {
        let list = AttrList::from_pairs(&[("extra", "x"), ("status", "0"), ("more", "y")]);
        assert_eq!(VerifyReply::decode(&list), Ok(VerifyReply { status: 0 }));
        assert!(VerifyReply::decode(&AttrList::new()).is_err());
    }
}
