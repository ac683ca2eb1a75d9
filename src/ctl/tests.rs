use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use super::*;
use crate::proto::status::{DestinationStatus, Summary, TransportStatus};

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// A fixed "local time" so that tables do not depend on TZ.
fn utc_ish(epoch: u64) -> String {
    format!("T{epoch}")
}

fn sample() -> Snapshot {
    Snapshot {
        summary: Summary {
            pid: 4242,
            started: 1_000,
            now: 2_000,
            active_messages: 3,
            active_recipients: 5,
            message_limit: 20000,
            recipient_limit: 20000,
            flow_tokens: -1,
            next_deferred_scan: 2_252,
            destinations: 5,
        },
        transports: vec![TransportStatus {
            name: b"smtp".to_vec(),
            busy: 1,
            todo: 2,
            rate_delay: 5,
            destinations: 5,
            deliveries_ok: 7,
            deliveries_deferred: 2,
            deliveries_crashed: 1,
            unavailable: 4,
            ..TransportStatus::default()
        }],
        destinations: vec![
            DestinationStatus {
                transport: b"smtp".to_vec(),
                nexthop: b"dead.lab".to_vec(),
                queue: b"dead.lab".to_vec(),
                window: 0,
                window_limit: 20,
                dead: true,
                dead_until: 2_252,
                reason: b"connect to dead.lab[127.0.0.1]:25: Connection refused\x1b[31m".to_vec(),
                ..DestinationStatus::default()
            },
            DestinationStatus {
                transport: b"smtp".to_vec(),
                nexthop: b"slow.lab".to_vec(),
                queue: b"slow.lab".to_vec(),
                window: 3,
                window_limit: 20,
                busy: 1,
                todo: 2,
                ..DestinationStatus::default()
            },
        ],
    }
}

#[test]
fn the_command_line_is_parsed_as_documented() {
    let parsed = Args::parse(&args(&["-c", "/etc/postfix-out", "status", "--json"])).unwrap();
    assert_eq!(parsed.config_dir, Some(PathBuf::from("/etc/postfix-out")));
    assert_eq!(parsed.command, Command::StatusJson);
    let parsed = Args::parse(&args(&["-c/x", "metrics"])).unwrap();
    assert_eq!(parsed.config_dir, Some(PathBuf::from("/x")));
    assert_eq!(parsed.command, Command::Metrics);
    assert_eq!(
        Args::parse(&args(&["status"])).unwrap().command,
        Command::Status
    );
    assert_eq!(
        Args::parse(&args(&["--help"])).unwrap().command,
        Command::Help
    );
    for bad in [
        &[][..],
        &["-c"][..],
        &["-x", "status"][..],
        &["stats"][..],
        &["status", "--yaml"][..],
        &["metrics", "--json"][..],
        &["status", "--json", "extra"][..],
    ] {
        assert!(Args::parse(&args(bad)).is_err(), "{bad:?}");
    }
}

#[test]
fn durations_read_like_4m12s() {
    assert_eq!(render::duration(0), "0s");
    assert_eq!(render::duration(45), "45s");
    assert_eq!(render::duration(252), "4m12s");
    assert_eq!(render::duration(65), "1m05s");
    assert_eq!(render::duration(7500), "2h05m00s");
    assert_eq!(render::duration(3 * 86_400 + 14_400), "3d04h00m00s");
    assert_eq!(render::relative(2_252, 2_000), "in 4m12s");
    assert_eq!(render::relative(1_748, 2_000), "4m12s ago");
    assert_eq!(render::relative(5, 5), "now");
}

#[test]
fn local_time_has_the_documented_shape() {
    let text = render::local_time(1_700_000_000);
    let bytes = text.as_bytes();
    assert_eq!(bytes.len(), 19, "{text}");
    for (i, b) in bytes.iter().enumerate() {
        match i {
            4 | 7 => assert_eq!(*b, b'-'),
            10 => assert_eq!(*b, b' '),
            13 | 16 => assert_eq!(*b, b':'),
            _ => assert!(b.is_ascii_digit(), "{text}"),
        }
    }
}

