//! Interop with the real Postfix 3.7 (Debian's package): a private instance (tests/lab/pflab)
//! whose master(8) runs our binary as the qmgr service, with the real cleanup, trivial-rewrite,
//! smtp/discard agents, bounce and postlogd. Mail goes in over SMTP and must come out:
//! every recipient `status=sent`, every message our `from=` and `removed` line, queues empty.
//!
//! Needs root and Postfix. Without them the tests say so and pass, unless
//! OQMGR_REQUIRE_POSTFIX=1 (as `make test` and CI set), where they fail instead.

mod agents;
mod faults;
mod flush;
mod hostile;
mod jitter;
mod lab;
mod multi;
mod queue;
mod remember;
mod restart;
mod rewrite;
mod status;

use lab::{postfix_available, run, side_by_side_available, tail, value, Lab, C_OQMGR};

#[test]
fn thousand_messages_over_four_destinations_through_discard_unix_service() {
    if !postfix_available() {
        return;
    }
    let lab = Lab::up(&["--transport", "discard", "--dests", "4"]);
    let inj = run(&["inject", &lab.path(), "1000", "--rcpts", "1-5"]);
    let recipients: usize = value(&inj, "recipients").parse().unwrap();
    lab.drain();
    lab.assert_all_delivered(1000, recipients);
}

#[test]
fn thousand_messages_through_smtp_to_smtp_sink_fifo_service() {
    if !postfix_available() {
        return;
    }
    let lab = Lab::up(&[
        "--transport",
        "smtp",
        "--dests",
        "4",
        "--service-type",
        "fifo",
    ]);
    let inj = run(&["inject", &lab.path(), "1000", "--rcpts", "1-5"]);
    let recipients: usize = value(&inj, "recipients").parse().unwrap();
    lab.drain();
    lab.assert_all_delivered(1000, recipients);
}

#[test]
fn postfix_reload_in_the_middle_of_a_drain_loses_nothing() {
    if !postfix_available() {
        return;
    }
    let lab = Lab::up(&["--transport", "smtp", "--dests", "4", "--paused"]);
    let inj = run(&["inject", &lab.path(), "1500", "--rcpts", "1-5"]);
    let recipients: usize = value(&inj, "recipients").parse().unwrap();
    run(&["wait-incoming", &lab.path(), "1500", "--timeout", "120"]);
    run(&["release", &lab.path()]);
    // Reload once the drain is under way.
    let started = std::time::Instant::now();
    while lab.count(": removed") < 100 && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    run(&["reload", &lab.path()]);
    lab.drain();
    // Mail in flight during the reload may be delivered by the old agents and then logged
    // "removed" by the new queue manager, or re-queued: either way, exactly once.
    let sent = lab.count(" status=sent ");
    assert_eq!(sent, recipients, "{}", tail(&lab.maillog()));
    let pids: std::collections::BTreeSet<String> = lab
        .qmgr_lines()
        .iter()
        .filter_map(|l| l.split(" postfix/qmgr[").nth(1))
        .filter_map(|rest| rest.split(']').next())
        .map(str::to_string)
        .collect();
    assert!(
        pids.len() >= 2,
        "the reload replaced the queue manager: {pids:?}"
    );
    lab.assert_queues_empty();
}

#[test]
fn a_chrooted_queue_manager_delivers_too() {
    if !postfix_available() {
        return;
    }
    let lab = Lab::up(&["--transport", "discard", "--dests", "4"]);
    lab.tool("postconf", &["-F", "qmgr/unix/chroot=y"]);
    // master restarts qmgr with -c; the new process lives in the queue directory.
    run(&["reload", &lab.path()]);
    let inj = run(&["inject", &lab.path(), "200", "--rcpts", "1-3"]);
    let recipients: usize = value(&inj, "recipients").parse().unwrap();
    lab.drain();
    assert_eq!(
        lab.count(" status=sent "),
        recipients,
        "{}",
        tail(&lab.maillog())
    );
    let stats = run(&["stats", &lab.path()]);
    let pid = value(&stats, "qmgr_pid");
    let root = std::fs::read_link(format!("/proc/{pid}/root")).expect("qmgr root");
    assert_eq!(root, lab.dir.join("spool"), "chrooted into queue_directory");
}

