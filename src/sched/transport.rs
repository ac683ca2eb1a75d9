//! Transports (qmgr_transport.c): one per master.cf delivery service, with its round-robin
//! list of destinations, connection attempts, and death when its agent cannot be reached.

use std::collections::{HashMap, VecDeque};

use crate::config::transport::TransportParams;
use crate::proto::dsn::Dsn;

use super::*;

#[derive(Debug)]
pub(super) struct Transport {
    pub(super) name: Vec<u8>,
    pub(super) limits: TransportParams,
    pub(super) dead: bool,
    pub(super) rate_lock: bool,
    /// Connection attempts in progress (at most 2).
    pub(super) pending: u32,
    pub(super) dsn: Option<Dsn>,
    /// Round-robin order of this transport's queues.
    pub(super) queues: VecDeque<DestRef>,
    pub(super) by_name: HashMap<Vec<u8>, DestRef>,
    pub(super) timer_seq: u32,
    /// When its revival timer fires (meaningful while dead).
    pub(super) wake_at: u64,
    /// Since start, for `oqmgrctl`: deliveries by outcome, failed connections.
    pub(super) counts: DeliveryCounts,
}

/// Deliveries of one transport since the queue manager started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct DeliveryCounts {
    /// The agent reported status 0 (delivered, or bounced with the bounce logged).
    pub(super) ok: u64,
    /// The agent reported another status.
    pub(super) deferred: u64,
    /// The agent crashed, hung up or sent a malformed reply.
    pub(super) crashed: u64,
    /// Connections that failed (agent unavailable).
    pub(super) unavailable: u64,
}

/// At most this many connection attempts per transport at once.
pub(super) const MAX_PENDING: u32 = 2;

impl Scheduler {
    pub(super) fn transport_find_or_create(&mut self, name: &[u8]) -> TransportRef {
        if let Some(&t) = self.transport_by_name.get(name) {
            return t;
        }
        let limits = (self.limits)(name);
        let t = TransportRef(self.transports.insert(Transport {
            name: name.to_vec(),
            limits,
            dead: false,
            rate_lock: false,
            pending: 0,
            dsn: None,
            queues: VecDeque::new(),
            by_name: HashMap::new(),
            timer_seq: 0,
            wake_at: 0,
            counts: DeliveryCounts::default(),
        }));
        self.transport_by_name.insert(name.to_vec(), t);
        // New transports are looked at first, as in the C daemon's list.
        self.transport_order.push_front(t);
        t
    }

    /// Starts as many delivery-agent connections as the windows allow: round-robin over the
    /// transports, at most two pending connections each, and only when enough ready
    /// destinations have room and work for one more.
    pub fn drain(&mut self) {
        while let Some(t) = self.transport_select() {
            if let Some(x) = self.transports.get_mut(t.0) {
                x.pending += 1;
                if x.limits.transport_rate_delay > 0 {
                    x.rate_lock = true;
                }
                self.actions.push(Action::Connect {
                    transport: t,
                    name: x.name.clone(),
                });
            }
        }
    }

    /// The next transport with room for a connection, as the C daemon's
    /// qmgr_transport_select.
    pub(super) fn transport_select(&mut self) -> Option<TransportRef> {
        let position = self.transport_order.iter().position(|t| {
            let Some(x) = self.transports.get(t.0) else {
                return false;
            };
            if x.dead || x.rate_lock || x.pending >= MAX_PENDING {
                return false;
            }
            let mut need = i64::from(x.pending) + 1;
            for q in &x.queues {
                let Some(queue) = self.queues.get(q.0) else {
                    continue;
                };
                if !queue.ready() {
                    continue;
                }
                let room = i64::from(queue.state.window) - i64::from(queue.busy);
                need -= room.min(queue.todo.len() as i64);
                if need <= 0 {
                    return true;
                }
            }
            false
        })?;
        // Rotate as the C daemon's QMGR_LIST_ROTATE: the next search resumes after the
        // chosen transport ([after..., before..., chosen]).
        let t = *self.transport_order.get(position)?;
        self.transport_order.rotate_left(position + 1);
        Some(t)
    }

    /// The agent could not be reached or did not announce itself: the transport is dead for
    /// transport_retry_time and its waiting mail goes to `retry`.
    pub fn agent_unavailable(&mut self, now: u64, t: TransportRef) {
        if let Some(x) = self.transports.get_mut(t.0) {
            debug_assert!(x.pending > 0, "agent_unavailable without a Connect");
            x.pending = x.pending.saturating_sub(1);
            x.counts.unavailable += 1;
        }
        let dsn = simple_dsn("4.3.0", b"mail transport unavailable");
        self.transport_throttle(now, t, &dsn);
        self.defer_transport(now, t, &dsn);
    }

    /// qmgr_transport_throttle: the transport is dead for transport_retry_time.
    pub(super) fn transport_throttle(&mut self, now: u64, t: TransportRef, dsn: &Dsn) {
        self.transport_dead_until(t, dsn.clone(), now + self.cfg.transport_retry_time);
    }

    /// A live transport dies until `until`, when its revival timer fires (also for a
    /// remembered death).
    pub(super) fn transport_dead_until(&mut self, t: TransportRef, dsn: Dsn, until: u64) {
        let Some(x) = self.transports.get_mut(t.0) else {
            return;
        };
        if x.dead {
            return;
        }
        x.dead = true;
        x.dsn = Some(dsn);
        x.timer_seq = x.timer_seq.wrapping_add(1);
        x.wake_at = until;
        let timer = Timer::ReviveTransport(t, x.timer_seq);
        self.deadlines.arm(until, timer);
    }

    pub(super) fn transport_dead_ref(&self, t: TransportRef) -> bool {
        self.transports.get(t.0).is_some_and(|x| x.dead)
    }

    /// Revives a dead transport and releases its rate lock (the C daemon's
    /// qmgr_transport_unthrottle).
    pub(super) fn transport_revive(&mut self, t: TransportRef) {
        if let Some(x) = self.transports.get_mut(t.0) {
            if x.dead {
                x.dead = false;
                x.dsn = None;
                x.timer_seq = x.timer_seq.wrapping_add(1);
            }
            x.rate_lock = false;
        }
    }

    /// A transport's destination queues, in round-robin order.
    pub(super) fn transport_queues(&self, t: TransportRef) -> Vec<DestRef> {
        self.transports
            .get(t.0)
            .map(|x| x.queues.iter().copied().collect())
            .unwrap_or_default()
    }
}
