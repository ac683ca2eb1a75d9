//! Records the queue manager writes itself, without a delivery agent: a recipient deferred
//! when even the retry transport is unavailable (the C daemon's qmgr_defer_recipient ->
//! defer_append) and a double bounce discarded (qmgr_message_resolve -> sent). Depending on
//! the message's trace flags they go to verify(8) (address probes), trace(8) (sendmail -bv /
//! -v), defer(8), and flush(8) for fast_flush_domains; a failing service gets C's warning and
//! outcome.

mod common;

use std::time::Duration;

use common::bounce::BounceRequest;
use common::proxymap::{FakeProxymap, ServedTable};
use common::queue_file_builder::QueueFileBuilder;
use common::service::FakeService;
use common::world::World;
use oqmgr::proto::attr::AttrList;
use oqmgr::proto::flush::FlushAdd;
use oqmgr::proto::proxymap::{dict_flags, proxy_status, LookupRequest, OpenRequest, ProxyRequest};
use oqmgr::proto::verify::VerifyUpdate;

const T: Duration = Duration::from_secs(10);

const MTA_VRFY: u32 = 0x100;
const USR_VRFY: u32 = 0x200;
const RECORD: u32 = 0x400;

/// Inserts `A trace_flags=<flags>` before the first recipient, where cleanup puts it.
fn with_trace_flags(b: &mut QueueFileBuilder, flags: u32) {
    let at = b
        .envelope
        .iter()
        .position(|(t, _)| *t == b'R')
        .unwrap_or(b.envelope.len());
    b.envelope
        .insert(at, (b'A', format!("trace_flags={flags}").into_bytes()));
}

/// A message to `recipients` with trace flags; neither smtp nor retry exists in `w`.
fn drop_traced(w: &World, sender: &str, recipients: &[&str], flags: u32) -> String {
    let rcpts: Vec<&[u8]> = recipients.iter().map(|r| r.as_bytes()).collect();
    w.dir
        .message(sender.as_bytes(), &rcpts)
        .edit(|b| with_trace_flags(b, flags))
        .write()
        .0
}

/// Waits for the queue manager's own line about recipient `rcpt` of message `id`
/// (`relay=none`) and checks how it ends (dsn, status and reason).
fn expect_recipient_line(w: &World, id: &str, rcpt: &str, ending: &str) {
    let line = w.expect_log(&format!("{id}: to=<{rcpt}>, relay=none, delay="), T);
    assert!(line.ends_with(ending), "{line}");
}

fn verify_updates(service: &FakeService) -> Vec<VerifyUpdate> {
    service
        .requests()
        .iter()
        .map(|l| VerifyUpdate::decode(l).expect("verify update"))
        .collect()
}

fn flush_adds(service: &FakeService) -> Vec<FlushAdd> {
    service
        .requests()
        .iter()
        .map(|l: &AttrList| FlushAdd::decode(l).expect("flush add"))
        .collect()
}

fn appends(requests: &[BounceRequest]) -> Vec<oqmgr::proto::bounce::AppendRequest> {
    requests
        .iter()
        .filter_map(|r| match r {
            BounceRequest::Append(a) => Some(a.clone()),
            BounceRequest::Flush(_) => None,
        })
        .collect()
}

#[test]
fn a_probe_deferred_without_any_transport_updates_verify_instead_of_defer() {
    let mut w = World::new();
    let verify = FakeService::verify(&w.dir.private("verify"));
    let id = drop_traced(&w, "double-bounce@src.lab", &["a@d1.lab"], MTA_VRFY);
    w.start();
    expect_recipient_line(
        &w,
        &id,
        "a@d1.lab",
        "dsn=4.3.0, status=undeliverable (mail transport unavailable)",
    );
    assert_eq!(
        verify_updates(&verify),
        vec![VerifyUpdate {
            address: b"a@d1.lab".to_vec(),
            recipient_status: 1,
            reason: b"mail transport unavailable".to_vec(),
        }]
    );
    // verify_append succeeded: the message is not deferred, no defer log is written.
    w.expect_log(&format!("{id}: removed"), T);
    assert!(appends(&w.defer.requests()).is_empty());
}

