//! Taking a message into the active queue (the C daemon's qmgr_active_feed and
//! qmgr_message_alloc): rename to active/, lock, read the envelope in a bounded batch, then
//! route every recipient (trivial-rewrite, or the content filter) and hand them to the
//! scheduler.

use log::{info, warn};

use super::rewrite::{Answer, Query, RewriteTrouble};
use super::{fatal, now_timeval, Daemon};
use crate::proto::recipient::Recipient;
use crate::proto::rewrite::ResolveClass;
use crate::queue::envelope::{
    self, read_envelope, read_recipient_batch, Envelope, ReadEvent, ReadOptions,
    DEL_REQ_FLAG_MTA_VRFY, DEL_REQ_FLAG_USR_VRFY,
};
use crate::queue::file::{LockError, OpenCheck};
use crate::queue::id::QueueId;
use crate::queue::path::{ACTIVE, CORRUPT, DEFER, INCOMING};
use crate::sched::route::{self, Route};
use crate::sched::{message_flags, MessageRef};

/// What a rewrite answer is for: recipient `index` of a message being loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewriteTag {
    message: MessageRef,
    index: usize,
}

/// A message whose recipients are being routed.
pub struct Loading {
    recipients: Vec<Recipient>,
    /// Each recipient's index in `routes`; [`NO_ROUTE`] until its answer is in.
    route_of: Vec<u32>,
    /// The distinct routes of the batch (their addresses empty: a rewritten address goes to
    /// its recipient at once), so that thousands of recipients to a few destinations hold a
    /// few routes.
    routes: Vec<Route>,
    outstanding: usize,
}

const NO_ROUTE: u32 = u32::MAX;

impl Loading {
    /// Records the route of recipient `index`, sharing it with a recent equal one.
    fn set_route(&mut self, index: usize, transport: &[u8], nexthop: &[u8], flags: u32) {
        // Recipients are sorted by domain, so an equal route is nearly always the last one.
        let found = self
            .routes
            .iter()
            .enumerate()
            .rev()
            .take(8)
            .find(|(_, r)| r.flags == flags && r.transport == transport && r.nexthop == nexthop)
            .map(|(i, _)| i);
        let i = found.unwrap_or_else(|| {
            self.routes.push(Route {
                transport: transport.to_vec(),
                nexthop: nexthop.to_vec(),
                address: Vec::new(),
                flags,
            });
            self.routes.len() - 1
        });
        if let Some(slot) = self.route_of.get_mut(index) {
            *slot = u32::try_from(i).unwrap_or(NO_ROUTE);
        }
    }
}

/// Rewrite queries not yet handed to the client, in the order they were asked for: a batch's
/// resolve queries are made one by one as the client needs them, instead of thousands of
/// copies of the sender and the addresses waiting at once.
pub enum PendingQuery {
    /// Resolve the recipients of this loading message from index `next` on.
    Batch { message: MessageRef, next: usize },
    /// One query made already (a redirect address's resolve).
    Ready(RewriteTag, Query),
}

/// Queries kept in the client's own queue: enough that it never runs dry while work is left
/// (it sends one, and a cached answer may take another).
const CLIENT_QUEUE: usize = 2;

/// How envelopes are read: the in-memory recipient cap and the main.cf settings involved.
fn read_options(params: &crate::config::Params, recipient_cap: usize) -> ReadOptions<'_> {
    ReadOptions {
        recipient_cap,
        verp_delimiter_filter: &params.verp_delimiter_filter,
        confirm_delay_cleared: params.confirm_delay_cleared,
    }
}

impl Daemon {
    /// An address as log lines show it: quoted per info_log_address_format (an empty address
    /// stays empty, as in `from=<>`).
    pub(super) fn log_address(&self, addr: &[u8]) -> String {
        if addr.is_empty()
            || self
                .params
                .info_log_address_format
                .eq_ignore_ascii_case(b"internal")
        {
            String::from_utf8_lossy(addr).into_owned()
        } else {
            String::from_utf8_lossy(&crate::proto::address::quote_822_local(addr)).into_owned()
        }
    }

