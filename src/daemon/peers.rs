//! The connections the loop drives besides trivial-rewrite: delivery agents and
//! bounce/defer/trace clients. Each lives in a slab slot whose index is its poll token
//! (`FIRST_PEER + index`); the slot's generation makes a late timer for a connection that has
//! since closed (its slot perhaps reused) find nothing.

use log::warn;
use mio::net::UnixStream;
use mio::{Interest, Token};

use super::conn::{Conn, Readiness};
use super::deliver::AgentConn;
use super::notify::{NotifyConn, NotifyFor};
use super::timers::TimerId;
use super::{Daemon, TimerKind, FIRST_PEER};
use crate::maillog;
use crate::slab::{Id, Slab};

/// One connection, for as long as it is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PeerId(Id);

impl PeerId {
    fn token(self) -> Token {
        Token(FIRST_PEER + self.0.index())
    }
}

/// A connection the loop is driving.
pub(super) enum Peer {
    Agent(AgentConn),
    Notify(NotifyConn<NotifyFor>),
}

impl Peer {
    fn conn(&mut self) -> &mut Conn {
        match self {
            Peer::Agent(a) => &mut a.conn,
            Peer::Notify(n) => &mut n.conn,
        }
    }

    fn stream(&mut self) -> &mut UnixStream {
        &mut self.conn().stream
    }
}

struct PeerSlot {
    peer: Peer,
    /// The connection's time limit (connect, reply, rate delay), cancelled with it.
    timer: Option<TimerId>,
    /// Registered for writability as well (while a request is partly written).
    writing: bool,
}

/// The open connections.
#[derive(Default)]
pub(super) struct Peers(Slab<PeerSlot>);

impl Peers {
    /// The agent connection `id`, if it is still open.
    pub(super) fn agent_mut(&mut self, id: PeerId) -> Option<&mut AgentConn> {
        match self.0.get_mut(id.0) {
            Some(PeerSlot {
                peer: Peer::Agent(a),
                ..
            }) => Some(a),
            _ => None,
        }
    }

    /// The bounce/defer/trace connection `id`, if it is still open.
    pub(super) fn notify_mut(&mut self, id: PeerId) -> Option<&mut NotifyConn<NotifyFor>> {
        match self.0.get_mut(id.0) {
            Some(PeerSlot {
                peer: Peer::Notify(n),
                ..
            }) => Some(n),
            _ => None,
        }
    }
}

/// What a connection's one timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerTimer {
    /// daemon_timeout while connecting to, or waiting for, a delivery agent.
    AgentTimeout,
    /// qmgr_ipc_timeout while a delivery request is still being written.
    RequestWrite,
    /// `<transport>_transport_rate_delay` after the agent announced itself.
    RateDelay,
    /// A bounce/defer/trace request got no answer in time.
    NotifyTimeout,
}

impl Daemon {
    /// Opens a slot for a new connection, registered under its token for readability (it
    /// waits for the service's announcement).
    pub(super) fn add_peer(&mut self, peer: Peer) -> Option<PeerId> {
        let id = PeerId(self.peers.0.insert(PeerSlot {
            peer,
            timer: None,
            writing: false,
        }));
        let slot = self.peers.0.get_mut(id.0)?;
        if let Err(e) =
            self.poll
                .registry()
                .register(slot.peer.stream(), id.token(), Interest::READABLE)
        {
            warn!("register connection: {}", maillog::strerror(&e));
            self.peers.0.remove(id.0);
            return None;
        }
        Some(id)
    }

    pub(super) fn remove_peer(&mut self, id: PeerId) -> Option<Peer> {
        let slot = self.peers.0.remove(id.0)?;
        if let Some(timer) = slot.timer {
            self.timers.cancel(timer);
        }
        // No deregister: the caller drops the connection before the loop polls again, and
        // closing a descriptor nobody duplicated takes it out of the epoll set; that saves an
        // epoll_ctl per delivery.
        Some(slot.peer)
    }

    /// Registers a connection for writability exactly while it has bytes left to send (a
    /// request that did not go out in one write).
    pub(super) fn sync_interest(&mut self, id: PeerId) {
        let Some(slot) = self.peers.0.get_mut(id.0) else {
            return;
        };
        let writing = slot.peer.conn().wants_write();
        if writing == slot.writing {
            return;
        }
        slot.writing = writing;
        let interest = if writing {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let _ = self
            .poll
            .registry()
            .reregister(slot.peer.stream(), id.token(), interest);
    }

    /// Sets a connection's one timer, replacing the previous one.
    pub(super) fn arm_peer_timer(&mut self, id: PeerId, secs: u64, timer: PeerTimer) {
        let timer_id = self.arm_after(secs, TimerKind::Peer(id, timer));
        if let Some(slot) = self.peers.0.get_mut(id.0) {
            if let Some(old) = slot.timer.replace(timer_id) {
                self.timers.cancel(old);
            }
        } else {
            self.timers.cancel(timer_id);
        }
    }

    /// Readiness on the connection in slot `index` (its token's).
    pub(super) fn on_peer_ready(&mut self, index: usize, ready: Readiness) {
        let Some(id) = self.peers.0.id_at(index).map(PeerId) else {
            return;
        };
        match self.peers.0.get(id.0).map(|slot| &slot.peer) {
            Some(Peer::Agent(_)) => self.on_agent_ready(id, ready),
            Some(Peer::Notify(_)) => self.on_notify_ready(id, ready),
            None => {}
        }
    }

    /// A connection's timer fired (one for a connection since closed finds nothing).
    pub(super) fn on_peer_timer(&mut self, id: PeerId, timer: PeerTimer) {
        match timer {
            PeerTimer::AgentTimeout => self.agent_timeout(id),
            PeerTimer::RequestWrite => self.request_write_timeout(id),
            PeerTimer::RateDelay => self.rate_delay_over(id),
            PeerTimer::NotifyTimeout => self.notify_timeout(id),
        }
    }
}
