//! The trivial-rewrite client (the C daemon's resolve_clnt and rewrite_clnt): one persistent
//! connection to `private/<rewrite_service_name>`, closed after `ipc_idle` idle seconds, after
//! `ipc_ttl` of age, or when a reply's server flags ask for it (trivial-rewrite does so when
//! its tables changed, so that it can be replaced); re-opened on demand. After a failure the
//! unanswered request is sent again on a new connection a second later, as Postfix's client
//! retries forever; a failed connect is retried every 10 s and is fatal the 11th time
//! (mail_connect_wait). Like the C clients, each keeps a one-entry cache of its last answer
//! for 30 s.
//!
//! One request at a time: trivial-rewrite serves one request per readable event, so requests
//! written back to back would sit in its input buffer until the next write. The loop does not
//! wait meanwhile; the answer arrives as an event like any other.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

use super::conn::{Conn, ConnError};
use crate::proto::attr::{AttrError, AttrList, AttrWriter};
use crate::proto::protocol::Protocol;
use crate::proto::rewrite::{
    write_resolve, write_rewrite, ResolveClass, ResolveReply, RewriteReply,
};

/// One question for trivial-rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Where does `address` go (class `resolve`, or `verify` for address probes)?
    Resolve {
        class: ResolveClass,
        sender: Vec<u8>,
        address: Vec<u8>,
    },
    /// Canonicalise a redirect address (ruleset `local`).
    Rewrite { address: Vec<u8> },
}

/// Its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Resolve(ResolveReply),
    Rewrite(RewriteReply),
}

impl Query {
    /// Appends the request's wire form.
    fn encode(&self, w: &mut AttrWriter) {
        match self {
            Query::Resolve {
                class,
                sender,
                address,
            } => write_resolve(w, *class, sender, address),
            Query::Rewrite { address } => write_rewrite(w, b"local", address),
        }
    }

    /// The reply as the C clients take it: its server flags, and the answer or why it is
    /// refused.
    fn decode(&self, list: &AttrList, stream: &str) -> Result<(u32, Answer), RewriteTrouble> {
        let malformed = |e: AttrError| RewriteTrouble::BadReply(e.warning(stream));
        match self {
            Query::Resolve { .. } => {
                let reply = ResolveReply::decode(list).map_err(malformed)?;
                Ok((reply.server_flags, Answer::Resolve(reply)))
            }
            Query::Rewrite { .. } => {
                let reply = RewriteReply::decode(list).map_err(malformed)?;
                Ok((reply.server_flags, Answer::Rewrite(reply)))
            }
        }
    }

    /// resolve_clnt refuses an empty transport, or an empty recipient for a non-empty address,
    /// with a warning, and asks again a second later.
    fn null_result(&self, answer: &Answer) -> Option<String> {
        let (Query::Resolve { address, .. }, Answer::Resolve(reply)) = (self, answer) else {
            return None;
        };
        let shown = String::from_utf8_lossy(address);
        if reply.transport.is_empty() {
            Some(format!(
                "resolve_clnt: null transport result for: <{shown}>"
            ))
        } else if reply.recipient.is_empty() && !address.is_empty() {
            Some(format!(
                "resolve_clnt: null recipient result for: <{shown}>"
            ))
        } else {
            None
        }
    }

    /// Whether a cached answer to `self` may be used: the C clients never cache an empty
    /// resolve address.
    fn cacheable(&self) -> bool {
        match self {
            Query::Resolve { address, .. } => !address.is_empty(),
            Query::Rewrite { .. } => true,
        }
    }
}

/// How long a cached answer is good for (the C clients' `last_expire`).
const CACHE_TTL: Duration = Duration::from_secs(30);

/// Pause between failed connects, and the failure that is fatal (mail_connect_wait).
pub const CONNECT_RETRY: Duration = Duration::from_secs(10);
pub const CONNECT_FATAL_ATTEMPT: u32 = 11;

/// What went wrong with the connection (for the `problem talking to service rewrite` line).
#[derive(Debug)]
pub enum RewriteTrouble {
    /// The connect itself failed (mail_connect_wait's `connect #N` lines).
    Connect(std::io::Error),
    /// Registering the new connection with the poll failed.
    Register(std::io::Error),
    Conn(ConnError),
    /// The server closed with a request unanswered; attr_scan's warning if a list was cut off.
    Closed(Option<String>),
    /// With attr_scan's warning.
    BadAnnouncement(String),
    BadReply(String),
    /// No announcement or answer within ipc_timeout.
    TimedOut,
    /// resolve_clnt's `null transport/recipient result` warning.
    NullResult(String),
}

