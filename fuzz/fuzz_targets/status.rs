//! The status socket, both ends: the daemon's request check (with the server's small
//! decoder limits), and oqmgrctl's reading of an answer into a snapshot and its table, JSON
//! and Prometheus renderings. A complete snapshot must survive an encode/decode round trip.
//!
//! Input: one control byte (chunk size), then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oqmgr::ctl::{json, metrics, render};
use oqmgr::proto::attr::{AttrDecoder, DecodeLimits};
use oqmgr::proto::status::{Snapshot, SnapshotReader, StatusRequest};

/// oqmgrctl's loop: lists into the reader until `{kind=end}`.
fn read_answer(stream: &[u8], chunk: usize) -> Option<Snapshot> {
    let mut decoder = AttrDecoder::default();
    let mut reader = SnapshotReader::default();
    for mut input in stream.chunks(chunk) {
        while !input.is_empty() {
            let (used, list) = decoder.push(input).ok()?;
            input = &input[used..];
            if let Some(list) = list {
                match reader.push(&list) {
                    Ok(true) => return reader.finish().ok(),
                    Ok(false) => {}
                    Err(e) => {
                        let _ = e.to_string();
                        return None;
                    }
                }
            }
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    // The server's side: a request within its limits.
    let mut server = AttrDecoder::new(DecodeLimits {
        max_attr_bytes: 256,
        max_list_bytes: 256,
        max_attrs: 16,
    });
    if let Ok(lists) = server.feed(stream) {
        for list in &lists {
            let _ = StatusRequest::matches(list);
        }
    }
    let Some(snapshot) = read_answer(stream, usize::from(control).max(1)) else {
        return;
    };
    let _ = render::table(&snapshot, &|t| t.to_string());
    let _ = json::snapshot(&snapshot);
    let _ = metrics::exposition(&snapshot);
    for d in &snapshot.destinations {
        let _ = render::destination_state(d);
        let _ = render::relative(d.dead_until, snapshot.summary.now);
    }
    let _ = render::duration(snapshot.summary.now.wrapping_sub(snapshot.summary.started));
    let again = read_answer(&snapshot.to_bytes(), usize::MAX);
    assert_eq!(again.as_ref(), Some(&snapshot), "snapshot round trip");
});
