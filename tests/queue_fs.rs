//! The queue manager's file-system operations against real directories (temporary queue
//! directories; every call takes the root, so tests run in parallel).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use oqmgr::queue::file::{
    BounceLog, LockError, OpenCheck, QueueDir, RecoverNote, RecoverWarning, Removed, Renamed,
};
use oqmgr::queue::id::QueueId;
use oqmgr::queue::path::{QueuePaths, ACTIVE, CORRUPT, DEFERRED, INCOMING};
use oqmgr::queue::record::Patch;
use oqmgr::queue::scan::{QueueScanner, Scan};
use oqmgr::queue::scan_flags::{FLUSH_DFXP, SCAN_ALL, SCAN_START};

fn id(s: &str) -> QueueId {
    QueueId::parse(s.as_bytes()).unwrap()
}

/// A queue directory with the usual top-level queues.
fn queue_dir(paths: QueuePaths) -> (tempfile::TempDir, QueueDir) {
    let tmp = tempfile::tempdir().unwrap();
    for queue in [INCOMING, ACTIVE, DEFERRED, CORRUPT, "bounce", "defer"] {
        fs::create_dir(tmp.path().join(queue)).unwrap();
    }
    let dir = QueueDir::new(tmp.path(), paths);
    (tmp, dir)
}

/// Creates a queue file where the hash settings put it, with the given mode.
fn put(dir: &QueueDir, queue: &str, qid: &QueueId, mode: u32) {
    let path = dir.root.join(dir.path(queue, qid));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"queue file contents").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Short ids whose first hex digits spread over many hash subdirectories.
fn ids(count: u32) -> Vec<QueueId> {
    (0..count)
        .map(|i| QueueId::make(0, (i * 7919) % 1_000_000, u64::from(i) + 1, false).unwrap())
        .collect()
}

fn scan_all_names(root: &Path, queue: &str) -> Vec<Vec<u8>> {
    let mut scanner = QueueScanner::open(root, queue).unwrap();
    let mut names = Vec::new();
    while let Some(name) = scanner.next_name().unwrap() {
        names.push(name);
    }
    names
}

fn assert_found_exactly_once(names: Vec<Vec<u8>>, want: &[QueueId]) {
    let total = names.len();
    let found: BTreeSet<Vec<u8>> = names.into_iter().collect();
    assert_eq!(found.len(), total, "a name came back twice");
    let want: BTreeSet<Vec<u8>> = want.iter().map(|q| q.as_bytes().to_vec()).collect();
    assert_eq!(found, want);
}

#[test]
fn scans_find_every_file_once_in_flat_and_hashed_layouts() {
    for (names, depth) in [("", 1), ("deferred", 1), ("deferred", 2)] {
        let (tmp, dir) = queue_dir(QueuePaths::new(names, depth).unwrap());
        let all = ids(300);
        for qid in &all {
            put(&dir, DEFERRED, qid, 0o700);
        }
        // Hash directories that exist but are empty are entered and left without a trace.
        fs::create_dir_all(tmp.path().join("deferred/_")).unwrap();
        assert_found_exactly_once(scan_all_names(tmp.path(), DEFERRED), &all);
    }
}

#[test]
fn scans_of_mixed_layouts_find_files_at_every_level() {
    // After a hash_queue_depth change files sit at several depths; all are found.
    let (tmp, dir) = queue_dir(QueuePaths::new("deferred", 2).unwrap());
    let deep = id("3F2A11C2B3");
    put(&dir, DEFERRED, &deep, 0o700);
    fs::write(tmp.path().join("deferred/3/3F2A11C2B4"), b"").unwrap();
    fs::write(tmp.path().join("deferred/3F2A11C2B5"), b"").unwrap();
    assert_found_exactly_once(
        scan_all_names(tmp.path(), DEFERRED),
        &[deep, id("3F2A11C2B4"), id("3F2A11C2B5")],
    );
    // But the opener looks only where the current settings say.
    assert!(matches!(
        dir.open_ok(DEFERRED, b"3F2A11C2B4", 0),
        OpenCheck::Missing
    ));
}

