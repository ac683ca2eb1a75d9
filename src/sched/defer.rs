//! Deferring without an agent (qmgr_defer.c): a dead destination's or transport's waiting
//! mail goes to the `retry` transport, or, when that is dead too, each recipient is deferred.

use crate::proto::dsn::Dsn;
use crate::proto::recipient::Recipient;

use super::*;

impl Scheduler {
    /// The `retry` transport's queue for a DSN, unless retry itself (or that queue) is dead.
    pub(super) fn retry_queue(&mut self, dsn: &Dsn) -> Option<DestRef> {
        let t = self.transport_find_or_create(SERVICE_RETRY);
        if self.transports.get(t.0)?.dead {
            return None;
        }
        let nexthop = error_nexthop(dsn);
        let q = self.queue_find_or_create(t, &nexthop, &nexthop);
        if self.queues.get(q.0)?.dead() {
            return None;
        }
        Some(q)
    }

    /// The event loop records the deferral and marks the message deferred by the outcome.
    pub(super) fn defer_recipient(&mut self, m: MessageRef, recipient: Recipient, dsn: Dsn) {
        self.actions.push(Action::DeferRecipient {
            message: m,
            recipient,
            dsn,
        });
    }

    /// All waiting entries of a dead transport go to `retry` (or are deferred on the spot).
    pub(super) fn defer_transport(&mut self, now: u64, t: TransportRef, dsn: &Dsn) {
        for q in self.transport_queues(t) {
            self.defer_todo(now, q, dsn);
        }
    }

    /// The waiting entries of a dead destination move to the `retry` queue named after the
    /// DSN, or, when retry is dead too, each recipient is deferred without an agent (the C
    /// daemon's qmgr_defer_todo).
    pub(super) fn defer_todo(&mut self, now: u64, q: DestRef, dsn: &Dsn) {
        if self.queues.get(q.0).is_none_or(|x| x.todo.is_empty()) {
            // As the C daemon, which looks up the retry queue per waiting entry: nothing
            // waits, so no empty retry queue is made.
            self.queue_maybe_done(q);
            return;
        }
        let retry = self.retry_queue(dsn);
        let todo: Vec<EntryRef> = match self.queues.get_mut(q.0) {
            Some(queue) if Some(q) != retry => queue.todo.drain(..).collect(),
            _ => return,
        };
        // The C daemon walks the todo list from its newest end (qmgr_defer_todo), and each
        // moved entry becomes the newest of the retry queue: the waiting mail reverses.
        for e in todo.into_iter().rev() {
            match retry {
                Some(r) => {
                    let m = self.entries.get_mut(e.0).map(|entry| {
                        entry.queue = r;
                        entry.message
                    });
                    if let Some(rq) = self.queues.get_mut(r.0) {
                        rq.todo.push_back(e);
                    }
                    self.clog_warning(now, r);
                    // The C daemon's qmgr_entry_move_todo ends in qmgr_entry_done for the old
                    // entry, whose refill test may read the message's next batch now.
                    if let Some(m) = m.filter(|m| self.refill_due(*m)) {
                        self.read_batch(m);
                    }
                }
                None => {
                    let (m, recipients) = match self.entries.get_mut(e.0) {
                        Some(entry) => (entry.message, std::mem::take(&mut entry.recipients)),
                        None => continue,
                    };
                    self.recipient_count = self.recipient_count.saturating_sub(recipients.len());
                    for recipient in recipients.into_vec() {
                        self.defer_recipient(m, recipient, dsn.clone());
                    }
                    // Already off the todo list: finish it without touching queue counts.
                    self.entry_release(now, e, q, false);
                }
            }
        }
        self.queue_maybe_done(q);
    }
}