    /// Logs what the envelope reader met, in the C daemon's order.
    fn log_read_events(&self, id: &QueueId, events: &[ReadEvent]) {
        // The file as the C daemon's VSTREAM names it: hashed if active/ is.
        let path = self.qdir.path(ACTIVE, id).to_string_lossy().into_owned();
        for event in events {
            match event {
                ReadEvent::Opened(o) => info!(
                    "{id}: from=<{}>, size={}, nrcpt={} (queue active)",
                    self.log_address(&o.sender),
                    o.size,
                    o.nrcpt
                ),
                other => {
                    if let Some(line) = other.log_line(&path, id.as_str()) {
                        warn!("{line}");
                    }
                }
            }
        }
    }

    /// Tries one scanned name. Returns true when a message entered the active queue.
    pub(super) fn import(
        &mut self,
        now: u64,
        scan_idx: usize,
        name: &[u8],
        scan_flags: u8,
    ) -> bool {
        let queue = if scan_idx == 0 {
            INCOMING
        } else {
            crate::queue::path::DEFERRED
        };
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        let scan = if scan_idx == 0 {
            &self.incoming
        } else {
            &self.deferred
        };
        let ready = match self.qdir.open_ok_in(queue, name, now_i, scan.current_dir()) {
            OpenCheck::Ready(r) => r,
            other => {
                if let Some(w) = other.warning() {
                    warn!("{w}");
                }
                return false;
            }
        };
        if let Some(w) = ready.link_warning() {
            warn!("{w}");
        }
        if ready.not_yet_due(now_i, scan_flags) {
            return false;
        }
        let id = ready.id.clone();
        match self.qdir.rename(&id, queue, ACTIVE) {
            Ok(renamed) => super::log_renamed(&renamed),
            Err(e) => {
                let text = format!(
                    "qmgr_active_feed: {id}: rename from {queue} to {ACTIVE}: {}",
                    crate::maillog::strerror(&e.source)
                );
                if !e.is_not_found() {
                    fatal(&text);
                }
                warn!("{text}");
                return false;
            }
        }
        let mut qflags = 0;
        if scan_flags & crate::queue::scan_flags::FLUSH_DFXP != 0 {
            qflags |= message_flags::FLUSH_DFXP;
        }
        if ready.unthrottle() {
            qflags |= message_flags::FLUSH_EACH | message_flags::FLUSH_DFXP;
        }
        if ready.force_expire() {
            qflags |= message_flags::FORCE_EXPIRE;
        }
        let mut file = match self.qdir.open_locked(ACTIVE, &id) {
            Ok(f) => f,
            Err(LockError::Locked { .. }) => {
                info!("{id}: skipped, still being delivered");
                self.move_back(now, &id, INCOMING, 60);
                return false;
            }
            Err(LockError::Open(e)) => {
                let text = format!(
                    "open {ACTIVE} {id}: {}",
                    crate::maillog::strerror(&e.source)
                );
                if !e.is_not_found() {
                    fatal(&text);
                }
                warn!("{text}");
                self.corrupt(&id);
                return false;
            }
        };
        let mut envelope =
            match read_envelope(&mut file, &read_options(&self.params, self.recipient_cap)) {
                Ok(env) => env,
                Err(err) => {
                    self.log_read_events(&id, &err.events);
                    for (severity, line) in err
                        .rejection
                        .log_lines(&self.qdir.path(ACTIVE, &id).to_string_lossy(), id.as_str())
                    {
                        match severity {
                            envelope::Severity::Fatal => fatal(&line),
                            envelope::Severity::Warning => warn!("{line}"),
                        }
                    }
                    drop(file);
                    self.corrupt(&id);
                    return false;
                }
            };
        // Logged once; not worth keeping in memory for the message's stay.
        let events = std::mem::take(&mut envelope.events);
        self.log_read_events(&id, &events);
        if ready.unthrottle() {
            // Named as the C daemon's stream: the file's path in active/.
            let path = self.qdir.path(ACTIVE, &id);
            if let Err(e) = crate::queue::file::clear_unthrottle(&file, ready.mode, &path) {
                fatal(&e.to_string());
            }
        }
        let force_expire_now = qflags & message_flags::FORCE_EXPIRE != 0
            && self
                .qdir
                .log_size(crate::queue::path::DEFER, &id)
                .is_some_and(|size| size > 0);
        if !force_expire_now {
            if let Err(e) = self.qdir.remove_defer_log(&id) {
                fatal(&format!(
                    "qmgr_message_alloc: {id}: remove {DEFER} {id}: {}",
                    crate::maillog::strerror(&e.source)
                ));
            }
        }
        drop(file);
        let (m, recipients) =
            self.sched
                .add_message(id.as_bytes().to_vec(), envelope, now_timeval(), qflags);
        if force_expire_now {
            // An expired message with a defer log: no deliveries, straight to the return.
            self.sched.expire_now(now, m);
            return true;
        }
        self.route_recipients(now, m, recipients);
        true
    }

