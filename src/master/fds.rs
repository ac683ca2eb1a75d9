//! The descriptors master(8) hands a trigger service, and the I/O on them: status messages on
//! fd 5, flow-control tokens on fds 3/4, and trigger requests on the listen fd(s) 6...
//!
//! Every operation is a free function over a borrowed descriptor, so tests can pass their own
//! socketpairs, pipes and listeners; [`MasterChannels`] owns the real ones and forwards.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, MsgFlags};

use super::status::{self, Availability};
use super::{FLOW_READ_FD, FLOW_WRITE_FD, LISTEN_FD, STATUS_FD, TRIGGER_BUF_SIZE};
use crate::maillog::strerror;

/// How long the C trigger server waits for a client's bytes after accept() (`read_wait(fd, 10)`);
/// the daemon keeps a client that has sent nothing yet this long, without waiting for it.
pub const TRIGGER_WAIT: Duration = Duration::from_secs(10);

/// The flow pipe is read and written in chunks of this size, as mail_flow does.
const FLOW_CHUNK: usize = 1024;

fn to_io(err: Errno) -> io::Error {
    io::Error::from(err)
}

/// Marks a descriptor close-on-exec, so delivery agents never inherit master's channels.
pub fn set_close_on_exec(fd: BorrowedFd<'_>) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map(drop)
        .map_err(to_io)
}

/// Guards [`MasterChannels::inherit`]: the fixed descriptors can be owned only once.
static INHERITED: AtomicBool = AtomicBool::new(false);

/// The descriptors inherited from master(8), owned.
#[derive(Debug)]
pub struct MasterChannels {
    flow_read: OwnedFd,
    flow_write: OwnedFd,
    status: OwnedFd,
    listen: Vec<OwnedFd>,
}

impl MasterChannels {
    /// Takes ownership of fds 3, 4, 5 and the `socket_count` listen fds from 6 on, and marks
    /// them close-on-exec (listen fds first, then 5, 3, 4, the C daemon's order). Fails with
    /// EBADF when one of them is not open (not started by master), and with EBUSY when called
    /// a second time.
    pub fn inherit(socket_count: u32) -> io::Result<MasterChannels> {
        if INHERITED.swap(true, Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        let last = i64::from(LISTEN_FD) + i64::from(socket_count);
        let listen_fds: Vec<RawFd> = (i64::from(LISTEN_FD)..last)
            .filter_map(|fd| RawFd::try_from(fd).ok())
            .collect();
        let mut wanted = vec![FLOW_READ_FD, FLOW_WRITE_FD, STATUS_FD];
        wanted.extend(&listen_fds);
        for &fd in &wanted {
            // SAFETY: fcntl(F_GETFD) only inspects the descriptor table; an unused number gives
            // EBADF and nothing else happens.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                INHERITED.store(false, Ordering::SeqCst);
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY (all four from_raw_fd calls): each number was just checked to be open, master
        // passed it to us for our exclusive use, and the INHERITED guard makes sure no second
        // OwnedFd is ever made for it.
        let take = |fd: RawFd| unsafe { OwnedFd::from_raw_fd(fd) };
        let channels = MasterChannels {
            flow_read: take(FLOW_READ_FD),
            flow_write: take(FLOW_WRITE_FD),
            status: take(STATUS_FD),
            listen: listen_fds.into_iter().map(take).collect(),
        };
        channels.set_close_on_exec()?;
        Ok(channels)
    }

    /// Wraps descriptors the caller already owns (tests, or a caller that dup'ed them).
    pub fn from_fds(
        flow_read: OwnedFd,
        flow_write: OwnedFd,
        status: OwnedFd,
        listen: Vec<OwnedFd>,
    ) -> MasterChannels {
        MasterChannels {
            flow_read,
            flow_write,
            status,
            listen,
        }
    }

    /// Marks every channel close-on-exec.
    pub fn set_close_on_exec(&self) -> io::Result<()> {
        for fd in &self.listen {
            set_close_on_exec(fd.as_fd())?;
        }
        set_close_on_exec(self.status.as_fd())?;
        set_close_on_exec(self.flow_read.as_fd())?;
        set_close_on_exec(self.flow_write.as_fd())
    }

    /// fd 5, to register for readability (EOF = master closed it: reload or stop).
    pub fn status_fd(&self) -> RawFd {
        self.status.as_raw_fd()
    }

    /// fd 3, the read end of the flow pipe.
    pub fn flow_read_fd(&self) -> RawFd {
        self.flow_read.as_raw_fd()
    }

    /// fd 4, the write end of the flow pipe.
    pub fn flow_write_fd(&self) -> RawFd {
        self.flow_write.as_raw_fd()
    }

    /// The listen fds (6...), to register for readability.
    pub fn listen_fds(&self) -> Vec<RawFd> {
        self.listen.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// The listen fd with this raw number, borrowed, if it is one of ours.
    pub fn listen_fd(&self, raw: RawFd) -> Option<BorrowedFd<'_>> {
        self.listen
            .iter()
            .find(|fd| fd.as_raw_fd() == raw)
            .map(AsFd::as_fd)
    }

    /// [`notify`] on fd 5.
    pub fn notify(&self, pid: i32, generation: u32, availability: Availability) -> io::Result<()> {
        notify(self.status.as_fd(), pid, generation, availability)
    }

    /// [`master_gone`] on fd 5.
    pub fn master_gone(&self) -> bool {
        master_gone(self.status.as_fd())
    }

    /// [`flow_count`] on fd 3.
    pub fn flow_count(&self) -> io::Result<usize> {
        flow_count(self.flow_read.as_fd())
    }

    /// [`flow_put`] on fd 4.
    pub fn flow_put(&self, tokens: usize) -> io::Result<usize> {
        flow_put(self.flow_write.as_fd(), tokens)
    }

    /// [`flow_get`] on fd 3.
    pub fn flow_get(&self, tokens: usize) -> io::Result<usize> {
        flow_get(self.flow_read.as_fd(), tokens)
    }
}

// ---- status channel ----

/// Tells master we are busy (`Taken`) or idle (`Avail`): the 12-byte message in one write(2).
/// A short write is an error, as in master_notify (the caller exits 0 when an `Avail` fails).
pub fn notify(
    status_fd: BorrowedFd<'_>,
    pid: i32,
    generation: u32,
    availability: Availability,
) -> io::Result<()> {
    let message = status::encode(pid, generation, availability);
    loop {
        match nix::unistd::write(status_fd, &message) {
            Ok(n) if n == message.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short status write: {n} of {} bytes", message.len()),
                ))
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(to_io(e)),
        }
    }
}

