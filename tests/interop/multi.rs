//! Two Postfix instances at once, managed by the real postmulti(1), each with our queue
//! manager: the lab's instance as the primary and a second one, `postfix-b`, made with
//! `postmulti -e create`. Each delivers its own mail, logs under its own syslog_name into its
//! own maillog, and answers `oqmgrctl` with its own pid; stopping the second leaves nothing.
//!
//! postmulti(1) has no `-c`: its primary is always the default instance, /etc/postfix. Every
//! postmulti call therefore runs in a private mount namespace (unshare(1)) where the lab's
//! config directory is bind-mounted on /etc/postfix; the real /etc/postfix is never touched.
//! The second instance shares the lab's daemon_directory, where our binary is installed as
//! `oqmgr` the way `make install` does, and its qmgr row is pointed at it as the README says.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::lab::{files_in, postfix_available, run, tail, value, Lab};

/// Messages the primary and the second instance receive (at the same time).
const PRIMARY_MESSAGES: usize = 300;
const SECOND_MESSAGES_PER_DOMAIN: usize = 100;
const SECOND_RCPTS: usize = 2;
const SECOND_DOMAINS: [&str; 2] = ["d1.lab", "d2.lab"];

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `postmulti ARGS` with `primary_etc` as the default instance's /etc/postfix.
fn postmulti(primary_etc: &Path, args: &[&str]) -> String {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/postfix && exec postmulti "$@""#)
        .arg(primary_etc)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("unshare: {e}"));
    ok(&format!("postmulti {args:?}"), out)
}

fn oqmgrctl_status(etc: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_oqmgrctl"))
        .arg("-c")
        .arg(etc)
        .arg("status")
        .output()
        .expect("run oqmgrctl");
    ok(&format!("oqmgrctl -c {etc:?} status"), out)
}

/// The pid `oqmgrctl status` names in its first line (`queue manager: pid N, ...`).
fn status_pid(status: &str) -> u32 {
    status
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("queue manager: pid "))
        .and_then(|l| l.split(',').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in oqmgrctl status:\n{status}"))
}

/// The processes whose environment names `etc` as MAIL_CONFIG: master(8) and every daemon
/// it started for that instance.
fn instance_pids(etc: &Path) -> Vec<u32> {
    let want = format!("MAIL_CONFIG={}", etc.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == want.as_bytes()))
        })
        .collect()
}

/// The child of master `master` whose program is `name` (the queue manager of an instance).
fn child_named(master: u32, name: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<u32>().ok());
            let argv0 = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == Some(master) && argv0.split(|&b| b == 0).next() == Some(name.as_bytes())
        })
}

fn assert_is_ours(pid: u32, what: &str) {
    let ours = std::fs::read(env!("CARGO_BIN_EXE_oqmgr")).expect("our binary");
    let running = std::fs::read(format!("/proc/{pid}/exe"))
        .unwrap_or_else(|e| panic!("{what}: /proc/{pid}/exe: {e}"));
    assert!(
        running == ours,
        "{what}: process {pid} runs {:?}, not our oqmgr",
        std::fs::read_link(format!("/proc/{pid}/exe"))
    );
}

/// The program of a log line (`postfix-b/oqmgr` in `Nov 30 09:45:52 b postfix-b/oqmgr[7]: ...`).
fn program(line: &str) -> &str {
    let word = line.split(' ').filter(|w| !w.is_empty()).nth(4);
    word.and_then(|w| w.split('[').next()).unwrap_or("")
}

/// The second instance; stopped (and anything it left killed) on drop, before the lab.
struct Second {
    etc: PathBuf,
    dir: PathBuf,
}

