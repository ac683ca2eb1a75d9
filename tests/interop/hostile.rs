//! Hostile local input (issue 11), side by side under Debian's C oqmgr and ours.
//!
//! - A trigger flood on public/qmgr (`unix` and `fifo` service types) from an unprivileged
//!   local user while mail is injected and drained: random bytes with every trigger letter,
//!   huge writes, thousands of connections. The queue manager must survive (same pid), its
//!   memory and descriptors stay flat, every message is delivered, and it logs no warning.
//! - A connection to public/qmgr that sends nothing: the C daemon waits 10 s for it, and all
//!   mail with it; ours must not stall (C's figure is printed alongside).
//! - Queue directory oddities (symlinks out of the queue, a FIFO, a directory, a socket, a hard
//!   link, a file that is not ready): nothing outside the queue is opened, dated or changed,
//!   the odd entries stay where they are, and the warnings are the C daemon's.
//!
//! Each scenario prints a `figures` line per queue manager (run with `--nocapture`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::faults::{injected, master_trouble, trouble};
use super::lab::{pflab, qmgr_name, run, side_by_side_available, tail, value, Lab, C_OQMGR, OURS};

/// The flooder, run as an unprivileged user: `PATH PHASE...`, each phase `name=n`, in order.
/// Prints `key=value` figures. On a FIFO every write is its own open/write/close.
const FLOOD_PY: &str = r#"
import os, socket, sys, time, random, stat
path, phases = sys.argv[1], sys.argv[2:]
rng = random.Random(11)
fifo = stat.S_ISFIFO(os.stat(path).st_mode)
held = []
def blob(n):
    b = bytearray(rng.randbytes(n))
    for i in range(0, n, 5):
        b[i] = b"WIDFA\0"[rng.randrange(6)]
    return bytes(b)
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s
def send(data):
    if fifo:
        fd = os.open(path, os.O_WRONLY)
        try: os.write(fd, data)
        finally: os.close(fd)
    else:
        s = conn()
        try: s.sendall(data)
        except OSError: pass
        s.close()
for ph in phases:
    what, _, n = ph.partition("=")
    n = int(n)
    t0 = time.time()
    if what == "random":        # n writes of 1..4096 random bytes
        total = 0
        for _ in range(n):
            d = blob(rng.randrange(1, 4097)); total += len(d); send(d)
        print("random_bytes=%d" % total)
    elif what == "huge":        # n MiB as fast as they go: one write (fifo), or connections
        d = blob(1 << 20) * n   # that each take what they can until the reader closes
        sent = 0
        if fifo:
            fd = os.open(path, os.O_WRONLY)
            while sent < len(d): sent += os.write(fd, d[sent:])
            os.close(fd)
        else:
            while sent < len(d):
                s = conn()
                try:
                    while sent < len(d): sent += s.send(d[sent:sent + (1 << 20)])
                except OSError: pass
                s.close()
        print("huge_bytes=%d" % sent)
    elif what == "closed":      # n connections closed at once / open-close cycles
        for _ in range(n):
            if fifo: os.close(os.open(path, os.O_WRONLY))
            else: conn().close()
    elif what == "partial":     # n connections that write one letter and hang on
        for _ in range(n):
            if fifo:
                fd = os.open(path, os.O_WRONLY); os.write(fd, b"I"); held.append(fd)
            else:
                s = conn(); s.send(b"I"); held.append(s)
    elif what == "idle":        # n connections (writers) held open, silent
        for _ in range(n):
            held.append(os.open(path, os.O_WRONLY) if fifo else conn())
    elif what == "sleep":       # n ms
        time.sleep(n / 1000)
    print("%s_s=%.2f" % (what, time.time() - t0), flush=True)
"#;

/// The gid of group postdrop: public/ is `postfix:postdrop` 0710, so a local user reaches
/// public/qmgr only through that group (what postqueue/postdrop are setgid to).
fn postdrop_gid() -> String {
    let groups = std::fs::read_to_string("/etc/group").expect("/etc/group");
    groups
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postdrop")).then(|| f.get(2).map(|g| g.to_string()))?
        })
        .expect("group postdrop")
}

/// Starts the flooder on public/qmgr as user nobody with supplementary group postdrop (at
/// most 60 s: a flooder stuck on a dead reader must not hang the test).
fn flood(lab: &Lab, phases: &[&str]) -> Child {
    let target = lab.dir.join("spool/public/qmgr");
    Command::new("timeout")
        .args(["60", "setpriv", "--reuid=nobody", "--regid=nogroup"])
        .arg(format!("--groups={}", postdrop_gid()))
        .args(["/usr/bin/python3", "-c", FLOOD_PY])
        .arg(&target)
        .args(phases)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flooder")
}

