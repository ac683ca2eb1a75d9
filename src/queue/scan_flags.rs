//! Queue scan flags (QMGR_SCAN_* and QMGR_FLUSH_* in qmgr.h): what a scan request asks of a
//! queue scan, and what a message found by that scan inherits. The trigger bytes clients
//! write (parsed in `master::trigger`) are folded into these.

/// Start a scan now (or restart it when the running one ends).
pub const SCAN_START: u8 = 1 << 0;
/// Ignore the "not before" time stamps (mtime in the future).
pub const SCAN_ALL: u8 = 1 << 1;
/// Revive dead transports and queues at once.
pub const FLUSH_ONCE: u8 = 1 << 2;
/// Ignore defer_transports for the messages of this scan.
pub const FLUSH_DFXP: u8 = 1 << 3;
