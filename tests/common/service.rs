//! A stand-in for verify(8) on `private/verify` or flush(8) on `public/flush`: per connection it
//! announces its protocol, then answers every request list with `{status=N}` and records it.
//! verify(8) keeps a client's connection for more requests; flush(8) serves one and closes.

use oqmgr::proto::attr::{AttrList, AttrMessage};
use std::path::Path;
use std::sync::{Arc, Mutex};

use oqmgr::proto::bounce::StatusReply;
use oqmgr::proto::protocol::Protocol;

use super::net::{Conn, Server};

struct State {
    status: i32,
    requests: Vec<AttrList>,
    connections: usize,
}

/// One fake service; stops on drop.
pub struct FakeService {
    state: Arc<Mutex<State>>,
    server: Server,
}

impl FakeService {
    /// verify(8): `address_verification_prrotocol`, several requests per connection.
    pub fn verify(path: &Path) -> FakeService {
        FakeService::start(path, Protocol::AddressVerification, true)
    }

    /// flush(8): `queue_flush_protocol`, one request per connection.
    pub fn flush(path: &Path) -> FakeService {
        FakeService::start(path, Protocol::QueueFlush, false)
    }

    fn start(path: &Path, protocol: Protocol, keep_open: bool) -> FakeService {
        let state = Arc::new(Mutex::new(State {
            status: 0,
            requests: Vec::new(),
            connections: 0,
        }));
        let handler_state = state.clone();
        let server = Server::start(
            path,
            Arc::new(move |conn| serve(conn, protocol, keep_open, &handler_state)),
        )
        .expect("start fake service");
        FakeService { state, server }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().expect("service state");
        f(&mut guard)
    }

    pub fn path(&self) -> &Path {
        self.server.path()
    }

    /// The `status` of later replies.
    pub fn set_status(&self, status: i32) {
        self.with(|s| s.status = status);
    }

    pub fn requests(&self) -> Vec<AttrList> {
        self.with(|s| s.requests.clone())
    }

    pub fn wait_requests(&self, n: usize, timeout: std::time::Duration) -> bool {
        super::wait_until(timeout, || self.with(|s| s.requests.len()) >= n)
    }

    pub fn connections(&self) -> usize {
        self.with(|s| s.connections)
    }
}

fn serve(mut conn: Conn, protocol: Protocol, keep_open: bool, state: &Arc<Mutex<State>>) {
    if let Ok(mut s) = state.lock() {
        s.connections += 1;
    }
    let mut hello = Vec::new();
    protocol.encode_announcement(&mut hello);
    if conn.send(&hello).is_err() {
        return;
    }
    while let Ok(list) = conn.next_list() {
        let status = match state.lock() {
            Ok(mut s) => {
                s.requests.push(list);
                s.status
            }
            Err(_) => return,
        };
        if conn.send(&StatusReply { status }.to_bytes()).is_err() || !keep_open {
            return;
        }
    }
}