#[test]
fn expired_mail_is_returned_through_the_real_defer_and_bounce_daemons() {
    if !postfix_available() {
        return;
    }
    // d1.lab's mail server refuses connections; mail may not wait at all.
    let lab = Lab::up_with_d1(
        "smtp:[127.0.0.1]:1",
        &["maximal_queue_lifetime=0", "bounce_queue_lifetime=0"],
    );
    let inj = run(&["inject", &lab.path(), "20", "--rcpts", "1-3"]);
    let recipients: usize = value(&inj, "recipients").parse().unwrap();
    lab.drain();
    let log = lab.maillog();
    assert_eq!(lab.count(" status=deferred "), recipients, "{}", tail(&log));
    assert_eq!(
        lab.count(", status=expired, returned to sender"),
        20,
        "{}",
        tail(&log)
    );
    assert_eq!(
        lab.count(": sender non-delivery notification: "),
        20,
        "{}",
        tail(&log)
    );
    // The notices (null sender) were delivered to the senders, and every file is gone.
    assert_eq!(
        lab.count(": to=<sender@src.lab>, relay=none"),
        20,
        "{}",
        tail(&log)
    );
    assert_eq!(lab.removed(), 40, "20 messages and their 20 notices");
    lab.assert_queues_empty();
}

#[test]
fn delay_warnings_go_out_once_through_the_real_defer_daemon() {
    if !postfix_available() {
        return;
    }
    let lab = Lab::up_with_d1("smtp:[127.0.0.1]:1", &["delay_warning_time=1s"]);
    run(&["inject", &lab.path(), "10"]);
    run(&[
        "wait-empty",
        &lab.path(),
        "--ignore-deferred",
        "--timeout",
        "120",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let log = lab.maillog();
    assert_eq!(
        lab.count(": sender delay notification: "),
        10,
        "{}",
        tail(&log)
    );
    assert_eq!(
        lab.count(": to=<sender@src.lab>, relay=none"),
        10,
        "notices delivered"
    );
    // Every deferred file has its W record rewritten to -1: no second warning.
    let files = lab::files_under(&lab.dir.join("spool/deferred"));
    assert_eq!(files.len(), 10);
    for path in files {
        let file = std::fs::File::open(&path).expect("queue file");
        let mut reader = oqmgr::queue::record::RecordReader::new(file).expect("reader");
        let mut warn = None;
        while let Ok(Some(record)) = reader.next_record() {
            if record.rec_type.byte() == b'W' {
                warn = Some(record.data);
                break;
            }
        }
        assert_eq!(
            warn.as_deref(),
            Some(format!("{:>15}", -1).as_bytes()),
            "{path:?}"
        );
    }
}

#[test]
fn bounced_mail_gets_its_notice_from_the_real_bounce_daemon() {
    if !postfix_available() {
        return;
    }
    let lab = Lab::up_with_d1(
        "error:5.1.1 mailbox unknown",
        &["smtpd_reject_unlisted_recipient=no"],
    );
    let inj = run(&["inject", &lab.path(), "20", "--rcpts", "1-3"]);
    let recipients: usize = value(&inj, "recipients").parse().unwrap();
    lab.drain();
    let log = lab.maillog();
    assert_eq!(lab.count(" status=bounced "), recipients, "{}", tail(&log));
    assert_eq!(
        lab.count(": sender non-delivery notification: "),
        20,
        "{}",
        tail(&log)
    );
    assert_eq!(
        lab.count(": to=<sender@src.lab>, relay=none"),
        20,
        "notices delivered"
    );
    assert_eq!(lab.removed(), 40, "20 messages and their 20 notices");
}

/// The shape of a log line: program and text, with pids, queue ids and every number replaced,
/// delay figures and connection reuse counts dropped, so two runs of one scenario compare.
fn shape(line: &str) -> Option<String> {
    let rest = line.splitn(5, ' ').nth(4)?;
    let (prog, text) = rest.split_once(": ")?;
    let prog = prog.split('[').next()?;
    let skipped = [
        "postfix/smtpd",
        "postfix/cleanup",
        "postfix/master",
        "postfix/postfix-script",
    ];
    if skipped.contains(&prog) {
        return None;
    }
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        // Queue ids (upper-case hex) and numbers both become N.
        if c.is_ascii_digit()
            || ('A'..='F').contains(&c) && chars.peek().is_some_and(|n| n.is_ascii_hexdigit())
        {
            let mut word = String::from(c);
            while let Some(&n) = chars.peek() {
                if n.is_ascii_digit() || ('A'..='F').contains(&n) {
                    word.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            if word.chars().all(|x| x.is_ascii_digit()) || word.len() >= 8 {
                out.push('N');
            } else {
                out.push_str(&word);
            }
        } else {
            out.push(c);
        }
    }
    if let (Some(a), Some(b)) = (out.find("delay="), out.find(", dsn=")) {
        if a < b {
            out.replace_range(a..b, "delay=D");
        }
    }
    Some(format!("{prog}: {}", out.replace(", conn_use=N", "")))
}

/// Runs the mixed scenario (delivered, deferred at a dead destination, bounced, delay
/// warnings) under the given queue manager; the qmgr lines and the kinds of all lines.
fn mixed_scenario(qmgr: &str) -> (Vec<String>, std::collections::BTreeSet<String>) {
    let lab = Lab::up_as(qmgr, &["--transport", "smtp", "--dests", "3"]);
    // d1.lab refuses connections, d2.lab bounces, d3.lab takes the mail.
    let old = lab.tool("postconf", &["-h", "transport_maps"]);
    let maps = format!(
        "transport_maps=inline:{{{{d1.lab=smtp:[127.0.0.1]:1}}}}, \
         inline:{{{{d2.lab=error:5.1.1 mailbox unknown}}}}, {old}"
    );
    lab.tool(
        "postconf",
        &[
            "-e",
            &maps,
            "smtpd_reject_unlisted_recipient=no",
            "delay_warning_time=1s",
        ],
    );
    run(&["reload", &lab.path()]);
    run(&["inject", &lab.path(), "30", "--rcpts", "1-3"]);
    run(&[
        "wait-empty",
        &lab.path(),
        "--ignore-deferred",
        "--timeout",
        "120",
    ]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let log = lab.maillog();
    let mut qmgr: Vec<String> = log
        .lines()
        .filter(|l| l.contains(" postfix/qmgr["))
        .filter_map(shape)
        .collect();
    qmgr.sort();
    let kinds = log.lines().filter_map(shape).collect();
    (qmgr, kinds)
}

#[test]
fn our_log_lines_are_the_c_daemons_in_a_mixed_scenario() {
    if !side_by_side_available() {
        return;
    }
    let (ours_qmgr, ours_kinds) = mixed_scenario(env!("CARGO_BIN_EXE_oqmgr"));
    let (c_qmgr, c_kinds) = mixed_scenario(C_OQMGR);
    // The queue manager's own lines: the same, line for line (modulo ids, sizes, times).
    assert_eq!(ours_qmgr, c_qmgr);
    // Every kind of line any daemon logged (how many of each depends on timing).
    assert_eq!(ours_kinds, c_kinds);
}

#[test]
fn postsuper_expire_and_postqueue_flush_return_deferred_mail() {
    if !postfix_available() {
        return;
    }
    let lab = Lab::up_with_d1("smtp:[127.0.0.1]:1", &[]);
    run(&["inject", &lab.path(), "10"]);
    run(&[
        "wait-empty",
        &lab.path(),
        "--ignore-deferred",
        "--timeout",
        "120",
    ]);
    lab.tool("postsuper", &["-e", "ALL", "deferred"]);
    // postqueue -f sends FADI: the force-expire bit (0010) makes the next attempt a return.
    lab.tool("postqueue", &["-f"]);
    lab.drain();
    let log = lab.maillog();
    assert_eq!(
        lab.count(", status=force-expired, returned to sender"),
        10,
        "{}",
        tail(&log)
    );
    assert_eq!(
        lab.count(": sender non-delivery notification: "),
        10,
        "{}",
        tail(&log)
    );
    lab.assert_queues_empty();
}
