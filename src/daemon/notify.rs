//! A bounce/defer/trace request (Postfix's abounce): connect to `private/<service>`, wait for
//! the service's announcement, write the request, read the status. The connection reports
//! what happened as a [`NotifyVerdict`]; the completion chain gets one callback,
//! [`Daemon::notify_result`], with 0 for done and -1 for any failure or time-out.

use super::conn::{Conn, Readiness};
use super::peers::{Peer, PeerId, PeerTimer};
use super::Daemon;
use crate::proto::bounce::StatusReply;
use crate::proto::protocol::Protocol;
use crate::sched::MessageRef;

/// The async clients wait this long for an answer, as Postfix's abounce does.
const NOTIFY_TIMEOUT: u64 = 1000;

/// A request to bounce/defer/trace in flight, and `tag`: what its outcome is for.
pub struct NotifyConn<T> {
    pub conn: Conn,
    /// Sent once the service has announced itself.
    request: Vec<u8>,
    announced: bool,
    tag: T,
}

/// Whose completion chain continues with a request's outcome.
pub struct NotifyFor {
    message: MessageRef,
}

/// What a readiness event did to a bounce/defer/trace exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum NotifyVerdict {
    /// Nothing decided yet.
    Pending,
    /// The request went out in full: the reply gets a time limit of its own.
    RequestWritten,
    /// The exchange is over with this status (0 done, -1 failed).
    Done(i32),
}

impl<T> NotifyConn<T> {
    pub fn new(conn: Conn, request: Vec<u8>, tag: T) -> Self {
        NotifyConn {
            conn,
            request,
            announced: false,
            tag,
        }
    }

    /// Writes what is pending, then reads what arrived: the announcement sends the request,
    /// the reply ends the exchange.
    pub fn ready(&mut self, ready: Readiness) -> NotifyVerdict {
        let mut written = false;
        if ready.writable && self.conn.wants_write() {
            match self.conn.flush() {
                Ok(true) => written = true,
                Ok(false) => return NotifyVerdict::Pending,
                Err(_) => return NotifyVerdict::Done(-1),
            }
        }
        match self.exchange(&mut written, ready.hangup) {
            Some(status) => NotifyVerdict::Done(status),
            None if written => NotifyVerdict::RequestWritten,
            None => NotifyVerdict::Pending,
        }
    }

    /// The status once the exchange is over (-1: a failure of any kind); `written` is set
    /// when the request went out in full.
    fn exchange(&mut self, written: &mut bool, hangup: bool) -> Option<i32> {
        if self.conn.fill_on_event(hangup).is_err() {
            return Some(-1);
        }
        loop {
            let Some(list) = self.conn.next_list() else {
                return self.conn.at_eof().then_some(-1);
            };
            if self.announced {
                return Some(StatusReply::decode(&list).map_or(-1, |r| r.status));
            }
            if Protocol::DeliveryStatus.check_announcement(&list).is_err() {
                return Some(-1);
            }
            self.announced = true;
            let request = std::mem::take(&mut self.request);
            self.conn.queue(&request);
            match self.conn.flush() {
                Ok(true) => *written = true,
                // The rest goes out when the socket is writable.
                Ok(false) => return None,
                Err(_) => return Some(-1),
            }
        }
    }
}

impl Daemon {
    /// Sends `request` to `private/<service>`; its outcome comes back through
    /// [`Daemon::notify_result`] with `m`.
    pub(super) fn connect_notify(
        &mut self,
        now: u64,
        m: MessageRef,
        service: &[u8],
        request: Vec<u8>,
    ) {
        let path = format!("private/{}", String::from_utf8_lossy(service));
        let conn = match Conn::connect(std::path::Path::new(""), &path) {
            Ok(c) => c,
            Err(_) => {
                self.notify_result(now, m, -1);
                return;
            }
        };
        let tag = NotifyFor { message: m };
        let notify = NotifyConn::new(conn, request, tag);
        match self.add_peer(Peer::Notify(notify)) {
            Some(id) => self.arm_peer_timer(id, NOTIFY_TIMEOUT, PeerTimer::NotifyTimeout),
            None => self.notify_result(now, m, -1),
        }
    }

    pub(super) fn on_notify_ready(&mut self, id: PeerId, ready: Readiness) {
        let now = super::now_secs();
        let Some(n) = self.peers.notify_mut(id) else {
            return;
        };
        let verdict = n.ready(ready);
        self.sync_interest(id);
        match verdict {
            NotifyVerdict::Pending => {}
            // As Postfix's abounce: the greeting has ABOUNCE_TIMEOUT, and once the request is
            // written the reply has ABOUNCE_TIMEOUT again.
            NotifyVerdict::RequestWritten => {
                self.arm_peer_timer(id, NOTIFY_TIMEOUT, PeerTimer::NotifyTimeout)
            }
            NotifyVerdict::Done(status) => self.end_notify(now, id, status),
        }
    }

    pub(super) fn notify_timeout(&mut self, id: PeerId) {
        self.end_notify(super::now_secs(), id, -1);
    }

    fn end_notify(&mut self, now: u64, id: PeerId, status: i32) {
        if let Some(Peer::Notify(n)) = self.remove_peer(id) {
            self.notify_result(now, n.tag.message, status);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use mio::net::UnixStream;

    use super::*;
    use crate::proto::attr::AttrMessage;

    /// A request on one end of a socket pair; the other end plays the service.
    fn request() -> (NotifyConn<()>, UnixStream) {
        let (client, service) = UnixStream::pair().unwrap();
        let conn = Conn::new(client, "private/bounce");
        (NotifyConn::new(conn, b"request\0".to_vec(), ()), service)
    }

    fn announce(service: &mut UnixStream, protocol: Protocol) {
        let mut bytes = Vec::new();
        protocol.encode_announcement(&mut bytes);
        service.write_all(&bytes).unwrap();
    }

    #[test]
    fn the_request_goes_out_after_the_announcement_and_the_reply_ends_it() {
        let (mut n, mut service) = request();
        assert_eq!(n.ready(Readiness::default()), NotifyVerdict::Pending);
        announce(&mut service, Protocol::DeliveryStatus);
        assert_eq!(n.ready(Readiness::default()), NotifyVerdict::RequestWritten);
        let mut got = [0u8; 8];
        service.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"request\0");
        assert_eq!(n.ready(Readiness::default()), NotifyVerdict::Pending);
        service
            .write_all(&StatusReply { status: 0 }.to_bytes())
            .unwrap();
        assert_eq!(n.ready(Readiness::default()), NotifyVerdict::Done(0));
    }

    #[test]
    fn a_wrong_announcement_or_a_hang_up_fails_the_request() {
        let (mut n, mut service) = request();
        announce(&mut service, Protocol::DeliveryRequest);
        assert_eq!(n.ready(Readiness::default()), NotifyVerdict::Done(-1));

        let (mut n, mut service) = request();
        announce(&mut service, Protocol::DeliveryStatus);
        assert_eq!(n.ready(Readiness::default()), NotifyVerdict::RequestWritten);
        drop(service);
        let hangup = Readiness {
            writable: false,
            hangup: true,
        };
        assert_eq!(n.ready(hangup), NotifyVerdict::Done(-1));
    }
}
