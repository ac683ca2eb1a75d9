//! Triggers on public/qmgr (or the fifo): master's wake-ups asking for a queue scan, taken a
//! bounded number per pass, each answered TAKEN and AVAIL to master as a trigger server does.

use std::time::Duration;

use log::info;

use super::{fatal, Daemon};
use crate::master::fds;
use crate::master::options::ServiceType;
use crate::master::status::Availability;
use crate::master::trigger;
use crate::queue::path::{DEFERRED, INCOMING};
use crate::queue::scan_flags;

/// Triggers taken per loop pass before other work gets a turn.
const TRIGGERS_PER_PASS: usize = 64;

/// What a listener had pending.
enum NextTrigger {
    /// Nothing (the listener is drained).
    Nothing,
    /// A client that sent nothing in time, or an accept error: no request.
    Skipped,
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
                    NextTrigger::Read(bytes, conn) => {
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
                match fds::accept_trigger(listen, fds::TRIGGER_WAIT) {
                    Ok(Some(conn)) => {
                        self.notify_master(Availability::Taken);
                        let bytes = conn.read().ok();
                        NextTrigger::Read(bytes, Some(conn))
                    }
                    Ok(None) => NextTrigger::Skipped,
                    Err(e) => {
                        log::error!("{e}");
                        NextTrigger::Skipped
                    }
                }
            }
        }
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
