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
fn a_silent_client_is_accepted_without_waiting_and_ready_once_it_writes() {
    let (_dir, path, l) = listener();
    let mut client = UnixStream::connect(&path).unwrap();
    let start = Instant::now();
    let conn = fds::accept_connection(l.as_fd())
        .unwrap()
        .expect("a pending connection");
    assert!(!conn.is_ready(), "nothing sent yet");
    assert!(start.elapsed() < Duration::from_millis(100));
    client.write_all(b"I\0").unwrap();
    assert!(conn.is_ready());
    assert_eq!(conn.read().unwrap(), b"I\0");
    assert!(fds::accept_connection(l.as_fd()).unwrap().is_none());
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

/// Child half of `inherits_fds_3_to_6_from_the_parent`: runs with the parent's stand-ins on
/// fds 3-6, as master would start it.
#[test]
fn child_owns_the_master_fds() {
    if std::env::var_os("OQMGR_TEST_CHILD").is_none() {
        return;
    }
    // fd 7 is not open: a second listen fd is refused, and nothing is taken.
    let err = MasterChannels::inherit(2).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    let channels = MasterChannels::inherit(1).unwrap();
    assert_eq!(channels.flow_read_fd(), 3);
    assert_eq!(channels.flow_write_fd(), 4);
    assert_eq!(channels.status_fd(), 5);
    assert_eq!(channels.listen_fds(), vec![6]);
    for fd in 3..=6 {
        // SAFETY: F_GETFD only reads the descriptor flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "fd {fd}");
    }
    // Only once per process.
    assert_eq!(
        MasterChannels::inherit(1).unwrap_err().raw_os_error(),
        Some(libc::EBUSY)
    );
    channels.notify(42, 0o13, Availability::Avail).unwrap();
    assert_eq!(channels.flow_put(3).unwrap(), 3);
    let listen = channels.listen_fd(6).unwrap();
    let conn = fds::accept_trigger(listen, TRIGGER_WAIT).unwrap().unwrap();
    assert_eq!(conn.read().unwrap(), b"W\0");
    println!("CHILD-OK");
}

#[test]
fn inherits_fds_3_to_6_from_the_parent() {
    use std::os::unix::process::CommandExt;
    let (ours, master) = status_pair();
    let (flow_read, flow_write) = flow_pipe();
    let (_dir, path, l) = listener();
    let mut client = UnixStream::connect(&path).unwrap();
    client.write_all(b"W\0").unwrap();
    // Park the stand-ins above 6 first, so dup2 never maps a descriptor onto itself.
    let high = |fd: std::os::fd::BorrowedFd<'_>| {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(20)).unwrap()
    };
    let sources = [
        high(flow_read.as_fd()),
        high(flow_write.as_fd()),
        high(ours.as_fd()),
        high(l.as_fd()),
    ];
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_owns_the_master_fds",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("OQMGR_TEST_CHILD", "1");
    // SAFETY: the closure runs between fork and exec and calls only dup2 and close, which are
    // async-signal-safe; the source numbers were copied into it beforehand.
    unsafe {
        cmd.pre_exec(move || {
            for (target, source) in (3..).zip(sources) {
                if libc::dup2(source, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Nothing above 6 may be inherited: another test thread's descriptor that is not
            // close-on-exec and happens to be fd 7 would pass for a second listen socket.
            for fd in 7..1024 {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    for fd in sources {
        // SAFETY: these are our own duplicates, closed exactly once here.
        unsafe { libc::close(fd) };
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("CHILD-OK"), "{stdout}");
    let status = read_all_now(&master);
    assert_eq!(&status[..4], &42i32.to_ne_bytes());
    assert_eq!(&status[4..8], &11u32.to_ne_bytes());
    assert_eq!(&status[8..12], &1i32.to_ne_bytes());
    assert_eq!(fds::flow_count(flow_read.as_fd()).unwrap(), 3);
}
