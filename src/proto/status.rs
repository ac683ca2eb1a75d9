//! The status protocol between oqmgrctl(1) and the running queue manager: one request, then
//! the scheduler's live state as a sequence of attribute lists (Postfix's attribute
//! framing, as on every internal socket).
//!
//! ```text
//! client:  {request=status}
//! server:  {kind=summary, ...}  {kind=transport, ...}*  {kind=destination, ...}*  {kind=end}
//! ```
//!
//! The socket is `private/oqmgr-status` under the queue directory: like every `private/`
//! service, only root and the mail_owner can reach it. Readers take attributes by name and
//! ignore ones they do not know, so either side can grow fields.

use super::attr::{AttrList, AttrMessage, AttrWriter};

/// The socket's path, relative to the queue directory.
pub const STATUS_SOCKET: &str = "private/oqmgr-status";

/// The one request.
pub const REQUEST_STATUS: &[u8] = b"status";

/// At most this many destinations are listed (the most troubled first); the summary says
/// how many there are in all.
pub const MAX_DESTINATIONS: usize = 10_000;

/// `{request=status}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRequest;

impl AttrMessage for StatusRequest {
    fn write(&self, w: &mut AttrWriter) {
        w.str("request", REQUEST_STATUS).end();
    }
}

impl StatusRequest {
    /// Whether a received list is a status request.
    pub fn matches(list: &AttrList) -> bool {
        list.get("request") == Some(REQUEST_STATUS)
    }
}

/// The active queue as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The queue manager's process id and when it started (epoch seconds).
    pub pid: u64,
    pub started: u64,
    /// When the snapshot was taken (epoch seconds).
    pub now: u64,
    pub active_messages: u64,
    pub active_recipients: u64,
    /// qmgr_message_active_limit and qmgr_message_recipient_limit.
    pub message_limit: u64,
    pub recipient_limit: u64,
    /// In-flow tokens waiting in master's pipe (-1: unknown).
    pub flow_tokens: i64,
    /// The next periodic scan of deferred/ (epoch seconds, 0: unknown).
    pub next_deferred_scan: u64,
    /// Destinations in memory, of which the first [`MAX_DESTINATIONS`] are listed.
    pub destinations: u64,
}

/// One transport (a master.cf delivery service).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportStatus {
    pub name: Vec<u8>,
    /// Connection attempts in progress.
    pub connecting: u64,
    /// Deliveries in progress over all its destinations.
    pub busy: u64,
    /// Entries waiting over all its destinations.
    pub todo: u64,
    pub dead: bool,
    /// When it comes back (epoch seconds; 0 when alive).
    pub dead_until: u64,
    pub reason: Vec<u8>,
    /// `<transport>_transport_rate_delay` in seconds.
    pub rate_delay: u64,
    /// Destinations in memory (dead ones included).
    pub destinations: u64,
    /// Since the queue manager started: deliveries the agent reported done (status 0),
    /// deferred (any other status), lost to a crash or a malformed reply, and connections
    /// that failed.
    pub deliveries_ok: u64,
    pub deliveries_deferred: u64,
    pub deliveries_crashed: u64,
    pub unavailable: u64,
}

/// One destination queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationStatus {
    pub transport: Vec<u8>,
    pub nexthop: Vec<u8>,
    /// The queue's name (`nexthop`, or `user@nexthop` for per-recipient transports).
    pub queue: Vec<u8>,
    /// The concurrency window: > 0 ready, 0 dead, -1 suspended by a rate delay.
    pub window: i64,
    /// `<transport>_destination_concurrency_limit` (0: no limit).
    pub window_limit: i64,
    pub busy: u64,
    pub todo: u64,
    pub dead: bool,
    /// When it comes back: from the dead, or from a rate-delay suspension (epoch seconds;
    /// 0 otherwise).
    pub dead_until: u64,
    pub reason: Vec<u8>,
}

/// Everything one answer holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub summary: Summary,
    pub transports: Vec<TransportStatus>,
    pub destinations: Vec<DestinationStatus>,
}

fn signed(w: &mut AttrWriter, name: &str, value: i64) {
    // Longs go as decimal text: a sign is written as a string.
    w.str(name, value.to_string().as_bytes());
}

fn flag(value: bool) -> u32 {
    u32::from(value)
}

