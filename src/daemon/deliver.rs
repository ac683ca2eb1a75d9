//! Delivery-agent connections (the C daemon's qmgr_transport_alloc and qmgr_deliver): a
//! non-blocking connect to `private/<transport>`, the agent's announcement, one request, one
//! reply, close. The connection reads and writes on its own and reports what happened as an
//! [`AgentVerdict`]; the loop turns that into scheduler calls and timers. Every failure ends in
//! the scheduler: an unreachable or babbling agent makes the transport unavailable, a crash
//! mid-delivery defers the mail.

use std::io;

use crate::proto::attr::{AttrMessage, AttrWriter};
use log::warn;

use super::conn::{socket_name, Conn, ConnError, Readiness};
use super::peers::{Peer, PeerId, PeerTimer};
use super::{fatal, Daemon, TimerKind};
use crate::proto::attr::{AttrList, ScanMode};
use crate::proto::protocol::Protocol;
use crate::sched::{EntryRef, Scheduler, TransportRef};

/// Where an agent connection stands.
pub enum AgentState {
    /// Waiting for `{protocol=delivery_request_protocol}`.
    Connecting,
    /// Spoke (or hung up); waiting out `<transport>_transport_rate_delay` before its
    /// announcement is read and the request sent.
    RateDelay,
    /// The rate delay is over but the announcement was incomplete.
    Announcing,
    /// Request sent (or being written) for this entry; waiting for the reply.
    Delivering { entry: EntryRef },
}

pub struct AgentConn {
    pub conn: Conn,
    transport: TransportRef,
    name: String,
    state: AgentState,
}

/// What a readiness event (or the end of the rate delay) did to an agent connection.
#[derive(Debug)]
pub enum AgentVerdict {
    /// Nothing decided yet: more bytes to come, or the rate delay to wait out.
    Pending,
    /// The rest of the request went out: the reply's time limit starts now.
    RequestWritten,
    /// The agent spoke while `<transport>_transport_rate_delay` applies: its announcement is
    /// read once these seconds are over.
    RateDelay(u64),
    /// The agent announced `delivery_request_protocol`: a request may go out.
    Announced,
    /// The announcement was malformed or the agent hung up (warning logged): the transport
    /// is unavailable.
    AnnounceFailed,
    /// The final reply (its warnings logged): the hop-status fields read before anything
    /// went wrong, and the status (`None`: malformed).
    Replied {
        entry: EntryRef,
        hop_fields: Vec<Vec<u8>>,
        status: Option<i32>,
    },
    /// The request could not be written.
    WriteFailed(io::Error),
}

impl AgentConn {
    /// Writes what is left of the request, then reads what arrived. `rate_delay` gives a
    /// transport's rate delay by name; it is asked only when the agent first speaks.
    pub fn ready(
        &mut self,
        ready: Readiness,
        rate_delay: impl FnOnce(&str) -> u64,
    ) -> AgentVerdict {
        let mut written = false;
        if ready.writable && self.conn.wants_write() {
            match self.conn.flush() {
                Ok(true) => written = true,
                Ok(false) => {}
                Err(e) => return AgentVerdict::WriteFailed(e),
            }
        }
        let filled = self.conn.fill_on_event(ready.hangup);
        let verdict = match &self.state {
            AgentState::Connecting => {
                // The agent spoke or hung up. As qmgr_transport_event: with a rate delay, the
                // announcement is read only once the delay is over.
                let delay = rate_delay(&self.name);
                if delay > 0 {
                    self.state = AgentState::RateDelay;
                    AgentVerdict::RateDelay(delay)
                } else {
                    self.announcement(filled.is_ok())
                }
            }
            // Nothing is expected now: the announcement is looked at when the delay ends.
            AgentState::RateDelay => AgentVerdict::Pending,
            AgentState::Announcing => self.announcement(filled.is_ok()),
            AgentState::Delivering { entry, .. } => {
                let entry = *entry;
                self.final_reply(entry, filled)
            }
        };
        // Only a request is ever written, so a reply is the one other verdict that can follow
        // a write; it closes the connection and makes the reply's time limit moot.
        match verdict {
            AgentVerdict::Pending if written => AgentVerdict::RequestWritten,
            verdict => verdict,
        }
    }

    /// The rate delay is over: the announcement decides; `Pending` (now `Announcing`) when
    /// it is still incomplete.
    pub fn rate_delay_over(&mut self) -> AgentVerdict {
        let filled = self.conn.fill().is_ok();
        let verdict = self.announcement(filled);
        if matches!(verdict, AgentVerdict::Pending) {
            self.state = AgentState::Announcing;
        }
        verdict
    }

