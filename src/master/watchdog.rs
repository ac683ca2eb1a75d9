//! Postfix's watchdog: a process stuck for `qmgr_daemon_timeout` seconds kills itself.
//!
//! The timeout is split into three alarm(2) steps. [`Watchdog::start`], called once per event
//! loop iteration, resets the trip count and re-arms the alarm. The first two consecutive
//! alarms only write a byte to a self-pipe (so an idle loop wakes up, goes round, and calls
//! `start()` again); the third is fatal: `fatal: watchdog timeout`, with a hard SIGALRM kill
//! 5 s later should the orderly exit hang.
//!
//! The SIGALRM handler does only async-signal-safe things: atomics, write(2), alarm(2),
//! sigaction(2), sigprocmask(2), _exit(2), and the fatal line through
//! [`crate::maillog::emergency`], which formats and sends it without locks or allocation.
//! No thread is involved.
//!
//! There is one watchdog per process (alarm(2) is per process too).

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, Signal};

/// The timeout is checked in this many steps; the last one is fatal.
pub const WATCHDOG_STEPS: u32 = 3;

/// Seconds between the fatal alarm and the hard kill (Postfix's killme_after(5)).
pub const HARD_KILL_DELAY: u32 = 5;

// State shared with the signal handler: plain atomics only.
static CREATED: AtomicBool = AtomicBool::new(false);
static STEP_SECONDS: AtomicU32 = AtomicU32::new(0);
static TRIP_RUN: AtomicU32 = AtomicU32::new(0);
static WAKE_WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// Why the watchdog could not be set up, worded as watchdog_create()'s messages.
#[derive(Debug)]
pub enum WatchdogError {
    /// A timeout under 3 s leaves a zero alarm step (a panic in C).
    TooSmall(u32),
    /// `pipe: <strerror>`
    Pipe(io::Error),
    /// `sigaction(SIGALRM): <strerror>`
    Sigaction(io::Error),
    /// A second watchdog in the same process.
    AlreadyCreated,
}

impl fmt::Display for WatchdogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let strerror = super::fds::strerror;
        match self {
            WatchdogError::TooSmall(t) => write!(f, "watchdog_create: timeout {t} is too small"),
            WatchdogError::Pipe(e) => write!(f, "watchdog_create: pipe: {}", strerror(e)),
            WatchdogError::Sigaction(e) => {
                write!(f, "watchdog_create: sigaction(SIGALRM): {}", strerror(e))
            }
            WatchdogError::AlreadyCreated => write!(f, "watchdog_create: watchdog exists"),
        }
    }
}

impl std::error::Error for WatchdogError {}

/// The alarm step for a timeout: timeout / 3, which must not be 0.
pub fn step_seconds(timeout: u32) -> Result<u32, WatchdogError> {
    match timeout / WATCHDOG_STEPS {
        0 => Err(WatchdogError::TooSmall(timeout)),
        step => Ok(step),
    }
}

/// The process's watchdog. Owns the read end of the wake-up pipe.
#[derive(Debug)]
pub struct Watchdog {
    wake_read: OwnedFd,
}

/// Saves and restores errno around the handler, so the interrupted code never sees ours.
struct SavedErrno(i32);

impl SavedErrno {
    fn save() -> SavedErrno {
        SavedErrno(Errno::last_raw())
    }
}

impl Drop for SavedErrno {
    fn drop(&mut self) {
        Errno::set_raw(self.0);
    }
}

/// The SIGALRM handler.
extern "C" fn on_alarm(_signal: libc::c_int) {
    let _errno = SavedErrno::save();
    let trips = TRIP_RUN.fetch_add(1, Ordering::SeqCst).saturating_add(1);
    if trips < WATCHDOG_STEPS {
        let fd = WAKE_WRITE_FD.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: write(2) and alarm(2) are async-signal-safe; the buffer is a static byte
            // and the descriptor stays open for the life of the process. A full pipe (EAGAIN,
            // it is non-blocking) already holds a wake-up, so the result is not needed.
            unsafe {
                libc::write(fd, c"".as_ptr().cast(), 1);
            }
        }
        // SAFETY: alarm(2) is async-signal-safe.
        unsafe { libc::alarm(STEP_SECONDS.load(Ordering::SeqCst)) };
    } else {
        // As the C daemon: the hard kill first (should the last word hang), then the fatal
        // line through the signal-safe logger, then exit 1.
        arm_hard_kill(HARD_KILL_DELAY);
        crate::maillog::emergency::fatal(b"watchdog timeout");
        // SAFETY: _exit(2) is async-signal-safe and ends the process at once.
        unsafe { libc::_exit(1) };
    }
}

