//! A stand-in for proxymap(8) on `private/proxymap`: per connection it announces
//! `proxymap_protocol`, then answers `open` and `lookup` requests from its tables (each
//! `type:name` with its flags and keys, as proxymap would serve them once approved), records
//! every request, and keeps the connection for more, as the real one does.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use oqmgr::proto::attr::AttrMessage;
use oqmgr::proto::protocol::Protocol;
use oqmgr::proto::proxymap::{proxy_status, LookupReply, OpenReply, ProxyRequest};

use super::net::{Conn, Server};

/// One table proxymap serves.
#[derive(Debug, Clone, Default)]
pub struct ServedTable {
    /// What `open` answers as the table's flags (DICT_FLAG_FIXED, DICT_FLAG_PATTERN).
    pub flags: u32,
    pub keys: Vec<String>,
    /// Every lookup answers this status instead (RETRY, CONFIG, ...).
    pub status: Option<i32>,
}

struct State {
    tables: HashMap<String, ServedTable>,
    requests: Vec<ProxyRequest>,
    connections: usize,
}

/// The fake; stops on drop.
pub struct FakeProxymap {
    state: Arc<Mutex<State>>,
    server: Server,
}

impl FakeProxymap {
    /// Serves `tables` (by `type:name`, without `proxy:`); others are denied, as tables not
    /// listed in proxy_read_maps are.
    pub fn start(path: &Path, tables: &[(&str, ServedTable)]) -> FakeProxymap {
        let state = Arc::new(Mutex::new(State {
            tables: tables
                .iter()
                .map(|(name, t)| (name.to_string(), t.clone()))
                .collect(),
            requests: Vec::new(),
            connections: 0,
        }));
        let handler_state = state.clone();
        let server = Server::start(path, Arc::new(move |conn| serve(conn, &handler_state)))
            .expect("start fake proxymap");
        FakeProxymap { state, server }
    }

    pub fn path(&self) -> &Path {
        self.server.path()
    }

    pub fn requests(&self) -> Vec<ProxyRequest> {
        self.state.lock().expect("proxymap state").requests.clone()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().expect("proxymap state").connections
    }
}

fn reply(state: &Arc<Mutex<State>>, request: ProxyRequest) -> Option<Vec<u8>> {
    let mut s = state.lock().ok()?;
    let bytes = match &request {
        ProxyRequest::Open(open) => {
            let table = s.tables.get(&*String::from_utf8_lossy(&open.table));
            OpenReply {
                status: table.map_or(proxy_status::DENY, |_| proxy_status::OK),
                flags: table.map_or(0, |t| t.flags),
            }
            .to_bytes()
        }
        ProxyRequest::Lookup(lookup) => {
            let key = String::from_utf8_lossy(&lookup.key).into_owned();
            let (status, value) = match s.tables.get(&*String::from_utf8_lossy(&lookup.table)) {
                None => (proxy_status::DENY, ""),
                Some(ServedTable {
                    status: Some(status),
                    ..
                }) => (*status, ""),
                Some(t) if t.keys.contains(&key) => (proxy_status::OK, "OK"),
                Some(_) => (proxy_status::NOKEY, ""),
            };
            LookupReply {
                status,
                value: value.as_bytes().to_vec(),
            }
            .to_bytes()
        }
    };
    s.requests.push(request);
    Some(bytes)
}

fn serve(mut conn: Conn, state: &Arc<Mutex<State>>) {
    if let Ok(mut s) = state.lock() {
        s.connections += 1;
    }
    let mut hello = Vec::new();
    Protocol::Proxymap.encode_announcement(&mut hello);
    if conn.send(&hello).is_err() {
        return;
    }
    while let Ok(list) = conn.next_list() {
        let Ok(request) = ProxyRequest::decode(&list) else {
            return;
        };
        let Some(bytes) = reply(state, request) else {
            return;
        };
        if conn.send(&bytes).is_err() {
            return;
        }
    }
}
