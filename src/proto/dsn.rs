//! The DSN attribute group (`dsn_print` / `dsb_scan`): the delivery agent's "hop status" in
//! its reply and the delay reason in a defer append request. Adds no terminator.

use super::attr::{AttrError, AttrReader, AttrWriter};

/// Delivery status notification fields, all byte strings, empty when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dsn {
    /// `status`: RFC 3463 code such as `4.4.1`; empty = no hop status.
    pub status: Vec<u8>,
    pub diag_type: Vec<u8>,
    pub diag_text: Vec<u8>,
    pub mta_type: Vec<u8>,
    pub mta_mname: Vec<u8>,
    pub action: Vec<u8>,
    /// `reason`: free text.
    pub reason: Vec<u8>,
}

impl Dsn {
    pub fn write(&self, w: &mut AttrWriter) {
        w.str("status", &self.status)
            .str("diag_type", &self.diag_type)
            .str("diag_text", &self.diag_text)
            .str("mta_type", &self.mta_type)
            .str("mta_mname", &self.mta_mname)
            .str("action", &self.action)
            .str("reason", &self.reason);
    }

    pub fn read(r: &mut AttrReader<'_>) -> Result<Self, AttrError> {
        Ok(Dsn {
            status: r.str("status")?.to_vec(),
            diag_type: r.str("diag_type")?.to_vec(),
            diag_text: r.str("diag_text")?.to_vec(),
            mta_type: r.str("mta_type")?.to_vec(),
            mta_mname: r.str("mta_mname")?.to_vec(),
            action: r.str("action")?.to_vec(),
            reason: r.str("reason")?.to_vec(),
        })
    }
}
