//! Trigger bytes from public/qmgr (or the fifo): folded into scan requests. Order and
//! repetition must not matter.
//!
//! Input: the bytes of one trigger read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oqmgr::master::trigger::parse;

fuzz_target!(|data: &[u8]| {
    let requests = parse(data);
    let mut reversed = data.to_vec();
    reversed.reverse();
    assert_eq!(parse(&reversed), requests);
    let mut twice = data.to_vec();
    twice.extend_from_slice(data);
    assert_eq!(parse(&twice), requests);
});