#[test]
fn a_long_named_directory_is_a_name_not_a_subtree() {
    let (tmp, dir) = queue_dir(QueuePaths::default());
    fs::create_dir_all(tmp.path().join("incoming/SUBDIR/inner")).unwrap();
    assert_eq!(
        scan_all_names(tmp.path(), INCOMING),
        vec![b"SUBDIR".to_vec()]
    );
    let check = dir.open_ok(INCOMING, b"SUBDIR", 0);
    let uid = fs::metadata(tmp.path()).unwrap().uid();
    assert_eq!(
        check.warning().unwrap(),
        format!("incoming/SUBDIR: uid {uid}: not a regular file")
    );
}

#[test]
fn a_huge_queue_is_streamed() {
    const COUNT: usize = 20_000;
    let tmp = tempfile::tempdir().unwrap();
    let queue = tmp.path().join(INCOMING);
    fs::create_dir(&queue).unwrap();
    for i in 0..COUNT {
        fs::write(queue.join(format!("{:05X}{:X}", i % 0x100000, i + 1)), b"").unwrap();
    }
    // The scanner keeps one directory handle per level and no list of names (see its
    // fields); here it never has more than the queue itself open, and yields all names.
    let mut scanner = QueueScanner::open(tmp.path(), INCOMING).unwrap();
    let mut seen = BTreeSet::new();
    while let Some(name) = scanner.next_name().unwrap() {
        assert!(scanner.open_dirs() <= 1);
        assert!(seen.insert(name));
    }
    assert_eq!(seen.len(), COUNT);
    assert_eq!(scanner.open_dirs(), 0);
}

#[test]
fn start_during_a_scan_restarts_it_and_finds_new_files() {
    let (tmp, dir) = queue_dir(QueuePaths::default());
    let first = ids(5);
    for qid in &first {
        put(&dir, INCOMING, qid, 0o700);
    }
    let mut scan = Scan::new(tmp.path(), INCOMING);
    scan.request(SCAN_START).unwrap();
    assert!(scan.running());

    // Take the first file into active, as the queue manager does.
    let entry = scan.next_entry().unwrap().unwrap();
    let taken = QueueId::parse(&entry.name).unwrap();
    dir.rename(&taken, INCOMING, ACTIVE).unwrap();

    // cleanup delivers two new files and triggers `W` while the scan runs.
    let late = [id("FFFFF1"), id("FFFFF2")];
    for qid in &late {
        put(&dir, INCOMING, qid, 0o700);
    }
    scan.request(SCAN_START | SCAN_ALL).unwrap();
    assert_eq!(scan.flags(), SCAN_ALL, "SCAN_ALL reaches the running scan");

    // Drain: the first pass ends (whether readdir shows the new files in it is unspecified),
    // then the restart, flagged START|ALL, sees everything still in incoming.
    let mut restarted = BTreeSet::new();
    while let Some(entry) = scan.next_entry().unwrap() {
        if entry.flags & SCAN_START != 0 {
            assert_eq!(entry.flags, SCAN_START | SCAN_ALL);
            assert!(restarted.insert(entry.name), "restart found a name twice");
        }
    }
    assert!(!scan.running());
    let mut want: BTreeSet<Vec<u8>> = first
        .iter()
        .chain(&late)
        .map(|qid| qid.as_bytes().to_vec())
        .collect();
    want.remove(taken.as_bytes());
    assert_eq!(restarted, want);
}

#[test]
fn flush_dfxp_reaches_the_running_scan() {
    let (tmp, dir) = queue_dir(QueuePaths::default());
    for qid in ids(3) {
        put(&dir, DEFERRED, &qid, 0o700);
    }
    let mut scan = Scan::new(tmp.path(), DEFERRED);
    scan.request(SCAN_START).unwrap();
    assert_eq!(scan.next_entry().unwrap().unwrap().flags, 0);
    scan.request(FLUSH_DFXP).unwrap();
    assert_eq!(scan.next_entry().unwrap().unwrap().flags, FLUSH_DFXP);
}

