//! The C oqmgr's own IPC bytes (Postfix 3.7.11, captured with strace; see
//! tests/data/transcripts/README.md) decoded with `proto::attr` and the typed messages, and
//! re-encoded byte for byte.

use oqmgr::proto::attr::AttrMessage;
use std::fs;
use std::path::{Path, PathBuf};

use oqmgr::proto::attr::{AttrDecoder, AttrList, AttrWriter};
use oqmgr::proto::bounce::{bounce_flags, BounceCommand, FlushRequest, StatusReply};
use oqmgr::proto::deliver::{request_flags, DeliveryOutcome, DeliveryReply, DeliveryRequest};
use oqmgr::proto::dsn::Dsn;
use oqmgr::proto::msg_stats::{MsgStats, Timeval};
use oqmgr::proto::protocol::Protocol;
use oqmgr::proto::proxymap::{
    dict_flags, proxy_status, LookupReply, LookupRequest, OpenReply, OpenRequest, ProxyRequest,
};
use oqmgr::proto::recipient::Recipient;
use oqmgr::proto::rewrite::{resolve_flags, ResolveClass, ResolveReply, ResolveRequest};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/transcripts")
}

fn bytes(name: &str) -> Vec<u8> {
    let path = data_dir().join(name);
    fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Decodes a capture whole, and again one byte at a time; both must agree and end idle.
fn lists(name: &str) -> Vec<AttrList> {
    let data = bytes(name);
    let mut whole = AttrDecoder::default();
    let lists = whole.feed(&data).unwrap();
    assert_eq!(whole.finish(), Ok(()), "{name}: trailing partial list");
    let mut bytewise = AttrDecoder::default();
    let mut again = Vec::new();
    for byte in &data {
        again.extend(bytewise.feed(std::slice::from_ref(byte)).unwrap());
    }
    assert_eq!(bytewise.finish(), Ok(()));
    assert_eq!(again, lists, "{name}: byte-at-a-time differs");
    lists
}

fn one(name: &str) -> AttrList {
    let mut all = lists(name);
    assert_eq!(all.len(), 1, "{name}: expected one list");
    all.remove(0)
}

/// All captured exchanges, in capture order: (relative path, direction, service).
fn all_captures() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for capture in ["main", "lifecycle", "errors", "startup", "proxymap"] {
        let mut names: Vec<String> = fs::read_dir(data_dir().join(capture))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".bin"))
            .collect();
        names.sort();
        for name in names {
            let stem = name.trim_end_matches(".bin");
            let mut parts = stem.splitn(3, '-');
            let _seq = parts.next().unwrap();
            let dir = parts.next().unwrap().to_string();
            let svc = parts.next().unwrap().to_string();
            out.push((format!("{capture}/{name}"), dir, svc));
        }
    }
    out
}

#[test]
fn every_capture_decodes_and_reencodes_exactly() {
    let captures = all_captures();
    assert!(captures.len() >= 100, "only {} captures", captures.len());
    for (name, _, _) in &captures {
        let mut wire = Vec::new();
        for list in lists(name) {
            list.encode_into(&mut wire);
        }
        assert_eq!(wire, bytes(name), "{name}");
    }
}

/// Every exchange goes through its typed decoder and typed encoder.
#[test]
fn every_capture_round_trips_through_its_typed_message() {
    let mut seen_announcement = std::collections::HashSet::new();
    for (name, dir, svc) in all_captures() {
        let data = bytes(&name);
        let connection = format!("{}:{svc}", name.split('/').next().unwrap());
        let lists = lists(&name);
        let list = &lists[0];
        let reencoded = match (dir.as_str(), svc.as_str()) {
            ("read", _) if list.get("protocol").is_some() => {
                let protocol = match svc.as_str() {
                    "rewrite" => Protocol::TrivialRewrite,
                    "proxymap" => Protocol::Proxymap,
                    "bounce" | "defer" | "trace" => Protocol::DeliveryStatus,
                    _ => Protocol::DeliveryRequest,
                };
                protocol.check_announcement(list).unwrap();
                seen_announcement.insert(connection);
                let mut out = Vec::new();
                protocol.encode_announcement(&mut out);
                out
            }
            ("write", "proxymap") => ProxyRequest::decode(list).unwrap().to_bytes(),
            ("read", "proxymap") if list.get("flags").is_some() => {
                OpenReply::decode(list).unwrap().to_bytes()
            }
            ("read", "proxymap") => LookupReply::decode(list).unwrap().to_bytes(),
            ("write", "rewrite") => ResolveRequest::decode(list).unwrap().to_bytes(),
            ("read", "rewrite") => ResolveReply::decode(list).unwrap().to_bytes(),
            ("write", "bounce" | "defer" | "trace") => {
                FlushRequest::decode(list).unwrap().to_bytes()
            }
            ("read", "bounce" | "defer" | "trace") => StatusReply::decode(list).unwrap().to_bytes(),
            ("write", _) => DeliveryRequest::decode(&lists).unwrap().to_bytes(),
            ("read", _) => DeliveryReply::decode(list).unwrap().to_bytes(),
            other => panic!("{name}: unexpected {other:?}"),
        };
        assert_eq!(reencoded, data, "{name}");
    }
    assert!(seen_announcement.len() >= 5);
}

