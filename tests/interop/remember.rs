//! oqmgr_remember_destinations in a real Postfix: d1.lab refuses connections and is declared
//! dead; after `postfix reload` the new queue manager either remembers that (no new connection,
//! new mail deferred as "delivery temporarily suspended") or, by default, tries again as the
//! C daemon does.

use std::time::{Duration, Instant};

use super::lab::{dead_port, postfix_available, run, tail, Lab};

/// Waits (60 s at most) until `done` holds for the maillog from byte `from` on.
fn wait_log(lab: &Lab, from: usize, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = lab.maillog();
        if done(log.get(from..).unwrap_or_default()) {
            return;
        }
        assert!(Instant::now() < deadline, "never {what}\n{}", tail(&log));
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// smtp(8)'s own connection attempts (not the reason retry repeats).
fn attempts(text: &str, refused: &str) -> usize {
    text.lines()
        .filter(|l| l.contains(" postfix/smtp[") && l.contains(refused))
        .count()
}

/// d1 dead, reload, 20 new messages to it; the maillog written after the reload.
fn twenty_after_a_reload(remember: bool) -> (Lab, String, String) {
    let port = dead_port();
    let mut extra = vec!["initial_destination_concurrency=1"];
    if remember {
        extra.push("oqmgr_remember_destinations=yes");
    }
    let lab = Lab::up_with_d1(&format!("smtp:[127.0.0.1]:{port}"), &extra);
    let refused = format!("connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused");
    run(&["inject", &lab.path(), "3"]);
    wait_log(&lab, 0, "deferred the first three", |log| {
        count(log, " status=deferred ") >= 3 && attempts(log, &refused) >= 1
    });
    let memory = lab.dir.join("data/oqmgr-memory");
    let _ = std::fs::remove_file(&memory);
    let at_reload = lab.maillog().len();
    run(&["reload", &lab.path()]);
    if remember {
        // The old queue manager leaves its memory as it exits.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !memory.is_file() {
            assert!(
                Instant::now() < deadline,
                "no {}\n{}",
                memory.display(),
                tail(&lab.maillog())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    } else {
        std::thread::sleep(Duration::from_secs(2));
    }
    run(&["inject", &lab.path(), "20"]);
    wait_log(&lab, at_reload, "deferred the twenty", |log| {
        count(log, " status=deferred ") >= 20
    });
    let after = lab
        .maillog()
        .get(at_reload..)
        .unwrap_or_default()
        .to_string();
    (lab, after, refused)
}

#[test]
fn remembered_dead_destination_gets_no_new_connection_after_a_reload() {
    if !postfix_available() {
        return;
    }
    let (lab, after, refused) = twenty_after_a_reload(true);
    assert_eq!(attempts(&after, &refused), 0, "no new connection\n{after}");
    assert_eq!(
        count(&after, " status=deferred (delivery temporarily suspended: "),
        20,
        "{after}"
    );
    assert_eq!(
        after
            .lines()
            .filter(|l| l.contains("postfix/qmgr[") && l.contains("warning:"))
            .count(),
        0,
        "{after}"
    );
    assert!(lab.dir.join("data/oqmgr-memory").is_file());
}

#[test]
fn by_default_the_new_queue_manager_connects_again() {
    if !postfix_available() {
        return;
    }
    let (lab, after, refused) = twenty_after_a_reload(false);
    assert!(attempts(&after, &refused) >= 1, "a new refusal\n{after}");
    assert!(!lab.dir.join("data/oqmgr-memory").exists());
}