#[test]
fn open_ok_by_mode_and_file_type() {
    let (tmp, dir) = queue_dir(QueuePaths::default());
    let uid = fs::metadata(tmp.path()).unwrap().uid();
    let now = 2_000_000_000;

    put(&dir, INCOMING, &id("EMBRYO1"), 0o600);
    assert!(matches!(
        dir.open_ok(INCOMING, b"EMBRYO1", now),
        OpenCheck::NotReady { .. }
    ));

    for (name, mode, unthrottle, expire) in [
        ("READY01", 0o700, false, false),
        ("UNTHRO1", 0o740, true, false),
        ("EXPIRE1", 0o710, false, true),
    ] {
        put(&dir, INCOMING, &id(name), mode);
        let check = dir.open_ok(INCOMING, name.as_bytes(), now);
        assert_eq!(check.warning(), None);
        let ready = check.ready().expect(name);
        assert_eq!(ready.mode & 0o777, mode);
        assert_eq!(ready.unthrottle(), unthrottle, "{name}");
        assert_eq!(ready.force_expire(), expire, "{name}");
        assert_eq!(ready.path, Path::new("incoming").join(name));
    }

    std::os::unix::fs::symlink("READY01", tmp.path().join("incoming/SYMLNK1")).unwrap();
    assert_eq!(
        dir.open_ok(INCOMING, b"SYMLNK1", now).warning().unwrap(),
        format!("incoming/SYMLNK1: uid {uid}: not a regular file")
    );
    fs::create_dir(tmp.path().join("incoming/DIRECT1")).unwrap();
    assert!(matches!(
        dir.open_ok(INCOMING, b"DIRECT1", now),
        OpenCheck::NotRegular { .. }
    ));
}

#[test]
fn future_mtime_waits_unless_scan_all() {
    let (_tmp, dir) = queue_dir(QueuePaths::default());
    let qid = id("ABCDEF1");
    put(&dir, DEFERRED, &qid, 0o700);
    let now = 1_700_000_000;
    dir.set_time(DEFERRED, &qid, now + 3600).unwrap();
    let ready = dir.open_ok(DEFERRED, qid.as_bytes(), now).ready().unwrap();
    assert_eq!(ready.mtime, now + 3600);
    assert!(ready.not_yet_due(now, 0));
    assert!(!ready.not_yet_due(now, SCAN_ALL));
    assert!(!ready.not_yet_due(now + 3599, 0));
}

#[test]
fn rename_into_a_missing_hashed_directory_creates_it() {
    let (tmp, dir) = queue_dir(QueuePaths::new("deferred", 2).unwrap());
    let qid = id("3F2A11C2B3");
    put(&dir, ACTIVE, &qid, 0o700);
    dir.set_time(ACTIVE, &qid, 1_700_000_300).unwrap();
    assert_eq!(dir.rename(&qid, ACTIVE, DEFERRED).unwrap(), Renamed::Done);
    let moved = tmp.path().join("deferred/3/F/3F2A11C2B3");
    let meta = fs::metadata(&moved).unwrap();
    assert_eq!(meta.mtime(), 1_700_000_300);
    for sub in ["deferred/3", "deferred/3/F"] {
        let mode = fs::metadata(tmp.path().join(sub)).unwrap().mode() & 0o777;
        assert_eq!(mode & 0o700, 0o700, "{sub}");
        assert_eq!(mode & 0o077, 0, "{sub}");
    }
    assert!(!tmp.path().join("active/3F2A11C2B3").exists());
    // And back: the flat target directory exists already.
    assert_eq!(dir.rename(&qid, DEFERRED, ACTIVE).unwrap(), Renamed::Done);
}