/// The C oqmgr with `relay_domains = proxy:hash:<lab>/etc/relay_domains` (d1.lab OK): the
/// table's open at start-up, then one deferral to d1.lab and one to d2.lab (and its parent
/// `lab`, the table being fixed-string), on one connection.
#[test]
fn proxymap_open_and_lookups() {
    assert_eq!(
        Protocol::Proxymap.check_announcement(&one("proxymap/001-read-proxymap.bin")),
        Ok(())
    );
    let table = b"hash:/tmp/proxycap/lab2/etc/relay_domains".to_vec();
    assert_eq!(
        ProxyRequest::decode(&one("proxymap/002-write-proxymap.bin")),
        Ok(ProxyRequest::Open(OpenRequest {
            table: table.clone(),
            flags: 0,
        }))
    );
    // A hash table: DICT_FLAG_FIXED, with DICT_FLAG_TRY0NULL|TRY1NULL.
    let opened = OpenReply::decode(&one("proxymap/003-read-proxymap.bin")).unwrap();
    assert_eq!(opened.status, proxy_status::OK);
    assert_eq!(opened.flags, 28);
    assert_eq!(opened.flags & dict_flags::IMPL_MASK, dict_flags::FIXED);
    for (request, key, reply, status, value) in [
        ("004", "d1.lab", "005", proxy_status::OK, "OK"),
        ("006", "d2.lab", "007", proxy_status::NOKEY, ""),
        ("008", "lab", "009", proxy_status::NOKEY, ""),
    ] {
        let name = format!("proxymap/{request}-write-proxymap.bin");
        assert_eq!(
            ProxyRequest::decode(&one(&name)),
            Ok(ProxyRequest::Lookup(LookupRequest {
                table: table.clone(),
                // DICT_FLAG_LOCK | DICT_FLAG_UTF8_REQUEST: match_list's flags.
                flags: dict_flags::MATCH_LIST,
                key: key.as_bytes().to_vec(),
            })),
            "{name}"
        );
        let name = format!("proxymap/{reply}-read-proxymap.bin");
        assert_eq!(
            LookupReply::decode(&one(&name)),
            Ok(LookupReply {
                status,
                value: value.as_bytes().to_vec(),
            }),
            "{name}"
        );
    }
}

#[test]
fn protocol_announcements() {
    for (name, protocol) in [
        ("main/001-read-rewrite.bin", Protocol::TrivialRewrite),
        ("main/004-read-discard.bin", Protocol::DeliveryRequest),
        ("main/022-read-bounce.bin", Protocol::DeliveryStatus),
        ("lifecycle/012-read-trace.bin", Protocol::DeliveryStatus),
        ("lifecycle/037-read-defer.bin", Protocol::DeliveryStatus),
    ] {
        assert_eq!(protocol.check_announcement(&one(name)), Ok(()), "{name}");
        let mut out = Vec::new();
        protocol.encode_announcement(&mut out);
        assert_eq!(out, bytes(name));
    }
    assert_eq!(
        bytes("main/001-read-rewrite.bin"),
        b"protocol\0trivial_rewrite_protocol\0\0"
    );
}

#[test]
fn resolve_request_and_reply_with_two_flags() {
    let request = ResolveRequest {
        class: ResolveClass::Resolve,
        sender: b"sender@src.lab".to_vec(),
        address: b"alice@d1.lab".to_vec(),
    };
    assert_eq!(request.to_bytes(), bytes("main/002-write-rewrite.bin"));
    assert_eq!(
        ResolveRequest::decode(&one("main/002-write-rewrite.bin")),
        Ok(request)
    );

    let list = one("main/003-read-rewrite.bin");
    let flags: Vec<&[u8]> = list
        .attrs()
        .filter(|(n, _)| n == b"flags")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(flags, [&b"0"[..], &b"4096"[..]]);
    let reply = ResolveReply {
        server_flags: 0,
        transport: b"discard".to_vec(),
        nexthop: b"d1.lab".to_vec(),
        recipient: b"alice@d1.lab".to_vec(),
        flags: resolve_flags::CLASS_DEFAULT,
    };
    assert_eq!(ResolveReply::decode(&list), Ok(reply.clone()));
    assert_eq!(reply.to_bytes(), bytes("main/003-read-rewrite.bin"));

    // The bounce notification's null sender.
    let null_sender = ResolveRequest {
        class: ResolveClass::Resolve,
        sender: Vec::new(),
        address: b"sender@src.lab".to_vec(),
    };
    assert_eq!(null_sender.to_bytes(), bytes("main/024-write-rewrite.bin"));
}

