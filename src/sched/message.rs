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
    pub(super) queue_id: Box<[u8]>,
    pub(super) envelope: Envelope,
    /// When the message entered the active queue (MSG_STATS active_arrival).
    pub(super) active_arrival: Timeval,
    /// [`message_flags`].
    pub(super) qflags: u32,
    /// Some delivery was deferred (the file goes to deferred/ when done): the C daemon's
    /// `message->flags` after DELIVER_STAT_DEFER.
    pub(super) deferred: bool,
    /// Entries not yet done.
    pub(super) refcount: u32,
    /// A batch of recipients is out with the event loop for routing (until `assign`).
    pub(super) routing: bool,
    /// A [`Action::ReadRecipients`] is out and its result not yet reported.
    pub(super) reading: bool,
    /// The completion step waiting for a result, once the last entry is done.
    pub(super) completion: Option<complete::Step>,
}

impl Message {
    /// The queue file's name.
    pub fn queue_id(&self) -> &[u8] {
        &self.queue_id
    }

    /// What was read from the queue file (the current batch's recipients are in entries).
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// When the message entered the active queue.
    pub fn active_arrival(&self) -> Timeval {
        self.active_arrival
    }

    /// Whether some recipient was deferred so far.
    pub fn deferred(&self) -> bool {
        self.deferred
    }

