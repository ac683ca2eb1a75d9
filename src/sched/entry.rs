//! Entries: groups of one message's recipients for one destination (qmgr_entry.c).

use crate::proto::recipient::Recipient;

use super::*;

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) message: MessageRef,
    pub(super) queue: DestRef,
    /// Exactly as long as needed: an active queue of single-recipient messages holds
    /// thousands of these.
    pub(super) recipients: Box<[Recipient]>,
    pub(super) busy: bool,
}

impl Scheduler {
    pub(super) fn entry_create(&mut self, now: u64, q: DestRef, m: MessageRef) -> EntryRef {
        let e = EntryRef(self.entries.insert(Entry {
            message: m,
            queue: q,
            recipients: Box::default(),
            busy: false,
        }));
        if let Some(msg) = self.messages.get_mut(m.0) {
            msg.refcount += 1;
        }
        if let Some(queue) = self.queues.get_mut(q.0) {
            queue.todo.push_back(e);
        }
        self.clog_warning(now, q);
        e
    }

    /// Postfix's "mail for X is using up N of M active queue entries" advice.
    pub(super) fn clog_warning(&mut self, now: u64, q: DestRef) {
        if !self.cfg.helpful_warnings || self.cfg.clog_warn_time == 0 {
            return;
        }
        let message_count = self.messages.len();
        let Some(queue) = self.queues.get(q.0) else {
            return;
        };
        let length = queue.todo.len() + queue.busy as usize;
        if length <= self.cfg.active_limit / 5 || now < queue.clog_time_to_warn {
            return;
        }
        let Some(transport) = self.transports.get(queue.transport.0) else {
            return;
        };
        let nexthop = String::from_utf8_lossy(&queue.nexthop).into_owned();
        let tname = String::from_utf8_lossy(&transport.name).into_owned();
        let share = length as f64 / message_count.max(1) as f64;
        let mut lines = vec![format!(
            "mail for {nexthop} is using up {length} of {message_count} active queue entries"
        )];
        if share < 0.9 {
            lines.push("this may slow down other mail deliveries".into());
        }
        let limit = transport.limits.dest_concurrency_limit;
        if limit > 0 && limit as u32 <= queue.busy + 1 {
            lines.push(format!(
                "you may need to increase the main.cf {tname}_destination_concurrency_limit from {limit}"
            ));
        } else if f64::from(queue.state.window) > self.cfg.active_limit as f64 * share {
            lines.push(format!(
                "you may need to increase the main.cf qmgr_message_active_limit from {}",
                self.cfg.active_limit
            ));
        } else if transport.queues.len() > 1 {
            lines.push(format!(
                "you may need a separate master.cf transport for {nexthop}"
            ));
        } else {
            lines.push(format!(
                "you may need to reduce {tname} connect and helo timeouts"
            ));
            lines.push("so that Postfix quickly skips unavailable hosts".into());
            lines.push(
                "you may need to increase the main.cf minimal_backoff_time and maximal_backoff_time"
                    .into(),
            );
            lines.push("so that Postfix wastes less time on undeliverable mail".into());
            lines.push(format!(
                "you may need to increase the master.cf {tname} process limit"
            ));
        }
        lines.push("please avoid flushing the whole queue when you have".into());
        lines.push("lots of deferred mail, that is bad for performance".into());
        lines.push("to turn off these warnings specify: qmgr_clog_warn_time = 0".into());
        self.actions.extend(lines.into_iter().map(Action::Warn));
        let next = now + self.cfg.clog_warn_time;
        if let Some(queue) = self.queues.get_mut(q.0) {
            queue.clog_time_to_warn = next;
        }
    }

    pub(super) fn entry_done(&mut self, now: u64, e: EntryRef) {
        let Some(entry) = self.entries.get(e.0) else {
            debug_assert!(false, "qmgr_entry_done: no such entry");
            return;
        };
        let q = entry.queue;
        let was_busy = entry.busy;
        if let Some(queue) = self.queues.get_mut(q.0) {
            if was_busy {
                debug_assert!(queue.busy > 0, "qmgr_entry_done: busy count underflow");
                queue.busy = queue.busy.saturating_sub(1);
            } else if let Some(i) = queue.todo.iter().position(|x| *x == e) {
                queue.todo.remove(i);
            }
        }
        self.entry_release(now, e, q, was_busy);
    }

    /// Frees an entry already off its queue's lists and settles the queue and message.
    pub(super) fn entry_release(&mut self, now: u64, e: EntryRef, q: DestRef, was_busy: bool) {
        let Some(entry) = self.entries.remove(e.0) else {
            debug_assert!(false, "qmgr_entry_done: no such entry");
            return;
        };
        self.recipient_count = self.recipient_count.saturating_sub(entry.recipients.len());
        if was_busy {
            let rate_delay = self
                .queues
                .get(q.0)
                .and_then(|x| self.transports.get(x.transport.0))
                .map_or(0, |t| {
                    u64::try_from(t.limits.destination_rate_delay).unwrap_or(0)
                });
            if let Some(queue) = self.queues.get_mut(q.0) {
                queue.last_done = now;
            }
            if rate_delay > 0 {
                self.queue_revive(q);
                self.queue_suspend_until(q, now + rate_delay);
            }
        }
        if let Some(queue) = self.queues.get(q.0) {
            if queue.empty() && queue.dead() && self.queues.len() > 2 * self.cfg.recipient_limit {
                // Too many dead destinations cached: forget this one.
                self.queue_revive(q);
            }
        }
        self.queue_maybe_done(q);
        let m = entry.message;
        let refill = self.refill_due(m);
        let Some(msg) = self.messages.get_mut(m.0) else {
            debug_assert!(false, "entry of a freed message");
            return;
        };
        debug_assert!(msg.refcount > 0, "message refcount underflow");
        msg.refcount = msg.refcount.saturating_sub(1);
        // As qmgr_entry_done: the next batch first, so that a list keeps flowing and its
        // completion (one bounce notice, one trace) runs once, after the last batch.
        if refill {
            self.read_batch(m);
        } else {
            self.maybe_done(now, m);
        }
    }

    /// qmgr_entry_done's refill test: the message has recipients still unread in its file
    /// and few recipients are in memory.
    pub(super) fn refill_due(&self, m: MessageRef) -> bool {
        self.recipient_count < self.cfg.refill_below
            && self
                .messages
                .get(m.0)
                .is_some_and(|msg| msg.envelope.resume_offset.is_some())
    }
}
