//! Scheduling scenarios on a virtual clock: what an administrator would see happen to mail.

use super::*;
use crate::proto::deliver::{request_flags, DeliveryReply};
use crate::proto::msg_stats::Timeval;
use crate::proto::rewrite::resolve_flags;
use crate::queue::envelope::Envelope;
use route::Route;

pub(super) fn limits_with(initial: i32, limit: i32, rcpt_limit: i32) -> LimitsLookup {
    Box::new(move |name: &[u8]| TransportParams {
        name: String::from_utf8_lossy(name).into_owned(),
        dest_concurrency_limit: limit,
        recipient_limit: if name == b"local" { 1 } else { rcpt_limit },
        init_dest_concurrency: initial.min(if limit > 0 { limit } else { initial }),
        ..TransportParams::default()
    })
}

fn sched() -> Scheduler {
    Scheduler::new(SchedConfig::default(), limits_with(5, 20, 50))
}

fn envelope(sender: &str) -> Envelope {
    Envelope {
        sender: sender.as_bytes().into(),
        ..Envelope::default()
    }
}

fn smtp_route(address: &str) -> (Recipient, Route) {
    let domain = address.rsplit('@').next().unwrap_or("");
    route_to("smtp", domain, address)
}

pub(super) fn route_to(transport: &str, nexthop: &str, address: &str) -> (Recipient, Route) {
    (
        Recipient::new(address.as_bytes(), address.as_bytes(), 0, b"", 0),
        Route {
            transport: transport.as_bytes().to_vec(),
            nexthop: nexthop.as_bytes().to_vec(),
            address: address.as_bytes().to_vec(),
            flags: resolve_flags::CLASS_DEFAULT,
        },
    )
}

fn add(s: &mut Scheduler, id: &str, routes: Vec<(Recipient, Route)>) -> MessageRef {
    let (m, _) = s.add_message(
        id.as_bytes().to_vec(),
        envelope("sender@src.lab"),
        Timeval::default(),
        0,
    );
    s.assign(0, m, routes);
    m
}

fn connects(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Connect { name, .. } => Some(String::from_utf8_lossy(name).into_owned()),
            _ => None,
        })
        .collect()
}

fn transport_of(actions: &[Action], name: &str) -> Option<TransportRef> {
    actions.iter().find_map(|a| match a {
        Action::Connect { transport, name: n } if n == name.as_bytes() => Some(*transport),
        _ => None,
    })
}

/// Messages whose completion began (the chain's first question: a bounce log?).
fn done_messages(actions: &[Action]) -> Vec<MessageRef> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CheckBounceLog { message, .. } => Some(*message),
            _ => None,
        })
        .collect()
}

/// Messages whose next recipient batch is asked for.
fn batch_reads(actions: &[Action]) -> Vec<MessageRef> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ReadRecipients { message, .. } => Some(*message),
            _ => None,
        })
        .collect()
}

fn ok_reply() -> DeliveryReply {
    DeliveryReply::default()
}

fn defer_reply(status: &str, reason: &str) -> DeliveryReply {
    DeliveryReply {
        hop_status: Dsn {
            status: status.as_bytes().to_vec(),
            reason: reason.as_bytes().to_vec(),
            ..Dsn::default()
        },
        status: -1,
    }
}

#[test]
fn recipients_are_grouped_per_destination_and_delivered() {
    let mut s = sched();
    let m = add(
        &mut s,
        "A1",
        vec![
            smtp_route("a@d1.lab"),
            smtp_route("b@d2.lab"),
            smtp_route("c@d1.lab"),
        ],
    );
    assert_eq!(s.recipient_count(), 3);
    s.drain();
    let actions = s.take_actions();
    // Two destinations with work: smtp gets its two pending connections.
    assert_eq!(connects(&actions), vec!["smtp", "smtp"]);
    let t = transport_of(&actions, "smtp").unwrap();
    let (e1, r1) = s.agent_ready(1000, t).unwrap();
    let (e2, r2) = s.agent_ready(1000, t).unwrap();
    let mut got = vec![
        (r1.nexthop.clone(), r1.recipients.len()),
        (r2.nexthop.clone(), r2.recipients.len()),
    ];
    got.sort();
    assert_eq!(got, vec![(b"d1.lab".to_vec(), 2), (b"d2.lab".to_vec(), 1)]);
    assert_eq!(r1.queue_name, b"active");
    assert_eq!(r1.queue_id, b"A1");
    assert_eq!(r1.flags, 3);
    assert_eq!(r1.sender, b"sender@src.lab");
    s.agent_reply(1001, e1, Some(&ok_reply()));
    assert!(done_messages(&s.take_actions()).is_empty());
    s.agent_reply(1001, e2, Some(&ok_reply()));
    assert_eq!(done_messages(&s.take_actions()), vec![m]);
    assert!(!s.message(m).unwrap().deferred);
    assert_eq!(s.recipient_count(), 0);
    assert_eq!(s.queue_count(), 0, "empty live destinations are forgotten");
}

#[test]
fn recipient_limit_splits_entries_and_verp_sends_one_recipient_each() {
    let mut s = Scheduler::new(SchedConfig::default(), limits_with(5, 20, 2));
    add(
        &mut s,
        "B1",
        (0..5)
            .map(|i| smtp_route(&format!("u{i}@d1.lab")))
            .collect(),
    );
    s.drain();
    let t = transport_of(&s.take_actions(), "smtp").unwrap();
    let sizes: Vec<usize> = std::iter::from_fn(|| s.agent_ready(0, t))
        .map(|(_, r)| r.recipients.len())
        .collect();
    assert_eq!(sizes, vec![2, 2, 1]);

    let mut s = sched();
    let mut env = envelope("sender@src.lab");
    env.set_verp_delimiters(Some(b"+="));
    let (m, _) = s.add_message(b"V1".to_vec(), env, Timeval::default(), 0);
    s.assign(0, m, vec![smtp_route("v1@d1.lab"), smtp_route("v2@d1.lab")]);
    s.drain();
    let t = transport_of(&s.take_actions(), "smtp").unwrap();
    let (_, a) = s.agent_ready(0, t).unwrap();
    let (_, b) = s.agent_ready(0, t).unwrap();
    assert_eq!(a.recipients.len(), 1);
    assert_eq!(a.sender, b"sender+v1=d1.lab@src.lab");
    assert_eq!(b.sender, b"sender+v2=d1.lab@src.lab");
}

#[test]
fn concurrency_starts_at_the_initial_window_and_grows_with_success() {
    let mut s = sched();
    for i in 0..40 {
        add(
            &mut s,
            &format!("M{i}"),
            vec![smtp_route(&format!("u{i}@big.lab"))],
        );
    }
    let mut busy = Vec::new();
    let mut max_busy = 0;
    for round in 0..200u64 {
        s.drain();
        for a in s.take_actions() {
            if let Action::Connect { transport, .. } = a {
                if let Some((e, _)) = s.agent_ready(round, transport) {
                    busy.push(e);
                }
            }
        }
        let status = s.queue_status(b"smtp", b"big.lab");
        if let Some(st) = &status {
            assert!(
                st.busy as i32 <= st.window,
                "never more deliveries than the window"
            );
            if round == 0 {
                assert_eq!(
                    st.window, 5,
                    "slow start at initial_destination_concurrency"
                );
            }
        }
        max_busy = max_busy.max(busy.len());
        if let Some(e) = busy.pop() {
            s.agent_reply(round, e, Some(&ok_reply()));
        }
        if busy.is_empty() && status.is_none() {
            break;
        }
    }
    assert!(max_busy >= 5);
    assert_eq!(s.recipient_count(), 0);
    assert_eq!(s.message_count(), 40, "all done, awaiting completion");
}