    /// Starts routing a batch of the message's recipients.
    pub(super) fn route_recipients(
        &mut self,
        now: u64,
        m: MessageRef,
        mut recipients: Vec<Recipient>,
    ) {
        let Some(msg) = self.sched.message(m) else {
            return;
        };
        let env: &Envelope = msg.envelope();
        recipients.sort_by(|a, b| route::compare_addresses(a.address(), b.address()));
        let trace_only = env.trace_flags & (DEL_REQ_FLAG_MTA_VRFY | DEL_REQ_FLAG_USR_VRFY) != 0;
        let filter = env.filter_transport().filter(|_| !trace_only);
        // A redirect keeps only the first recipient (the scheduler reads no further batch).
        let redirect = env.redirect_address();
        let count = recipients.len();
        let mut loading = Loading {
            route_of: vec![NO_ROUTE; count],
            routes: Vec::new(),
            recipients,
            outstanding: 0,
        };
        if let Some(address) = &redirect {
            // As rewrite_clnt_internal: the address goes out in external (quoted) form; the
            // answer is unquoted in on_answer.
            for index in 0..count {
                self.pending.push_back(PendingQuery::Ready(
                    RewriteTag { message: m, index },
                    Query::Rewrite {
                        address: crate::proto::address::quote_822_local(address),
                    },
                ));
            }
            loading.outstanding = count;
        } else if let Some(filter) = &filter {
            for index in 0..count {
                let Some(recipient) = loading.recipients.get(index) else {
                    break;
                };
                let route = Route::for_filter(
                    filter,
                    recipient.address(),
                    &self.params.default_filter_nexthop,
                    &self.params.myhostname,
                );
                loading.set_route(index, &route.transport, &route.nexthop, route.flags);
            }
        } else if count > 0 {
            self.pending.push_back(PendingQuery::Batch {
                message: m,
                next: 0,
            });
            loading.outstanding = count;
        }
        if loading.outstanding == 0 {
            self.finish_loading(now, m, loading);
        } else {
            self.loading.insert(m, loading);
            self.pump_rewrite();
        }
    }

    /// Hands the client the next pending queries, up to [`CLIENT_QUEUE`].
    fn feed_rewrite(&mut self) {
        while self.rewrite.unsent() < CLIENT_QUEUE {
            let Some(front) = self.pending.front_mut() else {
                return;
            };
            let (tag, query) = match front {
                PendingQuery::Ready(..) => match self.pending.pop_front() {
                    Some(PendingQuery::Ready(tag, query)) => (tag, query),
                    _ => return,
                },
                PendingQuery::Batch { message, next } => {
                    let (m, index) = (*message, *next);
                    *next += 1;
                    let address = self
                        .loading
                        .get(&m)
                        .and_then(|l| l.recipients.get(index))
                        .map(|r| r.address().to_vec());
                    let Some(address) = address else {
                        self.pending.pop_front();
                        continue;
                    };
                    let Some(env) = self.sched.message(m).map(|msg| msg.envelope()) else {
                        self.pending.pop_front();
                        continue;
                    };
                    let class = if env.trace_flags & DEL_REQ_FLAG_MTA_VRFY != 0 {
                        ResolveClass::Verify
                    } else {
                        ResolveClass::Resolve
                    };
                    let query = Query::Resolve {
                        class,
                        sender: env.sender.to_vec(),
                        address,
                    };
                    (RewriteTag { message: m, index }, query)
                }
            };
            self.rewrite.submit(tag, query);
        }
    }

