//! The plumbing every fake server shares: a listener thread that accepts until teardown, one
//! thread per connection, and a connection wrapper whose every wait is bounded.
//!
//! Teardown (Drop of [`Server`]) raises the stop flag, joins the accept thread and every
//! connection thread (each notices the flag within [`POLL_INTERVAL`]) and removes the socket.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use oqmgr::proto::attr::{AttrDecoder, AttrList};

/// How often blocked threads look at the stop flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Upper bound on the life of one served connection (a safety net; teardown comes first).
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(60);

/// Sleeps `duration` in short steps; false when `stop` was raised first.
pub fn sleep_unless(stop: &AtomicBool, duration: Duration) -> bool {
    let end = Instant::now() + duration;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        thread::sleep(POLL_INTERVAL.min(end - now));
    }
}

/// Waits until `listener` has a pending connection or `timeout` passes.
fn readable(fd: i32, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is one valid pollfd on our stack and the count passed is 1.
    let n = unsafe { libc::poll(&mut pfd, 1, millis) };
    n > 0
}

/// Why reading from a served connection ended without a complete list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEnd {
    /// The client closed the connection (`partial`: inside a list).
    Eof { partial: bool },
    /// Teardown or a test release.
    Stopped,
    /// The per-connection deadline passed.
    TimedOut,
    /// A socket error or a malformed attribute stream.
    Error(String),
}

/// One accepted connection, read with bounded waits and decoded as attribute lists.
pub struct Conn {
    stream: UnixStream,
    stop: Arc<AtomicBool>,
    /// A second flag a fake can raise to end waits early (e.g. release hung agents).
    release: Arc<AtomicBool>,
    decoder: AttrDecoder,
    pending: Vec<AttrList>,
    /// Bytes arrived since the last list [`Conn::next_list_per_read`] returned.
    fresh: bool,
    deadline: Instant,
}

impl Conn {
    fn new(stream: UnixStream, stop: Arc<AtomicBool>, release: Arc<AtomicBool>) -> Conn {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(POLL_INTERVAL));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        Conn {
            stream,
            stop,
            release,
            decoder: AttrDecoder::default(),
            pending: Vec::new(),
            fresh: false,
            deadline: Instant::now() + CONNECTION_DEADLINE,
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.release.load(Ordering::SeqCst)
    }

