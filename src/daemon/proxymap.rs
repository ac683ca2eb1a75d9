//! `proxy:type:name` tables, looked up through proxymap(8) as the C daemon's dict_proxy does:
//! any table type that proxymap can open works, and proxymap decides which tables it serves
//! (those written `proxy:type:name` in proxy_read_maps, whose default names $relay_domains and
//! $mydestination).
//!
//! One connection to `private/$proxymap_service_name` is shared by all such tables (C's
//! clnt_stream): opened when first needed (at start-up, as root, before the chroot, for the
//! `open` of each table), reused while it is younger than ipc_ttl and used within ipc_idle,
//! closed by the event loop's timer after that ([`ProxyClient::expire`]) and whenever the
//! server closed it or an exchange failed.
//!
//! The exchanges block, as the C client's do (proxymap is local), each read or write for at
//! most qmgr_ipc_timeout. Where the C client retries a failed exchange every second forever,
//! this one retries once: a lookup that fails twice is a failed lookup (the list's `table
//! lookup problem`), after which lookups fail at once for [`FAIL_FAST`]; an open that fails
//! twice is tried again at the table's first lookup. So a queue manager never hangs on a
//! proxymap that does not answer, nor waits a second for each deferred message meanwhile. What C makes fatal stays
//! fatal: a table that proxymap does not serve (`proxymap service is not configured for
//! table ...`) and a request it calls invalid.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use log::warn;

use super::status_clients::{ExchangeError, SyncConn};
use crate::config::domain_list::RemoteLookup;
use crate::config::Params;
use crate::proto::attr::{AttrList, AttrMessage};
use crate::proto::protocol::Protocol;
use crate::proto::proxymap::{
    dict_flags, proxy_status, LookupReply, LookupRequest, OpenReply, OpenRequest,
};

/// Exchanges tried per open or lookup: the C client's first and one of its retries.
const ATTEMPTS: u32 = 2;
/// The C client's pause before it tries again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// After a lookup that proxymap did not answer, further lookups fail at once for this long:
/// each failed one holds the event loop for its retry pause (or its time-outs), which must not
/// happen for every deferred message while proxymap is away.
const FAIL_FAST: Duration = Duration::from_secs(10);

/// The open connection and its times.
struct Stream {
    conn: SyncConn,
    opened: Instant,
    used: Instant,
}

/// Why an exchange failed.
enum CallError {
    /// The connect itself (mail_connect's own warning).
    Connect(String, std::io::Error),
    Exchange(ExchangeError),
}

/// The shared proxymap connection.
pub struct ProxyClient {
    /// `$proxymap_service_name`, as the C client names it in its messages.
    service: String,
    queue_directory: String,
    idle: Duration,
    ttl: Duration,
    timeout: Duration,
    stream: Mutex<Option<Stream>>,
    /// Lookups fail at once until then (see [`FAIL_FAST`]).
    unanswered_until: Mutex<Option<Instant>>,
    fail_fast: Duration,
}

impl ProxyClient {
    pub fn new(params: &Params) -> ProxyClient {
        let secs = |v: i32| Duration::from_secs(u64::try_from(v).unwrap_or(0));
        ProxyClient {
            service: String::from_utf8_lossy(&params.proxymap_service_name).into_owned(),
            queue_directory: String::from_utf8_lossy(&params.queue_directory).into_owned(),
            idle: secs(params.ipc_idle),
            ttl: secs(params.ipc_ttl),
            // The process-wide ipc_timeout once post-init has set it (the C client's stream
            // gets it when it connects).
            timeout: secs(params.qmgr_ipc_timeout),
            stream: Mutex::new(None),
            unanswered_until: Mutex::new(None),
            fail_fast: FAIL_FAST,
        }
    }

