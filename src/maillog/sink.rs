//! Log backends: syslog(3), postlogd datagrams (with Postfix's fallback of appending to
//! maillog_file directly), and stderr for `-V` and foreground debugging.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Mutex;

use super::emergency;
use super::line::{self, Severity, Stamp};

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// syslog(3) with this facility (`LOG_MAIL` for `syslog_facility = mail`).
    Syslog { facility: libc::c_int },
    /// postlogd: datagrams to `socket` (`public/postlog`), lines stamped with `hostname`'s first
    /// label; when the socket cannot be reached, append to `maillog_file` directly.
    Postlog {
        socket: PathBuf,
        hostname: String,
        maillog_file: PathBuf,
    },
    /// Nowhere but stderr (tests, `-S`, foreground runs).
    Stderr,
}

/// syslog facility by its main.cf name (`syslog_facility`).
pub fn facility_by_name(name: &str) -> Option<libc::c_int> {
    let f = match name.to_ascii_lowercase().as_str() {
        "auth" => libc::LOG_AUTH,
        "authpriv" => libc::LOG_AUTHPRIV,
        "cron" => libc::LOG_CRON,
        "daemon" => libc::LOG_DAEMON,
        "ftp" => libc::LOG_FTP,
        "kern" => libc::LOG_KERN,
        "lpr" => libc::LOG_LPR,
        "mail" => libc::LOG_MAIL,
        "news" => libc::LOG_NEWS,
        "syslog" => libc::LOG_SYSLOG,
        "user" => libc::LOG_USER,
        "uucp" => libc::LOG_UUCP,
        "local0" => libc::LOG_LOCAL0,
        "local1" => libc::LOG_LOCAL1,
        "local2" => libc::LOG_LOCAL2,
        "local3" => libc::LOG_LOCAL3,
        "local4" => libc::LOG_LOCAL4,
        "local5" => libc::LOG_LOCAL5,
        "local6" => libc::LOG_LOCAL6,
        "local7" => libc::LOG_LOCAL7,
        _ => return None,
    };
    Some(f)
}

struct State {
    /// `<syslog_name>/<process_name>`.
    tag: String,
    target: LogTarget,
    /// openlog(3) keeps the pointer, so the ident lives here as long as it is in use.
    _syslog_ident: Option<CString>,
    socket: Option<UnixDatagram>,
    also_stderr: bool,
    verbose: bool,
    utf8: bool,
    /// Our pid, read once (every line carries it).
    pid: u32,
    /// Our own connection to /dev/log for the watchdog's signal-safe last word (syslog
    /// target only; libc's syslog socket is not ours to use).
    _emergency_syslog: Option<UnixDatagram>,
    /// postlogd's line prefix (time stamp, host, tag, pid) and the time(2) second it was
    /// formatted for: localtime and formatting once a second, not once a line.
    prefix: Vec<u8>,
    prefix_time: Option<libc::time_t>,
    /// The line being built, kept between lines.
    line: Vec<u8>,
}

thread_local! {
    /// Where a record's arguments are formatted, kept between records.
    static TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

struct Facade;

static FACADE: Facade = Facade;

impl log::Log for Facade {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info || verbose()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let severity = match record.level() {
            log::Level::Error => Severity::Error,
            log::Level::Warn => Severity::Warning,
            _ => Severity::Info,
        };
        match record.args().as_str() {
            Some(text) => emit(severity, text),
            None => TEXT.with(|text| match text.try_borrow_mut() {
                Ok(mut text) => {
                    use std::fmt::Write as _;
                    text.clear();
                    let _ = write!(text, "{}", record.args());
                    emit(severity, &text);
                }
                // A record formatted while another is being logged (a Display that logs).
                Err(_) => emit(severity, &record.args().to_string()),
            }),
        }
        if severity == Severity::Error && count_error() {
            super::fatal(TOO_MANY_ERRORS);
        }
    }

    fn flush(&self) {}
}

/// Postfix's msg_error bound: the 13th `error:` line of a process is followed by this fatal.
const ERROR_BOUND: u32 = 13;
const TOO_MANY_ERRORS: &str = "too many errors - program terminated";
static ERRORS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Counts one `error:` line, as util/msg.c's vmsg_error; true when the bound is reached.
fn count_error() -> bool {
    ERRORS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 >= ERROR_BOUND
}

fn verbose() -> bool {
    STATE
        .lock()
        .map(|s| s.as_ref().is_some_and(|s| s.verbose))
        .unwrap_or(false)
}

