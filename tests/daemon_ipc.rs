//! The daemon's time limits and its trivial-rewrite client in the fake world: the watchdog,
//! the request-write bound towards agents, reconnects, retries and their log lines.

mod common;

use std::time::{Duration, Instant};

use common::agent::Behaviour;
use common::rewrite::{Resolution, RewriteCall};
use common::world::World;
use oqmgr::proto::rewrite::resolve_flags;

const T: Duration = Duration::from_secs(10);

/// The C trigger server re-arms its watchdog at the top of every loop pass, so a pass that gets
/// stuck dies a full qmgr_daemon_timeout after it began, whatever the alarm's phase was.
#[test]
fn a_stuck_pass_dies_a_full_daemon_timeout_after_it_began() {
    let mut w = World::with_params(&[("qmgr_daemon_timeout", "3s")]);
    w.add_agent("smtp", Behaviour::Ok);
    // Mail for d2.lab goes to a transport with no agent (nor retry), so its deferral goes to
    // defer(8) synchronously, and the defer service keeps that pass waiting.
    w.rewrite.route_domain("d2.lab", "nosuch");
    w.defer.set_delay(Duration::from_secs(20));
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    // The first pass takes the message in right after the watchdog was first armed.
    w.expect_log(&format!("{id}: from=<sender@src.lab>"), T);
    let armed = Instant::now();
    w.expect_log(&format!("{id}: removed"), T);
    // 0.7 s into an alarm step, a trigger ends one pass; the next pass begins at once.
    let stuck = w.drop_message("sender@src.lab", &["b@d2.lab"]);
    let phase = Duration::from_millis(1700);
    std::thread::sleep(phase.saturating_sub(armed.elapsed()));
    w.master().trigger(b"I").expect("trigger answered");
    let pass_began = Instant::now();
    // That pass (or one right after, once trivial-rewrite answered) takes the message in and
    // gets stuck on its deferral.
    w.expect_log(&format!("{stuck}: from=<sender@src.lab>"), T);
    w.expect_log("fatal: watchdog timeout", T);
    let took = pass_began.elapsed();
    assert!(
        took >= Duration::from_millis(2800) && took < Duration::from_millis(4500),
        "watchdog fatal {took:?} after the pass began\n{}",
        w.diagnostics()
    );
}

fn kinds(w: &World) -> Vec<&'static str> {
    w.rewrite
        .calls()
        .iter()
        .map(|c| match c {
            RewriteCall::Rewrite(_) => "rewrite",
            RewriteCall::Resolve(_) => "resolve",
        })
        .collect()
}

/// trivial-rewrite sets its reply flags when a lookup table changed, so that clients
/// reconnect and a fresh process with the new table answers them (resolve_clnt's
/// clnt_stream_recover on non-zero server flags).
#[test]
fn a_reply_that_asks_for_a_reconnect_gets_a_new_connection_for_the_next_request() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    w.rewrite.set_server_flags(1);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab", "b@d2.lab", "c@d3.lab"]);
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    assert_eq!(w.rewrite.resolves().len(), 3);
    assert_eq!(w.rewrite.connections(), 3, "{}", w.diagnostics());
    assert!(w.postlog.matching("problem talking").is_empty());
}

#[test]
fn an_idle_rewrite_connection_is_closed_after_ipc_idle_by_the_clock_alone() {
    // The loop wakes for the ipc_idle deadline itself (no once-a-second polling, no other
    // event): the idle connection is gone before the next message comes, which then gets a
    // new one.
    let mut w = World::with_params(&[("ipc_idle", "1s")]);
    w.add_agent("smtp", Behaviour::Ok);
    let first = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(&format!("{first}: removed"), T);
    assert_eq!(w.rewrite.connections(), 1);
    std::thread::sleep(Duration::from_millis(2500));
    let second = w.drop_message("sender@src.lab", &["b@d2.lab"]);
    let _ = w.master().trigger(b"I");
    w.expect_log(&format!("{second}: removed"), T);
    assert_eq!(w.rewrite.connections(), 2, "{}", w.diagnostics());
}

#[test]
fn rewrite_service_name_names_the_socket() {
    let mut w = World::with_params(&[("rewrite_service_name", "rewrite-b")]);
    w.add_agent("smtp", Behaviour::Ok);
    let other = common::rewrite::FakeRewrite::start_named(&w.dir, "rewrite-b");
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    assert_eq!(other.resolved_addresses(), ["a@d1.lab"]);
    assert!(w.rewrite.calls().is_empty());
}