    /// Whether proxymap left a lookup unanswered less than `fail_fast` ago.
    fn recently_unanswered(&self) -> bool {
        let until = self
            .unanswered_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|t| Instant::now() < t)
    }

    fn note_unanswered(&self) {
        *self
            .unanswered_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + self.fail_fast);
    }

    fn lock(&self) -> MutexGuard<'_, Option<Stream>> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `private/<service>` from the queue directory, the absolute path when that is not
    /// there (dict_proxy_open's choice, made here at each connect: we may not be in the queue
    /// directory before the privilege drop, and are in it, or chrooted to it, after).
    fn path(&self) -> String {
        let relative = format!("private/{}", self.service);
        if std::path::Path::new(&relative).exists() {
            relative
        } else {
            format!("{}/{relative}", self.queue_directory)
        }
    }

    /// One request and its reply on the shared connection, opened (and the announcement
    /// read) first when there is none, or when the one there is idle, too old or closed by
    /// the server (clnt_stream_access).
    fn call(&self, request: &[u8]) -> Result<AttrList, CallError> {
        let mut guard = self.lock();
        let now = Instant::now();
        if guard.as_ref().is_some_and(|s| {
            now >= s.used + self.idle || now >= s.opened + self.ttl || s.conn.has_input()
        }) {
            *guard = None;
        }
        let stream = match guard.take() {
            Some(stream) => stream,
            None => {
                let path = self.path();
                let mut conn = SyncConn::connect(&path, self.timeout)
                    .map_err(|e| CallError::Connect(path, e))?;
                conn.expect_announcement(Protocol::Proxymap)
                    .map_err(CallError::Exchange)?;
                Stream {
                    conn,
                    opened: now,
                    used: now,
                }
            }
        };
        let stream = guard.insert(stream);
        stream.used = now;
        stream
            .conn
            .send(request)
            .and_then(|()| stream.conn.read_list())
            .map_err(CallError::Exchange)
    }

    /// clnt_stream_recover: after a failure the connection is closed; the next request
    /// opens a new one.
    fn recover(&self) {
        *self.lock() = None;
    }

    /// When the open connection is to be closed (idle or too old), if one is open.
    pub fn expire_at(&self) -> Option<Instant> {
        self.lock()
            .as_ref()
            .map(|s| (s.used + self.idle).min(s.opened + self.ttl))
    }

    /// Closes the connection once it has been idle ipc_idle or open ipc_ttl (C's timers), so
    /// that proxymap can go away or restart when its tables change.
    pub fn expire(&self, now: Instant) {
        let mut guard = self.lock();
        if guard
            .as_ref()
            .is_some_and(|s| now >= s.used + self.idle || now >= s.opened + self.ttl)
        {
            *guard = None;
        }
    }

    /// The warning for a failed exchange, when the C client would give one: always after its
    /// first try, and on the first for an error other than EPIPE and ENOENT (with
    /// `without_errno`, as for `open`, also when there is no errno: a closed connection, a
    /// malformed reply).
    fn warn_failure(&self, function: &str, error: &CallError, attempt: u32, without_errno: bool) {
        match error {
            CallError::Connect(path, e) => warn!(
                "connect #{attempt} to subsystem {path}: {}",
                crate::maillog::strerror(e)
            ),
            CallError::Exchange(e) => {
                let quiet = e.is(libc::EPIPE)
                    || e.is(libc::ENOENT)
                    || (!without_errno && !matches!(e, ExchangeError::Io(_)));
                if attempt > 1 || !quiet {
                    warn!("{function}: service {}: {}", self.service, e.text());
                }
            }
        }
    }
}

/// One `proxy:` table.
pub struct ProxyTable {
    client: Arc<ProxyClient>,
    /// `type:name` without `proxy:`, as it is named to proxymap.
    name: String,
    /// The table's own flags (fixed, pattern) once proxymap opened it.
    flags: OnceLock<u32>,
}

/// The flags match_list opens its tables with: none select an instance; the lock and UTF-8
/// request travel with each lookup.
const OPEN_FLAGS: u32 = dict_flags::MATCH_LIST & dict_flags::INST_MASK;
const LOOKUP_FLAGS: u32 = OPEN_FLAGS | (dict_flags::MATCH_LIST & dict_flags::RQST_MASK);

