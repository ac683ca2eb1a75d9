//! The daemon in a fake Postfix world: fake master, trivial-rewrite, agents and bounce on unix
//! sockets in a temporary queue directory. What an administrator would see: files moved, mail
//! handed to agents, log lines.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::agent::Behaviour;
use common::world::World;

const T: Duration = Duration::from_secs(10);

#[test]
fn delivers_a_message_and_removes_it() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab", "b@d1.lab", "c@d2.lab"]);
    w.start();
    w.expect_log(&format!("{id}: from=<sender@src.lab>, size="), T);
    w.expect_log(&format!("{id}: removed"), T);
    let requests = w.agent("smtp").requests();
    let mut per_hop: Vec<(String, usize)> = requests
        .iter()
        .map(|r| {
            (
                String::from_utf8_lossy(&r.nexthop).into_owned(),
                r.recipients.len(),
            )
        })
        .collect();
    per_hop.sort();
    assert_eq!(
        per_hop,
        vec![("d1.lab".to_string(), 2), ("d2.lab".to_string(), 1)]
    );
    assert!(w.dir.list("active").is_empty(), "{}", w.diagnostics());
    assert!(w.dir.list("incoming").is_empty());
    assert!(w.dir.list("deferred").is_empty());
}

fn now() -> i64 {
    common::queue_dir::unix_now()
}

#[test]
fn deferred_mail_goes_to_deferred_with_the_minimal_backoff_time() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::DeferPerRecipient);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_in(&id, Some("deferred"));
    let mtime = w.dir.mtime("deferred", &id).unwrap();
    let expected = now() + 300;
    assert!(
        (expected - 5..=expected + 1).contains(&mtime),
        "mtime {mtime} vs {expected}"
    );
    // Hashed by the default hash_queue_depth 1.
    let path = w.dir.path_of("deferred", &id);
    assert!(path.exists(), "{path:?}");
    assert!(w.dir.list("active").is_empty());
}

#[test]
fn an_agent_that_crashes_or_babbles_defers_the_mail_and_nothing_is_lost() {
    for behaviour in [Behaviour::Crash, Behaviour::Garbage] {
        let mut w = World::new();
        w.add_agent("smtp", behaviour.clone());
        let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
        w.start();
        w.expect_log("warning: private/smtp socket: malformed response", T);
        w.expect_in(&id, Some("deferred"));
        // attr_scan is quiet about a close between lists, and names a reply cut off inside
        // a field (the garbage has no NUL) before the queue manager's own line.
        let cut = w.postlog.matching(
            "warning: unexpected end-of-input from private/smtp socket while reading input attribute name",
        );
        let expected = usize::from(behaviour == Behaviour::Garbage);
        assert_eq!(cut.len(), expected, "{behaviour:?}\n{}", w.diagnostics());
    }
}

#[test]
fn agents_that_crash_only_defer_their_mail_and_every_message_is_tried() {
    // The C daemon's crash path throttles nothing (qmgr_deliver_update reads an empty hop
    // status): twelve messages, twelve attempts, nothing parked behind retry.
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Crash);
    w.add_agent("retry", Behaviour::DeferPerRecipient);
    let ids: Vec<String> = (0..12)
        .map(|i| w.drop_message("sender@src.lab", &[&format!("u{i}@d1.lab")]))
        .collect();
    w.start();
    for id in &ids {
        w.expect_in(id, Some("deferred"));
    }
    assert_eq!(w.agent("smtp").requests().len(), 12, "{}", w.diagnostics());
    assert!(
        w.agent("retry").requests().is_empty(),
        "{}",
        w.diagnostics()
    );
    // The last file can move before its warning's datagram reaches the fake postlogd.
    let warning = "warning: private/smtp socket: malformed response";
    assert!(
        w.postlog.wait_for_count(warning, 12, T),
        "{}",
        w.diagnostics()
    );
    assert_eq!(w.postlog.matching(warning).len(), 12);
    assert!(w
        .postlog
        .matching("delivery temporarily suspended")
        .is_empty());
}

