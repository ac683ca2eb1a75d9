//! The scheduler: oqmgr's in-memory active queue as a pure state machine.
//!
//! It knows messages, the entries (recipient groups) they are split into, the destination
//! queues those entries wait in, and the transports that own the queues. It takes events with
//! a `now` (seconds) — a message was read and resolved, a delivery agent is ready, an agent
//! replied, a notice was sent, a deadline passed — and answers with [`Action`]s for the event
//! loop to carry out: connect to a transport, ask for a notice, read the next recipient
//! batch, log a line, remove or defer a queue file. It keeps its own deadlines
//! ([`Scheduler::poll_timeout`]). It never touches a socket, a file or the clock, and its
//! randomness comes in as a seed ([`SchedConfig::random_seed`]), so weeks of scheduling are
//! tested in milliseconds, reproducibly ([`Scheduler::check_invariants`] after every step).
//!
//! One file per concern, as the C daemon's src/oqmgr: `message` (qmgr_message.c),
//! `entry` (qmgr_entry.c), `queue` (qmgr_queue.c), `transport` (qmgr_transport.c), `deliver`
//! (qmgr_deliver.c), `defer` (qmgr_defer.c), `timer` (qmgr_enable.c and the timers),
//! [`complete`] (qmgr_active.c's completion), [`feedback`] (qmgr_feedback.c), [`route`]
//! (qmgr_message.c's resolve and sort helpers). Ours alone: [`memory`], what survives a
//! restart with oqmgr_remember_destinations, and [`random`], the seeded generator behind
//! oqmgr_backoff_jitter.
//!
//! A message's life, step by step:
//!
//! | step | event loop | scheduler | C daemon |
//! |---|---|---|---|
//! | a queue file enters active/ and is read | `daemon::import` | [`Scheduler::add_message`] | qmgr_active_feed, qmgr_message_alloc |
//! | its recipients are resolved and grouped | trivial-rewrite client | [`Scheduler::assign`] | qmgr_message_resolve, qmgr_message_assign |
//! | connections for waiting work | [`Action::Connect`] | [`Scheduler::drain`] | qmgr_active_drain, qmgr_transport_select |
//! | an agent announced itself: the next entry | `daemon::deliver` | [`Scheduler::agent_ready`] | qmgr_transport_event, qmgr_queue_select, qmgr_entry_select, qmgr_deliver |
//! | the agent's reply | `daemon::deliver` | [`Scheduler::agent_reply_scan`] | qmgr_deliver_update |
//! | the entry is done; more recipients? | [`Action::ReadRecipients`] | [`Scheduler::batch_read`] | qmgr_entry_done, qmgr_message_realloc |
//! | no agent: transport or destination dead | [`Action::DeferRecipient`] | [`Scheduler::agent_unavailable`] | qmgr_transport_throttle, qmgr_defer_transport, qmgr_defer_todo |
//! | back-off over | (poll timeout) | [`Scheduler::handle_timeout`] | qmgr_transport_unthrottle_wrapper, qmgr_queue_unthrottle_wrapper |
//! | last entry done: notices, then unlink or defer | [`Action::Notify`], [`Action::Remove`], [`Action::MoveToDeferred`] | [`complete`] | qmgr_active_done and its continuations |
//!
//! The strategies are Postfix's oqmgr's: round-robin over transports and over the destinations
//! of a transport, per-destination concurrency windows with slow start and feedback
//! ([`feedback`]), failed cohorts that declare a destination dead, dead destinations and
//! transports parked behind the `retry` transport until their back-off timer revives them, and
//! a destination status cache in the form of dead queues that outlive their last entry.

pub mod complete;
mod defer;
mod deliver;
mod entry;
pub mod feedback;
mod invariants;
pub mod memory;
mod message;
mod queue;
pub mod random;
pub mod route;
mod status;
pub use crate::slab;
mod timer;
mod transport;

use std::collections::{HashMap, VecDeque};

