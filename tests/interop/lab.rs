//! The private Postfix instance the interop tests run (tests/lab/pflab), and what they ask of
//! it: inject, drain, read the maillog, run Postfix's tools, compare with Debian's C oqmgr.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A private instance, stopped and removed on drop.
pub struct Lab {
    root: tempfile::TempDir,
    pub dir: PathBuf,
}

pub fn pflab() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/pflab")
}

/// Runs pflab; its key=value lines, or a panic with everything it printed.
pub fn run(args: &[&str]) -> Vec<(String, String)> {
    let out = Command::new(pflab())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("pflab {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pflab {args:?} failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn value(kv: &[(String, String)], key: &str) -> String {
    kv.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {key}= in {kv:?}"))
}

/// Debian's C oqmgr: what the side-by-side tests compare ours with.
pub const C_OQMGR: &str = "/usr/lib/postfix/sbin/oqmgr";

/// Our queue manager, as the side-by-side tests name it.
pub const OURS: &str = env!("CARGO_BIN_EXE_oqmgr");

/// The short name of a queue manager binary in figures lines: `c` or `ours`.
pub fn qmgr_name(qmgr: &str) -> &'static str {
    if qmgr == C_OQMGR {
        "c"
    } else {
        "ours"
    }
}

/// Whether a side-by-side test can run: a real Postfix instance and Debian's C oqmgr to
/// compare with; explains itself when it cannot.
pub fn side_by_side_available() -> bool {
    if !postfix_available() {
        return false;
    }
    if !Path::new(C_OQMGR).exists() {
        eprintln!("skipped: Debian's C oqmgr is not installed");
        return false;
    }
    true
}

/// Whether this machine can run a real Postfix instance; explains itself when it cannot.
pub fn postfix_available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let postfix =
        Path::new("/usr/sbin/postfix").exists() && Path::new("/usr/sbin/smtp-source").exists();
    if root && postfix {
        return true;
    }
    let why = format!("interop tests need root and Postfix (root={root}, postfix={postfix})");
    if std::env::var_os("OQMGR_REQUIRE_POSTFIX").is_some() {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    false
}

impl Lab {
    /// An instance whose queue manager is ours.
    pub fn up(args: &[&str]) -> Lab {
        Lab::up_as(env!("CARGO_BIN_EXE_oqmgr"), args)
    }