fn request_a() -> DeliveryRequest {
    DeliveryRequest {
        flags: request_flags::SUCCESS | request_flags::BOUNCE,
        queue_name: b"active".to_vec(),
        queue_id: b"5B50098DFD2".to_vec(),
        data_offset: 639,
        data_size: 373,
        nexthop: b"d1.lab".to_vec(),
        encoding: Vec::new(),
        smtputf8: 0,
        sender: b"sender@src.lab".to_vec(),
        envelope_id: Vec::new(),
        ret_flags: 0,
        stats: MsgStats {
            incoming_arrival: Timeval::new(1795954570, 366846),
            active_arrival: Timeval::new(1795954570, 376175),
            ..MsgStats::default()
        },
        log_client_name: b"unknown".to_vec(),
        log_client_address: b"127.0.0.1".to_vec(),
        log_client_port: b"41862".to_vec(),
        log_protocol_name: b"SMTP".to_vec(),
        log_helo_name: b"client.lab".to_vec(),
        sasl_method: Vec::new(),
        sasl_username: Vec::new(),
        sasl_sender: Vec::new(),
        log_ident: b"5B50098DFD2".to_vec(),
        rewrite_context: b"local".to_vec(),
        recipients: vec![Recipient::new(
            b"alice@d1.lab",
            b"alice@d1.lab",
            623,
            b"rfc822;alice@d1.lab",
            0,
        )],
    }
}

#[test]
fn delivery_request_with_23_attributes_and_recipient_list() {
    let name = "main/005-write-discard.bin";
    let lists = lists(name);
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[0].len(), 23);
    assert_eq!(lists[1].len(), 5);
    assert_eq!(
        lists[0].get("time").map(<[u8]>::len),
        Some(120),
        "MSG_STATS base64"
    );
    let expected = request_a();
    assert_eq!(DeliveryRequest::decode(&lists), Ok(expected.clone()));
    assert_eq!(expected.to_bytes(), bytes(name));
}

#[test]
fn delivery_request_for_null_sender_notification() {
    let request = DeliveryRequest::decode(&lists("main/028-write-discard.bin")).unwrap();
    assert_eq!(request.sender, b"");
    assert_eq!(request.log_client_name, b"");
    assert_eq!(request.log_ident, b"");
    assert_eq!(request.data_size, 2146);
    assert_eq!(
        request.stats.incoming_arrival,
        Timeval::new(1795954573, 593047)
    );
    assert_eq!(request.recipients[0].address(), b"sender@src.lab");
}

#[test]
fn delivery_request_to_retry_with_dead_destination_nexthop() {
    let request = DeliveryRequest::decode(&lists("main/015-write-retry.bin")).unwrap();
    assert_eq!(
        request.nexthop,
        b"4.4.1 delivery temporarily suspended: connect to 127.0.0.1[127.0.0.1]:24520: Connection refused"
    );
    let request = DeliveryRequest::decode(&lists("errors/005-write-retry.bin")).unwrap();
    assert_eq!(request.nexthop, b"4.3.0 mail transport unavailable");
}

#[test]
fn verp_requests_carry_one_recipient_and_the_verp_sender() {
    let first = DeliveryRequest::decode(&lists("lifecycle/026-write-discard.bin")).unwrap();
    let second = DeliveryRequest::decode(&lists("lifecycle/029-write-discard.bin")).unwrap();
    assert_eq!(first.sender, b"sender+v1=d1.lab@src.lab");
    assert_eq!(second.sender, b"sender+v2=d2.lab@src.lab");
    assert_eq!((first.recipients.len(), second.recipients.len()), (1, 1));
    assert_eq!(first.stats, second.stats);
}

#[test]
fn dsn_success_request_fields() {
    let request = DeliveryRequest::decode(&lists("lifecycle/010-write-discard.bin")).unwrap();
    assert_eq!(request.envelope_id, b"lab-envid-1");
    assert_eq!(request.ret_flags, 2);
    assert_eq!(request.recipients[0].notify_flags, 2);
}

