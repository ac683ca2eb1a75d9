//! What the scheduler learned about transports and destinations, carried across a restart
//! (`oqmgr_remember_destinations`): dead transports and destinations with their revival time
//! and reason, rate-delay suspensions, and the concurrency windows of live destinations.
//!
//! [`Scheduler::export_memory`] and [`Scheduler::import_memory`] are pure; [`encode`] and
//! [`decode`] give the state file's form: Postfix's attribute framing ([`crate::proto::attr`]),
//! a header list `{kind=header, format=oqmgr-memory, version=1, saved=<epoch>}`, one list
//! per item, and `{kind=end}` last, so that a cut-off file is detected.

use std::collections::HashMap;

use crate::proto::attr::{AttrDecoder, AttrList, AttrWriter, DecodeLimits};
use crate::proto::dsn::Dsn;

use super::feedback::WindowState;
use super::*;

/// The file format's name in its header.
pub const FORMAT: &[u8] = b"oqmgr-memory";
/// The file format's version; another version is ignored with a warning.
pub const VERSION: u64 = 1;
/// At most this many items are read from a file (a larger one is refused).
pub const MAX_ITEMS: usize = 100_000;
/// At most this many window hints wait for their destination to come back.
pub const MAX_WINDOW_HINTS: usize = 10_000;

/// One remembered fact.
#[derive(Debug, Clone, PartialEq)]
pub enum MemoryItem {
    /// A transport whose agent could not be reached, dead until `until`.
    DeadTransport {
        transport: Vec<u8>,
        until: u64,
        status: Vec<u8>,
        reason: Vec<u8>,
    },
    /// A destination that failed a whole cohort, dead until `until`.
    DeadDestination {
        transport: Vec<u8>,
        queue: Vec<u8>,
        nexthop: Vec<u8>,
        until: u64,
        status: Vec<u8>,
        reason: Vec<u8>,
    },
    /// A rate-delayed destination, suspended until `until`.
    SuspendedDestination {
        transport: Vec<u8>,
        queue: Vec<u8>,
        nexthop: Vec<u8>,
        until: u64,
    },
    /// The concurrency window of a live destination.
    Window {
        transport: Vec<u8>,
        queue: Vec<u8>,
        nexthop: Vec<u8>,
        state: WindowState,
    },
}

/// Everything remembered, as of `saved` (seconds since the epoch).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    pub saved: u64,
    pub items: Vec<MemoryItem>,
}

/// Window states waiting for their destination's queue to be created again; forgotten
/// together minimal_backoff_time after the import ([`Timer::ForgetWindowHints`]).
#[derive(Debug, Default)]
pub(super) struct WindowHints {
    pub(super) by_queue: HashMap<(Vec<u8>, Vec<u8>), WindowState>,
}

/// The transports whose windows and deaths say nothing about a destination.
fn internal(transport: &[u8]) -> bool {
    transport == SERVICE_RETRY || transport == SERVICE_ERROR
}

impl Scheduler {
    /// What is worth remembering at `now`: what has not expired yet.
    pub fn export_memory(&self, now: u64) -> Memory {
        let mut items = Vec::new();
        for x in self
            .transport_order
            .iter()
            .filter_map(|t| self.transports.get(t.0))
        {
            if let (true, Some(dsn)) = (x.dead, &x.dsn) {
                if x.wake_at > now {
                    items.push(MemoryItem::DeadTransport {
                        transport: x.name.clone(),
                        until: x.wake_at,
                        status: dsn.status.clone(),
                        reason: dsn.reason.clone(),
                    });
                }
            }
            if internal(&x.name) {
                continue;
            }
            for queue in x.queues.iter().filter_map(|q| self.queues.get(q.0)) {
                let (transport, name, nexthop) =
                    (x.name.clone(), queue.name.clone(), queue.nexthop.clone());
                if queue.dead() {
                    if let Some(dsn) = queue.dsn.as_ref().filter(|_| queue.wake_at > now) {
                        items.push(MemoryItem::DeadDestination {
                            transport,
                            queue: name,
                            nexthop,
                            until: queue.wake_at,
                            status: dsn.status.clone(),
                            reason: dsn.reason.clone(),
                        });
                    }
                } else if queue.state.window == SUSPENDED {
                    if queue.wake_at > now {
                        items.push(MemoryItem::SuspendedDestination {
                            transport,
                            queue: name,
                            nexthop,
                            until: queue.wake_at,
                        });
                    }
                } else {
                    items.push(MemoryItem::Window {
                        transport,
                        queue: name,
                        nexthop,
                        state: queue.state,
                    });
                }
            }
        }
        Memory { saved: now, items }
    }