#[test]
fn a_failed_cohort_kills_the_destination_and_parks_its_mail_behind_retry() {
    // The lab's scenario C: smtp_initial_destination_concurrency=1, one failure.
    let mut s = Scheduler::new(SchedConfig::default(), limits_with(1, 20, 50));
    let m1 = add(&mut s, "C1", vec![smtp_route("x@dead.lab")]);
    let m2 = add(&mut s, "C2", vec![smtp_route("y@dead.lab")]);
    s.drain();
    let actions = s.take_actions();
    assert_eq!(connects(&actions), vec!["smtp"], "window 1: one connection");
    let t = transport_of(&actions, "smtp").unwrap();
    let (e, _) = s.agent_ready(0, t).unwrap();
    s.agent_reply(
        10,
        e,
        Some(&defer_reply(
            "4.4.1",
            "connect to dead.lab: Connection refused",
        )),
    );
    let actions = s.take_actions();
    assert_eq!(s.poll_timeout(), Some(310), "dead for minimal_backoff_time");
    assert_eq!(done_messages(&actions), vec![m1]);
    assert!(s.message(m1).unwrap().deferred);
    let st = s.queue_status(b"smtp", b"dead.lab").unwrap();
    assert_eq!(st.window, 0);
    assert_eq!(
        st.dead_reason.unwrap(),
        b"delivery temporarily suspended: connect to dead.lab: Connection refused"
    );
    // The second message now goes to retry with the dead destination's reason as next hop.
    s.drain();
    let actions = s.take_actions();
    assert_eq!(connects(&actions), vec!["retry"]);
    let retry = transport_of(&actions, "retry").unwrap();
    let (e2, r) = s.agent_ready(10, retry).unwrap();
    assert_eq!(
        r.nexthop,
        b"4.4.1 delivery temporarily suspended: connect to dead.lab: Connection refused"
    );
    s.agent_reply(10, e2, Some(&defer_reply("", "")));
    assert_eq!(done_messages(&s.take_actions()), vec![m2]);
    // New mail for the dead destination is routed to retry at once (status cache).
    let m3 = add(&mut s, "C3", vec![smtp_route("z@dead.lab")]);
    s.drain();
    assert_eq!(connects(&s.take_actions()), vec!["retry"]);
    assert!(s.message(m3).is_some());
}

#[test]
fn dead_destination_revives_after_minimal_backoff_time() {
    let mut s = Scheduler::new(SchedConfig::default(), limits_with(1, 20, 50));
    add(&mut s, "D1", vec![smtp_route("x@d.lab")]);
    s.drain();
    let t = transport_of(&s.take_actions(), "smtp").unwrap();
    let (e, _) = s.agent_ready(0, t).unwrap();
    s.agent_reply(0, e, Some(&defer_reply("4.4.1", "refused")));
    assert_eq!(s.poll_timeout(), Some(300));
    assert_eq!(s.queue_status(b"smtp", b"d.lab").unwrap().window, 0);
    s.handle_timeout(299);
    assert_eq!(
        s.queue_status(b"smtp", b"d.lab").unwrap().window,
        0,
        "not yet"
    );
    s.handle_timeout(300);
    assert!(
        s.queue_status(b"smtp", b"d.lab").is_none(),
        "revived and empty: forgotten"
    );
    assert_eq!(s.poll_timeout(), None, "nothing left to wake for");
    s.handle_timeout(301);
}

#[test]
fn unavailable_transport_defers_to_retry_and_is_skipped_until_retry_time() {
    let mut s = sched();
    let m1 = add(&mut s, "E1", vec![route_to("nosuch", "d1.lab", "a@d1.lab")]);
    s.drain();
    let actions = s.take_actions();
    let t = transport_of(&actions, "nosuch").unwrap();
    s.agent_unavailable(5, t);
    assert_eq!(s.poll_timeout(), Some(65), "dead for transport_retry_time");
    assert!(s.transport_dead(b"nosuch"));
    s.drain();
    let actions = s.take_actions();
    assert_eq!(connects(&actions), vec!["retry"]);
    let retry = transport_of(&actions, "retry").unwrap();
    let (e, r) = s.agent_ready(5, retry).unwrap();
    assert_eq!(r.nexthop, b"4.3.0 mail transport unavailable");
    s.agent_reply(5, e, Some(&defer_reply("", "")));
    assert_eq!(done_messages(&s.take_actions()), vec![m1]);
    // The next message for the dead transport makes no connection attempt to it.
    add(&mut s, "E2", vec![route_to("nosuch", "d1.lab", "b@d1.lab")]);
    s.drain();
    assert_eq!(connects(&s.take_actions()), vec!["retry"]);
}

/// Delivers every message of the queue whose agents connect now; returns the entries.
fn start_all(s: &mut Scheduler, now: u64) -> Vec<EntryRef> {
    let mut busy = Vec::new();
    loop {
        s.drain();
        let connects: Vec<TransportRef> = s
            .take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Connect { transport, .. } => Some(transport),
                _ => None,
            })
            .collect();
        if connects.is_empty() {
            return busy;
        }
        for t in connects {
            if let Some((e, _)) = s.agent_ready(now, t) {
                busy.push(e);
            }
        }
    }
}

#[test]
fn a_crashing_agent_only_defers_the_mail_as_the_c_daemon_does() {
    // qmgr_deliver_update: a crash fills only the DSN struct, the throttle test reads the
    // (empty) status buffer: no negative feedback, no dead destination.
    let mut s = Scheduler::new(SchedConfig::default(), limits_with(5, 20, 50));
    let messages: Vec<MessageRef> = (0..12)
        .map(|i| {
            add(
                &mut s,
                &format!("F{i}"),
                vec![smtp_route(&format!("u{i}@d1.lab"))],
            )
        })
        .collect();
    let (mut attempts, mut done) = (0, 0);
    for round in 0..20 {
        let busy = start_all(&mut s, round);
        if busy.is_empty() {
            break;
        }
        attempts += busy.len();
        let st = s.queue_status(b"smtp", b"d1.lab").unwrap();
        assert_eq!(st.window, 5, "the window is unchanged by crashes");
        assert_eq!(st.dead_reason, None);
        for e in busy {
            s.agent_reply(round, e, None);
        }
        done += done_messages(&s.take_actions()).len();
    }
    assert_eq!(attempts, 12, "every message is tried");
    assert_eq!(done, 12);
    for m in messages {
        assert!(s.message(m).unwrap().deferred);
    }
    assert!(!s.transport_dead(b"smtp"));
    assert_eq!(s.queue_count(), 0, "nothing cached as dead");
}

