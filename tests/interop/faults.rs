//! Faults from outside, side by side under Debian's C oqmgr and ours (issue 11): the queue
//! manager SIGKILLed at random moments of real drains, its descriptor limit lowered while it
//! drains, and its queue file system full. At-least-once is the contract: at the end every
//! recipient has a `status=sent` line, nothing went to corrupt/, and the queues are empty.
//! Each scenario prints a `figures` line per queue manager (run with `--nocapture`).
//!
//! They take minutes, so they are `#[ignore]`d and run by `make soak`.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use super::lab::{
    files_in, qmgr_name, run, side_by_side_available, tail, value, Lab, C_OQMGR, OURS,
};

/// splitmix64: a seeded generator, so that a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The live queue manager processes of the lab: children of its master whose argv[0] is qmgr.
pub(super) fn qmgr_pids(lab: &Lab) -> Vec<i32> {
    let master: i32 = std::fs::read_to_string(lab.dir.join("spool/pid/master.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(-1);
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rsplit_once(") ").map(|(_, a)| a) else {
            continue;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        if f.len() < 2 || f[0] == "Z" || f[1].parse::<i32>().ok() != Some(master) {
            continue;
        }
        let argv0 = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = argv0.split(|b| *b == 0).next().unwrap_or_default();
        if argv0.rsplit(|b| *b == b'/').next() == Some(b"qmgr".as_slice()) {
            pids.push(pid);
        }
    }
    pids
}

/// Asks master for a queue manager (a trigger on its socket starts one) and scans incoming/
/// ignoring time stamps, as `postkick ... AI` does.
pub(super) fn kick(lab: &Lab) {
    // Bounded: a master that is stuck (see kill_anywhere) never accepts the trigger.
    let _ = Command::new("timeout")
        .args(["5", "postkick", "-c"])
        .arg(lab.dir.join("etc"))
        .args(["public", "qmgr", "AI"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Waits (kicking) until a queue manager runs; its pid.
pub(super) fn wait_qmgr(lab: &Lab) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut kicked = Instant::now() - Duration::from_secs(1);
    loop {
        if let Some(&pid) = qmgr_pids(lab).first() {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no queue manager came back\n{}",
            tail(&lab.maillog())
        );
        if kicked.elapsed() >= Duration::from_millis(200) {
            kick(lab);
            kicked = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn queues_busy(lab: &Lab) -> bool {
    ["incoming", "active", "deferred"]
        .iter()
        .any(|q| files_in(&lab.dir.join("spool").join(q)) > 0)
}

/// How often each (queue id, recipient) got a `status=sent` line.
fn sent_counts(log: &str) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for line in log.lines().filter(|l| l.contains(" status=sent ")) {
        let Some((head, rest)) = line.split_once(": to=<") else {
            continue;
        };
        let qid = head.rsplit(' ').next().unwrap_or_default().to_string();
        let rcpt = rest.split('>').next().unwrap_or_default().to_string();
        *counts.entry((qid, rcpt)).or_insert(0) += 1;
    }
    counts
}

/// What every scenario checks at the end, and what it reports.
struct Outcome {
    recipients: usize,
    /// Distinct (queue id, recipient) pairs with a `status=sent` line.
    delivered: usize,
    delivered_once: usize,
    duplicates: usize,
    lost: usize,
    corrupt: usize,
}

fn outcome(lab: &Lab, recipients: usize) -> Outcome {
    let counts = sent_counts(&lab.maillog());
    let delivered = counts.len();
    Outcome {
        recipients,
        delivered,
        delivered_once: counts.values().filter(|&&n| n == 1).count(),
        duplicates: counts.values().map(|n| n - 1).sum(),
        lost: recipients.saturating_sub(delivered),
        corrupt: files_in(&lab.dir.join("spool/corrupt")),
    }
}

impl Outcome {
    fn line(&self) -> String {
        format!(
            "recipients={} delivered_once={} duplicates={} lost={} corrupt={}",
            self.recipients, self.delivered_once, self.duplicates, self.lost, self.corrupt
        )
    }

    fn assert_ok(&self, lab: &Lab, what: &str) {
        let log = lab.maillog();
        assert_eq!(
            self.lost,
            0,
            "{what}: recipients never sent\n{}",
            tail(&log)
        );
        assert_eq!(self.corrupt, 0, "{what}: files in corrupt/\n{}", tail(&log));
        assert_eq!(
            self.delivered,
            self.recipients,
            "{what}: status=sent for recipients that were never injected\n{}",
            tail(&log)
        );
        lab.assert_queues_empty();
    }
}

/// The queue manager's warning, error, fatal and panic lines, shaped (ids and numbers
/// replaced), each kind once, sorted.
pub(super) fn trouble(lab: &Lab) -> Vec<String> {
    let mut kinds: Vec<String> = lab
        .qmgr_lines()
        .iter()
        .filter(|l| {
            l.contains(" warning: ")
                || l.contains(" error: ")
                || l.contains(" fatal: ")
                || l.contains(" panic: ")
        })
        .filter_map(|l| super::shape(l))
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Master's lines about queue manager processes (killed, exited, throttled), shaped.
pub(super) fn master_trouble(lab: &Lab) -> Vec<String> {
    let mut kinds: Vec<String> = lab
        .maillog()
        .lines()
        .filter(|l| l.contains(" postfix/master[") && l.contains("warning:"))
        .filter_map(|l| {
            let (_, text) = l.split_once(": warning: ")?;
            let shaped: String = text
                .split(' ')
                .map(|w| {
                    if w.chars().all(|c| c.is_ascii_digit()) && !w.is_empty() {
                        "N"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            Some(shaped.replace(&lab.path(), "DIR"))
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

// ------------------------------------------------------------------- kill anywhere ---

const KILLS: usize = 50;

/// Settings every fault scenario shares: master restarts a queue manager that died before its
/// first trigger after 1 s instead of 60 s, and deferred mail comes back within seconds.
const FAST_RETRY: [&str; 8] = [
    "--set",
    "service_throttle_time=1s",
    "--set",
    "queue_run_delay=2s",
    "--set",
    "minimal_backoff_time=2s",
    "--set",
    "maximal_backoff_time=4s",
];

/// What `pflab inject` reported: its recipient count.
pub(super) fn injected(child: std::process::Child) -> usize {
    let out = child.wait_with_output().expect("pflab inject");
    assert!(out.status.success(), "pflab inject: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("recipients="))
        .and_then(|n| n.parse().ok())
        .expect("recipients=")
}

/// Rounds of `messages` messages with 1-50 recipients each, injected while the queue manager
/// runs; the queue manager is SIGKILLed at random moments (0..`max_ms` after each new process
/// appears) until KILLS kills have landed while mail was queued or arriving; then drained.
///
/// The log rate is kept low (2 agents per destination, 4 injecting sessions, no `postfix
/// reload` once mail flows): under a flood of log datagrams (net.unix.max_dgram_qlen is 10)
/// master blocks in its own logging of a kill, postlogd blocks on master's full status pipe
/// (it reports every datagram it takes), dies of its 10 s watchdog, and the instance hangs
/// for good (Postfix 3.7's master and postlogd, with either queue manager).
fn kill_anywhere(qmgr: &str, transport: &str, messages: usize, max_ms: u64, seed: u64) {
    let started = Instant::now();
    let mut args = vec![
        "--transport",
        transport,
        "--dests",
        "4",
        "--set",
        "default_destination_concurrency_limit=2",
    ];
    args.extend_from_slice(&FAST_RETRY);
    let lab = Lab::up_as(qmgr, &args);
    let mut rng = Rng(seed);
    let mut recipients = 0;
    let mut kills = 0;
    let mut rounds = 0;
    let n = messages.to_string();
    let inject = || {
        Command::new(super::lab::pflab())
            .args([
                "inject",
                &lab.path(),
                &n,
                "--rcpts",
                "1-50",
                "--sessions",
                "4",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pflab inject")
    };
    let mut injecting: Option<std::process::Child> = None;
    while kills < KILLS {
        if injecting.is_none() {
            injecting = Some(inject());
            rounds += 1;
        }
        let pid = wait_qmgr(&lab);
        std::thread::sleep(Duration::from_millis(rng.below(max_ms + 1)));
        if let Some(mut child) = injecting.take() {
            if child.try_wait().expect("try_wait").is_some() {
                recipients += injected(child);
            } else {
                injecting = Some(child);
            }
        }
        if injecting.is_none() && !queues_busy(&lab) {
            continue;
        }
        // SAFETY: kill has no memory preconditions; pid is a queue manager of this lab.
        if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
            kills += 1;
        }
        while qmgr_pids(&lab).contains(&pid) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    if let Some(child) = injecting {
        recipients += injected(child);
    }
    wait_qmgr(&lab);
    lab.drain();
    let out = outcome(&lab, recipients);
    println!(
        "figures: kill-anywhere qmgr={} transport={transport} seed={seed} rounds={rounds} \
         kills={kills} {} seconds={:.0}",
        qmgr_name(qmgr),
        out.line(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "figures: kill-anywhere qmgr={} transport={transport} qmgr_trouble={:?} master={:?}",
        qmgr_name(qmgr),
        trouble(&lab),
        master_trouble(&lab)
    );
    out.assert_ok(&lab, "kill-anywhere");
}

#[test]
#[ignore = "minutes: make soak"]
fn kill_anywhere_discard() {
    if !side_by_side_available() {
        return;
    }
    for qmgr in [OURS, C_OQMGR] {
        kill_anywhere(qmgr, "discard", 100, 150, 11);
    }
}

#[test]
#[ignore = "minutes: make soak"]
fn kill_anywhere_smtp() {
    if !side_by_side_available() {
        return;
    }
    for qmgr in [OURS, C_OQMGR] {
        kill_anywhere(qmgr, "smtp", 100, 200, 12);
    }
}

// ------------------------------------------------------------ descriptor exhaustion ---

/// The soft limit on open files of `pid`, from /proc/PID/limits.
fn nofile_soft(pid: i32) -> Option<String> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3).map(str::to_string)
}

/// Sets the soft limit on open files of the queue manager `pid`. As its own user: this root
/// may lack CAP_SYS_RESOURCE, and prlimit(2) lets a process's own user change its limits.
fn set_nofile(lab: &Lab, pid: i32, soft: &str) {
    let owner = lab.tool("postconf", &["-h", "mail_owner"]);
    let spec = format!("--nofile={soft}:");
    let out = Command::new("runuser")
        .args([
            "-u",
            &owner,
            "--",
            "prlimit",
            "--pid",
            &pid.to_string(),
            &spec,
        ])
        .output()
        .expect("prlimit");
    assert!(
        out.status.success(),
        "prlimit {spec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A drain over smtp (400 messages with 1-50 recipients) whose queue manager gets its limit
/// on open files lowered to `nofile` as soon as it runs. If it is still running after
/// 15 s the limit is put back (as an administrator would); master starts a fresh one
/// if it exited. Every recipient must be delivered in the end.
fn descriptor_exhaustion(qmgr: &str, nofile: &str) {
    let started = Instant::now();
    let mut args = vec!["--transport", "smtp", "--dests", "4", "--paused"];
    args.extend_from_slice(&FAST_RETRY);
    let lab = Lab::up_as(qmgr, &args);
    let inj = run(&["inject", &lab.path(), "400", "--rcpts", "1-50"]);
    let recipients: usize = value(&inj, "recipients").parse().expect("count");
    run(&["wait-incoming", &lab.path(), "400", "--timeout", "120"]);
    run(&["release", &lab.path()]);
    let pid = wait_qmgr(&lab);
    let before = nofile_soft(pid).unwrap_or_else(|| "1024".into());
    set_nofile(&lab, pid, nofile);
    let deadline = Instant::now() + Duration::from_secs(15);
    while qmgr_pids(&lab).contains(&pid) && queues_busy(&lab) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let exited = !qmgr_pids(&lab).contains(&pid);
    if !exited {
        set_nofile(&lab, pid, &before);
    }
    let sent_at_limit = sent_counts(&lab.maillog()).len();
    wait_qmgr(&lab);
    lab.drain();
    let out = outcome(&lab, recipients);
    println!(
        "figures: descriptor-exhaustion qmgr={} nofile={nofile} exited={exited} \
         sent_before_restart={sent_at_limit} deferred_lines={} {} seconds={:.0}",
        qmgr_name(qmgr),
        lab.count(" status=deferred "),
        out.line(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "figures: descriptor-exhaustion qmgr={} nofile={nofile} qmgr_trouble={:#?} master={:?}",
        qmgr_name(qmgr),
        trouble(&lab),
        master_trouble(&lab)
    );
    out.assert_ok(&lab, "descriptor exhaustion");
}

#[test]
#[ignore = "minutes: make soak"]
fn descriptor_exhaustion_during_a_drain() {
    if !side_by_side_available() {
        return;
    }
    // 12: below what a drain needs, both daemons fail. 140: enough for ours; C dups every
    // agent socket to descriptor 128 or above (its THRESHOLD_FD_WORKAROUND), so it dies
    // with "fcntl F_DUPFD 128" when more than 12 agent connections are open at once (one
    // run in two here). SOAK_NOFILE=a,b picks others.
    let limits = std::env::var("SOAK_NOFILE").unwrap_or_else(|_| "12,140".into());
    for nofile in limits.split(',') {
        for qmgr in [OURS, C_OQMGR] {
            descriptor_exhaustion(qmgr, nofile);
        }
    }
}

// -------------------------------------------------------------------------- full disk ---

/// Every daemon's warning/fatal lines, shaped, with how often each kind came.
fn all_trouble(lab: &Lab) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for line in lab.maillog().lines().filter(|l| {
        (l.contains(" warning: ") || l.contains(" fatal: ") || l.contains(" panic: "))
            && !l.contains(" postfix/master[")
    }) {
        if let Some(s) = super::shape(line) {
            // shape() leaves short queue ids (a tmpfs has small inode numbers): QID.
            let s: Vec<String> = s
                .split(' ')
                .map(|w| {
                    let id = w.trim_end_matches(':');
                    let hex = id.len() >= 6
                        && id
                            .chars()
                            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c));
                    if hex {
                        w.replacen(id, "QID", 1)
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            *counts.entry(s.join(" ")).or_insert(0) += 1;
        }
    }
    counts
        .into_iter()
        .map(|(k, n)| format!("{n}x {k}"))
        .collect()
}

/// 300 messages with 1-50 recipients for two destinations, d1.lab (discard) and d2.lab
/// (connection refused: deferred, so the defer service must append to defer/), on a 24 MB
/// tmpfs queue that is filled to the last byte before the queue manager starts. After 10 s
/// the space is freed, d2.lab is fixed, and everything must be delivered.
fn full_disk(qmgr: &str) {
    let started = Instant::now();
    let mut args = vec![
        "--transport",
        "discard",
        "--dests",
        "2",
        "--paused",
        "--spool-size",
        "24m",
        "--set",
        "transport_maps=inline:{{d2.lab=smtp:[127.0.0.1]:1}}",
    ];
    args.extend_from_slice(&FAST_RETRY);
    let lab = Lab::up_as(qmgr, &args);
    let inj = run(&["inject", &lab.path(), "300", "--rcpts", "1-50"]);
    let recipients: usize = value(&inj, "recipients").parse().expect("count");
    run(&["wait-incoming", &lab.path(), "300", "--timeout", "120"]);
    let filler = lab.dir.join("spool/filler");
    let dd = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", filler.display()))
        .arg("bs=64k")
        .output()
        .expect("dd");
    assert!(
        String::from_utf8_lossy(&dd.stderr).contains("No space left on device"),
        "the queue file system is full: {}",
        String::from_utf8_lossy(&dd.stderr)
    );
    run(&["release", &lab.path()]);
    std::thread::sleep(Duration::from_secs(10));
    let full_sent = sent_counts(&lab.maillog()).len();
    let full_corrupt = files_in(&lab.dir.join("spool/corrupt"));
    std::fs::remove_file(&filler).expect("free the space");
    lab.tool("postconf", &["-e", "transport_maps="]);
    run(&["reload", &lab.path()]);
    lab.tool("postqueue", &["-f"]);
    lab.drain();
    let out = outcome(&lab, recipients);
    println!(
        "figures: full-disk qmgr={} sent_while_full={full_sent} corrupt_while_full={full_corrupt} \
         deferred_lines={} {} seconds={:.0}",
        qmgr_name(qmgr),
        lab.count(" status=deferred "),
        out.line(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "figures: full-disk qmgr={} qmgr_trouble={:?} all_trouble={:#?}",
        qmgr_name(qmgr),
        trouble(&lab),
        all_trouble(&lab)
    );
    assert_eq!(
        full_corrupt,
        0,
        "corrupt/ while full\n{}",
        tail(&lab.maillog())
    );
    let fatal: Vec<String> = trouble(&lab)
        .into_iter()
        .filter(|l| l.contains("fatal:") || l.contains("panic:"))
        .collect();
    assert!(fatal.is_empty(), "the queue manager died: {fatal:?}");
    out.assert_ok(&lab, "full disk");
}

#[test]
#[ignore = "minutes: make soak"]
fn full_queue_file_system_loses_nothing() {
    if !side_by_side_available() {
        return;
    }
    for qmgr in [OURS, C_OQMGR] {
        full_disk(qmgr);
    }
}
