//! The daemon's queue-file handling in the fake Postfix world: recipient batches read from a
//! large message, files that cannot be opened or read, and dont_remove.

mod common;

use std::fs;
use std::time::Duration;

use common::agent::Behaviour;
use common::world::World;

const T: Duration = Duration::from_secs(10);

/// File names in `saved/`, sorted.
fn saved(w: &World) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(w.dir.queue_dir().join("saved"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn dont_remove_keeps_delivered_mail_in_saved() {
    let mut w = World::with_params(&[("dont_remove", "1")]);
    w.add_agent("smtp", Behaviour::Ok);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    let original = fs::read(w.dir.path_of("incoming", &id)).unwrap();
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    assert_eq!(saved(&w), vec![id.clone()], "{}", w.diagnostics());
    assert!(w.dir.list("active").is_empty());
    // The file as delivered: the recipient is marked done, the rest is the original.
    let kept = fs::read(w.dir.queue_dir().join("saved").join(&id)).unwrap();
    assert_eq!(kept.len(), original.len());
}

#[test]
fn dont_remove_saves_the_defer_log_and_the_file_with_a_plus_when_the_name_is_taken() {
    let mut w = World::with_params(&[("dont_remove", "1")]);
    w.add_agent("smtp", Behaviour::Ok);
    // Deferred mail whose retry now succeeds: its defer log goes first (when the message is
    // taken in), then the queue file, which finds its name taken.
    let (id, _) = w
        .dir
        .message(b"sender@src.lab", &[b"a@d1.lab"])
        .queue("deferred")
        .write();
    let defer_log = w.dir.path_of("defer", &id);
    fs::create_dir_all(defer_log.parent().unwrap()).unwrap();
    fs::write(&defer_log, b"recipient=a@d1.lab\n").unwrap();
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    assert_eq!(
        saved(&w),
        [id.clone(), format!("{id}+")],
        "{}",
        w.diagnostics()
    );
    assert_eq!(
        fs::read(w.dir.queue_dir().join("saved").join(&id)).unwrap(),
        b"recipient=a@d1.lab\n"
    );
    assert!(!defer_log.exists());
    assert!(w.dir.list("deferred").is_empty());
}

#[test]
fn without_dont_remove_delivered_mail_is_unlinked() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    assert!(saved(&w).is_empty());
    assert_eq!(w.dir.queue_of(&id), None);
}

/// Writes `D` over the recipients of `request` in the file at `path`, as an agent does.
fn mark_done(path: &std::path::Path, request: &oqmgr::proto::deliver::DeliveryRequest) {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    for rcpt in &request.recipients {
        let patch = oqmgr::queue::record::Patch::mark_recipient_done(rcpt.offset);
        file.write_all_at(&patch.bytes, patch.offset).unwrap();
    }
}

#[test]
fn a_later_batch_that_cannot_be_opened_is_fatal_and_the_mail_is_delivered_after_a_restart() {
    // Two recipients per batch: the third is read when the first two are done.
    let mut w = World::with_params(&[
        ("qmgr_message_active_limit", "2"),
        ("qmgr_message_recipient_limit", "2"),
    ]);
    w.add_agent("smtp", Behaviour::Ok);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab", "b@d1.lab", "c@d1.lab"]);
    let active = w.dir.path_of("active", &id);
    let aside = w.dir.root().join("aside");
    // While the first batch is delivered, the file becomes impossible to open (a directory
    // in its place: EISDIR, standing in for EMFILE, ENFILE or EIO, which root cannot provoke).
    let (path, moved) = (active.clone(), aside.clone());
    w.agent("smtp").set_mark_done(false);
    w.agent("smtp").set_policy(move |req| {
        if req.recipients.iter().any(|r| r.address() == b"a@d1.lab") {
            mark_done(&path, req);
            fs::rename(&path, &moved).unwrap();
            fs::create_dir(&path).unwrap();
        }
        Behaviour::Ok
    });
    w.start();
    w.expect_log(&format!("fatal: open active {id}: Is a directory"), T);
    let status = w.master().wait_exit(T).expect("exit after the fatal error");
    assert_eq!(status.code(), Some(1));
    // Nothing went to corrupt/: whatever is in active/ stays there.
    assert!(w.dir.list("corrupt").is_empty(), "{}", w.diagnostics());
    assert!(active.is_dir());
    // The cause goes away; the next queue manager takes the mail up again and finishes it.
    fs::remove_dir(&active).unwrap();
    fs::rename(&aside, &active).unwrap();
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    let last = w.agent("smtp").requests().pop().unwrap();
    let rest: Vec<&[u8]> = last.recipients.iter().map(|r| r.address()).collect();
    assert_eq!(rest, [b"c@d1.lab".as_slice()]);
    assert!(w.dir.list("corrupt").is_empty());
}

#[test]
fn a_later_batch_with_bad_records_moves_the_file_to_corrupt() {
    let mut w = World::with_params(&[
        ("qmgr_message_active_limit", "2"),
        ("qmgr_message_recipient_limit", "2"),
    ]);
    w.add_agent("smtp", Behaviour::Ok);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab", "b@d1.lab", "c@d1.lab"]);
    let active = w.dir.path_of("active", &id);
    // While the first batch is delivered, the file loses everything after it.
    let path = active.clone();
    w.agent("smtp").set_mark_done(false);
    w.agent("smtp").set_policy(move |req| {
        if req.recipients.iter().any(|r| r.address() == b"a@d1.lab") {
            mark_done(&path, req);
            let end = req.recipients.iter().map(|r| r.offset).max().unwrap();
            let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(end + 12).unwrap();
        }
        Behaviour::Ok
    });
    w.start();
    w.expect_log(
        &format!("warning: {id}: message rejected: missing end record"),
        T,
    );
    w.expect_log(
        &format!(
            "warning: saving corrupt file \"{id}\" from queue \"active\" to queue \"corrupt\""
        ),
        T,
    );
    assert_eq!(w.dir.queue_of(&id).as_deref(), Some("corrupt"));
    assert!(w.master().is_running());
}

#[test]
fn a_large_list_with_bounces_in_two_batches_gets_one_bounce_notice() {
    // 150 recipients in memory; the next batch is read once fewer than 50 are left.
    let mut w = World::with_params(&[
        ("qmgr_message_active_limit", "150"),
        ("qmgr_message_recipient_limit", "150"),
    ]);
    w.add_agent("smtp", Behaviour::Ok);
    let rcpts: Vec<String> = (0..200).map(|i| format!("r{i:03}@d1.lab")).collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let id = w.drop_message("list@src.lab", &refs);
    // One recipient of the first batch and one of the second bounce: the agent writes the
    // bounce log, as real agents do through bounce(8).
    let bounce_log = w.dir.path_of("bounce", &id);
    w.agent("smtp").set_policy(move |req| {
        for r in &req.recipients {
            if r.address() == b"r000@d1.lab" || r.address() == b"r199@d1.lab" {
                use std::io::Write;
                let mut log = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&bounce_log)
                    .unwrap();
                writeln!(log, "recipient={}", String::from_utf8_lossy(r.address())).unwrap();
            }
        }
        Behaviour::Ok
    });
    w.start();
    w.expect_log(&format!("{id}: removed"), T);
    let handed: usize = w
        .agent("smtp")
        .requests()
        .iter()
        .map(|r| r.recipients.len())
        .sum();
    assert_eq!(handed, 200);
    // As the C daemon: the second batch is read when the first one's last entry is done, so
    // the completion (and its bounce flush) runs once, after the whole list.
    let flushes: Vec<String> = w.bounce.requests().iter().map(|r| r.queue_id()).collect();
    assert_eq!(flushes, vec![id.clone()], "{}", w.diagnostics());
}

