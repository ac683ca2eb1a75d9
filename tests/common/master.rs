//! A stand-in for master(8): starts the daemon with the flow pipe on fds 3/4, the status
//! socket on fd 5 and the `public/qmgr` listener on fd 6, the environment master gives, and
//! plays master's side of each (wakeup triggers, status messages, reload by closing fd 5).
//!
//! The child runs in its own process group, which is killed (SIGKILL) when the FakeMaster is
//! dropped. Its exit is observed with `waitid(WNOWAIT)`, so the group id stays reserved by
//! the zombie leader until the drop reaps it: the kill can never reach a stranger's group.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::queue_dir::{FakeQueueDir, HOSTNAME};

/// The generation master hands the child (octal text; 13 = 11 in status messages).
pub const GENERATION: &str = "13";
/// `GENERATION` as the daemon must decode it.
pub const GENERATION_VALUE: u32 = 0o13;

/// The listener type on fd 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// A listening UNIX stream socket (Debian's `qmgr unix` row).
    Unix,
    /// A FIFO opened O_RDWR|O_NONBLOCK (mode 0622).
    Fifo,
}

/// How to start the child.
#[derive(Debug, Clone)]
pub struct MasterOptions {
    pub program: PathBuf,
    pub argv0: String,
    pub args: Vec<String>,
    pub listener: ListenerKind,
    pub generation: String,
    /// Added after the standard variables.
    pub env: Vec<(String, String)>,
}

impl Default for MasterOptions {
    /// The oqmgr binary as `qmgr -l -t unix` (no `-u`: tests do not run as mail_owner).
    fn default() -> Self {
        MasterOptions {
            program: PathBuf::from(env!("CARGO_BIN_EXE_oqmgr")),
            argv0: "qmgr".to_string(),
            args: vec!["-l".into(), "-t".into(), "unix".into()],
            listener: ListenerKind::Unix,
            generation: GENERATION.to_string(),
            env: Vec::new(),
        }
    }
}

impl MasterOptions {
    /// The oqmgr binary as `qmgr -l -t fifo` with a FIFO on fd 6.
    pub fn fifo() -> Self {
        MasterOptions {
            args: vec!["-l".into(), "-t".into(), "fifo".into()],
            listener: ListenerKind::Fifo,
            ..MasterOptions::default()
        }
    }

    /// Another program (stand-ins in tests of the harness itself).
    pub fn program(program: &str, argv0: &str, args: &[&str]) -> Self {
        MasterOptions {
            program: PathBuf::from(program),
            argv0: argv0.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..MasterOptions::default()
        }
    }

    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }
}

/// One `MASTER_STATUS` record read from the status socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusMessage {
    pub pid: i32,
    pub generation: u32,
    /// 0 = TAKEN (busy), 1 = AVAIL.
    pub avail: i32,
}

impl StatusMessage {
    /// Decodes one native-endian 12-byte record.
    pub fn decode(bytes: &[u8; 12]) -> StatusMessage {
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[i..i + 4]);
            w
        };
        StatusMessage {
            pid: i32::from_ne_bytes(word(0)),
            generation: u32::from_ne_bytes(word(4)),
            avail: i32::from_ne_bytes(word(8)),
        }
    }
}

enum Listener {
    Unix(UnixListener),
    Fifo(File),
}

impl Listener {
    fn raw(&self) -> RawFd {
        match self {
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Fifo(f) => f.as_raw_fd(),
        }
    }
}

#[derive(Default)]
struct StatusState {
    /// Our end; None after [`FakeMaster::reload`].
    socket: Option<UnixStream>,
    partial: Vec<u8>,
    messages: Vec<StatusMessage>,
}

struct ChildState {
    child: Child,
    /// Set once the exit was seen (the zombie is kept until reaped).
    exit: Option<ExitStatus>,
    reaped: bool,
}

/// A running child with master's descriptors; killed with its process group on drop.
pub struct FakeMaster {
    child: Mutex<ChildState>,
    pid: i32,
    flow_read: OwnedFd,
    flow_write: OwnedFd,
    status: Mutex<StatusState>,
    /// Kept open, as master keeps its listeners.
    listener: Listener,
    listen_path: PathBuf,
    kind: ListenerKind,
    output_path: PathBuf,
}

/// A close-on-exec duplicate at fd >= 100, so the child's dup2 onto 3..6 cannot clobber a
/// source descriptor.
fn dup_high(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) only reads `fd` and returns a new descriptor or -1.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn pipe_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn make_listener(path: &Path, kind: ListenerKind) -> io::Result<Listener> {
    let _ = std::fs::remove_file(path);
    match kind {
        ListenerKind::Unix => {
            let l = UnixListener::bind(path)?;
            l.set_nonblocking(true)?;
            Ok(Listener::Unix(l))
        }
        ListenerKind::Fifo => {
            let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
            // SAFETY: `c_path` is a valid NUL-terminated path.
            if unsafe { libc::mkfifo(c_path.as_ptr(), 0o622) } < 0 {
                return Err(io::Error::last_os_error());
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o622))?;
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)?;
            Ok(Listener::Fifo(f))
        }
    }
}

