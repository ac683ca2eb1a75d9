//! The scheduler: oqmgr's in-memory active queue as a pure state machine.
//!
//! It knows messages, the entries (recipient groups) they are split into, the destination
//! queues those entries wait in, and the transports that own the queues. It takes events with
//! a `now` (seconds) — a message was read and resolved, a delivery agent is ready, an agent
//! replied, a timer fired — and answers with [`Action`]s for the event loop to carry out:
//! connect to a transport, arm a timer, log a warning, finish a message. It never touches a
//! socket, a file or the clock, so a week of scheduling can be tested in milliseconds.
//!
//! The strategies are Postfix's oqmgr's: round-robin over transports and over the destinations
//! of a transport, per-destination concurrency windows with slow start and feedback
//! ([`feedback`]), failed cohorts that declare a destination dead, dead destinations and
//! transports parked behind the `retry` transport until their back-off timer revives them, and
//! a destination status cache in the form of dead queues that outlive their last entry.

pub mod complete;
pub mod feedback;
pub mod route;
pub use crate::slab;

use std::collections::{HashMap, VecDeque};

use crate::config::transport::TransportParams;
use crate::proto::deliver::{request_flags, DeliveryReply, DeliveryRequest};
use crate::proto::dsn::Dsn;
use crate::proto::msg_stats::{MsgStats, Timeval};
use crate::proto::recipient::Recipient;
use crate::queue::envelope::Envelope;

use feedback::WindowState;
use route::Route;
use slab::{Id, Slab};

/// The delivery-agent service that bounces (error(8) as `error`).
pub const SERVICE_ERROR: &[u8] = b"error";
/// The delivery-agent service that defers (error(8) as `retry`).
pub const SERVICE_RETRY: &[u8] = b"retry";

/// Per-message scan flags (Postfix's `qflags`).
pub mod message_flags {
    /// Revive this message's dead transports and queues (flush daemon's 0040 file bit).
    pub const FLUSH_EACH: u32 = 1 << 0;
    /// Ignore defer_transports (`F` trigger, 0040 file bit).
    pub const FLUSH_DFXP: u32 = 1 << 1;
    /// Expire now (`postsuper -e/-f`, 0010 file bit).
    pub const FORCE_EXPIRE: u32 = 1 << 2;
}

/// A message in the active queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageRef(Id);
/// A group of recipients of one message for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryRef(Id);
/// A destination queue (transport + next hop, or per-recipient for limit-1 transports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DestRef(Id);
/// A transport (a master.cf delivery service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportRef(Id);

/// The global parameters the scheduler needs (from main.cf, in seconds and counts).
#[derive(Debug, Clone, PartialEq)]
pub struct SchedConfig {
    /// qmgr_message_active_limit.
    pub active_limit: usize,
    /// qmgr_message_recipient_limit.
    pub recipient_limit: usize,
    /// defer_transports, split.
    pub defer_transports: Vec<Vec<u8>>,
    /// minimal_backoff_time: how long a dead destination stays dead.
    pub min_backoff: u64,
    /// transport_retry_time: how long a dead transport stays dead.
    pub transport_retry_time: u64,
    /// qmgr_clog_warn_time (0 = off).
    pub clog_warn_time: u64,
    /// helpful_warnings.
    pub helpful_warnings: bool,
    /// smtputf8_enable.
    pub smtputf8_enable: bool,
    /// double_bounce_sender.
    pub double_bounce_sender: Vec<u8>,
    /// recipient_delimiter (any of these characters starts an address extension).
    pub recipient_delimiter: Vec<u8>,
    /// address_verify_pending_request_limit.
    pub verify_pending_limit: usize,
    /// owner_request_special: owner-* and *-request keep their `-`.
    pub owner_request_special: bool,
    /// A message's next recipient batch is read when an entry of it is done while fewer
    /// recipients than this are in memory: the in-memory cap (qmgr_message_recipient_limit
    /// times qmgr_fudge_factor) less 100, as in the C daemon's qmgr_entry_done.
    pub refill_below: usize,
    /// destination_concurrency_feedback_debug: log every window change.
    pub feedback_debug: bool,
}

