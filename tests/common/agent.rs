//! A stand-in delivery agent on `private/<transport>`: per connection it announces
//! `delivery_request_protocol`, reads one delivery request, records it and then behaves as the
//! test asks (see [`Behaviour`]). Like a real agent it can mark delivered recipients done in
//! the queue file before replying.

use oqmgr::proto::attr::AttrMessage;
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oqmgr::proto::attr::AttrList;
use oqmgr::proto::deliver::{DeliveryReply, DeliveryRequest};
use oqmgr::proto::dsn::Dsn;
use oqmgr::proto::protocol::Protocol;
use oqmgr::queue::id::QueueId;
use oqmgr::queue::path::QueuePaths;
use oqmgr::queue::record::Patch;

use super::net::{ClosedSocket, Conn, ReadEnd, Server};
use super::queue_dir::FakeQueueDir;

/// What the agent does with one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Reply `status=0` with an empty hop status (every recipient final).
    Ok,
    /// Reply `status=-1` with hop status `status` / `reason` (destination to be avoided),
    /// as smtp does for `connect to ...: Connection refused`.
    Defer { status: String, reason: String },
    /// Reply `status=-1` with an empty hop status (some recipients deferred).
    DeferPerRecipient,
    /// Read the request, then close without a reply.
    Crash,
    /// Read the request, write bytes that are no attribute list, close.
    Garbage,
    /// Read the request and never reply (until teardown, [`FakeAgent::release`], or the
    /// client closing).
    Hang,
    /// Close at once, before the announcement.
    NoAnnounce,
    /// Announce, then never read the request (a wedged agent): the connection is held until
    /// teardown.
    Stall,
    /// Like [`Behaviour::Ok`] after a delay.
    SlowOk(Duration),
}

impl Behaviour {
    /// `Defer` from text.
    pub fn defer(status: &str, reason: &str) -> Behaviour {
        Behaviour::Defer {
            status: status.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The reply a real agent sends for this behaviour, if any.
    pub fn reply(&self) -> Option<DeliveryReply> {
        match self {
            Behaviour::Ok | Behaviour::SlowOk(_) => Some(DeliveryReply {
                hop_status: Dsn::default(),
                status: 0,
            }),
            Behaviour::Defer { status, reason } => Some(DeliveryReply {
                hop_status: Dsn {
                    status: status.as_bytes().to_vec(),
                    reason: reason.as_bytes().to_vec(),
                    ..Dsn::default()
                },
                status: -1,
            }),
            Behaviour::DeferPerRecipient => Some(DeliveryReply {
                hop_status: Dsn::default(),
                status: -1,
            }),
            Behaviour::Crash
            | Behaviour::Garbage
            | Behaviour::Hang
            | Behaviour::NoAnnounce
            | Behaviour::Stall => None,
        }
    }

    fn delivers(&self) -> bool {
        matches!(self, Behaviour::Ok | Behaviour::SlowOk(_))
    }
}

/// Bytes [`Behaviour::Garbage`] writes.
pub const GARBAGE: &[u8] = b"this is not an attribute list\n";

/// One request the agent received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub request: DeliveryRequest,
    /// What the agent did with it.
    pub behaviour: Behaviour,
}

impl Delivery {
    /// Recipient addresses, lossy text.
    pub fn recipients(&self) -> Vec<String> {
        self.request
            .recipients
            .iter()
            .map(|r| String::from_utf8_lossy(r.address()).into_owned())
            .collect()
    }

    pub fn queue_id(&self) -> String {
        String::from_utf8_lossy(&self.request.queue_id).into_owned()
    }

