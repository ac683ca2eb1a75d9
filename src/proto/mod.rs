//! Postfix's internal IPC protocols, as pure codecs over bytes.

pub mod attr;
pub mod base64;
pub mod msg_stats;
