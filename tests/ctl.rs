//! oqmgrctl(1) as an administrator runs it: the built binary, `-c` pointing at a throw-away
//! instance whose `private/oqmgr-status` is served by a fake queue manager (a thread that
//! answers one request with a fixed snapshot).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;

use oqmgr::proto::attr::AttrMessage;
use oqmgr::proto::status::{
    DestinationStatus, Snapshot, StatusRequest, Summary, TransportStatus, STATUS_SOCKET,
};

const BIN: &str = env!("CARGO_BIN_EXE_oqmgrctl");

/// A Postfix instance on disk: `<root>/etc/main.cf` and `<root>/spool/private/`.
struct Instance {
    root: tempfile::TempDir,
}

impl Instance {
    fn new() -> Instance {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        let private = root.path().join("spool/private");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&private).unwrap();
        // $-expansion as in a real main.cf; mail_owner is only named in the refusal.
        std::fs::write(
            etc.join("main.cf"),
            format!(
                "top = {}\nqueue_directory = $top/spool\nmail_owner = pfowner\n",
                root.path().display()
            ),
        )
        .unwrap();
        Instance { root }
    }

    fn config_dir(&self) -> PathBuf {
        self.root.path().join("etc")
    }

    fn socket(&self) -> PathBuf {
        self.root.path().join("spool").join(STATUS_SOCKET)
    }

    /// Serves `answer` to one client.
    fn serve(&self, answer: Vec<u8>) -> JoinHandle<()> {
        let listener = UnixListener::bind(self.socket()).unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            while !got.ends_with(b"\0\0") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            assert_eq!(got, StatusRequest.to_bytes());
            let _ = conn.write_all(&answer);
        })
    }

    fn run(&self, args: &[&str]) -> Output {
        let config_dir = self.config_dir();
        let mut all = vec!["-c", config_dir.to_str().unwrap()];
        all.extend_from_slice(args);
        oqmgrctl(BIN, &all, &[])
    }
}

fn oqmgrctl(bin: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_remove("MAIL_CONFIG")
        .env("TZ", "UTC")
        .stdin(Stdio::null());
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

const NOW: u64 = 1_700_000_000;

/// A dead destination (connection refused), a stalled one, a healthy one, and a count
/// above what is listed.
fn snapshot() -> Snapshot {
    let dest = |nexthop: &str| DestinationStatus {
        transport: b"smtp".to_vec(),
        nexthop: nexthop.as_bytes().to_vec(),
        queue: nexthop.as_bytes().to_vec(),
        window_limit: 20,
        ..DestinationStatus::default()
    };
    Snapshot {
        summary: Summary {
            pid: 4242,
            started: NOW - 3600,
            now: NOW,
            active_messages: 12,
            active_recipients: 14,
            message_limit: 20000,
            recipient_limit: 20000,
            flow_tokens: 3,
            next_deferred_scan: NOW + 252,
            destinations: 4,
        },
        transports: vec![
            TransportStatus {
                name: b"smtp".to_vec(),
                busy: 2,
                todo: 10,
                destinations: 4,
                deliveries_ok: 100,
                deliveries_deferred: 5,
                unavailable: 1,
                ..TransportStatus::default()
            },
            TransportStatus {
                name: b"discard \"x\"\\".to_vec(),
                ..TransportStatus::default()
            },
        ],
        destinations: vec![
            DestinationStatus {
                window: 0,
                dead: true,
                dead_until: NOW + 252,
                todo: 6,
                reason: b"connect to dead.lab[127.0.0.1]:25: Connection refused".to_vec(),
                ..dest("dead.lab")
            },
            DestinationStatus {
                window: 2,
                busy: 2,
                todo: 4,
                ..dest("slow.lab")
            },
            DestinationStatus {
                window: 5,
                ..dest("ok.lab\n\"quoted\"")
            },
        ],
    }
}

#[test]
fn status_prints_the_table_dead_destination_first() {
    let instance = Instance::new();
    let server = instance.serve(snapshot().to_bytes());
    let out = instance.run(&["status"]);
    server.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with(
        "queue manager: pid 4242, started 2023-11-14 21:13:20 (1h00m00s ago), snapshot at 2023-11-14 22:13:20\n"
    ), "{text}");
    assert!(text.contains("active queue: 12 of 20000 messages, 14 of 20000 recipients\n"));
    assert!(text.contains("in-flow tokens: 3\n"));
    assert!(text.contains("next deferred scan: 2023-11-14 22:17:32 (in 4m12s)\n"));
    assert!(text.contains("\nDESTINATIONS (showing 3 of 4)\n"));
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("DESTINATIONS"))
        .skip(2)
        .collect();
    assert!(rows[0].starts_with("smtp       dead.lab"), "{text}");
    for part in [
        "0/20",
        "dead",
        "2023-11-14 22:17:32 (in 4m12s)",
        "Connection refused",
    ] {
        assert!(rows[0].contains(part), "{}", rows[0]);
    }
    assert!(rows[1].contains("slow.lab") && rows[1].contains("alive"));
    // The newline of a hostile next hop cannot split a row.
    assert_eq!(rows.len(), 3, "{text}");
}

