//! A queue manager restarted with a full active queue and oqmgr_remember_destinations on:
//! 20,000 messages stuck behind a destination that accepts connections and never answers,
//! `postfix reload`, and the new queue manager takes them all up again within the same memory
//! as the first; then the destination is fixed and every message is delivered.

use std::process::Command;
use std::time::{Duration, Instant};

use super::lab::{files_in, postfix_available, run, stalled_server, tail, value, Lab};

const MESSAGES: usize = 20_000;

/// Waits until a queue manager has taken at least `n` messages into the active queue (its
/// `(queue active)` lines in the maillog from byte `from` on) and active/ holds them; that
/// queue manager's peak resident set then (KiB).
fn active_reaches(lab: &Lab, from: usize, n: usize) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let log = lab.maillog();
        let fresh = log.get(from..).unwrap_or_default();
        let taken = fresh
            .lines()
            .filter(|l| l.contains(" (queue active)"))
            .count();
        if taken >= n && files_in(&lab.dir.join("spool/active")) >= n {
            let pid = fresh
                .lines()
                .rev()
                .find_map(|l| l.split(" postfix/qmgr[").nth(1)?.split(']').next())
                .unwrap_or_default()
                .to_string();
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            return status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no VmHWM for queue manager {pid:?}\n{}", tail(&log)));
        }
        assert!(
            Instant::now() < deadline,
            "never {n} taken ({taken}, active/ {})\n{}",
            files_in(&lab.dir.join("spool/active")),
            tail(&log)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_restart_with_20000_active_messages_stays_bounded_and_loses_nothing() {
    if !postfix_available() {
        return;
    }
    let stalled = stalled_server();
    let route = format!("smtp:[127.0.0.1]:{stalled}");
    let map = format!(
        "transport_maps=inline:{{{{d1.lab={route}}},{{d2.lab={route}}},{{d3.lab={route}}},{{d4.lab={route}}}}}"
    );
    let lab = Lab::up(&[
        "--transport",
        "discard",
        "--paused",
        "--set",
        &map,
        "--set",
        "oqmgr_remember_destinations=yes",
        // The advice that one destination holds the whole active queue is expected here.
        "--set",
        "qmgr_clog_warn_time=0",
    ]);
    let count = MESSAGES.to_string();
    run(&["inject", &lab.path(), &count, "--sessions", "40"]);
    run(&["wait-incoming", &lab.path(), &count, "--timeout", "300"]);
    run(&["release", &lab.path()]);
    // A few deliveries hang at the silent server; everything else waits in the active queue.
    let first = active_reaches(&lab, 0, MESSAGES);

    let at_reload = lab.maillog().len();
    run(&["reload", &lab.path()]);
    // The hanging deliveries keep their files locked: the new queue manager skips those.
    let second = active_reaches(&lab, at_reload, MESSAGES - 100);
    assert!(
        second <= first + first / 4,
        "the restarted queue manager grew: {second} KiB after {first} KiB"
    );
    let after = lab.maillog();
    let after = after.get(at_reload..).unwrap_or_default();
    let trouble: Vec<&str> = after
        .lines()
        .filter(|l| {
            l.contains(" postfix/qmgr[") && (l.contains("warning:") || l.contains("fatal:"))
        })
        .collect();
    assert!(trouble.is_empty(), "{trouble:#?}");

    // The destination is fixed: mail goes to discard now; the hung deliveries are ended
    // (their mail is deferred) and the deferred queue is flushed. Until the reload, the old
    // queue manager may still hand mail to new smtp processes for the silent server: with
    // smtp_helo_timeout short (main.cf is read by each new process), none of them can keep
    // its message locked for the 300 s of the default.
    lab.tool(
        "postconf",
        &["-e", "transport_maps=", "smtp_helo_timeout=5s"],
    );
    let stats = run(&["stats", &lab.path()]);
    let master = value(&stats, "master_pid");
    let _ = Command::new("pkill")
        .args(["-P", &master, "-x", "smtp"])
        .status();
    run(&["reload", &lab.path()]);
    // postqueue -f again and again: a delivery that timed out meanwhile is deferred.
    let deadline = Instant::now() + Duration::from_secs(300);
    while ["incoming", "active", "deferred"]
        .iter()
        .any(|q| files_in(&lab.dir.join("spool").join(q)) > 0)
        && Instant::now() < deadline
    {
        lab.tool("postqueue", &["-f"]);
        std::thread::sleep(Duration::from_secs(5));
    }
    lab.drain();
    let removed = lab.removed();
    assert_eq!(
        removed,
        MESSAGES,
        "every message delivered and removed\n{}",
        tail(&lab.maillog())
    );
    lab.assert_queues_empty();
}
