//! `oqmgrctl status --json`: the snapshot as one JSON object on one line, written by hand
//! (the runtime dependencies stay those of the daemon).
//!
//! Text from the wire is not necessarily UTF-8: it goes through `from_utf8_lossy` first, then
//! quotes, backslashes and control characters are escaped (`\u00XX`).

use std::fmt::Write as _;

use crate::proto::status::{DestinationStatus, Snapshot, TransportStatus};

/// Appends `bytes` as a JSON string literal.
pub fn string(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One object's members, with the commas in the right places.
struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, empty: true }
    }

    fn key(&mut self, name: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        string(self.out, name.as_bytes());
        self.out.push(':');
        self.out
    }

    fn num(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Self {
        let out = self.key(name);
        let _ = write!(out, "{value}");
        self
    }

    fn flag(&mut self, name: &str, value: bool) -> &mut Self {
        self.key(name)
            .push_str(if value { "true" } else { "false" });
        self
    }

    fn text(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let out = self.key(name);
        string(out, value);
        self
    }

    fn close(self) {
        self.out.push('}');
    }
}

fn transport(out: &mut String, t: &TransportStatus) {
    let mut o = Object::open(out);
    o.text("name", &t.name)
        .num("connecting", t.connecting)
        .num("busy", t.busy)
        .num("todo", t.todo)
        .flag("dead", t.dead)
        .num("dead_until", t.dead_until)
        .text("reason", &t.reason)
        .num("rate_delay", t.rate_delay)
        .num("destinations", t.destinations);
    let mut d = Object::open(o.key("deliveries"));
    d.num("ok", t.deliveries_ok)
        .num("deferred", t.deliveries_deferred)
        .num("crashed", t.deliveries_crashed)
        .num("unavailable", t.unavailable);
    d.close();
    o.close();
}

fn destination(out: &mut String, d: &DestinationStatus) {
    let mut o = Object::open(out);
    o.text("transport", &d.transport)
        .text("nexthop", &d.nexthop)
        .text("queue", &d.queue)
        .num("window", d.window)
        .num("window_limit", d.window_limit)
        .num("busy", d.busy)
        .num("todo", d.todo)
        .flag("dead", d.dead)
        .flag("suspended", !d.dead && d.window < 0)
        .num("dead_until", d.dead_until)
        .text("reason", &d.reason);
    o.close();
}

fn array<T>(out: &mut String, items: &[T], item: fn(&mut String, &T)) {
    out.push('[');
    for (i, value) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(out, value);
    }
    out.push(']');
}

/// The whole answer, followed by a newline.
pub fn snapshot(s: &Snapshot) -> String {
    let sum = &s.summary;
    let mut out = String::new();
    let mut o = Object::open(&mut out);
    o.num("pid", sum.pid)
        .num("started", sum.started)
        .num("now", sum.now);
    let mut active = Object::open(o.key("active"));
    active
        .num("messages", sum.active_messages)
        .num("recipients", sum.active_recipients)
        .num("message_limit", sum.message_limit)
        .num("recipient_limit", sum.recipient_limit);
    active.close();
    o.num("flow_tokens", sum.flow_tokens)
        .num("next_deferred_scan", sum.next_deferred_scan)
        .num("destinations_total", sum.destinations);
    array(o.key("transports"), &s.transports, transport);
    array(o.key("destinations"), &s.destinations, destination);
    o.close();
    out.push('\n');
    out
}