impl SchedConfig {
    /// The scheduler's share of main.cf.
    pub fn from_params(p: &crate::config::Params) -> SchedConfig {
        let count = |v: i32| usize::try_from(v).unwrap_or(0);
        let secs = |v: i32| u64::try_from(v).unwrap_or(0);
        SchedConfig {
            active_limit: count(p.qmgr_message_active_limit),
            recipient_limit: count(p.qmgr_message_recipient_limit),
            defer_transports: p
                .defer_transports
                .split(|c| b", \t\r\n".contains(c))
                .filter(|w| !w.is_empty())
                .map(<[u8]>::to_vec)
                .collect(),
            min_backoff: secs(p.minimal_backoff_time),
            transport_retry_time: secs(p.transport_retry_time),
            clog_warn_time: secs(p.qmgr_clog_warn_time),
            helpful_warnings: p.helpful_warnings,
            smtputf8_enable: p.smtputf8_enable,
            double_bounce_sender: p.double_bounce_sender.clone(),
            recipient_delimiter: p.recipient_delimiter.clone(),
            verify_pending_limit: count(p.address_verify_pending_request_limit),
            owner_request_special: p.owner_request_special,
            refill_below: crate::queue::envelope::recipient_cap(
                i64::from(p.qmgr_message_recipient_limit),
                i64::from(p.qmgr_fudge_factor),
            )
            .saturating_sub(100),
            feedback_debug: p.destination_concurrency_feedback_debug,
        }
    }
}

impl Default for SchedConfig {
    /// Postfix 3.7's defaults.
    fn default() -> Self {
        SchedConfig {
            active_limit: 20000,
            recipient_limit: 20000,
            defer_transports: Vec::new(),
            min_backoff: 300,
            transport_retry_time: 60,
            clog_warn_time: 300,
            helpful_warnings: true,
            smtputf8_enable: true,
            double_bounce_sender: b"double-bounce".to_vec(),
            recipient_delimiter: Vec::new(),
            verify_pending_limit: 5000,
            owner_request_special: true,
            refill_below: 20000 - 100,
            feedback_debug: false,
        }
    }
}

/// A timer the event loop arms on the scheduler's behalf. Stale timers (the object was freed,
/// or revived early and the timer re-armed) are recognised and ignored when they fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// transport_retry_time after a transport died.
    ReviveTransport(TransportRef, u32),
    /// minimal_backoff_time after a destination died.
    ReviveQueue(DestRef, u32),
    /// destination_rate_delay after a delivery on a rate-limited destination.
    ResumeQueue(DestRef, u32),
}

/// What the event loop must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Connect to `private/<name>`; report with [`Scheduler::agent_ready`] or
    /// [`Scheduler::agent_unavailable`].
    Connect {
        transport: TransportRef,
        name: Vec<u8>,
    },
    /// Call [`Scheduler::timer`] with `timer` at `at` (seconds).
    ArmTimer { at: u64, timer: Timer },
    /// Record a deferral without a delivery agent (defer_append: the retry service is dead);
    /// the event loop marks the message deferred unless the record says otherwise (a probe's
    /// verify update, a `sendmail -bv` trace).
    DeferRecipient {
        message: MessageRef,
        recipient: Recipient,
        dsn: Dsn,
    },
    /// A double-bounce to the local double-bounce address: log it `sent` (discarded) and mark
    /// the recipient done in the file.
    DiscardRecipient {
        message: MessageRef,
        recipient: Recipient,
    },
    /// A `warning:` line.
    Warn(String),
    /// An informational line (destination_concurrency_feedback_debug).
    Info(String),
    /// The message has no entries left: run its completion (bounce/trace/defer flushes, then
    /// unlink or defer), then [`Scheduler::remove_message`] or [`Scheduler::assign`] more.
    MessageDone(MessageRef),
    /// An entry of this message is done, its file holds more recipients and few are in memory:
    /// read its next batch and [`Scheduler::assign`] it (the C daemon's qmgr_message_realloc
    /// from qmgr_entry_done). Comes instead of [`Action::MessageDone`]: when the batch brings
    /// no entries and none are left, `assign` reports the message done; when the batch cannot
    /// be read and none are left, the event loop starts the completion itself.
    ReadRecipients(MessageRef),
}

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
    refcount: u32,
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

    fn is_verify_probe(&self) -> bool {
        self.envelope.trace_flags & crate::queue::envelope::DEL_REQ_FLAG_MTA_VRFY != 0
    }
}

#[derive(Debug)]
struct Entry {
    message: MessageRef,
    queue: DestRef,
    recipients: Vec<Recipient>,
    busy: bool,
}

