//! What happens to a message when its last delivery is done: the decisions of Postfix's
//! qmgr_active_done chain, as pure functions of the message and the clock. The event loop runs
//! the steps (bounce flush, trace flush, defer flush or delay warning, then unlink or defer).

use crate::proto::deliver::request_flags;

/// Size-record flag: some recipient asked for NOTIFY=SUCCESS.
const NOTIFY_SUCCESS: i32 = 0x4;

/// The time limits of the completion chain, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// maximal_queue_lifetime.
    pub max_queue_lifetime: u64,
    /// bounce_queue_lifetime (for mail with the null sender).
    pub bounce_queue_lifetime: u64,
    /// minimal_backoff_time.
    pub min_backoff: u64,
    /// maximal_backoff_time.
    pub max_backoff: u64,
}

impl Lifetimes {
    pub fn from_params(p: &crate::config::Params) -> Lifetimes {
        let secs = |v: i32| u64::try_from(v).unwrap_or(0);
        Lifetimes {
            max_queue_lifetime: secs(p.maximal_queue_lifetime),
            bounce_queue_lifetime: secs(p.bounce_queue_lifetime),
            min_backoff: secs(p.minimal_backoff_time),
            max_backoff: secs(p.maximal_backoff_time),
        }
    }
}

/// How a deferred message ends its stay in the active queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Too old: return it to the sender (`status=expired` / `force-expired`).
    Expired(&'static str),
    /// Still young: maybe a delay warning, then back to deferred/.
    Young,
}

/// A deferred message is returned when `postsuper -e` asked for it, or when it has been in the
/// queue longer than maximal_queue_lifetime (bounce_queue_lifetime for bounces).
pub fn expiry(
    now: u64,
    create_time: i64,
    sender_empty: bool,
    force_expire: bool,
    l: &Lifetimes,
) -> Expiry {
    if force_expire {
        return Expiry::Expired("force-expired");
    }
    let lifetime = if sender_empty {
        l.bounce_queue_lifetime
    } else {
        l.max_queue_lifetime
    };
    if now as i128 >= create_time as i128 + lifetime as i128 {
        Expiry::Expired("expired")
    } else {
        Expiry::Young
    }
}

/// The delay warning is due from one second before the `W` time (0 or -1: none or sent).
pub fn warning_due(now: u64, warn_time: Option<i64>) -> bool {
    matches!(warn_time, Some(w) if w > 0 && now as i128 >= w as i128 - 1)
}

/// Success notices or a delivery record were asked for: flush the trace log.
pub fn wants_trace_flush(trace_flags: i32, size_qmgr_flags: i32) -> bool {
    let wanted = request_flags::USR_VRFY | request_flags::RECORD | request_flags::REC_DLY_SENT;
    trace_flags as u32 & wanted != 0 || size_qmgr_flags & NOTIFY_SUCCESS != 0
}

/// The "not before" time of a deferred message: its age, between the minimal and maximal
/// back-off times, from now (so the interval roughly doubles per attempt).
pub fn deferred_until(now: u64, create_time: i64, l: &Lifetimes) -> u64 {
    let delay = if create_time > 0 {
        let age = (now as i128 - create_time as i128).max(0) as u64;
        age.min(l.max_backoff).max(l.min_backoff)
    } else {
        l.min_backoff
    };
    now + delay
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Lifetimes = Lifetimes {
        max_queue_lifetime: 5 * 86400,
        bounce_queue_lifetime: 86400,
        min_backoff: 300,
        max_backoff: 4000,
    };

    #[test]
    fn backoff_grows_with_age_between_the_bounds() {
        assert_eq!(
            deferred_until(1000, 990, &L),
            1300,
            "young: minimal_backoff_time"
        );
        assert_eq!(deferred_until(10_000, 8_000, &L), 12_000, "age 2000 s");
        assert_eq!(
            deferred_until(100_000, 1, &L),
            104_000,
            "old: maximal_backoff_time"
        );
        assert_eq!(deferred_until(1000, 0, &L), 1300, "no create_time");
    }

    #[test]
    fn expiry_uses_the_sender_kind() {
        let t0 = 1_000_000;
        assert_eq!(
            expiry(t0 + 86399, t0 as i64, true, false, &L),
            Expiry::Young
        );
        assert_eq!(
            expiry(t0 + 86400, t0 as i64, true, false, &L),
            Expiry::Expired("expired")
        );
        assert_eq!(
            expiry(t0 + 86400, t0 as i64, false, false, &L),
            Expiry::Young
        );
        assert_eq!(
            expiry(t0, t0 as i64, false, true, &L),
            Expiry::Expired("force-expired")
        );
    }

    #[test]
    fn delay_warning_is_due_a_second_early_and_only_once() {
        assert!(!warning_due(98, Some(100)));
        assert!(warning_due(99, Some(100)));
        assert!(!warning_due(1000, Some(-1)));
        assert!(!warning_due(1000, None));
    }

    #[test]
    fn trace_flush_for_success_notices_and_records() {
        assert!(!wants_trace_flush(0, 0));
        assert!(wants_trace_flush(0, NOTIFY_SUCCESS));
        assert!(wants_trace_flush(0x400, 0));
        assert!(
            !wants_trace_flush(0x100, 0x8),
            "verify probe, NOTIFY=FAILURE"
        );
    }
}
