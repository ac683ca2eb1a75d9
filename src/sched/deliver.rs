//! One delivery (qmgr_deliver.c): the request an agent gets and what its reply does to the
//! destination, the transport and the entry.

use std::borrow::Cow;

use crate::proto::deliver::{request_flags, DeliveryReply, DeliveryRequest, RequestRef};
use crate::proto::msg_stats::{MsgStats, Timeval};

use super::route::{self};
use super::*;

impl Scheduler {
    /// A connection to the transport's agent completed and the agent announced itself: pick
    /// the next destination (round-robin) and its oldest entry, with the request for it.
    /// `None`: nothing to send any more; close the connection.
    pub fn agent_ready(
        &mut self,
        now: u64,
        t: TransportRef,
    ) -> Option<(EntryRef, DeliveryRequest)> {
        let e = self.agent_pick(now, t)?;
        let request = self.with_delivery_request(e, |r| r.to_request())?;
        Some((e, request))
    }

    /// [`Scheduler::agent_ready`] without building the request: the daemon writes it with
    /// [`Scheduler::with_delivery_request`] straight into the connection's buffer.
    pub fn agent_pick(&mut self, now: u64, t: TransportRef) -> Option<EntryRef> {
        let x = self.transports.get_mut(t.0)?;
        x.pending = x.pending.saturating_sub(1);
        let Some(position) = x.queues.iter().position(|q| {
            self.queues.get(q.0).is_some_and(|queue| {
                queue.state.window > queue.busy as i32 && !queue.todo.is_empty()
            })
        }) else {
            // As in the C daemon's qmgr_deliver, the agent is closed without releasing the
            // rate lock: only a completed delivery or a revived transport does that.
            return None;
        };
        // Round robin as qmgr_queue_select: the next search resumes after this queue.
        let q = *x.queues.get(position)?;
        x.queues.rotate_left(position + 1);
        let queue = self.queues.get_mut(q.0)?;
        let e = queue.todo.pop_front()?;
        queue.busy += 1;
        // Connection caching: ask the agent to keep/reuse sessions when deliveries to this
        // destination run back to back or in parallel.
        let back_to_back = queue.last_done + 1 >= now;
        if queue.dflags & request_flags::CONN_STORE == 0 {
            if back_to_back {
                queue.dflags |= request_flags::CONN_LOAD | request_flags::CONN_STORE;
            }
        } else if !(queue.busy > 1 || back_to_back) {
            queue.dflags &= !request_flags::CONN_STORE;
        }
        let entry = self.entries.get_mut(e.0)?;
        entry.busy = true;
        Some(e)
    }

