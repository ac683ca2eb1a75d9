//! What happens to a message when its last delivery is done: the C daemon's qmgr_active.c
//! chain, qmgr_active_done → _2_generic → _25_trace_flush → _3_generic, as a state machine
//! of the scheduler. Each step that needs the outside world ends in an [`Action`] (is there
//! a bounce log? is the file still usable? ask bounce/defer/trace for a notice, read the
//! next batch) and the chain goes on when the event loop reports the result; it ends in
//! [`Action::Remove`], [`Action::MoveToDeferred`] or [`Action::Corrupt`], with the message
//! forgotten.
//!
//! | step | ours | C |
//! |---|---|---|
//! | last entry done, nothing being read or routed | `Scheduler::maybe_done` | qmgr_entry_done → qmgr_active_done |
//! | bounce log? then bounce(8) flush or VERP | [`Scheduler::bounce_log_checked`] | qmgr_active_done |
//! | deferred: file still usable? | [`Scheduler::queue_file_checked`] | qmgr_active_done_2_generic (mail_open_ok) |
//! | more recipients in the file: next batch | [`Scheduler::batch_read`] | qmgr_active_done_2_generic (qmgr_message_realloc) |
//! | success notices / delivery record: trace(8) flush | [`Scheduler::notice_done`] | qmgr_active_done_25_trace_flush |
//! | deferred: expire (defer(8) flush) or delay warning (defer(8) warn) | `active_done_3` | qmgr_active_done_3_defer_flush / _defer_warn |
//! | unlink, or to deferred/ with the back-off time | `active_done_finish` | qmgr_active_done_3_generic |

use crate::proto::bounce::{bounce_flags, BounceCommand, FlushRequest};
use crate::proto::deliver::request_flags;
use crate::queue::path::ACTIVE;
use crate::queue::record::Patch;

use super::random::SplitMix64;
use super::*;

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

/// qmgr_active_done_3_generic's expiry test: a deferred message is returned when
/// `postsuper -e` asked for it, or when it has been in the
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

/// qmgr_active_done_3_generic's delay-warning test: due from one second before the `W`
/// time (0 or -1: none or sent).
pub fn warning_due(now: u64, warn_time: Option<i64>) -> bool {
    matches!(warn_time, Some(w) if w > 0 && now as i128 >= w as i128 - 1)
}

/// qmgr_active_done_2_generic's trace test: success notices or a delivery record were
/// asked for, so the trace log is flushed.
pub fn wants_trace_flush(trace_flags: i32, size_qmgr_flags: i32) -> bool {
    let wanted = request_flags::USR_VRFY | request_flags::RECORD | request_flags::REC_DLY_SENT;
    trace_flags as u32 & wanted != 0 || size_qmgr_flags & NOTIFY_SUCCESS != 0
}

/// qmgr_active_done_3_generic's back-off (applied by qmgr_active_defer): the "not before"
/// time of a deferred message: its age, between the minimal and maximal back-off times, from
/// now (so the interval roughly doubles per attempt), spread by oqmgr_backoff_jitter.
pub fn deferred_until(
    now: u64,
    create_time: i64,
    l: &Lifetimes,
    jitter: u32,
    random: &mut SplitMix64,
) -> u64 {
    now + jittered_delay(backoff_delay(now, create_time, l), jitter, l, random)
}

/// The back-off delay of [`deferred_until`]: the message's age (minimal_backoff_time
/// without a creation time), at most maximal_backoff_time, at least minimal_backoff_time
/// (the minimum wins if the two are crossed, as in the C daemon).
pub fn backoff_delay(now: u64, create_time: i64, l: &Lifetimes) -> u64 {
    if create_time > 0 {
        let age = (now as i128 - create_time as i128).max(0) as u64;
        age.min(l.max_backoff).max(l.min_backoff)
    } else {
        l.min_backoff
    }
}

/// oqmgr_backoff_jitter: `delay` times (1 + u × percent / 100), u uniform in [-1, 1] (in
/// whole seconds: uniform over delay ± delay × percent / 100), then clamped again to
/// minimal_backoff_time..maximal_backoff_time: the administrator's limits hold, so mail
/// backed off by exactly one of them is only moved away from it (young mail's 300 s is only
/// stretched, old mail's 4000 s only shrunk). Deferrals made together then come due spread
/// out instead of as one wave. Percent 0 draws nothing and returns `delay` unchanged.
pub fn jittered_delay(delay: u64, percent: u32, l: &Lifetimes, random: &mut SplitMix64) -> u64 {
    if percent == 0 {
        return delay;
    }
    let span = delay.saturating_mul(u64::from(percent)) / 100;
    let stretched = (delay - span.min(delay)).saturating_add(random.below(2 * span + 1));
    stretched.min(l.max_backoff).max(l.min_backoff)
}

