//! `oqmgrctl` against our queue manager in a real Postfix: a dead destination (connection
//! refused), a stalled one (a server that accepts and never greets) and normal mail, seen
//! through `status`, `status --json` and `metrics`; queries during a drain; a refused user.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::lab::{dead_port, files_in, postfix_available, run, stalled_server, tail, value, Lab};

fn oqmgrctl(lab: &Lab, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oqmgrctl"))
        .arg("-c")
        .arg(lab.dir.join("etc"))
        .args(args)
        .output()
        .expect("run oqmgrctl")
}

fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "oqmgrctl failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a script with the system's python3 (where `make deps` put python3-prometheus-client)
/// on `input` (standard input); its standard output, trimmed.
fn python(script: &str, input: &str) -> String {
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "python3 failed: {}\n--- input:\n{input}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn oqmgrctl_shows_dead_and_stalled_destinations_as_they_are() {
    if !postfix_available() {
        return;
    }
    let dead = dead_port();
    let stalled = stalled_server();
    let map = format!(
        "transport_maps=inline:{{{{d1.lab=smtp:[127.0.0.1]:{dead}}},{{d2.lab=smtp:[127.0.0.1]:{stalled}}}}}"
    );
    // Window 1: the first refusal is a failed cohort, so d1 is declared dead at once.
    let lab = Lab::up(&[
        "--transport",
        "discard",
        "--dests",
        "3",
        "--set",
        &map,
        "--set",
        "initial_destination_concurrency=1",
    ]);
    run(&["inject", &lab.path(), "9"]);
    // Settled: d1's mail deferred behind its dead destination (retry has nothing left), d2's
    // deliveries hanging, d3's delivered.
    let deadline = Instant::now() + Duration::from_secs(60);
    let json = loop {
        let json = stdout_ok(&oqmgrctl(&lab, &["status", "--json"]));
        let state = python(
            &format!(
                "import json,sys\n\
                 d=json.load(sys.stdin)\n\
                 dead=[x for x in d['destinations'] if x['nexthop']=='[127.0.0.1]:{dead}' and x['dead']]\n\
                 busy=[x for x in d['destinations'] if x['nexthop']=='[127.0.0.1]:{stalled}' and x['busy']>=1]\n\
                 retry=sum(t['busy']+t['todo'] for t in d['transports'] if t['name']=='retry')\n\
                 print(len(dead), len(busy), retry)"
            ),
            &json,
        );
        let sent = lab.count(" status=sent ");
        if state == "1 1 0" && sent == 3 && files_in(&lab.dir.join("spool/incoming")) == 0 {
            break json;
        }
        assert!(
            Instant::now() < deadline,
            "never settled: {state}, {sent} sent\n{json}\n{}",
            tail(&lab.maillog())
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let now = python("import json,sys; print(json.load(sys.stdin)['now'])", &json);
    let checks = python(
        &format!(
            "import json,sys\n\
             d=json.load(sys.stdin)\n\
             x=[x for x in d['destinations'] if x['nexthop']=='[127.0.0.1]:{dead}'][0]\n\
             print(x['dead_until'] > d['now'], 'Connection refused' in x['reason'], d['destinations'][0]['nexthop']==x['nexthop'])\n\
             print(d['active']['messages'])"
        ),
        &json,
    );
    let mut lines = checks.lines();
    assert_eq!(
        lines.next(),
        Some("True True True"),
        "dead_until in the future, the refusal as the reason, listed first (now {now})\n{json}"
    );
    let active: usize = lines.next().unwrap_or("").parse().unwrap_or(usize::MAX);
    assert_eq!(
        active,
        files_in(&lab.dir.join("spool/active")),
        "active.messages is the files in active/\n{json}"
    );
    assert!(active >= 1, "d2's stalled mail is active");

    // The table for people: the dead destination first.
    let table = stdout_ok(&oqmgrctl(&lab, &["status"]));
    let first_destination = table
        .lines()
        .skip_while(|l| !l.contains("DESTINATIONS"))
        .find(|l| l.contains("[127.0.0.1]:"))
        .unwrap_or_default();
    assert!(
        first_destination.contains(&format!("[127.0.0.1]:{dead}")),
        "dead destination first:\n{table}"
    );

    // Metrics parse with a real Prometheus text parser and have the families.
    let metrics = stdout_ok(&oqmgrctl(&lab, &["metrics"]));
    let families = python(
        "import sys\n\
         from prometheus_client.parser import text_string_to_metric_families\n\
         print(' '.join(sorted(f.name for f in text_string_to_metric_families(sys.stdin.read()))))",
        &metrics,
    );
    for family in [
        "oqmgr_active_messages",
        "oqmgr_active_recipients",
        "oqmgr_destination_busy",
        "oqmgr_destination_todo",
        "oqmgr_destination_window",
        "oqmgr_destination_dead",
        "oqmgr_deliveries",
    ] {
        assert!(
            families.split(' ').any(|f| f == family),
            "no {family} in {families}\n{metrics}"
        );
    }
    // Nothing above made the queue manager complain.
    let trouble: Vec<String> = lab
        .qmgr_lines()
        .into_iter()
        .filter(|l| l.contains("warning:") || l.contains("fatal:") || l.contains("panic:"))
        .collect();
    assert!(trouble.is_empty(), "{trouble:#?}");
}

#[test]
fn queries_during_a_drain_change_nothing_and_strangers_are_refused() {
    if !postfix_available() {
        return;
    }
    let lab = Lab::up(&["--transport", "discard", "--paused"]);
    let inj = run(&["inject", &lab.path(), "2000"]);
    let recipients: usize = value(&inj, "recipients").parse().expect("recipients");
    run(&["wait-incoming", &lab.path(), "2000"]);
    run(&["release", &lab.path()]);
    let (mut answered, mut mid_drain) = (0, 0);
    for i in 0..300 {
        let args: &[&str] = match i % 3 {
            0 => &["status"],
            1 => &["status", "--json"],
            _ => &["metrics"],
        };
        let out = oqmgrctl(&lab, args);
        if out.status.success() {
            answered += 1;
            // A metrics answer taken while mail was still moving.
            let text = String::from_utf8_lossy(&out.stdout);
            if text.lines().any(|l| {
                l.strip_prefix("oqmgr_active_messages ")
                    .is_some_and(|n| n.trim() != "0")
            }) {
                mid_drain += 1;
            }
        }
    }
    lab.drain();
    assert!(answered >= 290, "only {answered} of 300 queries answered");
    assert!(
        mid_drain >= 1,
        "no query ran while the active queue held mail"
    );
    lab.assert_all_delivered(2000, recipients);

    // User nobody cannot reach private/: refused plainly, no data.
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(env!("CARGO_BIN_EXE_oqmgrctl"))
        .arg("-c")
        .arg(lab.dir.join("etc"))
        .arg("status")
        .output()
        .expect("runuser");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody got an answer");
    assert!(out.stdout.is_empty(), "nobody got data");
    assert!(stderr.contains("permission denied"), "{stderr}");
}

#[test]
fn a_chrooted_queue_manager_answers_and_the_c_daemon_is_named_plainly() {
    if !postfix_available() {
        return;
    }
    let lab = Lab::up(&["--transport", "discard"]);
    lab.tool("postconf", &["-F", "qmgr/unix/chroot=y"]);
    run(&["reload", &lab.path()]);
    run(&["inject", &lab.path(), "20"]);
    lab.drain();
    let stats = run(&["stats", &lab.path()]);
    let pid = value(&stats, "qmgr_pid");
    let root = std::fs::read_link(format!("/proc/{pid}/root")).expect("qmgr root");
    assert_eq!(root, lab.dir.join("spool"), "chrooted into queue_directory");
    let json = stdout_ok(&oqmgrctl(&lab, &["status", "--json"]));
    assert!(json.contains(&format!("\"pid\":{pid},")), "{json}");
    drop(lab);

    if !super::lab::side_by_side_available() {
        return;
    }
    // Postfix's C daemon has no status socket: said so, exit status 1, nothing on stdout.
    let c = Lab::up_as(super::lab::C_OQMGR, &["--transport", "discard"]);
    let out = oqmgrctl(&c, &["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(stderr.contains("no queue manager answers"), "{stderr}");
}