#[test]
fn a_probe_for_an_original_and_a_rewritten_address_gets_two_updates() {
    let mut w = World::new();
    let verify = FakeService::verify(&w.dir.private("verify"));
    let (id, _) = w
        .dir
        .message(b"double-bounce@src.lab", &[b"a@d1.lab"])
        .edit(|b| {
            with_trace_flags(b, MTA_VRFY);
            let at = b.envelope.iter().position(|(t, _)| *t == b'R').unwrap();
            b.envelope.insert(at, (b'O', b"alias@d1.lab".to_vec()));
        })
        .write();
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    let addresses: Vec<Vec<u8>> = verify_updates(&verify)
        .into_iter()
        .map(|u| u.address)
        .collect();
    assert_eq!(
        addresses,
        vec![b"alias@d1.lab".to_vec(), b"a@d1.lab".to_vec()]
    );
}

#[test]
fn without_negative_caching_a_deferred_probe_is_logged_but_not_reported() {
    let mut w = World::with_params(&[("address_verify_negative_cache", "no")]);
    let verify = FakeService::verify(&w.dir.private("verify"));
    let id = drop_traced(&w, "double-bounce@src.lab", &["a@d1.lab"], MTA_VRFY);
    w.start();
    expect_recipient_line(
        &w,
        &id,
        "a@d1.lab",
        "status=undeliverable-but-not-cached (mail transport unavailable)",
    );
    w.expect_log(&format!("{id}: removed"), T);
    assert!(verify.requests().is_empty());
}

#[test]
fn a_failing_verify_service_defers_the_probe_with_cs_warning() {
    let mut w = World::new();
    let verify = FakeService::verify(&w.dir.private("verify"));
    verify.set_status(-1);
    let id = drop_traced(&w, "double-bounce@src.lab", &["a@d1.lab"], MTA_VRFY);
    w.start();
    w.expect_log(&format!("warning: {id}: verify service failure"), T);
    w.expect_in(&id, Some("deferred"));
    assert!(w
        .postlog
        .dump()
        .lines()
        .all(|l| !l.contains("status=undeliverable")));
}

#[test]
fn sendmail_bv_records_the_deferral_through_trace_only() {
    let mut w = World::new();
    let id = drop_traced(&w, "user@src.lab", &["a@d1.lab"], USR_VRFY);
    w.start();
    expect_recipient_line(
        &w,
        &id,
        "a@d1.lab",
        "dsn=4.3.0, status=undeliverable (mail transport unavailable)",
    );
    w.expect_log(&format!("{id}: removed"), T);
    let traced = appends(&w.trace.requests());
    assert_eq!(traced.len(), 1, "{:?}", w.trace.requests());
    assert_eq!(traced[0].flags, USR_VRFY);
    assert_eq!(traced[0].recipient.address(), b"a@d1.lab");
    assert_eq!(traced[0].dsn.status, b"4.3.0");
    assert_eq!(traced[0].dsn.action, b"undeliverable");
    assert_eq!(traced[0].dsn.reason, b"mail transport unavailable");
    // ... and the report goes out through the trace flush at the end.
    assert_eq!(w.trace.requests().last().unwrap().command_code(), 5);
    assert!(appends(&w.defer.requests()).is_empty());
}

#[test]
fn a_failing_trace_service_defers_a_sendmail_bv_message() {
    let mut w = World::new();
    w.trace.set_status(-1);
    let id = drop_traced(&w, "user@src.lab", &["a@d1.lab"], USR_VRFY);
    w.start();
    w.expect_log(&format!("warning: {id}: trace service failure"), T);
    w.expect_in(&id, Some("deferred"));
}

#[test]
fn sendmail_v_records_the_deferral_in_defer_and_trace() {
    let mut w = World::new();
    let id = drop_traced(&w, "user@src.lab", &["a@d1.lab"], RECORD);
    w.start();
    expect_recipient_line(
        &w,
        &id,
        "a@d1.lab",
        "dsn=4.3.0, status=deferred (mail transport unavailable)",
    );
    w.expect_in(&id, Some("deferred"));
    let deferred = appends(&w.defer.requests());
    assert_eq!(deferred.len(), 1);
    assert_eq!(deferred[0].flags, RECORD);
    let traced = appends(&w.trace.requests());
    assert_eq!(traced.len(), 1, "{:?}", w.trace.requests());
    assert_eq!(traced[0].flags, RECORD);
    assert_eq!(traced[0].dsn.action, b"delayed");
    assert_eq!(traced[0].dsn.reason, b"mail transport unavailable");
}