/// The completion step waiting for the event loop's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// [`Action::CheckBounceLog`].
    BounceLog,
    /// bounce(8) flush or VERP.
    Bounce,
    /// [`Action::CheckQueueFile`].
    QueueFile,
    /// [`Action::ReadRecipients`] from the completion.
    Batch,
    /// trace(8) flush.
    Trace,
    /// defer(8) flush of an expired message.
    Expire,
    /// defer(8) delay warning.
    Warn,
}

impl Scheduler {
    /// The completion starts once the message has no entries left and no batch is being read
    /// or routed (qmgr_entry_done's `refcount == 0` test).
    pub(super) fn maybe_done(&mut self, _now: u64, m: MessageRef) {
        let Some(msg) = self.messages.get_mut(m.0) else {
            return;
        };
        if msg.refcount > 0 || msg.routing || msg.reading || msg.completion.is_some() {
            return;
        }
        // qmgr_active_done: a bounce log means non-delivery notices are due.
        msg.completion = Some(Step::BounceLog);
        self.actions.push(Action::CheckBounceLog {
            message: m,
            queue_id: msg.queue_id.to_vec(),
        });
    }

    /// A message read as expired with a defer log (`postsuper -e/-f`): no deliveries, its
    /// completion returns it at once (qmgr_message_alloc's QMGR_FORCE_EXPIRE shortcut).
    pub fn expire_now(&mut self, now: u64, m: MessageRef) {
        let Some(msg) = self.messages.get_mut(m.0) else {
            return;
        };
        msg.deferred = true;
        msg.routing = false;
        msg.envelope.resume_offset = None;
        self.maybe_done(now, m);
    }

    /// The answer to [`Action::CheckBounceLog`] (qmgr_active_done).
    pub fn bounce_log_checked(&mut self, now: u64, m: MessageRef, present: bool) {
        if !self.step_is(m, Step::BounceLog) {
            return;
        }
        if present {
            self.notify(m, Step::Bounce);
        } else {
            self.active_done_2(now, m);
        }
    }

    /// The answer to [`Action::CheckQueueFile`] (mail_open_ok's verdict): an unusable file
    /// goes to corrupt/.
    pub fn queue_file_checked(&mut self, now: u64, m: MessageRef, usable: bool) {
        if !self.step_is(m, Step::QueueFile) {
            return;
        }
        if usable {
            self.active_done_2_batch(now, m);
        } else {
            self.corrupt(m);
        }
    }

    /// The status of a [`Action::Notify`] request (0: done, anything else: failed).
    pub fn notice_done(&mut self, now: u64, m: MessageRef, status: i32) {
        let Some(step) = self.messages.get(m.0).and_then(|x| x.completion) else {
            debug_assert!(false, "notice_done without a notice out");
            return;
        };
        let Some(msg) = self.messages.get_mut(m.0) else {
            return;
        };
        if status != 0 {
            let what = notice_what(
                step,
                msg.single_recipient() && !self.cfg.disable_verp_bounces,
            );
            self.actions.push(Action::Info(format!(
                "{}: status=deferred ({what} failed)",
                String::from_utf8_lossy(&msg.queue_id)
            )));
        }
        match step {
            // qmgr_active_done_2_bounce_flush.
            Step::Bounce => {
                msg.deferred |= status != 0;
                self.active_done_2(now, m);
            }
            // qmgr_active_done_25_trace_flush: the trace record is not wanted again.
            Step::Trace => {
                msg.deferred |= status != 0;
                if status == 0 {
                    if let Some(offset) = msg.envelope.trace_flags_offset {
                        let queue_id = msg.queue_id.to_vec();
                        self.actions.push(Action::Patch {
                            queue_id,
                            patch: Patch::kill_record(offset),
                        });
                    }
                }
                self.active_done_3(now, m);
            }
            // qmgr_active_done_3_defer_flush: returned, unless the return failed.
            Step::Expire => {
                msg.deferred = status != 0;
                self.active_done_finish(now, m);
            }
            // qmgr_active_done_3_defer_warn: the warning is marked sent in the file.
            Step::Warn => {
                if status == 0 {
                    if let Some(w) = msg.envelope.warn.take() {
                        let queue_id = msg.queue_id.to_vec();
                        self.actions.push(Action::Patch {
                            queue_id,
                            patch: Patch::delay_warning_sent(w.offset),
                        });
                    }
                }
                self.active_done_finish(now, m);
            }
            Step::BounceLog | Step::QueueFile | Step::Batch => {
                debug_assert!(false, "notice_done while waiting for {step:?}");
            }
        }
    }