use crate::config::transport::TransportParams;
use crate::proto::bounce::FlushRequest;
use crate::proto::dsn::Dsn;
use crate::proto::recipient::Recipient;
use crate::queue::record::{Patch, SizeRecord};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageRef(Id);
/// A group of recipients of one message for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryRef(Id);
/// A destination queue (transport + next hop, or per-recipient for limit-1 transports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestRef(Id);
/// A transport (a master.cf delivery service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// The completion chain's time limits.
    pub lifetimes: complete::Lifetimes,
    /// disable_verp_bounces: one bounce notice for all recipients of a VERP message.
    pub disable_verp_bounces: bool,
    /// info_log_address_format = internal: addresses in log lines are not quoted.
    pub log_address_internal: bool,
    /// oqmgr_backoff_jitter: a deferred message's back-off is stretched or shrunk by a
    /// random factor within ± this percent (0: the C daemon's back-off exactly).
    pub backoff_jitter: u32,
    /// The seed of the scheduler's [`random::SplitMix64`]: the daemon's varies per process,
    /// a test's is fixed so that its run repeats.
    pub random_seed: u64,
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
            lifetimes: complete::Lifetimes::from_params(p),
            disable_verp_bounces: p.disable_verp_bounces,
            log_address_internal: p.info_log_address_format.eq_ignore_ascii_case(b"internal"),
            backoff_jitter: u32::try_from(p.oqmgr_backoff_jitter).unwrap_or(0),
            random_seed: 0,
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
            lifetimes: complete::Lifetimes {
                max_queue_lifetime: 5 * 86400,
                bounce_queue_lifetime: 5 * 86400,
                min_backoff: 300,
                max_backoff: 4000,
            },
            disable_verp_bounces: false,
            log_address_internal: false,
            backoff_jitter: 0,
            random_seed: 0,
        }
    }
}

/// Which bounce-daemon service a notice request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeService {
    /// bounce_service_name.
    Bounce,
    /// defer_service_name.
    Defer,
    /// trace_service_name.
    Trace,
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
    /// Record a deferral without a delivery agent (defer_append: the retry service is dead);
    /// report the record's status with [`Scheduler::recorded`].
    DeferRecipient {
        message: MessageRef,
        recipient: Recipient,
        dsn: Dsn,
    },
    /// A double-bounce to the local double-bounce address: log it `sent` (discarded) and mark
    /// the recipient done in the file; report the record's status with
    /// [`Scheduler::recorded`].
    DiscardRecipient {
        message: MessageRef,
        recipient: Recipient,
    },
    /// A `warning:` line.
    Warn(String),
    /// An informational line (destination_concurrency_feedback_debug).
    Info(String),
    /// The completion chain begins (qmgr_active_done): does the message have a bounce log?
    /// Report with [`Scheduler::bounce_log_checked`].
    CheckBounceLog {
        message: MessageRef,
        queue_id: Vec<u8>,
    },
    /// A deferred message's file might have been marked corrupt by an agent: is it still
    /// usable (mail_open_ok)? Report with [`Scheduler::queue_file_checked`].
    CheckQueueFile {
        message: MessageRef,
        queue_id: Vec<u8>,
    },
    /// Ask bounce(8), defer(8) or trace(8) for a notice; report its status with
    /// [`Scheduler::notice_done`].
    Notify {
        message: MessageRef,
        service: NoticeService,
        /// Boxed: a large request would make every action as large.
        request: Box<FlushRequest>,
    },
    /// Read the recipient batch that starts at `start` (qmgr_message_realloc): report with
    /// [`Scheduler::batch_read`] (then route the batch and [`Scheduler::assign`] it) or
    /// [`Scheduler::batch_unreadable`].
    ReadRecipients {
        message: MessageRef,
        queue_id: Vec<u8>,
        size: SizeRecord,
        start: u64,
    },
    /// Update the queue file in place (a trace record killed, the delay warning marked sent).
    Patch { queue_id: Vec<u8>, patch: Patch },
    /// The message is done and forgotten: unlink its file (`removed`).
    Remove { queue_id: Vec<u8> },
    /// The message is done and forgotten: back to deferred/, not to be tried before `until`.
    MoveToDeferred { queue_id: Vec<u8>, until: u64 },
    /// The message is forgotten: its file goes to corrupt/.
    Corrupt { queue_id: Vec<u8> },
}

