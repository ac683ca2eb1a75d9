//! trivial-rewrite and its clients: a changed transport table is used for the next mail.

use crate::lab::{run, side_by_side_available, wait_for, Lab, C_OQMGR};

/// One queue manager's run: mail to d1.lab before and after its transport entry changes.
/// Returns the discard agent's `status=sent (...)` texts, in log order.
///
/// Postfix 3.7's trivial-rewrite does not ask its clients to reconnect (its server flags stay
/// 0); it checks its tables every 10 s and exits when one changed, and the queue manager then
/// finds its connection closed and opens a new one.
fn route_before_and_after_a_table_change(qmgr: &str) -> Vec<String> {
    let lab = Lab::up_as(qmgr, &["--transport", "discard", "--dests", "1"]);
    let map = lab.dir.join("etc/transport");
    let set_route = |text: &str| {
        std::fs::write(&map, format!("d1.lab discard:{text}\n")).expect("write map");
        lab.tool("postmap", &[&format!("hash:{}", map.display())]);
    };
    set_route("old-table");
    // trivial-rewrite notices a change by the table's mtime, in whole seconds: date the first
    // version back, so a rewrite within the same second still counts as a change.
    let status = std::process::Command::new("touch")
        .args(["-d", "-1 minute"])
        .arg(map.with_extension("db"))
        .status()
        .expect("touch");
    assert!(status.success(), "touch the old table back");
    lab.tool(
        "postconf",
        &["-e", &format!("transport_maps=hash:{}", map.display())],
    );
    run(&["reload", &lab.path()]);
    run(&["inject", &lab.path(), "1"]);
    lab.drain();
    set_route("new-table");
    // trivial-rewrite looks at its tables every 10 s and exits when one changed.
    let restarted = wait_for(std::time::Duration::from_secs(25), || {
        lab.count("has changed -- restarting") > 0
    });
    assert!(restarted, "{}", lab.maillog());
    // The same sender and recipient again, within 30 s of the first: the queue manager's
    // one-entry resolve cache answers, with the old route.
    run(&["inject", &lab.path(), "1"]);
    lab.drain();
    // New recipients: the new trivial-rewrite process, with the new table, answers.
    run(&["inject", &lab.path(), "1", "--rcpts", "2"]);
    lab.drain();
    lab.maillog()
        .lines()
        .filter_map(|l| l.split_once("status=sent (").map(|(_, t)| t.to_string()))
        .collect()
}

#[test]
fn mail_after_a_transport_table_change_is_routed_by_the_new_table_as_by_the_c_oqmgr() {
    if !side_by_side_available() {
        return;
    }
    let ours = env!("CARGO_BIN_EXE_oqmgr");
    let c = C_OQMGR;
    let (theirs, mine) = std::thread::scope(|s| {
        let theirs = s.spawn(|| route_before_and_after_a_table_change(c));
        let mine = s.spawn(|| route_before_and_after_a_table_change(ours));
        (theirs.join().unwrap(), mine.join().unwrap())
    });
    assert_eq!(
        theirs,
        ["old-table)", "old-table)", "new-table)", "new-table)"]
    );
    assert_eq!(mine, theirs);
}
