//! A message's later life in the fake Postfix world: expiry, delay warnings, success notices,
//! VERP, content filters, redirects, deferred transports and double-bounce discards.

mod common;

use std::time::Duration;

use common::agent::Behaviour;
use common::bounce::BounceRequest;
use common::queue_file_builder::QueueFileBuilder;
use common::world::World;

const T: Duration = Duration::from_secs(10);

/// Inserts an envelope record just before the first recipient, where cleanup puts W and V.
fn before_recipients(b: &mut QueueFileBuilder, rec_type: u8, data: &[u8]) {
    let at = b
        .envelope
        .iter()
        .position(|(t, _)| *t == b'R')
        .unwrap_or(b.envelope.len());
    b.envelope.insert(at, (rec_type, data.to_vec()));
}

fn flushes(requests: &[BounceRequest]) -> Vec<(u32, u32, String)> {
    requests
        .iter()
        .map(|r| (r.command_code(), r.flags(), r.queue_id()))
        .collect()
}

#[test]
fn deferred_mail_past_maximal_queue_lifetime_is_returned_and_removed() {
    let mut w = World::with_params(&[("maximal_queue_lifetime", "0")]);
    w.add_agent("smtp", Behaviour::DeferPerRecipient);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(
        "warning: bounce_queue_lifetime is larger than maximal_queue_lifetime - adjusting bounce_queue_lifetime",
        T,
    );
    w.expect_log(
        &format!("{id}: from=<sender@src.lab>, status=expired, returned to sender"),
        T,
    );
    w.expect_log(&format!("{id}: removed"), T);
    // defer(8) flush with DELRCPT, as the C daemon sends it.
    assert_eq!(flushes(&w.defer.requests()), vec![(1, 2, id.clone())]);
    assert_eq!(w.dir.queue_of(&id), None, "{}", w.diagnostics());
}

#[test]
fn a_failed_return_keeps_the_message_deferred() {
    let mut w = World::with_params(&[("maximal_queue_lifetime", "0")]);
    w.defer.set_status(-1);
    w.add_agent("smtp", Behaviour::DeferPerRecipient);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(&format!("{id}: status=deferred (bounce failed)"), T);
    assert!(common::wait_until(T, || w.dir.queue_of(&id).as_deref() == Some("deferred")));
}

#[test]
fn the_delay_warning_is_sent_once_and_marked_in_the_file() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::DeferPerRecipient);
    let warn_at = common::queue_dir::unix_now() - 10;
    let (id, _) = w
        .dir
        .message(b"sender@src.lab", &[b"a@d1.lab"])
        .edit(|b| before_recipients(b, b'W', format!("{warn_at:>15}").as_bytes()))
        .write();
    w.start();
    assert!(w.defer.wait_requests(1, T), "{}", w.diagnostics());
    assert_eq!(flushes(&w.defer.requests()), vec![(2, 0, id.clone())]);
    assert!(common::wait_until(T, || w.dir.queue_of(&id).as_deref() == Some("deferred")));
    let records = w.dir.records("deferred", &id).unwrap();
    let warn = records
        .iter()
        .find(|r| r.rec_type.byte() == b'W')
        .expect("W record");
    assert_eq!(
        warn.data,
        format!("{:>15}", -1).as_bytes(),
        "W rewritten to -1"
    );
}

#[test]
fn notify_success_asks_trace_for_the_success_notice() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let (id, _) = w
        .dir
        .message(b"sender@src.lab", &[b"a@d1.lab"])
        .edit(|b| b.qmgr_flags = 0x4)
        .write();
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    assert_eq!(flushes(&w.trace.requests()), vec![(5, 0, id)]);
}

#[test]
fn verp_mail_gets_one_delivery_and_sender_per_recipient() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let (id, _) = w
        .dir
        .message(b"sender@src.lab", &[b"v1@d1.lab", b"v2@d1.lab"])
        .edit(|b| before_recipients(b, b'V', b"+="))
        .write();
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    let mut senders: Vec<String> = w
        .agent("smtp")
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.recipients.len(), 1);
            String::from_utf8_lossy(&r.sender).into_owned()
        })
        .collect();
    senders.sort();
    assert_eq!(
        senders,
        ["sender+v1=d1.lab@src.lab", "sender+v2=d1.lab@src.lab"]
    );
}