/// killme_after()'s handler for PID 1, which Linux would not kill with a default action.
extern "C" fn exit_on_alarm(signal: libc::c_int) {
    // SAFETY: _exit(2) is async-signal-safe and ends the process at once.
    unsafe { libc::_exit(signal) };
}

/// Makes the next SIGALRM, `seconds` from now, end the process whatever it is doing:
/// the default action (or _exit as PID 1), and SIGALRM unblocked in this thread.
/// Async-signal-safe: called from the handler.
fn arm_hard_kill(seconds: u32) {
    // SAFETY: alarm, getpid, sigemptyset, sigaddset, sigaction and sigprocmask are all
    // async-signal-safe; every struct passed lives on this stack frame.
    unsafe {
        libc::alarm(0);
        let mut action: libc::sigaction = std::mem::zeroed();
        libc::sigemptyset(&mut action.sa_mask);
        action.sa_flags = 0;
        action.sa_sigaction = if libc::getpid() == 1 {
            exit_on_alarm as extern "C" fn(libc::c_int) as libc::sighandler_t
        } else {
            libc::SIG_DFL
        };
        libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut());
        libc::alarm(seconds);
        let mut unblock: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut unblock);
        libc::sigaddset(&mut unblock, libc::SIGALRM);
        libc::sigprocmask(libc::SIG_UNBLOCK, &unblock, std::ptr::null_mut());
    }
}

/// A non-blocking, close-on-exec pipe.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(io::Error::from)
}

