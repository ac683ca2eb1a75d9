//! A last word from a signal handler: the watchdog's `fatal: watchdog timeout`, formatted and
//! sent with async-signal-safe calls only (time(2), integer arithmetic, send(2), write(2)).
//! The loop it reports on may be stuck holding the logger's lock or inside malloc, so the
//! ordinary logger cannot be used there; Postfix's C daemon calls msg_fatal from the handler
//! and relies on a hard kill when that hangs, which our watchdog keeps as well.
//!
//! Everything the handler needs is prepared by [`super::init`] in atomics: the descriptor of a
//! connected datagram socket (postlogd's, or our own to `/dev/log` for syslog), the text after
//! the time stamp (` host tag[pid]: ` or ` tag[pid]: `), the syslog priority, the local time's
//! offset from UTC, and whether to copy the line to stderr.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU8, AtomicUsize, Ordering};

use super::line::Stamp;

const CAPACITY: usize = 256;

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU8 = AtomicU8::new(0);
/// The text between the time stamp and `fatal: `.
static PREFIX: [AtomicU8; CAPACITY] = [ZERO; CAPACITY];
static PREFIX_LEN: AtomicUsize = AtomicUsize::new(0);
/// The process name for the stderr copy (`oqmgr: fatal: ...`).
static NAME: [AtomicU8; CAPACITY] = [ZERO; CAPACITY];
static NAME_LEN: AtomicUsize = AtomicUsize::new(0);
/// A connected datagram socket, or -1.
static SOCKET: AtomicI32 = AtomicI32::new(-1);
/// `<PRI>` for syslog lines; -1 for postlogd lines (no priority, zero-padded day).
static SYSLOG_PRI: AtomicI32 = AtomicI32::new(-1);
static UTC_OFFSET: AtomicI64 = AtomicI64::new(0);
static STDERR: AtomicBool = AtomicBool::new(true);

fn store(dst: &[AtomicU8; CAPACITY], len: &AtomicUsize, src: &[u8]) {
    let n = src.len().min(CAPACITY);
    for (slot, &b) in dst.iter().zip(&src[..n]) {
        slot.store(b, Ordering::Relaxed);
    }
    len.store(n, Ordering::Release);
}

/// Where the emergency line goes; called by the logger's (re)initialisation.
pub(super) fn prepare(prefix: &[u8], name: &[u8], socket: i32, syslog_pri: i32, stderr: bool) {
    store(&PREFIX, &PREFIX_LEN, prefix);
    store(&NAME, &NAME_LEN, name);
    SOCKET.store(socket, Ordering::Release);
    SYSLOG_PRI.store(syslog_pri, Ordering::Release);
    STDERR.store(stderr, Ordering::Release);
    UTC_OFFSET.store(local_utc_offset(), Ordering::Release);
}

/// The socket may be replaced when the logger reconnects to postlogd.
pub(super) fn set_socket(socket: i32) {
    SOCKET.store(socket, Ordering::Release);
}

fn local_utc_offset() -> i64 {
    // SAFETY: time(NULL) has no preconditions; localtime_r only writes into `tm` on our stack.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        tm.tm_gmtoff
    }
}

/// The calendar date and time of `secs` since the epoch (proleptic Gregorian), arithmetic only.
pub fn stamp_of(secs: i64) -> Stamp {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days, after Howard Hinnant's public-domain algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 2 } else { mp - 10 };
    Stamp {
        month: month as u8,
        day: day as u8,
        hour: (rem / 3600) as u8,
        minute: (rem / 60 % 60) as u8,
        second: (rem % 60) as u8,
    }
}

