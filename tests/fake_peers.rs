//! Tests of the fake Postfix world itself (tests/common): each fake sends the bytes a real
//! Postfix peer sent in the captured exchanges (tests/data/transcripts), the queue directory
//! looks like Postfix's, and FakeMaster hands a child master(8)'s descriptors and
//! environment, and lets it see a reload.

mod common;

use oqmgr::proto::attr::AttrMessage;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::agent::{Behaviour, FakeAgent, GARBAGE};
use common::bounce::{BounceRequest, FakeBounce};
use common::master::{FakeMaster, ListenerKind, MasterOptions, GENERATION_VALUE};
use common::net::Client;
use common::postlog::{FakePostlog, LogLine};
use common::queue_dir::{FakeQueueDir, HOSTNAME, QUEUE_SUBDIRS};
use common::rewrite::{FakeRewrite, RewriteCall};
use common::world::World;
use common::{wait_until, TIMEOUT};
use oqmgr::proto::bounce::{bounce_flags, AppendRequest, BounceCommand};
use oqmgr::proto::deliver::{DeliveryReply, DeliveryRequest};
use oqmgr::proto::dsn::Dsn;
use oqmgr::proto::protocol::Protocol;
use oqmgr::proto::recipient::Recipient;
use oqmgr::proto::rewrite::{ResolveClass, ResolveRequest, RewriteRequest};
use oqmgr::queue::record::RecordType;

fn capture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/transcripts")
        .join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reads the server's announcement and checks it is exactly the captured one.
fn expect_announcement(client: &mut Client, protocol: Protocol, captured: &str) {
    let list = client.next_list().expect("announcement");
    assert_eq!(protocol.check_announcement(&list), Ok(()));
    assert_eq!(client.received, capture(captured));
    client.received.clear();
}

#[test]
fn rewrite_replays_the_captured_resolve_conversation() {
    let dir = FakeQueueDir::new();
    let rewrite = FakeRewrite::start(&dir);
    rewrite.route_domain("d1.lab", "discard");
    rewrite.route_domain_via("refused.lab", "smtp", "[127.0.0.1]:24520");
    rewrite.route_domain_via(
        "bounce.lab",
        "error",
        "5.1.1 mailbox unknown (postfix-lab demo)",
    );
    rewrite.route_domain("SRC.lab", "discard");

    let mut client = Client::connect(&dir.private("rewrite")).unwrap();
    expect_announcement(
        &mut client,
        Protocol::TrivialRewrite,
        "main/001-read-rewrite.bin",
    );

    // qmgr's four captured requests, one at a time as the C client sends them.
    let pairs = [
        ("main/002-write-rewrite.bin", "main/003-read-rewrite.bin"),
        ("main/007-write-rewrite.bin", "main/008-read-rewrite.bin"),
        ("main/017-write-rewrite.bin", "main/018-read-rewrite.bin"),
        ("main/024-write-rewrite.bin", "main/025-read-rewrite.bin"),
    ];
    let expected: Vec<u8> = pairs.iter().flat_map(|(_, r)| capture(r)).collect();
    for (w, _) in pairs {
        client.send(&capture(w)).unwrap();
        client.next_list().unwrap();
    }
    assert_eq!(client.received, expected);
    assert_eq!(
        rewrite.resolved_addresses(),
        [
            "alice@d1.lab",
            "bob@refused.lab",
            "dave@bounce.lab",
            "sender@src.lab"
        ]
    );
    assert_eq!(rewrite.resolves()[3].sender, b"");
    assert_eq!(rewrite.connections(), 1);
    assert!(rewrite.errors().is_empty());
}

