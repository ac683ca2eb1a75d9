//! Delivery-agent connections (the C daemon's qmgr_transport_alloc and qmgr_deliver): a
//! non-blocking connect to `private/<transport>`, the agent's announcement, one request, one
//! reply, close. Every failure ends in the scheduler: an unreachable or babbling agent makes
//! the transport unavailable, a crash mid-delivery defers the mail.

use crate::proto::attr::AttrMessage;
use log::warn;
use mio::Interest;

use super::conn::{socket_name, Conn, ConnError};
use super::{fatal, Daemon, Peer, TimerKind};
use crate::proto::attr::{AttrList, ScanMode};
use crate::proto::protocol::Protocol;
use crate::sched::{EntryRef, TransportRef};

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
    Delivering { entry: EntryRef, queue_id: Vec<u8> },
}

pub struct AgentConn {
    pub conn: Conn,
    transport: TransportRef,
    name: String,
    state: AgentState,
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
                match self.add_peer(Peer::Agent(agent), Interest::READABLE) {
                    Some((slot, serial)) => {
                        let timeout = self.daemon_timeout();
                        self.arm_peer_timer(
                            slot,
                            timeout,
                            TimerKind::AgentTimeout { slot, serial },
                        );
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
                let delay = self.transport_rate_delay(&name);
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

    /// Whether the agent announced `delivery_request_protocol`: `None` while the announcement
    /// is still incomplete; `Some(false)`, with the C daemon's warning, when it is malformed
    /// or the agent hung up.
    fn announcement(&mut self, slot: usize, filled: bool) -> Option<bool> {
        let agent = self.agent_mut(slot)?;
        let announced = match (filled, agent.conn.next_list()) {
            (true, Some(list)) => Protocol::DeliveryRequest.check_announcement(&list).is_ok(),
            (true, None) if !agent.conn.at_eof() => return None,
            _ => false,
        };
        if !announced {
            warn!("{} socket: malformed response", agent.conn.path);
        }
        Some(announced)
    }

    /// The agent's announcement decides: the request goes out, or the transport is
    /// unavailable; an incomplete one waits for more.
    fn on_announcement(&mut self, now: u64, slot: usize, filled: bool) {
        match self.announcement(slot, filled) {
            None => {}
            Some(true) => self.send_request(now, slot),
            Some(false) => self.agent_malformed(now, slot),
        }
    }

    /// The agent did not announce itself properly: the transport is unavailable.
    fn agent_malformed(&mut self, now: u64, slot: usize) {
        if let Some(Peer::Agent(agent)) = self.remove_peer(slot) {
            self.sched.agent_unavailable(now, agent.transport);
            self.run_actions(now);
        }
    }

    pub(super) fn on_agent_ready(&mut self, slot: usize, writable: bool) {
        let now = super::now_secs();
        let Some(agent) = self.agent_mut(slot) else {
            return;
        };
        if writable && agent.conn.wants_write() {
            match agent.conn.flush() {
                Ok(true) => {
                    self.set_interest(slot, Interest::READABLE);
                    if let Some(serial) = self.peer_serial(slot) {
                        self.await_reply(slot, serial);
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    self.write_failed(now, slot, &e);
                    return;
                }
            }
        }
        let Some(agent) = self.agent_mut(slot) else {
            return;
        };
        let filled = agent.conn.fill();
        match &agent.state {
            AgentState::Connecting => {
                // The agent spoke or hung up. As qmgr_transport_event: with a rate delay, the
                // announcement is read only once the delay is over.
                let delay = {
                    let name = agent.name.clone();
                    self.transport_rate_delay(&name)
                };
                if delay > 0 {
                    if let Some(Some(entry)) = self.peers.get_mut(slot) {
                        if let Peer::Agent(a) = &mut entry.peer {
                            a.state = AgentState::RateDelay;
                        }
                        let serial = entry.serial;
                        self.arm_peer_timer(slot, delay, TimerKind::RateDelay { slot, serial });
                    }
                    return;
                }
                self.on_announcement(now, slot, filled.is_ok());
            }
            AgentState::RateDelay => {
                // Nothing is expected now: the announcement is looked at when the delay ends.
            }
            AgentState::Announcing => self.on_announcement(now, slot, filled.is_ok()),
            AgentState::Delivering { entry, .. } => {
                let entry = *entry;
                let scanned = match (&filled, agent.conn.next_list()) {
                    (Ok(()), Some(list)) => scan_final_reply(&list, &agent.conn.path),
                    (Ok(()), None) if !agent.conn.at_eof() => return,
                    (Err(ConnError::Attr(e)), None) => ScannedReply {
                        warnings: vec![e.warning(&socket_name(&agent.conn.path))],
                        ..ScannedReply::default()
                    },
                    // A hang-up or reset: C's attr_scan reads the end of input before any
                    // field (its peekfd test practically never fails), and warns only when a
                    // list was cut off.
                    _ => ScannedReply {
                        warnings: agent.conn.cut_off_warning().into_iter().collect(),
                        ..ScannedReply::default()
                    },
                };
                for w in &scanned.warnings {
                    warn!("{w}");
                }
                if scanned.status.is_none() {
                    warn!("{} socket: malformed response", agent.conn.path);
                }
                self.remove_peer(slot);
                self.sched
                    .agent_reply_scan(now, entry, &scanned.hop_fields, scanned.status);
                self.run_actions(now);
            }
        }
    }

    fn transport_rate_delay(&self, name: &str) -> u64 {
        // The scheduler knows the parameters; the loop only needs the delay.
        self.sched
            .transport_rate_delay(name.as_bytes())
            .unwrap_or(0)
    }

    /// The rate delay after the agent spoke is over: its announcement decides.
    pub(super) fn rate_delay_over(&mut self, slot: usize, serial: u64) {
        if self.peer_serial(slot) != Some(serial) {
            return;
        }
        let now = super::now_secs();
        let filled = self.agent_mut(slot).map(|a| a.conn.fill().is_ok());
        match self.announcement(slot, filled.unwrap_or(false)) {
            None => {
                // Not all there yet: the next readable event finishes it, under the
                // connection's daemon_timeout.
                if let Some(agent) = self.agent_mut(slot) {
                    agent.state = AgentState::Announcing;
                }
                let timeout = self.daemon_timeout();
                self.arm_peer_timer(slot, timeout, TimerKind::AgentTimeout { slot, serial });
            }
            Some(true) => self.send_request(now, slot),
            Some(false) => self.agent_malformed(now, slot),
        }
    }

    /// Picks the next entry for this agent and writes the request, or closes the connection
    /// when there is nothing to send any more.
    fn send_request(&mut self, now: u64, slot: usize) {
        let Some(transport) = self.agent_mut(slot).map(|a| a.transport) else {
            return;
        };
        let Some((e, request)) = self.sched.agent_ready(now, transport) else {
            self.remove_peer(slot);
            self.run_actions(now);
            return;
        };
        let bytes = request.to_bytes();
        let Some(Some(slot_entry)) = self.peers.get_mut(slot) else {
            return;
        };
        let Peer::Agent(agent) = &mut slot_entry.peer else {
            return;
        };
        agent.state = AgentState::Delivering {
            entry: e,
            queue_id: request.queue_id,
        };
        let serial = slot_entry.serial;
        agent.conn.queue(&bytes);
        match agent.conn.flush() {
            Ok(true) => self.await_reply(slot, serial),
            Ok(false) => {
                // The C daemon writes the request blocking, bounded by ipc_timeout
                // (qmgr_ipc_timeout); ours waits for writability under the same bound.
                self.set_interest(slot, Interest::READABLE | Interest::WRITABLE);
                let timeout = u64::try_from(self.params.ipc_timeout).unwrap_or(60);
                self.arm_peer_timer(slot, timeout, TimerKind::RequestWrite { slot, serial });
            }
            Err(err) => {
                self.write_failed(now, slot, &err);
                return;
            }
        }
        self.run_actions(now);
    }

    /// The request is written: daemon_timeout for the reply, counted from then, as the C
    /// daemon arms qmgr_deliver_abort once qmgr_deliver_send_request returns.
    fn await_reply(&mut self, slot: usize, serial: u64) {
        let timeout = self.daemon_timeout();
        self.arm_peer_timer(slot, timeout, TimerKind::AgentTimeout { slot, serial });
    }

    /// qmgr_ipc_timeout passed with the request still not written (an agent that does not
    /// read): the C daemon's blocking write fails with a time-out, so the transport is
    /// throttled and its mail deferred.
    pub(super) fn request_write_timeout(&mut self, slot: usize, serial: u64) {
        if self.peer_serial(slot) != Some(serial)
            || !self.agent_mut(slot).is_some_and(|a| a.conn.wants_write())
        {
            return;
        }
        let err = std::io::Error::from_raw_os_error(libc::ETIMEDOUT);
        self.write_failed(super::now_secs(), slot, &err);
    }

    fn daemon_timeout(&self) -> u64 {
        u64::try_from(self.params.daemon_timeout).unwrap_or(18000)
    }

    fn write_failed(&mut self, now: u64, slot: usize, err: &std::io::Error) {
        let Some(Peer::Agent(agent)) = self.remove_peer(slot) else {
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
    pub(super) fn agent_timeout(&mut self, slot: usize, serial: u64) {
        if self.peer_serial(slot) != Some(serial) {
            return;
        }
        let Some(Some(entry)) = self.peers.get(slot) else {
            return;
        };
        let Peer::Agent(agent) = &entry.peer else {
            return;
        };
        match &agent.state {
            AgentState::Delivering { queue_id, .. } => fatal(&format!(
                "{}: timeout receiving delivery status from transport: {}",
                String::from_utf8_lossy(queue_id),
                agent.name
            )),
            _ => fatal(&format!("timeout connecting to transport: {}", agent.name)),
        }
    }
}

/// An agent's final reply as the C daemon's qmgr_deliver_final_reply reads it with a strict
/// attr_scan: the hop-status fields read before anything went wrong, and the status.
#[derive(Debug, Default, PartialEq)]
struct ScannedReply {
    /// Leading fields of the DSN group, in dsb_scan's order.
    hop_fields: Vec<Vec<u8>>,
    /// `None`: the reply was malformed (DELIVER_STAT_CRASH).
    status: Option<i32>,
    /// attr_scan's own warnings.
    warnings: Vec<String>,
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
fn scan_final_reply(list: &AttrList, path: &str) -> ScannedReply {
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