impl ProxyTable {
    /// dict_proxy_open: proxymap is asked at once whether it serves the table.
    pub fn open(client: Arc<ProxyClient>, name: &str) -> ProxyTable {
        let table = ProxyTable {
            client,
            name: name.to_string(),
            flags: OnceLock::new(),
        };
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                std::thread::sleep(RETRY_PAUSE);
            }
            if table.try_open(attempt) {
                break;
            }
        }
        table
    }

    /// One `open` exchange; true when proxymap serves the table (its flags are kept).
    fn try_open(&self, attempt: u32) -> bool {
        let service = &self.client.service;
        let request = OpenRequest {
            table: self.name.as_bytes().to_vec(),
            flags: OPEN_FLAGS,
        }
        .to_bytes();
        let reply = self.client.call(&request).and_then(|list| {
            OpenReply::decode(&list).map_err(|_| CallError::Exchange(ExchangeError::Malformed))
        });
        match reply {
            Ok(reply) => match reply.status {
                proxy_status::OK => {
                    let _ = self.flags.set(reply.flags & dict_flags::IMPL_MASK);
                    return true;
                }
                proxy_status::BAD => super::fatal(&format!(
                    "{service} open failed for table \"{}\": invalid request",
                    self.name
                )),
                proxy_status::DENY => super::fatal(&format!(
                    "{service} service is not configured for table \"{}\"",
                    self.name
                )),
                status => warn!(
                    "{service} open failed for table \"{}\": unexpected status {status}",
                    self.name
                ),
            },
            Err(e) => self
                .client
                .warn_failure("dict_proxy_open", &e, attempt, true),
        }
        self.client.recover();
        false
    }
}

impl RemoteLookup for ProxyTable {
    fn fixed(&self) -> bool {
        self.flags.get().is_some_and(|f| f & dict_flags::FIXED != 0)
    }

