//! The status socket `private/oqmgr-status` that `oqmgrctl status` and `oqmgrctl metrics` ask
//! (protocol: [`crate::proto::status`]). A client connects, sends `{request=status}`, reads
//! the summary, the transports, the destinations and `{kind=end}`, and the server closes.
//!
//! # How it is served without harming scheduling
//!
//! The server lives in the same single-threaded mio loop as everything else, so its one
//! duty is never to make that loop wait or work much:
//!
//! - **Nothing to do when nobody asks.** The listener is registered with the poll and that is
//!   all: no per-pass work, no timer, no allocation until a client connects.
//! - **Never blocking.** The listener and every client are non-blocking and driven by
//!   readiness; a read or write that would block returns to the loop. The answer waits in
//!   the client's own buffer and goes out as the client reads it, so a client that stops
//!   reading costs one buffer, never a stalled loop.
//! - **Bounded in time.** Every client has [`CLIENT_TIME_LIMIT`] seconds from its accept to
//!   finish (ask and read everything); then it is dropped, whatever it was doing.
//! - **Bounded in space.** The request may be at most [`MAX_REQUEST_BYTES`]: more, bytes that
//!   are no attribute list, an EOF before the request, or any other request drops the
//!   client. The answer is built from the scheduler's transport and destination tables only
//!   (never by walking the messages), and the scheduler lists at most
//!   [`crate::proto::status::MAX_DESTINATIONS`] destinations, so it is at most a few MB.
//! - **A flood is harmless.** At most [`MAX_CLIENTS`] clients are served at once; a
//!   connection beyond that is accepted and closed at once (the client sees the answer end
//!   early). At most [`ACCEPTS_PER_EVENT`] connections are taken per readiness event, after
//!   which the listener is re-armed, so a stream of connections shares the loop with mail.
//! - **Quiet.** A query logs nothing; neither does a client that misbehaves. Only a failure
//!   of the listener itself is a warning, and a socket that cannot be created (one warning)
//!   leaves the queue manager running without it: its job is mail, not reports.
//!
//! Who may ask is decided by the file system: `private/` is the mail_owner's, mode 0700, and
//! the socket itself is made 0600, so only root and the mail_owner reach it. The socket is
//! created after the chroot and privilege drop, relative to the queue directory (the
//! process's working directory), so a chrooted queue manager serves it inside its jail,
//! where `<queue_directory>/private/oqmgr-status` is the same file seen from outside.
//!
//! The socket outlives the process (an exit does not unlink it): a client that finds it but
//! has its connection refused knows no queue manager is running; the next one replaces it.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;

use log::warn;
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Token};

use super::timers::TimerId;
use super::{
    now_secs, Daemon, TimerKind, FIRST_PARKED_TRIGGER, FIRST_STATUS_CLIENT, STATUS_SERVER,
};
use crate::maillog;
use crate::proto::attr::{AttrDecoder, DecodeLimits};
use crate::proto::status::{Snapshot, StatusRequest, Summary, STATUS_SOCKET};
use crate::slab::{Id, Slab};

/// Clients served at once; further connections are closed at once.
pub(super) const MAX_CLIENTS: usize = 16;
/// The most a request may take (the real one is 16 bytes).
pub(super) const MAX_REQUEST_BYTES: usize = 4096;
/// Seconds a client has, from its accept, to ask and read the answer.
pub(super) const CLIENT_TIME_LIMIT: u64 = 10;
/// Connections accepted per readiness event before other work gets a turn.
const ACCEPTS_PER_EVENT: usize = 64;

// The clients' tokens lie between the fixed ones and the parked trigger clients'.
const _: () = assert!(FIRST_STATUS_CLIENT + MAX_CLIENTS <= FIRST_PARKED_TRIGGER);
const _: () = assert!(STATUS_SERVER.0 < FIRST_STATUS_CLIENT);

/// A status client, for as long as it is connected (the generation makes a late timer for a
/// client since gone, its slot perhaps reused, find nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ClientId(Id);

impl ClientId {
    fn token(self) -> Token {
        Token(FIRST_STATUS_CLIENT + self.0.index())
    }
}

/// The listener and its clients.
pub(super) struct StatusServer {
    /// `None`: the socket could not be created (or not yet).
    listener: Option<UnixListener>,
    clients: Slab<Client>,
    /// When this queue manager started (epoch seconds).
    started: u64,
    /// When the periodic deferred scan runs next (epoch seconds, 0: unknown).
    pub(super) next_deferred_scan: u64,
    /// The last accept failed (out of descriptors, say): warned once until one succeeds.
    accept_failing: bool,
}

impl StatusServer {
    pub(super) fn new(started: u64) -> StatusServer {
        StatusServer {
            listener: None,
            clients: Slab::default(),
            started,
            next_deferred_scan: 0,
            accept_failing: false,
        }
    }
}

