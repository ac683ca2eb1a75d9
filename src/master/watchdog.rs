//! Postfix's watchdog: a process stuck for `qmgr_daemon_timeout` seconds kills itself.
//!
//! As in the C daemon, a loop pass that takes three alarm steps (`timeout / 3` seconds each)
//! is fatal: `fatal: watchdog timeout`, with a hard SIGALRM kill 5 s later should the orderly
//! exit hang; an alarm before that only writes a byte to a self-pipe, so that an idle loop
//! wakes up and goes round. The C trigger server re-arms alarm(2) at the top of every pass
//! (watchdog_start); here [`Watchdog::pass`] only stamps the pass's start time (a vDSO clock
//! read, no system call), and the handler, which fires once per step, compares the clock with
//! that stamp and re-arms the timer for what remains of the pass's three steps. So a stuck pass
//! dies exactly three steps after it began, as in C, without a system call per pass.
//!
//! The SIGALRM handler does only async-signal-safe things: atomics, clock_gettime(2),
//! write(2), setitimer(2), alarm(2), sigaction(2), sigprocmask(2), _exit(2), and the fatal
//! line through
//! [`crate::maillog::emergency`], which formats and sends it without locks or allocation.
//! No thread is involved.
//!
//! There is one watchdog per process (alarm(2) is per process too).

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

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
/// When the current loop pass began (CLOCK_MONOTONIC, milliseconds).
static PASS_START_MS: AtomicU64 = AtomicU64::new(0);
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
        let strerror = crate::maillog::strerror;
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

/// CLOCK_MONOTONIC in milliseconds. Async-signal-safe (and a vDSO call, not a system call,
/// outside the handler).
fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) is async-signal-safe and writes only the timespec on our stack.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let millis = u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000;
    secs.saturating_mul(1000).saturating_add(millis)
}

/// The next SIGALRM in `ms` milliseconds (at least 1: 0 would disarm). Async-signal-safe.
fn arm_ms(ms: u64) {
    let ms = ms.max(1);
    let value = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: libc::time_t::try_from(ms / 1000).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::try_from((ms % 1000) * 1000).unwrap_or(0),
        },
    };
    // SAFETY: setitimer(2) only reads the struct on our stack; on Linux it is a plain system
    // call, safe in a signal handler like alarm(2), whose timer it shares.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &value, std::ptr::null_mut()) };
}

/// The SIGALRM handler: fatal once the current pass has lasted three steps; otherwise wake
/// the loop and come back when the next step, or the pass's deadline, is due.
extern "C" fn on_alarm(_signal: libc::c_int) {
    let _errno = SavedErrno::save();
    let step_ms = u64::from(STEP_SECONDS.load(Ordering::SeqCst)) * 1000;
    let limit_ms = step_ms * u64::from(WATCHDOG_STEPS);
    let elapsed = monotonic_ms().saturating_sub(PASS_START_MS.load(Ordering::SeqCst));
    if elapsed < limit_ms {
        TRIP_RUN.fetch_add(1, Ordering::SeqCst);
        let fd = WAKE_WRITE_FD.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: write(2) is async-signal-safe; the buffer is a static byte and the
            // descriptor stays open for the life of the process. A full pipe (EAGAIN, it is
            // non-blocking) already holds a wake-up, so the result is not needed.
            unsafe {
                libc::write(fd, c"".as_ptr().cast(), 1);
            }
        }
        arm_ms(step_ms.min(limit_ms - elapsed));
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

    /// Starts the watchdog: the first pass begins now, the alarm comes in one step.
    pub fn start(&self) {
        self.pass();
        arm_ms(u64::from(STEP_SECONDS.load(Ordering::SeqCst)) * 1000);
    }

    /// A new loop pass begins (the C trigger server's watchdog_start): it may last three
    /// steps. No system call: the running alarm compares against this stamp.
    pub fn pass(&self) {
        TRIP_RUN.store(0, Ordering::SeqCst);
        PASS_START_MS.store(monotonic_ms(), Ordering::SeqCst);
    }

    /// Disarms the alarm (before a wait that may legitimately take long).
    pub fn stop(&self) {
        // SAFETY: alarm(2) has no preconditions.
        unsafe { libc::alarm(0) };
    }

    /// How many alarms went off since the current pass began.
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
        dog.start();
        while begin.elapsed() < Duration::from_secs(5) {
            dog.pass();
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
        dog.drain();
        while begin.elapsed() < Duration::from_millis(4500) {
            dog.pass();
            std::thread::sleep(Duration::from_millis(100));
        }
        // The alarm still comes once per step and wakes the loop, but a loop that keeps going
        // round is never ended.
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
