//! The master(8) channels over stand-in descriptors: socketpairs for the status channel,
//! a pipe for the flow tokens, a UNIX listener in a temp dir and a FIFO for triggers.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::stat::Mode;

use oqmgr::master::fds::{self, MasterChannels, TRIGGER_WAIT};
use oqmgr::master::status::Availability;

fn status_pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::empty(),
    )
    .unwrap()
}

fn flow_pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(OFlag::O_NONBLOCK).unwrap()
}

fn read_all_now(fd: &OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = nix::sys::socket::recv(
        std::os::fd::AsRawFd::as_raw_fd(fd),
        &mut buf,
        nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    ) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn status_messages_are_twelve_bytes_each() {
    let (ours, master) = status_pair();
    fds::notify(ours.as_fd(), 819, 0o13, Availability::Taken).unwrap();
    fds::notify(ours.as_fd(), 819, 0o13, Availability::Avail).unwrap();
    let got = read_all_now(&master);
    // The capture: pid 819, GENERATION=13 -> gen 11, TAKEN then AVAIL.
    assert_eq!(
        got,
        [
            &b"3\x03\0\0\x0b\0\0\0\0\0\0\0"[..],
            &b"3\x03\0\0\x0b\0\0\0\x01\0\0\0"[..]
        ]
        .concat()
    );
}

#[test]
fn notify_fails_once_master_is_gone() {
    let (ours, master) = status_pair();
    drop(master);
    // SIGPIPE is ignored by the Rust test harness, so the write fails with EPIPE.
    assert!(fds::notify(ours.as_fd(), 1, 0, Availability::Avail).is_err());
}

#[test]
fn status_eof_is_seen_only_after_master_closes() {
    let (ours, master) = status_pair();
    assert!(!fds::master_gone(ours.as_fd()));
    drop(master);
    assert!(fds::master_gone(ours.as_fd()));
}

#[test]
fn channels_forward_to_the_owned_descriptors() {
    let (ours, master) = status_pair();
    let (flow_read, flow_write) = flow_pipe();
    let listener = UnixListener::bind(tempfile::tempdir().unwrap().path().join("qmgr")).unwrap();
    let channels =
        MasterChannels::from_fds(flow_read, flow_write, ours, vec![OwnedFd::from(listener)]);
    channels.set_close_on_exec().unwrap();
    assert_eq!(channels.listen_fds().len(), 1);
    assert!(channels.listen_fd(channels.listen_fds()[0]).is_some());
    assert!(channels.listen_fd(channels.status_fd()).is_none());
    channels.notify(7, 1, Availability::Taken).unwrap();
    assert_eq!(read_all_now(&master).len(), 12);
    assert_eq!(channels.flow_put(5).unwrap(), 5);
    assert_eq!(channels.flow_count().unwrap(), 5);
    assert_eq!(channels.flow_get(2).unwrap(), 2);
    assert_eq!(channels.flow_count().unwrap(), 3);
    assert!(!channels.master_gone());
    drop(master);
    assert!(channels.master_gone());
}

#[test]
fn flow_tokens_round_trip() {
    let (r, w) = flow_pipe();
    assert_eq!(fds::flow_count(r.as_fd()).unwrap(), 0);
    assert_eq!(fds::flow_put(w.as_fd(), 200).unwrap(), 200);
    assert_eq!(fds::flow_count(r.as_fd()).unwrap(), 200);
    assert_eq!(fds::flow_get(r.as_fd(), 50).unwrap(), 50);
    assert_eq!(fds::flow_count(r.as_fd()).unwrap(), 150);
    // Taking more than there is stops at empty instead of blocking.
    assert_eq!(fds::flow_get(r.as_fd(), 3000).unwrap(), 150);
    assert_eq!(fds::flow_count(r.as_fd()).unwrap(), 0);
}

#[test]
fn tokens_are_zero_bytes() {
    let (r, w) = flow_pipe();
    fds::flow_put(w.as_fd(), 3).unwrap();
    let mut buf = [9u8; 8];
    assert_eq!(nix::unistd::read(&r, &mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"\0\0\0");
}

#[test]
fn a_full_flow_pipe_takes_what_fits_without_blocking() {
    let (r, w) = flow_pipe();
    let capacity = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap() as usize;
    let put = fds::flow_put(w.as_fd(), capacity + 5000).unwrap();
    assert_eq!(put, capacity);
    assert_eq!(fds::flow_count(r.as_fd()).unwrap(), capacity);
    assert_eq!(fds::flow_put(w.as_fd(), 1).unwrap(), 0);
}

fn listener() -> (tempfile::TempDir, std::path::PathBuf, UnixListener) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmgr");
    let l = UnixListener::bind(&path).unwrap();
    l.set_nonblocking(true).unwrap();
    (dir, path, l)
}

#[test]
fn no_pending_connection_is_no_trigger() {
    let (_dir, _path, l) = listener();
    assert!(fds::accept_trigger(l.as_fd(), TRIGGER_WAIT)
        .unwrap()
        .is_none());
}

#[test]
fn wakeup_trigger_is_read_as_two_bytes() {
    let (_dir, path, l) = listener();
    let mut client = UnixStream::connect(&path).unwrap();
    // Clients write the request, then a NUL, in two writes.
    client.write_all(b"W").unwrap();
    client.write_all(b"\0").unwrap();
    let conn = fds::accept_trigger(l.as_fd(), TRIGGER_WAIT)
        .unwrap()
        .expect("connection ready");
    assert_eq!(conn.read().unwrap(), b"W\0");
    drop(conn);
    // The server closed: the client sees EOF.
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut client, &mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn accepted_connection_is_close_on_exec() {
    let (_dir, path, l) = listener();
    let mut client = UnixStream::connect(&path).unwrap();
    client.write_all(b"I\0").unwrap();
    let conn = fds::accept_trigger(l.as_fd(), TRIGGER_WAIT)
        .unwrap()
        .unwrap();
    let flags = nix::fcntl::fcntl(conn.fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
    assert_ne!(flags & libc::FD_CLOEXEC, 0);
}

#[test]
fn silent_client_is_dropped_after_the_wait() {
    let (_dir, path, l) = listener();
    let mut client = UnixStream::connect(&path).unwrap();
    let start = Instant::now();
    let got = fds::accept_trigger(l.as_fd(), Duration::from_millis(100)).unwrap();
    let waited = start.elapsed();
    assert!(got.is_none(), "no bytes in time: no trigger at all");
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // The connection was closed without a read.
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut client, &mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn client_that_hangs_up_gives_an_empty_trigger() {
    let (_dir, path, l) = listener();
    drop(UnixStream::connect(&path).unwrap());
    let conn = fds::accept_trigger(l.as_fd(), Duration::from_millis(100))
        .unwrap()
        .expect("EOF counts as ready");
    assert_eq!(conn.read().unwrap(), b"");
}

#[test]
fn a_flood_yields_one_buffer_of_at_most_1024_bytes() {
    let (_dir, path, l) = listener();
    let mut client = UnixStream::connect(&path).unwrap();
    client.set_nonblocking(true).unwrap();
    let flood = vec![b'D'; 5000];
    let sent = client.write(&flood).unwrap();
    assert_eq!(sent, 5000);
    let start = Instant::now();
    let conn = fds::accept_trigger(l.as_fd(), TRIGGER_WAIT)
        .unwrap()
        .unwrap();
    let got = conn.read().unwrap();
    drop(conn);
    assert_eq!(got.len(), 1024);
    assert!(got.iter().all(|&b| b == b'D'));
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn fifo_trigger_is_one_nonblocking_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmgr");
    nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o622)).unwrap();
    // master opens the FIFO read-write and non-blocking.
    let fifo = nix::fcntl::open(&path, OFlag::O_RDWR | OFlag::O_NONBLOCK, Mode::empty()).unwrap();
    let err = fds::read_trigger(fifo.as_fd()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    let mut writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    writer.write_all(b"I\0").unwrap();
    writer.write_all(b"D\0").unwrap();
    assert_eq!(fds::read_trigger(fifo.as_fd()).unwrap(), b"I\0D\0");
    writer.write_all(&[b'A'; 3000]).unwrap();
    assert_eq!(fds::read_trigger(fifo.as_fd()).unwrap().len(), 1024);
}