#[test]
fn a_crash_after_a_reply_with_a_hop_status_throttles_with_that_stale_status() {
    // The C daemon's reply buffer is one static for all deliveries: a crash re-reads the last
    // reply's status, and the reason it sanitised in place gets the prefix a second time.
    let mut s = Scheduler::new(SchedConfig::default(), limits_with(1, 20, 50));
    add(&mut s, "G1", vec![smtp_route("a@d1.lab")]);
    let m2 = add(&mut s, "G2", vec![smtp_route("b@d2.lab")]);
    let busy = start_all(&mut s, 0);
    assert_eq!(busy.len(), 2);
    let (first, second) = (busy[0], busy[1]);
    let first_hop = s.entries.get(first.0).unwrap().queue;
    let (dead_first, crashed) = if s.queues.get(first_hop.0).unwrap().name == b"d1.lab" {
        (b"d1.lab", b"d2.lab")
    } else {
        (b"d2.lab", b"d1.lab")
    };
    s.agent_reply(0, first, Some(&defer_reply("4.4.1", "refused")));
    assert_eq!(
        s.queue_status(b"smtp", dead_first)
            .unwrap()
            .dead_reason
            .unwrap(),
        b"delivery temporarily suspended: refused"
    );
    s.agent_reply(0, second, None);
    let st = s.queue_status(b"smtp", crashed).unwrap();
    assert_eq!(st.window, 0);
    assert_eq!(
        st.dead_reason.unwrap(),
        b"delivery temporarily suspended: delivery temporarily suspended: refused"
    );
    assert!(s.message(m2).unwrap().deferred);
}

#[test]
fn a_reply_malformed_part_way_leaves_the_fields_it_carried_in_the_buffer() {
    // attr_scan overwrote `status` before it met the bad attribute; the reason is the last
    // full reply's (empty), so the sanitised reason is "unknown error".
    let mut s = Scheduler::new(SchedConfig::default(), limits_with(1, 20, 50));
    add(&mut s, "P1", vec![smtp_route("a@d1.lab")]);
    let busy = start_all(&mut s, 0);
    s.agent_reply_scan(0, busy[0], &[b"4.7.1".to_vec()], None);
    assert_eq!(
        s.queue_status(b"smtp", b"d1.lab")
            .unwrap()
            .dead_reason
            .unwrap(),
        b"delivery temporarily suspended: unknown error"
    );
    // An invalid status is sanitised to 4.0.0, and stays so for the next crash.
    add(&mut s, "P2", vec![smtp_route("a@d2.lab")]);
    let busy = start_all(&mut s, 0);
    s.agent_reply_scan(0, busy[0], &[b"bogus".to_vec()], None);
    add(&mut s, "P3", vec![smtp_route("a@d3.lab")]);
    let busy = start_all(&mut s, 0);
    s.agent_reply(0, busy[0], None);
    let triple = "delivery temporarily suspended: delivery temporarily suspended: \
                  delivery temporarily suspended: unknown error";
    assert_eq!(
        s.queue_status(b"smtp", b"d3.lab")
            .unwrap()
            .dead_reason
            .unwrap(),
        triple.as_bytes()
    );
    // New mail for d3.lab is parked behind retry under the sanitised status.
    add(&mut s, "P4", vec![smtp_route("b@d3.lab")]);
    assert!(s
        .queue_status(b"retry", format!("4.0.0 {triple}").as_bytes())
        .is_some());
}

#[test]
fn resolver_verdicts_defer_transports_and_null_recipients() {
    let cfg = SchedConfig {
        defer_transports: vec![b"slow".to_vec()],
        ..SchedConfig::default()
    };
    let mut s = Scheduler::new(cfg, limits_with(5, 20, 50));
    let (r1, mut bad) = smtp_route("bad@x");
    bad.flags |= resolve_flags::ERROR;
    let (r2, mut fail) = smtp_route("fail@x");
    fail.flags |= resolve_flags::FAIL;
    let deferred = route_to("slow", "d1.lab", "c@d1.lab");
    let mut null = smtp_route("n@x");
    null.0.set_address(b"");
    null.1.address.clear();
    add(&mut s, "G1", vec![(r1, bad), (r2, fail), deferred, null]);
    assert!(s
        .queue_status(b"error", b"5.1.3 bad address syntax")
        .is_some());
    assert!(s
        .queue_status(b"error", b"5.1.3 null recipient address")
        .is_some());
    assert!(s
        .queue_status(b"retry", b"4.3.0 address resolver failure")
        .is_some());
    assert!(s
        .queue_status(b"retry", b"4.3.2 deferred transport")
        .is_some());
}

#[test]
fn double_bounce_to_the_local_double_bounce_address_is_discarded() {
    let mut s = sched();
    let (r, mut route) = route_to("local", "host", "double-bounce@host");
    route.flags = resolve_flags::CLASS_LOCAL;
    let m = add(&mut s, "H1", vec![(r, route)]);
    let actions = s.take_actions();
    assert!(matches!(actions[0], Action::DiscardRecipient { .. }));
    assert_eq!(done_messages(&actions), vec![m]);
}

#[test]
fn per_recipient_queues_for_local_delivery() {
    let cfg = SchedConfig {
        recipient_delimiter: b"+".to_vec(),
        ..SchedConfig::default()
    };
    let mut s = Scheduler::new(cfg, limits_with(5, 20, 50));
    add(
        &mut s,
        "L1",
        vec![
            route_to("local", "host", "joe+a@host"),
            route_to("local", "host", "joe+b@host"),
            route_to("local", "host", "ann@host"),
        ],
    );
    assert_eq!(s.queue_status(b"local", b"joe@host").unwrap().todo, 2);
    assert_eq!(s.queue_status(b"local", b"ann@host").unwrap().todo, 1);
}

#[test]
fn transports_are_served_round_robin() {
    let mut s = sched();
    for i in 0..4 {
        add(
            &mut s,
            &format!("R{i}"),
            vec![route_to("discard", "d", &format!("a{i}@d"))],
        );
        add(
            &mut s,
            &format!("S{i}"),
            vec![smtp_route(&format!("b{i}@e"))],
        );
    }
    s.drain();
    let names = connects(&s.take_actions());
    // Both transports get their two pending connections, alternating.
    assert_eq!(names.len(), 4);
    assert_eq!(names.iter().filter(|n| *n == "smtp").count(), 2);
    assert_ne!(names[0], names[1]);
}

#[test]
fn destination_rate_delay_spaces_deliveries() {
    let limits: LimitsLookup = Box::new(|name: &[u8]| TransportParams {
        name: String::from_utf8_lossy(name).into_owned(),
        dest_concurrency_limit: 1,
        init_dest_concurrency: 1,
        destination_rate_delay: 30,
        ..TransportParams::default()
    });
    let mut s = Scheduler::new(SchedConfig::default(), limits);
    add(&mut s, "T1", vec![smtp_route("a@d")]);
    add(&mut s, "T2", vec![smtp_route("b@d")]);
    s.drain();
    let t = transport_of(&s.take_actions(), "smtp").unwrap();
    let (e, _) = s.agent_ready(100, t).unwrap();
    s.agent_reply(100, e, Some(&ok_reply()));
    assert_eq!(s.poll_timeout(), Some(130));
    assert_eq!(s.queue_status(b"smtp", b"d").unwrap().window, -1);
    s.drain();
    assert!(
        connects(&s.take_actions()).is_empty(),
        "suspended until the delay passed"
    );
    s.handle_timeout(130);
    s.drain();
    assert_eq!(connects(&s.take_actions()), vec!["smtp"]);
}

