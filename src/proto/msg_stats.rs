//! `struct MSG_STATS` (global/msg_stats.h) as qmgr hands it to delivery agents in the `time`
//! attribute: the raw x86_64 struct, base64-encoded.
//!
//! Layout (88 bytes, little-endian): five `struct timeval` of two `i64` (seconds,
//! microseconds) at offsets 0, 16, 32, 48, 64; `int reuse_count` at 80; 4 pad bytes at 84.

use std::fmt;

use super::base64::{self, Base64Error};

/// Size of the struct on x86_64; agents reject any other length.
pub const MSG_STATS_SIZE: usize = 88;

/// Length of its base64 form.
pub const MSG_STATS_BASE64_LEN: usize = 120;

/// A `struct timeval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeval {
    pub sec: i64,
    pub usec: i64,
}

impl Timeval {
    pub const ZERO: Timeval = Timeval { sec: 0, usec: 0 };

    pub fn new(sec: i64, usec: i64) -> Self {
        Timeval { sec, usec }
    }
}

/// Per-message delivery time stamps; qmgr fills only the first two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsgStats {
    /// Arrival in the incoming queue (the queue file's `T` record).
    pub incoming_arrival: Timeval,
    /// When the queue manager created the in-memory message.
    pub active_arrival: Timeval,
    pub agent_handoff: Timeval,
    pub conn_setup_done: Timeval,
    pub deliver_done: Timeval,
    pub reuse_count: i32,
}

/// Why bytes are not a MSG_STATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgStatsError {
    /// Decoded length differs from 88 (the agent's `msg_stats_scan` wording).
    SizeMismatch(usize),
    /// The `time` value is not base64.
    Base64(Base64Error),
}

impl fmt::Display for MsgStatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgStatsError::SizeMismatch(len) => {
                write!(
                    f,
                    "msg_stats_scan: size mis-match: {len} != {MSG_STATS_SIZE}"
                )
            }
            MsgStatsError::Base64(err) => write!(f, "msg_stats_scan: {err}"),
        }
    }
}

impl std::error::Error for MsgStatsError {}

impl MsgStats {
    fn timevals(&self) -> [Timeval; 5] {
        [
            self.incoming_arrival,
            self.active_arrival,
            self.agent_handoff,
            self.conn_setup_done,
            self.deliver_done,
        ]
    }

    /// The raw struct bytes (pad bytes zero, as qmgr's zero-initialised struct has them).
    pub fn to_bytes(&self) -> [u8; MSG_STATS_SIZE] {
        let mut out = [0u8; MSG_STATS_SIZE];
        let words = self
            .timevals()
            .into_iter()
            .flat_map(|tv| [tv.sec.to_le_bytes(), tv.usec.to_le_bytes()]);
        let mut slots = out.chunks_exact_mut(8);
        for (slot, word) in (&mut slots).zip(words) {
            slot.copy_from_slice(&word);
        }
        // 80 bytes of timevals, then the 4-byte reuse count; the last 4 stay zero padding.
        let count = self.reuse_count.to_le_bytes();
        for (slot, byte) in out.iter_mut().skip(80).zip(count) {
            *slot = byte;
        }
        out
    }

    /// Decodes the raw struct; pad bytes are ignored, like the agent's memcpy does.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MsgStatsError> {
        let raw: &[u8; MSG_STATS_SIZE] = bytes
            .try_into()
            .map_err(|_| MsgStatsError::SizeMismatch(bytes.len()))?;
        let word = |offset: usize| -> [u8; 8] {
            let mut w = [0u8; 8];
            w.copy_from_slice(&raw[offset..offset + 8]);
            w
        };
        let tv = |offset: usize| Timeval {
            sec: i64::from_le_bytes(word(offset)),
            usec: i64::from_le_bytes(word(offset + 8)),
        };
        let mut reuse = [0u8; 4];
        reuse.copy_from_slice(&raw[80..84]);
        Ok(MsgStats {
            incoming_arrival: tv(0),
            active_arrival: tv(16),
            agent_handoff: tv(32),
            conn_setup_done: tv(48),
            deliver_done: tv(64),
            reuse_count: i32::from_le_bytes(reuse),
        })
    }

    /// The `time` attribute value: base64 of the raw struct (120 ASCII bytes).
    pub fn to_base64(&self) -> String {
        base64::encode(&self.to_bytes())
    }

    /// Parses a `time` attribute value.
    pub fn from_base64(text: &[u8]) -> Result<Self, MsgStatsError> {
        let raw = base64::decode(text).map_err(MsgStatsError::Base64)?;
        Self::from_bytes(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The `time` value of message A in the oqmgr 3.7.11 capture.
    const CAPTURED: &str = "ihcMawAAAAD+mAUAAAAAAIoXDGsAAAAAb70FAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";

    #[test]
    fn decodes_captured_value() {
        let stats = MsgStats::from_base64(CAPTURED.as_bytes()).unwrap();
        assert_eq!(stats.incoming_arrival, Timeval::new(1795954570, 366846));
        assert_eq!(stats.active_arrival, Timeval::new(1795954570, 376175));
        assert_eq!(stats.agent_handoff, Timeval::ZERO);
        assert_eq!(stats.deliver_done, Timeval::ZERO);
        assert_eq!(stats.reuse_count, 0);
        assert_eq!(stats.to_base64(), CAPTURED);
        assert_eq!(CAPTURED.len(), MSG_STATS_BASE64_LEN);
    }

    #[test]
    fn rejects_wrong_size() {
        let err = MsgStats::from_bytes(&[0u8; 87]).unwrap_err();
        assert_eq!(err.to_string(), "msg_stats_scan: size mis-match: 87 != 88");
        assert_eq!(
            MsgStats::from_base64(b"AAAA"),
            Err(MsgStatsError::SizeMismatch(3))
        );
        assert!(matches!(
            MsgStats::from_base64(b"!!!!"),
            Err(MsgStatsError::Base64(_))
        ));
    }

    fn timeval() -> impl Strategy<Value = Timeval> {
        (any::<i64>(), any::<i64>()).prop_map(|(sec, usec)| Timeval { sec, usec })
    }

    proptest! {
        #[test]
        fn round_trips(
            tvs in proptest::array::uniform5(timeval()),
            reuse_count in any::<i32>(),
        ) {
            let [incoming_arrival, active_arrival, agent_handoff, conn_setup_done, deliver_done] = tvs;
            let stats = MsgStats { incoming_arrival, active_arrival, agent_handoff, conn_setup_done, deliver_done, reuse_count };
            let bytes = stats.to_bytes();
            prop_assert_eq!(&bytes[84..], &[0u8; 4]);
            prop_assert_eq!(MsgStats::from_bytes(&bytes), Ok(stats));
            let text = stats.to_base64();
            prop_assert_eq!(text.len(), MSG_STATS_BASE64_LEN);
            prop_assert_eq!(MsgStats::from_base64(text.as_bytes()), Ok(stats));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = MsgStats::from_bytes(&bytes);
            let _ = MsgStats::from_base64(&bytes);
        }
    }
}
