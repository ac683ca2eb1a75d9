//! A stand-in for trivial-rewrite(8) on `private/rewrite`: announces
//! `trivial_rewrite_protocol`, then answers any number of pipelined resolve/verify and rewrite
//! requests per connection until the client closes.

use oqmgr::proto::attr::AttrMessage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use oqmgr::proto::attr::AttrList;
use oqmgr::proto::protocol::Protocol;
use oqmgr::proto::rewrite::{
    resolve_flags, ResolveReply, ResolveRequest, RewriteReply, RewriteRequest,
};

use super::net::{Conn, Server};
use super::queue_dir::{FakeQueueDir, HOSTNAME};

/// What the resolver answers for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub transport: Vec<u8>,
    pub nexthop: Vec<u8>,
    pub recipient: Vec<u8>,
    /// [`resolve_flags`] bits (the second `flags`).
    pub flags: u32,
}

impl Resolution {
    pub fn new(transport: &str, nexthop: &str, recipient: &[u8], flags: u32) -> Resolution {
        Resolution {
            transport: transport.as_bytes().to_vec(),
            nexthop: nexthop.as_bytes().to_vec(),
            recipient: recipient.to_vec(),
            flags,
        }
    }
}

/// One request the fake served, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewriteCall {
    Resolve(ResolveRequest),
    Rewrite(RewriteRequest),
}

type Resolver = Arc<dyn Fn(&ResolveRequest) -> Resolution + Send + Sync>;
type Rewriter = Arc<dyn Fn(&RewriteRequest) -> Vec<u8> + Send + Sync>;

#[derive(Default)]
struct Routes {
    default_transport: String,
    /// Lower-cased domain -> (transport, nexthop; None = the domain).
    by_domain: HashMap<String, (String, Option<String>)>,
}

struct State {
    calls: Vec<RewriteCall>,
    errors: Vec<String>,
    connections: usize,
    resolver: Option<Resolver>,
    rewriter: Option<Rewriter>,
    routes: Routes,
    /// Close the connection after this many replies on it.
    close_after: Option<usize>,
    /// The first `flags` of every reply (non-zero asks the client to reconnect).
    server_flags: u32,
    /// Hang up instead of answering this many requests (the client must ask again).
    hang_ups: usize,
}

/// The fake trivial-rewrite; stops on drop.
pub struct FakeRewrite {
    state: Arc<Mutex<State>>,
    server: Server,
}

/// The default answer: the domain after the last `@` is the nexthop, its transport comes
/// from the per-domain map or the default transport, flags CLASS_DEFAULT. An address
/// without `@` is local: transport `local`, nexthop and domain [`HOSTNAME`], CLASS_LOCAL.
fn route(routes: &Routes, address: &[u8]) -> Resolution {
    match address.iter().rposition(|&b| b == b'@') {
        Some(at) => {
            let domain = String::from_utf8_lossy(&address[at + 1..]).to_ascii_lowercase();
            let (transport, nexthop) = match routes.by_domain.get(&domain) {
                Some((transport, nexthop)) => (transport.clone(), nexthop.clone()),
                None => (routes.default_transport.clone(), None),
            };
            let nexthop = nexthop.unwrap_or_else(|| domain.clone());
            Resolution::new(&transport, &nexthop, address, resolve_flags::CLASS_DEFAULT)
        }
        None => {
            let mut recipient = address.to_vec();
            recipient.push(b'@');
            recipient.extend_from_slice(HOSTNAME.as_bytes());
            Resolution::new(
                "local",
                HOSTNAME,
                &recipient,
                resolve_flags::CLASS_LOCAL | resolve_flags::FINAL,
            )
        }
    }
}

impl FakeRewrite {
    /// Serves `private/rewrite` of the instance; default transport `smtp`.
    pub fn start(dir: &FakeQueueDir) -> FakeRewrite {
        FakeRewrite::start_named(dir, "rewrite")
    }

    /// Serves `private/<service>` (for rewrite_service_name).
    pub fn start_named(dir: &FakeQueueDir, service: &str) -> FakeRewrite {
        let state = Arc::new(Mutex::new(State {
            calls: Vec::new(),
            errors: Vec::new(),
            connections: 0,
            resolver: None,
            rewriter: None,
            routes: Routes {
                default_transport: "smtp".to_string(),
                by_domain: HashMap::new(),
            },
            close_after: None,
            server_flags: 0,
            hang_ups: 0,
        }));
        let handler_state = state.clone();
        let server = Server::start(
            &dir.private(service),
            Arc::new(move |conn| serve(conn, &handler_state)),
        )
        .expect("start fake rewrite");
        FakeRewrite { state, server }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().expect("rewrite state");
        f(&mut guard)
    }

    /// Transport for domains without their own entry (default `smtp`).
    pub fn set_default_transport(&self, transport: &str) {
        self.with(|s| s.routes.default_transport = transport.to_string());
    }

    /// Routes `domain` (case-insensitive) to `transport`, nexthop the domain.
    pub fn route_domain(&self, domain: &str, transport: &str) {
        self.with(|s| {
            s.routes
                .by_domain
                .insert(domain.to_ascii_lowercase(), (transport.to_string(), None))
        });
    }

