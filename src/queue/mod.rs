//! The queue on disk: record framing, the envelope a queue manager reads, queue ids and paths.

pub mod envelope;
pub mod file;
pub mod id;
pub mod path;
pub mod record;
pub mod scan;
pub mod scan_flags;

// The test-only queue-file builder lives with the integration tests' support code.
#[cfg(test)]
#[path = "../../tests/support/queue_file_builder.rs"]
pub(crate) mod queue_file_builder;