#[test]
fn a_missing_transport_is_deferred_through_retry() {
    let mut w = World::new();
    w.rewrite.route_domain("d1.lab", "nosuch");
    w.add_agent("retry", Behaviour::DeferPerRecipient);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(
        "warning: connect to transport private/nosuch: No such file or directory",
        T,
    );
    assert!(w.agent("retry").wait_requests(1, T), "{}", w.diagnostics());
    let req = &w.agent("retry").requests()[0];
    assert_eq!(req.nexthop, b"4.3.0 mail transport unavailable");
    w.expect_in(&id, Some("deferred"));
    // While it is dead, the next message makes no attempt to reach it.
    let id2 = w.drop_message("sender@src.lab", &["b@d1.lab"]);
    w.master().trigger(b"W").unwrap();
    w.expect_in(&id2, Some("deferred"));
    let attempts = w
        .postlog
        .matching("connect to transport private/nosuch")
        .len();
    assert_eq!(attempts, 1, "{}", w.diagnostics());
}

#[test]
fn a_dead_destination_parks_its_mail_behind_retry() {
    let mut w = World::with_params(&[("smtp_initial_destination_concurrency", "1")]);
    w.add_agent(
        "smtp",
        Behaviour::defer(
            "4.4.1",
            "connect to d1.lab[127.0.0.1]:25: Connection refused",
        ),
    );
    w.add_agent("retry", Behaviour::DeferPerRecipient);
    let a = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    let b = w.drop_message("sender@src.lab", &["b@d1.lab"]);
    w.start();
    w.expect_in(&a, Some("deferred"));
    w.expect_in(&b, Some("deferred"));
    assert_eq!(
        w.agent("smtp").requests().len(),
        1,
        "one failure kills window 1"
    );
    let retry = w.agent("retry").requests();
    assert_eq!(retry.len(), 1, "{}", w.diagnostics());
    assert_eq!(
        String::from_utf8_lossy(&retry[0].nexthop),
        "4.4.1 delivery temporarily suspended: connect to d1.lab[127.0.0.1]:25: Connection refused"
    );
}

#[test]
fn a_corrupt_file_is_saved_in_corrupt() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let (id, _) = w
        .dir
        .message(b"x", &[])
        .raw(b"this is not a queue file")
        .write();
    w.start();
    w.expect_log(
        &format!(
            "warning: saving corrupt file \"{id}\" from queue \"active\" to queue \"corrupt\""
        ),
        T,
    );
    w.expect_in(&id, Some("corrupt"));
}

#[test]
fn triggers_are_answered_with_taken_and_avail_and_start_a_scan() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    w.start();
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.master().trigger(b"W").unwrap();
    w.expect_log(&format!("{id}: removed"), T);
    let status = w.master().wait_status(2, T);
    assert!(status.len() >= 2, "{}", w.diagnostics());
    assert_eq!(status[0].avail, 0);
    assert_eq!(status[1].avail, 1);
    assert!(status.iter().all(|s| s.generation == 0o13));
    assert!(status.iter().all(|s| s.pid == w.master().pid()));
}

#[test]
fn a_flood_of_trigger_bytes_is_harmless() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    w.start();
    for _ in 0..20 {
        // The daemon reads at most 1024 bytes and hangs up: the writer may see EPIPE.
        let _ = w.master().trigger(&[b'x'; 5000]);
    }
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    // Like unix_trigger, the client writes the request and its NUL separately; the daemon's
    // one read may take the request alone and hang up, so the NUL can meet EPIPE. What counts
    // is that the request got through.
    let _ = w.master().trigger(b"I");
    w.expect_log(&format!("{id}: removed"), T);
    assert!(w.master().is_running());
}

#[test]
fn reload_makes_the_daemon_exit_zero_and_the_next_one_finishes_the_work() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Hang);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    assert!(w.agent("smtp").wait_requests(1, T), "{}", w.diagnostics());
    w.master().reload();
    let status = w.master().wait_exit(T).expect("exit after reload");
    assert_eq!(status.code(), Some(0));
    // The message stayed in active/; a new queue manager takes it back and delivers it.
    assert_eq!(w.dir.queue_of(&id).as_deref(), Some("active"));
    w.agent("smtp").set_behaviour(Behaviour::Ok);
    w.agent("smtp").release();
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
}