#[derive(Debug)]
struct DestQueue {
    /// Lower-cased nexthop (or `user@nexthop` for recipient-limit-1 transports).
    name: Vec<u8>,
    nexthop: Vec<u8>,
    transport: TransportRef,
    /// `window > 0` ready, 0 dead (throttled), -1 suspended (rate delay).
    state: WindowState,
    todo: VecDeque<EntryRef>,
    busy: u32,
    /// Why it is dead.
    dsn: Option<Dsn>,
    last_done: u64,
    /// Connection-cache request bits (CONN_LOAD | CONN_STORE).
    dflags: u32,
    clog_time_to_warn: u64,
    timer_seq: u32,
}

const SUSPENDED: i32 = -1;

impl DestQueue {
    fn ready(&self) -> bool {
        self.state.window > 0
    }
    fn dead(&self) -> bool {
        self.state.window == 0
    }
    fn empty(&self) -> bool {
        self.todo.is_empty() && self.busy == 0
    }
}

#[derive(Debug)]
struct Transport {
    name: Vec<u8>,
    limits: TransportParams,
    dead: bool,
    rate_lock: bool,
    /// Connection attempts in progress (at most 2).
    pending: u32,
    dsn: Option<Dsn>,
    /// Round-robin order of this transport's queues.
    queues: VecDeque<DestRef>,
    by_name: HashMap<Vec<u8>, DestRef>,
    timer_seq: u32,
}

/// At most this many connection attempts per transport at once.
const MAX_PENDING: u32 = 2;

/// The per-transport parameter lookup: pure (configuration data in, limits out).
pub type LimitsLookup = Box<dyn Fn(&[u8]) -> TransportParams>;

/// The active queue.
pub struct Scheduler {
    cfg: SchedConfig,
    limits: LimitsLookup,
    messages: Slab<Message>,
    entries: Slab<Entry>,
    queues: Slab<DestQueue>,
    transports: Slab<Transport>,
    transport_order: VecDeque<TransportRef>,
    transport_by_name: HashMap<Vec<u8>, TransportRef>,
    recipient_count: usize,
    verify_pending: usize,
    /// The hop status of the last agent reply, as the C daemon's qmgr_deliver_update keeps it:
    /// one function-static DSN_BUF shared by every delivery of the process. A crash reads it
    /// again (normally empty: no throttle), a reply malformed part-way overwrites only the
    /// fields read before the failure, and the throttle path sanitises it in place.
    last_hop_status: Dsn,
    actions: Vec<Action>,
}

fn simple_dsn(status: &str, reason: &[u8]) -> Dsn {
    Dsn {
        status: status.as_bytes().to_vec(),
        reason: reason.to_vec(),
        ..Dsn::default()
    }
}

/// The `retry`/`error` queue name for a DSN: `"<status> <reason>"`.
fn error_nexthop(dsn: &Dsn) -> Vec<u8> {
    let mut n = dsn.status.clone();
    n.push(b' ');
    n.extend_from_slice(&dsn.reason);
    n
}

impl Scheduler {
    pub fn new(cfg: SchedConfig, limits: LimitsLookup) -> Scheduler {
        Scheduler {
            cfg,
            limits,
            messages: Slab::default(),
            entries: Slab::default(),
            queues: Slab::default(),
            transports: Slab::default(),
            transport_order: VecDeque::new(),
            transport_by_name: HashMap::new(),
            recipient_count: 0,
            verify_pending: 0,
            last_hop_status: Dsn::default(),
            actions: Vec::new(),
        }
    }

    /// The actions produced since the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Messages in the active queue.
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// Recipients in memory (in entries).
    pub fn recipient_count(&self) -> usize {
        self.recipient_count
    }

    /// Destination queues in memory, dead ones included.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Whether another message may be imported (the active-queue limits).
    pub fn can_import(&self) -> bool {
        self.messages.len() < self.cfg.active_limit
            && self.recipient_count < self.cfg.recipient_limit
    }

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