/// (Re)initialises logging, as Postfix does twice: once from the environment before main.cf is
/// read, again once the configuration is known. `tag` is `<syslog_name>/<process_name>`.
pub fn init(tag: &str, target: LogTarget, also_stderr: bool, verbose: bool, utf8: bool) {
    let mut syslog_ident = None;
    let mut socket = None;
    match &target {
        LogTarget::Syslog { facility } => {
            if let Ok(ident) = CString::new(tag) {
                // SAFETY: `ident` is a valid C string; it is stored in STATE below and kept
                // alive until the next openlog() replaces it.
                unsafe {
                    libc::openlog(ident.as_ptr(), libc::LOG_PID | libc::LOG_NDELAY, *facility)
                };
                syslog_ident = Some(ident);
            }
        }
        LogTarget::Postlog { socket: path, .. } => socket = connect(path),
        LogTarget::Stderr => {}
    }
    let pid = std::process::id();
    let name = tag.rsplit('/').next().unwrap_or(tag);
    let mut emergency_syslog = None;
    match &target {
        LogTarget::Syslog { facility } => {
            emergency_syslog = UnixDatagram::unbound()
                .ok()
                .filter(|s| s.connect("/dev/log").is_ok());
            let fd = emergency_syslog.as_ref().map_or(-1, |s| s.as_raw_fd());
            emergency::prepare(
                format!(" {tag}[{pid}]: ").as_bytes(),
                name.as_bytes(),
                fd,
                *facility | libc::LOG_CRIT,
                also_stderr,
            );
        }
        LogTarget::Postlog { hostname, .. } => {
            let host = hostname.split('.').next().unwrap_or("");
            let fd = socket.as_ref().map_or(-1, |s| s.as_raw_fd());
            emergency::prepare(
                format!(" {host} {tag}[{pid}]: ").as_bytes(),
                name.as_bytes(),
                fd,
                -1,
                also_stderr,
            );
        }
        LogTarget::Stderr => emergency::prepare(b"", name.as_bytes(), -1, -1, true),
    }
    if let Ok(mut state) = STATE.lock() {
        *state = Some(State {
            tag: tag.to_string(),
            target,
            _syslog_ident: syslog_ident,
            socket,
            also_stderr,
            verbose,
            utf8,
            pid,
            _emergency_syslog: emergency_syslog,
            prefix: Vec::new(),
            prefix_time: None,
            line: Vec::new(),
        });
    }
    if log::set_logger(&FACADE).is_ok() || log::max_level() != log::LevelFilter::Off {
        log::set_max_level(if verbose {
            log::LevelFilter::Trace
        } else {
            log::LevelFilter::Info
        });
    }
}

fn connect(path: &PathBuf) -> Option<UnixDatagram> {
    let sock = UnixDatagram::unbound().ok()?;
    sock.connect(path).ok()?;
    Some(sock)
}

fn now_time() -> libc::time_t {
    // SAFETY: time(NULL) has no preconditions.
    unsafe { libc::time(std::ptr::null_mut()) }
}

fn local_stamp(now: libc::time_t) -> Stamp {
    // SAFETY: localtime_r writes only into `tm`, which lives on our stack, and is thread-safe.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        tm
    };
    let small = |v: libc::c_int| u8::try_from(v).unwrap_or(0);
    Stamp {
        month: small(tm.tm_mon),
        day: small(tm.tm_mday),
        hour: small(tm.tm_hour),
        minute: small(tm.tm_min),
        second: small(tm.tm_sec),
    }
}

/// Sends one message to the configured backend (and stderr with `-V`).
pub fn emit(severity: Severity, text: &str) {
    let Ok(mut guard) = STATE.lock() else {
        return;
    };
    let Some(state) = guard.as_mut() else {
        eprintln!("{}{}", severity.prefix(), text);
        return;
    };
    let mut msg = std::mem::take(&mut state.line);
    msg.clear();
    line::push_message(&mut msg, severity, text, state.utf8);
    emit_message(state, severity, &msg);
    state.line = msg;
}

fn emit_message(state: &mut State, severity: Severity, msg: &[u8]) {
    if state.also_stderr || state.target == LogTarget::Stderr {
        let mut err = std::io::stderr().lock();
        let name = state.tag.rsplit('/').next().unwrap_or(&state.tag);
        let _ = err.write_all(name.as_bytes());
        let _ = err.write_all(b": ");
        let _ = err.write_all(msg);
        let _ = err.write_all(b"\n");
    }
    match &state.target {
        LogTarget::Syslog { facility } => {
            if let Ok(c) = CString::new(msg.to_vec()) {
                // SAFETY: both strings are valid NUL-terminated C strings; "%s" consumes
                // exactly the one argument given.
                unsafe {
                    libc::syslog(
                        *facility | severity.syslog_priority(),
                        c"%s".as_ptr(),
                        c.as_ptr(),
                    )
                };
            }
        }
        LogTarget::Postlog {
            socket,
            hostname,
            maillog_file,
        } => {
            let now = now_time();
            if state.prefix_time != Some(now) {
                state.prefix =
                    line::postlog_prefix(&local_stamp(now), hostname, &state.tag, state.pid);
                state.prefix_time = Some(now);
            }
            let mut datagram = std::mem::take(&mut state.prefix);
            let prefix_len = datagram.len();
            datagram.extend_from_slice(msg);
            // postlogd may have been restarted since we connected: reconnect once.
            let sent = state
                .socket
                .as_ref()
                .is_some_and(|s| s.send(&datagram).is_ok())
                || {
                    // Point the signal-safe path at the new socket before the old one closes.
                    let fresh = connect(socket);
                    emergency::set_socket(fresh.as_ref().map_or(-1, |s| s.as_raw_fd()));
                    state.socket = fresh;
                    state
                        .socket
                        .as_ref()
                        .is_some_and(|s| s.send(&datagram).is_ok())
                };
            if !sent {
                append_line(maillog_file, &datagram);
            }
            datagram.truncate(prefix_len);
            state.prefix = datagram;
        }
        LogTarget::Stderr => {}
    }
}

/// Postfix's fallback when postlogd is unreachable: one append to maillog_file.
fn append_line(path: &PathBuf, datagram: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if let Ok(mut f) = file {
        let mut buf = datagram.to_vec();
        buf.push(b'\n');
        let _ = f.write_all(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thirteenth_error_line_is_fatal_as_in_postfix() {
        // Nothing else in this test binary logs through the error path.
        let before = ERRORS.load(std::sync::atomic::Ordering::SeqCst);
        let calls = (1..=ERROR_BOUND).find(|_| count_error());
        assert_eq!(calls, Some(ERROR_BOUND - before));
    }

    #[test]
    fn facility_names() {
        assert_eq!(facility_by_name("mail"), Some(libc::LOG_MAIL));
        assert_eq!(facility_by_name("LOCAL3"), Some(libc::LOG_LOCAL3));
        assert_eq!(facility_by_name("bogus"), None);
    }
}
