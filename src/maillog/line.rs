//! Pure formatting of log lines: severity prefixes, Postfix's `printable()` sanitising, the
//! 2000-byte cap, and the syslog-style line that postlogd receives.

/// Postfix's message severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
    Fatal,
    Panic,
}

impl Severity {
    /// The text put before a non-info message (`warning: ...`).
    pub fn prefix(self) -> &'static str {
        match self {
            Severity::Info => "",
            Severity::Warning => "warning: ",
            Severity::Error => "error: ",
            Severity::Fatal => "fatal: ",
            Severity::Panic => "panic: ",
        }
    }

    /// The syslog priority Postfix uses for it.
    pub fn syslog_priority(self) -> libc::c_int {
        match self {
            Severity::Info => libc::LOG_INFO,
            Severity::Warning => libc::LOG_WARNING,
            Severity::Error => libc::LOG_ERR,
            Severity::Fatal | Severity::Panic => libc::LOG_CRIT,
        }
    }
}

/// At most this many bytes of message text per line (Postfix's record length for both syslog
/// and postlog).
pub const MAX_TEXT: usize = 2000;

/// Postfix's `printable(text, '?')`: printable ASCII stays; with `utf8` (smtputf8_enable), a
/// lead byte 0xC2-0xFE followed by continuation bytes stays; every other byte becomes `?`.
pub fn printable(text: &[u8], utf8: bool) -> Vec<u8> {
    let mut out = Vec::new();
    push_printable(&mut out, text, utf8);
    out
}

/// [`printable`] appended to `out`.
pub fn push_printable(out: &mut Vec<u8>, text: &[u8], utf8: bool) {
    let start = out.len();
    out.extend_from_slice(text);
    let out = out.get_mut(start..).unwrap_or_default();
    let mut i = 0;
    while i < out.len() {
        let ch = out[i];
        if (0x20..0x7f).contains(&ch) {
            i += 1;
        } else if utf8
            && (194..=254).contains(&ch)
            && out.get(i + 1).is_some_and(|b| (128..192).contains(b))
        {
            i += 1;
            while out.get(i).is_some_and(|b| (128..192).contains(b)) {
                i += 1;
            }
        } else {
            out[i] = b'?';
            i += 1;
        }
    }
}

/// The severity prefix plus the sanitised text, capped at [`MAX_TEXT`] bytes of text.
pub fn message(severity: Severity, text: &str, utf8: bool) -> Vec<u8> {
    let mut out = Vec::new();
    push_message(&mut out, severity, text, utf8);
    out
}

/// [`message`] appended to `out`.
pub fn push_message(out: &mut Vec<u8>, severity: Severity, text: &str, utf8: bool) {
    let body = text.as_bytes();
    let body = &body[..body.len().min(MAX_TEXT)];
    out.extend_from_slice(severity.prefix().as_bytes());
    push_printable(out, body, utf8);
}

/// Local time fields for a log time stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// 0 = January.
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Stamp {
    /// `strftime("%b %d %H:%M:%S")` in the C locale (the day is zero-padded, unlike syslogd's).
    pub fn format(&self) -> String {
        let month = MONTHS.get(usize::from(self.month)).unwrap_or(&"???");
        format!(
            "{month} {:02} {:02}:{:02}:{:02}",
            self.day, self.hour, self.minute, self.second
        )
    }
}

/// The datagram postlogd receives: `Mmm dd HH:MM:SS <first label of host> <tag>[<pid>]: <msg>`.
pub fn postlog_datagram(stamp: &Stamp, hostname: &str, tag: &str, pid: u32, msg: &[u8]) -> Vec<u8> {
    let mut out = postlog_prefix(stamp, hostname, tag, pid);
    out.extend_from_slice(msg);
    out
}

/// What comes before the message in [`postlog_datagram`]; the same for every line of a
/// second, so the sink formats it once a second.
pub fn postlog_prefix(stamp: &Stamp, hostname: &str, tag: &str, pid: u32) -> Vec<u8> {
    let host = hostname.split('.').next().unwrap_or("");
    format!("{} {host} {tag}[{pid}]: ", stamp.format()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn postlog_line_matches_the_c_daemons() {
        let stamp = Stamp {
            month: 10,
            day: 5,
            hour: 9,
            minute: 3,
            second: 7,
        };
        let msg = message(Severity::Info, "3F2A11C2B3: removed", true);
        let line = postlog_datagram(&stamp, "lab.localdomain", "postfix/qmgr", 4242, &msg);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "Nov 05 09:03:07 lab postfix/qmgr[4242]: 3F2A11C2B3: removed"
        );
    }

    #[test]
    fn warnings_are_prefixed() {
        assert_eq!(
            message(
                Severity::Warning,
                "connect to transport private/x: No such file",
                true
            ),
            b"warning: connect to transport private/x: No such file"
        );
        assert_eq!(
            message(Severity::Fatal, "watchdog timeout", true),
            b"fatal: watchdog timeout"
        );
    }

    #[test]
    fn unprintable_bytes_become_question_marks() {
        assert_eq!(printable(b"a\tb\x7fc\x01", true), b"a?b?c?");
        assert_eq!(printable("ü@x".as_bytes(), true), "ü@x".as_bytes());
        assert_eq!(printable("ü@x".as_bytes(), false), b"??@x");
        assert_eq!(printable(b"\xc3", true), b"?");
    }

    #[test]
    fn text_is_capped() {
        let long = "x".repeat(3000);
        assert_eq!(message(Severity::Info, &long, true).len(), MAX_TEXT);
    }

    proptest! {
        #[test]
        fn printable_keeps_length_and_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300), utf8 in any::<bool>()) {
            let p = printable(&b, utf8);
            prop_assert_eq!(p.len(), b.len());
            prop_assert!(!p.iter().any(|&c| c < 0x20 || c == 0x7f));
        }
    }
}