#[test]
fn status_json_is_one_valid_object_with_the_documented_fields() {
    let instance = Instance::new();
    let server = instance.serve(snapshot().to_bytes());
    let out = instance.run(&["status", "--json"]);
    server.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["pid"], 4242);
    assert_eq!(v["now"], NOW);
    assert_eq!(v["active"]["messages"], 12);
    assert_eq!(v["active"]["recipients"], 14);
    assert_eq!(v["active"]["message_limit"], 20000);
    assert_eq!(v["active"]["recipient_limit"], 20000);
    assert_eq!(v["flow_tokens"], 3);
    assert_eq!(v["next_deferred_scan"], NOW + 252);
    assert_eq!(v["destinations_total"], 4);
    let smtp = &v["transports"][0];
    assert_eq!(smtp["name"], "smtp");
    assert_eq!(smtp["busy"], 2);
    assert_eq!(smtp["dead"], false);
    assert_eq!(smtp["deliveries"]["ok"], 100);
    assert_eq!(smtp["deliveries"]["unavailable"], 1);
    assert_eq!(v["transports"][1]["name"], "discard \"x\"\\");
    let dead = &v["destinations"][0];
    assert_eq!(dead["transport"], "smtp");
    assert_eq!(dead["nexthop"], "dead.lab");
    assert_eq!(dead["dead"], true);
    assert_eq!(dead["suspended"], false);
    assert_eq!(dead["dead_until"], NOW + 252);
    assert_eq!(dead["window"], 0);
    assert_eq!(dead["window_limit"], 20);
    assert_eq!(
        dead["reason"],
        "connect to dead.lab[127.0.0.1]:25: Connection refused"
    );
    assert_eq!(v["destinations"][1]["busy"], 2);
    assert_eq!(v["destinations"][1]["dead_until"], 0);
    assert_eq!(v["destinations"][2]["nexthop"], "ok.lab\n\"quoted\"");
}

