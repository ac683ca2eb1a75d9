//! Queue ids and hashed queue paths as an administrator sees them in the spool.
//!
//! The fixed ids and paths below were checked against Postfix 3.7.11 on Debian 12: sendmail made
//! the ids in a private instance, and `postsuper -d <id> deferred` found the files at exactly
//! these paths (hash_queue_names = `DeFerred ,defer`, depths 2 and 6).

use std::path::PathBuf;

use oqmgr::queue::id::{queue_id_ok, IdFields, IdForm, QueueId, QueueIdError};
use oqmgr::queue::path::{
    queue_name_ok, QueuePaths, ACTIVE, BOUNCE, CORRUPT, DEFER, DEFERRED, FLUSH, HOLD, INCOMING,
    TRACE,
};
use proptest::prelude::*;

const REAL_LONG: &str = "4jcprB36yHz1SRvJ";
const REAL_SHORT: &str = "8D59998C1CB";

fn id(s: &str) -> QueueId {
    QueueId::parse(s.as_bytes()).expect("valid queue id")
}

fn paths(names: &str, depth: i64) -> QueuePaths {
    QueuePaths::new(names, depth).expect("valid hash settings")
}

#[test]
fn real_ids_land_where_postsuper_found_them() {
    let depth2 = paths("DeFerred ,defer", 2);
    assert_eq!(
        depth2.path(DEFERRED, &id(REAL_LONG)),
        PathBuf::from("deferred/6/B/4jcprB36yHz1SRvJ")
    );
    assert_eq!(
        depth2.path(DEFERRED, &id(REAL_SHORT)),
        PathBuf::from("deferred/8/D/8D59998C1CB")
    );
    // Depth 6 is longer than the 5-character key of a long id: the last level is `_`.
    let depth6 = paths("DeFerred ,defer", 6);
    assert_eq!(
        depth6.path(DEFERRED, &id(REAL_LONG)),
        PathBuf::from("deferred/6/B/9/5/7/_/4jcprB36yHz1SRvJ")
    );
    // A short id's key is the whole id, so its inode digits pick the deeper levels.
    assert_eq!(
        depth6.path(DEFERRED, &id(REAL_SHORT)),
        PathBuf::from("deferred/8/D/5/9/9/9/8D59998C1CB")
    );
}

#[test]
fn depths_one_two_three() {
    let qid = id("3F2A11C2B3");
    let cases = [
        (1, "deferred/3/3F2A11C2B3"),
        (2, "deferred/3/F/3F2A11C2B3"),
        (3, "deferred/3/F/2/3F2A11C2B3"),
    ];
    for (depth, want) in cases {
        let p = paths("deferred, defer", depth);
        assert_eq!(p.depth(), depth as usize);
        assert_eq!(p.path(DEFERRED, &qid), PathBuf::from(want));
        assert_eq!(p.dir(DEFERRED, &qid), PathBuf::from(want).parent().unwrap());
        assert_eq!(p.path(ACTIVE, &qid), PathBuf::from("active/3F2A11C2B3"));
    }
}

#[test]
fn names_with_odd_case_and_whitespace() {
    let p = paths("  INCOMING,,\tDeferred \r\n hold, ,Bounce,", 1);
    let qid = id("ABCDE12");
    for hashed in [INCOMING, DEFERRED, HOLD, BOUNCE] {
        assert!(p.is_hashed(hashed), "{hashed}");
        assert_eq!(
            p.path(hashed, &qid),
            PathBuf::from(hashed).join("A").join("ABCDE12")
        );
    }
    for flat in [ACTIVE, DEFER, CORRUPT, TRACE] {
        assert!(!p.is_hashed(flat), "{flat}");
        assert_eq!(p.path(flat, &qid), PathBuf::from(flat).join("ABCDE12"));
    }
    // An empty list hashes nothing.
    let none = paths("", 3);
    assert_eq!(none.path(DEFERRED, &qid), PathBuf::from("deferred/ABCDE12"));
}