    /// An instance whose queue manager is `qmgr` (ours, or Debian's C oqmgr to compare).
    pub fn up_as(qmgr: &str, args: &[&str]) -> Lab {
        let root = tempfile::Builder::new()
            .prefix("oqmgr-interop.")
            .tempdir_in("/tmp")
            .expect("tempdir");
        // Postfix's daemons (user postfix) must be able to reach the instance.
        std::fs::set_permissions(
            root.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let dir = root.path().join("lab");
        let d = dir.to_string_lossy().into_owned();
        let mut full = vec!["up", &d, "--qmgr", qmgr];
        full.extend_from_slice(args);
        run(&full);
        Lab { root, dir }
    }

    /// Runs a Postfix command (`postconf`, `postsuper`, `postqueue`) on this instance; its
    /// standard output.
    pub fn tool(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .arg("-c")
            .arg(self.dir.join("etc"))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn path(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.maillog()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The queue manager's own lines.
    pub fn qmgr_lines(&self) -> Vec<String> {
        self.maillog()
            .lines()
            .filter(|l| l.contains(" postfix/qmgr["))
            .map(str::to_string)
            .collect()
    }

    /// Waits until incoming/active/deferred are empty and postlogd has caught up. On a
    /// time-out, the panic names each file left (mode, mtime against now) and its log lines.
    pub fn drain(&self) {
        let out = Command::new(pflab())
            .args([
                "wait-empty",
                &self.path(),
                "--timeout",
                "300",
                "--kick",
                "5",
            ])
            .output()
            .expect("pflab wait-empty");
        assert!(
            out.status.success(),
            "queues not empty: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            self.left_over()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    /// The files in incoming/, active/ and deferred/, each with its mode, its mtime against
    /// now, and every maillog line that names it.
    fn left_over(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let log = self.maillog();
        let mut report = String::new();
        for queue in ["incoming", "active", "deferred"] {
            for path in files_under(&self.dir.join("spool").join(queue)) {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let (mode, age) = std::fs::symlink_metadata(&path)
                    .map_or((0, 0), |m| (m.mode(), now - m.mtime()));
                report += &format!("{queue}/{name}: mode {mode:o}, mtime now-{age}s\n");
                for line in log.lines().filter(|l| l.contains(name.as_ref())) {
                    report += &format!("  {line}\n");
                }
            }
        }
        report
    }

    /// incoming/, active/, deferred/ and corrupt/ hold no file.
    pub fn assert_queues_empty(&self) {
        let stats = run(&["stats", &self.path()]);
        for q in ["q_incoming", "q_active", "q_deferred", "q_corrupt"] {
            assert_eq!(value(&stats, q), "0", "{q}\n{}", tail(&self.maillog()));
        }
    }

    /// The queue manager's `removed` lines.
    pub fn removed(&self) -> usize {
        self.qmgr_lines()
            .iter()
            .filter(|l| l.ends_with(": removed"))
            .count()
    }

    /// A lab whose d1.lab goes to `d1_route` (e.g. a dead port or `error:`), plus `extra`.
    pub fn up_with_d1(d1_route: &str, extra: &[&str]) -> Lab {
        let map = format!("transport_maps=inline:{{{{d1.lab={d1_route}}}}}");
        let mut args = vec!["--transport", "discard", "--dests", "1", "--set", &map];
        for e in extra {
            args.push("--set");
            args.push(e);
        }
        Lab::up(&args)
    }

    /// Every recipient sent, every message from= and removed by our daemon, no warnings.
    pub fn assert_all_delivered(&self, messages: usize, recipients: usize) {
        let log = self.maillog();
        let sent = self.count(" status=sent ");
        assert_eq!(sent, recipients, "status=sent lines\n{}", tail(&log));
        assert_eq!(self.count(" status=deferred "), 0, "{}", tail(&log));
        assert_eq!(self.count(" status=bounced "), 0, "{}", tail(&log));
        let qmgr = self.qmgr_lines();
        let from = qmgr
            .iter()
            .filter(|l| l.contains(" (queue active)"))
            .count();
        let removed = qmgr.iter().filter(|l| l.ends_with(": removed")).count();
        assert!(
            from >= messages,
            "from= lines: {from} < {messages}\n{}",
            tail(&log)
        );
        assert_eq!(removed, messages, "removed lines\n{}", tail(&log));
        let trouble: Vec<&String> = qmgr
            .iter()
            .filter(|l| l.contains("warning:") || l.contains("fatal:") || l.contains("panic:"))
            .filter(|l| !l.contains("problem talking to service rewrite"))
            .collect();
        assert!(trouble.is_empty(), "queue manager trouble: {trouble:#?}");
        self.assert_queues_empty();
    }
}

#[path = "../support/files.rs"]
mod files;
/// The files in a queue directory, hashed subdirectories included.
pub use files::files_under;

/// How many files a queue directory holds (see [`files_under`]).
pub fn files_in(dir: &Path) -> usize {
    files_under(dir).len()
}

/// A TCP port on 127.0.0.1 where nothing listens (connection refused).
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A server on 127.0.0.1 that accepts SMTP connections and never says a word (its
/// connections are held for the rest of the test process).
pub fn stalled_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in l.incoming().flatten() {
            held.push(conn);
        }
    });
    port
}

/// Whether `done` came true within `limit` (asked every 100 ms).
pub fn wait_for(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while !done() {
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    true
}

pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(pflab()).args(["down", &self.path()]).output();
        let _ = &self.root;
    }
}