#[test]
fn a_queue_manager_on_its_way_out_leaves_the_reloads_wakeup_to_the_next_one() {
    // At a reload master hangs up the old queue manager and at once sends a wake-up to the
    // service, so that the next one starts. When both are pending together the old one must
    // leave the wake-up alone, as the C trigger server (which serves its status descriptor
    // first) does; had it taken the wake-up, no queue manager would run until the next one.
    use std::io::{ErrorKind, Read, Write};
    let mut w = World::new();
    w.start();
    // One trigger served: the daemon is in its loop.
    w.master().trigger(b"I").expect("trigger");
    let pid = w.master().pid();
    // SAFETY: kill on our own child process.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    w.master().reload();
    let mut wakeup =
        std::os::unix::net::UnixStream::connect(w.master().listen_path()).expect("connect");
    wakeup.write_all(b"W\0").expect("write");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let status = w.master().wait_exit(T).expect("exit after reload");
    assert_eq!(status.code(), Some(0));
    // Still waiting in the listener's backlog: nobody accepted it, nobody closed it.
    wakeup
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 8];
    match wakeup.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the wake-up was taken: {other:?}\n{}", w.diagnostics()),
    }
}

#[test]
fn a_locked_file_is_skipped_and_retried_later() {
    use std::os::fd::AsRawFd;
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    // Hold the lock the way a delivery agent of a previous queue manager would; the lock
    // follows the file across renames.
    let file = std::fs::File::open(w.dir.path_of("incoming", &id)).unwrap();
    // SAFETY: flock on a valid descriptor we own.
    assert_eq!(
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    w.start();
    w.expect_log(&format!("{id}: skipped, still being delivered"), T);
    w.expect_in(&id, Some("incoming"));
    let mtime = w.dir.mtime("incoming", &id).unwrap();
    assert!(mtime >= now() + 55, "not before +60 s");
}

#[test]
fn a_bounce_log_is_flushed_before_the_file_is_removed() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    std::fs::write(
        w.dir.queue_dir().join("bounce").join(&id),
        b"recipient=a@d1.lab\n",
    )
    .unwrap();
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    let requests = w.bounce.requests();
    assert_eq!(requests.len(), 1, "{}", w.diagnostics());
    assert_eq!(requests[0].queue_id(), id);
    assert_eq!(requests[0].command_code(), 1);
}

#[test]
fn the_fifo_service_type_works() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    w.start_with(common::master::MasterOptions::fifo());
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.master().trigger(b"I").unwrap();
    w.expect_log(&format!("{id}: removed"), T);
}

#[test]
fn mail_already_in_active_at_start_is_taken_up_again() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let (id, _) = w
        .dir
        .message(b"sender@src.lab", &[b"a@d1.lab"])
        .queue("active")
        .write();
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
}

#[test]
fn a_trivial_rewrite_outage_holds_one_message_in_memory_and_loses_nothing() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    // trivial-rewrite is down: nothing can be routed.
    std::fs::remove_file(w.dir.private("rewrite")).unwrap();
    let ids: Vec<String> = (0..6)
        .map(|_| w.drop_message("sender@src.lab", &["a@d1.lab", "b@d1.lab", "c@d1.lab"]))
        .collect();
    w.start();
    // As mail_connect_wait: a warning per failed connect, the next one 10 s later.
    w.expect_log(
        "warning: connect #1 to subsystem private/rewrite: No such file or directory",
        T,
    );
    std::thread::sleep(Duration::from_millis(500));
    // As with the C daemon's synchronous resolver: one message waits in active/, the rest
    // stay on disk instead of filling memory up to qmgr_message_active_limit.
    assert_eq!(w.dir.list("active").len(), 1, "{}", w.diagnostics());
    // trivial-rewrite comes back: everything goes out.
    let _rewrite = common::rewrite::FakeRewrite::start(&w.dir);
    for id in &ids {
        w.expect_log(&format!("{id}: removed"), Duration::from_secs(20));
    }
}

#[test]
fn triggers_that_arrive_together_are_all_answered() {
    let mut w = World::new();
    w.start();
    // Wait for the start-up trigger handling to settle.
    std::thread::sleep(Duration::from_millis(200));
    let before = w.master().status_messages().len();
    let master = w.master();
    std::thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| master.trigger(b"I").expect("trigger answered"));
        }
    });
    let status = master.wait_status(before + 40, T);
    assert_eq!(
        status.len() - before,
        40,
        "TAKEN and AVAIL for each of 20 triggers"
    );
}