    /// Starts writing the request for `entry` (its wire bytes). `Ok(true)`: it is all out.
    pub fn send(&mut self, entry: EntryRef, bytes: &[u8]) -> io::Result<bool> {
        self.state = AgentState::Delivering { entry };
        self.conn.send(bytes)
    }

    /// Whether the agent announced `delivery_request_protocol`: `Pending` while the
    /// announcement is still incomplete; the C daemon's warning when it is malformed or the
    /// agent hung up.
    fn announcement(&mut self, filled: bool) -> AgentVerdict {
        let announced = match (filled, self.conn.next_list()) {
            (true, Some(list)) => Protocol::DeliveryRequest.check_announcement(&list).is_ok(),
            (true, None) if !self.conn.at_eof() => return AgentVerdict::Pending,
            _ => false,
        };
        if announced {
            AgentVerdict::Announced
        } else {
            warn!("{} socket: malformed response", self.conn.path);
            AgentVerdict::AnnounceFailed
        }
    }

    /// The reply to the request for `entry`, once it is complete or the agent is gone.
    fn final_reply(&mut self, entry: EntryRef, filled: Result<(), ConnError>) -> AgentVerdict {
        let scanned = match (&filled, self.conn.next_list()) {
            (Ok(()), Some(list)) => scan_final_reply(&list, &self.conn.path),
            (Ok(()), None) if !self.conn.at_eof() => return AgentVerdict::Pending,
            (Err(ConnError::Attr(e)), None) => ScannedReply {
                warnings: vec![e.warning(&socket_name(&self.conn.path))],
                ..ScannedReply::default()
            },
            // A hang-up or reset: C's attr_scan reads the end of input before any field (its
            // peekfd test practically never fails), and warns only when a list was cut off.
            _ => ScannedReply {
                warnings: self.conn.cut_off_warning().into_iter().collect(),
                ..ScannedReply::default()
            },
        };
        for w in &scanned.warnings {
            warn!("{w}");
        }
        if scanned.status.is_none() {
            warn!("{} socket: malformed response", self.conn.path);
        }
        AgentVerdict::Replied {
            entry,
            hop_fields: scanned.hop_fields,
            status: scanned.status,
        }
    }
}

/// The scheduler knows the parameters; the loop only needs the delay.
fn transport_rate_delay(sched: &Scheduler, name: &str) -> u64 {
    sched.transport_rate_delay(name.as_bytes()).unwrap_or(0)
}

impl Daemon {
    /// Action::Connect: start a connection to the transport's agent.
    pub(super) fn connect_agent(&mut self, now: u64, transport: TransportRef, name: &[u8]) {
        let name = String::from_utf8_lossy(name).into_owned();
        let path = format!("private/{name}");
        match Conn::connect(std::path::Path::new(""), &path) {
            Ok(conn) => {
                let agent = AgentConn {
                    conn,
                    transport,
                    name,
                    state: AgentState::Connecting,
                };
                match self.add_peer(Peer::Agent(agent)) {
                    Some(id) => {
                        let timeout = self.daemon_timeout();
                        self.arm_peer_timer(id, timeout, PeerTimer::AgentTimeout);
                    }
                    None => {
                        self.sched.agent_unavailable(now, transport);
                        self.run_actions(now);
                    }
                }
            }
            Err(e) => {
                warn!(
                    "connect to transport {path}: {}",
                    crate::maillog::strerror(&e)
                );
                // As qmgr_transport_event: with a rate delay, the failure is acted on only
                // once the delay is over (the transport stays rate-locked meanwhile).
                let delay = transport_rate_delay(&self.sched, &name);
                if delay > 0 {
                    let _ = self.arm_after(delay, TimerKind::AgentUnavailable { transport });
                    return;
                }
                self.sched.agent_unavailable(now, transport);
                self.run_actions(now);
            }
        }
    }

    /// A failed connect's rate delay is over: the transport is unavailable.
    pub(super) fn agent_unavailable_after_delay(&mut self, transport: TransportRef) {
        let now = super::now_secs();
        self.sched.agent_unavailable(now, transport);
        self.run_actions(now);
    }

    pub(super) fn on_agent_ready(&mut self, id: PeerId, ready: Readiness) {
        let now = super::now_secs();
        let sched = &self.sched;
        let Some(agent) = self.peers.agent_mut(id) else {
            return;
        };
        let verdict = agent.ready(ready, |name| transport_rate_delay(sched, name));
        self.sync_interest(id);
        self.on_agent_verdict(now, id, verdict);
    }

