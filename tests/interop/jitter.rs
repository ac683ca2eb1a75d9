//! oqmgr_backoff_jitter in a real Postfix: 300 messages to a destination that refuses
//! connections, all deferred in one burst. A deferred file's mtime is its next attempt time;
//! without jitter they lie within seconds of each other (the next retry wave), with
//! `oqmgr_backoff_jitter = 30` they spread over more than a minute.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::lab::{files_under, postfix_available, run, tail, Lab};

const MESSAGES: usize = 300;

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Defers MESSAGES one-recipient messages at a refused destination in one burst (injected
/// while the queue manager is paused, then released) with `extra` main.cf settings. Returns
/// the lab, the deferred files' mtimes, and the seconds just before the release and just
/// after the last deferral.
fn deferred_burst(extra: &[&str]) -> (Lab, Vec<u64>, u64, u64) {
    // d1.lab's mail server refuses connections: the first failure kills the destination and
    // the rest of its mail is deferred behind `retry`.
    let mut args = vec![
        "--transport",
        "discard",
        "--dests",
        "1",
        "--paused",
        "--set",
        "transport_maps=inline:{{d1.lab=smtp:[127.0.0.1]:1}}",
    ];
    for e in extra {
        args.extend(["--set", e]);
    }
    let lab = Lab::up(&args);
    let n = MESSAGES.to_string();
    run(&["inject", &lab.path(), &n]);
    run(&["wait-incoming", &lab.path(), &n, "--timeout", "120"]);
    let released = unix_secs(SystemTime::now());
    run(&["release", &lab.path()]);
    run(&[
        "wait-empty",
        &lab.path(),
        "--ignore-deferred",
        "--timeout",
        "120",
    ]);
    let done = unix_secs(SystemTime::now()) + 1;
    std::thread::sleep(Duration::from_millis(500));
    let log = lab.maillog();
    assert_eq!(lab.count(" status=deferred "), MESSAGES, "{}", tail(&log));
    let trouble: Vec<String> = lab
        .qmgr_lines()
        .into_iter()
        .filter(|l| l.contains("warning:") || l.contains("fatal:") || l.contains("panic:"))
        .collect();
    assert!(trouble.is_empty(), "queue manager trouble: {trouble:#?}");
    let mtimes: Vec<u64> = files_under(&lab.dir.join("spool/deferred"))
        .iter()
        .map(|p| {
            unix_secs(
                std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .expect("mtime"),
            )
        })
        .collect();
    assert_eq!(mtimes.len(), MESSAGES, "deferred files\n{}", tail(&log));
    (lab, mtimes, released, done)
}

fn spread(mtimes: &[u64]) -> u64 {
    mtimes.iter().max().unwrap_or(&0) - mtimes.iter().min().unwrap_or(&0)
}

#[test]
fn without_jitter_a_deferred_burst_comes_due_as_one_wave() {
    if !postfix_available() {
        return;
    }
    let (_lab, mtimes, released, done) = deferred_burst(&[]);
    // Young mail: minimal_backoff_time (300 s) from its deferral, as the C daemon does.
    for &t in &mtimes {
        assert!(
            (released + 300..=done + 300).contains(&t),
            "next attempt {t}, deferred between {released} and {done}"
        );
    }
    assert!(spread(&mtimes) <= 10, "spread {} s", spread(&mtimes));
}

#[test]
fn with_jitter_30_a_deferred_burst_spreads_over_more_than_a_minute() {
    if !postfix_available() {
        return;
    }
    let (_lab, mtimes, released, done) = deferred_burst(&["oqmgr_backoff_jitter=30"]);
    // 300 s ± 30 %, clamped to minimal_backoff_time: only stretched, up to 390 s.
    for &t in &mtimes {
        assert!(
            (released + 300..=done + 390).contains(&t),
            "next attempt {t}, deferred between {released} and {done}"
        );
    }
    assert!(spread(&mtimes) >= 60, "spread {} s", spread(&mtimes));
}
