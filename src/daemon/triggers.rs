//! Triggers on public/qmgr (or the fifo): master's wake-ups asking for a queue scan, taken a
//! bounded number per pass, each answered TAKEN and AVAIL to master as a trigger server does.
//!
//! A `unix` client whose bytes are not there yet when it is accepted is not waited for (the C
//! server waits up to 10 s, and with it all mail): it is parked in the poll loop and served
//! when it becomes readable, or closed unserved when its [`fds::TRIGGER_WAIT`] is up. At most
//! [`MAX_PARKED`] are parked at once; one more closes the oldest, so a flood of connections
//! that send nothing costs a bounded number of descriptors.

use std::time::Duration;

use log::info;
use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::timers::TimerId;
use super::{fatal, Daemon, TimerKind, FIRST_PARKED_TRIGGER, FIRST_PEER};
use crate::master::fds;
use crate::master::options::ServiceType;
use crate::master::status::Availability;
use crate::master::trigger;
use crate::queue::path::{DEFERRED, INCOMING};
use crate::queue::scan_flags;
use crate::slab::{Id, Slab};

/// Triggers taken per loop pass before other work gets a turn.
const TRIGGERS_PER_PASS: usize = 64;

/// Trigger clients that have sent nothing yet, kept at once.
pub(super) const MAX_PARKED: usize = 16;

// The parked clients' tokens lie between the status clients' and the peers'.
const _: () = assert!(FIRST_PARKED_TRIGGER + MAX_PARKED <= FIRST_PEER);

/// A parked trigger client, for as long as it is parked (the generation makes a late timer for
/// one since served or closed, its slot perhaps reused, find nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ParkedId(Id);

impl ParkedId {
    fn token(self) -> Token {
        Token(FIRST_PARKED_TRIGGER + self.0.index())
    }
}

struct Parked {
    conn: fds::TriggerConnection,
    /// Parking order: the oldest makes room when the set is full.
    seq: u64,
    /// Its [`fds::TRIGGER_WAIT`], cancelled when it is served or closed early.
    timer: Option<TimerId>,
}

/// The trigger clients waited for without waiting.
#[derive(Default)]
pub(super) struct ParkedTriggers {
    clients: Slab<Parked>,
    seq: u64,
}

/// What a listener had pending.
enum NextTrigger {
    /// Nothing (the listener is drained).
    Nothing,
    /// An accept error, or no connection after all: no request.
    Skipped,
    /// A `unix` client whose bytes are not there yet: to be parked.
    Silent(fds::TriggerConnection),
    /// One request (`None`: the read failed; master is still told AVAIL), and for a `unix`
    /// listener the client's connection, closed only after AVAIL as trigger_server does (its
    /// client waits for that close).
    Read(Option<Vec<u8>>, Option<fds::TriggerConnection>),
}

impl Daemon {
    /// Triggers on public/qmgr: for each one TAKEN, one read, the requests, AVAIL. Readiness
    /// is edge-triggered, so everything pending is taken (up to a bound per pass, after which
    /// the next loop pass continues: a flood of triggers cannot starve deliveries).
    pub(super) fn on_trigger(&mut self) {
        self.trigger_backlog = false;
        for fd in self.master.listen_fds() {
            let mut taken = 0;
            loop {
                // On its way out: what is pending is for the next queue manager. The C server
                // goes back to its event loop (status descriptor first) after each trigger;
                // taking several in a row, look at master's side before each further one.
                if self.master_gone || (taken > 0 && fds::master_gone(self.master_status())) {
                    self.master_gone = true;
                    return;
                }
                // trigger_server's pre_accept: a changed table ends this process first.
                if let Some(table) = self.tables.changed() {
                    info!("table {table} has changed -- restarting");
                    std::process::exit(0);
                }
                if taken == TRIGGERS_PER_PASS {
                    self.trigger_backlog = true;
                    break;
                }
                match self.next_trigger(fd) {
                    NextTrigger::Nothing => break,
                    NextTrigger::Skipped => {}
                    NextTrigger::Silent(conn) => self.park_trigger(conn),
                    NextTrigger::Read(bytes, conn) => self.finish_trigger(bytes, conn),
                }
                taken += 1;
            }
        }
    }

    /// One pending trigger from a listener. `Read` has told master TAKEN already.
    fn next_trigger(&self, fd: std::os::fd::RawFd) -> NextTrigger {
        let Some(listen) = self.master.listen_fd(fd) else {
            return NextTrigger::Nothing;
        };
        match self.service_type {
            ServiceType::Fifo => {
                if !fds::wait_readable(listen, Duration::ZERO) {
                    return NextTrigger::Nothing;
                }
                self.notify_master(Availability::Taken);
                NextTrigger::Read(fds::read_trigger(listen).ok(), None)
            }
            _ => {
                if !fds::wait_readable(listen, Duration::ZERO) {
                    return NextTrigger::Nothing;
                }
                match fds::accept_connection(listen) {
                    Ok(Some(conn)) if conn.is_ready() => {
                        self.notify_master(Availability::Taken);
                        let bytes = conn.read().ok();
                        NextTrigger::Read(bytes, Some(conn))
                    }
                    Ok(Some(conn)) => NextTrigger::Silent(conn),
                    Ok(None) => NextTrigger::Skipped,
                    Err(e) => {
                        log::error!("{e}");
                        NextTrigger::Skipped
                    }
                }
            }
        }
    }

