//! Trigger requests: the bytes clients write to `public/qmgr`.
//!
//! `W` (master's wakeup, cleanup) and `I` ask for an incoming scan, `D` for a deferred scan,
//! `A` makes both scans ignore file time stamps, `F` revives dead destinations and ignores
//! defer_transports. Every other byte (the NUL clients append, garbage) is ignored, so a flood
//! of trigger bytes costs one pass over at most 1024 bytes.

use crate::queue::scan_flags::{FLUSH_DFXP, FLUSH_ONCE, SCAN_ALL, SCAN_START};

/// The scan requests one trigger buffer makes, with duplicates collapsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanRequests {
    /// Flags for the incoming scan (0 = untouched).
    pub incoming: u8,
    /// Flags for the deferred scan (0 = untouched).
    pub deferred: u8,
}

/// Folds a trigger buffer into scan requests; order and repetition do not matter.
pub fn parse(buf: &[u8]) -> ScanRequests {
    let mut req = ScanRequests::default();
    for &b in buf {
        match b {
            b'W' | b'I' => req.incoming |= SCAN_START,
            b'D' => req.deferred |= SCAN_START,
            b'F' => {
                req.incoming |= FLUSH_ONCE | FLUSH_DFXP;
                req.deferred |= FLUSH_ONCE | FLUSH_DFXP;
            }
            b'A' => {
                req.incoming |= SCAN_ALL;
                req.deferred |= SCAN_ALL;
            }
            _ => {}
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wakeup_from_cleanup_and_master() {
        assert_eq!(
            parse(b"W\0"),
            ScanRequests {
                incoming: SCAN_START,
                deferred: 0
            }
        );
    }

    #[test]
    fn postqueue_flush_is_fadi() {
        let all = SCAN_START | SCAN_ALL | FLUSH_ONCE | FLUSH_DFXP;
        assert_eq!(
            parse(b"FADI\0"),
            ScanRequests {
                incoming: all,
                deferred: all
            }
        );
    }

    #[test]
    fn unknown_bytes_are_ignored() {
        assert_eq!(parse(b"\0xyz\xff"), ScanRequests::default());
        assert_eq!(parse(b""), ScanRequests::default());
    }

    proptest! {
        #[test]
        fn order_and_repetition_do_not_matter(mut buf in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let a = parse(&buf);
            buf.reverse();
            let mut doubled = buf.clone();
            doubled.extend_from_slice(&buf);
            prop_assert_eq!(a, parse(&buf));
            prop_assert_eq!(a, parse(&doubled));
        }
    }
}