use entry::Entry;
pub use message::Message;
use queue::{DestQueue, SUSPENDED};
use timer::Timer;
use transport::Transport;

/// The per-transport parameter lookup: pure (configuration data in, limits out).
pub type LimitsLookup = Box<dyn Fn(&[u8]) -> TransportParams>;

/// The active queue.
///
/// # Calling contract
///
/// The scheduler is driven by the event loop, which owns the clock and all I/O, in the manner
/// of `quinn_proto::Connection`:
///
/// - **Inputs**, each with the loop's `now` (seconds since the epoch) where time matters:
///   messages ([`add_message`](Self::add_message), then [`assign`](Self::assign) once their
///   recipients are routed), agents ([`agent_ready`](Self::agent_ready),
///   [`agent_unavailable`](Self::agent_unavailable), [`request_failed`](Self::request_failed),
///   [`agent_reply_scan`](Self::agent_reply_scan)), results of earlier actions
///   ([`recorded`](Self::recorded), [`bounce_log_checked`](Self::bounce_log_checked),
///   [`queue_file_checked`](Self::queue_file_checked), [`notice_done`](Self::notice_done),
///   [`batch_read`](Self::batch_read), [`batch_unreadable`](Self::batch_unreadable)),
///   triggers ([`revive_all`](Self::revive_all)) and time
///   ([`handle_timeout`](Self::handle_timeout)).
/// - **Outputs**: after any input, [`take_actions`](Self::take_actions) until it is empty,
///   carrying the actions out in order (an action's result may be reported at once, from
///   within that loop, or later). Once per loop pass, [`drain`](Self::drain) asks for the
///   connections that waiting work needs. Before sleeping,
///   [`poll_timeout`](Self::poll_timeout) says when to call
///   [`handle_timeout`](Self::handle_timeout) at the latest.
/// - **Pairing**: every [`Action::Connect`] is answered once, by `agent_ready` or
///   `agent_unavailable`; every delivery `agent_ready` hands out ends in `agent_reply_scan`
///   or `request_failed`; every action that asks a question (`CheckBounceLog`,
///   `CheckQueueFile`, `Notify`, `ReadRecipients`) is answered once by its result call.
///   Answers out of turn are ignored (and assert in debug builds).
/// - After [`Action::Remove`], [`Action::MoveToDeferred`] or [`Action::Corrupt`] the message
///   is forgotten: its [`MessageRef`] is stale and any later input for it is ignored.
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
    /// The scheduler's own timers (back-off, transport retry, rate delay).
    deadlines: timer::Deadlines,
    /// Randomness for the back-off jitter, from [`SchedConfig::random_seed`].
    random: random::SplitMix64,
    /// Remembered windows of destinations not in memory yet ([`memory`]).
    window_hints: memory::WindowHints,
}

/// A DSN with only a status and a reason (Postfix's DSN_SIMPLE).
fn simple_dsn(status: &str, reason: &[u8]) -> Dsn {
    Dsn {
        status: status.as_bytes().to_vec(),
        reason: reason.to_vec(),
        ..Dsn::default()
    }
}

/// The `retry`/`error` queue name for a DSN: `"<status> <reason>"` (qmgr_error_nexthop).
fn error_nexthop(dsn: &Dsn) -> Vec<u8> {
    let mut n = dsn.status.clone();
    n.push(b' ');
    n.extend_from_slice(&dsn.reason);
    n
}

impl Scheduler {
    pub fn new(cfg: SchedConfig, limits: LimitsLookup) -> Scheduler {
        Scheduler {
            random: random::SplitMix64::new(cfg.random_seed),
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
            deadlines: timer::Deadlines::default(),
            window_hints: memory::WindowHints::default(),
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
mod simulation;
#[cfg(test)]
mod tests;
