//! Destination queues (qmgr_queue.c): the per-destination window, its throttling and
//! revival, and the dead queues that make up the destination status cache.

use std::collections::VecDeque;

use crate::config::transport::TransportParams;
use crate::proto::dsn::Dsn;

use super::feedback::WindowState;
use super::*;

#[derive(Debug)]
pub(super) struct DestQueue {
    /// Lower-cased nexthop (or `user@nexthop` for recipient-limit-1 transports).
    pub(super) name: Vec<u8>,
    pub(super) nexthop: Vec<u8>,
    pub(super) transport: TransportRef,
    /// `window > 0` ready, 0 dead (throttled), -1 suspended (rate delay).
    pub(super) state: WindowState,
    pub(super) todo: VecDeque<EntryRef>,
    pub(super) busy: u32,
    /// Why it is dead.
    pub(super) dsn: Option<Dsn>,
    pub(super) last_done: u64,
    /// Connection-cache request bits (CONN_LOAD | CONN_STORE).
    pub(super) dflags: u32,
    pub(super) clog_time_to_warn: u64,
    pub(super) timer_seq: u32,
    /// When its revival or resume timer fires (meaningful while dead or suspended).
    pub(super) wake_at: u64,
}

pub(super) const SUSPENDED: i32 = -1;

impl DestQueue {
    pub(super) fn ready(&self) -> bool {
        self.state.window > 0
    }
    pub(super) fn dead(&self) -> bool {
        self.state.window == 0
    }
    pub(super) fn empty(&self) -> bool {
        self.todo.is_empty() && self.busy == 0
    }
}

impl Scheduler {
    pub(super) fn queue_find_or_create(
        &mut self,
        t: TransportRef,
        name: &[u8],
        nexthop: &[u8],
    ) -> DestRef {
        if let Some(&q) = self.transports.get(t.0).and_then(|x| x.by_name.get(name)) {
            return q;
        }
        let initial = self
            .transports
            .get(t.0)
            .map_or(1, |x| x.limits.init_dest_concurrency.max(1));
        let q = DestRef(self.queues.insert(DestQueue {
            name: name.to_vec(),
            nexthop: nexthop.to_vec(),
            transport: t,
            state: WindowState::new(initial),
            todo: VecDeque::new(),
            busy: 0,
            dsn: None,
            last_done: 0,
            dflags: 0,
            clog_time_to_warn: 0,
            timer_seq: 0,
            wake_at: 0,
        }));
        if let Some(x) = self.transports.get_mut(t.0) {
            // New queues go to the end of the round-robin order, as the C daemon does.
            x.queues.push_back(q);
            x.by_name.insert(name.to_vec(), q);
        }
        self.apply_window_hint(q);
        q
    }

    /// The parameters of a queue's transport.
    fn queue_limits(&self, q: DestRef) -> Option<TransportParams> {
        let queue = self.queues.get(q.0)?;
        Some(self.transports.get(queue.transport.0)?.limits.clone())
    }

    /// A delivery without hop trouble: revive a dead destination or grow its window (the
    /// C daemon's qmgr_queue_unthrottle).
    pub(super) fn queue_positive(&mut self, q: DestRef) {
        let Some(limits) = self.queue_limits(q) else {
            return;
        };
        if self.queues.get(q.0).is_some_and(DestQueue::dead) {
            self.queue_revive(q);
            return;
        }
        let mut feedback = None;
        if let Some(queue) = self.queues.get_mut(q.0) {
            if !queue.ready() {
                return;
            }
            let busy = queue.busy as i32;
            feedback = queue.state.positive(
                limits.positive_feedback,
                limits.dest_concurrency_limit,
                limits.init_dest_concurrency,
                busy,
            );
        }
        const MYNAME: &str = "qmgr_queue_unthrottle";
        if let Some(feedback) = feedback {
            self.log_feedback(q, MYNAME, feedback);
        }
        self.log_window(q, MYNAME);
    }

    /// QMGR_LOG_FEEDBACK: with destination_concurrency_feedback_debug, the feedback a window
    /// change used (not for the error and retry transports).
    pub(super) fn log_feedback(&mut self, q: DestRef, myname: &str, feedback: f64) {
        if self.feedback_debug_for(q) {
            self.actions.push(Action::Info(format!(
                "{myname}: feedback {}",
                crate::config::transport::format_g(feedback)
            )));
        }
    }