impl RewriteTrouble {
    /// The warning the attribute reader (or resolve_clnt) logs before the client decides
    /// whether to complain.
    pub fn first_warning(&self) -> Option<String> {
        match self {
            RewriteTrouble::Closed(w) => w.clone(),
            RewriteTrouble::BadAnnouncement(w)
            | RewriteTrouble::BadReply(w)
            | RewriteTrouble::NullResult(w) => Some(w.clone()),
            _ => None,
        }
    }

    /// The errno the C client sees after the failed exchange: 0 for an end of file or bad
    /// data (nothing set it), the system error otherwise.
    fn errno(&self) -> i32 {
        match self {
            RewriteTrouble::Connect(e)
            | RewriteTrouble::Register(e)
            | RewriteTrouble::Conn(ConnError::Io(e)) => e.raw_os_error().unwrap_or(0),
            RewriteTrouble::TimedOut => libc::ETIMEDOUT,
            _ => 0,
        }
    }

    /// The `%m` of the `problem talking to service` line.
    pub fn strerror(&self) -> String {
        crate::maillog::strerror(&std::io::Error::from_raw_os_error(self.errno()))
    }

    /// As resolve_clnt and rewrite_clnt: `problem talking to service` is logged from the
    /// second attempt at the same request on, or at once for an error other than EPIPE or
    /// ENOENT; a plain end of file (errno 0) on the first attempt is not logged. A null
    /// result has its own warning only.
    pub fn worth_logging(&self, attempt: u32) -> bool {
        if matches!(self, RewriteTrouble::NullResult(_)) {
            return false;
        }
        let errno = self.errno();
        attempt > 1 || (errno != 0 && errno != libc::EPIPE && errno != libc::ENOENT)
    }
}

/// The last network answer to one kind of query (resolve_clnt's or rewrite_clnt's `last_*`).
struct CachedAnswer {
    query: Query,
    answer: Answer,
    expires: Instant,
}

/// The client. `T` tags each query so the caller can match answers.
pub struct RewriteClient<T> {
    /// `private/<rewrite_service_name>`.
    path: String,
    /// `<path> socket`, as attr_scan warnings name the stream: made once, not per answer.
    stream: String,
    conn: Option<Conn>,
    announced: bool,
    sent: VecDeque<(T, Query)>,
    unsent: VecDeque<(T, Query)>,
    opened: Instant,
    last_used: Instant,
    /// Set after a failure: no new connection before this time.
    pub retry_at: Option<Instant>,
    idle: Duration,
    ttl: Duration,
    token: Token,
    /// The connection is registered for writability too.
    write_interest: bool,
    /// ipc_timeout: how long to wait for the announcement or an answer.
    timeout: Duration,
    /// Since when we have been waiting for the server (announcement or answer).
    waiting_since: Option<Instant>,
    /// Failed attempts at the request at the head of the queue (resolve_clnt's `count`).
    attempts: u32,
    /// Failed connects in a row (mail_connect_wait's `count`).
    connect_failures: u32,
    last_resolve: Option<CachedAnswer>,
    last_rewrite: Option<CachedAnswer>,
}

impl<T> RewriteClient<T> {
    pub fn new(
        token: Token,
        service: &str,
        idle: Duration,
        ttl: Duration,
        timeout: Duration,
    ) -> Self {
        let now = Instant::now();
        RewriteClient {
            path: format!("private/{service}"),
            stream: super::conn::socket_name(&format!("private/{service}")),
            conn: None,
            announced: false,
            sent: VecDeque::new(),
            unsent: VecDeque::new(),
            opened: now,
            last_used: now,
            retry_at: None,
            idle,
            ttl,
            token,
            write_interest: false,
            timeout,
            waiting_since: None,
            attempts: 0,
            connect_failures: 0,
            last_resolve: None,
            last_rewrite: None,
        }
    }

