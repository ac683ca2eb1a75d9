//! A stand-in for postlogd(8): a datagram socket at `public/postlog` whose every datagram is
//! one log line `Mmm dd HH:MM:SS host tag[pid]: text`.

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::net::POLL_INTERVAL;
use super::queue_dir::FakeQueueDir;

/// One received line, split into its syslog-style parts where it has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub raw: String,
    /// `postfix/qmgr`.
    pub tag: String,
    pub pid: u32,
    /// Everything after `tag[pid]: `.
    pub text: String,
}

impl LogLine {
    /// Splits `Mmm dd HH:MM:SS host tag[pid]: text`; lines of another shape keep only `raw`
    /// (and `text` = `raw`).
    pub fn parse(raw: &str) -> LogLine {
        let fallback = LogLine {
            raw: raw.to_string(),
            tag: String::new(),
            pid: 0,
            text: raw.to_string(),
        };
        // Month, day, time, host: four space-separated words (the day may be space-padded).
        let mut rest = raw;
        for _ in 0..4 {
            rest = rest.trim_start_matches(' ');
            match rest.find(' ') {
                Some(i) => rest = &rest[i + 1..],
                None => return fallback,
            }
        }
        let Some(colon) = rest.find("]: ") else {
            return fallback;
        };
        let head = &rest[..colon];
        let Some(bracket) = head.rfind('[') else {
            return fallback;
        };
        LogLine {
            raw: raw.to_string(),
            tag: head[..bracket].to_string(),
            pid: head[bracket + 1..].parse().unwrap_or(0),
            text: rest[colon + 3..].to_string(),
        }
    }
}

/// The fake postlogd; stops and removes its socket on drop.
pub struct FakePostlog {
    path: PathBuf,
    lines: Arc<Mutex<Vec<LogLine>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakePostlog {
    /// Binds `public/postlog` of the instance.
    pub fn start(dir: &FakeQueueDir) -> FakePostlog {
        FakePostlog::start_at(&dir.public("postlog"))
    }

    pub fn start_at(path: &Path) -> FakePostlog {
        let _ = std::fs::remove_file(path);
        let socket = UnixDatagram::bind(path).expect("bind postlog socket");
        socket
            .set_read_timeout(Some(POLL_INTERVAL))
            .expect("postlog read timeout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (lines, stop) = (lines.clone(), stop.clone());
            thread::Builder::new()
                .name("fake postlog".to_string())
                .spawn(move || {
                    let mut buf = vec![0u8; 16384];
                    while !stop.load(Ordering::SeqCst) {
                        match socket.recv(&mut buf) {
                            Ok(n) => {
                                let text = String::from_utf8_lossy(buf.get(..n).unwrap_or(&[]))
                                    .trim_end_matches(['\n', '\0'])
                                    .to_string();
                                if let Ok(mut l) = lines.lock() {
                                    l.push(LogLine::parse(&text));
                                }
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    ErrorKind::WouldBlock
                                        | ErrorKind::TimedOut
                                        | ErrorKind::Interrupted
                                ) => {}
                            Err(_) => thread::sleep(POLL_INTERVAL),
                        }
                    }
                })
                .expect("spawn postlog thread")
        };
        FakePostlog {
            path: path.to_path_buf(),
            lines,
            stop,
            thread: Some(thread),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All lines so far, raw.
    pub fn lines(&self) -> Vec<String> {
        self.entries().into_iter().map(|l| l.raw).collect()
    }

    /// All lines so far, parsed.
    pub fn entries(&self) -> Vec<LogLine> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The message texts (after `tag[pid]: `).
    pub fn texts(&self) -> Vec<String> {
        self.entries().into_iter().map(|l| l.text).collect()
    }

    /// Lines whose raw form contains `pattern`.
    pub fn matching(&self, pattern: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains(pattern))
            .collect()
    }

    /// Waits until a line contains `pattern`; returns that line.
    pub fn wait_for(&self, pattern: &str, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(line) = self.matching(pattern).into_iter().next() {
                return Some(line);
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until `count` lines contain `pattern`.
    pub fn wait_for_count(&self, pattern: &str, count: usize, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.matching(pattern).len() >= count)
    }

    /// All lines joined, for assertion messages.
    pub fn dump(&self) -> String {
        self.lines().join("\n")
    }
}

impl Drop for FakePostlog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