    pub fn nexthop(&self) -> String {
        String::from_utf8_lossy(&self.request.nexthop).into_owned()
    }
}

type Policy = Arc<dyn Fn(&DeliveryRequest) -> Behaviour + Send + Sync>;

struct State {
    default: Behaviour,
    /// Consumed one per connection before the default applies.
    script: VecDeque<Behaviour>,
    policy: Option<Policy>,
    mark_done: bool,
    deliveries: Vec<Delivery>,
    errors: Vec<String>,
    connections: usize,
    /// Connections the client closed after our reply (what real agents wait for).
    closed_by_client: usize,
}

/// A fake delivery agent; stops on drop (hung connections are released then).
pub struct FakeAgent {
    name: String,
    state: Arc<Mutex<State>>,
    server: Server,
}

/// Where the agent finds queue files named in requests.
#[derive(Clone)]
struct QueueFiles {
    queue_dir: PathBuf,
    paths: QueuePaths,
}

impl QueueFiles {
    /// Writes `D` over the `R` of each recipient, as agents do (sent/bounced recipients).
    fn mark_done(&self, request: &DeliveryRequest) -> Result<(), String> {
        let queue = String::from_utf8_lossy(&request.queue_name).into_owned();
        let id = QueueId::parse(&request.queue_id).map_err(|e| e.to_string())?;
        let path = self.queue_dir.join(self.paths.path(&queue, &id));
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        for rcpt in &request.recipients {
            let patch = Patch::mark_recipient_done(rcpt.offset);
            file.write_all_at(&patch.bytes, patch.offset)
                .map_err(|e| format!("mark done {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

impl FakeAgent {
    /// Serves `private/<name>` of the instance with `behaviour` for every connection.
    pub fn start(dir: &FakeQueueDir, name: &str, behaviour: Behaviour) -> FakeAgent {
        let state = Arc::new(Mutex::new(State {
            default: behaviour,
            script: VecDeque::new(),
            policy: None,
            mark_done: true,
            deliveries: Vec::new(),
            errors: Vec::new(),
            connections: 0,
            closed_by_client: 0,
        }));
        let files = QueueFiles {
            queue_dir: dir.queue_dir().to_path_buf(),
            paths: dir.queue_paths().clone(),
        };
        let handler_state = state.clone();
        let server = Server::start(
            &dir.private(name),
            Arc::new(move |conn| serve(conn, &handler_state, &files)),
        )
        .expect("start fake agent");
        FakeAgent {
            name: name.to_string(),
            state,
            server,
        }
    }

    /// A socket file at `private/<name>` that nobody listens on (connect: ECONNREFUSED).
    pub fn closed_listener(dir: &FakeQueueDir, name: &str) -> ClosedSocket {
        ClosedSocket::create(&dir.private(name)).expect("create closed listener")
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().expect("agent state");
        f(&mut guard)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        self.server.path()
    }

    /// The behaviour for connections without a scripted one.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.with(|s| s.default = behaviour);
    }

    /// The next connection (after earlier scripted ones) behaves like this.
    pub fn push_behaviour(&self, behaviour: Behaviour) {
        self.with(|s| s.script.push_back(behaviour));
    }

    /// Chooses the behaviour from the request (scripted behaviours still come first;
    /// `NoAnnounce` from a policy acts as `Crash`, the request being already read).
    pub fn set_policy(&self, f: impl Fn(&DeliveryRequest) -> Behaviour + Send + Sync + 'static) {
        self.with(|s| s.policy = Some(Arc::new(f)));
    }

    /// Whether delivered recipients are marked done in the queue file (default on).
    pub fn set_mark_done(&self, on: bool) {
        self.with(|s| s.mark_done = on);
    }

    /// Releases hung connections now (they close without a reply).
    pub fn release(&self) {
        self.server.release_all();
    }

    /// Requests received so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.with(|s| s.deliveries.clone())
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<DeliveryRequest> {
        self.deliveries().into_iter().map(|d| d.request).collect()
    }

    /// Waits until `n` requests have arrived.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.with(|s| s.deliveries.len()) >= n)
    }

    pub fn connections(&self) -> usize {
        self.with(|s| s.connections)
    }

    pub fn closed_by_client(&self) -> usize {
        self.with(|s| s.closed_by_client)
    }

    /// Malformed requests and failed queue-file updates.
    pub fn errors(&self) -> Vec<String> {
        self.with(|s| s.errors.clone())
    }
}

/// Reads the common list and the announced number of recipient lists.
fn read_request(conn: &mut Conn) -> Result<DeliveryRequest, String> {
    let show = |e: ReadEnd| format!("reading request: {e:?}");
    let common = conn.next_list().map_err(show)?;
    let (_, count) = DeliveryRequest::decode_common(&common).map_err(|e| e.to_string())?;
    let mut lists: Vec<AttrList> = vec![common];
    for _ in 0..count {
        lists.push(conn.next_list().map_err(show)?);
    }
    DeliveryRequest::decode(&lists).map_err(|e| e.to_string())
}

fn serve(mut conn: Conn, state: &Arc<Mutex<State>>, files: &QueueFiles) {
    let (scripted, mark_done, policy) = {
        let Ok(mut s) = state.lock() else { return };
        s.connections += 1;
        (s.script.pop_front(), s.mark_done, s.policy.clone())
    };
    let note_error = |err: String| {
        if let Ok(mut s) = state.lock() {
            s.errors.push(err);
        }
    };
    if scripted == Some(Behaviour::NoAnnounce)
        || (scripted.is_none()
            && policy.is_none()
            && state
                .lock()
                .is_ok_and(|s| s.default == Behaviour::NoAnnounce))
    {
        return;
    }
    let mut hello = Vec::new();
    Protocol::DeliveryRequest.encode_announcement(&mut hello);
    if conn.send(&hello).is_err() {
        return;
    }
    let stalls = match (&scripted, &policy) {
        (Some(b), _) => *b == Behaviour::Stall,
        (None, None) => state.lock().is_ok_and(|s| s.default == Behaviour::Stall),
        (None, Some(_)) => false,
    };
    if stalls {
        conn.pause(Duration::from_secs(3600));
        return;
    }
    let request = match read_request(&mut conn) {
        Ok(r) => r,
        Err(err) => {
            note_error(err);
            return;
        }
    };
    let behaviour = match (scripted, &policy) {
        (Some(b), _) => b,
        (None, Some(f)) => f(&request),
        (None, None) => state
            .lock()
            .map(|s| s.default.clone())
            .unwrap_or(Behaviour::Crash),
    };
    if let Ok(mut s) = state.lock() {
        s.deliveries.push(Delivery {
            request: request.clone(),
            behaviour: behaviour.clone(),
        });
    }
    if let Behaviour::SlowOk(delay) = &behaviour {
        if !conn.pause(*delay) {
            return;
        }
    }
    if behaviour.delivers() && mark_done {
        if let Err(err) = files.mark_done(&request) {
            note_error(err);
        }
    }
    match behaviour.reply() {
        Some(reply) => {
            if conn.send(&reply.to_bytes()).is_err() {
                return;
            }
            // Real agents wait for the queue manager to close the connection.
            if conn.wait_close(Duration::from_secs(10)) {
                if let Ok(mut s) = state.lock() {
                    s.closed_by_client += 1;
                }
            }
        }
        None => match behaviour {
            Behaviour::Garbage => {
                let _ = conn.send(GARBAGE);
            }
            Behaviour::Hang => conn.hang(),
            _ => {}
        },
    }
}