    /// `private/<rewrite_service_name>`, as connect warnings name it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Keeps `waiting_since` in step: set while the server owes us something.
    fn update_wait(&mut self, now: Instant) {
        let waiting = self.conn.is_some() && (!self.announced || !self.sent.is_empty());
        if !waiting {
            self.waiting_since = None;
        } else if self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
    }

    /// When the server's silence becomes a failure, if we are waiting for it.
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting_since.map(|t| t + self.timeout)
    }

    /// The server kept us waiting for longer than ipc_timeout.
    pub fn overdue(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// Queries waiting for an answer.
    pub fn outstanding(&self) -> usize {
        self.sent.len() + self.unsent.len()
    }

    pub fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    /// Queries not yet sent.
    pub fn unsent(&self) -> usize {
        self.unsent.len()
    }

    /// Queues a query; [`RewriteClient::pump`] sends it.
    pub fn submit(&mut self, tag: T, query: Query) {
        self.unsent.push_back((tag, query));
    }

    fn cache_slot(&mut self, query: &Query) -> &mut Option<CachedAnswer> {
        match query {
            Query::Resolve { .. } => &mut self.last_resolve,
            Query::Rewrite { .. } => &mut self.last_rewrite,
        }
    }

    /// The cached answer to `query`, if it is the last one asked and younger than 30 s.
    fn cached(&self, now: Instant, query: &Query) -> Option<Answer> {
        if !query.cacheable() {
            return None;
        }
        let slot = match query {
            Query::Resolve { .. } => &self.last_resolve,
            Query::Rewrite { .. } => &self.last_rewrite,
        };
        match slot {
            Some(c) if now < c.expires && c.query == *query => Some(c.answer.clone()),
            _ => None,
        }
    }

    /// Answers queued queries from the cache while the head of the queue is a hit, as the C
    /// clients answer a repeated question without asking the server.
    fn answer_from_cache(&mut self, now: Instant, answers: &mut Vec<(T, Query, Answer)>) {
        if !self.sent.is_empty() {
            return;
        }
        while let Some((_, query)) = self.unsent.front() {
            let Some(answer) = self.cached(now, query) else {
                return;
            };
            if let Some((tag, query)) = self.unsent.pop_front() {
                answers.push((tag, query, answer));
            }
        }
    }

    /// Connects when there is work, sends what can be sent; questions the cache answers come
    /// back in `answers`. Call after submitting and whenever the socket is ready.
    pub fn pump(
        &mut self,
        now: Instant,
        base: &Path,
        registry: &Registry,
        answers: &mut Vec<(T, Query, Answer)>,
    ) -> Result<(), RewriteTrouble> {
        self.answer_from_cache(now, answers);
        if self.conn.is_none() {
            if self.unsent.is_empty() || self.retry_at.is_some_and(|t| now < t) {
                return Ok(());
            }
            self.retry_at = None;
            let mut conn = Conn::connect(base, &self.path).map_err(RewriteTrouble::Connect)?;
            self.connect_failures = 0;
            registry
                .register(&mut conn.stream, self.token, Interest::READABLE)
                .map_err(RewriteTrouble::Register)?;
            self.conn = Some(conn);
            self.write_interest = false;
            self.announced = false;
            self.opened = now;
            self.last_used = now;
        }
        if !self.announced {
            self.update_wait(now);
            return Ok(());
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        if self.sent.is_empty() {
            if let Some((tag, query)) = self.unsent.pop_front() {
                self.last_used = now;
                conn.queue_with(|w| query.encode(w));
                self.sent.push_back((tag, query));
                // A new request: its own ipc_timeout.
                self.waiting_since = Some(now);
            }
        }
        let done = conn
            .flush()
            .map_err(|e| RewriteTrouble::Conn(ConnError::Io(e)))?;
        // Ask for writability only while a request is stuck in our buffer.
        if done == self.write_interest {
            self.write_interest = !done;
            let interest = if done {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            registry
                .reregister(&mut conn.stream, self.token, interest)
                .map_err(RewriteTrouble::Register)?;
        }
        Ok(())
    }

    /// Reads what arrived; returns the answered queries in order.
    pub fn on_ready(
        &mut self,
        now: Instant,
        hangup: bool,
        registry: &Registry,
        answers: &mut Vec<(T, Query, Answer)>,
    ) -> Result<(), RewriteTrouble> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        conn.fill_on_event(hangup).map_err(|e| match e {
            ConnError::Attr(e) => RewriteTrouble::BadReply(e.warning(&self.stream)),
            other => RewriteTrouble::Conn(other),
        })?;
        while let Some(list) = self.conn.as_mut().and_then(Conn::next_list) {
            if !self.announced {
                Protocol::TrivialRewrite
                    .check_announcement(&list)
                    .map_err(|e| RewriteTrouble::BadAnnouncement(e.warning(&self.stream)))?;
                self.announced = true;
                continue;
            }
            let Some((tag, query)) = self.sent.pop_front() else {
                return Err(RewriteTrouble::BadReply(format!(
                    "unexpected input from {}",
                    self.stream
                )));
            };
            let (server_flags, answer) = match query.decode(&list, &self.stream) {
                Ok(decoded) => decoded,
                Err(trouble) => {
                    self.sent.push_front((tag, query));
                    return Err(trouble);
                }
            };
            self.last_used = now;
            if server_flags != 0 {
                // The server asks us to go away (its tables changed): the next request
                // opens a new connection, without the pause that follows a failure.
                self.disconnect(registry);
            }
            if let Some(warning) = query.null_result(&answer) {
                self.sent.push_front((tag, query));
                return Err(RewriteTrouble::NullResult(warning));
            }
            self.attempts = 0;
            if query.cacheable() {
                *self.cache_slot(&query) = Some(CachedAnswer {
                    query: query.clone(),
                    answer: answer.clone(),
                    expires: now + CACHE_TTL,
                });
            }
            answers.push((tag, query, answer));
            if server_flags != 0 {
                return Ok(());
            }
        }
        let Some(conn) = self.conn.as_ref() else {
            return Ok(());
        };
        if conn.at_eof() {
            if self.sent.is_empty() && self.unsent.is_empty() && self.announced {
                // The server closed an idle connection: reconnect on demand.
                self.disconnect(registry);
                return Ok(());
            }
            return Err(RewriteTrouble::Closed(conn.cut_off_warning()));
        }
        self.update_wait(now);
        Ok(())
    }

    /// Closes the connection; queries not yet answered go back to the queue.
    fn disconnect(&mut self, registry: &Registry) {
        if let Some(mut conn) = self.conn.take() {
            let _ = registry.deregister(&mut conn.stream);
        }
        while let Some(item) = self.sent.pop_back() {
            self.unsent.push_front(item);
        }
        self.announced = false;
        self.waiting_since = None;
    }

    /// After trouble: drop the connection, keep every unanswered query (in order) for the next
    /// connection, which is attempted no sooner than a second from now. Returns which attempt
    /// at the request in hand this was (1 for the first).
    pub fn reset(&mut self, now: Instant, registry: &Registry) -> u32 {
        self.disconnect(registry);
        self.retry_at = Some(now + Duration::from_secs(1));
        self.attempts = self.attempts.saturating_add(1);
        self.attempts
    }

    /// After a failed connect: the next one in 10 s. Returns the number of failures in a row.
    pub fn connect_failed(&mut self, now: Instant) -> u32 {
        self.retry_at = Some(now + CONNECT_RETRY);
        self.connect_failures = self.connect_failures.saturating_add(1);
        self.connect_failures
    }

    /// When [`RewriteClient::expire`] will close the connection, if it is open with nothing in
    /// flight (while queries are out, their answers or [`RewriteClient::deadline`] come first).
    pub fn expire_at(&self) -> Option<Instant> {
        self.conn.as_ref()?;
        if !self.sent.is_empty() || !self.unsent.is_empty() {
            return None;
        }
        Some((self.last_used + self.idle).min(self.opened + self.ttl))
    }

    /// Closes an idle (`ipc_idle`) or old (`ipc_ttl`) connection with nothing in flight.
    /// Returns when to look again.
    pub fn expire(&mut self, now: Instant, registry: &Registry) -> Option<Instant> {
        self.conn.as_ref()?;
        if !self.sent.is_empty() || !self.unsent.is_empty() {
            return Some(now + self.idle);
        }
        let idle_at = self.last_used + self.idle;
        let ttl_at = self.opened + self.ttl;
        if now >= idle_at || now >= ttl_at {
            self.disconnect(registry);
            return None;
        }
        Some(idle_at.min(ttl_at))
    }
}
