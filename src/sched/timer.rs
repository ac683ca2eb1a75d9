//! Timers: dead transports and destinations come back to life (qmgr_enable.c).

use super::*;

impl Scheduler {
    /// A timer armed through [`Action::ArmTimer`] fired.
    pub fn timer(&mut self, _now: u64, timer: Timer) {
        match timer {
            Timer::ReviveTransport(t, seq) => {
                if self.transports.get(t.0).is_some_and(|x| x.timer_seq == seq) {
                    self.transport_revive(t);
                }
            }
            Timer::ReviveQueue(q, seq) => {
                if self
                    .queues
                    .get(q.0)
                    .is_some_and(|x| x.timer_seq == seq && x.dead())
                {
                    self.queue_revive(q);
                    self.queue_maybe_done(q);
                }
            }
            Timer::ResumeQueue(q, seq) => {
                if let Some(queue) = self.queues.get_mut(q.0) {
                    if queue.timer_seq == seq && queue.state.window == SUSPENDED {
                        queue.state.window = 1;
                        self.queue_maybe_done(q);
                    }
                }
            }
        }
    }

    /// The `F` trigger: revive every dead transport and destination now.
    pub fn revive_all(&mut self) {
        let transports: Vec<TransportRef> = self.transport_order.iter().copied().collect();
        for t in transports {
            if self.transports.get(t.0).is_some_and(|x| x.dead) {
                self.transport_revive(t);
            }
            let queues: Vec<DestRef> = self
                .transports
                .get(t.0)
                .map(|x| x.queues.iter().copied().collect())
                .unwrap_or_default();
            for q in queues {
                self.queue_revive(q);
                self.queue_maybe_done(q);
            }
        }
    }
}