#[test]
fn a_content_filter_routes_without_asking_trivial_rewrite() {
    let mut w = World::new();
    w.add_agent("myfilter", Behaviour::Ok);
    let (id, _) = w
        .dir
        .message(b"sender@src.lab", &[b"a@d1.lab", b"b@d2.lab"])
        .edit(|b| {
            b.extra(b'L', b"myfilter:[127.0.0.1]:10025");
        })
        .write();
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    let requests = w.agent("myfilter").requests();
    assert_eq!(requests.len(), 1, "one next hop: one delivery");
    assert_eq!(requests[0].nexthop, b"[127.0.0.1]:10025");
    assert_eq!(requests[0].recipients.len(), 2);
    assert!(w.rewrite.resolves().is_empty());
}

#[test]
fn a_redirect_delivers_the_first_recipient_to_the_new_address_only() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let (id, _) = w
        .dir
        .message(b"sender@src.lab", &[b"a@d1.lab", b"b@d2.lab"])
        .edit(|b| {
            b.extra(b'>', b"other@d3.lab");
        })
        .write();
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    let requests = w.agent("smtp").requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].nexthop, b"d3.lab");
    let rcpts: Vec<&[u8]> = requests[0].recipients.iter().map(|r| r.address()).collect();
    assert_eq!(rcpts, [b"other@d3.lab"]);
    let kinds: Vec<&str> = w
        .rewrite
        .calls()
        .iter()
        .map(|c| match c {
            common::rewrite::RewriteCall::Rewrite(_) => "rewrite",
            common::rewrite::RewriteCall::Resolve(_) => "resolve",
        })
        .collect();
    assert_eq!(
        kinds,
        ["rewrite", "resolve"],
        "canonicalise, then resolve the new address"
    );
}

#[test]
fn defer_transports_park_mail_behind_retry_until_flushed() {
    let mut w = World::with_params(&[("defer_transports", "smtp")]);
    w.add_agent("smtp", Behaviour::Ok);
    w.add_agent("retry", Behaviour::DeferPerRecipient);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    assert!(w.agent("retry").wait_requests(1, T), "{}", w.diagnostics());
    assert_eq!(
        w.agent("retry").requests()[0].nexthop,
        b"4.3.2 deferred transport"
    );
    assert!(common::wait_until(T, || w.dir.queue_of(&id).as_deref() == Some("deferred")));
    // postqueue -f: FADI ignores defer_transports and the time stamps.
    w.master().trigger(b"FADI").unwrap();
    w.expect_log(&format!("{id}: removed"), T);
    assert_eq!(w.agent("smtp").requests().len(), 1);
}

#[test]
fn mail_to_the_local_double_bounce_address_is_discarded() {
    let mut w = World::new();
    let id = w.drop_message("", &["double-bounce"]);
    w.start();
    w.expect_log(
        &format!("{id}: to=<double-bounce@fakehost.localdomain>, relay=none, delay="),
        T,
    );
    let line = w.expect_log("undeliverable postmaster notification discarded", T);
    assert!(line.contains("dsn=2.0.0, status=sent"), "{line}");
    w.expect_log(&format!("{id}: removed"), T);
}

#[test]
fn odd_senders_are_logged_in_external_quoted_form() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let id = w.drop_message("john doe@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(&format!("{id}: from=<\"john doe\"@src.lab>, size="), T);
    w.expect_log(&format!("{id}: removed"), T);
}

