//! Postfix's internal IPC protocols, as pure codecs over bytes.
//!
//! [`attr`] is the framing; the other modules are the typed messages qmgr exchanges with
//! trivial-rewrite, delivery agents, bounce/defer/trace, verify, flush and proxymap.

pub mod address;
pub mod attr;
pub mod base64;
pub mod bounce;
pub mod deliver;
pub mod dsn;
pub mod flush;
pub mod msg_stats;
pub mod protocol;
pub mod proxymap;
pub mod recipient;
pub mod rewrite;
pub mod status;
pub mod verify;
