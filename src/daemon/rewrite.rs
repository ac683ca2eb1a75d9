//! The trivial-rewrite client: one persistent connection to `private/rewrite`, closed after
//! `ipc_idle` idle seconds or `ipc_ttl` of age, re-opened on demand; after a failure the
//! unanswered request is sent again on a new connection a second later, as Postfix's client
//! retries forever.
//!
//! One request at a time: trivial-rewrite serves one request per readable event, so requests
//! written back to back would sit in its input buffer until the next write. The loop does not
//! wait meanwhile; the answer arrives as an event like any other.

use crate::proto::attr::AttrMessage;
use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

use super::conn::{Conn, ConnError};
use crate::proto::attr::AttrList;
use crate::proto::protocol::Protocol;
use crate::proto::rewrite::{
    ResolveClass, ResolveReply, ResolveRequest, RewriteReply, RewriteRequest,
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
    fn encode(&self) -> Vec<u8> {
        match self {
            Query::Resolve {
                class,
                sender,
                address,
            } => ResolveRequest {
                class: *class,
                sender: sender.clone(),
                address: address.clone(),
            }
            .to_bytes(),
            Query::Rewrite { address } => RewriteRequest {
                rule: b"local".to_vec(),
                address: address.clone(),
            }
            .to_bytes(),
        }
    }

    fn decode(&self, list: &AttrList) -> Option<Answer> {
        match self {
            Query::Resolve { address, .. } => {
                let reply = ResolveReply::decode(list).ok()?;
                // Postfix's client refuses an empty transport, or an empty recipient for a
                // non-empty address, and asks again.
                if reply.transport.is_empty() || (reply.recipient.is_empty() && !address.is_empty())
                {
                    return None;
                }
                Some(Answer::Resolve(reply))
            }
            Query::Rewrite { .. } => RewriteReply::decode(list).ok().map(Answer::Rewrite),
        }
    }
}

/// What went wrong with the connection (for the `problem talking to service rewrite` line).
#[derive(Debug)]
pub enum RewriteTrouble {
    Connect(std::io::Error),
    Conn(ConnError),
    BadAnnouncement,
    BadReply,
    /// No announcement or answer within ipc_timeout.
    TimedOut,
}

/// The client. `T` tags each query so the caller can match answers.
pub struct RewriteClient<T> {
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
}

impl<T> RewriteClient<T> {
    pub fn new(token: Token, idle: Duration, ttl: Duration, timeout: Duration) -> Self {
        let now = Instant::now();
        RewriteClient {
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
        }
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

    /// Queues a query; [`RewriteClient::pump`] sends it.
    pub fn submit(&mut self, tag: T, query: Query) {
        self.unsent.push_back((tag, query));
    }

    /// Connects when there is work, sends what can be sent. Call after submitting and
    /// whenever the socket is ready.
    pub fn pump(
        &mut self,
        now: Instant,
        base: &Path,
        registry: &Registry,
    ) -> Result<(), RewriteTrouble> {
        if self.conn.is_none() {
            if self.unsent.is_empty() || self.retry_at.is_some_and(|t| now < t) {
                return Ok(());
            }
            self.retry_at = None;
            let mut conn =
                Conn::connect(base, "private/rewrite").map_err(RewriteTrouble::Connect)?;
            registry
                .register(&mut conn.stream, self.token, Interest::READABLE)
                .map_err(RewriteTrouble::Connect)?;
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
                conn.queue(&query.encode());
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
                .map_err(RewriteTrouble::Connect)?;
        }
        Ok(())
    }

    /// Reads what arrived; returns the answered queries in order.
    pub fn on_ready(
        &mut self,
        now: Instant,
        answers: &mut Vec<(T, Query, Answer)>,
    ) -> Result<(), RewriteTrouble> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        conn.fill().map_err(RewriteTrouble::Conn)?;
        while let Some(list) = conn.next_list() {
            if !self.announced {
                Protocol::TrivialRewrite
                    .check_announcement(&list)
                    .map_err(|_| RewriteTrouble::BadAnnouncement)?;
                self.announced = true;
                continue;
            }
            let Some((tag, query)) = self.sent.pop_front() else {
                return Err(RewriteTrouble::BadReply);
            };
            match query.decode(&list) {
                Some(answer) => answers.push((tag, query, answer)),
                None => {
                    self.sent.push_front((tag, query));
                    return Err(RewriteTrouble::BadReply);
                }
            }
            self.last_used = now;
        }
        if conn.at_eof() {
            if self.sent.is_empty() && self.unsent.is_empty() && self.announced {
                // The server closed an idle connection: reconnect on demand.
                self.conn = None;
                self.waiting_since = None;
                return Ok(());
            }
            return Err(RewriteTrouble::Conn(ConnError::Eof));
        }
        self.update_wait(now);
        Ok(())
    }

    /// After trouble: drop the connection, keep every unanswered query (in order) for the next
    /// connection, which is attempted no sooner than a second from now.
    pub fn reset(&mut self, now: Instant, registry: &Registry) {
        if let Some(mut conn) = self.conn.take() {
            let _ = registry.deregister(&mut conn.stream);
        }
        while let Some(item) = self.sent.pop_back() {
            self.unsent.push_front(item);
        }
        self.announced = false;
        self.waiting_since = None;
        self.retry_at = Some(now + Duration::from_secs(1));
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
            if let Some(mut conn) = self.conn.take() {
                let _ = registry.deregister(&mut conn.stream);
            }
            return None;
        }
        Some(idle_at.min(ttl_at))
    }
}
