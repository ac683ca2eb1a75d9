//! The event loop: one mio poll over the trigger listener and its parked clients, master's
//! status socket, the watchdog's wake-up pipe, the trivial-rewrite connection, every
//! delivery-agent and bounce/defer/trace connection, and `private/oqmgr-status` with its
//! clients; timers decide the poll timeout. It owns all I/O and the clock, feeds the scheduler ([`crate::sched`]) and
//! carries out its actions.
//!
//! Each iteration mirrors the C daemon's `qmgr_loop`: start deliveries, import at most one
//! message from the queue scans (incoming and deferred alternate), settle the flow-control
//! tokens, then wait for events.

mod complete;
pub mod conn;
mod deliver;
mod import;
pub mod memory;
mod notify;
mod peers;
mod proxymap;
pub mod rewrite;
mod status_clients;
mod status_server;
mod table_watch;
mod tables;
pub mod timers;
mod triggers;

// An agent's final reply is outside input: the fuzz targets (fuzz/) feed it to this scanner.
pub use deliver::{scan_final_reply, ScannedReply};

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::config::transport::{TransportNotice, TransportParams};
use crate::config::{Config, Params};
use crate::maillog;
use crate::master::fds::{self, MasterChannels};
use crate::master::options::{DaemonOptions, ServiceType};
use crate::master::watchdog::Watchdog;
use crate::master::{flow, trigger};
use crate::queue::file::QueueDir;
use crate::queue::path::{DEFERRED, INCOMING};
use crate::queue::scan::Scan;
use crate::queue::scan_flags;
use crate::sched::{Action, LimitsLookup, MessageRef, SchedConfig, Scheduler};

use rewrite::RewriteClient;
use timers::Timers;

const LISTEN: Token = Token(0);
const STATUS: Token = Token(1);
const WATCHDOG: Token = Token(2);
const REWRITE: Token = Token(3);
/// The status socket, then its clients at `FIRST_STATUS_CLIENT + slot` (see [`status_server`]).
const STATUS_SERVER: Token = Token(4);
const FIRST_STATUS_CLIENT: usize = 16;
/// Trigger clients that have sent nothing yet: `FIRST_PARKED_TRIGGER + slot` (see [`triggers`]).
const FIRST_PARKED_TRIGGER: usize = 32;
/// Tokens from here on are peer connections: `FIRST_PEER + slot` (see [`peers`]).
const FIRST_PEER: usize = 48;

/// Scan rounds that import nothing, run in one loop pass before polling for events (each
/// costs about an lstat(): 100 keep the loop's answer to events well under a millisecond).
const SKIP_ROUNDS: usize = 100;

/// Seconds since the epoch: the scheduler's clock.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now_timeval() -> crate::proto::msg_stats::Timeval {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    crate::proto::msg_stats::Timeval {
        sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        usec: i64::from(d.subsec_micros()),
    }
}

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    /// Every queue_run_delay: scan deferred/.
    DeferredScan,
    /// A connection's time limit.
    Peer(peers::PeerId, peers::PeerTimer),
    /// A failed connect to a rate-delayed transport: unavailable once the delay is over.
    AgentUnavailable {
        transport: crate::sched::TransportRef,
    },
    /// A status client's time limit.
    StatusClient(status_server::ClientId),
    /// A parked trigger client's wait.
    ParkedTrigger(triggers::ParkedId),
    /// oqmgr_remember_destinations: save what changed.
    MemoryCheckpoint,
}