    /// Takes up what an earlier queue manager remembered; what has expired by `now` is
    /// dropped. Dead transports and destinations stay dead until their remembered time, as
    /// if this process had seen them fail (their mail goes behind `retry`); suspended
    /// destinations resume at their remembered time; windows are applied when their
    /// destination's queue is next created, for minimal_backoff_time.
    pub fn import_memory(&mut self, now: u64, memory: Memory) {
        for item in memory.items {
            // The C daemon's bound on cached dead destinations (qmgr_entry_done).
            let room = self.queues.len() < 2 * self.cfg.recipient_limit.max(1);
            match item {
                MemoryItem::DeadTransport {
                    transport,
                    until,
                    status,
                    reason,
                } if until > now => self.remember_dead_transport(&transport, until, status, reason),
                MemoryItem::DeadDestination {
                    transport,
                    queue,
                    nexthop,
                    until,
                    status,
                    reason,
                } if until > now && room && !internal(&transport) => {
                    let dsn = Dsn {
                        status,
                        reason,
                        ..Dsn::default()
                    };
                    self.remember_dead_queue(&transport, &queue, &nexthop, until, dsn);
                }
                MemoryItem::SuspendedDestination {
                    transport,
                    queue,
                    nexthop,
                    until,
                } if until > now && room && !internal(&transport) => {
                    self.remember_suspended_queue(&transport, &queue, &nexthop, until);
                }
                MemoryItem::Window {
                    transport,
                    queue,
                    state,
                    ..
                } if state.window > 0 && !internal(&transport) => {
                    let hints = &mut self.window_hints.by_queue;
                    if hints.len() < MAX_WINDOW_HINTS {
                        hints.insert((transport, queue), state);
                    }
                }
                _ => {}
            }
        }
        if !self.window_hints.by_queue.is_empty() {
            self.deadlines
                .arm(now + self.cfg.min_backoff, Timer::ForgetWindowHints);
        }
    }

    fn remember_dead_transport(
        &mut self,
        name: &[u8],
        until: u64,
        status: Vec<u8>,
        reason: Vec<u8>,
    ) {
        let t = self.transport_find_or_create(name);
        let dsn = Dsn {
            status,
            reason,
            ..Dsn::default()
        };
        self.transport_dead_until(t, dsn, until);
    }

    fn remember_dead_queue(
        &mut self,
        transport: &[u8],
        name: &[u8],
        nexthop: &[u8],
        until: u64,
        dsn: Dsn,
    ) {
        let t = self.transport_find_or_create(transport);
        let q = self.queue_find_or_create(t, name, nexthop);
        let Some(queue) = self.queues.get_mut(q.0) else {
            return;
        };
        if !queue.ready() || !queue.empty() {
            return;
        }
        self.queue_dead_until(q, dsn, until);
    }

    fn remember_suspended_queue(
        &mut self,
        transport: &[u8],
        name: &[u8],
        nexthop: &[u8],
        until: u64,
    ) {
        let t = self.transport_find_or_create(transport);
        let q = self.queue_find_or_create(t, name, nexthop);
        let Some(queue) = self.queues.get_mut(q.0) else {
            return;
        };
        if !queue.ready() || !queue.empty() {
            return;
        }
        self.queue_suspend_until(q, until);
    }

    /// A new queue starts at its remembered window (within the transport's limit), once.
    pub(super) fn apply_window_hint(&mut self, q: DestRef) {
        // Nothing to copy on the common path: no memory was imported, or it is used up.
        if self.window_hints.by_queue.is_empty() {
            return;
        }
        let Some(queue) = self.queues.get(q.0) else {
            return;
        };
        let Some(transport) = self.transports.get(queue.transport.0) else {
            return;
        };
        let key = (transport.name.clone(), queue.name.clone());
        let Some(mut state) = self.window_hints.by_queue.remove(&key) else {
            return;
        };
        let limit = self
            .transports
            .get(queue.transport.0)
            .map_or(0, |x| x.limits.dest_concurrency_limit);
        if limit > 0 {
            state.window = state.window.min(limit);
        }
        state.window = state.window.max(1);
        if let Some(queue) = self.queues.get_mut(q.0) {
            queue.state = state;
        }
    }
}

