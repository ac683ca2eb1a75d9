//! Messages in the active queue (the C daemon's qmgr_message.c): what was read from the
//! queue file, how its recipients are assigned to entries, and when its next batch is due.

use crate::proto::msg_stats::Timeval;
use crate::proto::recipient::Recipient;
use crate::queue::envelope::Envelope;

use super::route::{self, Route};
use super::*;

/// A message with its envelope (recipients already handed to entries).
#[derive(Debug)]
pub struct Message {
    pub queue_id: Vec<u8>,
    pub envelope: Envelope,
    /// When the message entered the active queue (MSG_STATS active_arrival).
    pub active_arrival: Timeval,
    /// [`message_flags`].
    pub qflags: u32,
    /// Some delivery was deferred (the file goes to deferred/ when done).
    pub deferred: bool,
    /// Entries not yet done.
    pub(super) refcount: u32,
}

impl Message {
    /// VERP: one recipient per delivery, each with its own sender.
    pub fn single_recipient(&self) -> bool {
        self.envelope.verp_delimiters.is_some()
    }

    /// Entries of this message still waiting or being delivered.
    pub fn entries_in_flight(&self) -> u32 {
        self.refcount
    }

    pub(super) fn is_verify_probe(&self) -> bool {
        self.envelope.trace_flags & crate::queue::envelope::DEL_REQ_FLAG_MTA_VRFY != 0
    }
}

impl Scheduler {
    pub fn message(&self, m: MessageRef) -> Option<&Message> {
        self.messages.get(m.0)
    }

    pub fn message_mut(&mut self, m: MessageRef) -> Option<&mut Message> {
        self.messages.get_mut(m.0)
    }

    /// A message read from its queue file enters the active queue. Its recipients still need
    /// routes; hand them back with [`Scheduler::assign`].
    pub fn add_message(
        &mut self,
        queue_id: Vec<u8>,
        envelope: Envelope,
        active_arrival: Timeval,
        qflags: u32,
    ) -> MessageRef {
        let message = Message {
            queue_id,
            envelope,
            active_arrival,
            qflags,
            deferred: false,
            refcount: 0,
        };
        if message.is_verify_probe() {
            self.verify_pending += 1;
        }
        MessageRef(self.messages.insert(message))
    }

    /// The message's completion ran; forget it.
    pub fn remove_message(&mut self, m: MessageRef) -> Option<Message> {
        let message = self.messages.remove(m.0)?;
        if message.is_verify_probe() {
            self.verify_pending = self.verify_pending.saturating_sub(1);
        }
        Some(message)
    }

    /// Routes the message's recipients and groups them into entries: `routes` pairs each
    /// recipient with what trivial-rewrite (or the content filter) said. Applies Postfix's
    /// overrides in its order: resolver failure and syntax errors, null recipients, forced
    /// expiry, double-bounce discard, defer_transports, verify-probe limit, dead transports and
    /// dead destinations (parked behind `retry`).
    pub fn assign(&mut self, now: u64, m: MessageRef, routes: Vec<(Recipient, Route)>) {
        let Some(msg) = self.messages.get(m.0) else {
            return;
        };
        let qflags = msg.qflags;
        let single = msg.single_recipient();
        let verify_probe = msg.is_verify_probe();
        let mut placed: Vec<(DestRef, Recipient)> = Vec::with_capacity(routes.len());
        for (mut recipient, route) in routes {
            let mut route = route;
            route.apply_resolver_flags();
            if route.address != recipient.address {
                recipient.address = route.address.clone();
            }
            if recipient.address.is_empty() {
                route.redirect(SERVICE_ERROR, b"5.1.3 null recipient address");
            }
            if qflags & message_flags::FORCE_EXPIRE != 0 {
                route.redirect(SERVICE_RETRY, b"4.7.0 message is administratively expired");
            }
            if route.is_double_bounce(&self.cfg.double_bounce_sender) {
                self.actions.push(Action::DiscardRecipient {
                    message: m,
                    recipient,
                });
                continue;
            }
            if qflags & message_flags::FLUSH_DFXP == 0
                && self.cfg.defer_transports.contains(&route.transport)
            {
                route.redirect(SERVICE_RETRY, b"4.3.2 deferred transport");
            }
            if verify_probe && self.verify_pending > self.cfg.verify_pending_limit {
                route.redirect(
                    SERVICE_RETRY,
                    b"4.3.2 Too many address verification requests",
                );
            }
            let mut t = self.transport_find_or_create(&route.transport);
            // Flushed mail revives a dead transport; a live one keeps its rate lock.
            if qflags & message_flags::FLUSH_EACH != 0 && self.transport_dead_ref(t) {
                self.transport_revive(t);
            }
            if let Some(dsn) = self.transports.get(t.0).and_then(|x| x.dsn.clone()) {
                let retry = self.transport_find_or_create(SERVICE_RETRY);
                if self.transports.get(retry.0).is_some_and(|x| x.dead) {
                    self.defer_recipient(m, recipient, dsn);
                    continue;
                }
                t = retry;
                route.nexthop = error_nexthop(&dsn);
            }
            let Some(transport) = self.transports.get(t.0) else {
                continue;
            };
            let queue_name = route::queue_name(
                &transport.name,
                transport.limits.recipient_limit,
                &route.nexthop,
                &recipient.address,
                &self.cfg.recipient_delimiter,
                &self.cfg.double_bounce_sender,
                self.cfg.owner_request_special,
            );
            let mut q = self.queue_find_or_create(t, &queue_name, &route.nexthop);
            if qflags & message_flags::FLUSH_EACH != 0 {
                self.queue_revive(q);
            }
            if let Some(dsn) = self.queues.get(q.0).and_then(|x| x.dsn.clone()) {
                match self.retry_queue(&dsn) {
                    Some(r) => q = r,
                    None => {
                        self.defer_recipient(m, recipient, dsn);
                        continue;
                    }
                }
            }
            placed.push((q, recipient));
        }
        // Sort by transport, destination, then domain and address, so that recipients of one
        // destination end up in as few entries as possible.
        placed.sort_by(|(qa, ra), (qb, rb)| {
            let key = |q: &DestRef| {
                self.queues.get(q.0).map(|x| {
                    let tname = self
                        .transports
                        .get(x.transport.0)
                        .map(|t| t.name.as_slice());
                    (tname, x.name.as_slice())
                })
            };
            key(qa)
                .cmp(&key(qb))
                .then_with(|| route::compare_addresses(&ra.address, &rb.address))
        });
        let mut current: Option<EntryRef> = None;
        for (q, recipient) in placed {
            let reuse = current.filter(|e| {
                let Some(entry) = self.entries.get(e.0) else {
                    return false;
                };
                let limit = self
                    .queues
                    .get(q.0)
                    .and_then(|x| self.transports.get(x.transport.0))
                    .map_or(0, |t| t.limits.recipient_limit);
                !single
                    && entry.queue == q
                    && (limit <= 0 || entry.recipients.len() < limit as usize)
            });
            let e = match reuse {
                Some(e) => e,
                None => self.entry_create(now, q, m),
            };
            if let Some(entry) = self.entries.get_mut(e.0) {
                entry.recipients.push(recipient);
                self.recipient_count += 1;
            }
            current = Some(e);
        }
        if self.messages.get(m.0).is_some_and(|x| x.refcount == 0) {
            self.actions.push(Action::MessageDone(m));
        }
    }
}