#[test]
fn fast_flush_domains_get_a_flush_add_for_deferred_recipients() {
    let mut w = World::with_params(&[("fast_flush_domains", "d1.lab")]);
    let flush = FakeService::flush(&w.dir.public("flush"));
    let id = w.drop_message("sender@src.lab", &["a@d1.lab", "b@mx.d1.lab", "c@d2.lab"]);
    w.start();
    w.expect_in(&id, Some("deferred"));
    let mut adds = flush_adds(&flush);
    adds.sort_by(|a, b| a.site.cmp(&b.site));
    assert_eq!(
        adds,
        vec![
            FlushAdd {
                site: b"d1.lab".to_vec(),
                queue_id: id.clone().into_bytes(),
            },
            FlushAdd {
                site: b"mx.d1.lab".to_vec(),
                queue_id: id.clone().into_bytes(),
            },
        ]
    );
    assert_eq!(flush.connections(), 2);
    assert_eq!(appends(&w.defer.requests()).len(), 3);
}

/// relay_domains (fast_flush_domains' default) as a hash table, the common relay set-up: the
/// table is read at start-up with postmap, and a deferred recipient whose domain or parent
/// domain is in it gets its flush(8) `add`, without a warning. A table that cannot be opened
/// gets Postfix's start-up error and its lookups fail, as before.
#[test]
fn fast_flush_domains_from_a_hash_table_get_a_flush_add() {
    if !std::path::Path::new("/usr/sbin/postmap").exists() {
        eprintln!("skipped: no /usr/sbin/postmap");
        return;
    }
    let tables = tempfile::tempdir().unwrap();
    std::fs::write(tables.path().join("main.cf"), "").unwrap();
    let source = tables.path().join("relay_domains");
    std::fs::write(&source, "d1.lab OK\nD3.lab OK\n").unwrap();
    let hash = format!("hash:{}", source.display());
    let status = std::process::Command::new("/usr/sbin/postmap")
        .arg("-c")
        .arg(tables.path())
        .arg(&hash)
        .status()
        .unwrap();
    assert!(status.success());
    let mut w = World::with_params(&[("relay_domains", &hash)]);
    let flush = FakeService::flush(&w.dir.public("flush"));
    let id = w.drop_message(
        "sender@src.lab",
        &["a@d1.lab", "b@mx.d1.lab", "c@d2.lab", "d@d3.lab"],
    );
    w.start();
    w.expect_in(&id, Some("deferred"));
    assert_eq!(flush_sites(&flush), ["d1.lab", "d3.lab", "mx.d1.lab"]);
    // The transports are missing (that is why the queue manager defers by itself); nothing
    // else is warned about.
    let trouble: Vec<String> = w
        .postlog
        .matching("warning:")
        .into_iter()
        .filter(|l| !l.contains("warning: connect to transport private/"))
        .collect();
    assert!(trouble.is_empty(), "{}", w.diagnostics());

    let missing = format!("hash:{}", tables.path().join("missing").display());
    let mut w = World::with_params(&[("relay_domains", &missing)]);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    let db = format!("{}.db", tables.path().join("missing").display());
    w.expect_log(
        &format!("error: open database {db}: No such file or directory"),
        T,
    );
    w.expect_log(
        &format!(
            "warning: {missing} is unavailable. open database {db}: No such file or directory"
        ),
        T,
    );
    w.expect_log(
        &format!("warning: fast_flush_domains: {missing}: table lookup problem"),
        T,
    );
    w.expect_log(&format!("warning: {id}: flush service failure"), T);
    w.expect_in(&id, Some("deferred"));
}

/// The sites flush(8) was asked to add, sorted.
fn flush_sites(flush: &FakeService) -> Vec<String> {
    let mut sites: Vec<String> = flush_adds(flush)
        .into_iter()
        .map(|a| String::from_utf8_lossy(&a.site).into_owned())
        .collect();
    sites.sort();
    sites
}