#[test]
fn rewrite_defaults_custom_resolver_rewrite_and_disconnect() {
    let dir = FakeQueueDir::new();
    let rewrite = FakeRewrite::start(&dir);
    rewrite.set_close_after(Some(3));
    let mut client = Client::connect(&dir.private("rewrite")).unwrap();
    client.next_list().unwrap();

    let resolve = |class, address: &[u8]| ResolveRequest {
        class,
        sender: b"s@x".to_vec(),
        address: address.to_vec(),
    };
    let wires = [
        resolve(ResolveClass::Resolve, b"a@Example.ORG").to_bytes(),
        resolve(ResolveClass::Verify, b"MAILER-DAEMON").to_bytes(),
        RewriteRequest {
            rule: b"local".to_vec(),
            address: b"postmaster".to_vec(),
        }
        .to_bytes(),
    ];
    let mut replies = Vec::new();
    for wire in &wires {
        client.send(wire).unwrap();
        replies.push(client.next_list().unwrap());
    }
    let first = oqmgr::proto::rewrite::ResolveReply::decode(&replies[0]).unwrap();
    assert_eq!(first.transport, b"smtp");
    assert_eq!(first.nexthop, b"example.org");
    assert_eq!(first.recipient, b"a@Example.ORG");
    assert_eq!(first.flags, 0x1000);
    let local = oqmgr::proto::rewrite::ResolveReply::decode(&replies[1]).unwrap();
    assert_eq!(local.transport, b"local");
    assert_eq!(
        local.recipient,
        format!("MAILER-DAEMON@{HOSTNAME}").as_bytes()
    );
    assert_eq!(local.flags & 0x100, 0x100, "CLASS_LOCAL");
    let rewritten = oqmgr::proto::rewrite::RewriteReply::decode(&replies[2]).unwrap();
    assert_eq!(
        rewritten.address,
        format!("postmaster@{HOSTNAME}").as_bytes()
    );
    // set_close_after(3): the server hangs up after the third reply.
    assert_eq!(client.read_to_close().unwrap(), b"");
    assert!(
        matches!(rewrite.calls()[1], RewriteCall::Resolve(ref r) if r.class == ResolveClass::Verify)
    );
    assert!(matches!(rewrite.calls()[2], RewriteCall::Rewrite(_)));

    // A custom resolver replaces the routing.
    rewrite.set_resolver(|req| {
        common::rewrite::Resolution::new("relay", "[10.0.0.1]", &req.address, 0x800)
    });
    let mut client = Client::connect(&dir.private("rewrite")).unwrap();
    client.next_list().unwrap();
    client
        .send(&resolve(ResolveClass::Resolve, b"b@y").to_bytes())
        .unwrap();
    let reply = oqmgr::proto::rewrite::ResolveReply::decode(&client.next_list().unwrap()).unwrap();
    assert_eq!(
        (reply.transport, reply.nexthop),
        (b"relay".to_vec(), b"[10.0.0.1]".to_vec())
    );

    // Garbage is recorded as an error and the connection closed.
    let mut client = Client::connect(&dir.private("rewrite")).unwrap();
    client.next_list().unwrap();
    client.send(b"request\0bogus\0\0").unwrap();
    assert_eq!(client.read_to_close().unwrap(), b"");
    assert!(wait_until(TIMEOUT, || rewrite.errors().len() == 1));
}

/// A delivery request for a message dropped into active/, with the real recipient offsets.
fn request_for(dir: &FakeQueueDir, rcpts: &[&[u8]]) -> (String, DeliveryRequest) {
    let (id, built) = dir
        .message(b"sender@src.lab", rcpts)
        .queue("active")
        .write();
    let rcpt_offsets: Vec<u64> = built
        .envelope_offsets
        .iter()
        .zip(&dir.records("active", &id).unwrap()[1..])
        .filter(|(_, r)| r.rec_type == RecordType::RCPT)
        .map(|(o, _)| *o)
        .collect();
    let request = DeliveryRequest {
        flags: 3,
        queue_name: b"active".to_vec(),
        queue_id: id.as_bytes().to_vec(),
        data_offset: built.size.data_offset as u64,
        data_size: built.size.data_size as u64,
        nexthop: b"d1.lab".to_vec(),
        sender: b"sender@src.lab".to_vec(),
        rewrite_context: b"local".to_vec(),
        recipients: rcpts
            .iter()
            .zip(rcpt_offsets)
            .map(|(a, offset)| Recipient::new(b"", a, offset, b"", 0))
            .collect(),
        ..DeliveryRequest::default()
    };
    (id, request)
}

