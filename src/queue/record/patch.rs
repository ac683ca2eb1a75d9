//! The in-place updates qmgr makes to a queue file.

use super::framing::encode_record;
use super::values::format_long15;
use super::RecordType;

/// Bytes to write at an offset of a queue file (qmgr's in-place updates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

impl Patch {
    /// Mark a recipient done: `D` over the `R` type byte at the recipient's offset.
    pub fn mark_recipient_done(rcpt_offset: u64) -> Self {
        Self {
            offset: rcpt_offset,
            bytes: vec![RecordType::DONE.0],
        }
    }

    /// Kill a record (the trace_flags attribute): `K` over its type byte.
    pub fn kill_record(offset: u64) -> Self {
        Self {
            offset,
            bytes: vec![RecordType::KILL.0],
        }
    }

    /// Delay warning sent: the whole `W` record rewritten with -1 (17 bytes).
    pub fn delay_warning_sent(warn_offset: u64) -> Self {
        Self {
            offset: warn_offset,
            bytes: encode_record(RecordType::WARN.0, format_long15(-1).as_bytes()),
        }
    }

    /// Apply to an in-memory image (tests, fixtures). Out-of-range parts are ignored.
    pub fn apply_to(&self, image: &mut [u8]) {
        let Ok(start) = usize::try_from(self.offset) else {
            return;
        };
        for (i, &b) in self.bytes.iter().enumerate() {
            if let Some(slot) = start.checked_add(i).and_then(|j| image.get_mut(j)) {
                *slot = b;
            }
        }
    }
}