    /// Routes `domain` to `transport` with another nexthop (a relay such as
    /// `[127.0.0.1]:24520`, or the error text of the `error` transport).
    pub fn route_domain_via(&self, domain: &str, transport: &str, nexthop: &str) {
        self.with(|s| {
            s.routes.by_domain.insert(
                domain.to_ascii_lowercase(),
                (transport.to_string(), Some(nexthop.to_string())),
            )
        });
    }

    /// Replaces the whole resolver.
    pub fn set_resolver(&self, f: impl Fn(&ResolveRequest) -> Resolution + Send + Sync + 'static) {
        self.with(|s| s.resolver = Some(Arc::new(f)));
    }

    /// Replaces the rewriter (default: unchanged, `@HOSTNAME` appended to a bare name).
    pub fn set_rewriter(&self, f: impl Fn(&RewriteRequest) -> Vec<u8> + Send + Sync + 'static) {
        self.with(|s| s.rewriter = Some(Arc::new(f)));
    }

    /// Close each connection after `n` replies (the client must reconnect); None = never.
    pub fn set_close_after(&self, n: Option<usize>) {
        self.with(|s| s.close_after = n);
    }

    /// The first `flags` of every reply from now on (trivial-rewrite sets 1 when its tables
    /// changed, asking the client to reconnect).
    pub fn set_server_flags(&self, flags: u32) {
        self.with(|s| s.server_flags = flags);
    }

    /// Close the connection instead of answering the next `n` requests (they are recorded).
    pub fn hang_up_on_next(&self, n: usize) {
        self.with(|s| s.hang_ups = n);
    }

    /// Every request served so far.
    pub fn calls(&self) -> Vec<RewriteCall> {
        self.with(|s| s.calls.clone())
    }

    /// The resolve requests so far.
    pub fn resolves(&self) -> Vec<ResolveRequest> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                RewriteCall::Resolve(r) => Some(r),
                RewriteCall::Rewrite(_) => None,
            })
            .collect()
    }

    /// Addresses resolved so far, lossy text.
    pub fn resolved_addresses(&self) -> Vec<String> {
        self.resolves()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.address).into_owned())
            .collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.with(|s| s.connections)
    }

    /// Requests that could not be decoded.
    pub fn errors(&self) -> Vec<String> {
        self.with(|s| s.errors.clone())
    }

    pub fn path(&self) -> &std::path::Path {
        self.server.path()
    }
}

fn answer(state: &Arc<Mutex<State>>, list: &AttrList) -> Result<Vec<u8>, String> {
    let request = list.get("request").unwrap_or_default().to_vec();
    // Test functions run without the lock held, so they may call back into the fake.
    let (resolver, rewriter, server_flags) = {
        let s = state.lock().map_err(|e| e.to_string())?;
        (s.resolver.clone(), s.rewriter.clone(), s.server_flags)
    };
    let record = |call: RewriteCall| {
        if let Ok(mut s) = state.lock() {
            s.calls.push(call);
        }
    };
    if request == b"rewrite" {
        let req = RewriteRequest::decode(list).map_err(|e| e.warning("private/rewrite"))?;
        let address = match &rewriter {
            Some(f) => f(&req),
            None if req.address.contains(&b'@') || req.address.is_empty() => req.address.clone(),
            None => {
                let mut a = req.address.clone();
                a.push(b'@');
                a.extend_from_slice(HOSTNAME.as_bytes());
                a
            }
        };
        record(RewriteCall::Rewrite(req));
        Ok(RewriteReply {
            server_flags,
            address,
        }
        .to_bytes())
    } else {
        let req = ResolveRequest::decode(list).map_err(|e| e.warning("private/rewrite"))?;
        let res = match &resolver {
            Some(f) => f(&req),
            None => {
                let s = state.lock().map_err(|e| e.to_string())?;
                route(&s.routes, &req.address)
            }
        };
        record(RewriteCall::Resolve(req));
        Ok(ResolveReply {
            server_flags,
            transport: res.transport,
            nexthop: res.nexthop,
            recipient: res.recipient,
            flags: res.flags,
        }
        .to_bytes())
    }
}

fn serve(mut conn: Conn, state: &Arc<Mutex<State>>) {
    if let Ok(mut s) = state.lock() {
        s.connections += 1;
    }
    let mut hello = Vec::new();
    Protocol::TrivialRewrite.encode_announcement(&mut hello);
    if conn.send(&hello).is_err() {
        return;
    }
    let mut replies = 0;
    while let Ok(list) = conn.next_list_per_read() {
        let hang_up = state.lock().is_ok_and(|mut s| {
            let hang_up = s.hang_ups > 0;
            s.hang_ups = s.hang_ups.saturating_sub(1);
            hang_up
        });
        let reply = answer(state, &list);
        if hang_up {
            return;
        }
        match reply {
            Ok(reply) => {
                if conn.send(&reply).is_err() {
                    return;
                }
            }
            Err(err) => {
                if let Ok(mut s) = state.lock() {
                    s.errors.push(err);
                }
                return;
            }
        }
        replies += 1;
        let close_after = state.lock().ok().and_then(|s| s.close_after);
        if close_after.is_some_and(|n| replies >= n) {
            return;
        }
    }
}