    fn step_is(&self, m: MessageRef, step: Step) -> bool {
        let now = self.messages.get(m.0).and_then(|x| x.completion);
        debug_assert_eq!(now, Some(step), "completion result out of turn");
        now == Some(step)
    }

    /// qmgr_active_done_2_generic: a deferred file is checked first (an agent may have
    /// marked it corrupt).
    fn active_done_2(&mut self, now: u64, m: MessageRef) {
        let Some(msg) = self.messages.get_mut(m.0) else {
            return;
        };
        if msg.deferred {
            msg.completion = Some(Step::QueueFile);
            self.actions.push(Action::CheckQueueFile {
                message: m,
                queue_id: msg.queue_id.to_vec(),
            });
            return;
        }
        self.active_done_2_batch(now, m);
    }

    /// qmgr_active_done_2_generic, continued: more recipients in the file are read now
    /// (their deliveries run, then the chain starts again); else the trace flush.
    fn active_done_2_batch(&mut self, now: u64, m: MessageRef) {
        let Some(msg) = self.messages.get_mut(m.0) else {
            return;
        };
        if msg.envelope.resume_offset.is_some() {
            msg.completion = Some(Step::Batch);
            self.read_batch(m);
            return;
        }
        if wants_trace_flush(msg.envelope.trace_flags, msg.envelope.size.qmgr_flags) {
            self.notify(m, Step::Trace);
            return;
        }
        self.active_done_3(now, m);
    }

    /// qmgr_active_done_3_generic's decision for deferred mail: return it when too old, or
    /// send the delay warning when due.
    fn active_done_3(&mut self, now: u64, m: MessageRef) {
        let Some(msg) = self.messages.get(m.0) else {
            return;
        };
        if msg.deferred {
            let env = &msg.envelope;
            let force = msg.qflags & message_flags::FORCE_EXPIRE != 0;
            match expiry(
                now,
                env.create_time,
                env.sender.is_empty(),
                force,
                &self.cfg.lifetimes,
            ) {
                Expiry::Expired(status) => {
                    let line = format!(
                        "{}: from=<{}>, status={status}, returned to sender",
                        String::from_utf8_lossy(&msg.queue_id),
                        self.log_address(&env.sender)
                    );
                    self.actions.push(Action::Info(line));
                    self.notify(m, Step::Expire);
                    return;
                }
                Expiry::Young => {
                    if warning_due(now, env.warn.map(|w| w.time)) {
                        self.notify(m, Step::Warn);
                        return;
                    }
                }
            }
        }
        self.active_done_finish(now, m);
    }

    /// qmgr_active_done_3_generic's end: unlink, or back to deferred/ until the back-off
    /// time; the message is forgotten (qmgr_message_free).
    fn active_done_finish(&mut self, now: u64, m: MessageRef) {
        let Some(msg) = self.remove_message(m) else {
            return;
        };
        let action = if msg.deferred {
            let until = deferred_until(
                now,
                msg.envelope.create_time,
                &self.cfg.lifetimes,
                self.cfg.backoff_jitter,
                &mut self.random,
            );
            Action::MoveToDeferred {
                queue_id: msg.queue_id.into_vec(),
                until,
            }
        } else {
            Action::Remove {
                queue_id: msg.queue_id.into_vec(),
            }
        };
        self.actions.push(action);
    }

    /// qmgr_active_corrupt: the file goes to corrupt/ and the message is forgotten.
    pub(super) fn corrupt(&mut self, m: MessageRef) {
        if let Some(msg) = self.remove_message(m) {
            self.actions.push(Action::Corrupt {
                queue_id: msg.queue_id.into_vec(),
            });
        }
    }