impl Summary {
    pub fn write(&self, w: &mut AttrWriter) {
        w.str("kind", b"summary")
            .long("pid", self.pid)
            .long("started", self.started)
            .long("now", self.now)
            .long("active_messages", self.active_messages)
            .long("active_recipients", self.active_recipients)
            .long("message_limit", self.message_limit)
            .long("recipient_limit", self.recipient_limit);
        signed(w, "flow_tokens", self.flow_tokens);
        w.long("next_deferred_scan", self.next_deferred_scan)
            .long("destinations", self.destinations)
            .end();
    }
}

impl TransportStatus {
    pub fn write(&self, w: &mut AttrWriter) {
        w.str("kind", b"transport")
            .str("name", &self.name)
            .long("connecting", self.connecting)
            .long("busy", self.busy)
            .long("todo", self.todo)
            .int("dead", flag(self.dead))
            .long("dead_until", self.dead_until)
            .str("reason", &self.reason)
            .long("rate_delay", self.rate_delay)
            .long("destinations", self.destinations)
            .long("deliveries_ok", self.deliveries_ok)
            .long("deliveries_deferred", self.deliveries_deferred)
            .long("deliveries_crashed", self.deliveries_crashed)
            .long("unavailable", self.unavailable)
            .end();
    }
}

impl DestinationStatus {
    pub fn write(&self, w: &mut AttrWriter) {
        w.str("kind", b"destination")
            .str("transport", &self.transport)
            .str("nexthop", &self.nexthop)
            .str("queue", &self.queue);
        signed(w, "window", self.window);
        signed(w, "window_limit", self.window_limit);
        w.long("busy", self.busy)
            .long("todo", self.todo)
            .int("dead", flag(self.dead))
            .long("dead_until", self.dead_until)
            .str("reason", &self.reason)
            .end();
    }
}

/// The closing list.
pub fn write_end(w: &mut AttrWriter) {
    w.str("kind", b"end").end();
}

/// How an answer ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// A list of a kind the reader does not know where one is required, or bad numbers.
    Malformed(String),
    /// The stream ended before `{kind=end}`.
    Truncated,
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Malformed(what) => write!(f, "malformed status answer: {what}"),
            SnapshotError::Truncated => write!(f, "status answer ended early"),
        }
    }
}

/// A number attribute (absent: 0).
fn parsed<T: std::str::FromStr + Default>(list: &AttrList, name: &str) -> Result<T, SnapshotError> {
    let Some(v) = list.get(name) else {
        return Ok(T::default());
    };
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| SnapshotError::Malformed(format!("{name}={}", String::from_utf8_lossy(v))))
}

fn num(list: &AttrList, name: &str) -> Result<u64, SnapshotError> {
    parsed(list, name)
}

fn snum(list: &AttrList, name: &str) -> Result<i64, SnapshotError> {
    parsed(list, name)
}

fn text(list: &AttrList, name: &str) -> Vec<u8> {
    list.get(name).unwrap_or_default().to_vec()
}

/// Builds a snapshot from the lists of one answer (unknown attributes and kinds are
/// skipped, missing numbers read as 0). `Ok(None)`: more lists are needed.
#[derive(Debug, Default)]
pub struct SnapshotReader {
    snapshot: Snapshot,
    done: bool,
}

impl SnapshotReader {
    /// Takes the next list; `Ok(true)` once `{kind=end}` arrived.
    pub fn push(&mut self, list: &AttrList) -> Result<bool, SnapshotError> {
        match list.get("kind") {
            Some(b"summary") => {
                self.snapshot.summary = Summary {
                    pid: num(list, "pid")?,
                    started: num(list, "started")?,
                    now: num(list, "now")?,
                    active_messages: num(list, "active_messages")?,
                    active_recipients: num(list, "active_recipients")?,
                    message_limit: num(list, "message_limit")?,
                    recipient_limit: num(list, "recipient_limit")?,
                    flow_tokens: snum(list, "flow_tokens")?,
                    next_deferred_scan: num(list, "next_deferred_scan")?,
                    destinations: num(list, "destinations")?,
                }
            }
            Some(b"transport") => self.snapshot.transports.push(TransportStatus {
                name: text(list, "name"),
                connecting: num(list, "connecting")?,
                busy: num(list, "busy")?,
                todo: num(list, "todo")?,
                dead: num(list, "dead")? != 0,
                dead_until: num(list, "dead_until")?,
                reason: text(list, "reason"),
                rate_delay: num(list, "rate_delay")?,
                destinations: num(list, "destinations")?,
                deliveries_ok: num(list, "deliveries_ok")?,
                deliveries_deferred: num(list, "deliveries_deferred")?,
                deliveries_crashed: num(list, "deliveries_crashed")?,
                unavailable: num(list, "unavailable")?,
            }),
            Some(b"destination") => self.snapshot.destinations.push(DestinationStatus {
                transport: text(list, "transport"),
                nexthop: text(list, "nexthop"),
                queue: text(list, "queue"),
                window: snum(list, "window")?,
                window_limit: snum(list, "window_limit")?,
                busy: num(list, "busy")?,
                todo: num(list, "todo")?,
                dead: num(list, "dead")? != 0,
                dead_until: num(list, "dead_until")?,
                reason: text(list, "reason"),
            }),
            Some(b"end") => self.done = true,
            Some(_) => {}
            None => return Err(SnapshotError::Malformed("a list without a kind".into())),
        }
        Ok(self.done)
    }