#[test]
fn the_table_shows_limits_trouble_first_and_no_terminal_controls() {
    let text = render::table(&sample(), &utc_ish);
    assert!(text.contains("active queue: 3 of 20000 messages, 5 of 20000 recipients"));
    assert!(text.contains("in-flow tokens: unknown"));
    assert!(text.contains("next deferred scan: T2252 (in 4m12s)"));
    assert!(text.contains("DESTINATIONS (showing 2 of 5)"));
    assert!(!text.contains('\x1b'));
    let dead = text.find("dead.lab").unwrap();
    let slow = text.find("slow.lab").unwrap();
    assert!(dead < slow);
    let dead_line = text.lines().find(|l| l.contains("dead.lab")).unwrap();
    for part in [
        "0/20",
        "dead",
        "T2252 (in 4m12s)",
        "Connection refused?[31m",
    ] {
        assert!(dead_line.contains(part), "{dead_line}");
    }
    // No per-recipient queues: no QUEUE column.
    assert!(!text.contains("QUEUE"));
    let transport_line = text.lines().find(|l| l.starts_with("smtp ")).unwrap();
    assert!(transport_line.contains("alive") && transport_line.contains("5s"));
}

#[test]
fn json_strings_are_escaped() {
    let mut out = String::new();
    json::string(&mut out, b"a\"b\\c\n\x01\x7f\xff\xc3\xa9");
    assert_eq!(out, "\"a\\\"b\\\\c\\u000a\\u0001\\u007f\u{fffd}\u{e9}\"");
}

#[test]
fn json_has_the_documented_fields() {
    let text = json::snapshot(&sample());
    assert!(text.ends_with("}\n"));
    assert!(text.starts_with("{\"pid\":4242,\"started\":1000,\"now\":2000,\"active\":{\"messages\":3,\"recipients\":5,\"message_limit\":20000,\"recipient_limit\":20000},\"flow_tokens\":-1,"));
    assert!(
        text.contains("\"deliveries\":{\"ok\":7,\"deferred\":2,\"crashed\":1,\"unavailable\":4}")
    );
    assert!(text.contains("\"dead\":true,\"suspended\":false,\"dead_until\":2252,"));
    assert!(text.contains("Connection refused\\u001b[31m\""));
}

#[test]
fn metric_label_values_are_escaped() {
    let mut out = String::new();
    metrics::label_value(&mut out, b"a\"b\\c\nd\xff");
    assert_eq!(out, "a\\\"b\\\\c\\nd\u{fffd}");
}

#[test]
fn metrics_have_help_and_type_and_contiguous_families() {
    let text = metrics::exposition(&sample());
    let mut seen: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(!seen.contains(&name), "family {name} twice");
            seen.push(name.clone());
            current = name;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            assert!(rest.starts_with(&format!("{current} ")), "{line}");
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(name, current, "sample out of its family: {line}");
        }
    }
    assert!(text.contains("oqmgr_active_messages 3\n"));
    assert!(text.contains("oqmgr_deliveries_total{transport=\"smtp\",outcome=\"crashed\"} 1\n"));
    assert!(text.contains("oqmgr_transport_unavailable_total{transport=\"smtp\"} 4\n"));
    assert!(text.contains("oqmgr_destination_dead{transport=\"smtp\",nexthop=\"dead.lab\"} 1\n"));
    assert!(text.contains(
        "oqmgr_destination_dead_until_seconds{transport=\"smtp\",nexthop=\"dead.lab\"} 2252\n"
    ));
    // Unknown flow tokens: the family is announced without a sample.
    assert!(!text.contains("oqmgr_flow_tokens -1"));
}