#[test]
fn flush_revives_dead_transports_and_destinations() {
    let mut s = Scheduler::new(SchedConfig::default(), limits_with(1, 20, 50));
    add(&mut s, "F1", vec![smtp_route("a@d1.lab")]);
    s.drain();
    let t = transport_of(&s.take_actions(), "smtp").unwrap();
    let (e, _) = s.agent_ready(0, t).unwrap();
    s.agent_reply(0, e, Some(&defer_reply("4.4.1", "refused")));
    assert_eq!(s.queue_status(b"smtp", b"d1.lab").unwrap().window, 0);
    s.revive_all();
    assert!(s.queue_status(b"smtp", b"d1.lab").is_none());
}

#[test]
fn import_stops_at_the_active_queue_limits() {
    let cfg = SchedConfig {
        active_limit: 3,
        ..SchedConfig::default()
    };
    let mut s = Scheduler::new(cfg, limits_with(5, 20, 50));
    for i in 0..3 {
        assert!(s.can_import());
        add(&mut s, &format!("Q{i}"), vec![smtp_route("a@b")]);
    }
    assert!(!s.can_import());
}

#[test]
fn back_to_back_deliveries_ask_agents_to_cache_connections() {
    let mut s = sched();
    for i in 0..3 {
        add(
            &mut s,
            &format!("K{i}"),
            vec![smtp_route(&format!("u{i}@d.lab"))],
        );
    }
    s.drain();
    let t = transport_of(&s.take_actions(), "smtp").unwrap();
    let (e, first) = s.agent_ready(1000, t).unwrap();
    assert_eq!(first.flags, 3, "first delivery: no caching");
    s.agent_reply(1000, e, Some(&ok_reply()));
    let (_, second) = s.agent_ready(1001, t).unwrap();
    let conn = request_flags::CONN_LOAD | request_flags::CONN_STORE;
    assert_eq!(second.flags & conn, conn, "back to back: load and store");
}

#[test]
fn a_destination_hogging_the_active_queue_gets_the_clog_warning_once_per_interval() {
    let cfg = SchedConfig {
        active_limit: 10,
        ..SchedConfig::default()
    };
    let mut s = Scheduler::new(cfg, limits_with(5, 20, 50));
    for i in 0..5 {
        add(
            &mut s,
            &format!("W{i}"),
            vec![smtp_route(&format!("u{i}@slow.lab"))],
        );
    }
    let warnings: Vec<String> = s
        .take_actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::Warn(w) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(
        warnings.first().map(String::as_str),
        Some("mail for slow.lab is using up 3 of 3 active queue entries")
    );
    assert_eq!(
        warnings.last().map(String::as_str),
        Some("to turn off these warnings specify: qmgr_clog_warn_time = 0")
    );
    // Not again within qmgr_clog_warn_time.
    add(&mut s, "W9", vec![smtp_route("u9@slow.lab")]);
    assert!(!s
        .take_actions()
        .iter()
        .any(|a| matches!(a, Action::Warn(_))));
}

/// A small deterministic PRNG for the simulation (xorshift64*).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn a_large_message_reads_its_next_batch_when_an_entry_is_done_and_few_recipients_are_left() {
    // Entries of one recipient each; the next batch is due below 2 recipients in memory.
    let cfg = SchedConfig {
        refill_below: 2,
        ..SchedConfig::default()
    };
    let mut s = Scheduler::new(cfg, limits_with(5, 20, 1));
    let mut env = envelope("list@src.lab");
    env.resume_offset = Some(4096);
    let (m, _) = s.add_message(b"L1".to_vec(), env, Timeval::default(), 0);
    let routes = vec![
        smtp_route("a@d1.lab"),
        smtp_route("b@d1.lab"),
        smtp_route("c@d1.lab"),
    ];
    s.assign(0, m, routes);
    s.drain();
    let t = transport_of(&s.take_actions(), "smtp").unwrap();
    let mut entries: Vec<EntryRef> = (0..3)
        .filter_map(|_| s.agent_ready(1, t).map(|(e, _)| e))
        .collect();
    assert_eq!(entries.len(), 3);
    // 2 left in memory: not yet below the threshold.
    s.agent_reply(2, entries.remove(0), Some(&ok_reply()));
    assert!(s.take_actions().is_empty());
    // 1 left: read more now, while that delivery is still out.
    s.agent_reply(2, entries.remove(0), Some(&ok_reply()));
    let actions = s.take_actions();
    assert_eq!(batch_reads(&actions), vec![m]);
    assert_eq!(actions.len(), 1);
    assert!(matches!(
        actions[0],
        Action::ReadRecipients { start: 4096, .. }
    ));
    // The batch brings one recipient; the file holds more.
    s.batch_read(m, Some(8192));
    s.assign(2, m, vec![smtp_route("d@d1.lab")]);
    s.drain();
    s.take_actions();
    let d = s.agent_ready(2, t).map(|(e, _)| e).unwrap();
    // The last entry of the first batch: more to read still comes first, not the completion.
    s.agent_reply(2, entries.remove(0), Some(&ok_reply()));
    let actions = s.take_actions();
    assert_eq!(batch_reads(&actions), vec![m]);
    assert!(done_messages(&actions).is_empty());
    // The file is read to its end and the batch brings nothing: done once `d` is.
    s.batch_read(m, None);
    s.assign(3, m, Vec::new());
    assert!(
        done_messages(&s.take_actions()).is_empty(),
        "d is in flight"
    );
    s.agent_reply(3, d, Some(&ok_reply()));
    assert_eq!(done_messages(&s.take_actions()), vec![m]);
}

/// The next hop of the entry an agent of `t` gets now.
fn next_hop(s: &mut Scheduler, now: u64, t: TransportRef) -> (EntryRef, String) {
    let (e, r) = s.agent_ready(now, t).expect("an entry to send");
    (e, String::from_utf8_lossy(&r.nexthop).into_owned())
}