#[test]
fn when_retry_is_unavailable_too_the_deferral_is_recorded_through_defer() {
    // Neither private/smtp nor private/retry exists.
    let mut w = World::new();
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    let line = w.expect_log(&format!("{id}: to=<a@d1.lab>, relay=none, delay="), T);
    assert!(
        line.ends_with("dsn=4.3.0, status=deferred (mail transport unavailable)"),
        "{line}"
    );
    assert!(w.defer.wait_requests(1, T), "{}", w.diagnostics());
    match &w.defer.requests()[0] {
        BounceRequest::Append(a) => {
            assert_eq!(a.recipient.address(), b"a@d1.lab");
            assert_eq!(a.dsn.status, b"4.3.0");
            assert_eq!(a.dsn.action, b"delayed");
        }
        other => panic!("expected defer_append, got {other:?}"),
    }
    assert!(common::wait_until(T, || w.dir.queue_of(&id).as_deref() == Some("deferred")));
}

#[test]
fn transport_rate_delay_spaces_deliveries_of_one_transport() {
    let mut w = World::with_params(&[("smtp_transport_rate_delay", "1s")]);
    w.add_agent("smtp", Behaviour::Ok);
    let a = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    let b = w.drop_message("sender@src.lab", &["b@d2.lab"]);
    w.start();
    assert!(w.agent("smtp").wait_requests(1, T), "{}", w.diagnostics());
    let first = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        w.agent("smtp").requests().len(),
        1,
        "one delivery per second"
    );
    assert!(w.agent("smtp").wait_requests(2, T), "{}", w.diagnostics());
    assert!(
        first.elapsed() >= Duration::from_millis(700),
        "{:?}",
        first.elapsed()
    );
    w.expect_log(&format!("{a}: removed"), T);
    w.expect_log(&format!("{b}: removed"), T);
}

#[test]
fn a_large_list_is_read_in_batches_and_keeps_flowing() {
    let mut w = World::with_params(&[
        ("qmgr_message_active_limit", "300"),
        ("qmgr_message_recipient_limit", "300"),
    ]);
    w.add_agent("smtp", Behaviour::Ok);
    // One delivery of the first batch (the first 300 recipients) never finishes.
    w.agent("smtp").set_policy(|req| {
        if req
            .recipients
            .iter()
            .any(|r| r.address() == b"r0299@d1.lab")
        {
            Behaviour::Hang
        } else {
            Behaviour::Ok
        }
    });
    let rcpts: Vec<String> = (0..1000).map(|i| format!("r{i:04}@d1.lab")).collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    w.drop_message("list@src.lab", &refs);
    w.start();
    // The later batches are read and delivered while that one is still out, as the C
    // daemon's qmgr_message_realloc does, instead of waiting for the whole first batch.
    let later_batches_delivered = common::wait_until(Duration::from_secs(20), || {
        let handed: usize = w
            .agent("smtp")
            .requests()
            .iter()
            .map(|r| r.recipients.len())
            .sum();
        handed == 1000
    });
    assert!(later_batches_delivered, "{}", w.diagnostics());
    let mut seen: Vec<Vec<u8>> = w
        .agent("smtp")
        .requests()
        .iter()
        .flat_map(|r| r.recipients.iter().map(|x| x.address().to_vec()))
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 1000, "every recipient handed out exactly once");
    w.agent("smtp").release();
}

#[test]
fn a_large_list_is_delivered_exactly_once_and_removed() {
    let mut w = World::with_params(&[
        ("qmgr_message_active_limit", "300"),
        ("qmgr_message_recipient_limit", "300"),
    ]);
    w.add_agent("smtp", Behaviour::Ok);
    let rcpts: Vec<String> = (0..1000)
        .map(|i| format!("r{i:04}@d{}.lab", i % 3))
        .collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let id = w.drop_message("list@src.lab", &refs);
    w.start();
    w.expect_log(&format!("{id}: removed"), Duration::from_secs(30));
    let mut seen: Vec<Vec<u8>> = w
        .agent("smtp")
        .requests()
        .iter()
        .flat_map(|r| r.recipients.iter().map(|x| x.address().to_vec()))
        .collect();
    assert_eq!(seen.len(), 1000);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 1000);
}