/// Waits for the flooder; its figures, space-separated.
fn flood_done(child: Child) -> String {
    let out = child.wait_with_output().expect("flooder");
    assert!(
        out.status.success(),
        "flooder: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn inject(lab: &Lab, messages: usize) -> Child {
    Command::new(pflab())
        .args([
            "inject",
            &lab.path(),
            &messages.to_string(),
            "--rcpts",
            "1-5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("pflab inject")
}

/// A `kB` figure of /proc/PID/status (VmRSS, VmHWM).
fn status_kib(pid: i32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// utime+stime of `pid` in seconds.
fn cpu_s(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or("", |(_, a)| a)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn qmgr_pid(lab: &Lab) -> i32 {
    let stats = run(&["stats", &lab.path()]);
    value(&stats, "qmgr_pid")
        .parse()
        .expect("a queue manager runs")
}

/// Samples VmRSS of `pid` every 5 ms until stopped; the largest value seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: i32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(status_kib(pid, "VmRSS"));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        RssSampler { stop, thread }
    }

    fn peak(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// Waits (no kicks: the flood's own triggers and cleanup's must do) until the queues are
/// empty; seconds taken.
fn drain_unkicked(lab: &Lab, timeout_s: u64) -> f64 {
    let started = Instant::now();
    let t = timeout_s.to_string();
    run(&["wait-empty", &lab.path(), "--timeout", &t]);
    std::thread::sleep(Duration::from_millis(500));
    started.elapsed().as_secs_f64()
}

// ------------------------------------------------------------------- trigger flood ---

/// What one trigger-flood run measured.
struct FloodFigures {
    trouble: Vec<String>,
}

/// 300 messages (1-5 recipients) injected while a local user floods public/qmgr; then every
/// message must be delivered without a kick, by the same queue manager process, with its
/// resident memory and its descriptors as before.
fn trigger_flood(qmgr: &str, service_type: &str) -> FloodFigures {
    let started = Instant::now();
    let lab = Lab::up_as(
        qmgr,
        &[
            "--transport",
            "discard",
            "--dests",
            "4",
            "--service-type",
            service_type,
        ],
    );
    // Warm up (rewrite connection, agents, allocator), so that "before" is the steady state.
    let mut recipients = injected(inject(&lab, 20));
    drain_unkicked(&lab, 60);
    let pid = qmgr_pid(&lab);
    let fds_before = fd_count(pid);
    let rss_before = status_kib(pid, "VmRSS");
    let cpu_before = cpu_s(pid);
    // Resets VmHWM to the current RSS.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
    let sampler = RssSampler::start(pid);
    let phases: &[&str] = if service_type == "fifo" {
        &[
            "random=1000",
            "huge=64",
            "closed=5000",
            "partial=200",
            "idle=200",
            "random=200",
            "sleep=300",
        ]
    } else {
        &[
            "random=1000",
            "huge=64",
            "closed=5000",
            "partial=200",
            "random=200",
            "sleep=300",
        ]
    };
    let injecting = inject(&lab, 300);
    let flooding = flood(&lab, phases);
    let flood_started = Instant::now();
    let flooded = flood_done(flooding);
    let flood_s = flood_started.elapsed().as_secs_f64();
    recipients += injected(injecting);
    let drain_s = drain_unkicked(&lab, 60);
    let peak = sampler.peak();
    let hwm = status_kib(pid, "VmHWM");
    let rss_after = status_kib(pid, "VmRSS");
    let fds_after = fd_count(pid);
    let cpu = cpu_s(pid) - cpu_before;
    let pid_after = qmgr_pid(&lab);
    let figures = FloodFigures {
        trouble: trouble(&lab),
    };
    println!(
        "figures: trigger-flood qmgr={} type={service_type} pid_same={} rss_before_kib={rss_before} \
         peak_rss_kib={peak} hwm_kib={hwm} rss_after_kib={rss_after} fds_before={fds_before} \
         fds_after={fds_after} qmgr_cpu_s={cpu:.2} flood_s={flood_s:.1} drain_s={drain_s:.1} \
         sent={}/{recipients} seconds={:.0} flooder: {flooded}",
        qmgr_name(qmgr),
        pid_after == pid,
        lab.count(" status=sent "),
        started.elapsed().as_secs_f64()
    );
    println!(
        "figures: trigger-flood qmgr={} type={service_type} qmgr_trouble={:?} master={:?}",
        qmgr_name(qmgr),
        figures.trouble,
        master_trouble(&lab)
    );
    assert_eq!(pid_after, pid, "the queue manager was replaced");
    let log = lab.maillog();
    assert!(
        peak.max(hwm) <= rss_before + 1024,
        "resident memory grew: {rss_before} kB before, peak {} kB",
        peak.max(hwm)
    );
    assert!(
        fds_after <= fds_before,
        "descriptors: {fds_before} before, {fds_after} after\n{}",
        tail(&log)
    );
    assert_eq!(lab.count(" status=sent "), recipients, "{}", tail(&log));
    assert_eq!(lab.removed(), 320, "{}", tail(&log));
    lab.assert_queues_empty();
    figures
}

/// The flood with ours and with C on one service type: ours logs no warning C does not.
fn trigger_flood_side_by_side(service_type: &str) {
    if !side_by_side_available() {
        return;
    }
    let ours = trigger_flood(OURS, service_type);
    let c = trigger_flood(C_OQMGR, service_type);
    assert!(
        ours.trouble.iter().all(|t| c.trouble.contains(t)),
        "warnings the C daemon does not log: ours {:?}, C {:?}",
        ours.trouble,
        c.trouble
    );
}

#[test]
fn trigger_flood_from_a_local_user_unix_service() {
    trigger_flood_side_by_side("unix");
}

#[test]
fn trigger_flood_from_a_local_user_fifo_service() {
    trigger_flood_side_by_side("fifo");
}

/// One local user holds one connection to public/qmgr open without writing, then 20
/// messages come in: the seconds until they are delivered (no kicks). The C daemon waits up
/// to 10 s for a connected client's bytes before anything else (its trigger server:
/// read_wait(fd, 10)), so every silent connection stalls its mail for 10 s; ours parks the
/// connection in its event loop and goes on.
fn silent_connection_stall(qmgr: &str) -> f64 {
    let lab = Lab::up_as(qmgr, &["--transport", "discard", "--dests", "4"]);
    let flooding = flood(&lab, &["idle=1", "sleep=12000"]);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let recipients = injected(inject(&lab, 20));
    drain_unkicked(&lab, 60);
    let stall = started.elapsed().as_secs_f64() - 0.5;
    flood_done(flooding);
    println!(
        "figures: silent-connection qmgr={} stall_s={stall:.1} sent={}/{recipients} \
         qmgr_trouble={:?}",
        qmgr_name(qmgr),
        lab.count(" status=sent "),
        trouble(&lab)
    );
    lab.assert_all_delivered(20, recipients);
    if qmgr == OURS {
        assert!(trouble(&lab).is_empty(), "{:?}", trouble(&lab));
    }
    stall
}

#[test]
fn a_silent_connection_stalls_the_c_queue_manager_not_ours() {
    if !side_by_side_available() {
        return;
    }
    let ours = silent_connection_stall(OURS);
    let c = silent_connection_stall(C_OQMGR);
    // C's figure is printed for comparison (about 10 s); ours must not stall.
    assert!(ours < 2.0, "ours {ours:.1} s (C {c:.1} s)");
}

// ------------------------------------------------------------ queue directory oddities ---

/// What a file outside the queue must keep: content, mode, owner, mtime, atime.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    content: Vec<u8>,
    mode: u32,
    uid: u32,
    mtime: i64,
    atime: i64,
}

fn snapshot(path: &Path) -> Snapshot {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    // O_NOATIME: looking must not move the atime that tells whether anyone else read it.
    let mut content = Vec::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
        .and_then(|mut f| f.read_to_end(&mut content))
        .unwrap_or_else(|e| panic!("{path:?}: {e}"));
    Snapshot {
        content,
        mode: meta.mode(),
        uid: meta.uid(),
        mtime: meta.mtime(),
        atime: meta.atime(),
    }
}

/// The file type of `path` itself (not following a symlink): "link", "fifo", "dir",
/// "socket", "file MODE", or "missing".
fn kind(path: &Path) -> String {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return "missing".into();
    };
    let t = meta.file_type();
    if t.is_symlink() {
        "link".into()
    } else if t.is_fifo() {
        "fifo".into()
    } else if t.is_dir() {
        "dir".into()
    } else if t.is_socket() {
        "socket".into()
    } else {
        format!("file {:o}", meta.permissions().mode() & 0o7777)
    }
}

/// A copy of `from` at `to`, owned like it, mode 0700 (ready), dated a day back (atime an
/// hour before mtime, so that any read updates atime on a relatime mount).
fn outside_copy(from: &Path, to: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::copy(from, to).expect("copy");
    let meta = std::fs::metadata(from).expect("queue file");
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid())).expect("chown");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mtime = nix::sys::time::TimeSpec::new(now - 86_400, 0);
    let atime = nix::sys::time::TimeSpec::new(now - 90_000, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &atime,
        &mtime,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .expect("utimensat");
}

/// Names of the odd entries (queue-id-like), where they are put, and what they are.
const ODD: [(&str, &str, &str); 9] = [
    (
        "incoming",
        "AAAAAA0001",
        "symlink to a queue file outside the queue",
    ),
    ("incoming", "AAAAAA0002", "symlink to /etc/passwd"),
    ("incoming", "AAAAAA0003", "fifo"),
    ("incoming", "AAAAAA0004", "directory"),
    ("incoming", "AAAAAA0005", "unix socket"),
    ("incoming", "AAAAAA0006", "hard link to a queued message"),
    (
        "incoming",
        "AAAAAA0007",
        "a queued message's copy, mode 0600 (not ready)",
    ),
    (
        "deferred/A",
        "AAAAAA0008",
        "symlink to a queue file outside the queue",
    ),
    (
        "active",
        "AAAAAA0009",
        "symlink to a queue file outside the queue",
    ),
];

/// What the oddities scenario saw under one queue manager.
struct Oddities {
    /// The queue manager's warnings (text after `warning: `), each once, sorted.
    warnings: Vec<String>,
    /// Where each odd entry ended up and what it is.
    places: Vec<String>,
    removed: usize,
    sent: usize,
    /// Outside targets whose snapshot changed, with how.
    touched: Vec<String>,
}

fn oddities(qmgr: &str) -> Oddities {
    let started = Instant::now();
    // No `postfix reload` once the odd entries are in place: postfix-script runs postsuper
    // then, whose structure check deletes them. The 3 messages go to hold/ (smtpd's HOLD), so
    // they stay put as models for the copies and the hard link.
    let lab = Lab::up_as(
        qmgr,
        &[
            "--transport",
            "discard",
            "--dests",
            "1",
            "--set",
            "smtpd_sender_restrictions=check_sender_access inline:{{sender@src.lab=HOLD}}",
            "--set",
            "service_throttle_time=1s",
        ],
    );
    run(&["inject", &lab.path(), "3"]);
    let spool = lab.dir.join("spool");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut held = Vec::new();
    while held.len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        held = super::lab::files_under(&spool.join("hold"));
    }
    held.sort();
    assert_eq!(held.len(), 3, "{held:?}\n{}", tail(&lab.maillog()));
    let outside = lab.dir.parent().expect("lab root").join("outside");
    std::fs::create_dir(&outside).expect("outside dir");
    let targets: Vec<PathBuf> = ["incoming-target", "deferred-target", "active-target"]
        .iter()
        .map(|n| outside.join(n))
        .collect();
    for t in &targets {
        outside_copy(&held[0], t);
    }
    let at = |i: usize| spool.join(ODD[i].0).join(ODD[i].1);
    std::fs::create_dir_all(spool.join("deferred/A")).expect("deferred/A");
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(spool.join("deferred")).expect("deferred");
        std::os::unix::fs::chown(spool.join("deferred/A"), Some(meta.uid()), Some(meta.gid()))
            .expect("chown");
    }
    let symlink = |a: &Path, b: &Path| std::os::unix::fs::symlink(a, b);
    symlink(&targets[0], &at(0)).expect("symlink");
    symlink(Path::new("/etc/passwd"), &at(1)).expect("symlink");
    let mkfifo = Command::new("mkfifo").arg(at(2)).status().expect("mkfifo");
    assert!(mkfifo.success());
    std::fs::create_dir(at(3)).expect("mkdir");
    drop(std::os::unix::net::UnixListener::bind(at(4)).expect("bind"));
    std::fs::hard_link(&held[1], at(5)).expect("link");
    outside_copy(&held[2], &at(6));
    std::fs::set_permissions(at(6), std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    symlink(&targets[1], &at(7)).expect("symlink");
    symlink(&targets[2], &at(8)).expect("symlink");
    // Ours only: a symlink in active/ to a file the mail_owner may not date. C's start-up
    // recovery follows it, fails (EPERM) and dies, again at every restart; ours moves it.
    let root_owned = spool.join("active/AAAAAA000A");
    if qmgr != C_OQMGR {
        symlink(Path::new("/etc/passwd"), &root_owned).expect("symlink");
    }
    let passwd = Path::new("/etc/passwd");
    let before: Vec<Snapshot> = targets.iter().map(|t| snapshot(t)).collect();
    let passwd_before = snapshot(passwd);

    // A new queue manager (the running one killed; master starts the next at a kick) recovers
    // active/ and scans incoming/ and deferred/; then postqueue -f scans both again, ignoring
    // time stamps.
    let pid = super::faults::wait_qmgr(&lab);
    // SAFETY: kill has no memory preconditions; pid is this lab's queue manager.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    while super::faults::qmgr_pids(&lab).contains(&pid) {
        std::thread::sleep(Duration::from_millis(5));
    }
    super::faults::wait_qmgr(&lab);
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.removed() < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.tool("postqueue", &["-f"]);
    std::thread::sleep(Duration::from_secs(1));

    let mut touched = Vec::new();
    for (t, b) in targets.iter().zip(&before) {
        let now = snapshot(t);
        if &now != b {
            touched.push(format!(
                "{}: mtime {}->{} atime {}->{} content_same={} mode {:o}->{:o}",
                t.file_name().unwrap_or_default().to_string_lossy(),
                b.mtime,
                now.mtime,
                b.atime,
                now.atime,
                now.content == b.content,
                b.mode,
                now.mode
            ));
        }
    }
    let passwd_now = snapshot(passwd);
    if (passwd_now.content.clone(), passwd_now.mode, passwd_now.uid)
        != (
            passwd_before.content.clone(),
            passwd_before.mode,
            passwd_before.uid,
        )
    {
        touched.push("/etc/passwd changed".into());
    }
    // Where each odd entry is now: its place, or incoming/ (start-up recovery of active/).
    let places = ODD
        .iter()
        .map(|(q, id, _)| {
            let found = ["incoming", q, "active", "deferred/A", "corrupt"]
                .into_iter()
                .map(|d| (d, kind(&spool.join(d).join(id))))
                .find(|(_, k)| k != "missing");
            match found {
                Some((d, k)) => format!("{id} {d} {k}"),
                None => format!("{id} gone"),
            }
        })
        .collect();
    let mut warnings: Vec<String> = lab
        .qmgr_lines()
        .iter()
        .filter_map(|l| l.split_once(": warning: ").map(|(_, t)| t.to_string()))
        .collect();
    warnings.sort();
    warnings.dedup();
    if qmgr != C_OQMGR {
        let moved = spool.join("incoming/AAAAAA000A");
        assert_eq!(kind(&moved), "link", "{}", tail(&lab.maillog()));
        let warning = "incoming/AAAAAA000A: uid 0: not a regular file";
        assert!(warnings.iter().any(|w| w == warning), "{warnings:#?}");
        warnings.retain(|w| w != warning);
        assert_eq!(kind(&root_owned), "missing");
    }
    let out = Oddities {
        warnings,
        places,
        removed: lab.removed(),
        sent: lab.count(" status=sent "),
        touched,
    };
    println!(
        "figures: queue-oddities qmgr={} removed={} sent={} touched={:?} seconds={:.0}",
        qmgr_name(qmgr),
        out.removed,
        out.sent,
        out.touched,
        started.elapsed().as_secs_f64()
    );
    println!(
        "figures: queue-oddities qmgr={} places={:?} warnings={:#?}",
        qmgr_name(qmgr),
        out.places,
        out.warnings
    );
    let corrupt = super::lab::files_in(&spool.join("corrupt"));
    assert_eq!(corrupt, 0, "{}", tail(&lab.maillog()));
    out
}

#[test]
fn queue_directory_oddities_are_never_followed_out_of_the_queue() {
    if !side_by_side_available() {
        return;
    }
    let ours = oddities(OURS);
    let c = oddities(C_OQMGR);
    // Ours: nothing outside the queue read, dated or changed.
    assert!(ours.touched.is_empty(), "{:?}", ours.touched);
    // The hard link to a held message is a message of its own: delivered once, alike.
    assert_eq!((ours.removed, ours.sent), (1, 1));
    assert_eq!((ours.removed, ours.sent), (c.removed, c.sent));
    // Every odd entry where the C daemon leaves it, and the same warnings.
    assert_eq!(ours.places, c.places);
    assert_eq!(ours.warnings, c.warnings);
}