/// A fake proxymap in the world's private/ that serves one table.
fn proxymap_serving(
    w: &World,
    table: &str,
    flags: u32,
    keys: &[&str],
    status: Option<i32>,
) -> FakeProxymap {
    FakeProxymap::start(
        &w.dir.private("proxymap"),
        &[(
            table,
            ServedTable {
                flags,
                keys: keys.iter().map(|k| k.to_string()).collect(),
                status,
            },
        )],
    )
}

/// The keys looked up in proxymap, sorted, each once.
fn proxy_keys(proxymap: &FakeProxymap) -> Vec<String> {
    let mut keys: Vec<String> = proxymap
        .requests()
        .into_iter()
        .filter_map(|r| match r {
            ProxyRequest::Lookup(l) => Some(String::from_utf8_lossy(&l.key).into_owned()),
            ProxyRequest::Open(_) => None,
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[test]
fn fast_flush_domains_from_a_proxy_table_get_a_flush_add() {
    let mut w = World::with_params(&[("relay_domains", "proxy:hash:/etc/postfix/relay")]);
    let proxymap = proxymap_serving(
        &w,
        "hash:/etc/postfix/relay",
        dict_flags::FIXED,
        &["d1.lab", "d3.lab"],
        None,
    );
    let flush = FakeService::flush(&w.dir.public("flush"));
    let id = w.drop_message(
        "sender@src.lab",
        &["a@d1.lab", "b@mx.d1.lab", "c@d2.lab", "d@D3.lab"],
    );
    w.start();
    w.expect_in(&id, Some("deferred"));
    assert!(common::wait_until(T, || flush_adds(&flush).len() >= 3));
    assert_eq!(flush_sites(&flush), ["D3.lab", "d1.lab", "mx.d1.lab"]);
    // The open at start-up as match_list opens a table (no instance flags), each lookup with
    // lock|utf8_request; parent domains too (a fixed table), the names casefolded.
    let requests = proxymap.requests();
    assert_eq!(
        requests.first(),
        Some(&ProxyRequest::Open(OpenRequest {
            table: b"hash:/etc/postfix/relay".to_vec(),
            flags: 0,
        }))
    );
    assert!(requests.iter().skip(1).all(|r| matches!(r,
        ProxyRequest::Lookup(LookupRequest { table, flags, .. })
            if table == b"hash:/etc/postfix/relay" && *flags == dict_flags::MATCH_LIST)));
    assert!(common::wait_until(T, || proxy_keys(&proxymap).len() >= 5));
    assert_eq!(
        proxy_keys(&proxymap),
        ["d1.lab", "d2.lab", "d3.lab", "lab", "mx.d1.lab"]
    );
    let trouble: Vec<String> = w
        .postlog
        .matching("warning:")
        .into_iter()
        .filter(|l| !l.contains("warning: connect to transport private/"))
        .collect();
    assert!(trouble.is_empty(), "{}", w.diagnostics());
}

#[test]
fn a_proxied_pattern_table_is_asked_the_whole_name_only() {
    let mut w = World::with_params(&[("fast_flush_domains", "proxy:regexp:/etc/postfix/re")]);
    let proxymap = proxymap_serving(
        &w,
        "regexp:/etc/postfix/re",
        dict_flags::PATTERN,
        &["d1.lab"],
        None,
    );
    let flush = FakeService::flush(&w.dir.public("flush"));
    let id = w.drop_message("sender@src.lab", &["a@d1.lab", "b@mx.d1.lab"]);
    w.start();
    w.expect_in(&id, Some("deferred"));
    assert!(common::wait_until(T, || proxy_keys(&proxymap).len() >= 2));
    assert_eq!(proxy_keys(&proxymap), ["d1.lab", "mx.d1.lab"]);
    assert!(common::wait_until(T, || !flush_adds(&flush).is_empty()));
    assert_eq!(flush_sites(&flush), ["d1.lab"]);
}

#[test]
fn a_proxied_table_that_fails_its_lookups_is_a_table_lookup_problem() {
    let table = "hash:/etc/postfix/relay";
    let mut w = World::with_params(&[("relay_domains", &format!("proxy:{table}"))]);
    let _proxymap = proxymap_serving(
        &w,
        table,
        dict_flags::FIXED,
        &["d1.lab"],
        Some(proxy_status::RETRY),
    );
    let _flush = FakeService::flush(&w.dir.public("flush"));
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(
        &format!("warning: fast_flush_domains: proxy:{table}: table lookup problem"),
        T,
    );
    w.expect_log(&format!("warning: {id}: flush service failure"), T);
    w.expect_in(&id, Some("deferred"));
}

#[test]
fn without_proxymap_a_proxied_table_fails_its_lookups_and_nothing_hangs() {
    let table = "hash:/etc/postfix/relay";
    let mut w = World::with_params(&[("relay_domains", &format!("proxy:{table}"))]);
    let flush = FakeService::flush(&w.dir.public("flush"));
    let id = w.drop_message("sender@src.lab", &["a@d1.lab", "b@d2.lab"]);
    w.start();
    // No socket there: the absolute path, as dict_proxy_open then chooses.
    let path = format!("{}/private/proxymap", w.dir.queue_dir().display());
    w.expect_log(
        &format!("warning: connect #1 to subsystem {path}: No such file or directory"),
        T,
    );
    w.expect_log(
        &format!("warning: connect #2 to subsystem {path}: No such file or directory"),
        T,
    );
    w.expect_log(
        &format!("warning: fast_flush_domains: proxy:{table}: table lookup problem"),
        T,
    );
    w.expect_log(&format!("warning: {id}: flush service failure"), T);
    w.expect_in(&id, Some("deferred"));
    assert!(flush_adds(&flush).is_empty());
}

#[test]
fn a_proxied_table_that_proxymap_does_not_serve_is_fatal() {
    let mut w = World::with_params(&[("fast_flush_domains", "proxy:hash:/etc/postfix/other")]);
    let _proxymap = FakeProxymap::start(&w.dir.private("proxymap"), &[]);
    w.start();
    w.expect_log(
        "fatal: proxymap service is not configured for table \"hash:/etc/postfix/other\"",
        T,
    );
}

#[test]
fn a_failing_flush_service_is_warned_about_and_the_mail_stays_deferred() {
    // No public/flush at all.
    let mut w = World::with_params(&[("fast_flush_domains", "d1.lab")]);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(
        "warning: connect to public/flush: No such file or directory",
        T,
    );
    w.expect_log(&format!("warning: {id}: flush service failure"), T);
    w.expect_in(&id, Some("deferred"));

    // A flush service that answers with a failure status.
    let mut w = World::with_params(&[("fast_flush_domains", "d1.lab")]);
    let flush = FakeService::flush(&w.dir.public("flush"));
    flush.set_status(-1);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(&format!("warning: {id}: flush service failure"), T);
    w.expect_in(&id, Some("deferred"));
}

#[test]
fn a_failing_defer_service_is_warned_about_and_the_mail_stays_deferred() {
    let mut w = World::new();
    w.defer.set_status(-1);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(&format!("warning: {id}: defer service failure"), T);
    w.expect_log(&format!("{id}: to=<a@d1.lab>, relay=none"), T);
    w.expect_in(&id, Some("deferred"));
}

#[test]
fn a_discarded_double_bounce_probe_updates_verify_as_deliverable() {
    let mut w = World::new();
    let verify = FakeService::verify(&w.dir.private("verify"));
    let id = drop_traced(&w, "", &["double-bounce"], MTA_VRFY);
    w.start();
    let line = w.expect_log(
        &format!("{id}: to=<double-bounce@fakehost.localdomain>, relay=none"),
        T,
    );
    assert!(
        line.ends_with(
            "dsn=2.0.0, status=deliverable (undeliverable postmaster notification discarded)"
        ),
        "{line}"
    );
    w.expect_log(&format!("{id}: removed"), T);
    assert_eq!(
        verify_updates(&verify),
        vec![VerifyUpdate {
            address: b"double-bounce@fakehost.localdomain".to_vec(),
            recipient_status: 0,
            reason: b"undeliverable postmaster notification discarded".to_vec(),
        }]
    );
}

#[test]
fn a_discarded_double_bounce_with_a_delivery_record_is_traced() {
    let mut w = World::new();
    let id = drop_traced(&w, "", &["double-bounce"], RECORD);
    w.start();
    expect_recipient_line(
        &w,
        &id,
        "double-bounce@fakehost.localdomain",
        "status=sent (undeliverable postmaster notification discarded)",
    );
    w.expect_log(&format!("{id}: removed"), T);
    let traced = appends(&w.trace.requests());
    assert_eq!(traced.len(), 1, "{:?}", w.trace.requests());
    assert_eq!(traced[0].flags, RECORD);
    assert_eq!(traced[0].dsn.status, b"2.0.0");
    assert_eq!(traced[0].dsn.action, b"delivered");
}

#[test]
fn a_double_bounce_whose_record_fails_is_deferred_not_discarded() {
    let mut w = World::new();
    w.trace.set_status(-1);
    let id = drop_traced(&w, "", &["double-bounce"], RECORD);
    w.start();
    w.expect_log(&format!("warning: {id}: trace service failure"), T);
    let line = w.expect_log(
        &format!("{id}: to=<double-bounce@fakehost.localdomain>, relay=none"),
        T,
    );
    assert!(
        line.ends_with(&format!(
            "dsn=4.3.0, status=deferred ({id}: trace service failed)"
        )),
        "{line}"
    );
    w.expect_in(&id, Some("deferred"));
    let deferred = appends(&w.defer.requests());
    assert_eq!(deferred.len(), 1);
    assert_eq!(deferred[0].dsn.status, b"4.3.0");
    // The recipient is not marked done: the next attempt will discard it again.
    let records = w.dir.records("deferred", &id).unwrap();
    assert!(records.iter().any(|r| r.rec_type.byte() == b'R'));
}

#[test]
fn a_defer_service_slower_than_qmgr_ipc_timeout_is_given_up_on() {
    let mut w = World::with_params(&[("qmgr_ipc_timeout", "1s")]);
    w.defer.set_delay(Duration::from_secs(30));
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(
        "warning: write/read private/defer socket: Connection timed out",
        T,
    );
    w.expect_log(&format!("warning: {id}: defer service failure"), T);
    w.expect_in(&id, Some("deferred"));
}

/// A double bounce to the double-bounce address (discarded through sent()) whose recipient
/// carries DSN NOTIFY flags `notify` (an `n` record before its `R`), with a `W` record
/// `warn` if given; its queue id.
fn drop_double_bounce_with_notify(w: &World, notify: u32, warn: Option<&[u8]>) -> String {
    w.dir
        .message(b"", &[b"double-bounce"])
        .edit(|b| {
            let at = b
                .envelope
                .iter()
                .position(|(t, _)| *t == b'R')
                .unwrap_or(b.envelope.len());
            b.envelope
                .insert(at, (b'n', notify.to_string().into_bytes()));
            if let Some(w) = warn {
                b.envelope.insert(0, (b'W', w.to_vec()));
            }
        })
        .write()
        .0
}

/// sent(): a recipient that asked for success notices (NOTIFY=SUCCESS) is traced for them,
/// then logged `sent`, even when no delivery record was asked for.
#[test]
fn a_discarded_double_bounce_that_asked_for_success_notices_is_traced() {
    let mut w = World::new();
    let id = drop_double_bounce_with_notify(&w, 2, None);
    w.start();
    let line = w.expect_log(&format!("{id}: to=<double-bounce@"), T);
    assert!(line.contains("status=sent"), "{line}");
    w.expect_log(&format!("{id}: removed"), T);
    let traced = appends(&w.trace.requests());
    assert_eq!(traced.len(), 1, "{:?}", w.trace.requests());
    assert_eq!(traced[0].dsn.action, b"delivered");
}

/// sent(): after a delay warning, confirm_delay_cleared asks for a "delay cleared" record
/// (REC_DLY_SENT) for recipients without NOTIFY or with NOTIFY=DELAY; not for the others.
#[test]
fn confirm_delay_cleared_traces_a_discarded_double_bounce_unless_it_declined_delay_notices() {
    for (notify, traced) in [(0, 1), (8, 1), (4, 0)] {
        let mut w = World::with_params(&[("confirm_delay_cleared", "yes")]);
        let id = drop_double_bounce_with_notify(&w, notify, Some(b"-1"));
        w.start();
        w.expect_log(&format!("{id}: removed"), T);
        let records = appends(&w.trace.requests());
        assert_eq!(records.len(), traced, "NOTIFY {notify}: {records:?}");
        if traced > 0 {
            assert_eq!(records[0].dsn.action, b"delivered");
        }
    }
}