#[test]
fn flush_logs_named_by_domain_hash_by_their_name() {
    // Not queue ids proper, but valid names; a key shorter than the depth pads with `_`.
    let p = paths("flush", 3);
    assert_eq!(
        p.path(FLUSH, &id("example_com")),
        PathBuf::from("flush/e/x/a/example_com")
    );
    assert_eq!(p.path(FLUSH, &id("ab")), PathBuf::from("flush/a/b/_/ab"));
}

#[test]
fn invalid_ids_are_refused() {
    for bad in [
        &b""[..],
        b"../etc/passwd",
        b"deferred/3/3F2A11C2B3",
        b"3F2A.11",
        b"3F2A 11",
        b"\xff\xfe",
    ] {
        assert!(!queue_id_ok(bad), "{bad:?}");
        assert!(QueueId::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        QueueId::parse(&[b'7'; 256]),
        Err(QueueIdError::TooLong(256))
    );
    assert!(!queue_name_ok(b"de/ferred"));
}

#[test]
fn hash_dirs_cover_every_path_at_depth_two() {
    let p = paths("deferred", 2);
    let dirs: Vec<PathBuf> = p.hash_dirs(DEFERRED).collect();
    assert_eq!(dirs.len(), 16 + 16 * 16);
    // Parents come before their children.
    let pos = |d: &str| dirs.iter().position(|x| x == &PathBuf::from(d)).unwrap();
    assert!(pos("deferred/F") < pos("deferred/0/0"));
    assert!(dirs.contains(&p.dir(DEFERRED, &id(REAL_LONG))));
    assert!(dirs.contains(&p.dir(DEFERRED, &id(REAL_SHORT))));
}

proptest! {
    #[test]
    fn both_forms_of_one_creation_share_a_directory(
        secs in 0u64..=u64::from(u32::MAX),
        usecs in 0u32..1_000_000,
        inode in 1u64..=u64::from(u32::MAX),
        depth in 1i64..=5,
    ) {
        let long = QueueId::make(secs, usecs, inode, true).unwrap();
        let short = QueueId::make(secs, usecs, inode, false).unwrap();
        prop_assert_eq!(long.form(), IdForm::Long);
        prop_assert_eq!(short.form(), IdForm::Short);
        prop_assert_eq!(long.decode().unwrap(), IdFields { secs: Some(secs), usecs, inode });
        prop_assert_eq!(short.decode().unwrap(), IdFields { secs: None, usecs, inode });
        prop_assert_eq!(long.hash_key(), format!("{usecs:05X}"));

        let p = paths("deferred, defer", depth);
        prop_assert_eq!(p.dir(DEFERRED, &long), p.dir(DEFERRED, &short));
        let dir = p.dir(DEFERRED, &long);
        prop_assert_eq!(dir.components().count(), 1 + depth as usize);
        let subdirs = dir.strip_prefix(DEFERRED).unwrap();
        prop_assert_eq!(p.path(DEFER, &long), PathBuf::from(DEFER).join(subdirs).join(long.as_str()));
        // The full list grows as 16^depth; walking it is only cheap for shallow trees.
        if depth <= 2 {
            prop_assert!(p.hash_dirs(DEFERRED).any(|d| d == dir));
        }
    }

    #[test]
    fn any_valid_name_gives_a_relative_path_inside_its_queue(
        name in "[0-9A-Za-z_]{1,60}",
        depth in 1i64..=8,
    ) {
        let qid = id(&name);
        let p = paths("deferred defer incoming", depth);
        let path = p.path(INCOMING, &qid);
        prop_assert!(path.is_relative());
        prop_assert!(path.starts_with(INCOMING));
        prop_assert_eq!(path.components().count(), 2 + depth as usize);
        prop_assert_eq!(path.file_name().and_then(|f| f.to_str()), Some(name.as_str()));
    }
}
