//! `oqmgrctl metrics`: the snapshot in the Prometheus text exposition format, version 0.0.4,
//! ready for node_exporter's textfile collector.
//!
//! Every family has its `# HELP` and `# TYPE` lines and its samples together. Destinations
//! are labelled by transport and next hop only: queues that share both (per-recipient
//! queues, `user@nexthop`, of transports with a destination recipient limit of 1) are added
//! up into one series, so that series do not come and go with each recipient: busy, todo and
//! window summed (a dead or suspended queue's window counts 0), dead and suspended 1 when any
//! of them is, dead_until the latest.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::proto::status::{Snapshot, TransportStatus};

/// Appends `bytes` as a label value: backslash, double quote and newline escaped as the
/// format requires; bytes that are not UTF-8 through `from_utf8_lossy`.
pub fn label_value(out: &mut String, bytes: &[u8]) {
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes one family: its HELP and TYPE lines, then its samples (`labels` is what goes
/// between the braces, empty for none).
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn start(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{} {value}", self.name);
        } else {
            let _ = writeln!(self.out, "{}{{{labels}}} {value}", self.name);
        }
    }
}

fn labels(pairs: &[(&str, &[u8])]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        label_value(&mut out, value);
        out.push('"');
    }
    out
}

/// The destinations of one transport and next hop, added up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Destination {
    labels: String,
    busy: u64,
    todo: u64,
    window: u64,
    dead: bool,
    suspended: bool,
    dead_until: u64,
}

fn destinations(s: &Snapshot) -> Vec<Destination> {
    let mut merged: Vec<Destination> = Vec::new();
    let mut index: HashMap<(&[u8], &[u8]), usize> = HashMap::new();
    for d in &s.destinations {
        let slot = *index
            .entry((d.transport.as_slice(), d.nexthop.as_slice()))
            .or_insert_with(|| {
                merged.push(Destination {
                    labels: labels(&[("transport", &d.transport), ("nexthop", &d.nexthop)]),
                    ..Destination::default()
                });
                merged.len() - 1
            });
        if let Some(m) = merged.get_mut(slot) {
            m.busy += d.busy;
            m.todo += d.todo;
            m.window += u64::try_from(d.window).unwrap_or(0);
            m.dead |= d.dead;
            m.suspended |= !d.dead && d.window < 0;
            m.dead_until = m.dead_until.max(d.dead_until);
        }
    }
    merged
}

/// The whole exposition.
pub fn exposition(s: &Snapshot) -> String {
    let sum = &s.summary;
    let mut out = String::new();
    let gauge = |out: &mut String, name, help, value: Option<i64>| {
        let mut family = Family::start(out, name, "gauge", help);
        if let Some(value) = value {
            family.sample("", value);
        }
    };
    let n = |v: u64| Some(i64::try_from(v).unwrap_or(i64::MAX));
    gauge(
        &mut out,
        "oqmgr_start_time_seconds",
        "When the queue manager started, in seconds since the epoch.",
        n(sum.started),
    );
    gauge(
        &mut out,
        "oqmgr_active_messages",
        "Messages in the active queue.",
        n(sum.active_messages),
    );
    gauge(
        &mut out,
        "oqmgr_active_recipients",
        "Recipients in memory for the active queue.",
        n(sum.active_recipients),
    );
    gauge(
        &mut out,
        "oqmgr_active_message_limit",
        "qmgr_message_active_limit.",
        n(sum.message_limit),
    );
    gauge(
        &mut out,
        "oqmgr_active_recipient_limit",
        "qmgr_message_recipient_limit.",
        n(sum.recipient_limit),
    );
    gauge(
        &mut out,
        "oqmgr_flow_tokens",
        "In-flow tokens waiting in master's pipe (no sample when unknown).",
        (sum.flow_tokens >= 0).then_some(sum.flow_tokens),
    );
    gauge(
        &mut out,
        "oqmgr_next_deferred_scan_seconds",
        "When the deferred queue is scanned next, in seconds since the epoch (no sample when unknown).",
        (sum.next_deferred_scan > 0).then(|| n(sum.next_deferred_scan)).flatten(),
    );
    gauge(
        &mut out,
        "oqmgr_destinations",
        "Destination queues in memory (the per-destination families list at most the first 10000, trouble first).",
        n(sum.destinations),
    );

    let transport_labels: Vec<String> = s
        .transports
        .iter()
        .map(|t| labels(&[("transport", &t.name)]))
        .collect();
    let per_transport =
        |out: &mut String, name, kind, help, value: &dyn Fn(&TransportStatus) -> u64| {
            let mut family = Family::start(out, name, kind, help);
            for (transport, l) in s.transports.iter().zip(&transport_labels) {
                family.sample(l, value(transport));
            }
        };
    per_transport(
        &mut out,
        "oqmgr_transport_dead",
        "gauge",
        "1 when the transport is dead (its agents cannot be reached), else 0.",
        &|t| u64::from(t.dead),
    );
    per_transport(
        &mut out,
        "oqmgr_transport_busy",
        "gauge",
        "Deliveries in progress over all the transport's destinations.",
        &|t| t.busy,
    );
    per_transport(
        &mut out,
        "oqmgr_transport_connecting",
        "gauge",
        "Connections to the transport's delivery agents in progress.",
        &|t| t.connecting,
    );
    per_transport(
        &mut out,
        "oqmgr_transport_todo",
        "gauge",
        "Entries waiting over all the transport's destinations.",
        &|t| t.todo,
    );
    {
        let mut family = Family::start(
            &mut out,
            "oqmgr_deliveries_total",
            "counter",
            "Deliveries since the queue manager started, by transport and outcome (ok, deferred, crashed).",
        );
        for (transport, l) in s.transports.iter().zip(&transport_labels) {
            for (outcome, value) in [
                ("ok", transport.deliveries_ok),
                ("deferred", transport.deliveries_deferred),
                ("crashed", transport.deliveries_crashed),
            ] {
                family.sample(&format!("{l},outcome=\"{outcome}\""), value);
            }
        }
    }
    per_transport(
        &mut out,
        "oqmgr_transport_unavailable_total",
        "counter",
        "Connections to the transport's delivery agents that failed since the queue manager started.",
        &|t| t.unavailable,
    );

    let merged = destinations(s);
    let per_destination = |out: &mut String, name, help, value: &dyn Fn(&Destination) -> u64| {
        let mut family = Family::start(out, name, "gauge", help);
        for d in &merged {
            family.sample(&d.labels, value(d));
        }
    };
    per_destination(
        &mut out,
        "oqmgr_destination_busy",
        "Deliveries in progress to the destination.",
        &|d| d.busy,
    );
    per_destination(
        &mut out,
        "oqmgr_destination_todo",
        "Entries waiting for the destination.",
        &|d| d.todo,
    );
    per_destination(
        &mut out,
        "oqmgr_destination_window",
        "The destination's concurrency window (0 when dead or suspended).",
        &|d| d.window,
    );
    per_destination(
        &mut out,
        "oqmgr_destination_dead",
        "1 when the destination is dead, else 0.",
        &|d| u64::from(d.dead),
    );
    per_destination(
        &mut out,
        "oqmgr_destination_suspended",
        "1 when the destination is suspended by a rate delay, else 0.",
        &|d| u64::from(d.suspended),
    );
    per_destination(
        &mut out,
        "oqmgr_destination_dead_until_seconds",
        "When a dead or suspended destination comes back, in seconds since the epoch (0 otherwise).",
        &|d| d.dead_until,
    );
    out
}