/// The state file's bytes.
pub fn encode(memory: &Memory) -> Vec<u8> {
    let mut w = AttrWriter::new();
    w.str("kind", b"header")
        .str("format", FORMAT)
        .long("version", VERSION)
        .long("saved", memory.saved)
        .end();
    for item in &memory.items {
        match item {
            MemoryItem::DeadTransport {
                transport,
                until,
                status,
                reason,
            } => w
                .str("kind", b"dead_transport")
                .str("transport", transport)
                .long("until", *until)
                .str("status", status)
                .str("reason", reason),
            MemoryItem::DeadDestination {
                transport,
                queue,
                nexthop,
                until,
                status,
                reason,
            } => w
                .str("kind", b"dead_destination")
                .str("transport", transport)
                .str("queue", queue)
                .str("nexthop", nexthop)
                .long("until", *until)
                .str("status", status)
                .str("reason", reason),
            MemoryItem::SuspendedDestination {
                transport,
                queue,
                nexthop,
                until,
            } => w
                .str("kind", b"suspended_destination")
                .str("transport", transport)
                .str("queue", queue)
                .str("nexthop", nexthop)
                .long("until", *until),
            MemoryItem::Window {
                transport,
                queue,
                nexthop,
                state,
            } => w
                .str("kind", b"window")
                .str("transport", transport)
                .str("queue", queue)
                .str("nexthop", nexthop)
                .str("window", state.window.to_string().as_bytes())
                .str("success", state.success.to_string().as_bytes())
                .str("failure", state.failure.to_string().as_bytes())
                .str("fail_cohorts", state.fail_cohorts.to_string().as_bytes()),
        };
        w.end();
    }
    w.str("kind", b"end").end();
    w.into_bytes()
}

fn field<'a>(list: &'a AttrList, name: &str) -> Result<&'a [u8], String> {
    list.get(name)
        .ok_or_else(|| format!("missing attribute {name}"))
}

fn number<T: std::str::FromStr>(list: &AttrList, name: &str) -> Result<T, String> {
    let value = field(list, name)?;
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "malformed {name} value: {}",
                String::from_utf8_lossy(value.get(..100).unwrap_or(value))
            )
        })
}

fn real(list: &AttrList, name: &str) -> Result<f64, String> {
    let value: f64 = number(list, name)?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("malformed {name} value: {value}"))
    }
}

fn item(list: &AttrList) -> Result<MemoryItem, String> {
    let text = |name| field(list, name).map(<[u8]>::to_vec);
    let kind = field(list, "kind")?;
    Ok(match kind {
        b"dead_transport" => MemoryItem::DeadTransport {
            transport: text("transport")?,
            until: number(list, "until")?,
            status: text("status")?,
            reason: text("reason")?,
        },
        b"dead_destination" => MemoryItem::DeadDestination {
            transport: text("transport")?,
            queue: text("queue")?,
            nexthop: text("nexthop")?,
            until: number(list, "until")?,
            status: text("status")?,
            reason: text("reason")?,
        },
        b"suspended_destination" => MemoryItem::SuspendedDestination {
            transport: text("transport")?,
            queue: text("queue")?,
            nexthop: text("nexthop")?,
            until: number(list, "until")?,
        },
        b"window" => MemoryItem::Window {
            transport: text("transport")?,
            queue: text("queue")?,
            nexthop: text("nexthop")?,
            state: WindowState {
                window: number(list, "window")?,
                success: real(list, "success")?,
                failure: real(list, "failure")?,
                fail_cohorts: real(list, "fail_cohorts")?,
            },
        },
        other => {
            return Err(format!(
                "unknown item kind {}",
                String::from_utf8_lossy(other.get(..100).unwrap_or(other))
            ))
        }
    })
}