#[test]
fn a_trigger_client_is_let_go_only_after_master_heard_avail() {
    // trigger_server closes the client's connection after the request is served and master
    // told AVAIL; a client that waits for the close (as master's and postqueue's triggers do)
    // knows its request was taken in. With the close first, a prompt client sees it before
    // the AVAIL within a few of these rounds.
    let mut w = World::new();
    w.start();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..200 {
        let before = w.master().status_messages().len();
        w.master().trigger(b"I").expect("trigger answered");
        // No waiting: the records are in master's socket once the client saw the close.
        let status = w.master().status_messages();
        let avail: Vec<i32> = status[before..].iter().map(|m| m.avail).collect();
        assert_eq!(avail, [0, 1], "TAKEN then AVAIL before the close");
    }
}

/// A trigger client that connects and sends nothing (any member of group postdrop can) is
/// parked, not waited for: mail and other triggers go on meanwhile.
#[test]
fn a_silent_trigger_client_holds_up_neither_mail_nor_other_triggers() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    w.start();
    std::thread::sleep(Duration::from_millis(200));
    let _silent = UnixStream::connect(w.master().listen_path()).unwrap();
    // Accepted by now, and sending nothing.
    std::thread::sleep(Duration::from_millis(200));
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    let start = Instant::now();
    w.master()
        .trigger_timeout(b"I", Duration::from_secs(2))
        .expect("trigger answered");
    w.expect_log(&format!("{id}: removed"), T);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "{took:?}\n{}",
        w.diagnostics()
    );
}

/// The C server's 10 s wait still bounds a silent client: then it is closed, unserved, with
/// nothing said to master and nothing logged.
#[test]
fn a_silent_trigger_client_is_closed_after_ten_seconds_unseen_by_master() {
    let mut w = World::new();
    w.start();
    w.master().trigger(b"I").expect("trigger answered");
    let before = w.master().status_messages().len();
    let log_before = w.postlog.lines().len();
    let mut silent = UnixStream::connect(w.master().listen_path()).unwrap();
    let start = Instant::now();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 16];
    let n = silent.read(&mut buf).expect("closed, not timed out");
    let took = start.elapsed();
    assert_eq!(n, 0, "EOF");
    assert!(
        took >= Duration::from_millis(9500) && took < Duration::from_secs(12),
        "closed after {took:?}"
    );
    assert_eq!(
        w.master().status_messages().len(),
        before,
        "no TAKEN/AVAIL for it"
    );
    assert_eq!(w.postlog.lines().len(), log_before, "{}", w.diagnostics());
    assert!(w.master().is_running());
}

/// A client whose request comes late (within the wait) is served as a prompt one: TAKEN,
/// the scan it asks for, AVAIL, then the close.
#[test]
fn a_trigger_client_that_writes_late_is_served() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    w.start();
    std::thread::sleep(Duration::from_millis(200));
    let before = w.master().status_messages().len();
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    let mut late = UnixStream::connect(w.master().listen_path()).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.master().status_messages().len(), before);
    assert_eq!(w.dir.queue_of(&id).as_deref(), Some("incoming"));
    late.write_all(b"I\0").unwrap();
    late.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(late.read(&mut buf).expect("closed after the request"), 0);
    let avail: Vec<i32> = w.master().status_messages()[before..]
        .iter()
        .map(|m| m.avail)
        .collect();
    assert_eq!(avail, [0, 1], "TAKEN then AVAIL before the close");
    w.expect_log(&format!("{id}: removed"), T);
}