    /// The rate delay after the agent spoke is over: its announcement decides.
    pub(super) fn rate_delay_over(&mut self, id: PeerId) {
        let Some(agent) = self.peers.agent_mut(id) else {
            return;
        };
        let now = super::now_secs();
        match agent.rate_delay_over() {
            AgentVerdict::Pending => {
                // Not all there yet: the next readable event finishes it, under the
                // connection's daemon_timeout.
                let timeout = self.daemon_timeout();
                self.arm_peer_timer(id, timeout, PeerTimer::AgentTimeout);
            }
            verdict => self.on_agent_verdict(now, id, verdict),
        }
    }

    /// Carries out what the agent connection reported.
    fn on_agent_verdict(&mut self, now: u64, id: PeerId, verdict: AgentVerdict) {
        match verdict {
            AgentVerdict::Pending => {}
            AgentVerdict::RequestWritten => self.await_reply(id),
            AgentVerdict::RateDelay(delay) => self.arm_peer_timer(id, delay, PeerTimer::RateDelay),
            AgentVerdict::Announced => self.send_request(now, id),
            AgentVerdict::AnnounceFailed => {
                if let Some(Peer::Agent(agent)) = self.remove_peer(id) {
                    self.sched.agent_unavailable(now, agent.transport);
                    self.run_actions(now);
                }
            }
            AgentVerdict::Replied {
                entry,
                hop_fields,
                status,
            } => {
                self.remove_peer(id);
                self.sched.agent_reply_scan(now, entry, &hop_fields, status);
                self.run_actions(now);
            }
            AgentVerdict::WriteFailed(e) => self.write_failed(now, id, &e),
        }
    }

    /// Picks the next entry for this agent and writes the request, or closes the connection
    /// when there is nothing to send any more.
    fn send_request(&mut self, now: u64, id: PeerId) {
        let Some(transport) = self.peers.agent_mut(id).map(|a| a.transport) else {
            return;
        };
        let Some(entry) = self.sched.agent_pick(now, transport) else {
            self.remove_peer(id);
            self.run_actions(now);
            return;
        };
        let mut w = AttrWriter::with_buffer(std::mem::take(&mut self.request_buf));
        self.sched.with_delivery_request(entry, |r| r.write(&mut w));
        let mut bytes = w.into_bytes();
        let sent = match self.peers.agent_mut(id) {
            Some(agent) => agent.send(entry, &bytes),
            None => return,
        };
        bytes.clear();
        self.request_buf = bytes;
        match sent {
            Ok(true) => self.await_reply(id),
            Ok(false) => {
                // The C daemon writes the request blocking, bounded by ipc_timeout
                // (qmgr_ipc_timeout); ours waits for writability under the same bound.
                self.sync_interest(id);
                let timeout = u64::try_from(self.params.ipc_timeout).unwrap_or(60);
                self.arm_peer_timer(id, timeout, PeerTimer::RequestWrite);
            }
            Err(err) => {
                self.write_failed(now, id, &err);
                return;
            }
        }
        self.run_actions(now);
    }

    /// The request is written: daemon_timeout for the reply, counted from then, as the C
    /// daemon arms qmgr_deliver_abort once qmgr_deliver_send_request returns.
    fn await_reply(&mut self, id: PeerId) {
        let timeout = self.daemon_timeout();
        self.arm_peer_timer(id, timeout, PeerTimer::AgentTimeout);
    }

    /// qmgr_ipc_timeout passed with the request still not written (an agent that does not
    /// read): the C daemon's blocking write fails with a time-out, so the transport is
    /// throttled and its mail deferred.
    pub(super) fn request_write_timeout(&mut self, id: PeerId) {
        if !self
            .peers
            .agent_mut(id)
            .is_some_and(|a| a.conn.wants_write())
        {
            return;
        }
        let err = io::Error::from_raw_os_error(libc::ETIMEDOUT);
        self.write_failed(super::now_secs(), id, &err);
    }

    fn daemon_timeout(&self) -> u64 {
        u64::try_from(self.params.daemon_timeout).unwrap_or(18000)
    }

    fn write_failed(&mut self, now: u64, id: PeerId, err: &io::Error) {
        let Some(Peer::Agent(agent)) = self.remove_peer(id) else {
            return;
        };
        warn!(
            "write to process ({}): {}",
            agent.name,
            crate::maillog::strerror(err)
        );
        if let AgentState::Delivering { entry, .. } = agent.state {
            self.sched.request_failed(now, entry);
        } else {
            self.sched.agent_unavailable(now, agent.transport);
        }
        self.run_actions(now);
    }

