//! The scheduler's own deadlines, and what happens when they pass: dead transports and
//! destinations come back to life, rate-delayed destinations resume (the C daemon's
//! qmgr_enable.c and the event_request_timer calls of qmgr_queue.c and qmgr_transport.c).
//!
//! As in quinn-proto, the core keeps its timers itself: the event loop asks
//! [`Scheduler::poll_timeout`] when to wake it and calls [`Scheduler::handle_timeout`] then.
//! A timer whose object was freed, revived early or re-armed is stale: it carries the
//! sequence number its object had when it was armed and is dropped when it surfaces.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::*;

/// What a deadline is for; the `u32` is the object's `timer_seq` when it was armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// transport_retry_time after a transport died (qmgr_transport_throttle's timer).
    ReviveTransport(TransportRef, u32),
    /// minimal_backoff_time after a destination died (qmgr_queue_throttle's timer).
    ReviveQueue(DestRef, u32),
    /// destination_rate_delay after a delivery on a rate-limited destination
    /// (qmgr_queue_suspend's timer).
    ResumeQueue(DestRef, u32),
    /// minimal_backoff_time after an import of remembered state: windows not taken up by
    /// then are forgotten.
    ForgetWindowHints,
}

/// Pending deadlines, earliest first; ties in the order they were armed.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    heap: BinaryHeap<Reverse<(u64, u64, Timer)>>,
    armed: u64,
}

impl Deadlines {
    pub(super) fn arm(&mut self, at: u64, timer: Timer) {
        self.armed += 1;
        self.heap.push(Reverse((at, self.armed, timer)));
    }

    /// Whether `timer` is pending (for the invariants).
    pub(super) fn holds(&self, timer: Timer) -> bool {
        self.heap.iter().any(|Reverse((_, _, t))| *t == timer)
    }
}

impl Scheduler {
    /// When [`Scheduler::handle_timeout`] must next be called (seconds, as `now`); `None`:
    /// no deadline is pending.
    pub fn poll_timeout(&mut self) -> Option<u64> {
        while let Some(Reverse((at, _, timer))) = self.deadlines.heap.peek() {
            if self.timer_live(*timer) {
                return Some(*at);
            }
            self.deadlines.heap.pop();
        }
        None
    }

    /// Fires every deadline due at `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        while let Some(Reverse((at, _, timer))) = self.deadlines.heap.peek() {
            if *at > now {
                break;
            }
            let timer = *timer;
            self.deadlines.heap.pop();
            self.fire(timer);
        }
    }

    /// Whether a timer still stands for its object's current state.
    fn timer_live(&self, timer: Timer) -> bool {
        match timer {
            Timer::ReviveTransport(t, seq) => self
                .transports
                .get(t.0)
                .is_some_and(|x| x.timer_seq == seq && x.dead),
            Timer::ReviveQueue(q, seq) => self
                .queues
                .get(q.0)
                .is_some_and(|x| x.timer_seq == seq && x.dead()),
            Timer::ResumeQueue(q, seq) => self
                .queues
                .get(q.0)
                .is_some_and(|x| x.timer_seq == seq && x.state.window == SUSPENDED),
            Timer::ForgetWindowHints => !self.window_hints.by_queue.is_empty(),
        }
    }

    fn fire(&mut self, timer: Timer) {
        if !self.timer_live(timer) {
            return;
        }
        match timer {
            // qmgr_transport_unthrottle_wrapper.
            Timer::ReviveTransport(t, _) => self.transport_revive(t),
            // qmgr_queue_unthrottle_wrapper.
            Timer::ReviveQueue(q, _) => {
                self.queue_revive(q);
                self.queue_maybe_done(q);
            }
            // qmgr_queue_resume.
            Timer::ResumeQueue(q, _) => {
                if let Some(queue) = self.queues.get_mut(q.0) {
                    queue.state.window = 1;
                }
                self.queue_maybe_done(q);
            }
            Timer::ForgetWindowHints => self.window_hints.by_queue.clear(),
        }
    }

    /// The `F` trigger: revive every dead transport and destination now (qmgr_enable_all).
    pub fn revive_all(&mut self) {
        let transports: Vec<TransportRef> = self.transport_order.iter().copied().collect();
        for t in transports {
            if self.transports.get(t.0).is_some_and(|x| x.dead) {
                self.transport_revive(t);
            }
            for q in self.transport_queues(t) {
                self.queue_revive(q);
                self.queue_maybe_done(q);
            }
        }
    }
}