/// The interpreter that has prometheus_client (Debian's python3-prometheus-client), if any.
fn python_with_prometheus_client() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import prometheus_client"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[test]
fn metrics_are_well_formed_exposition_text() {
    let instance = Instance::new();
    let server = instance.serve(snapshot().to_bytes());
    let out = instance.run(&["metrics"]);
    server.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);

    // Every sample follows its own family's HELP and TYPE lines; no family twice.
    let mut families: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(families.iter().all(|(n, _)| *n != name), "{name} twice");
            families.push((name, String::new()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let last = families.last_mut().unwrap();
            assert_eq!(last.0, name);
            assert!(kind == "gauge" || kind == "counter", "{line}");
            last.1 = kind.to_string();
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(name, families.last().unwrap().0, "{line}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
    for (family, kind) in [
        ("oqmgr_active_messages", "gauge"),
        ("oqmgr_active_recipients", "gauge"),
        ("oqmgr_active_message_limit", "gauge"),
        ("oqmgr_active_recipient_limit", "gauge"),
        ("oqmgr_flow_tokens", "gauge"),
        ("oqmgr_start_time_seconds", "gauge"),
        ("oqmgr_transport_dead", "gauge"),
        ("oqmgr_transport_busy", "gauge"),
        ("oqmgr_transport_connecting", "gauge"),
        ("oqmgr_destination_busy", "gauge"),
        ("oqmgr_destination_todo", "gauge"),
        ("oqmgr_destination_window", "gauge"),
        ("oqmgr_destination_dead", "gauge"),
        ("oqmgr_destination_dead_until_seconds", "gauge"),
        ("oqmgr_deliveries_total", "counter"),
        ("oqmgr_transport_unavailable_total", "counter"),
    ] {
        assert!(
            families.contains(&(family.to_string(), kind.to_string())),
            "{family} {kind} missing"
        );
    }
    assert!(text.contains("oqmgr_active_messages 12\n"));
    assert!(text.contains("oqmgr_deliveries_total{transport=\"smtp\",outcome=\"ok\"} 100\n"));
    assert!(text.contains("oqmgr_destination_dead{transport=\"smtp\",nexthop=\"dead.lab\"} 1\n"));
    assert!(text.contains(
        "oqmgr_destination_busy{transport=\"smtp\",nexthop=\"ok.lab\\n\\\"quoted\\\"\"} 0\n"
    ));
    assert!(text.contains("oqmgr_transport_busy{transport=\"discard \\\"x\\\"\\\\\"} 0\n"));

    // A real parser, when installed (make deps installs python3-prometheus-client).
    let Some(python) = python_with_prometheus_client() else {
        eprintln!("skipped: no python3 with prometheus_client");
        return;
    };
    let script = "import sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        fams = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}\n\
        dead = [s for s in fams['oqmgr_destination_dead'].samples if s.labels['nexthop'] == 'dead.lab']\n\
        assert dead[0].value == 1, dead\n\
        odd = [s for s in fams['oqmgr_destination_busy'].samples if s.labels['nexthop'] == 'ok.lab\\n\"quoted\"']\n\
        assert len(odd) == 1, fams['oqmgr_destination_busy'].samples\n\
        assert fams['oqmgr_deliveries'].type == 'counter'\n\
        print(len(fams))\n";
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let parsed = child.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "prometheus_client rejects the output: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
}

#[test]
fn mail_config_finds_the_instance_without_c() {
    let instance = Instance::new();
    let server = instance.serve(snapshot().to_bytes());
    let config_dir = instance.config_dir();
    let out = oqmgrctl(BIN, &["status", "--json"], &[("MAIL_CONFIG", &config_dir)]);
    server.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("{\"pid\":4242,"));
}

#[test]
fn no_socket_means_no_queue_manager() {
    let instance = Instance::new();
    let out = instance.run(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr(&out),
        format!(
            "oqmgrctl: no queue manager answers on {}: oqmgr (this Rust queue manager) is not running for this instance, or the qmgr service runs Postfix's C qmgr/oqmgr, which has no status socket\n",
            instance.socket().display()
        )
    );
}

#[test]
fn a_socket_nobody_listens_on_means_no_queue_manager() {
    let instance = Instance::new();
    drop(UnixListener::bind(instance.socket()).unwrap());
    assert!(instance.socket().exists());
    let out = instance.run(&["metrics"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).starts_with("oqmgrctl: no queue manager answers on "));
}

#[test]
fn a_malformed_or_cut_answer_is_an_error() {
    let instance = Instance::new();
    let server = instance.serve(b"kind\0summary\0active_messages\0many\0\0".to_vec());
    let out = instance.run(&["status"]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).starts_with("oqmgrctl: malformed answer from the queue manager on "),
        "{}",
        stderr(&out)
    );

    let instance = Instance::new();
    let bytes = snapshot().to_bytes();
    let server = instance.serve(bytes[..bytes.len() / 2].to_vec());
    let out = instance.run(&["status", "--json"]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("closed the connection before its answer was complete"));
}

#[test]
fn usage_errors_exit_2_with_the_synopsis() {
    for args in [&[][..], &["status", "--yaml"][..], &["-z", "status"][..]] {
        let out = oqmgrctl(BIN, args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).ends_with("usage: oqmgrctl [-c config_dir] status [--json] | metrics\n")
        );
    }
    let out = oqmgrctl(BIN, &["--help"], &[]);
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("usage: oqmgrctl"));
}

#[test]
fn a_missing_main_cf_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let out = oqmgrctl(BIN, &["-c", dir.path().to_str().unwrap(), "status"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("oqmgrctl: fatal: open "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn nobody_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/sbin/runuser").exists() {
        eprintln!("skipped: needs root and runuser");
        return;
    }
    let instance = Instance::new();
    // Everything readable by nobody except private/, as in a real spool.
    for dir in [
        instance.root.path(),
        &instance.config_dir(),
        &instance.root.path().join("spool"),
    ] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(
        instance.config_dir().join("main.cf"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(
        instance.root.path().join("spool/private"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    // The build tree need not be open to nobody: run a copy.
    let bin = instance.root.path().join("oqmgrctl");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _listener = UnixListener::bind(instance.socket()).unwrap();
    let config_dir = instance.config_dir();
    let out = oqmgrctl(
        "/usr/sbin/runuser",
        &[
            "-u",
            "nobody",
            "--",
            bin.to_str().unwrap(),
            "-c",
            config_dir.to_str().unwrap(),
            "status",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr(&out),
        "oqmgrctl: permission denied: only root and the mail_owner (pfowner) may ask the queue manager\n"
    );
}