#[test]
fn destinations_are_served_in_the_c_daemons_rotated_order() {
    // qmgr_queue_select rotates the list so that the search resumes after the chosen queue:
    // [after..., before..., chosen]. Window 1 and limit 1, two mails per destination.
    let mut s = Scheduler::new(SchedConfig::default(), limits_with(1, 1, 50));
    for round in 0..2 {
        for d in ["d1", "d2", "d3"] {
            add(
                &mut s,
                &format!("{d}-{round}"),
                vec![smtp_route(&format!("u{round}@{d}.lab"))],
            );
        }
    }
    s.drain();
    let t = transport_of(&s.take_actions(), "smtp").unwrap();
    let (e1, h1) = next_hop(&mut s, 0, t);
    let (e2, h2) = next_hop(&mut s, 0, t);
    let (e3, h3) = next_hop(&mut s, 0, t);
    assert_eq!([h1, h2, h3], ["d1.lab", "d2.lab", "d3.lab"]);
    // d2 is free again: chosen while d1 (first in the list) is busy.
    s.agent_reply(1, e2, Some(&ok_reply()));
    let (_, h) = next_hop(&mut s, 1, t);
    assert_eq!(h, "d2.lab");
    // Then d1 and d3 are free: the search resumes after d2, at d3 (moving d2 to the end
    // alone would give d1).
    s.agent_reply(2, e1, Some(&ok_reply()));
    s.agent_reply(2, e3, Some(&ok_reply()));
    let (_, h) = next_hop(&mut s, 2, t);
    assert_eq!(h, "d3.lab");
}

#[test]
fn transports_are_served_in_the_c_daemons_rotated_order() {
    // qmgr_transport_select rotates as qmgr_queue_select does. New transports go first:
    // the list starts as [t3, t2, t1].
    let mut s = sched();
    let mail = |s: &mut Scheduler, id: &str, transport: &str| {
        add(
            s,
            id,
            vec![route_to(transport, "d.lab", &format!("{id}@d.lab"))],
        );
    };
    mail(&mut s, "a1", "t1");
    mail(&mut s, "a2", "t2");
    for id in ["a3", "b3", "c3"] {
        mail(&mut s, id, "t3");
    }
    s.drain();
    let actions = s.take_actions();
    assert_eq!(connects(&actions), ["t3", "t2", "t1", "t3"]);
    let (t1, t2, t3) = (
        transport_of(&actions, "t1").unwrap(),
        transport_of(&actions, "t2").unwrap(),
        transport_of(&actions, "t3").unwrap(),
    );
    // Now [t2, t1, t3]. t1's agent takes its mail, new mail for t1 and t2 arrives.
    s.agent_ready(0, t1).unwrap();
    mail(&mut s, "b1", "t1");
    // t2 (one pending, one mail) needs no more; t1 is chosen: [t3, t2, t1] (C), not
    // [t2, t3, t1].
    s.drain();
    assert_eq!(connects(&s.take_actions()), ["t1"]);
    s.agent_ready(0, t3).unwrap();
    s.agent_ready(0, t3).unwrap();
    s.agent_ready(0, t2).unwrap();
    mail(&mut s, "b2", "t2");
    s.drain();
    assert_eq!(connects(&s.take_actions()), ["t3", "t2"]);
}

#[test]
fn a_dead_destination_moves_its_waiting_mail_to_retry_in_the_c_daemons_order() {
    // qmgr_defer_todo walks the todo list from its newest end and qmgr_entry_create puts each
    // moved entry at the newest end of the retry queue: the waiting mail reverses.
    let mut s = Scheduler::new(SchedConfig::default(), limits_with(1, 20, 50));
    for i in 0..4 {
        add(
            &mut s,
            &format!("M{i}"),
            vec![smtp_route(&format!("u{i}@d1.lab"))],
        );
    }
    s.drain();
    let t = transport_of(&s.take_actions(), "smtp").unwrap();
    let (e, r) = s.agent_ready(0, t).unwrap();
    assert_eq!(r.queue_id, b"M0");
    s.agent_reply(0, e, Some(&defer_reply("4.4.1", "refused")));
    s.drain();
    let retry = transport_of(&s.take_actions(), "retry").unwrap();
    let order: Vec<String> = (0..3)
        .map(|_| {
            let (e, r) = s.agent_ready(0, retry).unwrap();
            s.agent_reply(0, e, Some(&defer_reply("", "")));
            String::from_utf8_lossy(&r.queue_id).into_owned()
        })
        .collect();
    assert_eq!(order, ["M3", "M2", "M1"]);

    // Without retry, the recipients are deferred on the spot in that same order.
    let mut s = Scheduler::new(SchedConfig::default(), limits_with(1, 20, 50));
    for i in 0..4 {
        add(
            &mut s,
            &format!("M{i}"),
            vec![smtp_route(&format!("u{i}@d1.lab"))],
        );
    }
    add(&mut s, "R", vec![route_to("retry", "x", "r@x")]);
    s.drain();
    let actions = s.take_actions();
    let t = transport_of(&actions, "smtp").unwrap();
    s.agent_unavailable(0, transport_of(&actions, "retry").unwrap());
    let (e, _) = s.agent_ready(0, t).unwrap();
    s.take_actions();
    s.agent_reply(0, e, Some(&defer_reply("4.4.1", "refused")));
    let deferred: Vec<String> = s
        .take_actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::DeferRecipient { recipient, .. } => {
                Some(String::from_utf8_lossy(recipient.address()).into_owned())
            }
            _ => None,
        })
        .collect();
    assert_eq!(deferred, ["u3@d1.lab", "u2@d1.lab", "u1@d1.lab"]);
}

fn rate_delayed(delay: i32) -> LimitsLookup {
    Box::new(move |name: &[u8]| TransportParams {
        name: String::from_utf8_lossy(name).into_owned(),
        transport_rate_delay: if name == b"slow" { delay } else { 0 },
        ..TransportParams::default()
    })
}

fn add_flagged(s: &mut Scheduler, id: &str, qflags: u32, routes: Vec<(Recipient, Route)>) {
    let (m, _) = s.add_message(
        id.as_bytes().to_vec(),
        envelope("sender@src.lab"),
        Timeval::default(),
        qflags,
    );
    s.assign(0, m, routes);
}

#[test]
fn a_flushed_message_leaves_a_live_transports_rate_lock_alone() {
    // qmgr_message.c unthrottles a FLUSH_EACH message's transport only when it is dead: the
    // rate lock of a live transport holds until the delivery in progress completes.
    let mut s = Scheduler::new(SchedConfig::default(), rate_delayed(10));
    add(&mut s, "S1", vec![route_to("slow", "d1.lab", "a@d1.lab")]);
    s.drain();
    let t = transport_of(&s.take_actions(), "slow").unwrap();
    let (e, _) = s.agent_ready(0, t).unwrap();
    add_flagged(
        &mut s,
        "S2",
        message_flags::FLUSH_EACH,
        vec![route_to("slow", "d2.lab", "b@d2.lab")],
    );
    s.drain();
    assert!(
        connects(&s.take_actions()).is_empty(),
        "one delivery at a time on a rate-delayed transport"
    );
    s.agent_reply(1, e, Some(&ok_reply()));
    s.drain();
    assert_eq!(connects(&s.take_actions()), ["slow"]);
}

#[test]
fn an_agent_without_work_keeps_the_rate_lock_until_a_delivery_completes() {
    // qmgr_deliver closes an agent that finds no entry without qmgr_transport_unthrottle:
    // only a completed delivery (or a revived dead transport) releases the rate lock.
    let mut s = Scheduler::new(SchedConfig::default(), rate_delayed(10));
    add(&mut s, "S1", vec![route_to("slow", "d1.lab", "a@d1.lab")]);
    s.drain();
    let t = transport_of(&s.take_actions(), "slow").unwrap();
    let (e, _) = s.agent_ready(0, t).unwrap();
    assert!(
        s.agent_ready(0, t).is_none(),
        "a second agent finds nothing"
    );
    add(&mut s, "S2", vec![route_to("slow", "d2.lab", "b@d2.lab")]);
    s.drain();
    assert!(connects(&s.take_actions()).is_empty());
    s.agent_reply(1, e, Some(&ok_reply()));
    s.drain();
    assert_eq!(connects(&s.take_actions()), ["slow"]);
}

