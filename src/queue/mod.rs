//! The queue on disk: record framing, the envelope a queue manager reads, queue ids and paths.

pub mod envelope;
pub mod file;
pub mod id;
pub mod path;
pub mod record;
pub mod scan;
pub mod scan_flags;
