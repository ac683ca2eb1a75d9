//! The daemon's status socket `private/oqmgr-status` in the fake Postfix world: what
//! `oqmgrctl status` would read, and that asking (often, badly, or not at all) never gets
//! in the way of mail.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::agent::Behaviour;
use common::world::World;
use oqmgr::proto::attr::{AttrDecoder, AttrMessage};
use oqmgr::proto::status::{Snapshot, SnapshotReader, StatusRequest, STATUS_SOCKET};

const T: Duration = Duration::from_secs(10);

/// The daemon's documented limits (status_server.rs).
const MAX_CLIENTS: usize = 16;
const CLIENT_TIME_LIMIT: Duration = Duration::from_secs(10);

fn now() -> u64 {
    u64::try_from(common::queue_dir::unix_now()).unwrap()
}

fn socket_path(w: &World) -> std::path::PathBuf {
    w.dir.queue_dir().join(STATUS_SOCKET)
}

/// Waits for the daemon's status socket to answer (a whole query: when it returns, the
/// daemon has let go of the client, so no slot stays taken).
fn wait_for_socket(w: &World) {
    let up = common::wait_until(T, || query(w).is_ok());
    assert!(up, "no status socket\n{}", w.diagnostics());
}

fn connect(w: &World) -> UnixStream {
    let s = UnixStream::connect(socket_path(w)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    s
}

/// One `oqmgrctl status` exchange, as the client would do it.
fn query(w: &World) -> Result<Snapshot, String> {
    let mut s = UnixStream::connect(socket_path(w)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(T)).map_err(|e| e.to_string())?;
    s.write_all(&StatusRequest.to_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes)
        .map_err(|e| format!("read: {e}"))?;
    let lists = AttrDecoder::default()
        .feed(&bytes)
        .map_err(|e| e.to_string())?;
    let mut reader = SnapshotReader::default();
    for list in &lists {
        reader.push(list).map_err(|e| e.to_string())?;
    }
    reader.finish().map_err(|e| e.to_string())
}

/// Whether the server has closed `s` (EOF or reset); `false` while it is open and silent.
fn closed_by_server(s: &mut UnixStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("the server sent {n} bytes unasked"),
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

fn assert_no_warnings(w: &World) {
    let warnings = w.postlog.matching("warning:");
    assert!(warnings.is_empty(), "{warnings:?}\n{}", w.diagnostics());
}

#[test]
fn a_query_returns_the_live_state_dead_and_busy_destinations_first() {
    let mut w = World::with_params(&[
        ("smtp_initial_destination_concurrency", "1"),
        ("qmgr_message_active_limit", "123"),
        ("qmgr_message_recipient_limit", "456"),
        ("queue_run_delay", "100s"),
    ]);
    w.rewrite.route_domain("down.lab", "nosuch");
    w.add_agent("retry", Behaviour::DeferPerRecipient);
    w.add_agent("smtp", Behaviour::Ok);
    w.agent("smtp").set_policy(|r| match &r.nexthop[..] {
        b"stall.lab" => Behaviour::Hang,
        b"refused.lab" => Behaviour::defer(
            "4.4.1",
            "connect to refused.lab[127.0.0.1]:25: Connection refused",
        ),
        _ => Behaviour::Ok,
    });
    let stalled = w.drop_message("sender@src.lab", &["x@stall.lab"]);
    let refused = w.drop_message("sender@src.lab", &["y@refused.lab"]);
    let down = w.drop_message("sender@src.lab", &["z@down.lab"]);
    let ok = w.drop_message("sender@src.lab", &["ok@fine.lab"]);
    let before = now();
    w.start();
    w.expect_in(&refused, Some("deferred"));
    w.expect_in(&down, Some("deferred"));
    w.expect_log(&format!("{ok}: removed"), T);
    assert!(w.agent("smtp").wait_requests(3, T), "{}", w.diagnostics());
    assert_eq!(w.dir.queue_of(&stalled).as_deref(), Some("active"));

    let snap = query(&w).unwrap_or_else(|e| panic!("{e}\n{}", w.diagnostics()));
    let after = now();
    let s = &snap.summary;
    assert_eq!(s.pid, u64::try_from(w.master().pid()).unwrap());
    assert!((before..=after).contains(&s.started), "{s:?}");
    assert!((s.started..=after).contains(&s.now), "{s:?}");
    assert_eq!(s.active_messages, w.dir.list("active").len() as u64);
    assert_eq!((s.active_messages, s.active_recipients), (1, 1), "{s:?}");
    assert_eq!((s.message_limit, s.recipient_limit), (123, 456));
    assert!(s.flow_tokens >= 0, "{s:?}");
    assert!(
        (before + 100..=after + 100).contains(&s.next_deferred_scan),
        "{s:?}"
    );
    assert_eq!(s.destinations, snap.destinations.len() as u64);

    // Trouble first: the dead destination, then the busy one.
    let first = &snap.destinations[0];
    assert_eq!(
        (&first.transport[..], &first.nexthop[..]),
        (&b"smtp"[..], &b"refused.lab"[..]),
        "{snap:#?}"
    );
    assert!(first.dead && first.window == 0, "{first:?}");
    assert!(first.dead_until > after, "{first:?}");
    assert_eq!(
        String::from_utf8_lossy(&first.reason),
        "delivery temporarily suspended: connect to refused.lab[127.0.0.1]:25: Connection refused"
    );
    let busy = &snap.destinations[1];
    assert_eq!(&busy.nexthop[..], b"stall.lab", "{snap:#?}");
    assert!(busy.busy >= 1 && !busy.dead, "{busy:?}");
    assert_eq!(
        busy.window_limit, 20,
        "default_destination_concurrency_limit"
    );

    let transport = |name: &[u8]| {
        snap.transports
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no transport {name:?} in {snap:#?}"))
    };
    let smtp = transport(b"smtp");
    assert!(!smtp.dead && smtp.busy >= 1, "{smtp:?}");
    assert!(
        smtp.deliveries_ok >= 1 && smtp.deliveries_deferred >= 1,
        "{smtp:?}"
    );
    let nosuch = transport(b"nosuch");
    assert!(nosuch.dead && nosuch.dead_until > after, "{nosuch:?}");
    assert_eq!(
        String::from_utf8_lossy(&nosuch.reason),
        "mail transport unavailable"
    );
    assert_eq!(nosuch.unavailable, 1, "{nosuch:?}");

    // Only the queue manager's owner (and root) can ask.
    let mode = std::fs::metadata(socket_path(&w))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The one warning is the missing transport's: the query added none.
    let warnings = w.postlog.matching("warning:");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0]
        .ends_with("warning: connect to transport private/nosuch: No such file or directory"));
}

#[test]
fn idle_connections_and_a_stream_of_queries_do_not_hold_up_mail() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    w.start();
    wait_for_socket(&w);

    // 50 connections that never write nor read: MAX_CLIENTS are held, the rest closed at
    // once; the held ones are dropped after the time limit.
    let opened = Instant::now();
    let mut idle: Vec<UnixStream> = (0..50).map(|_| connect(&w)).collect();
    let mut closed = vec![false; idle.len()];
    let mut count_closed = |idle: &mut Vec<UnixStream>| {
        for (s, c) in idle.iter_mut().zip(closed.iter_mut()) {
            *c = *c || closed_by_server(s);
        }
        closed.iter().filter(|c| **c).count()
    };
    let rejected = common::wait_until(T, || count_closed(&mut idle) == 50 - MAX_CLIENTS);
    assert!(rejected, "{} closed", count_closed(&mut idle));
    assert!(opened.elapsed() < CLIENT_TIME_LIMIT / 2);
    // A query meanwhile is refused at once, not kept waiting.
    let asked = Instant::now();
    assert!(query(&w).is_err());
    assert!(asked.elapsed() < Duration::from_secs(2));

    // Mail flows all the same.
    let ids: Vec<String> = (0..20)
        .map(|i| w.drop_message("sender@src.lab", &[&format!("u{i}@d{}.lab", i % 4)]))
        .collect();
    w.master().trigger(b"W").unwrap();
    for id in &ids {
        w.expect_log(&format!("{id}: removed"), T);
    }

    // The held ones go when their time is up, not before.
    let expired = common::wait_until(CLIENT_TIME_LIMIT + T, || count_closed(&mut idle) == 50);
    assert!(expired, "{} closed", count_closed(&mut idle));
    assert!(opened.elapsed() >= CLIENT_TIME_LIMIT - Duration::from_secs(1));
    drop(idle);

    // 200 queries in a row while a batch of mail is delivered: every one answered.
    let ids: Vec<String> = (0..100)
        .map(|i| w.drop_message("sender@src.lab", &[&format!("v{i}@e{}.lab", i % 7)]))
        .collect();
    w.master().trigger(b"W").unwrap();
    let mut seen_active = 0;
    for i in 0..200 {
        let snap = query(&w).unwrap_or_else(|e| panic!("query {i}: {e}\n{}", w.diagnostics()));
        seen_active = seen_active.max(snap.summary.active_messages);
        assert!(snap.summary.active_messages <= 20_000);
    }
    for id in &ids {
        w.expect_log(&format!("{id}: removed"), T);
    }
    assert!(w.dir.list("active").is_empty(), "{}", w.diagnostics());
    let snap = query(&w).unwrap();
    assert_eq!(snap.summary.active_messages, 0);
    let smtp = snap.transports.iter().find(|t| t.name == b"smtp").unwrap();
    assert_eq!(smtp.deliveries_ok, 120, "{smtp:?}");
    assert!(w.master().is_running());
    assert_no_warnings(&w);
}