    /// After TAKEN and the read: the request, AVAIL, then the client's connection is closed.
    fn finish_trigger(&mut self, bytes: Option<Vec<u8>>, conn: Option<fds::TriggerConnection>) {
        if let Some(bytes) = bytes {
            self.service_trigger(&bytes);
        }
        if self
            .master
            .notify(self.pid, self.generation, Availability::Avail)
            .is_err()
        {
            self.master_gone = true;
        }
        drop(conn);
    }

    /// Keeps a client that has sent nothing yet until it does or its wait is up, making room
    /// by closing the oldest one when the set is full.
    fn park_trigger(&mut self, conn: fds::TriggerConnection) {
        if self.parked.clients.len() >= MAX_PARKED {
            let oldest = self
                .parked
                .clients
                .iter()
                .min_by_key(|(_, p)| p.seq)
                .map(|(id, _)| ParkedId(id));
            if let Some(oldest) = oldest {
                drop(self.unpark(oldest));
            }
        }
        self.parked.seq += 1;
        let id = ParkedId(self.parked.clients.insert(Parked {
            conn,
            seq: self.parked.seq,
            timer: None,
        }));
        debug_assert!(
            id.0.index() < MAX_PARKED,
            "slots are reused before new ones"
        );
        let timer = self.timers.arm(
            std::time::Instant::now() + fds::TRIGGER_WAIT,
            TimerKind::ParkedTrigger(id),
        );
        let Some(parked) = self.parked.clients.get_mut(id.0) else {
            return;
        };
        parked.timer = Some(timer);
        let raw = std::os::fd::AsRawFd::as_raw_fd(&parked.conn.fd());
        if self
            .poll
            .registry()
            .register(&mut SourceFd(&raw), id.token(), Interest::READABLE)
            .is_err()
        {
            drop(self.unpark(id));
        }
    }

    /// Takes a client out of the parked set (its timer cancelled, the poll no longer watching
    /// it); dropping what is returned closes it.
    fn unpark(&mut self, id: ParkedId) -> Option<fds::TriggerConnection> {
        let parked = self.parked.clients.remove(id.0)?;
        if let Some(timer) = parked.timer {
            self.timers.cancel(timer);
        }
        let raw = std::os::fd::AsRawFd::as_raw_fd(&parked.conn.fd());
        let _ = self.poll.registry().deregister(&mut SourceFd(&raw));
        Some(parked.conn)
    }

    /// Readiness on the parked client in slot `index`: its bytes (or its hang-up) arrived, and
    /// it is served as one whose bytes were there at accept.
    pub(super) fn on_parked_trigger(&mut self, index: usize) {
        let Some(id) = self.parked.clients.id_at(index).map(ParkedId) else {
            return;
        };
        if !self
            .parked
            .clients
            .get(id.0)
            .is_some_and(|p| p.conn.is_ready())
        {
            return;
        }
        // As before each further trigger in a pass: on its way out, this one takes no more.
        if fds::master_gone(self.master_status()) {
            self.master_gone = true;
            return;
        }
        let Some(conn) = self.unpark(id) else {
            return;
        };
        self.notify_master(Availability::Taken);
        let bytes = conn.read().ok();
        self.finish_trigger(bytes, Some(conn));
    }

    /// A parked client's wait is up: closed with no request and nothing said to master, as
    /// the C server does with a client that sends nothing in time.
    pub(super) fn parked_trigger_timeout(&mut self, id: ParkedId) {
        if let Some(parked) = self.parked.clients.get_mut(id.0) {
            parked.timer = None;
        }
        drop(self.unpark(id));
    }

    fn notify_master(&self, availability: Availability) {
        let _ = self.master.notify(self.pid, self.generation, availability);
    }

    fn service_trigger(&mut self, bytes: &[u8]) {
        if let Some(text) = &self.unexpected_argument {
            fatal(text);
        }
        let req = trigger::parse(bytes);
        if (req.incoming | req.deferred) & scan_flags::FLUSH_ONCE != 0 {
            self.sched.revive_all();
        }
        if req.incoming != 0 {
            self.scan_request(INCOMING, req.incoming);
        }
        if req.deferred != 0 {
            self.scan_request(DEFERRED, req.deferred);
        }
    }
}