    /// QMGR_LOG_WINDOW: with destination_concurrency_feedback_debug, a destination's window
    /// after a change (not for the error and retry transports).
    pub(super) fn log_window(&mut self, q: DestRef, myname: &str) {
        if !self.feedback_debug_for(q) {
            return;
        }
        let Some(queue) = self.queues.get(q.0) else {
            return;
        };
        let limit = self
            .transports
            .get(queue.transport.0)
            .map_or(0, |t| t.limits.dest_concurrency_limit);
        let g = crate::config::transport::format_g;
        let line = format!(
            "{myname}: queue {}: limit {limit} window {} success {} failure {} fail_cohorts {}",
            String::from_utf8_lossy(&queue.name),
            queue.state.window,
            g(queue.state.success),
            g(queue.state.failure),
            g(queue.state.fail_cohorts)
        );
        self.actions.push(Action::Info(line));
    }

    pub(super) fn feedback_debug_for(&self, q: DestRef) -> bool {
        self.cfg.feedback_debug
            && self
                .queues
                .get(q.0)
                .and_then(|queue| self.transports.get(queue.transport.0))
                .is_some_and(|t| t.name != SERVICE_RETRY && t.name != SERVICE_ERROR)
    }

    /// A delivery that reported a hop problem: shrink the window or declare the destination
    /// dead (the C daemon's qmgr_queue_throttle).
    pub(super) fn queue_throttle(&mut self, now: u64, q: DestRef, dsn: &Dsn) {
        let Some(limits) = self.queue_limits(q) else {
            return;
        };
        let min_backoff = self.cfg.min_backoff;
        let Some(queue) = self.queues.get_mut(q.0) else {
            return;
        };
        let was_ready = queue.ready();
        let feedback = limits.negative_feedback.value(queue.state.window.max(1));
        let dead = queue
            .state
            .negative(limits.negative_feedback, limits.failed_cohort_limit);
        if dead {
            self.queue_dead_until(q, dsn.clone(), now + min_backoff);
        }
        const MYNAME: &str = "qmgr_queue_throttle";
        if was_ready && !dead {
            self.log_feedback(q, MYNAME, feedback);
        }
        self.log_window(q, MYNAME);
    }

    /// Revives a dead destination (timer, `F` trigger, a good delivery, FLUSH_EACH).
    pub(super) fn queue_revive(&mut self, q: DestRef) {
        let Some(queue) = self.queues.get(q.0) else {
            return;
        };
        if !queue.dead() {
            return;
        }
        let initial = self
            .transports
            .get(queue.transport.0)
            .map_or(1, |t| t.limits.init_dest_concurrency.max(1));
        if let Some(queue) = self.queues.get_mut(q.0) {
            let busy = queue.busy as i32;
            queue.state.revive(busy, initial);
            queue.dsn = None;
            queue.timer_seq = queue.timer_seq.wrapping_add(1);
        }
        self.log_window(q, "qmgr_queue_unthrottle");
    }

    /// A destination whose window is down to 0 is dead until `until`, when its revival
    /// timer fires (the dead half of qmgr_queue_throttle; also a remembered death).
    pub(super) fn queue_dead_until(&mut self, q: DestRef, dsn: Dsn, until: u64) {
        let Some(queue) = self.queues.get_mut(q.0) else {
            return;
        };
        queue.state.window = 0;
        queue.dsn = Some(dsn);
        queue.dflags = 0;
        queue.timer_seq = queue.timer_seq.wrapping_add(1);
        queue.wake_at = until;
        let timer = Timer::ReviveQueue(q, queue.timer_seq);
        self.deadlines.arm(until, timer);
    }

    /// A ready destination is suspended until `until` (qmgr_queue_suspend: the rate delay).
    pub(super) fn queue_suspend_until(&mut self, q: DestRef, until: u64) {
        let Some(queue) = self.queues.get_mut(q.0) else {
            return;
        };
        if !queue.ready() {
            return;
        }
        queue.state.window = SUSPENDED;
        queue.timer_seq = queue.timer_seq.wrapping_add(1);
        queue.wake_at = until;
        let timer = Timer::ResumeQueue(q, queue.timer_seq);
        self.deadlines.arm(until, timer);
    }

    /// A ready, empty destination is forgotten; dead ones stay as the status cache.
    pub(super) fn queue_maybe_done(&mut self, q: DestRef) {
        let Some(queue) = self.queues.get(q.0) else {
            return;
        };
        if !(queue.ready() && queue.empty()) {
            return;
        }
        let t = queue.transport;
        if let Some(queue) = self.queues.remove(q.0) {
            if let Some(x) = self.transports.get_mut(t.0) {
                x.queues.retain(|r| *r != q);
                x.by_name.remove(&queue.name);
            }
        }
    }
}
