//! The envelope a queue manager needs, read the way oqmgr's qmgr_message_read() does.
//!
//! Pure: the caller hands in the opened (and locked) queue file; warnings are returned as
//! values in the order the C daemon would log them, never logged here.
//!
//! Recipients are read in batches of at most `recipient_cap`: [`read_envelope`] reads all
//! non-recipient information plus the first batch, [`read_recipient_batch`] continues from
//! [`Envelope::resume_offset`].
//!
//! `types` holds what a read produces, `reader` the record loop, `legacy` the pre-1.0 layout
//! scan, and `diagnostics` the warnings and rejections with the C daemon's wording.

mod diagnostics;
mod legacy;
mod reader;
mod types;

pub use diagnostics::{FileWarning, ReadError, ReadEvent, Rejection, Severity, Warning};
pub use reader::{read_envelope, read_recipient_batch, recipient_cap, ReadOptions};
pub use types::{
    ArrivalTime, Envelope, Opened, RareFields, Recipient, RequestAttrs, WarnRecord,
    DEL_REQ_FLAG_MTA_VRFY, DEL_REQ_FLAG_RECORD, DEL_REQ_FLAG_REC_DLY_SENT, DEL_REQ_FLAG_USR_VRFY,
    DEL_REQ_TRACE_FLAGS_MASK, DSN_NOTIFY_DELAY, DSN_NOTIFY_FAILURE, DSN_NOTIFY_NEVER,
    DSN_NOTIFY_SUCCESS, DSN_RET_FULL, DSN_RET_HDRS,
};

#[cfg(test)]
mod tests;