/// Called when the status socket polls readable: true when master has closed its end (a peek
/// gives EOF or an error). Master never writes to us, so any data counts as gone too, as the C
/// trigger server exits on any readability; only "nothing there" (EAGAIN) is false.
pub fn master_gone(status_fd: BorrowedFd<'_>) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match recv(
            status_fd.as_raw_fd(),
            &mut byte,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return false,
            _ => return true,
        }
    }
}

// ---- flow-control tokens ----

/// The number of tokens (bytes) waiting in the flow pipe: FIONREAD on its read end.
pub fn flow_count(flow_read: BorrowedFd<'_>) -> io::Result<usize> {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD stores one c_int through the pointer, which points at `count`.
    let rc = unsafe { libc::ioctl(flow_read.as_raw_fd(), libc::FIONREAD, &mut count) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(count).unwrap_or(0))
}

/// Puts `tokens` zero bytes into the flow pipe, 1024 at a time. The pipe is non-blocking: when
/// it fills up, the bytes written so far are returned (possibly 0); other errors are errors.
pub fn flow_put(flow_write: BorrowedFd<'_>, tokens: usize) -> io::Result<usize> {
    let zeros = [0u8; FLOW_CHUNK];
    let mut done = 0;
    while done < tokens {
        let chunk = (tokens - done).min(FLOW_CHUNK);
        match nix::unistd::write(flow_write, &zeros[..chunk]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => break,
            Err(e) => return Err(to_io(e)),
        }
    }
    Ok(done)
}

/// Takes up to `tokens` bytes out of the flow pipe and discards them, 1024 at a time; stops
/// early when the pipe is empty (EAGAIN or EOF) and returns how many were taken.
pub fn flow_get(flow_read: BorrowedFd<'_>, tokens: usize) -> io::Result<usize> {
    let mut sink = [0u8; FLOW_CHUNK];
    let mut done = 0;
    while done < tokens {
        let chunk = (tokens - done).min(FLOW_CHUNK);
        match nix::unistd::read(flow_read, &mut sink[..chunk]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => break,
            Err(e) => return Err(to_io(e)),
        }
    }
    Ok(done)
}

// ---- triggers ----

/// accept(2) on the listen socket failed with something other than "no connection after all".
/// The C daemon logs it as an error (`error: accept connection: <strerror>`) and carries on.
#[derive(Debug)]
pub struct AcceptError(pub io::Error);

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "accept connection: {}", strerror(&self.0))
    }
}

impl std::error::Error for AcceptError {}

/// Errors that mean another process took the connection or the client gave up before we
/// accepted it: the C server's sane_accept() turns these into EAGAIN.
fn accept_gave_up(err: Errno) -> bool {
    matches!(
        err,
        Errno::EAGAIN
            | Errno::ECONNREFUSED
            | Errno::ECONNRESET
            | Errno::EHOSTDOWN
            | Errno::EHOSTUNREACH
            | Errno::EINTR
            | Errno::ENETDOWN
            | Errno::ENETUNREACH
            | Errno::ENOTCONN
            | Errno::ENOBUFS
            | Errno::ECONNABORTED
            | Errno::EPROTO
    )
}

/// An accepted trigger client; closed when dropped.
#[derive(Debug)]
pub struct TriggerConnection(OwnedFd);

impl TriggerConnection {
    /// Its bytes (or its hang-up) are there: the one read will not block.
    pub fn is_ready(&self) -> bool {
        wait_readable(self.fd(), Duration::ZERO)
    }

