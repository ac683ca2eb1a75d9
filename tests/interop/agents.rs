//! Delivery agents that misbehave, side by side under Debian's C oqmgr and ours: the same
//! scenario must end the same way, with the same queue-manager log lines.

use std::path::Path;

use super::lab::{run, side_by_side_available, tail, value, Lab, C_OQMGR};
use super::shape;

/// What an administrator sees after a crash scenario.
#[derive(Debug, PartialEq)]
struct CrashOutcome {
    /// Connections the crashing agent served (one per delivery attempt).
    attempts: usize,
    suspended: usize,
    deferred_files: String,
    /// The queue manager's lines, shaped (ids and numbers replaced) and sorted.
    qmgr_lines: Vec<String>,
}

/// `messages` one-recipient messages for d1.lab, queued while the queue manager is paused,
/// then released at once to a master.cf service that announces itself, reads the request
/// and closes without a reply (tests/lab/crash-agent).
fn crash_scenario(qmgr: &str, messages: usize) -> CrashOutcome {
    let lab = Lab::up_as(
        qmgr,
        &[
            "--transport",
            "discard",
            "--dests",
            "1",
            "--paused",
            "--set",
            "transport_maps=inline:{{d1.lab=crash:}}",
        ],
    );
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/crash-agent");
    std::fs::copy(&agent, lab.dir.join("libexec/crash-agent")).expect("install crash-agent");
    let attempts_log = lab.dir.join("crash.log");
    let row = format!(
        "crash/unix=crash unix - - n - - crash-agent {}",
        attempts_log.display()
    );
    lab.tool("postconf", &["-M", &row]);
    let n = messages.to_string();
    run(&["inject", &lab.path(), &n, "--rcpts", "1"]);
    run(&["wait-incoming", &lab.path(), &n, "--timeout", "60"]);
    run(&["release", &lab.path()]);
    run(&[
        "wait-empty",
        &lab.path(),
        "--ignore-deferred",
        "--timeout",
        "60",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let log = lab.maillog();
    let attempts = std::fs::read_to_string(&attempts_log)
        .unwrap_or_default()
        .lines()
        .count();
    let mut qmgr_lines: Vec<String> = lab.qmgr_lines().iter().filter_map(|l| shape(l)).collect();
    qmgr_lines.sort();
    let stats = run(&["stats", &lab.path()]);
    let outcome = CrashOutcome {
        attempts,
        suspended: lab.count("delivery temporarily suspended"),
        deferred_files: value(&stats, "q_deferred"),
        qmgr_lines,
    };
    eprintln!("{qmgr}: {outcome:?}\n{}", tail(&log));
    outcome
}

#[test]
fn a_crashing_agent_only_defers_the_mail_under_both_queue_managers() {
    if !side_by_side_available() {
        return;
    }
    let ours = crash_scenario(env!("CARGO_BIN_EXE_oqmgr"), 12);
    let c = crash_scenario(C_OQMGR, 12);
    assert_eq!(c.attempts, 12, "the C daemon tries every message");
    assert_eq!(c.suspended, 0);
    assert_eq!(c.deferred_files, "12");
    assert_eq!(ours, c);
}

/// One message delivered by discard(8) to d1.lab, one refused by a dead port at d2.lab, with
/// destination_concurrency_feedback_debug on: the queue manager's debug lines, sorted.
fn feedback_debug_scenario(qmgr: &str) -> Vec<String> {
    let lab = Lab::up_as(
        qmgr,
        &[
            "--transport",
            "discard",
            "--dests",
            "2",
            "--set",
            "transport_maps=inline:{{d2.lab=smtp:[127.0.0.1]:1}}",
            "--set",
            "destination_concurrency_feedback_debug=yes",
        ],
    );
    run(&[
        "inject",
        &lab.path(),
        "2",
        "--rcpts",
        "1",
        "--sessions",
        "1",
    ]);
    run(&[
        "wait-empty",
        &lab.path(),
        "--ignore-deferred",
        "--timeout",
        "60",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut lines: Vec<String> = lab
        .qmgr_lines()
        .iter()
        .filter_map(|l| l.split_once("]: ").map(|(_, text)| text.to_string()))
        .filter(|text| text.starts_with("qmgr_queue_") || text.contains(" feedback type "))
        .collect();
    lines.sort();
    eprintln!("{qmgr}: {lines:#?}");
    lines
}

#[test]
fn feedback_debug_lines_are_the_c_daemons() {
    if !side_by_side_available() {
        return;
    }
    let c = feedback_debug_scenario(C_OQMGR);
    assert!(
        c.iter()
            .any(|l| l.starts_with("qmgr_queue_throttle: queue [127.0.0.1]:1:")),
        "{c:#?}"
    );
    assert_eq!(feedback_debug_scenario(env!("CARGO_BIN_EXE_oqmgr")), c);
}