#[test]
fn flock_conflict_is_locked() {
    let (_tmp, dir) = queue_dir(QueuePaths::default());
    let qid = id("ABCDEF1");
    put(&dir, ACTIVE, &qid, 0o700);
    let holder = dir.open_locked(ACTIVE, &qid).unwrap();
    // A second open file description cannot get the lock.
    let err = dir.open_locked(ACTIVE, &qid).unwrap_err();
    assert!(matches!(err, LockError::Locked { .. }));
    assert_eq!(err.to_string(), "ABCDEF1: skipped, still being delivered");
    drop(holder);
    dir.open_locked(ACTIVE, &qid).unwrap();

    let gone = dir.open_locked(ACTIVE, &id("GONE123")).unwrap_err();
    match gone {
        LockError::Open(err) => {
            assert!(err.is_not_found());
            assert_eq!(
                err.to_string(),
                "open active/GONE123: No such file or directory"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn patch_changes_exactly_its_bytes() {
    let (tmp, dir) = queue_dir(QueuePaths::default());
    let qid = id("ABCDEF1");
    put(&dir, ACTIVE, &qid, 0o700);
    let path = tmp.path().join("active/ABCDEF1");
    let original: Vec<u8> = (0..=255u8).cycle().take(300).collect();
    fs::write(&path, &original).unwrap();
    for patch in [
        Patch::delay_warning_sent(100),
        Patch::mark_recipient_done(7),
        Patch::kill_record(299),
    ] {
        let mut want = fs::read(&path).unwrap();
        patch.apply_to(&mut want);
        dir.apply_patch(ACTIVE, &qid, &patch).unwrap();
        assert_eq!(fs::read(&path).unwrap(), want);
    }
    let got = fs::read(&path).unwrap();
    assert_eq!(got.len(), original.len());
    let changed: Vec<usize> = (0..got.len()).filter(|&i| got[i] != original[i]).collect();
    assert!(changed
        .iter()
        .all(|&i| i == 7 || (100..117).contains(&i) || i == 299));
    assert_eq!(&got[100..117], b"W\x0f             -1");

    let err = dir
        .apply_patch(ACTIVE, &id("GONE123"), &Patch::kill_record(1))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "update queue file active/GONE123: No such file or directory"
    );
}

#[test]
fn unlink_and_bounce_logs() {
    let (tmp, dir) = queue_dir(QueuePaths::default());
    let qid = id("ABCDEF1");
    put(&dir, ACTIVE, &qid, 0o700);
    assert_eq!(dir.remove(ACTIVE, &qid).unwrap(), Removed::Removed);
    assert_eq!(dir.remove(ACTIVE, &qid).unwrap(), Removed::NotFound);
    fs::write(tmp.path().join("bounce/ABCDEF1"), b"").unwrap();
    assert_eq!(dir.check_bounce_log(&qid).unwrap(), BounceLog::RemovedEmpty);
    assert_eq!(dir.check_bounce_log(&qid).unwrap(), BounceLog::Absent);
}

#[test]
fn recover_active_moves_files_and_reports_bad_names() {
    let (tmp, dir) = queue_dir(QueuePaths::default());
    let now = 1_700_000_123;
    let good = [id("AAAAAA1"), id("BBBBBB2"), id("4jcprB36yHz1SRvJ")];
    for qid in &good {
        put(&dir, ACTIVE, qid, 0o700);
    }
    // Embryonic mode does not matter: no mode check at start-up.
    put(&dir, ACTIVE, &id("EMBRYO1"), 0o600);
    fs::write(tmp.path().join("active/bad.name"), b"").unwrap();
    // Found by the recursive scan, but not where the (flat) active path points.
    fs::create_dir(tmp.path().join("active/X")).unwrap();
    fs::write(tmp.path().join("active/X/MISPLACED1"), b"").unwrap();

    let mut notes = Vec::new();
    let moved = dir.recover_active(now, &mut |n| notes.push(n)).unwrap();
    assert_eq!(moved, 4);
    let report: Vec<RecoverWarning> = notes
        .into_iter()
        .filter_map(|n| match n {
            RecoverNote::Warning(w) => Some(w),
            RecoverNote::Renamed(_) => None,
        })
        .collect();
    let mut warnings: Vec<String> = report.iter().map(|w| w.to_string()).collect();
    warnings.sort();
    assert_eq!(
        warnings,
        [
            "qmgr_move: ignored: queue active id bad.name",
            "qmgr_move: update active/MISPLACED1 time stamps: No such file or directory",
        ]
    );
    assert!(report
        .iter()
        .any(|w| matches!(w, RecoverWarning::BadId(name) if name == b"bad.name")));

    for qid in good.iter().chain([&id("EMBRYO1")]) {
        let meta = fs::metadata(tmp.path().join("incoming").join(qid.as_str())).unwrap();
        assert_eq!((meta.atime(), meta.mtime()), (now, now), "{qid}");
    }
    let left: BTreeSet<Vec<u8>> = scan_all_names(tmp.path(), ACTIVE).into_iter().collect();
    let want: BTreeSet<Vec<u8>> = [b"bad.name".to_vec(), b"MISPLACED1".to_vec()].into();
    assert_eq!(left, want);
}

#[test]
fn recover_active_without_active_is_a_scan_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = QueueDir::new(tmp.path(), QueuePaths::default());
    let err = dir.recover_active(1, &mut |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "scan_dir_push: open directory active: No such file or directory"
    );
}

#[test]
fn dont_remove_saves_every_removed_file_under_its_name_with_plus_when_taken() {
    // Hashed defer/ (the default): saved/ is flat, named by the last path component.
    let paths = QueuePaths::new(b"deferred, defer", 1).unwrap();
    let (tmp, dir) = queue_dir(paths);
    let dir = dir.with_dont_remove(true);
    fs::create_dir(tmp.path().join("saved")).unwrap();
    let qid = id("4F2D81C0A3");
    // The defer log dropped when the message is taken in.
    put(&dir, "defer", &qid, 0o600);
    assert_eq!(dir.remove_defer_log(&qid).unwrap(), Removed::Removed);
    // The empty bounce log at the end of delivery.
    fs::write(tmp.path().join("bounce").join(qid.as_str()), b"").unwrap();
    assert_eq!(dir.check_bounce_log(&qid).unwrap(), BounceLog::RemovedEmpty);
    // The delivered queue file.
    put(&dir, ACTIVE, &qid, 0o700);
    assert_eq!(dir.remove(ACTIVE, &qid).unwrap(), Removed::Removed);
    assert_eq!(dir.remove(ACTIVE, &qid).unwrap(), Removed::NotFound);

    let mut saved: Vec<String> = fs::read_dir(tmp.path().join("saved"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    saved.sort();
    assert_eq!(saved, ["4F2D81C0A3", "4F2D81C0A3+", "4F2D81C0A3++"]);
    assert_eq!(
        fs::read(tmp.path().join("saved/4F2D81C0A3++")).unwrap(),
        b"queue file contents"
    );
    assert!(!tmp.path().join(dir.path(ACTIVE, &qid)).exists());
    assert!(!tmp.path().join(dir.path("defer", &qid)).exists());
}

#[test]
fn dont_remove_without_a_saved_directory_leaves_the_file_as_postfix_does() {
    let (tmp, dir) = queue_dir(QueuePaths::default());
    let dir = dir.with_dont_remove(true);
    let qid = id("4F2D81C0A3");
    put(&dir, ACTIVE, &qid, 0o700);
    // rename() into a missing saved/ fails with ENOENT, which callers take as "gone".
    assert_eq!(dir.remove(ACTIVE, &qid).unwrap(), Removed::NotFound);
    assert!(tmp.path().join(dir.path(ACTIVE, &qid)).exists());
}