/// Reads a state file's bytes. `Err` says why the whole file is unusable (truncated, another
/// format or version, a malformed item, more than [`MAX_ITEMS`] items).
pub fn decode(bytes: &[u8]) -> Result<Memory, String> {
    let mut decoder = AttrDecoder::new(DecodeLimits {
        max_attr_bytes: 64 << 10,
        max_list_bytes: 256 << 10,
        max_attrs: 16,
    });
    let mut rest = bytes;
    let mut next_list = || -> Result<Option<AttrList>, String> {
        while !rest.is_empty() {
            let (used, list) = decoder.push(rest).map_err(|e| e.warning("file"))?;
            rest = rest.get(used..).unwrap_or_default();
            if list.is_some() {
                return Ok(list);
            }
        }
        decoder
            .finish()
            .map_err(|_| "file is truncated".to_string())?;
        Ok(None)
    };
    let header = next_list()?.ok_or_else(|| "file is empty".to_string())?;
    if header.get("kind") != Some(b"header") || header.get("format") != Some(FORMAT) {
        return Err("not an oqmgr-memory file".into());
    }
    let version: u64 = number(&header, "version")?;
    if version != VERSION {
        return Err(format!("unsupported version {version}"));
    }
    let mut memory = Memory {
        saved: number(&header, "saved")?,
        items: Vec::new(),
    };
    loop {
        let Some(list) = next_list()? else {
            return Err("file is truncated".into());
        };
        if list.get("kind") == Some(b"end") {
            break;
        }
        if memory.items.len() >= MAX_ITEMS {
            return Err(format!("more than {MAX_ITEMS} items"));
        }
        memory.items.push(item(&list)?);
    }
    if next_list()?.is_some() {
        return Err("data after the end".into());
    }
    Ok(memory)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{limits_with, route_to};
    use super::*;
    use crate::proto::deliver::DeliveryReply;
    use crate::proto::msg_stats::Timeval;
    use crate::queue::envelope::Envelope;

    const REFUSED: &[u8] = b"delivery temporarily suspended: connect to d.lab: Connection refused";

    fn sched() -> Scheduler {
        Scheduler::new(SchedConfig::default(), limits_with(1, 20, 50))
    }

    fn add(s: &mut Scheduler, now: u64, id: &str, nexthop: &str) -> MessageRef {
        let (m, _) = s.add_message(id.into(), Envelope::default(), Timeval::default(), 0);
        s.assign(
            now,
            m,
            vec![route_to("smtp", nexthop, &format!("x@{nexthop}"))],
        );
        m
    }

    fn connects(s: &mut Scheduler) -> Vec<(String, TransportRef)> {
        s.drain();
        s.take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Connect { name, transport } => {
                    Some((String::from_utf8_lossy(&name).into_owned(), transport))
                }
                _ => None,
            })
            .collect()
    }

    /// A scheduler that saw d.lab refuse at `now` (dead until now + 300).
    fn with_dead_destination(now: u64) -> Scheduler {
        let mut s = sched();
        add(&mut s, now, "A1", "d.lab");
        let t = connects(&mut s)[0].1;
        let (e, _) = s.agent_ready(now, t).unwrap();
        let mut reply = DeliveryReply {
            status: 4,
            ..DeliveryReply::default()
        };
        reply.hop_status.status = b"4.4.1".to_vec();
        reply.hop_status.reason = b"connect to d.lab: Connection refused".to_vec();
        s.agent_reply(now, e, Some(&reply));
        s.take_actions();
        s
    }

    fn round_trip(memory: &Memory) -> Memory {
        decode(&encode(memory)).unwrap()
    }

    #[test]
    fn a_remembered_dead_destination_waits_for_its_revival_time() {
        let old = with_dead_destination(1000);
        let memory = round_trip(&old.export_memory(1100));
        assert_eq!(memory.saved, 1100);
        let mut s = sched();
        s.import_memory(1100, memory);
        s.check_invariants().unwrap();
        assert_eq!(s.poll_timeout(), Some(1300), "the remembered revival time");
        let st = s.queue_status(b"smtp", b"d.lab").unwrap();
        assert_eq!((st.window, st.dead_reason.as_deref()), (0, Some(REFUSED)));
        // New mail goes behind retry with the remembered reason; smtp is not tried.
        add(&mut s, 1200, "B1", "d.lab");
        s.check_invariants().unwrap();
        let c = connects(&mut s);
        assert_eq!(
            c.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["retry"]
        );
        let (e, r) = s.agent_ready(1200, c[0].1).unwrap();
        let mut nexthop = b"4.4.1 ".to_vec();
        nexthop.extend_from_slice(REFUSED);
        assert_eq!(r.nexthop, nexthop);
        s.agent_reply(1200, e, Some(&DeliveryReply::default()));
        s.take_actions();
        s.handle_timeout(1299);
        add(&mut s, 1299, "B2", "d.lab");
        let c = connects(&mut s);
        assert!(c.iter().all(|(n, _)| n == "retry"), "{c:?}");
        s.check_invariants().unwrap();
        // At the revival time it is tried again.
        s.handle_timeout(1300);
        s.check_invariants().unwrap();
        add(&mut s, 1300, "B3", "d.lab");
        let c = connects(&mut s);
        assert!(c.iter().any(|(n, _)| n == "smtp"), "{c:?}");
        s.check_invariants().unwrap();
    }

    #[test]
    fn expired_entries_are_ignored() {
        let old = with_dead_destination(1000);
        let memory = round_trip(&old.export_memory(1100));
        let mut s = sched();
        s.import_memory(1300, memory);
        s.check_invariants().unwrap();
        assert_eq!(s.queue_count(), 0);
        assert_eq!(s.poll_timeout(), None);
        add(&mut s, 1300, "B1", "d.lab");
        assert_eq!(connects(&mut s)[0].0, "smtp");
        // Exporting drops what has expired, too.
        assert!(old.export_memory(1300).items.is_empty());
    }

    #[test]
    fn dead_transports_suspensions_and_windows_survive_a_round_trip() {
        let state = WindowState {
            window: 7,
            success: 0.25,
            failure: 1.0 / 3.0,
            fail_cohorts: 0.0,
        };
        let memory = Memory {
            saved: 50,
            items: vec![
                MemoryItem::DeadTransport {
                    transport: b"nosuch".to_vec(),
                    until: 100,
                    status: b"4.3.0".to_vec(),
                    reason: b"mail transport unavailable".to_vec(),
                },
                MemoryItem::SuspendedDestination {
                    transport: b"smtp".to_vec(),
                    queue: b"slow.lab".to_vec(),
                    nexthop: b"slow.lab".to_vec(),
                    until: 90,
                },
                MemoryItem::Window {
                    transport: b"smtp".to_vec(),
                    queue: b"big.lab".to_vec(),
                    nexthop: b"big.lab".to_vec(),
                    state,
                },
            ],
        };
        assert_eq!(round_trip(&memory), memory);
        let mut s = Scheduler::new(SchedConfig::default(), limits_with(1, 5, 50));
        s.import_memory(60, memory);
        s.check_invariants().unwrap();
        assert!(s.transport_dead(b"nosuch"));
        assert_eq!(
            s.queue_status(b"smtp", b"slow.lab").unwrap().window,
            SUSPENDED
        );
        assert!(
            s.queue_status(b"smtp", b"big.lab").is_none(),
            "no empty ready queue"
        );
        assert_eq!(s.export_memory(60).items.len(), 2, "windows wait as hints");
        add(&mut s, 60, "W1", "big.lab");
        assert_eq!(
            s.queue_status(b"smtp", b"big.lab").unwrap().window,
            5,
            "the remembered window, within the transport's limit"
        );
        s.handle_timeout(90);
        s.check_invariants().unwrap();
        assert!(
            s.queue_status(b"smtp", b"slow.lab").is_none(),
            "resumed, empty: forgotten"
        );
        s.handle_timeout(100);
        assert!(!s.transport_dead(b"nosuch"));
        s.check_invariants().unwrap();
    }

    #[test]
    fn window_hints_expire_after_minimal_backoff_time() {
        let memory = Memory {
            saved: 0,
            items: vec![MemoryItem::Window {
                transport: b"smtp".to_vec(),
                queue: b"big.lab".to_vec(),
                nexthop: b"big.lab".to_vec(),
                state: WindowState::new(4),
            }],
        };
        let mut s = sched();
        s.import_memory(0, memory);
        assert_eq!(s.poll_timeout(), Some(300));
        s.handle_timeout(300);
        assert_eq!(s.poll_timeout(), None);
        add(&mut s, 300, "W1", "big.lab");
        assert_eq!(s.queue_status(b"smtp", b"big.lab").unwrap().window, 1);
    }

    #[test]
    fn damaged_files_are_refused_with_a_reason() {
        let memory = with_dead_destination(0).export_memory(10);
        let bytes = encode(&memory);
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let err = decode(&bytes[..bytes.len() - 12]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        assert!(decode(b"hello world").is_err());
        let mut w = AttrWriter::new();
        w.str("kind", b"header")
            .str("format", FORMAT)
            .long("version", 2)
            .long("saved", 0)
            .end()
            .str("kind", b"end")
            .end();
        assert_eq!(decode(w.as_bytes()).unwrap_err(), "unsupported version 2");
        let mut extra = bytes.clone();
        extra.extend_from_slice(b"kind\0end\0\0");
        assert!(decode(&extra).is_err());
    }

    #[test]
    fn a_large_memory_is_taken_up_only_within_the_dead_destination_bound() {
        let cfg = SchedConfig {
            recipient_limit: 100,
            ..SchedConfig::default()
        };
        let mut s = Scheduler::new(cfg, limits_with(1, 20, 50));
        let items = (0..MAX_ITEMS)
            .map(|i| MemoryItem::DeadDestination {
                transport: b"smtp".to_vec(),
                queue: format!("d{i}.lab").into_bytes(),
                nexthop: format!("d{i}.lab").into_bytes(),
                until: 500,
                status: b"4.4.1".to_vec(),
                reason: b"refused".to_vec(),
            })
            .collect();
        let memory = round_trip(&Memory { saved: 0, items });
        s.import_memory(10, memory);
        assert_eq!(s.queue_count(), 200, "2 x qmgr_message_recipient_limit");
        s.check_invariants().unwrap();
    }
}
