//! The recipient attribute group (`rcpt_print` / `rcpb_scan`): part of the delivery request's
//! per-recipient lists and of the defer append request. Adds no terminator of its own.

use super::attr::{AttrError, AttrReader, AttrWriter};

/// One recipient as qmgr hands it on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    /// `original_recipient` (the `O` record; may be empty).
    pub original: Vec<u8>,
    /// `recipient`: the (possibly resolver-rewritten) address.
    pub address: Vec<u8>,
    /// `offset`: file offset of the recipient's `R` record.
    pub offset: u64,
    /// `dsn_orig_rcpt`: DSN ORCPT, e.g. `rfc822;alice@d1.lab`.
    pub dsn_orig_rcpt: Vec<u8>,
    /// `notify_flags`: DSN NOTIFY bits.
    pub notify_flags: u32,
}

impl Recipient {
    pub fn write(&self, w: &mut AttrWriter) {
        w.str("original_recipient", &self.original)
            .str("recipient", &self.address)
            .long("offset", self.offset)
            .str("dsn_orig_rcpt", &self.dsn_orig_rcpt)
            .int("notify_flags", self.notify_flags);
    }

    pub fn read(r: &mut AttrReader<'_>) -> Result<Self, AttrError> {
        Ok(Recipient {
            original: r.str("original_recipient")?.to_vec(),
            address: r.str("recipient")?.to_vec(),
            offset: r.long("offset")?,
            dsn_orig_rcpt: r.str("dsn_orig_rcpt")?.to_vec(),
            notify_flags: r.int("notify_flags")?,
        })
    }
}