    /// daemon_timeout passed without an announcement or a reply: the C daemon gives up.
    pub(super) fn agent_timeout(&mut self, id: PeerId) {
        let Some(agent) = self.peers.agent_mut(id) else {
            return;
        };
        match &agent.state {
            AgentState::Delivering { entry } => fatal(&format!(
                "{}: timeout receiving delivery status from transport: {}",
                String::from_utf8_lossy(self.sched.entry_queue_id(*entry).unwrap_or_default()),
                agent.name
            )),
            _ => fatal(&format!("timeout connecting to transport: {}", agent.name)),
        }
    }
}

/// An agent's final reply as the C daemon's qmgr_deliver_final_reply reads it with a strict
/// attr_scan: the hop-status fields read before anything went wrong, and the status.
#[derive(Debug, Default, PartialEq)]
pub struct ScannedReply {
    /// Leading fields of the DSN group, in dsb_scan's order.
    pub hop_fields: Vec<Vec<u8>>,
    /// `None`: the reply was malformed (DELIVER_STAT_CRASH).
    pub status: Option<i32>,
    /// attr_scan's own warnings.
    pub warnings: Vec<String>,
}

/// The seven DSN attributes of a reply, in the order dsb_scan reads them.
const HOP_STATUS_FIELDS: [&str; 7] = [
    "status",
    "diag_type",
    "diag_text",
    "mta_type",
    "mta_mname",
    "action",
    "reason",
];

/// Scans a reply field by field as attr_scan does, so that a reply malformed part-way still
/// leaves what it carried in the scheduler's hop-status buffer. An attribute after `status`
/// only draws a warning: the C scanner has converted both items by then. `path` is the
/// connection's (`private/smtp`); warnings name it as the C daemon does (`private/smtp socket`).
pub fn scan_final_reply(list: &AttrList, path: &str) -> ScannedReply {
    let warning = |e: crate::proto::attr::AttrError| e.warning(&socket_name(path));
    let mut scanned = ScannedReply::default();
    let mut r = list.reader(ScanMode::Strict);
    for name in HOP_STATUS_FIELDS {
        match r.str(name) {
            Ok(value) => scanned.hop_fields.push(value.to_vec()),
            Err(e) => {
                scanned.warnings.push(warning(e));
                return scanned;
            }
        }
    }
    match r.int_signed("status") {
        Ok(status) => scanned.status = Some(status),
        Err(e) => {
            scanned.warnings.push(warning(e));
            return scanned;
        }
    }
    if let Err(e) = r.end() {
        scanned.warnings.push(warning(e));
    }
    scanned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::attr::AttrDecoder;
    use crate::proto::deliver::DeliveryReply;

    fn list(bytes: &[u8]) -> AttrList {
        AttrDecoder::default().feed(bytes).unwrap().remove(0)
    }

    #[test]
    fn a_full_reply_fills_every_field() {
        let reply = DeliveryReply {
            status: -1,
            ..DeliveryReply::default()
        };
        let scanned = scan_final_reply(&list(&reply.to_bytes()), "private/smtp");
        assert_eq!(scanned.hop_fields.len(), 7);
        assert_eq!(scanned.status, Some(-1));
        assert!(scanned.warnings.is_empty());
    }

    #[test]
    fn a_reply_malformed_part_way_keeps_the_fields_before_the_fault() {
        let scanned = scan_final_reply(
            &list(b"status\x004.7.1\0diag_type\0smtp\0bogus\0x\0\0"),
            "private/smtp",
        );
        assert_eq!(
            scanned.hop_fields,
            vec![b"4.7.1".to_vec(), b"smtp".to_vec()]
        );
        assert_eq!(scanned.status, None);
        assert_eq!(
            scanned.warnings,
            vec!["unexpected attribute bogus from private/smtp socket (expecting: diag_text)"]
        );
    }

    #[test]
    fn an_attribute_after_the_status_is_only_a_warning() {
        let mut bytes = DeliveryReply::default().to_bytes();
        bytes.pop();
        bytes.extend_from_slice(b"extra\0x\0\0");
        let scanned = scan_final_reply(&list(&bytes), "private/smtp");
        assert_eq!(scanned.status, Some(0));
        assert_eq!(
            scanned.warnings,
            vec!["unexpected attribute extra from private/smtp socket (expecting: (list terminator))"]
        );
    }
}