impl FakeMaster {
    /// Starts the oqmgr binary for this instance, as `qmgr -l -t unix`.
    pub fn start(dir: &FakeQueueDir) -> FakeMaster {
        FakeMaster::start_with(dir, MasterOptions::default())
    }

    /// Starts a child as master would.
    pub fn start_with(dir: &FakeQueueDir, opts: MasterOptions) -> FakeMaster {
        FakeMaster::try_start(dir, opts).expect("start child like master(8)")
    }

    pub fn try_start(dir: &FakeQueueDir, opts: MasterOptions) -> io::Result<FakeMaster> {
        let (flow_read, flow_write) = pipe_nonblocking()?;
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let listen_path = dir.public("qmgr");
        let listener = make_listener(&listen_path, opts.listener)?;
        let output_path = dir.root().join("child-output.log");
        let output = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&output_path)?;

        let high = [
            dup_high(flow_read.as_raw_fd())?,
            dup_high(flow_write.as_raw_fd())?,
            dup_high(theirs.as_raw_fd())?,
            dup_high(listener.raw())?,
        ];
        let plan: [(RawFd, RawFd); 4] = [
            (high[0].as_raw_fd(), 3),
            (high[1].as_raw_fd(), 4),
            (high[2].as_raw_fd(), 5),
            (high[3].as_raw_fd(), 6),
        ];

