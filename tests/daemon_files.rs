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
