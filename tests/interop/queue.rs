//! Queue-file handling side by side with Debian's C oqmgr: dont_remove.

use std::collections::BTreeSet;
use std::path::Path;

use crate::lab::{postfix_available, run, tail, Lab};

const C_OQMGR: &str = "/usr/lib/postfix/sbin/oqmgr";

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
    if !postfix_available() {
        return;
    }
    if !Path::new(C_OQMGR).exists() {
        eprintln!("skipped: Debian's C oqmgr is not installed");
        return;
    }
    for qmgr in [C_OQMGR, env!("CARGO_BIN_EXE_oqmgr")] {
        let (saved, removed) = dont_remove_scenario(qmgr, 5);
        // Every delivered message is in saved/ under its queue id, and nothing else is.
        assert_eq!(saved, removed, "{qmgr}");
    }
}