/// Everything the daemon owns.
pub struct Daemon {
    poll: Poll,
    master: MasterChannels,
    service_type: ServiceType,
    watchdog: Option<Watchdog>,
    pid: i32,
    generation: u32,
    /// A leftover argv word: fatal at the first trigger, as in the C daemon.
    unexpected_argument: Option<String>,
    params: Params,
    qdir: QueueDir,
    sched: Scheduler,
    incoming: Scan,
    deferred: Scan,
    /// Which scan the next import tries first (0 incoming, 1 deferred).
    first_scan: usize,
    rewrite: RewriteClient<import::RewriteTag>,
    peers: peers::Peers,
    timers: Timers<TimerKind>,
    /// Messages whose recipients are being routed: at most one new import (see `loop_hook`),
    /// plus next batches of large messages (`read_next_batch`).
    loading: HashMap<MessageRef, import::Loading>,
    /// Their rewrite queries not yet handed to the client.
    pending: std::collections::VecDeque<import::PendingQuery>,
    master_gone: bool,
    /// The trigger listener still had work when the last pass stopped.
    trigger_backlog: bool,
    /// Trigger clients that have sent nothing yet.
    parked: triggers::ParkedTriggers,
    /// Read from the transport table at first use, like the C daemon.
    recipient_cap: usize,
    /// fast_flush_domains, for deferrals recorded without an agent.
    flush_domains: status_clients::FlushDomains,
    /// The proxymap connection of `proxy:` tables, when the lists name any: closed by a
    /// timer when idle.
    proxymap: Option<std::sync::Arc<proxymap::ProxyClient>>,
    /// Lookup tables whose change restarts the process.
    tables: table_watch::TableWatch,
    /// `private/oqmgr-status` and its clients.
    status: status_server::StatusServer,
    /// data_directory, when destinations are remembered across restarts.
    memory: Option<memory::MemoryStore>,
    /// Where delivery requests are built, kept between requests so building one allocates
    /// nothing (only a request the socket does not take at once is copied to its connection).
    request_buf: Vec<u8>,
}

/// How the daemon was started.
pub struct Startup {
    pub options: DaemonOptions,
    pub config: Config,
    pub params: Params,
    pub master: MasterChannels,
    pub generation: u32,
    pub pre_jail: PreJail,
}

/// What the C daemon sets up as root, before the privilege drop and chroot: the
/// fast_flush_domains list (flush_init, reading its `/file` patterns and, through postmap, its
/// fixed-string tables), and the lookup tables of that list and of mydestination
/// (resolve_local_init), watched for changes; `proxy:` tables of either are opened through
/// proxymap(8), whose connection stays open for their lookups. And ours:
/// data_directory, which a chrooted process could not reach later (oqmgr_remember_destinations).
pub struct PreJail {
    flush_domains: status_clients::FlushDomains,
    proxymap: Option<std::sync::Arc<proxymap::ProxyClient>>,
    tables: table_watch::TableWatch,
    memory: Option<memory::MemoryStore>,
}

/// The pre-jail initialisation (see [`PreJail`]).
pub fn pre_jail_init(config: &Config, params: &Params) -> PreJail {
    let mut opener = tables::Opener::new(config, params);
    let flush_domains = status_clients::FlushDomains::init(config, params, &mut opener);
    // Parsed, with resolve_local_init's warnings, for its table names: mydestination is not
    // otherwise used here, so its tables are only checked (what opening them logs), not read.
    let mydestination = match crate::config::domain_list::DomainList::parse(
        "mydestination",
        &params.mydestination,
        false,
    ) {
        Ok((list, warnings)) => {
            for w in warnings {
                warn!("{w}");
            }
            list
        }
        Err(e) => fatal(&e.to_string()),
    };
    for table in mydestination.tables() {
        opener.check(table);
    }
    let tables =
        table_watch::TableWatch::open(mydestination.tables().chain(flush_domains.tables()));
    let memory =
        memory::MemoryStore::open(params.oqmgr_remember_destinations, &params.data_directory);
    PreJail {
        flush_domains,
        proxymap: opener.proxy_client(),
        tables,
        memory,
    }
}

fn fatal(text: &str) -> ! {
    maillog::fatal(text)
}

