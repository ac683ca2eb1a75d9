//! The fake Postfix world the daemon is tested in: no Postfix, no root, seconds per test.
//!
//! - [`queue_dir::FakeQueueDir`]: a queue directory and main.cf in a tempdir; drop and
//!   inspect queue files.
//! - [`postlog::FakePostlog`]: collects the daemon's log lines from `public/postlog`.
//! - [`rewrite::FakeRewrite`], [`agent::FakeAgent`], [`bounce::FakeBounce`],
//!   [`service::FakeService`] (verify, flush), [`proxymap::FakeProxymap`]: the peers on
//!   `private/…` and `public/…`, speaking the real protocols through `oqmgr::proto`.
//! - [`master::FakeMaster`]: starts the daemon with master(8)'s descriptors and environment.
//! - [`world::World`]: all of the above in one call; [`wait_until`] for polling conditions.
//!
//! Every wait is bounded; every thread is joined and every child killed on drop.

// Each integration test compiles this module but uses only part of it; without this every
// test binary would warn about the helpers it happens not to call.
#![allow(dead_code)]

pub mod agent;
pub mod bounce;
pub mod master;
pub mod net;
pub mod postlog;
pub mod proxymap;
pub mod queue_dir;
pub mod rewrite;
pub mod service;
pub mod world;

// The shared queue-file builder reaches the library through this alias.
use oqmgr::queue::record;
#[path = "../support/queue_file_builder.rs"]
pub mod queue_file_builder;

use std::thread;
use std::time::{Duration, Instant};

/// A generous bound for things that normally take milliseconds.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Polls `condition` every 5 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}