#[test]
fn agent_replies_with_two_status_attributes() {
    let done = one("main/006-read-discard.bin");
    let statuses = done.attrs().filter(|(n, _)| n == b"status").count();
    assert_eq!(statuses, 2);
    let reply = DeliveryReply::decode(&done).unwrap();
    assert_eq!(reply, DeliveryReply::default());
    assert_eq!(reply.outcome(), DeliveryOutcome::Done);
    assert_eq!(reply.to_bytes(), bytes("main/006-read-discard.bin"));

    let deferred = DeliveryReply {
        hop_status: Dsn {
            status: b"4.4.1".to_vec(),
            reason: b"connect to 127.0.0.1[127.0.0.1]:24520: Connection refused".to_vec(),
            ..Dsn::default()
        },
        status: -1,
    };
    let decoded = DeliveryReply::decode(&one("main/011-read-smtp.bin"));
    assert_eq!(decoded.as_ref(), Ok(&deferred));
    assert_eq!(DeliveryOutcome::of(&decoded), DeliveryOutcome::Defer);
    assert_eq!(deferred.to_bytes(), bytes("main/011-read-smtp.bin"));

    // error(8) as the retry service: no hop status, but deferred.
    let retry = DeliveryReply::decode(&one("main/016-read-retry.bin")).unwrap();
    assert_eq!(retry.hop_status, Dsn::default());
    assert_eq!(retry.outcome(), DeliveryOutcome::Defer);
}

fn flush(command: BounceCommand, flags: u32, queue_id: &str) -> FlushRequest {
    FlushRequest {
        command,
        flags,
        queue_name: b"active".to_vec(),
        queue_id: queue_id.as_bytes().to_vec(),
        encoding: Vec::new(),
        smtputf8: 0,
        sender: b"sender@src.lab".to_vec(),
        envelope_id: Vec::new(),
        ret_flags: 0,
        verp_delimiters: None,
    }
}

#[test]
fn bounce_flush_request_and_status_reply() {
    let request = flush(BounceCommand::Flush, bounce_flags::KEEP, "8B82198DFC7");
    assert_eq!(request.to_bytes(), bytes("main/023-write-bounce.bin"));
    assert_eq!(
        FlushRequest::decode(&one("main/023-write-bounce.bin")),
        Ok(request)
    );
    let reply = StatusReply::decode(&one("main/026-read-bounce.bin")).unwrap();
    assert_eq!(reply.status, 0);
    assert_eq!(reply.to_bytes(), bytes("main/026-read-bounce.bin"));
}

#[test]
fn trace_flush_for_dsn_success() {
    let request = FlushRequest {
        envelope_id: b"lab-envid-1".to_vec(),
        ret_flags: 2,
        ..flush(BounceCommand::Trace, 0, "7196F98CB52")
    };
    assert_eq!(request.to_bytes(), bytes("lifecycle/013-write-trace.bin"));
    assert_eq!(
        FlushRequest::decode(&one("lifecycle/013-write-trace.bin")),
        Ok(request)
    );
    assert_eq!(
        StatusReply::decode(&one("lifecycle/016-read-trace.bin")),
        Ok(StatusReply { status: 0 })
    );
}

#[test]
fn defer_warn_and_defer_flush_on_expiry() {
    let warn = flush(BounceCommand::Warn, bounce_flags::KEEP, "28E4398CAB1");
    assert_eq!(warn.to_bytes(), bytes("lifecycle/038-write-defer.bin"));
    let expire = flush(BounceCommand::Flush, bounce_flags::DELRCPT, "28E4398CAB1");
    assert_eq!(expire.to_bytes(), bytes("lifecycle/052-write-defer.bin"));
    for name in [
        "lifecycle/041-read-defer.bin",
        "lifecycle/055-read-defer.bin",
    ] {
        assert_eq!(
            StatusReply::decode(&one(name)),
            Ok(StatusReply { status: 0 })
        );
    }
}

#[test]
fn generic_writer_reproduces_the_resolve_reply() {
    let mut w = AttrWriter::new();
    w.int("flags", 0)
        .str("transport", b"discard")
        .str("nexthop", b"d1.lab")
        .str("recipient", b"alice@d1.lab")
        .int("flags", 4096)
        .end();
    assert_eq!(w.into_bytes(), bytes("main/003-read-rewrite.bin"));
}

#[test]
fn announcement_and_reply_arriving_in_one_read() {
    let mut stream = bytes("main/004-read-discard.bin");
    stream.extend(bytes("main/006-read-discard.bin"));
    let got = AttrDecoder::default().feed(&stream).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        Protocol::DeliveryRequest.check_announcement(&got[0]),
        Ok(())
    );
    assert_eq!(
        DeliveryReply::decode(&got[1]).map(|r| r.outcome()),
        Ok(DeliveryOutcome::Done)
    );
}