impl Daemon {
    /// Post-init (after the privilege drop): recover active/, start both scans and the
    /// deferred-scan timer, register the master descriptors.
    pub fn new(startup: Startup) -> Daemon {
        let Startup {
            options,
            config,
            params,
            master,
            generation,
            pre_jail,
        } = startup;
        let paths = match crate::queue::path::QueuePaths::new(
            &params.hash_queue_names,
            i64::from(params.hash_queue_depth),
        ) {
            Ok(p) => p,
            Err(e) => fatal(&e.to_string()),
        };
        let qdir = QueueDir::new(PathBuf::new(), paths).with_dont_remove(params.dont_remove != 0);
        let poll = match Poll::new() {
            Ok(p) => p,
            Err(e) => fatal(&format!("poll: {}", maillog::strerror(&e))),
        };
        // The back-off jitter's seed: clock and pid, so each queue manager draws its own sequence.
        let random_seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        let sched_cfg = SchedConfig {
            random_seed,
            ..SchedConfig::from_params(&params)
        };
        let limits = transport_lookup(config, params.clone());
        let now = now_secs();
        recover_active(&qdir, now);
        let incoming = qdir.scan(INCOMING);
        let deferred = qdir.scan(DEFERRED);
        let secs = |v: i32| Duration::from_secs(u64::try_from(v).unwrap_or(0));
        let recipient_cap = crate::queue::envelope::recipient_cap(
            i64::from(params.qmgr_message_recipient_limit),
            i64::from(params.qmgr_fudge_factor),
        );
        let mut sched = Scheduler::new(sched_cfg, limits);
        // Before any message: remembered dead destinations catch their mail from the start.
        if let Some(remembered) = pre_jail.memory.as_ref().and_then(|m| m.load()) {
            sched.import_memory(now, remembered);
        }
        let mut daemon = Daemon {
            poll,
            master,
            service_type: options.service_type.unwrap_or(ServiceType::Unix),
            watchdog: None,
            pid: i32::try_from(std::process::id()).unwrap_or(0),
            generation,
            unexpected_argument: options.unexpected_argument(),
            rewrite: RewriteClient::new(
                REWRITE,
                &String::from_utf8_lossy(&params.rewrite_service_name),
                secs(params.ipc_idle),
                secs(params.ipc_ttl),
                secs(params.ipc_timeout),
            ),
            params,
            qdir,
            sched,
            incoming,
            deferred,
            first_scan: 0,
            peers: peers::Peers::default(),
            timers: Timers::default(),
            loading: HashMap::new(),
            pending: std::collections::VecDeque::new(),
            master_gone: false,
            trigger_backlog: false,
            parked: triggers::ParkedTriggers::default(),
            recipient_cap,
            flush_domains: pre_jail.flush_domains,
            proxymap: pre_jail.proxymap,
            tables: pre_jail.tables,
            status: status_server::StatusServer::new(now),
            memory: pre_jail.memory,
            request_buf: Vec::new(),
        };
        daemon.register_master();
        daemon.open_status_socket();
        daemon.scan_request(INCOMING, scan_flags::SCAN_START);
        daemon.scan_request(DEFERRED, scan_flags::SCAN_START);
        daemon.arm_deferred_scan();
        if daemon.memory.is_some() {
            daemon.arm_after(memory::CHECKPOINT_INTERVAL, TimerKind::MemoryCheckpoint);
        }
        daemon.watchdog = match Watchdog::create(
            u32::try_from(daemon.params.qmgr_daemon_timeout).unwrap_or(1000),
        ) {
            Ok(w) => {
                let fd = w.wake_fd();
                if let Err(e) = daemon.poll.registry().register(
                    &mut SourceFd(&fd),
                    WATCHDOG,
                    Interest::READABLE,
                ) {
                    fatal(&format!("watchdog: {}", maillog::strerror(&e)));
                }
                Some(w)
            }
            Err(e) => fatal(&e.to_string()),
        };
        daemon
    }

    fn register_master(&mut self) {
        let registry = self.poll.registry();
        for fd in self.master.listen_fds() {
            if let Err(e) = registry.register(&mut SourceFd(&fd), LISTEN, Interest::READABLE) {
                fatal(&format!("register listener: {}", maillog::strerror(&e)));
            }
        }
        let status = self.master.status_fd();
        if let Err(e) = registry.register(&mut SourceFd(&status), STATUS, Interest::READABLE) {
            fatal(&format!("register status: {}", maillog::strerror(&e)));
        }
    }