/// What a client's input came to.
#[derive(Debug, PartialEq, Eq)]
enum Input {
    /// The request is not complete yet.
    Pending,
    /// `{request=status}` arrived.
    Request,
    /// EOF first, too many bytes, not an attribute list, another request, or a read error.
    Drop,
}

/// One connection: the request being read, then the answer being written.
struct Client {
    stream: UnixStream,
    decoder: AttrDecoder,
    /// Request bytes read so far.
    read: usize,
    /// The answer (empty until the request arrived) and how much of it went out.
    answer: Vec<u8>,
    written: usize,
    /// The time limit, cancelled when the client goes.
    timer: Option<TimerId>,
    /// Registered for writability (while the answer is partly written).
    writing: bool,
}

impl Client {
    fn new(stream: UnixStream) -> Client {
        let limits = DecodeLimits {
            max_attr_bytes: MAX_REQUEST_BYTES,
            max_list_bytes: MAX_REQUEST_BYTES,
            max_attrs: 16,
        };
        Client {
            stream,
            decoder: AttrDecoder::new(limits),
            read: 0,
            answer: Vec::new(),
            written: 0,
            timer: None,
            writing: false,
        }
    }

    fn answered(&self) -> bool {
        !self.answer.is_empty()
    }

    /// Reads what is available, never more than [`MAX_REQUEST_BYTES`] in all. Reads go on
    /// until EAGAIN: readiness is edge-triggered.
    fn read_request(&mut self) -> Input {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Input::Drop,
                Ok(n) => {
                    self.read += n;
                    if self.read > MAX_REQUEST_BYTES {
                        return Input::Drop;
                    }
                    match self.decoder.feed(buf.get(..n).unwrap_or_default()) {
                        Err(_) => return Input::Drop,
                        Ok(lists) => {
                            if let Some(list) = lists.first() {
                                return if StatusRequest::matches(list) {
                                    Input::Request
                                } else {
                                    Input::Drop
                                };
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Input::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Input::Drop,
            }
        }
    }

    /// Writes what the socket takes. `Ok(true)`: the whole answer is out.
    fn flush(&mut self) -> io::Result<bool> {
        while let Some(rest) = self.answer.get(self.written..).filter(|r| !r.is_empty()) {
            match self.stream.write(rest) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Replaces a stale socket and listens, mode 0600.
fn bind_status_socket() -> io::Result<UnixListener> {
    match std::fs::remove_file(STATUS_SOCKET) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(STATUS_SOCKET)?;
    std::fs::set_permissions(STATUS_SOCKET, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

impl Daemon {
    /// Creates and registers the status socket; on failure one warning, and the queue manager
    /// runs without it.
    pub(super) fn open_status_socket(&mut self) {
        let created = bind_status_socket().and_then(|mut listener| {
            self.poll
                .registry()
                .register(&mut listener, STATUS_SERVER, Interest::READABLE)?;
            Ok(listener)
        });
        match created {
            Ok(listener) => self.status.listener = Some(listener),
            Err(e) => warn!(
                "cannot create status socket {STATUS_SOCKET}: {}; oqmgrctl cannot query this queue manager",
                maillog::strerror(&e)
            ),
        }
    }

    /// The listener is readable: take the pending connections.
    pub(super) fn on_status_listener(&mut self) {
        for _ in 0..ACCEPTS_PER_EVENT {
            let Some(listener) = &self.status.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => {
                    self.status.accept_failing = false;
                    self.add_status_client(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    if !std::mem::replace(&mut self.status.accept_failing, true) {
                        warn!("accept status socket: {}", maillog::strerror(&e));
                    }
                    return;
                }
            }
        }
        // More may be pending: re-arming reports the listener again at the next poll if so
        // (readiness is edge-triggered), after the rest of this pass ran.
        if let Some(listener) = &mut self.status.listener {
            let _ = self
                .poll
                .registry()
                .reregister(listener, STATUS_SERVER, Interest::READABLE);
        }
    }

    fn add_status_client(&mut self, stream: UnixStream) {
        if self.status.clients.len() >= MAX_CLIENTS {
            // Dropping the stream closes it: the client sees the answer end at once.
            return;
        }
        let id = ClientId(self.status.clients.insert(Client::new(stream)));
        debug_assert!(
            id.0.index() < MAX_CLIENTS,
            "slots are reused before new ones"
        );
        let timer = self.arm_after(CLIENT_TIME_LIMIT, TimerKind::StatusClient(id));
        let Some(client) = self.status.clients.get_mut(id.0) else {
            return;
        };
        client.timer = Some(timer);
        if self
            .poll
            .registry()
            .register(&mut client.stream, id.token(), Interest::READABLE)
            .is_err()
        {
            self.remove_status_client(id);
        }
    }

    fn remove_status_client(&mut self, id: ClientId) {
        if let Some(mut client) = self.status.clients.remove(id.0) {
            if let Some(timer) = client.timer {
                self.timers.cancel(timer);
            }
            let _ = self.poll.registry().deregister(&mut client.stream);
        }
    }

    /// Readiness on the client in slot `index`.
    pub(super) fn on_status_client(&mut self, index: usize) {
        let Some(id) = self.status.clients.id_at(index).map(ClientId) else {
            return;
        };
        let Some(client) = self.status.clients.get_mut(id.0) else {
            return;
        };
        if !client.answered() {
            match client.read_request() {
                Input::Pending => return,
                Input::Drop => return self.remove_status_client(id),
                Input::Request => {}
            }
            let answer = self.status_snapshot().to_bytes();
            let Some(client) = self.status.clients.get_mut(id.0) else {
                return;
            };
            client.answer = answer;
        }
        self.write_status_answer(id);
    }

    /// Sends what the client takes; closes once all is out, else waits for writability.
    fn write_status_answer(&mut self, id: ClientId) {
        let Some(client) = self.status.clients.get_mut(id.0) else {
            return;
        };
        match client.flush() {
            Ok(false) if !client.writing => {
                client.writing = true;
                if self
                    .poll
                    .registry()
                    .reregister(&mut client.stream, id.token(), Interest::WRITABLE)
                    .is_err()
                {
                    self.remove_status_client(id);
                }
            }
            Ok(false) => {}
            Ok(true) | Err(_) => self.remove_status_client(id),
        }
    }

    /// A client's time is up.
    pub(super) fn status_client_timeout(&mut self, id: ClientId) {
        if let Some(client) = self.status.clients.get_mut(id.0) {
            client.timer = None;
        }
        self.remove_status_client(id);
    }

    /// The live state: the summary, then the scheduler's transport and destination tables.
    fn status_snapshot(&self) -> Snapshot {
        let (destinations, total) = self.sched.destination_status();
        let limit = |v: i32| u64::try_from(v).unwrap_or(0);
        Snapshot {
            summary: Summary {
                pid: u64::from(std::process::id()),
                started: self.status.started,
                now: now_secs(),
                active_messages: self.sched.message_count() as u64,
                active_recipients: self.sched.recipient_count() as u64,
                message_limit: limit(self.params.qmgr_message_active_limit),
                recipient_limit: limit(self.params.qmgr_message_recipient_limit),
                flow_tokens: self
                    .master
                    .flow_count()
                    .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
                next_deferred_scan: self.status.next_deferred_scan,
                destinations: total as u64,
            },
            transports: self.sched.transport_status(),
            destinations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::attr::AttrMessage;

    fn pair() -> (Client, std::os::unix::net::UnixStream) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (Client::new(UnixStream::from_std(ours)), theirs)
    }

    #[test]
    fn a_request_arriving_in_pieces_is_read_when_complete() {
        let (mut client, mut peer) = pair();
        assert_eq!(client.read_request(), Input::Pending);
        let request = StatusRequest.to_bytes();
        peer.write_all(&request[..5]).unwrap();
        assert_eq!(client.read_request(), Input::Pending);
        peer.write_all(&request[5..]).unwrap();
        assert_eq!(client.read_request(), Input::Request);
    }

    #[test]
    fn garbage_another_request_an_early_close_or_too_many_bytes_drop_the_client() {
        let (mut client, mut peer) = pair();
        peer.write_all(b"request\0flush\0\0").unwrap();
        assert_eq!(client.read_request(), Input::Drop);

        let (mut client, peer) = pair();
        drop(peer);
        assert_eq!(client.read_request(), Input::Drop);

        // A name without its NUL, longer than a request may be.
        let (mut client, mut peer) = pair();
        peer.write_all(&[b'x'; MAX_REQUEST_BYTES + 1]).unwrap();
        assert_eq!(client.read_request(), Input::Drop);

        // Many small complete attributes, never the list's end.
        let (mut client, mut peer) = pair();
        let many: Vec<u8> = b"a\0b\0".repeat(MAX_REQUEST_BYTES / 4 + 1);
        peer.write_all(&many).unwrap();
        assert_eq!(client.read_request(), Input::Drop);
    }

    #[test]
    fn a_reader_that_stalls_never_blocks_the_writer() {
        let (mut client, mut peer) = pair();
        client.answer = vec![b'x'; 8 << 20];
        let start = std::time::Instant::now();
        assert!(!client.flush().unwrap(), "8 MB cannot fit a socket buffer");
        assert!(client.written > 0 && client.written < client.answer.len());
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        // The rest goes out as the reader reads.
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            peer.read_to_end(&mut all).unwrap();
            all.len()
        });
        while !client.flush().unwrap() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(client);
        assert_eq!(reader.join().unwrap(), 8 << 20);
    }
}
