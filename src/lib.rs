//! oqmgr: Postfix's old queue manager, rebuilt in Rust.
//!
//! The crate mirrors Postfix's separation of concerns. This foundation holds the pure codecs:
//! - [`queue`]: queue-file records, the envelope a queue manager reads, queue ids and paths;
//! - [`proto`]: the NUL-terminated attribute protocol spoken on Postfix's internal sockets;
//! - [`config`]: main.cf parsing, `$name` expansion and the typed table of oqmgr's parameters.
//! - [`master`]: the contract with master(8): daemon options, status messages, flow tokens, triggers.
//! - [`maillog`]: log lines as Postfix daemons write them, to syslog or postlogd.
//!
//! None of them does I/O beyond what the caller hands it.

#![forbid(unsafe_op_in_unsafe_fn)]

pub mod cnum;
pub mod config;
pub mod daemon;
pub mod maillog;
pub mod master;
pub mod proto;
pub mod queue;
pub mod sched;
pub mod slab;