    /// Asks for the notice of `step` (abounce_flush, abounce_flush_verp, atrace_flush,
    /// adefer_flush, adefer_warn).
    fn notify(&mut self, m: MessageRef, step: Step) {
        let Some(msg) = self.messages.get_mut(m.0) else {
            return;
        };
        msg.completion = Some(step);
        let env = &msg.envelope;
        let verp = env
            .verp_delimiters()
            .map(<[u8]>::to_vec)
            .filter(|_| !self.cfg.disable_verp_bounces);
        let flush = if verp.is_some() {
            BounceCommand::Verp
        } else {
            BounceCommand::Flush
        };
        let (service, command, flags) = match step {
            Step::Bounce => (NoticeService::Bounce, flush, bounce_flags::KEEP),
            Step::Trace => (
                NoticeService::Trace,
                BounceCommand::Trace,
                env.trace_flags as u32,
            ),
            Step::Expire => (NoticeService::Defer, flush, bounce_flags::DELRCPT),
            Step::Warn => (
                NoticeService::Defer,
                BounceCommand::Warn,
                bounce_flags::KEEP,
            ),
            Step::BounceLog | Step::QueueFile | Step::Batch => return,
        };
        let request = FlushRequest {
            command,
            flags,
            queue_name: ACTIVE.as_bytes().to_vec(),
            queue_id: msg.queue_id.to_vec(),
            encoding: env.attrs.encoding().to_vec(),
            smtputf8: env.smtputf8 as u32,
            sender: env.sender.to_vec(),
            envelope_id: env.attrs.dsn_envid().to_vec(),
            ret_flags: env.dsn_ret as u32,
            verp_delimiters: if command == BounceCommand::Verp {
                verp
            } else {
                None
            },
        };
        self.actions.push(Action::Notify {
            message: m,
            service,
            request: Box::new(request),
        });
    }

    /// An address as log lines show it: quoted per info_log_address_format (an empty
    /// address stays empty, as in `from=<>`).
    fn log_address(&self, addr: &[u8]) -> String {
        if addr.is_empty() || self.cfg.log_address_internal {
            String::from_utf8_lossy(addr).into_owned()
        } else {
            String::from_utf8_lossy(&crate::proto::address::quote_822_local(addr)).into_owned()
        }
    }
}

/// How the `status=deferred (... failed)` line of qmgr_active_done_2_bounce_flush,
/// _25_trace_flush, _3_defer_flush and _3_defer_warn names a request.
fn notice_what(step: Step, verp: bool) -> &'static str {
    match step {
        Step::Bounce | Step::Expire if verp => "verp",
        Step::Bounce | Step::Expire => "bounce",
        Step::Trace => "trace",
        Step::Warn => "delay warning",
        Step::BounceLog | Step::QueueFile | Step::Batch => "",
    }
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
            deferred_until(1000, 990, &L, 0, &mut SplitMix64::new(0)),
            1300,
            "young: minimal_backoff_time"
        );
        assert_eq!(
            deferred_until(10_000, 8_000, &L, 0, &mut SplitMix64::new(0)),
            12_000,
            "age 2000 s"
        );
        assert_eq!(
            deferred_until(100_000, 1, &L, 0, &mut SplitMix64::new(0)),
            104_000,
            "old: maximal_backoff_time"
        );
        assert_eq!(
            deferred_until(1000, 0, &L, 0, &mut SplitMix64::new(0)),
            1300,
            "no create_time"
        );
    }

    #[test]
    fn no_jitter_is_the_c_formula_and_draws_nothing() {
        let mut random = SplitMix64::new(5);
        for delay in [300, 301, 2000, 3999, 4000] {
            assert_eq!(jittered_delay(delay, 0, &L, &mut random), delay);
        }
        assert_eq!(
            random,
            SplitMix64::new(5),
            "the generator was not consulted"
        );
    }

    #[test]
    fn jitter_stays_within_its_percent_and_the_limits() {
        let mut random = SplitMix64::new(11);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..10_000 {
            let d = jittered_delay(1000, 50, &L, &mut random);
            assert!((500..=1500).contains(&d), "{d}");
            seen.insert(d);
        }
        // Every second of the span is reachable, its ends included.
        assert!(seen.contains(&500) && seen.contains(&1500));
        assert!(seen.len() > 900, "{}", seen.len());
        // Clamped: the minimum is only stretched, the maximum only shrunk.
        for _ in 0..1000 {
            let young = jittered_delay(300, 50, &L, &mut random);
            assert!((300..=450).contains(&young), "{young}");
            let old = jittered_delay(4000, 50, &L, &mut random);
            assert!((2000..=4000).contains(&old), "{old}");
        }
        // Crossed limits: the minimum wins, as in backoff_delay.
        let crossed = Lifetimes {
            min_backoff: 500,
            max_backoff: 100,
            ..L
        };
        assert_eq!(backoff_delay(1000, 1, &crossed), 500);
        assert_eq!(jittered_delay(500, 50, &crossed, &mut random), 500);
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