    /// The snapshot, once complete.
    pub fn finish(self) -> Result<Snapshot, SnapshotError> {
        if self.done {
            Ok(self.snapshot)
        } else {
            Err(SnapshotError::Truncated)
        }
    }
}

impl Snapshot {
    /// The whole answer in wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = AttrWriter::new();
        self.summary.write(&mut w);
        for t in &self.transports {
            t.write(&mut w);
        }
        for d in &self.destinations {
            d.write(&mut w);
        }
        write_end(&mut w);
        w.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::attr::AttrDecoder;

    fn sample() -> Snapshot {
        Snapshot {
            summary: Summary {
                pid: 4242,
                started: 1_700_000_000,
                now: 1_700_000_100,
                active_messages: 3,
                active_recipients: 5,
                message_limit: 20000,
                recipient_limit: 20000,
                flow_tokens: -1,
                next_deferred_scan: 1_700_000_300,
                destinations: 2,
            },
            transports: vec![TransportStatus {
                name: b"smtp".to_vec(),
                busy: 1,
                todo: 2,
                deliveries_ok: 7,
                ..TransportStatus::default()
            }],
            destinations: vec![
                DestinationStatus {
                    transport: b"smtp".to_vec(),
                    nexthop: b"dead.lab".to_vec(),
                    queue: b"dead.lab".to_vec(),
                    window: 0,
                    window_limit: 20,
                    dead: true,
                    dead_until: 1_700_000_400,
                    reason: b"delivery temporarily suspended: connect to dead.lab[127.0.0.1]:25: Connection refused".to_vec(),
                    ..DestinationStatus::default()
                },
                DestinationStatus {
                    transport: b"smtp".to_vec(),
                    nexthop: b"slow.lab".to_vec(),
                    queue: b"slow.lab".to_vec(),
                    window: -1,
                    window_limit: 0,
                    busy: 1,
                    todo: 2,
                    ..DestinationStatus::default()
                },
            ],
        }
    }

    #[test]
    fn a_snapshot_round_trips_through_the_attribute_framing() {
        let s = sample();
        let bytes = s.to_bytes();
        let lists = AttrDecoder::default().feed(&bytes).unwrap();
        let mut reader = SnapshotReader::default();
        let mut done = false;
        for list in &lists {
            done = reader.push(list).unwrap();
        }
        assert!(done);
        assert_eq!(reader.finish().unwrap(), s);
    }

    #[test]
    fn an_answer_cut_short_is_an_error_and_unknown_kinds_are_skipped() {
        let bytes = sample().to_bytes();
        let lists = AttrDecoder::default().feed(&bytes).unwrap();
        let mut reader = SnapshotReader::default();
        reader
            .push(&AttrList::from_pairs(&[("kind", "future"), ("x", "1")]))
            .unwrap();
        for list in &lists[..2] {
            assert!(!reader.push(list).unwrap());
        }
        assert_eq!(reader.finish(), Err(SnapshotError::Truncated));
    }

    #[test]
    fn the_request_is_recognised() {
        let bytes = StatusRequest.to_bytes();
        assert_eq!(bytes, b"request\0status\0\0");
        let list = AttrDecoder::default().feed(&bytes).unwrap().remove(0);
        assert!(StatusRequest::matches(&list));
    }
}