    /// Runs until master goes away (reload or stop), then exits 0.
    pub fn run(mut self) -> ! {
        let mut events = Events::with_capacity(256);
        if let Some(w) = &self.watchdog {
            w.start();
        }
        loop {
            // As the C trigger server's loop (watchdog_start before each qmgr_loop and
            // event_loop): a pass that gets stuck dies a full qmgr_daemon_timeout after it
            // began, whatever the alarm's phase (the stamp costs no system call).
            if let Some(w) = &self.watchdog {
                w.pass();
            }
            let now = now_secs();
            if self.trigger_backlog {
                self.on_trigger();
            }
            let produced = self.loop_hook(now);
            let timeout = if produced || self.trigger_backlog {
                Some(Duration::ZERO)
            } else {
                self.poll_timeout()
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    fatal(&format!("event loop: {}", maillog::strerror(&e)));
                }
            }
            // Master's hang-up comes first, as in the C trigger server (whose status descriptor
            // is served before the listener): a wake-up master sends to the next queue manager
            // at a reload must not be taken by this one on its way out, or no new queue manager
            // starts until the next wake-up.
            if events.iter().any(|e| e.token() == STATUS) && fds::master_gone(self.master_status())
            {
                self.master_gone = true;
            }
            for event in events.iter() {
                if self.master_gone {
                    break;
                }
                self.dispatch(event.token(), conn::Readiness::of(event));
            }
            if !self.master_gone {
                self.fire_timers();
            }
            if self.master_gone {
                // Master closed the status socket: reload or stop. Mail in flight stays in
                // active/ and is taken up again by the next queue manager, which may also
                // take up what this one learned about destinations.
                if let Some(store) = &mut self.memory {
                    store.save(&self.sched.export_memory(now_secs()));
                }
                std::process::exit(0);
            }
        }
    }

    /// One `qmgr_loop` pass. Returns true when a scan produced a name (do not wait).
    fn loop_hook(&mut self, now: u64) -> bool {
        self.sched.drain();
        self.run_actions(now);
        let mut produced = false;
        let mut imported = false;
        let mut imported_from_incoming = false;
        // Like the C daemon, whose resolving is synchronous, take the next message only when
        // the previous one is routed: the active queue then grows only as fast as it drains,
        // instead of filling up to qmgr_message_active_limit while trivial-rewrite catches up.
        //
        // Each round is one pass of the C daemon's qmgr_loop over the two scans. A round that
        // only skips names (not yet due, not ready, gone) changes nothing but the scans, so
        // up to SKIP_ROUNDS of them run back to back before the poll looks for events: a scan
        // of deferred mail that is not due costs an lstat() per file, not an lstat() and a
        // zero-timeout epoll_wait().
        for _ in 0..SKIP_ROUNDS {
            if !self.loading.is_empty() {
                break;
            }
            let mut round_produced = false;
            let mut last = (self.first_scan + 1) % 2;
            for i in 0..2 {
                if !self.can_import() {
                    break;
                }
                let idx = (self.first_scan + i) % 2;
                last = idx;
                if let Some((name, flags)) = self.scan_next(idx) {
                    round_produced = true;
                    if self.import(now, idx, &name, flags) {
                        imported = true;
                        imported_from_incoming = idx == 0;
                        break;
                    }
                }
            }
            self.first_scan = if self.can_import() { (last + 1) % 2 } else { 0 };
            produced |= round_produced;
            if imported || !round_produced {
                break;
            }
        }
        self.run_actions(now);
        self.pump_rewrite();
        self.flow_tokens(imported_from_incoming);
        // While the imported message is being routed this zero-timeout pass finds nothing to
        // import, but it is cheaper than going to sleep at once: trivial-rewrite's answer is
        // often in by the blocking poll after it (blocking at once measured 5-10 % more CPU
        // on a restart with 20000 messages to route).
        produced
    }

    /// The active-queue limits.
    fn can_import(&self) -> bool {
        self.sched.can_import()
    }

    fn scan_next(&mut self, idx: usize) -> Option<(Vec<u8>, u8)> {
        let scan = if idx == 0 {
            &mut self.incoming
        } else {
            &mut self.deferred
        };
        match scan.next_entry() {
            Ok(Some(entry)) => Some((entry.name, entry.flags)),
            Ok(None) => None,
            Err(e) => fatal(&e.to_string()),
        }
    }

    fn scan_request(&mut self, queue: &str, flags: u8) {
        let scan = if queue == INCOMING {
            &mut self.incoming
        } else {
            &mut self.deferred
        };
        if let Err(e) = scan.request(flags) {
            fatal(&e.to_string());
        }
    }

    /// Global flow control: hand cleanup(8) tokens as the C daemon does.
    fn flow_tokens(&mut self, imported_from_incoming: bool) {
        if self.params.in_flow_delay <= 0 {
            return;
        }
        let limit = usize::try_from(self.params.default_process_limit).unwrap_or(100);
        let Ok(count) = self.master.flow_count() else {
            return;
        };
        match flow::tokens_to_move(
            count,
            limit,
            imported_from_incoming,
            self.incoming.running(),
        ) {
            flow::FlowAction::Put(n) => {
                let _ = self.master.flow_put(n);
            }
            flow::FlowAction::Get(n) => {
                let _ = self.master.flow_get(n);
            }
            flow::FlowAction::None => {}
        }
    }

    fn poll_timeout(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let mut timeout = self.timers.timeout(now);
        if let Some(at) = self.sched.poll_timeout() {
            // Until the wall clock reaches the deadline's second: the scheduler's clock.
            let d = (UNIX_EPOCH + Duration::from_secs(at))
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            timeout = Some(timeout.map_or(d, |t| t.min(d)));
        }
        // The rewrite client's own times (as C's event timers): a retry, the server's time
        // limit, and the ipc_idle/ipc_ttl close of an idle connection; no polling.
        for at in [
            self.rewrite.retry_at,
            self.rewrite.deadline(),
            self.rewrite.expire_at(),
        ]
        .into_iter()
        .flatten()
        .chain(self.proxymap.as_ref().and_then(|p| p.expire_at()))
        {
            let d = at.saturating_duration_since(now);
            timeout = Some(timeout.map_or(d, |t| t.min(d)));
        }
        timeout
    }

    fn dispatch(&mut self, token: Token, ready: conn::Readiness) {
        match token {
            LISTEN => self.on_trigger(),
            STATUS if fds::master_gone(self.master_status()) => self.master_gone = true,
            STATUS => {}
            WATCHDOG => {
                if let Some(w) = &self.watchdog {
                    w.drain();
                }
            }
            REWRITE => self.on_rewrite_ready(now_secs(), ready.hangup),
            STATUS_SERVER => self.on_status_listener(),
            Token(t) if (FIRST_STATUS_CLIENT..FIRST_PARKED_TRIGGER).contains(&t) => {
                self.on_status_client(t - FIRST_STATUS_CLIENT)
            }
            Token(t) if (FIRST_PARKED_TRIGGER..FIRST_PEER).contains(&t) => {
                self.on_parked_trigger(t - FIRST_PARKED_TRIGGER)
            }
            Token(t) if t >= FIRST_PEER => self.on_peer_ready(t - FIRST_PEER, ready),
            _ => {}
        }
    }

    fn master_status(&self) -> BorrowedFd<'_> {
        // SAFETY: the status descriptor is owned by `self.master` and stays open for as long as
        // the returned borrow (tied to `&self`) lives.
        unsafe { BorrowedFd::borrow_raw(self.master.status_fd()) }
    }

    fn fire_timers(&mut self) {
        // The scheduler's deadlines are in epoch seconds, as its clock.
        let secs = now_secs();
        if self.sched.poll_timeout().is_some_and(|at| at <= secs) {
            self.sched.handle_timeout(secs);
            self.run_actions(secs);
        }
        let now = Instant::now();
        if let Some(proxymap) = &self.proxymap {
            proxymap.expire(now);
        }
        while let Some(kind) = self.timers.pop_due(now) {
            match kind {
                TimerKind::DeferredScan => {
                    self.scan_request(DEFERRED, scan_flags::SCAN_START);
                    self.arm_deferred_scan();
                }
                TimerKind::Peer(id, timer) => self.on_peer_timer(id, timer),
                TimerKind::MemoryCheckpoint => {
                    if let Some(store) = &mut self.memory {
                        store.checkpoint(&self.sched.export_memory(now_secs()));
                    }
                    self.arm_after(memory::CHECKPOINT_INTERVAL, TimerKind::MemoryCheckpoint);
                }
                TimerKind::AgentUnavailable { transport } => {
                    self.agent_unavailable_after_delay(transport)
                }
                TimerKind::StatusClient(id) => self.status_client_timeout(id),
                TimerKind::ParkedTrigger(id) => self.parked_trigger_timeout(id),
            }
        }
    }

    /// The next periodic scan of deferred/, queue_run_delay from now (remembered for status).
    fn arm_deferred_scan(&mut self) {
        let delay = u64::try_from(self.params.queue_run_delay).unwrap_or(300);
        self.arm_after(delay, TimerKind::DeferredScan);
        self.status.next_deferred_scan = now_secs() + delay;
    }

    fn arm_after(&mut self, secs: u64, kind: TimerKind) -> timers::TimerId {
        self.timers
            .arm(Instant::now() + Duration::from_secs(secs), kind)
    }

    /// Carries out what the scheduler asked for.
    fn run_actions(&mut self, now: u64) {
        loop {
            let actions = self.sched.take_actions();
            if actions.is_empty() {
                return;
            }
            for action in actions {
                match action {
                    Action::Connect { transport, name } => {
                        self.connect_agent(now, transport, &name)
                    }
                    Action::Warn(text) => warn!("{text}"),
                    Action::Info(text) => info!("{text}"),
                    Action::DeferRecipient {
                        message,
                        recipient,
                        dsn,
                    } => self.defer_recipient(message, &recipient, &dsn),
                    Action::DiscardRecipient { message, recipient } => {
                        self.discard_recipient(message, &recipient)
                    }
                    Action::CheckBounceLog { message, queue_id } => {
                        self.check_bounce_log(now, message, &queue_id)
                    }
                    Action::CheckQueueFile { message, queue_id } => {
                        self.check_queue_file(now, message, &queue_id)
                    }
                    Action::Notify {
                        message,
                        service,
                        request,
                    } => self.notify(now, message, service, &request),
                    Action::ReadRecipients {
                        message,
                        queue_id,
                        size,
                        start,
                    } => self.read_batch(now, message, &queue_id, size, start),
                    Action::Patch { queue_id, patch } => self.patch_file(&queue_id, &patch),
                    Action::Remove { queue_id } => self.remove_file(&queue_id),
                    Action::MoveToDeferred { queue_id, until } => {
                        self.defer_file(now, &queue_id, until)
                    }
                    Action::Corrupt { queue_id } => self.corrupt_file(&queue_id),
                }
            }
        }
    }
}