fn info_lines(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Info(line) => Some(line.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn feedback_debug_logs_the_c_daemons_window_lines() {
    let cfg = SchedConfig {
        feedback_debug: true,
        ..SchedConfig::default()
    };
    let mut s = Scheduler::new(cfg, limits_with(5, 20, 50));
    add(&mut s, "W1", vec![smtp_route("a@d1.lab")]);
    add(&mut s, "W2", vec![smtp_route("b@d1.lab")]);
    s.drain();
    let t = transport_of(&s.take_actions(), "smtp").unwrap();
    let (e1, _) = s.agent_ready(0, t).unwrap();
    s.agent_reply(0, e1, Some(&ok_reply()));
    assert_eq!(
        info_lines(&s.take_actions()),
        [
            "qmgr_queue_unthrottle: feedback 1",
            "qmgr_queue_unthrottle: queue d1.lab: limit 20 window 6 success 0 failure 0 fail_cohorts 0",
        ]
    );
    let (e2, _) = s.agent_ready(0, t).unwrap();
    s.agent_reply(0, e2, Some(&defer_reply("4.4.1", "refused")));
    assert_eq!(
        info_lines(&s.take_actions()),
        [
            "qmgr_queue_throttle: feedback 1",
            "qmgr_queue_throttle: queue d1.lab: limit 20 window 4 success 0 failure 1 fail_cohorts 0.166667",
        ]
    );

    // A destination that dies and revives; nothing about the retry transport's queues.
    let cfg = SchedConfig {
        feedback_debug: true,
        ..SchedConfig::default()
    };
    let mut s = Scheduler::new(cfg, limits_with(1, 20, 50));
    add(&mut s, "X1", vec![smtp_route("a@d2.lab")]);
    add(&mut s, "X2", vec![smtp_route("b@d2.lab")]);
    s.drain();
    let t = transport_of(&s.take_actions(), "smtp").unwrap();
    let (e, _) = s.agent_ready(0, t).unwrap();
    s.agent_reply(0, e, Some(&defer_reply("4.4.1", "refused")));
    let actions = s.take_actions();
    assert_eq!(
        info_lines(&actions),
        ["qmgr_queue_throttle: queue d2.lab: limit 20 window 0 success 0 failure 0 fail_cohorts 1"]
    );
    s.drain();
    let retry = transport_of(&s.take_actions(), "retry").unwrap();
    let (e, _) = s.agent_ready(0, retry).unwrap();
    s.agent_reply(0, e, Some(&ok_reply()));
    assert!(info_lines(&s.take_actions()).is_empty());
    s.handle_timeout(300);
    assert_eq!(
        info_lines(&s.take_actions()),
        ["qmgr_queue_unthrottle: queue d2.lab: limit 20 window 1 success 0 failure 0 fail_cohorts 0"]
    );
}

#[test]
fn a_crash_keeps_the_rate_lock_as_the_c_daemon_does() {
    // qmgr_deliver_update's crash path calls no qmgr_transport_unthrottle: a transport with
    // a transport_rate_delay is stuck after a crash (a C bug kept for parity).
    let mut s = Scheduler::new(SchedConfig::default(), rate_delayed(10));
    add(&mut s, "K1", vec![route_to("slow", "d1.lab", "a@d1.lab")]);
    add(&mut s, "K2", vec![route_to("slow", "d1.lab", "b@d1.lab")]);
    s.drain();
    let t = transport_of(&s.take_actions(), "slow").unwrap();
    let (e, _) = s.agent_ready(0, t).unwrap();
    s.agent_reply(0, e, None);
    s.revive_all();
    s.drain();
    assert!(connects(&s.take_actions()).is_empty());
    assert_eq!(s.queue_status(b"slow", b"d1.lab").unwrap().todo, 1);
}

#[test]
fn moving_a_large_messages_waiting_mail_to_retry_reads_its_next_batch() {
    // qmgr_entry_move_todo ends in qmgr_entry_done for the moved entry, whose refill test
    // runs: with few recipients in memory the list's next batch is read at once.
    let cfg = SchedConfig {
        refill_below: 10,
        ..SchedConfig::default()
    };
    let mut s = Scheduler::new(cfg, limits_with(1, 20, 50));
    let one = add(&mut s, "M1", vec![smtp_route("a@d1.lab")]);
    let mut env = envelope("list@src.lab");
    env.resume_offset = Some(4096);
    let (list, _) = s.add_message(b"L1".to_vec(), env, Timeval::default(), 0);
    s.assign(0, list, vec![smtp_route("b@d1.lab")]);
    s.drain();
    let t = transport_of(&s.take_actions(), "smtp").unwrap();
    let (e, r) = s.agent_ready(1, t).unwrap();
    assert_eq!(r.queue_id, b"M1");
    // The destination dies (window 1): the list's waiting entry moves to retry.
    s.agent_reply(2, e, Some(&defer_reply("4.4.1", "refused")));
    let actions = s.take_actions();
    assert_eq!(batch_reads(&actions), vec![list], "{actions:?}");
    assert!(!batch_reads(&actions).contains(&one));
}

// The completion chain on the virtual clock: what the event loop is asked to do once a
// message's last delivery is done, and how its answers steer the rest.

const NOW: u64 = 1_000_000;

/// A message of one recipient whose delivery got `reply`; the actions up to the first
/// question of its completion (the bounce log).
fn delivered_once(s: &mut Scheduler, env: Envelope, reply: DeliveryReply) -> MessageRef {
    let (m, _) = s.add_message(b"C1".to_vec(), env, Timeval::default(), 0);
    s.assign(NOW, m, vec![smtp_route("a@d1.lab")]);
    s.drain();
    let t = transport_of(&s.take_actions(), "smtp").unwrap();
    let (e, _) = s.agent_ready(NOW, t).unwrap();
    s.agent_reply(NOW, e, Some(&reply));
    let actions = s.take_actions();
    assert_eq!(done_messages(&actions), vec![m], "{actions:?}");
    m
}

/// A scheduler whose entries never ask for the next batch themselves.
fn no_refill() -> Scheduler {
    let cfg = SchedConfig {
        refill_below: 0,
        ..SchedConfig::default()
    };
    Scheduler::new(cfg, limits_with(5, 20, 50))
}

/// A message whose one delivery was deferred, past the bounce-log and file checks of its
/// completion (no bounce log, the file usable): the actions that follow are taken next.
fn deferred_to_the_end(s: &mut Scheduler, env: Envelope, reply: DeliveryReply) -> MessageRef {
    let m = delivered_once(s, env, reply);
    s.bounce_log_checked(NOW, m, false);
    assert!(matches!(
        s.take_actions()[..],
        [Action::CheckQueueFile { .. }]
    ));
    s.queue_file_checked(NOW, m, true);
    m
}

fn young(sender: &str) -> Envelope {
    Envelope {
        create_time: NOW as i64 - 2000,
        ..envelope(sender)
    }
}

fn notice(actions: &[Action]) -> Option<(NoticeService, crate::proto::bounce::BounceCommand, u32)> {
    actions.iter().find_map(|a| match a {
        Action::Notify {
            service, request, ..
        } => Some((*service, request.command, request.flags)),
        _ => None,
    })
}

fn ending(actions: &[Action]) -> Option<&Action> {
    actions.iter().find(|a| {
        matches!(
            a,
            Action::Remove { .. } | Action::MoveToDeferred { .. } | Action::Corrupt { .. }
        )
    })
}

#[test]
fn delivered_mail_is_removed_after_the_bounce_log_check() {
    let mut s = sched();
    let m = delivered_once(&mut s, young("s@x"), ok_reply());
    s.bounce_log_checked(NOW, m, false);
    let actions = s.take_actions();
    assert_eq!(
        actions,
        vec![Action::Remove {
            queue_id: b"C1".to_vec()
        }]
    );
    assert_eq!(s.message_count(), 0, "forgotten");
}

#[test]
fn a_bounce_log_gets_one_bounce_notice_and_a_failed_one_defers_the_mail() {
    use crate::proto::bounce::{bounce_flags, BounceCommand};
    let mut s = sched();
    let m = delivered_once(&mut s, young("s@x"), ok_reply());
    s.bounce_log_checked(NOW, m, true);
    let actions = s.take_actions();
    assert_eq!(
        notice(&actions),
        Some((
            NoticeService::Bounce,
            BounceCommand::Flush,
            bounce_flags::KEEP
        ))
    );
    assert_eq!(ending(&actions), None, "waits for the notice");
    s.notice_done(NOW, m, -1);
    let actions = s.take_actions();
    assert_eq!(
        actions[0],
        Action::Info("C1: status=deferred (bounce failed)".into())
    );
    // Deferred now: the file is checked (an agent may have marked it corrupt), then it goes
    // back to deferred/ with the back-off of its age (2000 s).
    assert!(matches!(actions[1], Action::CheckQueueFile { .. }));
    s.queue_file_checked(NOW, m, true);
    assert_eq!(
        s.take_actions(),
        vec![Action::MoveToDeferred {
            queue_id: b"C1".to_vec(),
            until: NOW + 2000
        }]
    );
}

#[test]
fn deferred_mail_backs_off_by_its_age_between_the_bounds() {
    for (age, backoff) in [(10, 300), (2000, 2000), (100_000, 4000)] {
        let mut s = sched();
        let env = Envelope {
            create_time: NOW as i64 - age,
            ..envelope("s@x")
        };
        deferred_to_the_end(&mut s, env, defer_reply("4.4.1", "refused"));
        assert_eq!(
            ending(&s.take_actions()),
            Some(&Action::MoveToDeferred {
                queue_id: b"C1".to_vec(),
                until: NOW + backoff
            }),
            "age {age}"
        );
    }
}

/// A scheduler with oqmgr_backoff_jitter = `percent` and a fixed seed.
fn jittered(percent: u32, seed: u64) -> Scheduler {
    let cfg = SchedConfig {
        backoff_jitter: percent,
        random_seed: seed,
        ..SchedConfig::default()
    };
    Scheduler::new(cfg, limits_with(5, 20, 50))
}

/// `n` messages created `age` seconds before NOW, one after the other, each deferred by a
/// recipient-level 4xx (the destination stays alive): their back-off delays.
fn backoff_delays(s: &mut Scheduler, age: i64, n: usize) -> Vec<u64> {
    let env = Envelope {
        create_time: NOW as i64 - age,
        ..envelope("s@x")
    };
    let rcpt_4xx = DeliveryReply {
        status: -1,
        ..DeliveryReply::default()
    };
    (0..n)
        .map(|_| {
            deferred_to_the_end(s, env.clone(), rcpt_4xx.clone());
            match ending(&s.take_actions()) {
                Some(Action::MoveToDeferred { until, .. }) => until - NOW,
                other => panic!("not deferred: {other:?}"),
            }
        })
        .collect()
}

#[test]
fn without_jitter_the_back_off_is_the_c_formula_and_no_random_number_is_drawn() {
    let l = SchedConfig::default().lifetimes;
    for age in [10, 299, 300, 2000, 3999, 4000, 100_000] {
        let mut s = jittered(0, 99);
        let want = complete::backoff_delay(NOW, NOW as i64 - age, &l);
        assert_eq!(backoff_delays(&mut s, age, 3), vec![want; 3], "age {age}");
        assert_eq!(s.random, random::SplitMix64::new(99), "age {age}: drew");
    }
    assert_eq!(
        backoff_delays(&mut jittered(0, 99), 2000, 1),
        vec![2000],
        "the formula: the age"
    );
}

#[test]
fn jitter_spreads_deferrals_over_the_allowed_range() {
    // Mail aged 2000 s with ±30 %: 1400..2600 s, centred on 2000 s, reaching both ends.
    let delays = backoff_delays(&mut jittered(30, 2024), 2000, 1000);
    let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
    let mean = delays.iter().sum::<u64>() as f64 / delays.len() as f64;
    assert!(*min >= 1400 && *max <= 2600, "{min}..{max}");
    assert!((1900.0..=2100.0).contains(&mean), "mean {mean}");
    assert!(*min < 1550 && *max > 2450, "{min}..{max}");
    // Young mail: 300 s is minimal_backoff_time, so it is only stretched (up to 390 s).
    let young = backoff_delays(&mut jittered(30, 2024), 10, 1000);
    assert!(young.iter().all(|d| (300..=390).contains(d)), "{young:?}");
    assert!(young.iter().any(|&d| d > 380), "stretched to near 390 s");
    // Old mail: 4000 s is maximal_backoff_time, so it is only shrunk (down to 2800 s).
    let old = backoff_delays(&mut jittered(30, 2024), 100_000, 1000);
    assert!(old.iter().all(|d| (2800..=4000).contains(d)), "{old:?}");
    assert!(old.iter().any(|&d| d < 2900), "shrunk to near 2800 s");
}

#[test]
fn the_same_seed_repeats_the_same_back_off_times() {
    let a = backoff_delays(&mut jittered(30, 7), 2000, 50);
    assert_eq!(backoff_delays(&mut jittered(30, 7), 2000, 50), a);
    assert_ne!(backoff_delays(&mut jittered(30, 8), 2000, 50), a);
}

#[test]
fn a_file_an_agent_marked_corrupt_goes_to_corrupt() {
    let mut s = sched();
    let m = delivered_once(&mut s, young("s@x"), defer_reply("", ""));
    s.bounce_log_checked(NOW, m, false);
    s.take_actions();
    s.queue_file_checked(NOW, m, false);
    assert_eq!(
        s.take_actions(),
        vec![Action::Corrupt {
            queue_id: b"C1".to_vec()
        }]
    );
    assert_eq!(s.message_count(), 0);
}

#[test]
fn mail_older_than_its_lifetime_is_returned_once_and_removed() {
    use crate::proto::bounce::{bounce_flags, BounceCommand};
    let lifetime = SchedConfig::default().lifetimes.max_queue_lifetime;
    let env = Envelope {
        create_time: (NOW - lifetime) as i64,
        ..envelope("s@x")
    };
    let mut s = sched();
    let m = deferred_to_the_end(&mut s, env, defer_reply("4.4.1", "refused"));
    let actions = s.take_actions();
    assert_eq!(
        actions[0],
        Action::Info("C1: from=<s@x>, status=expired, returned to sender".into())
    );
    assert_eq!(
        notice(&actions),
        Some((
            NoticeService::Defer,
            BounceCommand::Flush,
            bounce_flags::DELRCPT
        ))
    );
    s.notice_done(NOW, m, 0);
    assert_eq!(
        s.take_actions(),
        vec![Action::Remove {
            queue_id: b"C1".to_vec()
        }],
        "returned: nothing left to deliver"
    );

    // A second younger by one second is not returned; a failed return stays deferred.
    let env = Envelope {
        create_time: (NOW - lifetime + 1) as i64,
        ..envelope("s@x")
    };
    let mut s = sched();
    deferred_to_the_end(&mut s, env, defer_reply("4.4.1", "refused"));
    assert!(matches!(
        ending(&s.take_actions()),
        Some(Action::MoveToDeferred { .. })
    ));
}

#[test]
fn bounces_expire_after_bounce_queue_lifetime() {
    let cfg = SchedConfig {
        lifetimes: complete::Lifetimes {
            bounce_queue_lifetime: 3600,
            ..SchedConfig::default().lifetimes
        },
        ..SchedConfig::default()
    };
    let env = Envelope {
        create_time: NOW as i64 - 3600,
        ..envelope("")
    };
    let mut s = Scheduler::new(cfg, limits_with(5, 20, 50));
    let m = deferred_to_the_end(&mut s, env, defer_reply("4.4.1", "refused"));
    let actions = s.take_actions();
    assert_eq!(
        actions[0],
        Action::Info("C1: from=<>, status=expired, returned to sender".into())
    );
    s.notice_done(NOW, m, -1);
    let actions = s.take_actions();
    assert_eq!(
        actions[0],
        Action::Info("C1: status=deferred (bounce failed)".into())
    );
    assert!(matches!(actions[1], Action::MoveToDeferred { .. }));
}

#[test]
fn the_delay_warning_goes_out_once_when_due_and_is_marked_in_the_file() {
    use crate::proto::bounce::{bounce_flags, BounceCommand};
    use crate::queue::envelope::WarnRecord;
    let warned = |warn_time: i64| Envelope {
        warn: Some(WarnRecord {
            offset: 77,
            time: warn_time,
        }),
        ..young("s@x")
    };
    // Not yet due (two seconds early): straight back to deferred/.
    let mut s = sched();
    deferred_to_the_end(&mut s, warned(NOW as i64 + 2), defer_reply("", ""));
    assert!(notice(&s.take_actions()).is_none());
    // Due from one second early: the warning, then the W record marked sent.
    let mut s = sched();
    let m = deferred_to_the_end(&mut s, warned(NOW as i64 + 1), defer_reply("", ""));
    assert_eq!(
        notice(&s.take_actions()),
        Some((
            NoticeService::Defer,
            BounceCommand::Warn,
            bounce_flags::KEEP
        ))
    );
    s.notice_done(NOW, m, 0);
    let actions = s.take_actions();
    assert_eq!(
        actions[0],
        Action::Patch {
            queue_id: b"C1".to_vec(),
            patch: crate::queue::record::Patch::delay_warning_sent(77)
        }
    );
    assert!(matches!(actions[1], Action::MoveToDeferred { .. }));
    // A failed warning is not marked: the next stay tries again.
    let mut s = sched();
    let m = deferred_to_the_end(&mut s, warned(NOW as i64), defer_reply("", ""));
    s.take_actions();
    s.notice_done(NOW, m, -1);
    let actions = s.take_actions();
    assert_eq!(
        actions[0],
        Action::Info("C1: status=deferred (delay warning failed)".into())
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::Patch { .. })));
}