impl Watchdog {
    /// Sets the watchdog up (not yet running): the SIGALRM handler (SA_RESTART) and the
    /// wake-up pipe. `timeout` is `qmgr_daemon_timeout` in seconds,
    /// at least 3. Once per process.
    pub fn create(timeout: u32) -> Result<Watchdog, WatchdogError> {
        let step = step_seconds(timeout)?;
        if CREATED.swap(true, Ordering::SeqCst) {
            return Err(WatchdogError::AlreadyCreated);
        }
        STEP_SECONDS.store(step, Ordering::SeqCst);
        TRIP_RUN.store(0, Ordering::SeqCst);
        let (wake_read, wake_write) = pipe().map_err(WatchdogError::Pipe)?;
        // The write ends live as long as the process: the handler may use them at any time.
        WAKE_WRITE_FD.store(wake_write.into_raw_fd(), Ordering::SeqCst);
        // SAFETY: alarm(2) has no preconditions; nothing is armed before our handler is in.
        unsafe { libc::alarm(0) };
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_alarm),
            nix::sys::signal::SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: `on_alarm` only uses async-signal-safe calls and atomics (see above).
        unsafe { nix::sys::signal::sigaction(Signal::SIGALRM, &action) }
            .map_err(|e| WatchdogError::Sigaction(e.into()))?;
        Ok(Watchdog { wake_read })
    }

    /// The loop went round: reset the trip count and re-arm the alarm for one step.
    pub fn start(&self) {
        TRIP_RUN.store(0, Ordering::SeqCst);
        // SAFETY: alarm(2) has no preconditions.
        unsafe { libc::alarm(STEP_SECONDS.load(Ordering::SeqCst)) };
    }

    /// Disarms the alarm (before a wait that may legitimately take long).
    pub fn stop(&self) {
        // SAFETY: alarm(2) has no preconditions.
        unsafe { libc::alarm(0) };
    }

    /// Resets the trip count without re-arming: progress inside a long operation.
    pub fn pat(&self) {
        TRIP_RUN.store(0, Ordering::SeqCst);
    }

    /// How many alarms in a row went off since the last `start()`/`pat()`.
    pub fn trips(&self) -> u32 {
        TRIP_RUN.load(Ordering::SeqCst)
    }

    /// The wake-up pipe's read end, to register for readability
    /// (`mio::unix::SourceFd(&fd)`). Note that an alarm also makes a pending poll fail with
    /// EINTR (`ErrorKind::Interrupted`), which the loop must treat as a wake-up as well.
    pub fn wake_fd(&self) -> RawFd {
        self.wake_read.as_raw_fd()
    }

    /// Empties the wake-up pipe (it is non-blocking); returns the bytes read.
    pub fn drain(&self) -> usize {
        let mut buf = [0u8; 64];
        let mut total = 0;
        loop {
            match nix::unistd::read(&self.wake_read, &mut buf) {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(Errno::EINTR) => continue,
                Err(_) => return total,
            }
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_step_is_a_third_of_the_timeout() {
        assert_eq!(step_seconds(1000).unwrap(), 333);
        assert_eq!(step_seconds(3).unwrap(), 1);
        assert_eq!(
            step_seconds(2).unwrap_err().to_string(),
            "watchdog_create: timeout 2 is too small"
        );
    }

    /// Runs one test of this binary in a child process with `OQMGR_TEST_CHILD` set.
    fn run_child(test: &str) -> std::process::Output {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env("OQMGR_TEST_CHILD", "1")
            .output()
            .unwrap()
    }

    fn in_child() -> bool {
        std::env::var_os("OQMGR_TEST_CHILD").is_some()
    }

    /// Child: arms a 3 s watchdog and then never calls start() again.
    #[test]
    fn child_stuck_loop() {
        if !in_child() {
            return;
        }
        let dog = Watchdog::create(3).unwrap();
        dog.start();
        println!("ARMED");
        // A "blocking call" that never returns; the watchdog must end the process.
        std::thread::sleep(Duration::from_secs(20));
        println!("STILL-ALIVE");
    }

    #[test]
    fn a_stuck_process_dies_with_watchdog_timeout() {
        let start = Instant::now();
        let out = run_child("master::watchdog::tests::child_stuck_loop");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stdout.contains("ARMED"), "{stdout}");
        assert!(!stdout.contains("STILL-ALIVE"), "{stdout}");
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(stderr.contains("fatal: watchdog timeout"), "{stderr}");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(2900), "{took:?}");
        assert!(took < Duration::from_secs(8), "{took:?}");
    }

    /// Child: an idle loop that waits on the wake-up pipe and calls start() each time round.
    #[test]
    fn child_idle_loop() {
        if !in_child() {
            return;
        }
        let dog = Watchdog::create(3).unwrap();
        let begin = Instant::now();
        let mut wakeups = 0;
        while begin.elapsed() < Duration::from_secs(5) {
            dog.start();
            // Wait far longer than the whole timeout: only the alarm's byte ends the wait.
            // SAFETY: the descriptor is owned by `dog`, which outlives this borrow.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(dog.wake_fd()) };
            let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16));
            if dog.drain() > 0 {
                wakeups += 1;
                assert_eq!(dog.trips(), 1);
            }
        }
        assert!(wakeups >= 3, "{wakeups}");
        // Then a busy loop that keeps calling start(): no alarm ever goes off.
        let begin = Instant::now();
        while begin.elapsed() < Duration::from_millis(1500) {
            dog.start();
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(dog.trips(), 0);
        assert_eq!(dog.drain(), 0);
        println!("SURVIVED {wakeups}");
    }

    #[test]
    fn a_loop_that_goes_round_survives() {
        let out = run_child("master::watchdog::tests::child_idle_loop");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("SURVIVED"), "{stdout}");
        assert!(!stderr.contains("watchdog timeout"), "{stderr}");
    }

    /// Child: what the handler arms when the orderly exit hangs, on its own: nothing else
    /// ends this process, so only the hard kill can.
    #[test]
    fn child_hanging_exit() {
        if !in_child() {
            return;
        }
        arm_hard_kill(1);
        println!("KILL-ARMED");
        std::thread::sleep(Duration::from_secs(10));
        println!("STILL-ALIVE");
    }

    #[test]
    fn the_hard_kill_ends_the_process_with_sigalrm() {
        use std::os::unix::process::ExitStatusExt;
        let start = Instant::now();
        let out = run_child("master::watchdog::tests::child_hanging_exit");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("KILL-ARMED"), "{stdout}");
        assert!(!stdout.contains("STILL-ALIVE"), "{stdout}");
        assert_eq!(out.status.signal(), Some(libc::SIGALRM));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