/// A fixed buffer filled without allocating.
struct Line {
    buf: [u8; 2 * CAPACITY + 64],
    len: usize,
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    fn push_number(&mut self, n: i64, width: usize, pad: u8) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 || i == 0 {
                break;
            }
        }
        for _ in (digits.len() - i)..width {
            self.push(&[pad]);
        }
        self.push(&digits[i..]);
    }

    fn push_atomic(&mut self, src: &[AtomicU8; CAPACITY], len: &AtomicUsize) {
        let n = len.load(Ordering::Acquire).min(CAPACITY);
        for slot in &src[..n] {
            self.push(&[slot.load(Ordering::Relaxed)]);
        }
    }
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Builds the line the logger would have written for `fatal: <text>`.
fn compose(now: i64, text: &[u8]) -> Line {
    let mut line = Line {
        buf: [0; 2 * CAPACITY + 64],
        len: 0,
    };
    let pri = SYSLOG_PRI.load(Ordering::Acquire);
    let stamp = stamp_of(now + UTC_OFFSET.load(Ordering::Acquire));
    if pri >= 0 {
        line.push(b"<");
        line.push_number(i64::from(pri), 1, b'0');
        line.push(b">");
    }
    line.push(MONTHS[usize::from(stamp.month) % 12]);
    line.push(b" ");
    // syslog(3) pads the day with a space, Postfix's postlog client with a zero.
    line.push_number(i64::from(stamp.day), 2, if pri >= 0 { b' ' } else { b'0' });
    line.push(b" ");
    line.push_number(i64::from(stamp.hour), 2, b'0');
    line.push(b":");
    line.push_number(i64::from(stamp.minute), 2, b'0');
    line.push(b":");
    line.push_number(i64::from(stamp.second), 2, b'0');
    line.push_atomic(&PREFIX, &PREFIX_LEN);
    line.push(b"fatal: ");
    line.push(text);
    line
}

/// Logs `fatal: <text>` from a signal handler. Async-signal-safe.
pub fn fatal(text: &[u8]) {
    // SAFETY: time(2) is async-signal-safe and NULL is allowed.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let line = compose(now, text);
    let fd = SOCKET.load(Ordering::Acquire);
    if fd >= 0 {
        // SAFETY: send(2) is async-signal-safe; the buffer is valid for `len` bytes; a failed
        // send leaves nothing to clean up.
        unsafe {
            libc::send(
                fd,
                line.buf.as_ptr().cast(),
                line.len,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
    }
    if STDERR.load(Ordering::Acquire) || fd < 0 {
        let mut err = Line {
            buf: [0; 2 * CAPACITY + 64],
            len: 0,
        };
        err.push_atomic(&NAME, &NAME_LEN);
        if err.len > 0 {
            err.push(b": ");
        }
        err.push(b"fatal: ");
        err.push(text);
        err.push(b"\n");
        // SAFETY: write(2) is async-signal-safe; the buffer is valid for `len` bytes.
        unsafe { libc::write(2, err.buf.as_ptr().cast(), err.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_arithmetic_agrees_with_known_dates() {
        // 2026-11-29 15:39:07 UTC
        assert_eq!(stamp_of(1_795_966_747).format(), "Nov 29 15:39:07");
        assert_eq!(stamp_of(0).format(), "Jan 01 00:00:00");
        // 2024-02-29 (leap day) 23:59:59
        assert_eq!(stamp_of(1_709_251_199).format(), "Feb 29 23:59:59");
    }

    #[test]
    fn syslog_and_postlog_lines() {
        prepare(b" host postfix/qmgr[42]: ", b"qmgr", -1, -1, false);
        let line = compose(
            1_795_966_747 - UTC_OFFSET.load(Ordering::Acquire),
            b"watchdog timeout",
        );
        assert_eq!(
            &line.buf[..line.len],
            b"Nov 29 15:39:07 host postfix/qmgr[42]: fatal: watchdog timeout"
        );
        prepare(
            b" postfix/qmgr[42]: ",
            b"qmgr",
            -1,
            libc::LOG_MAIL | libc::LOG_CRIT,
            false,
        );
        let line = compose(1_709_251_199 - UTC_OFFSET.load(Ordering::Acquire), b"x");
        assert_eq!(
            &line.buf[..line.len],
            b"<18>Feb 29 23:59:59 postfix/qmgr[42]: fatal: x"
        );
    }
}
