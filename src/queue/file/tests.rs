use super::*;
use crate::queue::path::{CORRUPT, DEFERRED};
use std::os::unix::fs::{symlink, MetadataExt};

fn id(s: &str) -> QueueId {
    QueueId::parse(s.as_bytes()).unwrap()
}

fn queue_dir() -> (tempfile::TempDir, QueueDir) {
    let tmp = tempfile::tempdir().unwrap();
    for q in [INCOMING, ACTIVE, DEFERRED, CORRUPT, BOUNCE, DEFER] {
        fs::create_dir(tmp.path().join(q)).unwrap();
    }
    let dir = QueueDir::new(tmp.path(), QueuePaths::default());
    (tmp, dir)
}

fn write_mode(path: &Path, mode: u32) {
    fs::write(path, b"queue file").unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn daemon_root_keeps_paths_relative() {
    let dir = QueueDir::new("", QueuePaths::default());
    let qid = id("3F2A11C2B3");
    assert_eq!(
        dir.full(&dir.path(DEFERRED, &qid)),
        PathBuf::from("deferred/3/3F2A11C2B3")
    );
    assert_eq!(dir.scan(INCOMING).queue(), INCOMING);
}

#[test]
fn not_yet_due_allows_one_second_and_scan_all() {
    assert!(!not_yet_due(101, 100, 0));
    assert!(not_yet_due(102, 100, 0));
    assert!(!not_yet_due(102, 100, SCAN_ALL));
    assert!(!not_yet_due(i64::MAX, i64::MAX, 0));
}

#[test]
fn open_ok_rejects_bad_ids_silently() {
    let (_tmp, dir) = queue_dir();
    assert!(matches!(dir.open_ok(INCOMING, b"a.b", 0), OpenCheck::BadId));
    assert!(matches!(
        dir.open_ok(INCOMING, b"ABCDEF", 0),
        OpenCheck::Missing
    ));
    assert_eq!(dir.open_ok(INCOMING, b"ABCDEF", 0).warning(), None);
}

#[test]
fn hard_links_warn_only_when_old() {
    let (tmp, dir) = queue_dir();
    let file = tmp.path().join("incoming/ABCDEF");
    write_mode(&file, 0o700);
    fs::hard_link(&file, tmp.path().join("incoming/LINKED")).unwrap();
    let fresh = dir.open_ok(INCOMING, b"ABCDEF", 0).ready().unwrap();
    let ctime = fresh.ctime;
    let recent = dir
        .open_ok(INCOMING, b"ABCDEF", ctime + 60)
        .ready()
        .unwrap();
    assert_eq!(recent.link_warning(), None);
    let old = dir.open_ok(INCOMING, b"ABCDEF", ctime + 61);
    assert_eq!(
        old.warning().unwrap(),
        "incoming/ABCDEF: uid ".to_string() + &fresh.uid.to_string() + ": file has 2 links"
    );
}

#[test]
fn clear_unthrottle_keeps_force_expire() {
    let (tmp, dir) = queue_dir();
    let path = tmp.path().join("active/ABCDEF");
    write_mode(&path, 0o750);
    let ready = dir.open_ok(ACTIVE, b"ABCDEF", 0).ready().unwrap();
    assert!(ready.unthrottle() && ready.force_expire());
    let file = dir.open_locked(ACTIVE, &ready.id).unwrap();
    assert!(clear_unthrottle(&file, ready.mode, &ready.path).unwrap());
    let mode = fs::metadata(&path).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o710);
    assert!(!clear_unthrottle(&file, 0o100710, &ready.path).unwrap());
}

#[test]
fn bounce_log_empty_is_removed_non_empty_is_kept() {
    let (tmp, dir) = queue_dir();
    let qid = id("ABCDEF");
    assert_eq!(dir.check_bounce_log(&qid).unwrap(), BounceLog::Absent);
    fs::write(tmp.path().join("bounce/ABCDEF"), b"").unwrap();
    assert_eq!(dir.check_bounce_log(&qid).unwrap(), BounceLog::RemovedEmpty);
    assert!(!tmp.path().join("bounce/ABCDEF").exists());
    fs::write(tmp.path().join("bounce/ABCDEF"), b"recipient=x\n").unwrap();
    assert_eq!(dir.check_bounce_log(&qid).unwrap(), BounceLog::NonEmpty(12));
}

#[test]
fn defer_log_is_hashed_and_its_absence_is_normal() {
    let (tmp, dir) = queue_dir();
    let qid = id("3F2A11C2B3");
    assert_eq!(dir.remove_defer_log(&qid).unwrap(), Removed::NotFound);
    fs::create_dir(tmp.path().join("defer/3")).unwrap();
    fs::write(tmp.path().join("defer/3/3F2A11C2B3"), b"x").unwrap();
    assert_eq!(dir.log_size(DEFER, &qid), Some(1));
    assert_eq!(dir.remove_defer_log(&qid).unwrap(), Removed::Removed);
    assert_eq!(dir.log_size(DEFER, &qid), None);
}