#[test]
fn a_recorded_delivery_is_traced_after_the_last_batch_and_the_record_killed() {
    use crate::proto::bounce::BounceCommand;
    let env = Envelope {
        trace_flags: request_flags::RECORD as i32,
        trace_flags_offset: Some(99),
        resume_offset: Some(4096),
        ..young("s@x")
    };
    // Many recipients in memory: no refill when the entry is done, the completion reads.
    let mut s = no_refill();
    let m = delivered_once(&mut s, env, ok_reply());
    // More recipients in the file come first (qmgr_active_done_2_generic).
    s.bounce_log_checked(NOW, m, false);
    let actions = s.take_actions();
    assert_eq!(batch_reads(&actions), vec![m]);
    assert!(notice(&actions).is_none());
    s.batch_read(m, None);
    s.assign(NOW, m, Vec::new());
    // The chain starts over with the batch done: now the trace.
    let actions = s.take_actions();
    assert_eq!(done_messages(&actions), vec![m]);
    s.bounce_log_checked(NOW, m, false);
    let actions = s.take_actions();
    let (service, command, _) = notice(&actions).unwrap();
    assert_eq!(
        (service, command),
        (NoticeService::Trace, BounceCommand::Trace)
    );
    s.notice_done(NOW, m, 0);
    assert_eq!(
        s.take_actions(),
        vec![
            Action::Patch {
                queue_id: b"C1".to_vec(),
                patch: crate::queue::record::Patch::kill_record(99)
            },
            Action::Remove {
                queue_id: b"C1".to_vec()
            }
        ]
    );
}