/// resolve_clnt refuses a reply without a transport with its own warning, and asks again a
/// second later on a new connection.
#[test]
fn a_null_transport_result_is_logged_as_resolve_clnt_does_and_asked_again() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let first = AtomicBool::new(true);
    w.rewrite.set_resolver(move |req| {
        let transport = if first.swap(false, Ordering::SeqCst) {
            ""
        } else {
            "smtp"
        };
        Resolution::new(
            transport,
            "d1.lab",
            &req.address,
            resolve_flags::CLASS_DEFAULT,
        )
    });
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(
        "warning: resolve_clnt: null transport result for: <a@d1.lab>",
        T,
    );
    w.expect_log(&format!("{id}: removed"), T);
    assert_eq!(w.rewrite.resolves().len(), 2);
    assert!(
        w.postlog.matching("problem talking").is_empty(),
        "{}",
        w.diagnostics()
    );
    // A close between lists is quiet in attr_scan too: no end-of-input warning.
    assert!(
        w.postlog.matching("end-of-input").is_empty(),
        "{}",
        w.diagnostics()
    );
}

#[test]
fn a_null_recipient_result_is_logged_too() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let first = AtomicBool::new(true);
    w.rewrite.set_resolver(move |req| {
        let recipient: &[u8] = if first.swap(false, Ordering::SeqCst) {
            b""
        } else {
            &req.address
        };
        Resolution::new("smtp", "d1.lab", recipient, resolve_flags::CLASS_DEFAULT)
    });
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(
        "warning: resolve_clnt: null recipient result for: <a@d1.lab>",
        T,
    );
    w.expect_log(&format!("{id}: removed"), T);
}

/// resolve_clnt complains about a lost connection only from the second attempt at the same
/// request on (an end of file leaves errno 0).
#[test]
fn one_hang_up_is_retried_quietly_two_in_a_row_are_logged() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    w.rewrite.hang_up_on_next(1);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    assert_eq!(w.rewrite.resolves().len(), 2);
    assert!(
        w.postlog.matching("problem talking").is_empty(),
        "{}",
        w.diagnostics()
    );

    w.rewrite.hang_up_on_next(2);
    let id = w.drop_message("sender@src.lab", &["b@d2.lab"]);
    w.master().trigger(b"I").expect("trigger");
    w.expect_log(&format!("{id}: removed"), T);
    assert_eq!(
        w.postlog.matching("problem talking"),
        w.postlog
            .matching("warning: problem talking to service rewrite: Success"),
    );
    assert_eq!(
        w.postlog.matching("problem talking").len(),
        1,
        "{}",
        w.diagnostics()
    );
}

/// rewrite_clnt_internal: the redirect address goes to trivial-rewrite in external (quoted)
/// form, and the answer is taken back to internal form.
#[test]
fn a_redirect_address_is_sent_for_rewriting_quoted() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let (id, _) = w
        .dir
        .message(b"sender@src.lab", &[b"a@d1.lab"])
        .edit(|b| {
            b.extra(b'>', b"john doe@d3.lab");
        })
        .write();
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    assert_eq!(kinds(&w), ["rewrite", "resolve"]);
    let calls = w.rewrite.calls();
    let RewriteCall::Rewrite(rewrite) = &calls[0] else {
        panic!("{calls:?}");
    };
    assert_eq!(rewrite.address, b"\"john doe\"@d3.lab");
    assert_eq!(w.rewrite.resolved_addresses(), ["john doe@d3.lab"]);
    let requests = w.agent("smtp").requests();
    assert_eq!(requests[0].recipients[0].address(), b"john doe@d3.lab");
}