    /// dict_proxy_lookup, but with one retry instead of an endless loop.
    fn lookup(&self, key: &[u8]) -> Result<bool, Vec<String>> {
        let service = &self.client.service;
        let request = LookupRequest {
            table: self.name.as_bytes().to_vec(),
            flags: LOOKUP_FLAGS,
            key: key.to_vec(),
        }
        .to_bytes();
        let key_text = String::from_utf8_lossy(key);
        if self.client.recently_unanswered() {
            return Err(Vec::new());
        }
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                std::thread::sleep(RETRY_PAUSE);
            }
            // Not opened at start-up (proxymap was not reachable): open it now.
            if self.flags.get().is_none() && !self.try_open(attempt) {
                continue;
            }
            let reply = self.client.call(&request).and_then(|list| {
                LookupReply::decode(&list)
                    .map_err(|_| CallError::Exchange(ExchangeError::Malformed))
            });
            match reply {
                Ok(reply) => match reply.status {
                    proxy_status::OK => return Ok(true),
                    proxy_status::NOKEY => return Ok(false),
                    // The table's own trouble, reported by proxymap in its log.
                    proxy_status::RETRY | proxy_status::CONFIG => return Err(Vec::new()),
                    proxy_status::BAD => super::fatal(&format!(
                        "{service} lookup failed for table \"{}\" key \"{key_text}\": invalid request",
                        self.name
                    )),
                    proxy_status::DENY => super::fatal(&format!(
                        "{service} service is not configured for table \"{}\"",
                        self.name
                    )),
                    status => warn!(
                        "{service} lookup failed for table \"{}\" key \"{key_text}\": unexpected reply status {status}",
                        self.name
                    ),
                },
                Err(e) => self
                    .client
                    .warn_failure("dict_proxy_lookup", &e, attempt, false),
            }
            self.client.recover();
        }
        self.client.note_unanswered();
        Err(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::proto::attr::AttrDecoder;
    use crate::proto::proxymap::ProxyRequest;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// How the fake answers one request: the reply bytes, or None to hang up.
    type Answer = dyn Fn(&ProxyRequest) -> Option<Vec<u8>> + Send + Sync;

    /// A proxymap on `<queue>/private/proxymap` that announces itself, records each request
    /// and answers with `answer`.
    struct FakeProxymap {
        stop: Arc<AtomicBool>,
        requests: Arc<Mutex<Vec<Vec<u8>>>>,
        connections: Arc<Mutex<usize>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl FakeProxymap {
        fn start(queue: &std::path::Path, answer: Box<Answer>) -> FakeProxymap {
            std::fs::create_dir_all(queue.join("private")).unwrap();
            let listener = UnixListener::bind(queue.join("private/proxymap")).unwrap();
            listener.set_nonblocking(true).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let connections = Arc::new(Mutex::new(0));
            let (s, r, c) = (stop.clone(), requests.clone(), connections.clone());
            let thread = std::thread::spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    let Ok((mut conn, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    *c.lock().unwrap() += 1;
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(Duration::from_millis(20)))
                        .unwrap();
                    if conn.write_all(b"protocol\0proxymap_protocol\0\0").is_err() {
                        continue;
                    }
                    let mut decoder = AttrDecoder::default();
                    let mut buf = [0u8; 4096];
                    'conn: while !s.load(Ordering::SeqCst) {
                        let n = match conn.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(_) => continue,
                        };
                        r.lock().unwrap().push(buf[..n].to_vec());
                        for list in decoder.feed(&buf[..n]).unwrap() {
                            let request = ProxyRequest::decode(&list).unwrap();
                            match answer(&request) {
                                Some(reply) => conn.write_all(&reply).unwrap(),
                                None => break 'conn,
                            }
                        }
                    }
                }
            });
            FakeProxymap {
                stop,
                requests,
                connections,
                thread: Some(thread),
            }
        }

        fn requests(&self) -> Vec<Vec<u8>> {
            self.requests.lock().unwrap().clone()
        }

        fn connections(&self) -> usize {
            *self.connections.lock().unwrap()
        }
    }

    impl Drop for FakeProxymap {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// A client for a queue directory.
    fn client(queue: &std::path::Path) -> Arc<ProxyClient> {
        client_failing_fast_for(queue, FAIL_FAST)
    }

    fn client_failing_fast_for(queue: &std::path::Path, fail_fast: Duration) -> Arc<ProxyClient> {
        let mut config = Config::new(&queue.to_string_lossy(), b"host.lab");
        config.set("queue_directory", queue.to_string_lossy().as_bytes());
        let params = Params::from_config(&config).unwrap();
        let mut client = ProxyClient::new(&params);
        client.fail_fast = fail_fast;
        Arc::new(client)
    }

    /// Opens with FIXED (hash) or PATTERN (regexp) flags; finds `d1.lab`.
    fn answer(request: &ProxyRequest) -> Option<Vec<u8>> {
        Some(match request {
            ProxyRequest::Open(open) => OpenReply {
                status: proxy_status::OK,
                flags: if open.table.starts_with(b"hash:") {
                    dict_flags::FIXED | dict_flags::LOCK
                } else {
                    dict_flags::PATTERN
                },
            }
            .to_bytes(),
            ProxyRequest::Lookup(lookup) if lookup.key == b"d1.lab" => LookupReply {
                status: proxy_status::OK,
                value: b"OK".to_vec(),
            }
            .to_bytes(),
            ProxyRequest::Lookup(lookup) if lookup.key == b"retry.lab" => LookupReply {
                status: proxy_status::RETRY,
                value: Vec::new(),
            }
            .to_bytes(),
            ProxyRequest::Lookup(_) => LookupReply {
                status: proxy_status::NOKEY,
                value: Vec::new(),
            }
            .to_bytes(),
        })
    }

    #[test]
    fn tables_are_opened_and_looked_up_on_one_connection() {
        let queue = tempfile::tempdir().unwrap();
        let server = FakeProxymap::start(queue.path(), Box::new(answer));
        let client = client(queue.path());
        let hash = ProxyTable::open(client.clone(), "hash:/t");
        let regexp = ProxyTable::open(client.clone(), "regexp:/r");
        assert!(hash.fixed());
        assert!(!regexp.fixed());
        assert_eq!(hash.lookup(b"d1.lab"), Ok(true));
        assert_eq!(hash.lookup(b"d2.lab"), Ok(false));
        assert_eq!(regexp.lookup(b"retry.lab"), Err(Vec::new()));
        assert_eq!(server.connections(), 1);
        let sent: Vec<u8> = server.requests().concat();
        let expected: Vec<u8> = [
            &b"request\0open\0table\0hash:/t\0flags\x000\0\0"[..],
            b"request\0open\0table\0regexp:/r\0flags\x000\0\0",
            b"request\0lookup\0table\0hash:/t\0flags\x00524352\0key\0d1.lab\0\0",
            b"request\0lookup\0table\0hash:/t\0flags\x00524352\0key\0d2.lab\0\0",
            b"request\0lookup\0table\0regexp:/r\0flags\x00524352\0key\0retry.lab\0\0",
        ]
        .concat();
        assert_eq!(sent, expected);
        // Idle: the event loop's timer closes it; the next lookup connects again.
        let at = client.expire_at().unwrap();
        client.expire(at);
        assert!(client.expire_at().is_none());
        assert_eq!(hash.lookup(b"d1.lab"), Ok(true));
        assert_eq!(server.connections(), 2);
    }

    #[test]
    fn a_failed_exchange_is_tried_once_more_then_fails_the_lookup() {
        let queue = tempfile::tempdir().unwrap();
        // Hangs up on every lookup.
        let server = FakeProxymap::start(
            queue.path(),
            Box::new(|r| match r {
                ProxyRequest::Open(_) => answer(r),
                ProxyRequest::Lookup(_) => None,
            }),
        );
        let client = client(queue.path());
        let hash = ProxyTable::open(client.clone(), "hash:/t");
        let start = Instant::now();
        assert_eq!(hash.lookup(b"d1.lab"), Err(Vec::new()));
        assert!(start.elapsed() >= RETRY_PAUSE);
        assert_eq!(server.connections(), 2);
    }

    #[test]
    fn after_an_unanswered_lookup_the_next_ones_fail_at_once_for_a_while() {
        let queue = tempfile::tempdir().unwrap();
        let client = client(queue.path());
        let hash = ProxyTable::open(client.clone(), "hash:/t");
        assert_eq!(hash.lookup(b"d1.lab"), Err(Vec::new()));
        // proxymap is back, but within FAIL_FAST no lookup waits or asks it.
        let server = FakeProxymap::start(queue.path(), Box::new(answer));
        let start = Instant::now();
        for _ in 0..100 {
            assert_eq!(hash.lookup(b"d1.lab"), Err(Vec::new()));
        }
        assert!(start.elapsed() < RETRY_PAUSE);
        assert_eq!(server.connections(), 0);
        // Once the time is up, lookups ask again.
        *client.unanswered_until.lock().unwrap() = Some(Instant::now());
        assert_eq!(hash.lookup(b"d1.lab"), Ok(true));
        assert_eq!(server.connections(), 1);
    }

    #[test]
    fn without_proxymap_the_open_is_tried_again_at_the_first_lookup() {
        let queue = tempfile::tempdir().unwrap();
        let client = client_failing_fast_for(queue.path(), Duration::ZERO);
        let hash = ProxyTable::open(client.clone(), "hash:/t");
        assert!(!hash.fixed());
        assert_eq!(hash.lookup(b"d1.lab"), Err(Vec::new()));
        // proxymap is back.
        let _server = FakeProxymap::start(queue.path(), Box::new(answer));
        assert_eq!(hash.lookup(b"mx.d1.lab"), Ok(false));
        assert!(hash.fixed());
    }
}