/// Hundreds of silent clients at once: the queue manager keeps a bounded number of them
/// (closing the oldest to make room), its descriptors stay bounded, and a normal trigger is
/// answered at once.
#[test]
fn a_flood_of_silent_trigger_clients_costs_bounded_descriptors() {
    const PARKED: usize = 16;
    let open_fds = |pid: i32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let mut w = World::new();
    w.start();
    w.master().trigger(b"I").expect("trigger answered");
    let pid = w.master().pid();
    let baseline = open_fds(pid);
    let before = w.master().status_messages().len();
    let silent: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(w.master().listen_path()).unwrap())
        .collect();
    let start = Instant::now();
    w.master()
        .trigger_timeout(b"I", Duration::from_secs(2))
        .expect("trigger answered");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    let now_open = open_fds(pid);
    assert!(
        now_open <= baseline + PARKED + 2,
        "{now_open} descriptors open, {baseline} before the flood"
    );
    // The trigger came after all of them: all were accepted, and all but the newest 16 closed.
    let closed = silent
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            matches!((&**s).read(&mut [0u8; 1]), Ok(0))
        })
        .count();
    assert_eq!(closed, 200 - PARKED);
    let avail: Vec<i32> = w.master().status_messages()[before..]
        .iter()
        .map(|m| m.avail)
        .collect();
    assert_eq!(avail, [0, 1], "only the real trigger was seen by master");
    assert!(w.master().is_running(), "{}", w.diagnostics());
}

#[test]
fn a_trivial_rewrite_that_stops_answering_is_abandoned_after_ipc_timeout() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut w = World::with_params(&[("qmgr_ipc_timeout", "1s")]);
    w.add_agent("smtp", Behaviour::Ok);
    // The first answer takes far longer than qmgr_ipc_timeout; later ones are prompt.
    let first = AtomicBool::new(true);
    w.rewrite.set_resolver(move |req| {
        if first.swap(false, Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(3));
        }
        let domain = req
            .address
            .rsplit(|&c| c == b'@')
            .next()
            .unwrap_or_default();
        common::rewrite::Resolution::new(
            "smtp",
            &String::from_utf8_lossy(domain),
            &req.address,
            oqmgr::proto::rewrite::resolve_flags::CLASS_DEFAULT,
        )
    });
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(
        "warning: problem talking to service rewrite: Connection timed out",
        T,
    );
    w.expect_log(&format!("{id}: removed"), T);
    assert!(w.rewrite.connections() >= 2, "reconnected");
}

/// Runs `qmgr -S <args>` on the instance of `w` with `request` on stdin, as a Postfix
/// administrator would by hand.
fn stand_alone(w: &World, args: &[&str], request: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oqmgr"))
        .arg0("qmgr")
        .arg("-S")
        .args(args)
        .env_clear()
        .env("MAIL_CONFIG", w.dir.config_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // A daemon that refused to start may have closed its stdin already.
    let _ = child.stdin.take().expect("stdin").write_all(request);
    child.wait_with_output().expect("wait")
}

#[test]
fn stand_alone_mode_recovers_active_and_takes_one_request_from_stdin() {
    let w = World::new();
    let (id, _) = w
        .dir
        .message(b"sender@src.lab", &[b"a@d1.lab"])
        .queue("active")
        .write();
    let out = stand_alone(&w, &[], b"I");
    assert!(
        out.status.success(),
        "{:?} {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        w.diagnostics()
    );
    assert_eq!(w.dir.queue_of(&id).as_deref(), Some("incoming"));
}

#[test]
fn an_agent_that_never_answers_ends_in_the_c_daemons_fatal_and_the_mail_stays_queued() {
    let mut w = World::with_params(&[("daemon_timeout", "2s")]);
    w.add_agent("smtp", Behaviour::Hang);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(
        &format!("fatal: {id}: timeout receiving delivery status from transport: smtp"),
        T,
    );
    let status = w.master().wait_exit(T).expect("exit after the fatal");
    assert_eq!(status.code(), Some(1));
    // Nothing is lost: the next queue manager takes the file back from active/.
    assert_eq!(w.dir.queue_of(&id).as_deref(), Some("active"));
}

#[test]
fn a_queue_manager_stuck_in_a_blocking_call_is_ended_by_the_watchdog() {
    // Neither smtp nor retry exists, so the deferral goes to defer(8) synchronously, and the
    // defer service keeps us waiting far longer than qmgr_daemon_timeout.
    let mut w = World::with_params(&[("qmgr_daemon_timeout", "3s")]);
    w.defer.set_delay(Duration::from_secs(20));
    w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log("fatal: watchdog timeout", T);
    let status = w.master().wait_exit(T).expect("exit");
    assert_eq!(status.code(), Some(1));
}

/// As trigger_server's pre_accept with dict_changed_name: a lookup table the queue manager
/// opened (here in mydestination) that changes on disk ends it at the next trigger, with the
/// C daemon's line and exit status 0, so that master starts one that sees the new table.
#[test]
fn a_changed_lookup_table_restarts_the_queue_manager_at_the_next_trigger() {
    let tables = tempfile::tempdir().unwrap();
    let base = tables.path().join("mydest");
    let db = tables.path().join("mydest.db");
    std::fs::write(&db, b"not read, only watched").unwrap();
    let table = format!("hash:{}", base.display());
    let mydestination = format!("{table}, localhost");
    let mut w = World::with_params(&[("mydestination", &mydestination)]);
    w.start();
    // Unchanged: triggers are served as usual.
    w.master().trigger(b"I").expect("trigger answered");
    assert!(w.master().is_running(), "{}", w.diagnostics());
    // postmap rebuilds the table: a new time stamp.
    let when = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&db)
        .unwrap()
        .set_modified(when)
        .unwrap();
    let _ = w.master().trigger(b"I");
    // The name under which match_list registered the table, as the C daemon logs it.
    w.expect_log(
        &format!("table {table}(0,lock|utf8_request) has changed -- restarting"),
        T,
    );
    let status = w.master().wait_exit(T).expect("exit after the change");
    assert_eq!(status.code(), Some(0));
}