#[test]
fn a_batch_the_completion_cannot_read_sends_the_file_to_corrupt() {
    let env = Envelope {
        resume_offset: Some(4096),
        ..young("s@x")
    };
    let mut s = no_refill();
    let m = delivered_once(&mut s, env, ok_reply());
    s.bounce_log_checked(NOW, m, false);
    assert_eq!(batch_reads(&s.take_actions()), vec![m]);
    s.batch_unreadable(NOW, m);
    assert_eq!(
        s.take_actions(),
        vec![Action::Corrupt {
            queue_id: b"C1".to_vec()
        }]
    );
}

#[test]
fn a_force_expired_message_with_a_defer_log_is_returned_without_deliveries() {
    let mut s = sched();
    let (m, recipients) = s.add_message(
        b"C1".to_vec(),
        young("s@x"),
        Timeval::default(),
        message_flags::FORCE_EXPIRE,
    );
    assert!(recipients.is_empty());
    s.expire_now(NOW, m);
    assert_eq!(done_messages(&s.take_actions()), vec![m]);
    s.bounce_log_checked(NOW, m, false);
    assert!(matches!(
        s.take_actions()[..],
        [Action::CheckQueueFile { .. }]
    ));
    s.queue_file_checked(NOW, m, true);
    assert_eq!(
        s.take_actions()[0],
        Action::Info("C1: from=<s@x>, status=force-expired, returned to sender".into())
    );
}