/// resolve_clnt's one-entry cache: the same question within 30 s is answered without asking.
#[test]
fn the_same_question_twice_in_a_row_is_asked_once() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let first = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(&format!("{first}: removed"), T);
    // One at a time, so that the order of the questions is known.
    let second = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.master().trigger(b"I").expect("trigger");
    w.expect_log(&format!("{second}: removed"), T);
    let third = w.drop_message("other@src.lab", &["a@d1.lab"]);
    w.master().trigger(b"I").expect("trigger");
    w.expect_log(&format!("{third}: removed"), T);
    let asked: Vec<(String, String)> = w
        .rewrite
        .resolves()
        .iter()
        .map(|r| {
            (
                String::from_utf8_lossy(&r.sender).into_owned(),
                String::from_utf8_lossy(&r.address).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        asked,
        [
            ("sender@src.lab".to_string(), "a@d1.lab".to_string()),
            ("other@src.lab".to_string(), "a@d1.lab".to_string()),
        ]
    );
    assert_eq!(w.agent("smtp").requests().len(), 3);
}

/// mail_params_init checks default_privs, mail_owner, setgid_group and their overlap, in that
/// order, and any failure is fatal at start-up.
#[test]
fn bad_default_privs_or_setgid_group_are_fatal_at_start_up() {
    let owner = common::queue_dir::mail_owner_name();
    let cases = [
        (
            vec![("default_privs", "root")],
            "parameter default_privs: user root has privileged user ID".to_string(),
        ),
        (
            vec![("setgid_group", "no-such-group-oqmgr")],
            "parameter setgid_group: unknown group name: no-such-group-oqmgr".to_string(),
        ),
        (
            vec![("default_privs", owner.as_str())],
            format!("parameters default_privs and mail_owner specify the same user {owner}"),
        ),
    ];
    for (params, fatal) in cases {
        let mut w = World::with_params(&params);
        w.start();
        let line = w.expect_log(&fatal, T);
        assert!(line.contains("fatal: file "), "{line}");
        let status = w.master().wait_exit(T).expect("exit");
        assert_eq!(status.code(), Some(1));
    }
}

/// How long after the agent `agent` got its first connection the daemon logged `pattern`.
fn from_first_connection_to_log(w: &World, agent: &str, pattern: &str) -> Duration {
    assert!(
        common::wait_until(T, || w.agent(agent).connections() == 1),
        "{}",
        w.diagnostics()
    );
    let connected = Instant::now();
    w.expect_log(pattern, T);
    connected.elapsed()
}

/// The C daemon writes a delivery request blocking, bounded by qmgr_ipc_timeout: an agent that
/// announces itself and then reads nothing costs that long, then `write to process` with a
/// time-out, and the transport's mail goes to retry as for any unavailable transport.
#[test]
fn a_request_the_agent_never_reads_times_out_after_qmgr_ipc_timeout_and_goes_to_retry() {
    let mut w = World::with_params(&[
        ("qmgr_ipc_timeout", "2s"),
        ("smtp_destination_recipient_limit", "1000"),
    ]);
    w.add_agent("smtp", Behaviour::Stall);
    w.add_agent("retry", Behaviour::DeferPerRecipient);
    // 400 recipients of 1000 bytes: one request far larger than a socket buffer.
    let local = "x".repeat(1000);
    let recipients: Vec<String> = (0..400).map(|i| format!("{local}{i}@d1.lab")).collect();
    let rcpts: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let id = w.drop_message("sender@src.lab", &rcpts);
    w.start();
    let waited = from_first_connection_to_log(
        &w,
        "smtp",
        "warning: write to process (smtp): Connection timed out",
    );
    assert!(
        waited >= Duration::from_millis(1800),
        "gave up after {waited:?}, before qmgr_ipc_timeout"
    );
    assert!(w.agent("retry").wait_requests(1, T), "{}", w.diagnostics());
    assert_eq!(
        w.agent("retry").requests()[0].nexthop,
        b"4.3.0 mail transport unavailable"
    );
    assert!(
        common::wait_until(T, || w.dir.queue_of(&id).as_deref() == Some("deferred")),
        "{}",
        w.diagnostics()
    );
}

/// As the C daemon's qmgr_transport_event: on a rate-delayed transport, a failed connect is
/// logged at once but acted on (transport suspended, mail to retry) only after the delay.
#[test]
fn a_failed_connect_on_a_rate_delayed_transport_is_acted_on_after_the_delay() {
    let mut w = World::with_params(&[("smtp_transport_rate_delay", "2s")]);
    w.add_agent("retry", Behaviour::DeferPerRecipient);
    w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(
        "warning: connect to transport private/smtp: No such file or directory",
        T,
    );
    let logged = Instant::now();
    assert!(w.agent("retry").wait_requests(1, T), "{}", w.diagnostics());
    let waited = logged.elapsed();
    assert!(
        waited >= Duration::from_millis(1700),
        "mail went to retry {waited:?} after the failed connect"
    );
}

/// Likewise an agent that hangs up without announcing itself: its announcement is read, and
/// found malformed, only when the rate delay is over.
#[test]
fn a_silent_agent_on_a_rate_delayed_transport_is_judged_after_the_delay() {
    let mut w = World::with_params(&[("smtp_transport_rate_delay", "2s")]);
    w.add_agent("smtp", Behaviour::NoAnnounce);
    w.add_agent("retry", Behaviour::DeferPerRecipient);
    w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    let waited = from_first_connection_to_log(
        &w,
        "smtp",
        "warning: private/smtp socket: malformed response",
    );
    assert!(
        waited >= Duration::from_millis(1700),
        "judged {waited:?} after the connection"
    );
    assert!(w.agent("retry").wait_requests(1, T), "{}", w.diagnostics());
}
