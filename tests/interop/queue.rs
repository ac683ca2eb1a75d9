//! Queue-file handling side by side with Debian's C oqmgr: dont_remove.

use std::collections::BTreeSet;

use crate::lab::{run, side_by_side_available, tail, Lab, C_OQMGR};

/// Delivers `messages` one-recipient messages with dont_remove=1 under `qmgr`: the names in
/// saved/ and the queue ids of the `removed` lines; every other queue must end empty.
fn dont_remove_scenario(qmgr: &str, messages: usize) -> (BTreeSet<String>, BTreeSet<String>) {
    let lab = Lab::up_as(
        qmgr,
        &[
            "--transport",
            "discard",
            "--dests",
            "2",
            "--set",
            "dont_remove=1",
        ],
    );
    run(&["inject", &lab.path(), &messages.to_string()]);
    lab.drain();
    lab.assert_queues_empty();
    let saved: BTreeSet<String> = std::fs::read_dir(lab.dir.join("spool/saved"))
        .expect("saved/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let removed: BTreeSet<String> = lab
        .qmgr_lines()
        .iter()
        .filter_map(|l| l.strip_suffix(": removed"))
        .filter_map(|l| l.rsplit(' ').next())
        .map(str::to_string)
        .collect();
    assert_eq!(removed.len(), messages, "{}", tail(&lab.maillog()));
    (saved, removed)
}

#[test]
fn dont_remove_saves_delivered_mail_as_the_c_daemon_does() {
    if !side_by_side_available() {
        return;
    }
    for qmgr in [C_OQMGR, env!("CARGO_BIN_EXE_oqmgr")] {
        let (saved, removed) = dont_remove_scenario(qmgr, 5);
        // Every delivered message is in saved/ under its queue id, and nothing else is.
        assert_eq!(saved, removed, "{qmgr}");
    }
}

/// Bounced mail with dont_remove=1 under `qmgr`: bounce(8) saves the bounce log as
/// saved/<id>, then the queue manager saves the queue file, whose name is taken: saved/<id>+.
/// Returns the names in saved/ with the queue ids replaced by their order of appearance in
/// the `removed` lines, so that two runs compare.
fn dont_remove_bounce_scenario(qmgr: &str) -> Vec<String> {
    let lab = Lab::up_as(
        qmgr,
        &[
            "--transport",
            "discard",
            "--dests",
            "1",
            "--set",
            "transport_maps=inline:{{d1.lab=error:5.1.1 mailbox unknown}}",
            "--set",
            "smtpd_reject_unlisted_recipient=no",
            "--set",
            "dont_remove=1",
        ],
    );
    run(&["inject", &lab.path(), "3"]);
    lab.drain();
    lab.assert_queues_empty();
    let log = lab.maillog();
    assert_eq!(lab.count(" status=bounced "), 3, "{}", tail(&log));
    let saved: BTreeSet<String> = std::fs::read_dir(lab.dir.join("spool/saved"))
        .expect("saved/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    // Bounced messages first, then their notices.
    let bounced: BTreeSet<String> = log
        .lines()
        .filter(|l| l.contains(" status=bounced "))
        .filter_map(|l| l.split(": ").nth(1))
        .filter_map(|l| l.rsplit(' ').next())
        .map(str::to_string)
        .collect();
    let mut shapes: Vec<String> = saved
        .iter()
        .map(|name| {
            let id = name.trim_end_matches('+');
            let kind = if bounced.contains(id) {
                "bounced"
            } else {
                "notice"
            };
            format!("{kind}{}", &name[id.len()..])
        })
        .collect();
    shapes.sort();
    shapes
}

#[test]
fn dont_remove_with_bounces_appends_plus_as_the_c_daemon_does() {
    if !side_by_side_available() {
        return;
    }
    let c = dont_remove_bounce_scenario(C_OQMGR);
    let ours = dont_remove_bounce_scenario(env!("CARGO_BIN_EXE_oqmgr"));
    assert_eq!(ours, c);
    // Each bounced message: its bounce log, then its queue file; each notice: its file.
    assert_eq!(c.iter().filter(|s| *s == "bounced").count(), 3, "{c:?}");
    assert_eq!(c.iter().filter(|s| *s == "bounced+").count(), 3, "{c:?}");
    assert_eq!(c.len(), 9, "and three notices: {c:?}");
}