#[test]
fn agent_ok_matches_capture_marks_recipients_done_and_waits_for_close() {
    let dir = FakeQueueDir::new();
    let agent = FakeAgent::start(&dir, "discard", Behaviour::Ok);
    let (id, request) = request_for(&dir, &[b"alice@d1.lab", b"bob@d1.lab"]);

    let mut client = Client::connect(&dir.private("discard")).unwrap();
    expect_announcement(
        &mut client,
        Protocol::DeliveryRequest,
        "main/004-read-discard.bin",
    );
    client.send(&request.to_bytes()).unwrap();
    let reply = DeliveryReply::decode(&client.next_list().unwrap()).unwrap();
    assert_eq!(reply.status, 0);
    assert_eq!(client.received, capture("main/006-read-discard.bin"));
    assert_eq!(agent.closed_by_client(), 0);
    drop(client);

    assert_eq!(agent.requests(), [request]);
    assert!(wait_until(TIMEOUT, || agent.closed_by_client() == 1));
    let kinds: Vec<u8> = dir
        .records("active", &id)
        .unwrap()
        .iter()
        .map(|r| r.rec_type.byte())
        .filter(|t| matches!(t, b'R' | b'D'))
        .collect();
    assert_eq!(kinds, b"DD", "both recipients marked done");
    assert!(agent.errors().is_empty(), "{:?}", agent.errors());
}

#[test]
fn agent_decodes_captured_requests_and_defers_like_smtp() {
    let dir = FakeQueueDir::new();
    let agent = FakeAgent::start(
        &dir,
        "smtp",
        Behaviour::defer(
            "4.4.1",
            "connect to 127.0.0.1[127.0.0.1]:24520: Connection refused",
        ),
    );
    agent.set_mark_done(false);
    let mut client = Client::connect(&dir.private("smtp")).unwrap();
    expect_announcement(
        &mut client,
        Protocol::DeliveryRequest,
        "main/009-read-smtp.bin",
    );
    client.send(&capture("main/010-write-smtp.bin")).unwrap();
    client.next_list().unwrap();
    assert_eq!(client.received, capture("main/011-read-smtp.bin"));

    let deliveries = agent.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].recipients(), ["bob@refused.lab"]);
    assert_eq!(deliveries[0].nexthop(), "[127.0.0.1]:24520");
    assert_eq!(
        deliveries[0].request.to_bytes(),
        capture("main/010-write-smtp.bin")
    );
}

#[test]
fn agent_failure_behaviours() {
    let dir = FakeQueueDir::new();
    let agent = FakeAgent::start(&dir, "smtp", Behaviour::Ok);
    agent.set_mark_done(false);
    let (_, request) = request_for(&dir, &[b"a@d1.lab"]);
    let path = dir.private("smtp");

    // One connection: the announcement, the request, then whatever the agent does.
    let exchange = |behaviour: Behaviour| -> Client {
        agent.push_behaviour(behaviour);
        let mut client = Client::connect(&path).unwrap();
        client.next_list().unwrap();
        client.received.clear();
        client.send(&request.to_bytes()).unwrap();
        client
    };

    let mut c = exchange(Behaviour::DeferPerRecipient);
    let reply = DeliveryReply::decode(&c.next_list().unwrap()).unwrap();
    assert_eq!((reply.status, reply.hop_status), (-1, Dsn::default()));
    // Byte for byte what error(8) as `retry` answered in the capture.
    assert_eq!(c.received, capture("main/016-read-retry.bin"));

    let mut c = exchange(Behaviour::Crash);
    assert_eq!(c.read_to_close().unwrap(), b"");

    let mut c = exchange(Behaviour::Garbage);
    assert_eq!(c.read_to_close().unwrap(), GARBAGE);

    let start = Instant::now();
    let mut c = exchange(Behaviour::SlowOk(Duration::from_millis(200)));
    assert_eq!(
        DeliveryReply::decode(&c.next_list().unwrap())
            .unwrap()
            .status,
        0
    );
    assert!(start.elapsed() >= Duration::from_millis(200));

    // NoAnnounce: closed before anything is sent; no request is recorded.
    agent.push_behaviour(Behaviour::NoAnnounce);
    let mut c = Client::connect(&path).unwrap();
    assert_eq!(c.read_to_close().unwrap(), b"");

    // Hang: silence until released.
    let mut c = exchange(Behaviour::Hang);
    assert!(agent.wait_requests(5, TIMEOUT));
    c.set_read_timeout(Duration::from_millis(150)).unwrap();
    let err = c.next_list().unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    agent.release();
    c.set_read_timeout(TIMEOUT).unwrap();
    assert_eq!(c.read_to_close().unwrap(), b"");

    let behaviours: Vec<Behaviour> = agent
        .deliveries()
        .into_iter()
        .map(|d| d.behaviour)
        .collect();
    assert_eq!(
        behaviours,
        [
            Behaviour::DeferPerRecipient,
            Behaviour::Crash,
            Behaviour::Garbage,
            Behaviour::SlowOk(Duration::from_millis(200)),
            Behaviour::Hang,
        ]
    );
    assert_eq!(agent.connections(), 6);
    assert!(agent.errors().is_empty(), "{:?}", agent.errors());
}