#[test]
fn garbage_or_a_huge_request_is_dropped_and_the_daemon_goes_on() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    w.start();
    wait_for_socket(&w);

    // Not a status request: an HTTP probe (NULs included, so it is a complete list), and an
    // attribute list asking for something else.
    for junk in [
        &b"GET /metrics HTTP/1.0\r\n\r\n\0\0\0"[..],
        b"request\0flush\0\0",
    ] {
        let mut s = connect(&w);
        s.write_all(junk).unwrap();
        let mut answer = Vec::new();
        let started = Instant::now();
        let _ = s.read_to_end(&mut answer);
        assert!(answer.is_empty(), "{answer:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    // A request far over the limit: the daemon stops reading and hangs up.
    let mut s = connect(&w);
    let started = Instant::now();
    let huge = vec![b'x'; 4 << 20];
    let written = s.write_all(&huge);
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    assert!(written.is_err() || read.is_ok(), "{written:?} {read:?}");
    assert!(answer.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));

    // A request cut off by its client.
    let mut s = connect(&w);
    s.write_all(&StatusRequest.to_bytes()[..4]).unwrap();
    drop(s);

    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.master().trigger(b"W").unwrap();
    w.expect_log(&format!("{id}: removed"), T);
    let snap = query(&w).unwrap_or_else(|e| panic!("{e}\n{}", w.diagnostics()));
    assert_eq!(snap.summary.active_messages, 0);
    assert!(w.master().is_running());
    assert_no_warnings(&w);
}

#[test]
fn a_status_socket_that_cannot_be_made_is_one_warning_and_mail_goes_on() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    // A non-empty directory where the socket goes cannot be replaced.
    let path = socket_path(&w);
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("keep"), b"").unwrap();
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    let warnings = w.postlog.matching("warning:");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&format!("cannot create status socket {STATUS_SOCKET}: ")),
        "{warnings:?}"
    );
    assert!(w.master().is_running());
}

#[test]
fn a_stale_socket_is_replaced() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    // Left behind by an earlier queue manager: nobody listens on it.
    drop(std::os::unix::net::UnixListener::bind(socket_path(&w)).unwrap());
    assert!(UnixStream::connect(socket_path(&w)).is_err());
    w.start();
    wait_for_socket(&w);
    let snap = query(&w).unwrap();
    assert_eq!(snap.summary.pid, u64::try_from(w.master().pid()).unwrap());
    assert_no_warnings(&w);
}