    /// The one read of the request (see [`read_trigger`]).
    pub fn read(&self) -> io::Result<Vec<u8>> {
        read_trigger(self.0.as_fd())
    }

    /// The accepted socket.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The `unix` listener polled readable: accept a client (close-on-exec), without waiting for
/// its bytes. `Ok(None)` when there was no connection after all. The daemon serves a client
/// that [`TriggerConnection::is_ready`] at once; one that is not yet is parked in its poll
/// loop for up to [`TRIGGER_WAIT`], so a client that sends nothing never holds up the loop.
pub fn accept_connection(
    listen_fd: BorrowedFd<'_>,
) -> Result<Option<TriggerConnection>, AcceptError> {
    let raw = loop {
        // SAFETY: accept4 with null address pointers writes nothing back; it only creates a
        // new descriptor, which we take ownership of below.
        let rc = unsafe {
            libc::accept4(
                listen_fd.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if rc >= 0 {
            break rc;
        }
        let err = Errno::last();
        if err == Errno::EINTR {
            continue;
        }
        if accept_gave_up(err) {
            return Ok(None);
        }
        return Err(AcceptError(to_io(err)));
    };
    // SAFETY: accept4 just returned this new descriptor; nothing else owns it.
    Ok(Some(TriggerConnection(unsafe {
        OwnedFd::from_raw_fd(raw)
    })))
}

/// The C trigger server's way, blocking: [`accept_connection`], then wait up to `wait` for the
/// client's bytes. `Ok(None)` when there was no connection after all, or when the client sent
/// nothing in time (the connection is then closed without a read, and the C server does not
/// tell master or run the handler). With `Some`, the caller notifies master `Taken`, calls
/// [`TriggerConnection::read`] once, handles the bytes, notifies `Avail` and drops the
/// connection. The daemon does not wait here (see [`accept_connection`]).
pub fn accept_trigger(
    listen_fd: BorrowedFd<'_>,
    wait: Duration,
) -> Result<Option<TriggerConnection>, AcceptError> {
    let Some(conn) = accept_connection(listen_fd)? else {
        return Ok(None);
    };
    if wait_readable(conn.fd(), wait) {
        Ok(Some(conn))
    } else {
        Ok(None)
    }
}

/// Waits up to `wait` for `fd` to become readable (data, EOF or an error all count). EINTR
/// restarts the wait with the time left; a poll failure counts as "not ready".
pub fn wait_readable(fd: BorrowedFd<'_>, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up to whole milliseconds so the wait is never cut short.
        let millis = left.as_nanos().div_ceil(1_000_000);
        let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) if Instant::now() < deadline => continue,
            Ok(0) => return false,
            Ok(_) => {
                return !fds[0]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLNVAL))
            }
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// One read(2) of at most [`TRIGGER_BUF_SIZE`] bytes: an accepted connection's request, or
/// whatever is in the FIFO (its descriptor is non-blocking, so an empty FIFO gives
/// `WouldBlock`, after which the C server skips the handler). EOF gives an empty buffer, which
/// is still a trigger.
pub fn read_trigger(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; TRIGGER_BUF_SIZE];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(to_io(e)),
        }
    }
}

/// Stand-alone mode (`-S`) found no request on stdin: `fatal: read: <strerror>`.
#[derive(Debug)]
pub struct StandAloneReadError(pub Option<io::Error>);

impl fmt::Display for StandAloneReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(err) => write!(f, "read: {}", strerror(err)),
            // End of file leaves errno untouched in C; "Success" is what %m usually shows.
            None => write!(f, "read: Success"),
        }
    }
}

impl std::error::Error for StandAloneReadError {}

/// `-S`: the one request read from stdin. An empty read is fatal here, unlike on a socket.
pub fn read_stand_alone(stdin: BorrowedFd<'_>) -> Result<Vec<u8>, StandAloneReadError> {
    match read_trigger(stdin) {
        Ok(buf) if buf.is_empty() => Err(StandAloneReadError(None)),
        Ok(buf) => Ok(buf),
        Err(e) => Err(StandAloneReadError(Some(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

    #[test]
    fn accept_errors_read_like_the_c_server() {
        let e = AcceptError(io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(e.to_string(), "accept connection: Too many open files");
        assert!(accept_gave_up(Errno::ECONNABORTED));
        assert!(!accept_gave_up(Errno::EMFILE));
    }

    #[test]
    fn stand_alone_eof_is_fatal() {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::empty(),
        )
        .unwrap();
        drop(theirs);
        let err = read_stand_alone(ours.as_fd()).unwrap_err();
        assert_eq!(err.to_string(), "read: Success");
    }

    #[test]
    fn stand_alone_reads_the_request() {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::empty(),
        )
        .unwrap();
        nix::unistd::write(&theirs, b"D\0").unwrap();
        assert_eq!(read_stand_alone(ours.as_fd()).unwrap(), b"D\0");
    }

    #[test]
    fn close_on_exec_is_set() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        set_close_on_exec(r.as_fd()).unwrap();
        let flags = fcntl(r.as_fd(), FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }
}