#[test]
fn agent_policy_chooses_by_request_and_hang_ends_at_teardown() {
    let dir = FakeQueueDir::new();
    let agent = FakeAgent::start(&dir, "smtp", Behaviour::Ok);
    agent.set_mark_done(false);
    agent.set_policy(|req| {
        if req.nexthop == b"slow.lab" {
            Behaviour::Hang
        } else {
            Behaviour::defer("4.7.0", "policy")
        }
    });
    let (_, mut request) = request_for(&dir, &[b"a@d1.lab"]);
    let mut c = Client::connect(&dir.private("smtp")).unwrap();
    c.next_list().unwrap();
    c.send(&request.to_bytes()).unwrap();
    let reply = DeliveryReply::decode(&c.next_list().unwrap()).unwrap();
    assert_eq!(reply.hop_status.status, b"4.7.0");

    request.nexthop = b"slow.lab".to_vec();
    let mut hung = Client::connect(&dir.private("smtp")).unwrap();
    hung.next_list().unwrap();
    hung.send(&request.to_bytes()).unwrap();
    assert!(agent.wait_requests(2, TIMEOUT));
    // Dropping the agent releases the hung connection and joins its thread promptly.
    let start = Instant::now();
    drop(agent);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(hung.read_to_close().unwrap(), b"");
    assert!(!dir.private("smtp").exists(), "socket removed at teardown");
}