        let mut cmd = Command::new(&opts.program);
        cmd.arg0(&opts.argv0)
            .args(&opts.args)
            .env_clear()
            .env("MAIL_CONFIG", dir.config_dir())
            .env("MAIL_LOGTAG", "postfix")
            .env("LANG", "C")
            .env("POSTLOG_SERVICE", dir.public("postlog"))
            .env("POSTLOG_HOSTNAME", HOSTNAME)
            .env("GENERATION", &opts.generation)
            .envs(opts.env.iter().map(|(n, v)| (n, v)))
            .current_dir(dir.queue_dir())
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
        // functions (setpgid, dup2) on descriptors that stay open in the child until exec.
        unsafe {
            cmd.pre_exec(move || {
                // SAFETY: setpgid(0, 0) makes the child the leader of a new process group.
                if libc::setpgid(0, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                for (from, to) in plan {
                    // SAFETY: `from` is open (a duplicate made before the fork); dup2 clears
                    // close-on-exec on `to`.
                    if libc::dup2(from, to) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                // As master does (it marks its other descriptors close-on-exec), pass nothing
                // else: another test thread's descriptor would otherwise keep, say, a fake
                // agent's connection open in the daemon.
                for fd in 7..1024 {
                    libc::close(fd);
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        // Master's copies of the child's ends must go, or the child never sees EOF on fd 5.
        drop(high);
        drop(theirs);
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        Ok(FakeMaster {
            child: Mutex::new(ChildState {
                child,
                exit: None,
                reaped: false,
            }),
            pid,
            flow_read,
            flow_write,
            status: Mutex::new(StatusState {
                socket: Some(ours),
                ..StatusState::default()
            }),
            listener,
            listen_path,
            kind: opts.listener,
            output_path,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Everything the child wrote to stdout/stderr so far.
    pub fn output(&self) -> String {
        std::fs::read(&self.output_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn output_path(&self) -> &Path {
        &self.output_path
    }

    /// The trigger listener's path (`public/qmgr`).
    pub fn listen_path(&self) -> &Path {
        &self.listen_path
    }

    /// Sends a trigger like unix_trigger (bytes, then one NUL, then wait for the server to
    /// close) or fifo_trigger (the bytes alone), with a 5 s bound.
    pub fn trigger(&self, bytes: &[u8]) -> io::Result<()> {
        self.trigger_timeout(bytes, Duration::from_secs(5))
    }

    pub fn trigger_timeout(&self, bytes: &[u8], timeout: Duration) -> io::Result<()> {
        match self.kind {
            ListenerKind::Unix => {
                let mut s = UnixStream::connect(&self.listen_path)?;
                s.set_write_timeout(Some(timeout))?;
                s.write_all(bytes)?;
                // The server reads once and may hang up before the NUL arrives: the request
                // went through (unix_trigger only warns about this write).
                if s.write_all(b"\0").is_err() {
                    return Ok(());
                }
                let end = Instant::now() + timeout;
                let mut buf = [0u8; 64];
                loop {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            ErrorKind::TimedOut,
                            "trigger: server did not close the connection",
                        ));
                    }
                    s.set_read_timeout(Some(left))?;
                    match s.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
            }
            ListenerKind::Fifo => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&self.listen_path)?;
                f.write_all(bytes)
            }
        }
    }

    /// Reads whatever status records arrived (non-blocking).
    fn drain_status(state: &mut StatusState) {
        let Some(socket) = state.socket.as_mut() else {
            return;
        };
        let mut buf = [0u8; 1200];
        loop {
            match socket.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => state.partial.extend_from_slice(buf.get(..n).unwrap_or(&[])),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        while state.partial.len() >= 12 {
            let mut rec = [0u8; 12];
            rec.copy_from_slice(&state.partial[..12]);
            state.messages.push(StatusMessage::decode(&rec));
            state.partial.drain(..12);
        }
    }

    /// All status messages received so far.
    pub fn status_messages(&self) -> Vec<StatusMessage> {
        let mut state = self.status.lock().expect("status state");
        FakeMaster::drain_status(&mut state);
        state.messages.clone()
    }

    /// Bytes of a status record cut short (master logs those), so far.
    pub fn status_partial_bytes(&self) -> usize {
        let mut state = self.status.lock().expect("status state");
        FakeMaster::drain_status(&mut state);
        state.partial.len()
    }

    /// Waits until at least `n` status messages have arrived.
    pub fn wait_status(&self, n: usize, timeout: Duration) -> Vec<StatusMessage> {
        super::wait_until(timeout, || self.status_messages().len() >= n);
        self.status_messages()
    }

    /// Tokens in the flow pipe (FIONREAD on the read end).
    pub fn flow_tokens(&self) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int into `n`; the descriptor is ours and open.
        let rc = unsafe { libc::ioctl(self.flow_read.as_raw_fd(), libc::FIONREAD, &mut n) };
        if rc < 0 {
            0
        } else {
            usize::try_from(n).unwrap_or(0)
        }
    }

    /// Puts `n` tokens into the flow pipe (what other daemons' mail_flow_put does).
    pub fn put_flow_tokens(&self, n: usize) -> io::Result<()> {
        let mut f = File::from(self.flow_write.try_clone()?);
        f.write_all(&vec![0u8; n])
    }

    /// Takes up to `n` tokens out of the pipe (mail_flow_get); returns how many.
    pub fn take_flow_tokens(&self, n: usize) -> usize {
        let mut buf = vec![0u8; n];
        match self.flow_read.try_clone().map(File::from) {
            Ok(mut f) => f.read(&mut buf).unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// `postfix reload` for a kept service: master closes its end of the status socket.
    /// Status messages that arrived before are kept.
    pub fn reload(&self) {
        let mut state = self.status.lock().expect("status state");
        FakeMaster::drain_status(&mut state);
        state.socket = None;
    }

    /// The child's exit, without reaping it, if it has exited.
    fn poll_exit(state: &mut ChildState, pid: i32) -> Option<ExitStatus> {
        if state.exit.is_some() {
            return state.exit;
        }
        // SAFETY: siginfo_t is plain data; zeroed is a valid "nothing happened" value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let id = libc::id_t::try_from(pid).ok()?;
        // SAFETY: waitid on our own child with WNOWAIT leaves it waitable; it writes only
        // into `info`.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                id,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: after a successful waitid the pid/status fields are initialised (si_pid 0
        // means no child changed state).
        let (si_pid, si_status) = unsafe { (info.si_pid(), info.si_status()) };
        if rc < 0 || si_pid == 0 {
            return None;
        }
        let raw = match info.si_code {
            libc::CLD_EXITED => (si_status & 0xff) << 8,
            libc::CLD_DUMPED => (si_status & 0x7f) | 0x80,
            _ => si_status & 0x7f,
        };
        state.exit = Some(ExitStatus::from_raw(raw));
        state.exit
    }

    /// Whether the child has not exited yet.
    pub fn is_running(&self) -> bool {
        let mut state = self.child.lock().expect("child state");
        FakeMaster::poll_exit(&mut state, self.pid).is_none()
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            {
                let mut state = self.child.lock().expect("child state");
                if let Some(status) = FakeMaster::poll_exit(&mut state, self.pid) {
                    return Some(status);
                }
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `signal` to the child alone (e.g. SIGTERM for `postfix stop`).
    pub fn signal(&self, signal: libc::c_int) {
        let state = self.child.lock().expect("child state");
        if !state.reaped {
            // SAFETY: kill(2) on the pid of our own unreaped child.
            unsafe { libc::kill(self.pid, signal) };
        }
    }

    /// SIGKILLs the child's process group and reaps the child; returns its exit status.
    pub fn kill(&self) -> Option<ExitStatus> {
        let mut state = self.child.lock().expect("child state");
        FakeMaster::kill_and_reap(&mut state, self.pid)
    }

    fn kill_and_reap(state: &mut ChildState, pid: i32) -> Option<ExitStatus> {
        if state.reaped {
            return state.exit;
        }
        // SAFETY: the group id is our unreaped child's pid, so it names the group that child
        // leads (its own, made by setpgid in pre_exec), or at worst nothing.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
        let waited = state.child.wait().ok();
        state.reaped = true;
        if state.exit.is_none() {
            state.exit = waited;
        }
        state.exit
    }
}

impl Drop for FakeMaster {
    fn drop(&mut self) {
        if let Ok(mut state) = self.child.lock() {
            FakeMaster::kill_and_reap(&mut state, self.pid);
        }
        let _ = std::fs::remove_file(&self.listen_path);
    }
}