    /// Writes all bytes (bounded by the write timeout).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads one chunk; Ok(0) = EOF; Err(ReadEnd) when stopped or timed out.
    fn read_chunk(&mut self, buf: &mut [u8]) -> Result<usize, ReadEnd> {
        loop {
            if self.stopped() {
                return Err(ReadEnd::Stopped);
            }
            if Instant::now() >= self.deadline {
                return Err(ReadEnd::TimedOut);
            }
            match self.stream.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadEnd::Error(e.to_string())),
            }
        }
    }

    /// The next complete attribute list from the client.
    pub fn next_list(&mut self) -> Result<AttrList, ReadEnd> {
        let mut buf = [0u8; 4096];
        loop {
            if !self.pending.is_empty() {
                return Ok(self.pending.remove(0));
            }
            let n = self.read_chunk(&mut buf)?;
            if n == 0 {
                return Err(ReadEnd::Eof {
                    partial: !self.decoder.is_idle(),
                });
            }
            let lists = self
                .decoder
                .feed(buf.get(..n).unwrap_or(&[]))
                .map_err(|e| ReadEnd::Error(e.to_string()))?;
            self.pending.extend(lists);
        }
    }

    /// Like [`Conn::next_list`], but the way Postfix's multi-server daemons (trivial-rewrite)
    /// serve a connection: one request per readable event. Requests the client wrote back to
    /// back stay buffered until the client writes again, so a client that pipelines stalls
    /// here as it would against the real server.
    pub fn next_list_per_read(&mut self) -> Result<AttrList, ReadEnd> {
        let mut buf = [0u8; 4096];
        loop {
            if self.fresh && !self.pending.is_empty() {
                self.fresh = false;
                return Ok(self.pending.remove(0));
            }
            let n = self.read_chunk(&mut buf)?;
            if n == 0 {
                return Err(ReadEnd::Eof {
                    partial: !self.decoder.is_idle(),
                });
            }
            let lists = self
                .decoder
                .feed(buf.get(..n).unwrap_or(&[]))
                .map_err(|e| ReadEnd::Error(e.to_string()))?;
            self.pending.extend(lists);
            self.fresh = true;
        }
    }

    /// Waits for the client to close (any further bytes are discarded); true on EOF.
    pub fn wait_close(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        self.deadline = self.deadline.min(end);
        let mut buf = [0u8; 1024];
        loop {
            match self.read_chunk(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// Holds the connection open without answering until teardown, a release, or the
    /// client closing it.
    pub fn hang(&mut self) {
        let _ = self.wait_close(CONNECTION_DEADLINE);
    }

    /// Sleeps unless stopped; false when stopped first.
    pub fn pause(&self, duration: Duration) -> bool {
        let end = Instant::now() + duration;
        while Instant::now() < end {
            if self.stopped() {
                return false;
            }
            thread::sleep(POLL_INTERVAL.min(end - Instant::now()));
        }
        true
    }
}

type Handler = Arc<dyn Fn(Conn) + Send + Sync>;

/// A listening UNIX stream socket served by threads until dropped.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Server {
    /// Binds `path` (replacing a stale socket file) and serves each connection with
    /// `handler` on its own thread.
    pub fn start(path: &Path, handler: Handler) -> io::Result<Server> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (stop, release, conns) = (stop.clone(), release.clone(), conns.clone());
            thread::Builder::new()
                .name(format!("fake {}", path.display()))
                .spawn(move || accept_loop(listener, handler, stop, release, conns))?
        };
        Ok(Server {
            path: path.to_path_buf(),
            stop,
            release,
            accept: Some(accept),
            conns,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ends every wait of the current connections (hung ones close); new ones are served.
    pub fn release_all(&self) {
        self.release.store(true, Ordering::SeqCst);
        let handles: Vec<_> = self
            .conns
            .lock()
            .map(|mut c| c.drain(..).collect())
            .unwrap_or_default();
        for h in handles {
            let _ = h.join();
        }
        self.release.store(false, Ordering::SeqCst);
    }
}

fn accept_loop(
    listener: UnixListener,
    handler: Handler,
    stop: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while !stop.load(Ordering::SeqCst) {
        if !readable(listener.as_raw_fd(), POLL_INTERVAL) {
            continue;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => continue,
        };
        let conn = Conn::new(stream, stop.clone(), release.clone());
        let handler = handler.clone();
        if let Ok(handle) = thread::Builder::new()
            .name("fake connection".to_string())
            .spawn(move || handler(conn))
        {
            if let Ok(mut c) = conns.lock() {
                c.push(handle);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let handles: Vec<_> = self
            .conns
            .lock()
            .map(|mut c| c.drain(..).collect())
            .unwrap_or_default();
        for h in handles {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A socket file nobody listens on (connect gives ECONNREFUSED); removed on drop.
pub struct ClosedSocket {
    path: PathBuf,
}

impl ClosedSocket {
    pub fn create(path: &Path) -> io::Result<ClosedSocket> {
        let _ = std::fs::remove_file(path);
        drop(UnixListener::bind(path)?);
        Ok(ClosedSocket {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ClosedSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A client connection for tests that play the queue manager's side against a fake.
pub struct Client {
    stream: UnixStream,
    decoder: AttrDecoder,
    pending: Vec<AttrList>,
    /// Every byte received, in order (to compare with captured transcripts).
    pub received: Vec<u8>,
}

impl Client {
    pub fn connect(path: &Path) -> io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(Client {
            stream,
            decoder: AttrDecoder::default(),
            pending: Vec::new(),
            received: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Bounds each read (default 5 s).
    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(timeout))
    }

    /// The next list, or an error on EOF / timeout (5 s) / malformed input.
    pub fn next_list(&mut self) -> io::Result<AttrList> {
        let mut buf = [0u8; 4096];
        loop {
            if !self.pending.is_empty() {
                return Ok(self.pending.remove(0));
            }
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::new(ErrorKind::UnexpectedEof, "server closed"));
            }
            let chunk = buf.get(..n).unwrap_or(&[]);
            self.received.extend_from_slice(chunk);
            let lists = self
                .decoder
                .feed(chunk)
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, e.to_string()))?;
            self.pending.extend(lists);
        }
    }

    /// Reads everything until the server closes (bounded by the 5 s read timeout).
    pub fn read_to_close(&mut self) -> io::Result<Vec<u8>> {
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest)?;
        self.received.extend_from_slice(&rest);
        Ok(rest)
    }

    /// Closes our side for writing (the server sees EOF), keeping the read side.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(std::net::Shutdown::Write)
    }
}