/// -S runs the C daemon's whole post-init: both queue scans start, so a missing deferred/
/// is fatal there too.
#[test]
fn stand_alone_mode_starts_both_scans_and_a_missing_queue_is_fatal() {
    let w = World::new();
    std::fs::remove_dir_all(w.dir.queue_dir().join("deferred")).unwrap();
    let out = stand_alone(&w, &[], b"I");
    assert_eq!(out.status.code(), Some(1), "{}", w.diagnostics());
    w.expect_log(
        "fatal: scan_dir_push: open directory deferred: No such file or directory",
        T,
    );
}

/// An administrator who runs the binary by hand, with no arguments, from a terminal gets the
/// C trigger server's answer on the terminal: the terminal is refused before the
/// process-limit and transport-type checks.
#[test]
fn run_by_hand_from_a_terminal_it_says_so_before_any_service_check() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let w = World::new();
    // SAFETY: posix_openpt returns a new descriptor (or -1), owned here at once.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    if master < 0 {
        eprintln!("skipped: no pseudo-terminals here");
        return;
    }
    // SAFETY: `master` is a valid descriptor returned above and owned by nothing else.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: grantpt/unlockpt/ptsname_r on the pty master we own; `name` outlives the call
    // and its length is passed.
    let ok = unsafe {
        use std::os::fd::AsRawFd;
        libc::grantpt(master.as_raw_fd()) == 0
            && libc::unlockpt(master.as_raw_fd()) == 0
            && libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) == 0
    };
    assert!(ok, "pty set-up");
    // SAFETY: ptsname_r wrote a NUL-terminated string into `name`.
    let slave_path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let slave = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&slave_path)
        .expect("open the pty");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oqmgr"))
        .env_clear()
        .env("MAIL_CONFIG", w.dir.config_dir())
        .stdin(slave)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("oqmgr: fatal: do not run this command by hand"),
        "{stderr}"
    );
    assert!(!stderr.contains("process limit"), "{stderr}");
    drop(master);
}

/// `-m` and `-i` are max_use and max_idle settings, checked like every other parameter (the
/// C trigger server's mail_conf_update, then mail_params_init): `-m 0` is fatal before
/// anything is done (the fatal goes to syslog, as main.cf's logging settings are not read yet).
#[test]
fn dash_m_zero_is_refused_as_an_invalid_max_use() {
    let w = World::new();
    let (id, _) = w
        .dir
        .message(b"sender@src.lab", &[b"a@d1.lab"])
        .queue("active")
        .write();
    let out = stand_alone(&w, &["-m", "0"], b"");
    assert_eq!(out.status.code(), Some(1), "{}", w.diagnostics());
    // Stand-alone recovery did not run.
    assert_eq!(w.dir.queue_of(&id).as_deref(), Some("active"));
}
