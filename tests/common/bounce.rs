//! A stand-in for bounce(8) as `private/bounce`, `private/defer` or `private/trace`: per
//! connection it announces `delivery_status_protocol`, reads one request (flush-style or
//! append-style), records it, replies `{status=N}` and closes.

use oqmgr::proto::attr::AttrMessage;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oqmgr::proto::attr::AttrList;
use oqmgr::proto::bounce::{AppendRequest, FlushRequest, StatusReply};
use oqmgr::proto::protocol::Protocol;

use super::net::{Conn, Server};
use super::queue_dir::FakeQueueDir;

/// One request received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BounceRequest {
    /// bounce/trace/defer flush, defer warn, VERP (nrequest 1..5).
    Flush(FlushRequest),
    /// defer_append (nrequest 0).
    Append(AppendRequest),
}

impl BounceRequest {
    pub fn queue_id(&self) -> String {
        let id = match self {
            BounceRequest::Flush(r) => &r.queue_id,
            BounceRequest::Append(r) => &r.queue_id,
        };
        String::from_utf8_lossy(id).into_owned()
    }

    /// `nrequest`.
    pub fn command_code(&self) -> u32 {
        match self {
            BounceRequest::Flush(r) => r.command.code(),
            BounceRequest::Append(_) => 0,
        }
    }

    /// `flags`.
    pub fn flags(&self) -> u32 {
        match self {
            BounceRequest::Flush(r) => r.flags,
            BounceRequest::Append(r) => r.flags,
        }
    }

    /// Decodes either request shape (by `nrequest`).
    pub fn decode(list: &AttrList) -> Result<BounceRequest, String> {
        if list.get("nrequest") == Some(&b"0"[..]) {
            AppendRequest::decode(list)
                .map(BounceRequest::Append)
                .map_err(|e| e.to_string())
        } else {
            FlushRequest::decode(list)
                .map(BounceRequest::Flush)
                .map_err(|e| e.to_string())
        }
    }
}

struct State {
    status: i32,
    delay: Duration,
    requests: Vec<BounceRequest>,
    errors: Vec<String>,
    connections: usize,
}

/// One fake bounce service; stops on drop.
pub struct FakeBounce {
    service: String,
    state: Arc<Mutex<State>>,
    server: Server,
}

impl FakeBounce {
    /// Serves `private/<service>` (`bounce`, `defer` or `trace`), replying `{status=0}`.
    pub fn start(dir: &FakeQueueDir, service: &str) -> FakeBounce {
        let state = Arc::new(Mutex::new(State {
            status: 0,
            delay: Duration::ZERO,
            requests: Vec::new(),
            errors: Vec::new(),
            connections: 0,
        }));
        let handler_state = state.clone();
        let server = Server::start(
            &dir.private(service),
            Arc::new(move |conn| serve(conn, &handler_state)),
        )
        .expect("start fake bounce");
        FakeBounce {
            service: service.to_string(),
            state,
            server,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().expect("bounce state");
        f(&mut guard)
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn path(&self) -> &Path {
        self.server.path()
    }

    /// The `status` of later replies (0 = OK; -1 = failed).
    pub fn set_status(&self, status: i32) {
        self.with(|s| s.status = status);
    }

    /// Waits this long between reading the request and replying.
    pub fn set_delay(&self, delay: Duration) {
        self.with(|s| s.delay = delay);
    }

    pub fn requests(&self) -> Vec<BounceRequest> {
        self.with(|s| s.requests.clone())
    }

    pub fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.with(|s| s.requests.len()) >= n)
    }

    pub fn connections(&self) -> usize {
        self.with(|s| s.connections)
    }

    pub fn errors(&self) -> Vec<String> {
        self.with(|s| s.errors.clone())
    }
}

fn serve(mut conn: Conn, state: &Arc<Mutex<State>>) {
    if let Ok(mut s) = state.lock() {
        s.connections += 1;
    }
    let mut hello = Vec::new();
    Protocol::DeliveryStatus.encode_announcement(&mut hello);
    if conn.send(&hello).is_err() {
        return;
    }
    let decoded = conn
        .next_list()
        .map_err(|e| format!("reading request: {e:?}"))
        .and_then(|list| BounceRequest::decode(&list));
    let (status, delay) = match (state.lock(), decoded) {
        (Ok(mut s), Ok(request)) => {
            s.requests.push(request);
            (s.status, s.delay)
        }
        (Ok(mut s), Err(err)) => {
            s.errors.push(err);
            return;
        }
        (Err(_), _) => return,
    };
    if !delay.is_zero() && !conn.pause(delay) {
        return;
    }
    let _ = conn.send(&StatusReply { status }.to_bytes());
}