#[test]
fn closed_listener_refuses_and_missing_socket_is_enoent() {
    let dir = FakeQueueDir::new();
    let closed = FakeAgent::closed_listener(&dir, "deadagent");
    assert!(closed.path().exists());
    let err = UnixStream::connect(dir.private("deadagent")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let err = UnixStream::connect(dir.private("nosuch")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    drop(closed);
    assert!(!dir.private("deadagent").exists());
}

#[test]
fn bounce_flush_matches_capture_and_closes() {
    let dir = FakeQueueDir::new();
    let bounce = FakeBounce::start(&dir, "bounce");
    let mut client = Client::connect(&dir.private("bounce")).unwrap();
    expect_announcement(
        &mut client,
        Protocol::DeliveryStatus,
        "main/022-read-bounce.bin",
    );
    client.send(&capture("main/023-write-bounce.bin")).unwrap();
    assert_eq!(
        client.read_to_close().unwrap(),
        capture("main/026-read-bounce.bin")
    );
    let requests = bounce.requests();
    assert_eq!(requests.len(), 1);
    let BounceRequest::Flush(flush) = &requests[0] else {
        panic!("not a flush: {requests:?}");
    };
    assert_eq!(flush.command, BounceCommand::Flush);
    assert_eq!(flush.queue_id, b"8B82198DFC7");
    assert_eq!(flush.queue_name, b"active");

    // The captured delay warning (defer, nrequest 2) and trace flush (nrequest 5).
    for (service, file, code) in [
        ("defer", "lifecycle/038-write-defer.bin", 2),
        ("trace", "lifecycle/013-write-trace.bin", 5),
    ] {
        let fake = FakeBounce::start(&dir, service);
        let mut client = Client::connect(&dir.private(service)).unwrap();
        client.next_list().unwrap();
        client.send(&capture(file)).unwrap();
        assert_eq!(client.read_to_close().unwrap(), b"status\x000\0\0");
        assert_eq!(fake.requests()[0].command_code(), code, "{file}");
    }
}

#[test]
fn defer_append_with_failure_status_and_delay() {
    let dir = FakeQueueDir::new();
    let defer = FakeBounce::start(&dir, "defer");
    defer.set_status(-1);
    defer.set_delay(Duration::from_millis(100));
    let append = AppendRequest {
        flags: bounce_flags::KEEP,
        queue_id: b"ABC123".to_vec(),
        recipient: Recipient::new(b"", b"r@x", 120, b"", 0),
        dsn: Dsn {
            status: b"4.3.0".to_vec(),
            action: b"delayed".to_vec(),
            reason: b"mail transport unavailable".to_vec(),
            ..Dsn::default()
        },
    };
    let mut client = Client::connect(&dir.private("defer")).unwrap();
    client.next_list().unwrap();
    let start = Instant::now();
    client.send(&append.to_bytes()).unwrap();
    assert_eq!(client.read_to_close().unwrap(), b"status\x004294967295\0\0");
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(defer.requests(), [BounceRequest::Append(append)]);
    assert_eq!(defer.requests()[0].queue_id(), "ABC123");

    // A malformed request is recorded, and no reply is sent.
    let mut client = Client::connect(&dir.private("defer")).unwrap();
    client.next_list().unwrap();
    client.send(b"nrequest\x009\0\0").unwrap();
    assert_eq!(client.read_to_close().unwrap(), b"");
    assert_eq!(defer.errors().len(), 1);
}

#[test]
fn postlog_collects_and_parses_datagrams() {
    let dir = FakeQueueDir::new();
    let postlog = FakePostlog::start(&dir);
    let sock = UnixDatagram::unbound().unwrap();
    sock.connect(dir.public("postlog")).unwrap();
    sock.send(b"Jan  5 07:08:09 fakehost postfix/qmgr[4242]: 8B82198DFC7: removed")
        .unwrap();
    sock.send(b"not a syslog line").unwrap();
    let line = postlog.wait_for("removed", TIMEOUT).expect("line arrives");
    assert!(line.starts_with("Jan  5 07:08:09"));
    assert!(postlog.wait_for_count("", 2, TIMEOUT));
    let entries = postlog.entries();
    assert_eq!(entries[0].tag, "postfix/qmgr");
    assert_eq!(entries[0].pid, 4242);
    assert_eq!(entries[0].text, "8B82198DFC7: removed");
    assert_eq!(entries[1], LogLine::parse("not a syslog line"));
    assert_eq!(entries[1].text, "not a syslog line");
    assert_eq!(postlog.wait_for("never", Duration::from_millis(50)), None);
}

#[test]
fn queue_dir_looks_like_postfix() {
    let dir = FakeQueueDir::with_params(&[("hash_queue_depth", "2"), ("in_flow_delay", "0s")]);
    for sub in QUEUE_SUBDIRS {
        let meta = fs::metadata(dir.queue_dir().join(sub)).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{sub}");
    }
    let main_cf = fs::read_to_string(dir.config_dir().join("main.cf")).unwrap();
    for needle in [
        format!("queue_directory = {}\n", dir.queue_dir().display()),
        format!("mail_owner = {}\n", dir.mail_owner()),
        format!("maillog_file = {}\n", dir.maillog_file().display()),
        format!("myhostname = {HOSTNAME}\n"),
        "in_flow_delay = 0s\n".to_string(),
    ] {
        assert!(main_cf.contains(&needle), "{needle:?} in\n{main_cf}");
    }
    assert_ne!(
        nix::unistd::User::from_name(dir.mail_owner())
            .unwrap()
            .map(|u| u.uid.as_raw()),
        Some(0),
        "Postfix refuses a privileged mail_owner"
    );

    let ready = dir.drop_message(b"s@x", &[b"a@y", b"b@y"]);
    let embryo = dir.message(b"s@x", &[b"a@y"]).mode(0o600).write().0;
    let later = dir.message(b"s@x", &[b"a@y"]).mtime_in(3600).write().0;
    let deferred = dir.message(b"s@x", &[b"a@y"]).queue("deferred").write().0;
    let corrupt = dir.message(b"", &[]).raw(b"garbage").write().0;
    let mut all = vec![
        ready.clone(),
        embryo.clone(),
        later.clone(),
        corrupt.clone(),
    ];
    all.sort();
    assert_eq!(dir.list("incoming"), all);
    assert_eq!(dir.mode("incoming", &ready).unwrap(), 0o700);
    assert_eq!(dir.mode("incoming", &embryo).unwrap(), 0o600);
    let now = common::queue_dir::unix_now();
    assert!((dir.mtime("incoming", &later).unwrap() - now - 3600).abs() <= 2);
    assert!(oqmgr::queue::id::queue_id_ok(ready.as_bytes()));

    // deferred is hashed: two levels of subdirectories from the id's hash key.
    let path = dir.path_of("deferred", &deferred);
    let rel: PathBuf = path.strip_prefix(dir.queue_dir()).unwrap().to_path_buf();
    let key: Vec<char> = deferred.chars().collect();
    assert_eq!(
        rel,
        PathBuf::from(format!("deferred/{}/{}/{deferred}", key[0], key[1]))
    );
    assert!(path.exists());
    assert_eq!(dir.list("deferred"), std::slice::from_ref(&deferred));
    assert_eq!(dir.queue_of(&deferred).as_deref(), Some("deferred"));

    let types: String = dir
        .records("incoming", &ready)
        .unwrap()
        .iter()
        .map(|r| char::from(r.rec_type.byte()))
        .collect();
    assert_eq!(types, "CTASRRMNNNXE");
    assert_eq!(dir.records("incoming", &corrupt).unwrap().len(), 0);

    // For `-u` runs as root the queue must belong to mail_owner.
    if nix::unistd::getuid().is_root() {
        dir.chown_to_mail_owner().unwrap();
        let owner = nix::unistd::User::from_name(dir.mail_owner())
            .unwrap()
            .unwrap();
        let meta = fs::metadata(dir.path_of("deferred", &deferred)).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            owner.uid.as_raw()
        );
    }
}

/// `flags:` of /proc/<pid>/fdinfo/<fd>, octal.
fn fd_flags(pid: i32, fd: i32) -> u32 {
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let line = info.lines().find(|l| l.starts_with("flags:")).unwrap();
    u32::from_str_radix(line.trim_start_matches("flags:").trim(), 8).unwrap()
}

fn fd_target(pid: i32, fd: i32) -> String {
    fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn master_hands_fds_env_and_sees_reload() {
    let dir = FakeQueueDir::new();
    // Writes one status record (pid 0x04030201, gen 11, avail 1), then waits for EOF on fd 5.
    let script = "printf '\\001\\002\\003\\004\\013\\000\\000\\000\\001\\000\\000\\000' >&5; \
                  cat <&5 >/dev/null; echo reload-seen";
    let master = FakeMaster::start_with(
        &dir,
        MasterOptions::program("/bin/sh", "qmgr", &["-c", script]),
    );
    let pid = master.pid();
    let status = master.wait_status(1, TIMEOUT);
    assert_eq!(
        status,
        [common::master::StatusMessage {
            pid: 0x0403_0201,
            generation: GENERATION_VALUE,
            avail: 1
        }],
        "{}",
        master.output()
    );

    let flow_r = fd_target(pid, 3);
    assert!(flow_r.starts_with("pipe:"), "{flow_r}");
    assert_eq!(fd_target(pid, 4), flow_r, "3 and 4 are one pipe");
    assert!(fd_target(pid, 5).starts_with("socket:"));
    assert!(fd_target(pid, 6).starts_with("socket:"));
    let nonblock = libc::O_NONBLOCK as u32;
    let cloexec = libc::O_CLOEXEC as u32;
    for fd in [3, 4, 6] {
        assert_eq!(
            fd_flags(pid, fd) & nonblock,
            nonblock,
            "fd {fd} non-blocking"
        );
    }
    assert_eq!(fd_flags(pid, 5) & nonblock, 0, "fd 5 blocking");
    for fd in 3..=6 {
        assert_eq!(
            fd_flags(pid, fd) & cloexec,
            0,
            "fd {fd} inherited across exec"
        );
    }
    assert_eq!(fd_flags(pid, 3) & 0o3, libc::O_RDONLY as u32);
    assert_eq!(fd_flags(pid, 4) & 0o3, libc::O_WRONLY as u32);
    assert!(
        !Path::new(&format!("/proc/{pid}/fd/7")).exists(),
        "nothing else leaks"
    );

    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
    let mut env: Vec<String> = environ
        .split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    env.retain(|v| !v.starts_with("PWD=")); // dash adds PWD
    env.sort();
    let mut want = vec![
        format!("MAIL_CONFIG={}", dir.config_dir().display()),
        "MAIL_LOGTAG=postfix".to_string(),
        "LANG=C".to_string(),
        format!("POSTLOG_SERVICE={}", dir.public("postlog").display()),
        format!("POSTLOG_HOSTNAME={HOSTNAME}"),
        "GENERATION=13".to_string(),
    ];
    want.sort();
    assert_eq!(env, want);
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        dir.queue_dir()
    );
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.starts_with(b"qmgr\0-c\0"));

    master.put_flow_tokens(3).unwrap();
    assert_eq!(master.flow_tokens(), 3);
    assert_eq!(master.take_flow_tokens(2), 2);
    assert_eq!(master.flow_tokens(), 1);

    assert!(master.is_running());
    master.reload();
    let exit = master.wait_exit(TIMEOUT).expect("child exits after reload");
    assert!(exit.success(), "{exit:?}");
    assert!(master.output().contains("reload-seen"));
    assert_eq!(master.status_messages().len(), 1, "kept after reload");
}

