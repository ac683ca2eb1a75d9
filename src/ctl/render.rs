//! `oqmgrctl status`: the snapshot as a table for people, like qshape's.
//!
//! Times are local (`YYYY-MM-DD HH:MM:SS`) with their distance from the snapshot's own `now`
//! ("in 4m12s"), so a clock skew between this host's reader and the daemon does not show.
//! Names and reasons come from mail (next hops, remote servers' replies): control characters
//! are shown as `?` so that they cannot drive the terminal.

use std::fmt::Write as _;

use crate::proto::status::{DestinationStatus, Snapshot, TransportStatus};

/// `epoch` as local time, `YYYY-MM-DD HH:MM:SS` (localtime_r, so TZ applies).
pub fn local_time(epoch: u64) -> String {
    let Ok(time) = libc::time_t::try_from(epoch) else {
        return epoch.to_string();
    };
    // SAFETY: an all-zero `struct tm` is a valid value (plain integers and, on glibc, a null
    // tm_zone pointer); localtime_r only writes into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live, properly aligned locals for the whole call;
    // localtime_r is the reentrant variant and keeps neither pointer.
    let converted = unsafe { libc::localtime_r(&time, &mut tm) };
    if converted.is_null() {
        return epoch.to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// A length of time as `45s`, `4m12s`, `2h05m00s`, `3d04h00m00s`.
pub fn duration(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (hours, rest) = (rest / 3600, rest % 3600);
    let (minutes, seconds) = (rest / 60, rest % 60);
    if days > 0 {
        format!("{days}d{hours:02}h{minutes:02}m{seconds:02}s")
    } else if hours > 0 {
        format!("{hours}h{minutes:02}m{seconds:02}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

/// `when` seen from `now`: `in 4m12s`, `4m12s ago`, or `now`.
pub fn relative(when: u64, now: u64) -> String {
    match when.cmp(&now) {
        std::cmp::Ordering::Greater => format!("in {}", duration(when - now)),
        std::cmp::Ordering::Less => format!("{} ago", duration(now - when)),
        std::cmp::Ordering::Equal => "now".to_string(),
    }
}

/// A time column: `-` for 0 (none), else local time and distance.
fn moment(when: u64, now: u64, local: &dyn Fn(u64) -> String) -> String {
    if when == 0 {
        "-".to_string()
    } else {
        format!("{} ({})", local(when), relative(when, now))
    }
}

/// Bytes from the wire as text that is safe on a terminal.
pub fn clean(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Left-aligned text columns, right-aligned numbers; the last column is not padded, so a
/// long reason does not widen the others.
struct Table {
    headers: Vec<&'static str>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, bool)]) -> Table {
        Table {
            headers: columns.iter().map(|(name, _)| *name).collect(),
            numeric: columns.iter().map(|(_, numeric)| *numeric).collect(),
            rows: Vec::new(),
        }
    }

    fn render(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            let last = row.len().saturating_sub(1);
            for (i, cell) in row.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                let numeric = self.numeric.get(i).copied().unwrap_or(false);
                if i > 0 {
                    line.push_str("  ");
                }
                if numeric {
                    let _ = write!(line, "{cell:>width$}");
                } else if i == last {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

fn transport_row(t: &TransportStatus, now: u64, local: &dyn Fn(u64) -> String) -> Vec<String> {
    vec![
        clean(&t.name),
        t.connecting.to_string(),
        t.busy.to_string(),
        t.todo.to_string(),
        if t.dead { "dead" } else { "alive" }.to_string(),
        moment(t.dead_until, now, local),
        if t.rate_delay == 0 {
            "-".to_string()
        } else {
            duration(t.rate_delay)
        },
        t.destinations.to_string(),
        t.deliveries_ok.to_string(),
        t.deliveries_deferred.to_string(),
        t.deliveries_crashed.to_string(),
        t.unavailable.to_string(),
        clean(&t.reason),
    ]
}

/// The destination's state word: dead, suspended (by a rate delay) or alive.
pub fn destination_state(d: &DestinationStatus) -> &'static str {
    if d.dead {
        "dead"
    } else if d.window < 0 {
        "suspended"
    } else {
        "alive"
    }
}

fn destination_row(
    d: &DestinationStatus,
    show_queue: bool,
    now: u64,
    local: &dyn Fn(u64) -> String,
) -> Vec<String> {
    let window = if d.window < 0 {
        "-".to_string()
    } else {
        d.window.to_string()
    };
    let mut row = vec![clean(&d.transport), clean(&d.nexthop)];
    if show_queue {
        row.push(clean(&d.queue));
    }
    row.extend([
        format!("{window}/{}", d.window_limit),
        d.busy.to_string(),
        d.todo.to_string(),
        destination_state(d).to_string(),
        moment(d.dead_until, now, local),
        clean(&d.reason),
    ]);
    row
}

/// The whole table. `local` turns epoch seconds into local time ([`local_time`]; tests
/// pass a fixed one).
pub fn table(s: &Snapshot, local: &dyn Fn(u64) -> String) -> String {
    let sum = &s.summary;
    let now = sum.now;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "queue manager: pid {}, started {}, snapshot at {}",
        sum.pid,
        moment(sum.started, now, local),
        local(now)
    );
    let _ = writeln!(
        out,
        "active queue: {} of {} messages, {} of {} recipients",
        sum.active_messages, sum.message_limit, sum.active_recipients, sum.recipient_limit
    );
    let tokens = if sum.flow_tokens < 0 {
        "unknown".to_string()
    } else {
        sum.flow_tokens.to_string()
    };
    let _ = writeln!(out, "in-flow tokens: {tokens}");
    let scan = if sum.next_deferred_scan == 0 {
        "unknown".to_string()
    } else {
        moment(sum.next_deferred_scan, now, local)
    };
    let _ = writeln!(out, "next deferred scan: {scan}");

    out.push_str("\nTRANSPORTS\n");
    if s.transports.is_empty() {
        out.push_str("(none)\n");
    } else {
        let mut table = Table::new(&[
            ("TRANSPORT", false),
            ("CONNECTING", true),
            ("BUSY", true),
            ("TODO", true),
            ("STATE", false),
            ("UNTIL", false),
            ("RATE DELAY", true),
            ("DESTS", true),
            ("OK", true),
            ("DEFERRED", true),
            ("CRASHED", true),
            ("UNAVAILABLE", true),
            ("REASON", false),
        ]);
        table.rows = s
            .transports
            .iter()
            .map(|t| transport_row(t, now, local))
            .collect();
        table.render(&mut out);
    }

    let listed = s.destinations.len() as u64;
    if sum.destinations > listed {
        let _ = writeln!(
            out,
            "\nDESTINATIONS (showing {listed} of {})",
            sum.destinations
        );
    } else {
        out.push_str("\nDESTINATIONS\n");
    }
    if s.destinations.is_empty() {
        out.push_str("(none)\n");
        return out;
    }
    // The queue name differs from the next hop only for per-recipient queues
    // (`user@nexthop`); its column appears only then.
    let show_queue = s.destinations.iter().any(|d| d.queue != d.nexthop);
    let mut columns = vec![("TRANSPORT", false), ("NEXTHOP", false)];
    if show_queue {
        columns.push(("QUEUE", false));
    }
    columns.extend([
        ("WINDOW", true),
        ("BUSY", true),
        ("TODO", true),
        ("STATE", false),
        ("UNTIL", false),
        ("REASON", false),
    ]);
    let mut table = Table::new(&columns);
    table.rows = s
        .destinations
        .iter()
        .map(|d| destination_row(d, show_queue, now, local))
        .collect();
    table.render(&mut out);
    out
}