    fn finish_loading(&mut self, now: u64, m: MessageRef, loading: Loading) {
        let Loading {
            recipients,
            route_of,
            routes,
            ..
        } = loading;
        // One recipient and its route at a time: the scheduler keeps the recipient and only
        // looks at the route.
        let pairs = recipients.into_iter().zip(route_of).filter_map(|(r, i)| {
            let route = routes.get(i as usize)?;
            let route = Route {
                transport: route.transport.clone(),
                nexthop: route.nexthop.clone(),
                address: r.address().to_vec(),
                flags: route.flags,
            };
            Some((r, route))
        });
        self.sched.assign(now, m, pairs);
        self.run_actions(now);
    }

    /// Sends the next query when the connection is free (answering repeated questions from
    /// the cache); closes an idle connection.
    pub(super) fn pump_rewrite(&mut self) {
        loop {
            self.feed_rewrite();
            let now = std::time::Instant::now();
            if self.rewrite.overdue(now) {
                self.rewrite_trouble(RewriteTrouble::TimedOut);
            }
            let mut answers = Vec::new();
            let result = self.rewrite.pump(
                now,
                std::path::Path::new(""),
                self.poll.registry(),
                &mut answers,
            );
            if let Err(trouble) = result {
                self.rewrite_trouble(trouble);
            }
            if answers.is_empty() {
                break;
            }
            // Cached answers may lead to new questions (a redirect's resolve): go round.
            let secs = super::now_secs();
            for (tag, _query, answer) in answers {
                self.on_answer(secs, tag, answer);
            }
        }
        self.rewrite
            .expire(std::time::Instant::now(), self.poll.registry());
    }

    /// A failed exchange with trivial-rewrite, logged as resolve_clnt/rewrite_clnt do; a failed
    /// connect as mail_connect_wait does (fatal the 11th time in a row).
    fn rewrite_trouble(&mut self, trouble: RewriteTrouble) {
        let now = std::time::Instant::now();
        if let RewriteTrouble::Connect(e) = &trouble {
            let count = self.rewrite.connect_failed(now);
            let text = format!(
                "connect #{count} to subsystem {}: {}",
                self.rewrite.path(),
                crate::maillog::strerror(e)
            );
            if count >= super::rewrite::CONNECT_FATAL_ATTEMPT {
                fatal(&text);
            }
            warn!("{text}");
            return;
        }
        if let Some(line) = trouble.first_warning() {
            warn!("{line}");
        }
        let attempt = self.rewrite.reset(now, self.poll.registry());
        if trouble.worth_logging(attempt) {
            warn!(
                "problem talking to service {}: {}",
                String::from_utf8_lossy(&self.params.rewrite_service_name),
                trouble.strerror()
            );
        }
    }

    pub(super) fn on_rewrite_ready(&mut self, now: u64, hangup: bool) {
        let mut answers = Vec::new();
        let result = self.rewrite.on_ready(
            std::time::Instant::now(),
            hangup,
            self.poll.registry(),
            &mut answers,
        );
        for (tag, _query, answer) in answers {
            self.on_answer(now, tag, answer);
        }
        if let Err(trouble) = result {
            self.rewrite_trouble(trouble);
        }
        self.pump_rewrite();
    }

    fn on_answer(&mut self, now: u64, tag: RewriteTag, answer: Answer) {
        match answer {
            Answer::Rewrite(reply) => {
                // The canonical redirect address replaces the recipient; now resolve it.
                let Some(loading) = self.loading.get_mut(&tag.message) else {
                    return;
                };
                let Some(recipient) = loading.recipients.get_mut(tag.index) else {
                    return;
                };
                let address = crate::proto::address::unquote_822_local(&reply.address);
                recipient.set_address(&address);
                let (class, sender) = match self.sched.message(tag.message) {
                    Some(msg) => (
                        if msg.envelope().trace_flags & DEL_REQ_FLAG_MTA_VRFY != 0 {
                            ResolveClass::Verify
                        } else {
                            ResolveClass::Resolve
                        },
                        msg.envelope().sender.to_vec(),
                    ),
                    None => return,
                };
                // In line behind what was asked before, as the client's queue had it.
                self.pending.push_back(PendingQuery::Ready(
                    tag,
                    Query::Resolve {
                        class,
                        sender,
                        address,
                    },
                ));
            }
            Answer::Resolve(reply) => {
                let Some(loading) = self.loading.get_mut(&tag.message) else {
                    return;
                };
                if let Some(recipient) = loading.recipients.get_mut(tag.index) {
                    if recipient.address() != reply.recipient {
                        recipient.set_address(&reply.recipient);
                    }
                    loading.set_route(tag.index, &reply.transport, &reply.nexthop, reply.flags);
                }
                loading.outstanding = loading.outstanding.saturating_sub(1);
                if loading.outstanding == 0 {
                    if let Some(loading) = self.loading.remove(&tag.message) {
                        self.finish_loading(now, tag.message, loading);
                    }
                }
            }
        }
    }