    /// Calls `f` with the delivery request for a busy entry, borrowed from the envelope.
    pub fn with_delivery_request<R>(
        &self,
        e: EntryRef,
        f: impl FnOnce(RequestRef<'_>) -> R,
    ) -> Option<R> {
        let entry = self.entries.get(e.0)?;
        let queue = self.queues.get(entry.queue.0)?;
        let msg = self.messages.get(entry.message.0)?;
        let env = &msg.envelope;
        let mut smtputf8 = env.smtputf8 as u32;
        if self.cfg.smtputf8_enable
            && entry
                .recipients
                .iter()
                .any(|r| !r.address().is_ascii() && std::str::from_utf8(r.address()).is_ok())
        {
            smtputf8 |= 8; // SMTPUTF8_FLAG_RECIPIENT
            if env.verp_delimiters().is_some() {
                smtputf8 |= 4; // SMTPUTF8_FLAG_SENDER
            }
        }
        let sender = match (env.verp_delimiters(), entry.recipients.first()) {
            (Some(delims), Some(r)) => Cow::Owned(route::verp_sender(delims, &env.sender, r)),
            _ => Cow::Borrowed(&env.sender[..]),
        };
        let default_flags = if env.inspect_transport().is_some() {
            request_flags::BOUNCE
        } else {
            request_flags::SUCCESS | request_flags::BOUNCE
        };
        Some(f(RequestRef {
            flags: env.trace_flags as u32 | queue.dflags | default_flags,
            queue_name: b"active",
            queue_id: &msg.queue_id,
            data_offset: env.size.data_offset.max(0) as u64,
            data_size: env.size.effective_content_length().max(0) as u64,
            nexthop: &queue.nexthop,
            encoding: env.attrs.encoding(),
            smtputf8,
            sender: &sender,
            envelope_id: env.attrs.dsn_envid(),
            ret_flags: env.dsn_ret as u32,
            stats: MsgStats {
                incoming_arrival: Timeval {
                    sec: env.arrival_time.sec,
                    usec: env.arrival_time.usec,
                },
                active_arrival: msg.active_arrival,
                ..MsgStats::default()
            },
            log_client_name: env.attrs.log_client_name(),
            log_client_address: env.attrs.log_client_address(),
            log_client_port: env.attrs.log_client_port(),
            log_protocol_name: env.attrs.log_protocol_name(),
            log_helo_name: env.attrs.log_helo_name(),
            sasl_method: env.attrs.sasl_method(),
            sasl_username: env.attrs.sasl_username(),
            sasl_sender: env.attrs.sasl_sender(),
            log_ident: env.attrs.log_ident(),
            rewrite_context: env.attrs.rewrite_context(),
            recipients: &entry.recipients,
        }))
    }

    /// The queue id of an entry's message (for the reply time-out's fatal message).
    pub fn entry_queue_id(&self, e: EntryRef) -> Option<&[u8]> {
        let entry = self.entries.get(e.0)?;
        Some(&self.messages.get(entry.message.0)?.queue_id)
    }

    /// Writing the request failed: the entry goes back to the head of its queue, the
    /// transport is treated as unavailable.
    pub fn request_failed(&mut self, now: u64, e: EntryRef) {
        let Some(entry) = self.entries.get_mut(e.0) else {
            debug_assert!(false, "request_failed: no such entry");
            return;
        };
        entry.busy = false;
        let q = entry.queue;
        let Some(queue) = self.queues.get_mut(q.0) else {
            debug_assert!(false, "request_failed: entry of a freed queue");
            return;
        };
        queue.busy = queue.busy.saturating_sub(1);
        queue.todo.push_back(e);
        let t = queue.transport;
        let dsn = simple_dsn("4.3.0", b"mail transport unavailable");
        self.transport_throttle(now, t, &dsn);
        self.defer_transport(now, t, &dsn);
    }

    /// The agent's final reply (`None`: it crashed, hung up or sent garbage before any
    /// hop-status field).
    pub fn agent_reply(&mut self, now: u64, e: EntryRef, reply: Option<&DeliveryReply>) {
        match reply {
            Some(r) => {
                let d = &r.hop_status;
                let fields = [
                    &d.status,
                    &d.diag_type,
                    &d.diag_text,
                    &d.mta_type,
                    &d.mta_mname,
                    &d.action,
                    &d.reason,
                ]
                .map(|f| f.clone());
                self.agent_reply_scan(now, e, &fields, Some(r.status));
            }
            None => self.agent_reply_scan(now, e, &[], None),
        }
    }

    /// The agent's final reply as the C daemon's attr_scan saw it (qmgr_deliver_update):
    /// `hop_fields` are the leading hop-status fields it read, in dsb_scan's order (status,
    /// diag_type, diag_text, mta_type, mta_mname, action, reason); `status` is the delivery
    /// status, `None` when the reply was missing or malformed (DELIVER_STAT_CRASH).
    ///
    /// Whatever went wrong, the throttle test reads the shared hop-status buffer, so a crash
    /// throttles the destination only with a status left there by an earlier reply; and a
    /// crash never revives the transport or the destination (nor releases the transport's
    /// rate lock: a C bug kept for parity).
    pub fn agent_reply_scan(
        &mut self,
        now: u64,
        e: EntryRef,
        hop_fields: &[Vec<u8>],
        status: Option<i32>,
    ) {
        let buffer = &mut self.last_hop_status;
        let slots = [
            &mut buffer.status,
            &mut buffer.diag_type,
            &mut buffer.diag_text,
            &mut buffer.mta_type,
            &mut buffer.mta_mname,
            &mut buffer.action,
            &mut buffer.reason,
        ];
        for (slot, field) in slots.into_iter().zip(hop_fields) {
            slot.clone_from(field);
        }
        let Some(entry) = self.entries.get(e.0) else {
            // qmgr_deliver_update would read a freed entry: the C daemon's undefined case.
            debug_assert!(false, "agent reply for no such entry");
            return;
        };
        let (m, q) = (entry.message, entry.queue);
        let Some(t) = self.queues.get(q.0).map(|x| x.transport) else {
            debug_assert!(false, "agent reply for an entry of a freed queue");
            return;
        };
        let crashed = status.is_none();
        if let Some(x) = self.transports.get_mut(t.0) {
            match status {
                Some(0) => x.counts.ok += 1,
                Some(_) => x.counts.deferred += 1,
                None => x.counts.crashed += 1,
            }
        }
        if status != Some(0) {
            if let Some(msg) = self.messages.get_mut(m.0) {
                msg.deferred = true;
            }
            if !self.last_hop_status.status.is_empty() {
                let buffer = &mut self.last_hop_status;
                if !route::dsn_valid(&buffer.status) {
                    buffer.status = b"4.0.0".to_vec();
                }
                if buffer.reason.is_empty() {
                    buffer.reason = b"unknown error".to_vec();
                }
                let mut reason = b"delivery temporarily suspended: ".to_vec();
                reason.extend_from_slice(&buffer.reason);
                buffer.reason = reason;
                let dsn = buffer.clone();
                if self.queues.get(q.0).is_some_and(DestQueue::ready) {
                    self.queue_throttle(now, q, &dsn);
                    if self.queues.get(q.0).is_some_and(DestQueue::dead) {
                        self.defer_todo(now, q, &dsn);
                    }
                }
            }
        }
        if !crashed {
            self.transport_revive(t);
            if self.last_hop_status.reason.is_empty() {
                self.queue_positive(q);
            }
        }
        self.entry_done(now, e);
    }
}
