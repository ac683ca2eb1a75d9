//! oqmgr: Postfix's old queue manager, oqmgr(8), rebuilt in Rust as a drop-in replacement.
//!
//! The crate mirrors Postfix's separation of concerns, in layers:
//! - [`sched`]: the scheduler, a pure sans-I/O core (events and a `now` in, actions out) with
//!   messages, entries, destination queues, transports, feedback, back-off and the completion
//!   chain, one file per concern of the C daemon's src/oqmgr;
//! - [`daemon`]: the single-threaded mio event loop that owns all I/O and the clock, feeds the
//!   scheduler and carries out its actions (agents, trivial-rewrite, bounce/defer/trace,
//!   queue files, master);
//! - [`proto`]: Postfix's internal IPC protocols as pure codecs over bytes;
//! - [`queue`]: the queue on disk: record framing and the envelope reader (pure over any
//!   `Read + Seek`), queue ids and paths, and the directory operations the daemon uses
//!   (scans, renames, locks, in-place patches);
//! - [`config`]: main.cf parsing, `$name` expansion and the typed parameters oqmgr reads;
//! - [`master`]: the contract with master(8): options, status, flow tokens and triggers
//!   (pure), and the descriptors, process set-up and watchdog (I/O);
//! - [`ctl`]: oqmgrctl(1), the client that asks a running queue manager for its live state
//!   over the status socket and prints it as a table, JSON or Prometheus metrics;
//! - [`maillog`]: log lines as Postfix daemons write them, to syslog or postlogd;
//! - [`slab`] and [`cnum`]: a generational slab, and C's number parsing.
//!
//! Lower layers never import higher ones: `sched`, `queue` and `proto` know nothing of
//! `master` or `daemon`.

#![forbid(unsafe_op_in_unsafe_fn)]

pub mod cnum;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod maillog;
pub mod master;
pub mod proto;
pub mod queue;
pub mod sched;
pub mod slab;