/// The envelope reader's warnings name the file as the C daemon opened it: with active/ among
/// hash_queue_names, by its hashed path.
#[test]
fn reader_warnings_name_a_hashed_active_file_by_its_hashed_path() {
    let mut w = World::with_params(&[("hash_queue_names", "active, deferred, defer")]);
    w.add_agent("smtp", Behaviour::Ok);
    let (id, _) = w
        .dir
        .message(b"x", &[])
        .raw(b"this is not a queue file")
        .write();
    w.start();
    w.expect_log(&format!("saving corrupt file \"{id}\""), T);
    let hashed = w
        .dir
        .path_of("active", &id)
        .strip_prefix(w.dir.queue_dir())
        .expect("inside the queue directory")
        .to_string_lossy()
        .into_owned();
    assert_ne!(hashed, format!("active/{id}"), "active/ is hashed here");
    let named: Vec<String> = w
        .postlog
        .matching(&id)
        .into_iter()
        .filter(|l| l.contains("active/"))
        .collect();
    assert!(!named.is_empty(), "{}", w.diagnostics());
    assert!(
        named.iter().all(|l| l.contains(&format!("{hashed}:"))),
        "{named:#?}"
    );
}

/// At completion, deferred mail's file is checked as the C daemon's mail_open_ok does, with
/// its warning: a file that is no longer a regular file is saved in corrupt/.
#[test]
fn a_deferred_file_that_is_no_longer_regular_is_warned_about_and_saved_in_corrupt() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::DeferPerRecipient);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab"]);
    let active = w.dir.path_of("active", &id);
    let aside = w.dir.root().join("aside");
    w.agent("smtp").set_mark_done(false);
    w.agent("smtp").set_policy(move |_| {
        fs::rename(&active, &aside).unwrap();
        nix::unistd::mkfifo(&active, nix::sys::stat::Mode::from_bits_truncate(0o700)).unwrap();
        Behaviour::DeferPerRecipient
    });
    w.start();
    let uid = nix::unistd::geteuid().as_raw();
    w.expect_log(
        &format!("warning: active/{id}: uid {uid}: not a regular file"),
        T,
    );
    w.expect_log(
        &format!(
            "warning: saving corrupt file \"{id}\" from queue \"active\" to queue \"corrupt\""
        ),
        T,
    );
    assert_eq!(w.dir.list("corrupt"), vec![id]);
}