#[test]
fn master_kill_and_drop_leave_no_process() {
    let dir = FakeQueueDir::new();
    // The child starts a grandchild in its group; both must go.
    let master = FakeMaster::start_with(
        &dir,
        MasterOptions::program(
            "/bin/sh",
            "qmgr",
            &["-c", "sleep 30 & echo $! > grandchild; wait"],
        ),
    );
    let pidfile = dir.queue_dir().join("grandchild");
    assert!(wait_until(TIMEOUT, || fs::read_to_string(&pidfile)
        .is_ok_and(|s| s.ends_with('\n'))));
    let grandchild: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = master.pid();
    assert_eq!(master.wait_exit(Duration::from_millis(50)), None);
    drop(master);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "child reaped");
    // The grandchild is killed; it may linger briefly as a zombie of init.
    assert!(wait_until(TIMEOUT, || {
        fs::read_to_string(format!("/proc/{grandchild}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    }));

    let master = FakeMaster::start_with(
        &dir,
        MasterOptions::program("/bin/sh", "qmgr", &["-c", "exec sleep 30"]),
    );
    let status = master.kill().expect("killed");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
}

/// python3 plays the daemon's listener side; skipped where there is no python3.
fn python3() -> Option<&'static str> {
    ["/usr/bin/python3", "/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

#[test]
fn master_trigger_reaches_the_listener_on_fd_6() {
    let Some(python) = python3() else {
        eprintln!("skipped: no python3");
        return;
    };
    let dir = FakeQueueDir::new();
    // Accept one connection on fd 6, read once, print the bytes in hex, close.
    let script = "import os, select, socket\n\
        s = socket.socket(fileno=6)\n\
        select.select([s], [], [], 5)\n\
        c, _ = s.accept()\n\
        c.setblocking(True)\n\
        data = b''\n\
        while len(data) < 5: data += c.recv(1024)\n\
        print('unix', s.type == socket.SOCK_STREAM, data.hex(), flush=True)\n\
        c.close()\n";
    let master = FakeMaster::start_with(
        &dir,
        MasterOptions::program(python, "qmgr", &["-c", script]),
    );
    let sent = master.trigger(b"FADI");
    assert!(sent.is_ok(), "{sent:?}: {}", master.output());
    assert!(
        master.wait_exit(TIMEOUT).is_some_and(|s| s.success()),
        "{}",
        master.output()
    );
    assert_eq!(master.output().trim(), "unix True 4641444900");
}

#[test]
fn master_fifo_listener() {
    let Some(python) = python3() else {
        eprintln!("skipped: no python3");
        return;
    };
    let dir = FakeQueueDir::new();
    let script = "import os, select, stat\n\
        select.select([6], [], [], 5)\n\
        print('fifo', stat.S_ISFIFO(os.fstat(6).st_mode), os.read(6, 1024).hex(), flush=True)\n";
    let opts = MasterOptions {
        listener: ListenerKind::Fifo,
        ..MasterOptions::program(python, "qmgr", &["-c", script])
    };
    let master = FakeMaster::start_with(&dir, opts);
    let mode = fs::metadata(dir.public("qmgr"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o622);
    master.trigger(b"I").unwrap();
    assert!(
        master.wait_exit(TIMEOUT).is_some_and(|s| s.success()),
        "{}",
        master.output()
    );
    assert_eq!(master.output().trim(), "fifo True 49");
    assert_eq!(MasterOptions::fifo().args, ["-l", "-t", "fifo"]);
}

#[test]
fn world_sets_up_every_peer() {
    let mut world = World::with_params(&[("qmgr_message_recipient_limit", "20000")]);
    world.add_agent("smtp", Behaviour::Ok);
    world.add_agent("discard", Behaviour::Ok);
    for service in ["rewrite", "bounce", "defer", "trace", "smtp", "discard"] {
        assert!(world.dir.private(service).exists(), "{service}");
    }
    assert!(world.dir.public("postlog").exists());
    let id = world.drop_message("s@src.lab", &["a@d1.lab"]);
    assert_eq!(world.dir.list("incoming"), [id]);
    assert_eq!(world.agent("smtp").name(), "smtp");
    assert_eq!(MasterOptions::default().argv0, "qmgr");
    assert!(
        MasterOptions::default().program.exists(),
        "the oqmgr binary is built"
    );
    assert_eq!(MasterOptions::default().args, ["-l", "-t", "unix"]);

    // A stand-in daemon that logs one line to postlog the way the real one will.
    let Some(python) = python3() else {
        eprintln!("skipped the postlog part: no python3");
        return;
    };
    let script = "import os, socket\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
        s.connect(os.environ['POSTLOG_SERVICE'])\n\
        s.send(b'Jan  1 00:00:00 fakehost postfix/qmgr[%d]: hello from the daemon' % os.getpid())\n";
    world.start_with(MasterOptions::program(python, "qmgr", &["-c", script]));
    let line = world.expect_log("hello from the daemon", TIMEOUT);
    let pid = world.master().pid();
    assert!(line.contains(&format!("postfix/qmgr[{pid}]")), "{line}");
    assert!(world.master().wait_exit(TIMEOUT).is_some());
    assert!(world.diagnostics().contains("hello from the daemon"));
}

/// trivial-rewrite serves one request per readable event: requests written back to back are
/// answered one per later write. The fake does the same, so a pipelining client would stall.
#[test]
fn rewrite_answers_pipelined_requests_only_as_new_bytes_arrive() {
    let dir = FakeQueueDir::new();
    let _rewrite = FakeRewrite::start(&dir);
    let mut client = Client::connect(&dir.private("rewrite")).unwrap();
    client.next_list().unwrap();
    let request = |a: &[u8]| {
        ResolveRequest {
            class: ResolveClass::Resolve,
            sender: b"s@x".to_vec(),
            address: a.to_vec(),
        }
        .to_bytes()
    };
    let mut two = request(b"a@x");
    two.extend(request(b"b@x"));
    client.send(&two).unwrap();
    let first = oqmgr::proto::rewrite::ResolveReply::decode(&client.next_list().unwrap()).unwrap();
    assert_eq!(first.recipient, b"a@x");
    client
        .set_read_timeout(std::time::Duration::from_millis(200))
        .unwrap();
    assert!(
        client.next_list().is_err(),
        "the second request waits for more bytes"
    );
    client
        .set_read_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    client.send(&request(b"c@x")).unwrap();
    let second = oqmgr::proto::rewrite::ResolveReply::decode(&client.next_list().unwrap()).unwrap();
    assert_eq!(second.recipient, b"b@x");
}