/// `-S`: what the C trigger server does with one request on standard input: the post-init
/// step (active/ back to incoming/), the request (which only records scan wishes for a loop
/// that never runs), exit 0.
pub fn stand_alone(options: &DaemonOptions, params: &Params) -> ! {
    let paths = crate::queue::path::QueuePaths::new(
        &params.hash_queue_names,
        i64::from(params.hash_queue_depth),
    )
    .unwrap_or_else(|e| fatal(&e.to_string()));
    let qdir = QueueDir::new(PathBuf::new(), paths);
    recover_active(&qdir, now_secs());
    // The rest of the C daemon's post-init: both scans start (a missing queue is fatal).
    for queue in [INCOMING, DEFERRED] {
        if let Err(e) = qdir.scan(queue).request(scan_flags::SCAN_START) {
            fatal(&e.to_string());
        }
    }
    let stdin = std::io::stdin();
    let request = fds::read_stand_alone(std::os::fd::AsFd::as_fd(&stdin))
        .unwrap_or_else(|e| fatal(&e.to_string()));
    if let Some(text) = options.unexpected_argument() {
        fatal(&text);
    }
    let _ = trigger::parse(&request);
    std::process::exit(0)
}

/// The per-transport parameter lookup for the scheduler: read once per transport name; a bad
/// value is fatal, as in the C daemon.
fn transport_lookup(config: Config, params: Params) -> LimitsLookup {
    Box::new(move |name: &[u8]| {
        let name = String::from_utf8_lossy(name);
        match TransportParams::lookup(&config, &params, &name) {
            Ok((limits, notices)) => {
                for notice in notices {
                    match notice {
                        TransportNotice::Warning(w) => warn!("{w}"),
                        TransportNotice::Info(text) => info!("{text}"),
                    }
                }
                limits
            }
            Err(e) => fatal(&e.to_string()),
        }
    })
}

/// Post-init: active/ back to incoming/, logging as it goes; a failure is fatal.
fn recover_active(qdir: &QueueDir, now: u64) {
    let mut note = |note: crate::queue::file::RecoverNote| match note {
        crate::queue::file::RecoverNote::Warning(w) => warn!("{w}"),
        crate::queue::file::RecoverNote::Renamed(r) => log_renamed(&r),
    };
    if let Err(e) = qdir.recover_active(i64::try_from(now).unwrap_or(i64::MAX), &mut note) {
        fatal(&e.to_string());
    }
}

/// The NFS work-around of a rename is worth an info line; a plain rename is not.
fn log_renamed(renamed: &crate::queue::file::Renamed) {
    if matches!(renamed, crate::queue::file::Renamed::NfsWorkaround { .. }) {
        info!("{renamed}");
    }
}
