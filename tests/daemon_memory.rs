//! oqmgr_remember_destinations in the fake Postfix world: what one queue manager learned about
//! a dead destination is kept in `$data_directory/oqmgr-memory` when master lets it go, and the
//! next one parks new mail for it behind retry without trying it.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::agent::Behaviour;
use common::world::World;

const T: Duration = Duration::from_secs(10);
const REFUSED: &str = "connect to d1.lab[127.0.0.1]:25: Connection refused";

/// A world whose smtp agent reports d1.lab refused, with its own data_directory.
fn world(remember: &str) -> (World, PathBuf) {
    let mut w = World::with_params(&[
        ("smtp_initial_destination_concurrency", "1"),
        ("oqmgr_remember_destinations", remember),
    ]);
    let data = w.dir.root().join("data");
    std::fs::create_dir(&data).unwrap();
    w.dir
        .set_param("data_directory", &data.display().to_string());
    w.add_agent("smtp", Behaviour::defer("4.4.1", REFUSED));
    w.add_agent("retry", Behaviour::DeferPerRecipient);
    (w, data)
}

/// master lets the daemon go (reload): it exits 0.
fn reload(w: &World) {
    w.master().reload();
    let status = w.master().wait_exit(T);
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        w.diagnostics()
    );
}

/// The first daemon finds d1.lab dead and is reloaded.
fn kill_d1_and_reload(w: &mut World) {
    let a = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_in(&a, Some("deferred"));
    assert_eq!(w.agent("smtp").requests().len(), 1, "{}", w.diagnostics());
    reload(w);
}

#[test]
fn a_dead_destination_stays_dead_across_a_reload() {
    let (mut w, data) = world("yes");
    kill_d1_and_reload(&mut w);
    assert!(data.join("oqmgr-memory").is_file(), "{}", w.diagnostics());
    assert!(!data.join("oqmgr-memory.tmp").exists());
    let b = w.drop_message("sender@src.lab", &["b@d1.lab"]);
    w.start();
    w.expect_in(&b, Some("deferred"));
    assert_eq!(
        w.agent("smtp").requests().len(),
        1,
        "no new attempt\n{}",
        w.diagnostics()
    );
    let retry = w.agent("retry").requests();
    assert_eq!(retry.len(), 1, "{}", w.diagnostics());
    assert_eq!(
        String::from_utf8_lossy(&retry[0].nexthop),
        format!("4.4.1 delivery temporarily suspended: {REFUSED}")
    );
    assert!(
        w.postlog.matching("warning:").is_empty(),
        "{}",
        w.diagnostics()
    );
}

#[test]
fn without_the_parameter_nothing_is_written_and_the_destination_is_tried_again() {
    let (mut w, data) = world("no");
    kill_d1_and_reload(&mut w);
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "no file");
    let b = w.drop_message("sender@src.lab", &["b@d1.lab"]);
    w.start();
    w.expect_in(&b, Some("deferred"));
    assert_eq!(w.agent("smtp").requests().len(), 2, "{}", w.diagnostics());
}

#[test]
fn a_garbage_file_is_one_warning_and_mail_flows() {
    let (mut w, data) = world("yes");
    std::fs::write(data.join("oqmgr-memory"), b"kind\0header\0this is not it").unwrap();
    w.add_agent("smtp", Behaviour::Ok);
    let a = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(&format!("{a}: removed"), T);
    let warnings = w.postlog.matching("ignoring remembered destinations");
    assert_eq!(warnings.len(), 1, "{}", w.diagnostics());
    let path = data.join("oqmgr-memory");
    assert!(
        warnings[0].contains(&format!(
            "warning: {}: ignoring remembered destinations: ",
            path.display()
        )),
        "{}",
        warnings[0]
    );
    // The next exit replaces it with a good one.
    reload(&w);
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"kind\0header\0format\0oqmgr-memory\0"));
}