    /// Action::ReadRecipients: the message's next recipient batch, read and routed (the C
    /// daemon's qmgr_message_realloc). A missing file or bad records are reported to the
    /// scheduler (which moves the file to corrupt/ when its completion asked). Any other
    /// failure to open or seek is fatal, as in qmgr_message_open: the file stays in active/
    /// and the next queue manager takes it up again, instead of good mail landing in corrupt/
    /// over a transient EMFILE or EIO.
    pub(super) fn read_batch(
        &mut self,
        now: u64,
        m: MessageRef,
        queue_id: &[u8],
        size: crate::queue::record::SizeRecord,
        start: u64,
    ) {
        let Ok(id) = QueueId::parse(queue_id) else {
            self.sched.batch_unreadable(now, m);
            return;
        };
        let path = self.qdir.path(ACTIVE, &id);
        // Read-write like the C daemon, so a file it could not update fails here too.
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                let text = format!("open {ACTIVE} {id}: {}", crate::maillog::strerror(&e));
                if e.kind() != std::io::ErrorKind::NotFound {
                    fatal(&text);
                }
                warn!("{text}");
                self.sched.batch_unreadable(now, m);
                return;
            }
        };
        let options = read_options(&self.params, self.recipient_cap);
        // The reader's cursor: where the batch starts and the size record that bounds it.
        let mut cursor = Envelope {
            size,
            resume_offset: Some(start),
            ..Envelope::default()
        };
        match read_recipient_batch(&mut file, &mut cursor, &options) {
            Ok(events) => {
                self.log_read_events(&id, &events);
                self.sched.batch_read(m, cursor.resume_offset);
                self.route_recipients(now, m, cursor.recipients);
            }
            Err(err) => {
                self.log_read_events(&id, &err.events);
                for (severity, line) in err
                    .rejection
                    .log_lines(&path.to_string_lossy(), id.as_str())
                {
                    match severity {
                        envelope::Severity::Fatal => fatal(&line),
                        envelope::Severity::Warning => warn!("{line}"),
                    }
                }
                self.sched.batch_unreadable(now, m);
            }
        }
    }

    /// active/ID -> corrupt/ID, with the C daemon's warning.
    pub(super) fn corrupt(&mut self, id: &QueueId) {
        match self.qdir.rename(id, ACTIVE, CORRUPT) {
            Ok(renamed) => {
                super::log_renamed(&renamed);
                warn!("saving corrupt file \"{id}\" from queue \"{ACTIVE}\" to queue \"{CORRUPT}\"")
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => fatal(&format!(
                "qmgr_active_corrupt: save corrupt file queue {ACTIVE} id {id}: {}",
                crate::maillog::strerror(&e.source)
            )),
        }
    }

    /// active/ID -> `to` with a "not before" time `delay` seconds from now.
    pub(super) fn move_back(&mut self, now: u64, id: &QueueId, to: &str, delay: u64) {
        let at = i64::try_from(now.saturating_add(delay)).unwrap_or(i64::MAX);
        if let Err(e) = self.qdir.set_time(ACTIVE, id, at) {
            if !e.is_not_found() {
                fatal(&format!("qmgr_active_defer: {e}"));
            }
        }
        match self.qdir.rename(id, ACTIVE, to) {
            Ok(renamed) => super::log_renamed(&renamed),
            Err(e) if e.is_not_found() => warn!("qmgr_active_defer: {e}"),
            Err(e) => fatal(&format!("qmgr_active_defer: {e}")),
        }
    }
}
