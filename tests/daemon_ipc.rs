//! The daemon's time limits and its trivial-rewrite client in the fake world: the watchdog,
//! the request-write bound towards agents, reconnects, retries and their log lines.

mod common;

use std::time::{Duration, Instant};

use common::agent::Behaviour;
use common::world::World;

const T: Duration = Duration::from_secs(10);

/// The C trigger server re-arms its watchdog at the top of every loop pass, so a pass that gets
/// stuck dies a full qmgr_daemon_timeout after it began, whatever the alarm's phase was.
#[test]
fn a_stuck_pass_dies_a_full_daemon_timeout_after_it_began() {
    let mut w = World::with_params(&[("qmgr_daemon_timeout", "3s")]);
    w.add_agent("smtp", Behaviour::Ok);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    // The first pass takes the message in right after the watchdog was first armed.
    w.expect_log(&format!("{id}: from=<sender@src.lab>"), T);
    let armed = Instant::now();
    w.expect_log(&format!("{id}: removed"), T);
    // 0.7 s into an alarm step, a trigger ends one pass; the next pass begins at once.
    let phase = Duration::from_millis(1700);
    std::thread::sleep(phase.saturating_sub(armed.elapsed()));
    w.master().trigger(b"I").expect("trigger answered");
    let pass_began = Instant::now();
    // Once that pass is under way, a client that connects and sends nothing keeps it in the
    // trigger wait (10 s).
    std::thread::sleep(Duration::from_millis(100));
    let _silent = std::os::unix::net::UnixStream::connect(w.dir.public("qmgr")).unwrap();
    w.expect_log("fatal: watchdog timeout", T);
    let took = pass_began.elapsed();
    assert!(
        took >= Duration::from_millis(2800) && took < Duration::from_millis(4500),
        "watchdog fatal {took:?} after the pass began\n{}",
        w.diagnostics()
    );
}
