//! fast_flush_domains with lookup tables: `relay_domains = hash:...` (fast_flush_domains'
//! default is `$relay_domains`), the common relay set-up on Debian. The queue manager itself
//! records a deferral when both the transport and `retry` are unavailable, and then asks
//! flush(8) to log the queue ID for a fast-flush domain (flush_add).

use crate::lab::{qmgr_name, run, side_by_side_available, tail, wait_for, Lab, C_OQMGR, OURS};

/// A queue manager's line without its time stamp, pid and queue IDs.
fn normalized(line: &str) -> String {
    let text = line.split_once("]: ").map_or(line, |(_, t)| t);
    text.split_whitespace()
        .map(|w| {
            let id = w.trim_end_matches(':');
            if id.len() >= 10
                && id
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_lowercase())
            {
                "ID:".to_string()
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A lab whose default transport is no master.cf service (so it is unavailable) and
/// without retry(8): the queue manager records each deferral itself (defer_append), and
/// asks flush(8) to log it for a fast-flush domain.
fn lab_without_transport(qmgr: &str) -> Lab {
    let lab = Lab::up_as(
        qmgr,
        &[
            "--transport",
            "discard",
            "--dests",
            "2",
            "--set",
            "default_transport=nosuch",
        ],
    );
    lab.tool("postconf", &["-MX", "retry/unix"]);
    lab
}

/// After a reload, one message each to d1.lab and d2.lab, deferred: whether flush(8)'s
/// per-site logfile (dots become underscores) of each holds a queue ID. d2.lab is never a
/// fast-flush domain here, so its logfile is given a second to appear.
fn defer_to_d1_and_d2(lab: &Lab) -> (bool, bool) {
    run(&["reload", &lab.path()]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    run(&["inject", &lab.path(), "2"]);
    let deferred = wait_for(std::time::Duration::from_secs(60), || {
        lab.count("status=deferred (mail transport unavailable)") >= 2
    });
    assert!(deferred, "{}", tail(&lab.maillog()));
    let flush_dir = lab.dir.join("spool/flush");
    let logged = |site: &str| std::fs::read_to_string(flush_dir.join(site)).unwrap_or_default();
    let d1 = wait_for(std::time::Duration::from_secs(20), || {
        !logged("d1_lab").trim().is_empty()
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    (d1, !logged("d2_lab").trim().is_empty())
}

/// The queue manager's first line that contains `needle`, normalized with the lab's path as
/// LAB, once it is there (a panic with the log's tail after `secs` seconds).
fn first_qmgr_line(lab: &Lab, needle: &str, secs: u64) -> String {
    let mut found = None;
    let there = wait_for(std::time::Duration::from_secs(secs), || {
        found = lab.qmgr_lines().into_iter().find(|l| l.contains(needle));
        found.is_some()
    });
    assert!(there, "no {needle:?}\n{}", tail(&lab.maillog()));
    normalized(&found.unwrap_or_default()).replace(&lab.path(), "LAB")
}

/// The queue manager's warning, error and fatal lines: normalized, the lab's path as LAB,
/// sorted, deduplicated.
fn trouble(lab: &Lab) -> Vec<String> {
    let mut lines: Vec<String> = lab
        .qmgr_lines()
        .iter()
        .filter(|l| l.contains("warning:") || l.contains("error:") || l.contains("fatal:"))
        .map(|l| normalized(l).replace(&lab.path(), "LAB"))
        .collect();
    lines.sort();
    lines.dedup();
    lines
}

/// One queue manager's run: mail to d1.lab (in relay_domains, a hash table) and d2.lab (not
/// in it), both deferred by the queue manager itself. Returns whether flush(8)'s logfile for
/// each domain holds the message's queue ID, and the queue manager's warnings (normalized,
/// sorted, deduplicated), then its line when the table is rebuilt (it restarts).
fn deferral_with_relay_domains_in_a_hash_table(qmgr: &str) -> (bool, bool, Vec<String>, String) {
    let lab = lab_without_transport(qmgr);
    let table = lab.dir.join("etc/relay_domains");
    std::fs::write(&table, "d1.lab OK\n").expect("write table");
    let hash = format!("hash:{}", table.display());
    lab.tool("postmap", &[&hash]);
    // dict_changed_name compares mtimes in whole seconds: date this version back.
    let status = std::process::Command::new("touch")
        .args(["-d", "-1 minute"])
        .arg(table.with_extension("db"))
        .status()
        .expect("touch");
    assert!(status.success(), "touch the table back");
    lab.tool("postconf", &["-e", &format!("relay_domains={hash}")]);
    let (d1, d2) = defer_to_d1_and_d2(&lab);
    let warnings = trouble(&lab);
    // A rebuilt table restarts the queue manager at its next trigger.
    lab.tool("postmap", &[&hash]);
    run(&["kick", &lab.path()]);
    let restart = first_qmgr_line(&lab, "has changed -- restarting", 20);
    println!(
        "figures: qmgr={} flush_d1={} flush_d2={} qmgr_warnings={warnings:?} restart={restart:?}",
        qmgr_name(qmgr),
        d1,
        d2
    );
    (d1, d2, warnings, restart)
}

#[test]
fn flush_add_for_a_relay_domains_hash_table_as_by_the_c_oqmgr() {
    if !side_by_side_available() {
        return;
    }
    let (theirs, mine) = std::thread::scope(|s| {
        let theirs = s.spawn(|| deferral_with_relay_domains_in_a_hash_table(C_OQMGR));
        let mine = s.spawn(|| deferral_with_relay_domains_in_a_hash_table(OURS));
        (theirs.join().unwrap(), mine.join().unwrap())
    });
    assert!(theirs.0 && !theirs.1, "C oqmgr: {theirs:?}");
    assert!(
        !theirs.2.iter().any(|w| w.contains("table lookup problem")),
        "{theirs:?}"
    );
    assert_eq!(mine, theirs);
}

/// One queue manager's run with `relay_domains = proxy:<kind>:<file>` listing d1.lab (a hash
/// table, or a regexp one: a pattern table, asked the whole name only): mail to d1.lab and
/// d2.lab, deferred by the queue manager itself, the table looked up through proxymap(8).
/// Returns whether flush(8)'s logfile for each domain holds the queue ID, and the queue
/// manager's warnings (normalized, sorted, deduplicated).
fn deferral_with_relay_domains_through_proxymap(
    qmgr: &str,
    kind: &str,
) -> (bool, bool, Vec<String>) {
    let lab = lab_without_transport(qmgr);
    let table = lab.dir.join("etc/relay_domains");
    let contents = if kind == "regexp" {
        "/^d1\\.lab$/ OK\n"
    } else {
        "d1.lab OK\n"
    };
    std::fs::write(&table, contents).expect("write table");
    let spec = format!("{kind}:{}", table.display());
    if kind == "hash" {
        lab.tool("postmap", &[&spec]);
    }
    // proxy_read_maps names $relay_domains by default: proxymap serves the table.
    lab.tool("postconf", &["-e", &format!("relay_domains=proxy:{spec}")]);
    let (d1, d2) = defer_to_d1_and_d2(&lab);
    let warnings = trouble(&lab);
    println!(
        "figures: qmgr={} table=proxy:{kind} flush_d1={d1} flush_d2={d2} qmgr_warnings={warnings:?}",
        qmgr_name(qmgr),
    );
    (d1, d2, warnings)
}

fn side_by_side_through_proxymap(kind: &str) {
    if !side_by_side_available() {
        return;
    }
    let (theirs, mine) = std::thread::scope(|s| {
        let theirs = s.spawn(|| deferral_with_relay_domains_through_proxymap(C_OQMGR, kind));
        let mine = s.spawn(|| deferral_with_relay_domains_through_proxymap(OURS, kind));
        (theirs.join().unwrap(), mine.join().unwrap())
    });
    // The transports are missing on purpose; nothing about the table is warned about.
    assert!(theirs.0 && !theirs.1, "C oqmgr: {theirs:?}");
    assert!(
        !theirs
            .2
            .iter()
            .any(|w| w.contains("table lookup problem") || w.contains("proxymap")),
        "C oqmgr: {theirs:?}"
    );
    assert_eq!(mine, theirs);
}

#[test]
fn flush_add_for_a_relay_domains_proxy_hash_table_as_by_the_c_oqmgr() {
    side_by_side_through_proxymap("hash");
}

#[test]
fn flush_add_for_a_relay_domains_proxy_regexp_table_as_by_the_c_oqmgr() {
    side_by_side_through_proxymap("regexp");
}

/// One queue manager started with `fast_flush_domains = proxy:hash:...`, a table that
/// proxy_read_maps does not name: proxymap refuses it. Returns the queue manager's first
/// fatal line (normalized).
fn start_with_an_unapproved_proxy_table(qmgr: &str) -> String {
    let lab = Lab::up_as(qmgr, &["--transport", "discard", "--dests", "1"]);
    let table = lab.dir.join("etc/flush_domains");
    std::fs::write(&table, "d1.lab OK\n").expect("write table");
    let spec = format!("hash:{}", table.display());
    lab.tool("postmap", &[&spec]);
    lab.tool(
        "postconf",
        &["-e", &format!("fast_flush_domains=proxy:{spec}")],
    );
    run(&["reload", &lab.path()]);
    let line = first_qmgr_line(&lab, "fatal:", 30);
    println!(
        "figures: qmgr={} unapproved_fatal={line:?}",
        qmgr_name(qmgr)
    );
    line
}

#[test]
fn a_proxy_table_that_proxymap_does_not_serve_is_fatal_as_for_the_c_oqmgr() {
    if !side_by_side_available() {
        return;
    }
    let (theirs, mine) = std::thread::scope(|s| {
        let theirs = s.spawn(|| start_with_an_unapproved_proxy_table(C_OQMGR));
        let mine = s.spawn(|| start_with_an_unapproved_proxy_table(OURS));
        (theirs.join().unwrap(), mine.join().unwrap())
    });
    assert!(
        theirs.contains("proxymap service is not configured for table"),
        "{theirs}"
    );
    assert_eq!(mine, theirs);
}

/// One queue manager started with `fast_flush_domains = proxy:hash:...` (approved in
/// proxy_read_maps; relay_domains stays empty, so that trivial-rewrite and smtpd need no
/// proxymap) while proxymap(8) is not in master.cf (its socket refuses connections), with
/// two messages (d1.lab, d2.lab) waiting in incoming/, watched for 30 s. Returns how many recipients it
/// deferred, and its warning and fatal lines (normalized, sorted, deduplicated).
fn deferral_without_proxymap(qmgr: &str) -> (usize, Vec<String>) {
    let lab = lab_without_transport(qmgr);
    let table = lab.dir.join("etc/flush_domains");
    std::fs::write(&table, "d1.lab OK\n").expect("write table");
    let spec = format!("hash:{}", table.display());
    lab.tool("postmap", &[&spec]);
    lab.tool(
        "postconf",
        &["-e", &format!("fast_flush_domains=proxy:{spec}")],
    );
    lab.tool(
        "postconf",
        &["-e", &format!("proxy_read_maps=proxy:{spec}")],
    );
    // smtpd opens fast_flush_domains too (ETRN): the mail goes in while proxymap is there
    // and the queue manager is not, then proxymap goes and the queue manager comes.
    run(&["pause", &lab.path()]);
    run(&["inject", &lab.path(), "2"]);
    run(&["wait-incoming", &lab.path(), "2", "--timeout", "60"]);
    lab.tool("postconf", &["-MX", "proxymap/unix"]);
    run(&["release", &lab.path()]);
    std::thread::sleep(std::time::Duration::from_secs(30));
    let deferred = lab.count("status=deferred (mail transport unavailable)");
    let warnings = trouble(&lab);
    println!(
        "figures: qmgr={} proxymap=absent deferred_in_30s={deferred} qmgr_warnings={warnings:?}",
        qmgr_name(qmgr),
    );
    (deferred, warnings)
}

/// Where C's client waits for proxymap (ten connects ten seconds apart at start-up, then a
/// fatal exit, over and over), ours warns twice, runs, and fails the lookups.
#[test]
fn without_proxymap_ours_runs_where_the_c_oqmgr_waits() {
    if !side_by_side_available() {
        return;
    }
    let (theirs, mine) = std::thread::scope(|s| {
        let theirs = s.spawn(|| deferral_without_proxymap(C_OQMGR));
        let mine = s.spawn(|| deferral_without_proxymap(OURS));
        (theirs.join().unwrap(), mine.join().unwrap())
    });
    let refused = "warning: connect #1 to subsystem private/proxymap: Connection refused";
    assert_eq!(theirs.0, 0, "C oqmgr: {theirs:?}");
    assert!(theirs.1.iter().any(|w| w == refused), "C oqmgr: {theirs:?}");
    assert_eq!(mine.0, 2, "ours: {mine:?}");
    assert!(mine.1.iter().any(|w| w == refused), "ours: {mine:?}");
    assert!(
        mine.1.iter().any(|w| {
            w
            == "warning: fast_flush_domains: proxy:hash:LAB/etc/flush_domains: table lookup problem"
        }),
        "ours: {mine:?}"
    );
    assert!(
        !mine.1.iter().any(|w| w.contains("fatal:")),
        "ours: {mine:?}"
    );
}
