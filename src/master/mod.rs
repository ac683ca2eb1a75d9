//! The contract with master(8): how it starts us (argv, environment), what we tell it on the
//! status socket, the flow-control tokens we hand out, and the trigger requests we accept.
//!
//! `options`, `status`, `flow` and `trigger` are pure; `fds`, `process` and `watchdog` do the
//! I/O on the descriptors master hands us, for the daemon loop; `lookup` asks the account
//! database from a short-lived child, so that its NSS modules never map into the daemon.

pub mod fds;
pub mod flow;
pub mod lookup;
pub mod options;
pub mod process;
pub mod status;
pub mod trigger;
pub mod watchdog;

/// Inherited descriptors, fixed by master(8).
pub const FLOW_READ_FD: i32 = 3;
/// Write end of the flow-control pipe.
pub const FLOW_WRITE_FD: i32 = 4;
/// Our end of the per-service status socketpair; EOF on it means reload or stop.
pub const STATUS_FD: i32 = 5;
/// The first listen descriptor (the `public/qmgr` socket or FIFO).
pub const LISTEN_FD: i32 = 6;
/// At most this many bytes are read per trigger (one read per accepted connection).
pub const TRIGGER_BUF_SIZE: usize = 1024;