#[test]
fn remove_reports_other_errors_with_the_path() {
    let (tmp, dir) = queue_dir();
    // A directory where the file should be: unlink fails with EISDIR.
    fs::create_dir(tmp.path().join("active/ABCDEF")).unwrap();
    let err = dir.remove(ACTIVE, &id("ABCDEF")).unwrap_err();
    assert!(!err.is_not_found());
    assert!(err.to_string().starts_with("remove active/ABCDEF: "));
}

#[test]
fn set_time_sets_both_times_and_reports_missing_files() {
    let (tmp, dir) = queue_dir();
    write_mode(&tmp.path().join("active/ABCDEF"), 0o700);
    dir.set_time(ACTIVE, &id("ABCDEF"), 1_000_000_060).unwrap();
    let meta = fs::metadata(tmp.path().join("active/ABCDEF")).unwrap();
    assert_eq!((meta.atime(), meta.mtime()), (1_000_000_060, 1_000_000_060));
    assert_eq!((meta.atime_nsec(), meta.mtime_nsec()), (0, 0));
    let err = dir.set_time(ACTIVE, &id("GONE12"), 1).unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        "update active/GONE12 time stamps: No such file or directory"
    );
}

#[test]
fn rename_of_a_missing_source_is_enoent() {
    let (_tmp, dir) = queue_dir();
    let err = dir.rename(&id("ABCDEF"), ACTIVE, CORRUPT).unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        "rename ABCDEF from active to corrupt: No such file or directory"
    );
}

#[test]
fn rename_with_a_file_in_the_way_of_a_directory_is_enotdir() {
    let (tmp, dir) = queue_dir();
    write_mode(&tmp.path().join("active/3F2A11C2B3"), 0o700);
    fs::write(tmp.path().join("deferred/3"), b"").unwrap();
    let err = dir.rename(&id("3F2A11C2B3"), ACTIVE, DEFERRED).unwrap_err();
    assert_eq!(err.source.raw_os_error(), Some(libc::ENOTDIR));
    assert!(!err.is_not_found());
    assert!(tmp.path().join("active/3F2A11C2B3").exists());
}

#[test]
fn symlink_is_not_regular() {
    let (tmp, dir) = queue_dir();
    symlink("/etc/passwd", tmp.path().join("incoming/LINK12")).unwrap();
    let check = dir.open_ok(INCOMING, b"LINK12", 0);
    assert!(matches!(check, OpenCheck::NotRegular { .. }));
}

/// A queue file outside the queue that a symlink in `queue` points at (as if swapped in after
/// the open check): its path and the time stamps and content it must keep.
fn outside_target(tmp: &tempfile::TempDir, queue: &str, name: &str) -> (PathBuf, i64, Vec<u8>) {
    let outside = tmp.path().join("outside");
    write_mode(&outside, 0o700);
    let past = TimeSpec::new(1_000_000_000, 0);
    utimensat(
        AT_FDCWD,
        &outside,
        &past,
        &past,
        UtimensatFlags::FollowSymlink,
    )
    .unwrap();
    symlink(&outside, tmp.path().join(queue).join(name)).unwrap();
    (outside, 1_000_000_000, b"queue file".to_vec())
}

#[test]
fn opens_never_follow_a_symlink_out_of_the_queue() {
    let (tmp, dir) = queue_dir();
    let (outside, mtime, content) = outside_target(&tmp, ACTIVE, "SWAPPED1");
    match dir.open_locked(ACTIVE, &id("SWAPPED1")) {
        Err(LockError::Open(e)) => {
            assert_eq!(e.source.raw_os_error(), Some(libc::ELOOP));
            assert!(!e.is_not_found(), "fatal, as any open error but ENOENT");
        }
        other => panic!("opened through a symlink: {other:?}"),
    }
    let patch = Patch {
        offset: 0,
        bytes: b"X".to_vec(),
    };
    let err = dir
        .apply_patch(ACTIVE, &id("SWAPPED1"), &patch)
        .unwrap_err();
    assert_eq!(err.source.raw_os_error(), Some(libc::ELOOP));
    assert_eq!(fs::read(&outside).unwrap(), content);
    assert_eq!(fs::metadata(&outside).unwrap().mtime(), mtime);
}

#[test]
fn start_up_recovery_dates_a_symlink_not_its_target() {
    let (tmp, dir) = queue_dir();
    let (outside, mtime, content) = outside_target(&tmp, ACTIVE, "SWAPPED2");
    let moved = dir.recover_active(2_000_000_000, &mut |_| {}).unwrap();
    assert_eq!(moved, 1);
    let link = tmp.path().join("incoming/SWAPPED2");
    let meta = fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_symlink());
    assert_eq!(meta.mtime(), 2_000_000_000, "the link's own time stamps");
    assert_eq!(fs::metadata(&outside).unwrap().mtime(), mtime);
    assert_eq!(fs::metadata(&outside).unwrap().atime(), mtime);
    assert_eq!(fs::read(&outside).unwrap(), content);
}