#[test]
fn per_recipient_queues_add_up_to_one_series() {
    let mut s = sample();
    let queue = |user: &str, window, busy, dead| DestinationStatus {
        transport: b"local".to_vec(),
        nexthop: b"example.org".to_vec(),
        queue: format!("{user}@example.org").into_bytes(),
        window,
        window_limit: 2,
        busy,
        todo: 1,
        dead,
        dead_until: if dead { 3_000 } else { 0 },
        ..DestinationStatus::default()
    };
    s.destinations = vec![
        queue("a", 2, 1, false),
        queue("b", 0, 0, true),
        queue("c", 1, 1, false),
    ];
    let text = metrics::exposition(&s);
    let series = |family: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        series("oqmgr_destination_busy"),
        ["oqmgr_destination_busy{transport=\"local\",nexthop=\"example.org\"} 2"]
    );
    assert_eq!(
        series("oqmgr_destination_window"),
        ["oqmgr_destination_window{transport=\"local\",nexthop=\"example.org\"} 3"]
    );
    assert_eq!(
        series("oqmgr_destination_dead"),
        ["oqmgr_destination_dead{transport=\"local\",nexthop=\"example.org\"} 1"]
    );
    // The table shows the queue names.
    let table = render::table(&s, &utc_ish);
    assert!(table.contains("QUEUE") && table.contains("b@example.org"));
}

fn serve_once(answer: Vec<u8>) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<()>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 64];
        let mut got = Vec::new();
        while !got.ends_with(b"\0\0") {
            let n = conn.read(&mut request).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&request[..n]);
        }
        assert_eq!(got, StatusRequest.to_bytes());
        // Small writes, so the client reassembles lists across reads.
        for chunk in answer.chunks(7) {
            if conn.write_all(chunk).is_err() {
                return;
            }
        }
    });
    (dir, path, server)
}

#[test]
fn query_reads_a_whole_answer() {
    let (_dir, path, server) = serve_once(sample().to_bytes());
    let snapshot = query(&path, "postfix", TIMEOUT).unwrap();
    assert_eq!(snapshot, sample());
    server.join().unwrap();
}

#[test]
fn query_reports_cut_short_and_malformed_answers() {
    let bytes = sample().to_bytes();
    let (_dir, path, server) = serve_once(bytes[..bytes.len() - 5].to_vec());
    let err = query(&path, "postfix", TIMEOUT).unwrap_err();
    assert!(matches!(err, CtlError::Truncated { .. }), "{err}");
    server.join().unwrap();

    let (_dir, path, server) = serve_once(b"kind\0summary\0pid\0x\0\0".to_vec());
    let err = query(&path, "postfix", TIMEOUT).unwrap_err();
    assert!(matches!(err, CtlError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("pid=x"), "{err}");
    server.join().unwrap();
}

#[test]
fn a_silent_server_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status");
    let _listener = UnixListener::bind(&path).unwrap();
    // The backlog accepts the connection; nobody ever answers.
    let err = query(&path, "postfix", Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, CtlError::Timeout { .. }), "{err}");
    assert_eq!(err.exit_code(), 1);
}

#[test]
fn connect_failures_are_worded_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private/oqmgr-status");
    let err = query(&path, "postfix", TIMEOUT).unwrap_err();
    assert!(matches!(err, CtlError::NotRunning { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!(
        "no queue manager answers on {}: oqmgr (this Rust queue manager) is not running",
        path.display()
    )));
    let err = CtlError::PermissionDenied {
        mail_owner: "postfix".into(),
    };
    assert_eq!(
        err.to_string(),
        "permission denied: only root and the mail_owner (postfix) may ask the queue manager"
    );
}

#[test]
fn the_instance_comes_from_c_or_mail_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.cf"),
        "spool = /srv/spool\nqueue_directory = $spool/postfix-out\nmail_owner = pfout\n",
    )
    .unwrap();
    let instance = Instance::load(None, Some(dir.path().as_os_str())).unwrap();
    assert_eq!(
        instance.queue_directory,
        PathBuf::from("/srv/spool/postfix-out")
    );
    assert_eq!(instance.mail_owner, "pfout");
    assert_eq!(
        instance.status_socket(),
        PathBuf::from("/srv/spool/postfix-out/private/oqmgr-status")
    );
    let missing = dir.path().join("nowhere");
    let err = Instance::load(Some(&missing), Some(dir.path().as_os_str())).unwrap_err();
    assert!(err.to_string().contains("nowhere/main.cf"), "{err}");
}