    fn transport_find_or_create(&mut self, name: &[u8]) -> TransportRef {
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
        }));
        self.transport_by_name.insert(name.to_vec(), t);
        // New transports are looked at first, as in the C daemon's list.
        self.transport_order.push_front(t);
        t
    }

    fn queue_find_or_create(&mut self, t: TransportRef, name: &[u8], nexthop: &[u8]) -> DestRef {
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
        }));
        if let Some(x) = self.transports.get_mut(t.0) {
            // New queues go to the end of the round-robin order, as the C daemon does.
            x.queues.push_back(q);
            x.by_name.insert(name.to_vec(), q);
        }
        q
    }

    /// The `retry` transport's queue for a DSN, unless retry itself (or that queue) is dead.
    fn retry_queue(&mut self, dsn: &Dsn) -> Option<DestRef> {
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

    /// The event loop records the deferral and marks the message deferred by the outcome.
    fn defer_recipient(&mut self, m: MessageRef, recipient: Recipient, dsn: Dsn) {
        self.actions.push(Action::DeferRecipient {
            message: m,
            recipient,
            dsn,
        });
    }

    fn entry_create(&mut self, now: u64, q: DestRef, m: MessageRef) -> EntryRef {
        let e = EntryRef(self.entries.insert(Entry {
            message: m,
            queue: q,
            recipients: Vec::new(),
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
    fn clog_warning(&mut self, now: u64, q: DestRef) {
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
    fn transport_select(&mut self) -> Option<TransportRef> {
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

    /// A connection to the transport's agent completed and the agent announced itself: pick
    /// the next destination (round-robin) and its oldest entry. `None`: nothing to send any
    /// more; close the connection.
    pub fn agent_ready(
        &mut self,
        now: u64,
        t: TransportRef,
    ) -> Option<(EntryRef, DeliveryRequest)> {
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
        let request = self.delivery_request(e)?;
        Some((e, request))
    }

    /// The delivery request for a busy entry.
    fn delivery_request(&self, e: EntryRef) -> Option<DeliveryRequest> {
        let entry = self.entries.get(e.0)?;
        let queue = self.queues.get(entry.queue.0)?;
        let msg = self.messages.get(entry.message.0)?;
        let env = &msg.envelope;
        let mut smtputf8 = env.smtputf8 as u32;
        if self.cfg.smtputf8_enable
            && entry
                .recipients
                .iter()
                .any(|r| !r.address.is_ascii() && std::str::from_utf8(&r.address).is_ok())
        {
            smtputf8 |= 8; // SMTPUTF8_FLAG_RECIPIENT
            if env.verp_delimiters.is_some() {
                smtputf8 |= 4; // SMTPUTF8_FLAG_SENDER
            }
        }
        let sender = match (&env.verp_delimiters, entry.recipients.first()) {
            (Some(delims), Some(r)) => route::verp_sender(delims, &env.sender, r),
            _ => env.sender.clone(),
        };
        let default_flags = if env.inspect_transport.is_some() {
            request_flags::BOUNCE
        } else {
            request_flags::SUCCESS | request_flags::BOUNCE
        };
        Some(DeliveryRequest {
            flags: env.trace_flags as u32 | queue.dflags | default_flags,
            queue_name: b"active".to_vec(),
            queue_id: msg.queue_id.clone(),
            data_offset: env.size.data_offset.max(0) as u64,
            data_size: env.size.effective_content_length().max(0) as u64,
            nexthop: queue.nexthop.clone(),
            encoding: env.attrs.encoding().to_vec(),
            smtputf8,
            sender,
            envelope_id: env.attrs.dsn_envid().to_vec(),
            ret_flags: env.dsn_ret as u32,
            stats: MsgStats {
                incoming_arrival: Timeval {
                    sec: env.arrival_time.sec,
                    usec: env.arrival_time.usec,
                },
                active_arrival: msg.active_arrival,
                ..MsgStats::default()
            },
            log_client_name: env.attrs.log_client_name().to_vec(),
            log_client_address: env.attrs.log_client_address().to_vec(),
            log_client_port: env.attrs.log_client_port().to_vec(),
            log_protocol_name: env.attrs.log_protocol_name().to_vec(),
            log_helo_name: env.attrs.log_helo_name().to_vec(),
            sasl_method: env.attrs.sasl_method().to_vec(),
            sasl_username: env.attrs.sasl_username().to_vec(),
            sasl_sender: env.attrs.sasl_sender().to_vec(),
            log_ident: env.attrs.log_ident().to_vec(),
            rewrite_context: env.attrs.rewrite_context().to_vec(),
            recipients: entry.recipients.clone(),
        })
    }

    /// The agent could not be reached or did not announce itself: the transport is dead for
    /// transport_retry_time and its waiting mail goes to `retry`.
    pub fn agent_unavailable(&mut self, now: u64, t: TransportRef) {
        if let Some(x) = self.transports.get_mut(t.0) {
            x.pending = x.pending.saturating_sub(1);
        }
        let dsn = simple_dsn("4.3.0", b"mail transport unavailable");
        self.transport_throttle(now, t, &dsn);
        self.defer_transport(now, t, &dsn);
    }

    /// Writing the request failed: the entry goes back to the head of its queue, the
    /// transport is treated as unavailable.
    pub fn request_failed(&mut self, now: u64, e: EntryRef) {
        let Some(entry) = self.entries.get_mut(e.0) else {
            return;
        };
        entry.busy = false;
        let q = entry.queue;
        let Some(queue) = self.queues.get_mut(q.0) else {
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
            return;
        };
        let (m, q) = (entry.message, entry.queue);
        let Some(t) = self.queues.get(q.0).map(|x| x.transport) else {
            return;
        };
        let crashed = status.is_none();
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

    /// A delivery without hop trouble: revive a dead destination or grow its window (the
    /// C daemon's qmgr_queue_unthrottle).
    fn queue_positive(&mut self, q: DestRef) {
        let Some(queue) = self.queues.get(q.0) else {
            return;
        };
        let Some(limits) = self
            .transports
            .get(queue.transport.0)
            .map(|t| t.limits.clone())
        else {
            return;
        };
        if queue.dead() {
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
    fn log_feedback(&mut self, q: DestRef, myname: &str, feedback: f64) {
        if self.feedback_debug_for(q) {
            self.actions.push(Action::Info(format!(
                "{myname}: feedback {}",
                crate::config::transport::format_g(feedback)
            )));
        }
    }

    /// QMGR_LOG_WINDOW: with destination_concurrency_feedback_debug, a destination's window
    /// after a change (not for the error and retry transports).
    fn log_window(&mut self, q: DestRef, myname: &str) {
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

    fn feedback_debug_for(&self, q: DestRef) -> bool {
        self.cfg.feedback_debug
            && self
                .queues
                .get(q.0)
                .and_then(|queue| self.transports.get(queue.transport.0))
                .is_some_and(|t| t.name != SERVICE_RETRY && t.name != SERVICE_ERROR)
    }

    /// A delivery that reported a hop problem: shrink the window or declare the destination
    /// dead (the C daemon's qmgr_queue_throttle).
    fn queue_throttle(&mut self, now: u64, q: DestRef, dsn: &Dsn) {
        let Some(queue) = self.queues.get(q.0) else {
            return;
        };
        let Some(limits) = self
            .transports
            .get(queue.transport.0)
            .map(|t| t.limits.clone())
        else {
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
            queue.dsn = Some(dsn.clone());
            queue.dflags = 0;
            queue.timer_seq = queue.timer_seq.wrapping_add(1);
            let timer = Timer::ReviveQueue(q, queue.timer_seq);
            self.actions.push(Action::ArmTimer {
                at: now + min_backoff,
                timer,
            });
        }
        const MYNAME: &str = "qmgr_queue_throttle";
        if was_ready && !dead {
            self.log_feedback(q, MYNAME, feedback);
        }
        self.log_window(q, MYNAME);
    }

    /// Revives a dead destination (timer, `F` trigger, a good delivery, FLUSH_EACH).
    fn queue_revive(&mut self, q: DestRef) {
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

    fn transport_throttle(&mut self, now: u64, t: TransportRef, dsn: &Dsn) {
        let retry_time = self.cfg.transport_retry_time;
        let Some(x) = self.transports.get_mut(t.0) else {
            return;
        };
        if x.dead {
            return;
        }
        x.dead = true;
        x.dsn = Some(dsn.clone());
        x.timer_seq = x.timer_seq.wrapping_add(1);
        let timer = Timer::ReviveTransport(t, x.timer_seq);
        self.actions.push(Action::ArmTimer {
            at: now + retry_time,
            timer,
        });
    }

    fn transport_dead_ref(&self, t: TransportRef) -> bool {
        self.transports.get(t.0).is_some_and(|x| x.dead)
    }

    /// Revives a dead transport and releases its rate lock (the C daemon's
    /// qmgr_transport_unthrottle).
    fn transport_revive(&mut self, t: TransportRef) {
        if let Some(x) = self.transports.get_mut(t.0) {
            if x.dead {
                x.dead = false;
                x.dsn = None;
                x.timer_seq = x.timer_seq.wrapping_add(1);
            }
            x.rate_lock = false;
        }
    }

    /// All waiting entries of a dead transport go to `retry` (or are deferred on the spot).
    fn defer_transport(&mut self, now: u64, t: TransportRef, dsn: &Dsn) {
        let queues: Vec<DestRef> = self
            .transports
            .get(t.0)
            .map(|x| x.queues.iter().copied().collect())
            .unwrap_or_default();
        for q in queues {
            self.defer_todo(now, q, dsn);
        }
    }

    /// The waiting entries of a dead destination move to the `retry` queue named after the
    /// DSN, or, when retry is dead too, each recipient is deferred without an agent (the C
    /// daemon's qmgr_defer_todo).
    fn defer_todo(&mut self, now: u64, q: DestRef, dsn: &Dsn) {
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
                        self.actions.push(Action::ReadRecipients(m));
                    }
                }
                None => {
                    let (m, recipients) = match self.entries.get_mut(e.0) {
                        Some(entry) => (entry.message, std::mem::take(&mut entry.recipients)),
                        None => continue,
                    };
                    self.recipient_count = self.recipient_count.saturating_sub(recipients.len());
                    for recipient in recipients {
                        self.defer_recipient(m, recipient, dsn.clone());
                    }
                    // Already off the todo list: finish it without touching queue counts.
                    self.entry_release(now, e, q, false);
                }
            }
        }
        self.queue_maybe_done(q);
    }

    fn entry_done(&mut self, now: u64, e: EntryRef) {
        let Some(entry) = self.entries.get(e.0) else {
            return;
        };
        let q = entry.queue;
        let was_busy = entry.busy;
        if let Some(queue) = self.queues.get_mut(q.0) {
            if was_busy {
                queue.busy = queue.busy.saturating_sub(1);
            } else if let Some(i) = queue.todo.iter().position(|x| *x == e) {
                queue.todo.remove(i);
            }
        }
        self.entry_release(now, e, q, was_busy);
    }

    /// Frees an entry already off its queue's lists and settles the queue and message.
    fn entry_release(&mut self, now: u64, e: EntryRef, q: DestRef, was_busy: bool) {
        let Some(entry) = self.entries.remove(e.0) else {
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
                if let Some(queue) = self.queues.get_mut(q.0) {
                    if queue.ready() {
                        queue.state.window = SUSPENDED;
                        queue.timer_seq = queue.timer_seq.wrapping_add(1);
                        let timer = Timer::ResumeQueue(q, queue.timer_seq);
                        self.actions.push(Action::ArmTimer {
                            at: now + rate_delay,
                            timer,
                        });
                    }
                }
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
        if let Some(msg) = self.messages.get_mut(m.0) {
            msg.refcount = msg.refcount.saturating_sub(1);
            // As qmgr_entry_done: the next batch first, so that a list keeps flowing and its
            // completion (one bounce notice, one trace) runs once, after the last batch.
            if refill {
                self.actions.push(Action::ReadRecipients(m));
            } else if msg.refcount == 0 {
                self.actions.push(Action::MessageDone(m));
            }
        }
    }

    /// qmgr_entry_done's refill test: the message has recipients still unread in its file
    /// and few recipients are in memory.
    fn refill_due(&self, m: MessageRef) -> bool {
        self.recipient_count < self.cfg.refill_below
            && self
                .messages
                .get(m.0)
                .is_some_and(|msg| msg.envelope.resume_offset.is_some())
    }

    /// A ready, empty destination is forgotten; dead ones stay as the status cache.
    fn queue_maybe_done(&mut self, q: DestRef) {
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

    /// For tests and status output: a destination's window and counts.
    pub fn queue_status(&self, transport: &[u8], name: &[u8]) -> Option<QueueStatus> {
        let t = self.transport_by_name.get(transport)?;
        let q = self.transports.get(t.0)?.by_name.get(name)?;
        let queue = self.queues.get(q.0)?;
        Some(QueueStatus {
            window: queue.state.window,
            todo: queue.todo.len(),
            busy: queue.busy as usize,
            dead_reason: queue.dsn.as_ref().map(|d| d.reason.clone()),
        })
    }

    /// `<transport>_transport_rate_delay` in seconds, once the transport is known.
    pub fn transport_rate_delay(&self, transport: &[u8]) -> Option<u64> {
        let t = self.transport_by_name.get(transport)?;
        let x = self.transports.get(t.0)?;
        u64::try_from(x.limits.transport_rate_delay).ok()
    }

    /// Whether a transport is dead (unavailable agent).
    pub fn transport_dead(&self, transport: &[u8]) -> bool {
        self.transport_by_name
            .get(transport)
            .and_then(|t| self.transports.get(t.0))
            .is_some_and(|x| x.dead)
    }
}

/// A snapshot of one destination queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStatus {
    pub window: i32,
    pub todo: usize,
    pub busy: usize,
    pub dead_reason: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests;