    /// VERP: one recipient per delivery, each with its own sender.
    pub fn single_recipient(&self) -> bool {
        self.envelope.verp_delimiters().is_some()
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

    /// A message read from its queue file enters the active queue (qmgr_message_alloc). The
    /// recipients of its first batch come back for routing: hand them to
    /// [`Scheduler::assign`] with their routes. A redirected message (`>` record) keeps its
    /// first recipient only and reads no further batch.
    pub fn add_message(
        &mut self,
        queue_id: Vec<u8>,
        mut envelope: Envelope,
        active_arrival: Timeval,
        qflags: u32,
    ) -> (MessageRef, Vec<Recipient>) {
        let mut recipients = std::mem::take(&mut envelope.recipients);
        if envelope.redirect_address().is_some() {
            recipients.truncate(1);
            envelope.resume_offset = None;
        }
        let message = Message {
            queue_id: queue_id.into_boxed_slice(),
            envelope,
            active_arrival,
            qflags,
            deferred: false,
            refcount: 0,
            routing: true,
            reading: false,
            completion: None,
        };
        if message.is_verify_probe() {
            self.verify_pending += 1;
        }
        (MessageRef(self.messages.insert(message)), recipients)
    }

    /// Forgets a message whose completion ran (qmgr_message_free).
    pub(super) fn remove_message(&mut self, m: MessageRef) -> Option<Message> {
        let message = self.messages.remove(m.0)?;
        // qmgr_message_free panics over a message with entries left.
        debug_assert_eq!(message.refcount, 0, "message freed with entries left");
        if message.is_verify_probe() {
            self.verify_pending = self.verify_pending.saturating_sub(1);
        }
        Some(message)
    }

    /// A record the event loop wrote for [`Action::DeferRecipient`] or
    /// [`Action::DiscardRecipient`] returned `status` (the C daemon's
    /// `message->flags |= status`): anything but 0 leaves the message deferred.
    pub fn recorded(&mut self, m: MessageRef, status: i32) {
        if let Some(msg) = self.messages.get_mut(m.0) {
            msg.deferred |= status != 0;
        }
    }

    /// Asks the event loop for the message's next recipient batch, unless one is being read
    /// or routed already (then its `assign` settles the message).
    pub(super) fn read_batch(&mut self, m: MessageRef) {
        let Some(msg) = self.messages.get_mut(m.0) else {
            return;
        };
        let Some(start) = msg.envelope.resume_offset else {
            return;
        };
        if msg.routing || msg.reading {
            return;
        }
        msg.reading = true;
        self.actions.push(Action::ReadRecipients {
            message: m,
            queue_id: msg.queue_id.to_vec(),
            size: msg.envelope.size,
            start,
        });
    }

    /// The batch asked for was read: the event loop now routes its recipients and hands
    /// them to [`Scheduler::assign`]; `next` is where the batch after it starts. A redirected
    /// message keeps only its first recipient, so the loop routes only that one.
    pub fn batch_read(&mut self, m: MessageRef, next: Option<u64>) {
        let Some(msg) = self.messages.get_mut(m.0) else {
            return;
        };
        debug_assert!(msg.reading, "batch_read without ReadRecipients");
        msg.reading = false;
        msg.routing = true;
        msg.envelope.resume_offset = next.filter(|_| msg.envelope.redirect_address().is_none());
        if msg.completion == Some(complete::Step::Batch) {
            msg.completion = None;
        }
    }

    /// The batch asked for could not be read (gone, or bad records): during the completion
    /// the file goes to corrupt/; otherwise the completion, once due, reads it again and
    /// decides (as after the C daemon's failed qmgr_message_realloc).
    pub fn batch_unreadable(&mut self, now: u64, m: MessageRef) {
        let Some(msg) = self.messages.get_mut(m.0) else {
            return;
        };
        debug_assert!(msg.reading, "batch_unreadable without ReadRecipients");
        msg.reading = false;
        if msg.completion == Some(complete::Step::Batch) {
            self.corrupt(m);
            return;
        }
        self.maybe_done(now, m);
    }

    /// Routes the message's recipients and groups them into entries: `routes` pairs each
    /// recipient with what trivial-rewrite (or the content filter) said. Applies Postfix's
    /// overrides in its order: resolver failure and syntax errors, null recipients, forced
    /// expiry, double-bounce discard, defer_transports, verify-probe limit, dead transports and
    /// dead destinations (parked behind `retry`).
    pub fn assign(
        &mut self,
        now: u64,
        m: MessageRef,
        routes: impl IntoIterator<Item = (Recipient, Route)>,
    ) {
        let Some(msg) = self.messages.get_mut(m.0) else {
            return;
        };
        debug_assert!(msg.routing, "assign without a batch out for routing");
        msg.routing = false;
        let qflags = msg.qflags;
        let single = msg.single_recipient();
        let verify_probe = msg.is_verify_probe();
        let routes = routes.into_iter();
        // The recipients that get an entry, and their queues (sorted below by index, so that
        // a batch of thousands is not moved around).
        let mut kept: Vec<Recipient> = Vec::with_capacity(routes.size_hint().0);
        let mut placed: Vec<(DestRef, u32)> = Vec::with_capacity(routes.size_hint().0);
        for (mut recipient, route) in routes {
            let mut route = route;
            route.apply_resolver_flags();
            if route.address != recipient.address() {
                recipient.set_address(&route.address);
            }
            if recipient.address().is_empty() {
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
                recipient.address(),
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
            placed.push((q, u32::try_from(kept.len()).unwrap_or(u32::MAX)));
            kept.push(recipient);
        }
        // Sort by transport, destination, then domain and address, so that recipients of one
        // destination end up in as few entries as possible.
        let address = |i: u32| kept.get(i as usize).map_or(&b""[..], Recipient::address);
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
                .then_with(|| route::compare_addresses(address(*ra), address(*rb)))
        });
        // Consecutive recipients of one queue share an entry, up to the transport's
        // recipient limit (one each for VERP); each entry's list is allocated at its size.
        let mut runs: Vec<(DestRef, usize)> = Vec::new();
        for (q, _) in &placed {
            let limit = if single {
                1
            } else {
                self.queues
                    .get(q.0)
                    .and_then(|x| self.transports.get(x.transport.0))
                    .map_or(0, |t| t.limits.recipient_limit)
            };
            match runs.last_mut() {
                Some((rq, n)) if rq == q && (limit <= 0 || *n < limit as usize) => *n += 1,
                _ => runs.push((*q, 1)),
            }
        }
        let mut placed = placed.into_iter();
        for (q, n) in runs {
            let group: Box<[Recipient]> = placed
                .by_ref()
                .take(n)
                .map(|(_, i)| {
                    kept.get_mut(i as usize)
                        .map(std::mem::take)
                        .unwrap_or_default()
                })
                .collect();
            let e = self.entry_create(now, q, m);
            if let Some(entry) = self.entries.get_mut(e.0) {
                self.recipient_count += group.len();
                entry.recipients = group;
            }
        }
        self.maybe_done(now, m);
    }
}