impl Second {
    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    fn count(&self, needle: &str) -> usize {
        self.maillog()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn master_pid(&self) -> Option<u32> {
        let pid = std::fs::read_to_string(self.dir.join("spool/pid/master.pid")).ok()?;
        let pid: u32 = pid.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    fn queued(&self) -> usize {
        ["incoming", "active", "deferred"]
            .iter()
            .map(|q| files_in(&self.dir.join("spool").join(q)))
            .sum()
    }
}

impl Drop for Second {
    fn drop(&mut self) {
        if self.master_pid().is_some() {
            // -c sets MAIL_CONFIG, so postfix(1) stops just this instance.
            let _ = Command::new("postfix")
                .arg("-c")
                .arg(&self.etc)
                .arg("stop")
                .output();
            std::thread::sleep(Duration::from_secs(1));
        }
        for pid in instance_pids(&self.etc) {
            eprintln!("killing process {pid} left by the second instance");
            // SAFETY: kill has no memory preconditions; the pid is a process of this test's
            // own instance (its MAIL_CONFIG names our temporary directory).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

#[test]
fn two_postmulti_instances_each_deliver_their_own_mail_with_our_queue_manager() {
    if !postfix_available() {
        return;
    }
    let started = Instant::now();
    let lab = Lab::up(&["--transport", "discard", "--dests", "2"]);
    let primary_etc = lab.dir.join("etc");
    let b_dir = lab.dir.parent().expect("lab parent").join("b");
    let b_etc = b_dir.join("etc");

    // postmulti -e create copies the templates from meta_directory (the lab's own copy).
    let meta = lab.tool("postconf", &["-h", "meta_directory"]);
    let templates = ok(
        "postconf -dh meta_directory",
        Command::new("postconf")
            .args(["-dh", "meta_directory"])
            .output()
            .expect("postconf"),
    );
    for proto in ["main.cf.proto", "master.cf.proto"] {
        std::fs::copy(
            Path::new(&templates).join(proto),
            Path::new(&meta).join(proto),
        )
        .unwrap_or_else(|e| panic!("copy {proto}: {e}"));
    }
    // Our binary as daemon_directory/oqmgr, as `make install` puts it (the lab links
    // Debian's there; the primary's qmgr row runs the lab's copy of ours as `qmgr`).
    let daemon_dir = PathBuf::from(lab.tool("postconf", &["-h", "daemon_directory"]));
    let _ = std::fs::remove_file(daemon_dir.join("oqmgr"));
    std::fs::copy(env!("CARGO_BIN_EXE_oqmgr"), daemon_dir.join("oqmgr")).expect("install oqmgr");

    // The steps of the README, section "Several instances (postmulti)".
    postmulti(&primary_etc, &["-e", "init"]);
    let second = Second {
        etc: b_etc.clone(),
        dir: b_dir.clone(),
    };
    postmulti(
        &primary_etc,
        &[
            "-I",
            "postfix-b",
            "-G",
            "mta",
            "-e",
            "create",
            &format!("config_directory={}", b_etc.display()),
            &format!("queue_directory={}", b_dir.join("spool").display()),
            &format!("data_directory={}", b_dir.join("data").display()),
        ],
    );
    // The lab's master.cf (no chroot, discard, postlogd), with an smtpd port of its own.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let master_cf: String = std::fs::read_to_string(primary_etc.join("master.cf"))
        .expect("master.cf")
        .lines()
        .map(|l| match l.split_once(" inet ") {
            Some((addr, rest)) if addr.starts_with("127.0.0.1:") => {
                format!("127.0.0.1:{port} inet {rest}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect();
    assert!(
        master_cf.contains(&format!("127.0.0.1:{port} inet ")),
        "{master_cf}"
    );
    std::fs::write(b_etc.join("master.cf"), master_cf).expect("write master.cf");
    let b = ["-i", "postfix-b", "-x"];
    postmulti(
        &primary_etc,
        &[&b[..], &["postconf", "-F", "-e", "qmgr/unix/command=oqmgr"]].concat(),
    );
    let maillog = format!("maillog_file={}", b_dir.join("maillog").display());
    let prefixes = format!("maillog_file_prefixes={}", b_dir.display());
    postmulti(
        &primary_etc,
        &[
            &b[..],
            &[
                "postconf",
                "-e",
                // create disables inet services in a new instance; this one takes mail.
                "master_service_disable=",
                &maillog,
                &prefixes,
                "compatibility_level=3.6",
                "myhostname=b.localdomain",
                "mydestination=",
                "relay_domains=",
                "local_recipient_maps=",
                "alias_maps=",
                "alias_database=",
                "inet_interfaces=loopback-only",
                "inet_protocols=ipv4",
                "mynetworks=127.0.0.0/8",
                "smtpd_relay_restrictions=permit_mynetworks, reject",
                "smtpd_peername_lookup=no",
                "default_transport=discard",
                "in_flow_delay=0",
                "biff=no",
                "smtputf8_enable=no",
            ],
        ]
        .concat(),
    );
    postmulti(&primary_etc, &["-i", "postfix-b", "-e", "enable"]);
    let list = postmulti(&primary_etc, &["-l"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("postfix-b ") && l.contains(" mta ") && l.contains(" y ")),
        "postmulti -l:\n{list}"
    );
    postmulti(&primary_etc, &["-i", "postfix-b", "-p", "start"]);

    // Both queue managers are ours, each answering oqmgrctl with its own pid.
    let b_master = second.master_pid().expect("the second master runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let b_qmgr = loop {
        if let Some(pid) = child_named(b_master, "oqmgr") {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no queue manager in the second instance\n{}",
            tail(&second.maillog())
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let primary_qmgr: u32 = value(&run(&["stats", &lab.path()]), "qmgr_pid")
        .parse()
        .expect("qmgr_pid");
    assert_ne!(primary_qmgr, b_qmgr);
    assert_is_ours(primary_qmgr, "the primary's queue manager");
    assert_is_ours(b_qmgr, "postfix-b's queue manager");
    // The status socket may not be up the very instant the process exists.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status_pid(&oqmgrctl_status(&primary_etc)), primary_qmgr);
    assert_eq!(status_pid(&oqmgrctl_status(&b_etc)), b_qmgr);

    // Mail into both at once.
    let pflab = super::lab::pflab();
    let mut injections = vec![spawn(Command::new(&pflab).args([
        "inject",
        &lab.path(),
        &PRIMARY_MESSAGES.to_string(),
        "--rcpts",
        "1-3",
    ]))];
    for domain in SECOND_DOMAINS {
        injections.push(spawn(Command::new("/usr/sbin/smtp-source").args([
            "-4",
            "-d",
            "-N",
            "-M",
            "client.lab",
            "-f",
            "sender@src.lab",
            "-m",
            &SECOND_MESSAGES_PER_DOMAIN.to_string(),
            "-s",
            "10",
            "-r",
            &SECOND_RCPTS.to_string(),
            "-t",
            &format!("multib@{domain}"),
            &format!("127.0.0.1:{port}"),
        ])));
    }
    let mut outputs = injections
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"));
    let primary_inject = ok("pflab inject", outputs.next().expect("primary injection"));
    for out in outputs {
        ok("smtp-source into postfix-b", out);
    }
    let primary_rcpts: usize = primary_inject
        .lines()
        .find_map(|l| l.strip_prefix("recipients="))
        .and_then(|n| n.parse().ok())
        .expect("recipients=");

    lab.drain();
    let b_messages = SECOND_MESSAGES_PER_DOMAIN * SECOND_DOMAINS.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while second.queued() > 0 || second.count(": removed") < b_messages {
        assert!(
            Instant::now() < deadline,
            "postfix-b did not drain: {} queued\n{}",
            second.queued(),
            tail(&second.maillog())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));

    // Each instance delivered exactly its own mail, and its queue manager did it quietly.
    lab.assert_all_delivered(PRIMARY_MESSAGES, primary_rcpts);
    let primary_log = lab.maillog();
    assert_eq!(
        lab.count("multib@"),
        0,
        "postfix-b's mail in the primary's log"
    );
    let b_log = second.maillog();
    let b_sent: Vec<&str> = b_log
        .lines()
        .filter(|l| l.contains(" status=sent "))
        .collect();
    assert_eq!(b_sent.len(), b_messages * SECOND_RCPTS, "{}", tail(&b_log));
    assert!(
        b_sent.iter().all(|l| l.contains("multib@")),
        "{}",
        tail(&b_log)
    );
    let b_qmgr_lines: Vec<&str> = b_log
        .lines()
        .filter(|l| program(l) == "postfix-b/oqmgr")
        .collect();
    let removed = b_qmgr_lines
        .iter()
        .filter(|l| l.ends_with(": removed"))
        .count();
    assert_eq!(removed, b_messages, "{}", tail(&b_log));
    let trouble: Vec<&&str> = b_qmgr_lines
        .iter()
        .filter(|l| l.contains("warning:") || l.contains("fatal:") || l.contains("panic:"))
        .filter(|l| !l.contains("problem talking to service rewrite"))
        .collect();
    assert!(
        trouble.is_empty(),
        "postfix-b's queue manager: {trouble:#?}"
    );
    // Its own syslog_name on every line of each log (the queue manager's pid in its tag).
    let strangers: Vec<&str> = primary_log
        .lines()
        .filter(|l| !program(l).starts_with("postfix/"))
        .collect();
    assert!(strangers.is_empty(), "in the primary's log: {strangers:#?}");
    let strangers: Vec<&str> = b_log
        .lines()
        .filter(|l| !program(l).starts_with("postfix-b/"))
        .collect();
    assert!(strangers.is_empty(), "in postfix-b's log: {strangers:#?}");
    assert!(
        b_log.contains(&format!(" postfix-b/oqmgr[{b_qmgr}]: ")),
        "{}",
        tail(&b_log)
    );
    assert!(primary_log.contains(&format!(" postfix/qmgr[{primary_qmgr}]: ")));

    // Stopped through postmulti: the second instance leaves no process; the primary runs on.
    postmulti(&primary_etc, &["-i", "postfix-b", "-p", "stop"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = instance_pids(&b_etc);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes of postfix-b left after stop: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(Path::new(&format!("/proc/{primary_qmgr}")).exists());
    assert_eq!(status_pid(&oqmgrctl_status(&primary_etc)), primary_qmgr);
    eprintln!("two instances: {:.1} s", started.elapsed().as_secs_f64());
    drop(second);
    drop(lab);
}
