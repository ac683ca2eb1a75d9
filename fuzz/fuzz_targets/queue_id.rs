//! Names read from the queue directories (every scan takes file names as queue ids) and
//! master's GENERATION value: parsed, decoded, hashed into paths.
//!
//! Input: one control byte (hash depth), then the name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oqmgr::master::status::parse_generation;
use oqmgr::queue::id::{queue_id_ok, IdForm, QueueId};
use oqmgr::queue::path::{queue_name_ok, QueuePaths, DEFERRED, INCOMING};

fuzz_target!(|data: &[u8]| {
    let Some((&control, name)) = data.split_first() else {
        return;
    };
    let _ = queue_name_ok(name);
    let _ = parse_generation(&String::from_utf8_lossy(name));
    let parsed = QueueId::parse(name);
    assert_eq!(
        queue_id_ok(name),
        parsed.is_ok(),
        "two checks of one queue id disagree"
    );
    let id = match parsed {
        Ok(id) => id,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let paths = QueuePaths::new("deferred, defer", i64::from(control % 5)).ok();
    if let Some(paths) = paths {
        for queue in [DEFERRED, INCOMING] {
            let path = paths.path(queue, &id);
            assert!(path.ends_with(id.as_str()));
            assert_eq!(
                path.components().count(),
                2 + if queue == DEFERRED { paths.depth() } else { 0 }
            );
        }
    }
    let _ = id.hash_key();
    // What decodes, made again, decodes the same.
    if let Ok(fields) = id.decode() {
        let long = id.form() == IdForm::Long;
        if let (Some(secs), true) = (fields.secs, long) {
            let made = QueueId::make(secs, fields.usecs, fields.inode, true).expect("usecs < 1e6");
            assert_eq!(made.decode().ok(), Some(fields));
        } else if !long && fields.usecs < 1_000_000 {
            let made = QueueId::make(0, fields.usecs, fields.inode, false).expect("usecs < 1e6");
            assert_eq!(made.decode().ok(), Some(fields));
        }
    }
});
