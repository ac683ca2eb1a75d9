//! `oqmgr_remember_destinations`: the state file `$data_directory/oqmgr-memory` that carries
//! what the scheduler learned ([`crate::sched::memory`]) from one queue manager to the next.
//!
//! The queue manager may run chrooted into the queue directory and runs as mail_owner, so
//! data_directory is opened as a directory descriptor before the chroot (as root) and every
//! later access goes through it. The file is read once at start-up (after the privilege
//! drop) and written when master closes the status socket (reload or stop), and every
//! [`CHECKPOINT_INTERVAL`] seconds when it changed (master may start the next queue manager
//! before this one has exited), atomically: a temporary file, fsync, rename. Nothing here may stop the daemon: a missing file is silence,
//! an unusable one is one warning, a failed save is one warning.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use log::warn;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::Mode;

use crate::maillog;
use crate::sched::memory::{self, Memory, MemoryItem};

/// The state file's name in data_directory.
pub const FILE_NAME: &str = "oqmgr-memory";
/// Where it is written first.
const TEMP_NAME: &str = "oqmgr-memory.tmp";
/// A larger file is refused unread.
pub const MAX_BYTES: u64 = 64 << 20;
/// Seconds between checkpoints: what changed is saved this often, not only at exit, so that
/// a queue manager that master starts before the old one has exited finds recent memory.
pub const CHECKPOINT_INTERVAL: u64 = 5;

/// data_directory, opened before the chroot.
pub struct MemoryStore {
    dir: OwnedFd,
    /// `$data_directory/oqmgr-memory`, for log lines.
    path: String,
    /// What the file holds, once this process wrote it.
    saved: Option<Vec<MemoryItem>>,
    /// The last save failed (warned once until one succeeds).
    failing: bool,
}

impl MemoryStore {
    /// Opens data_directory when `oqmgr_remember_destinations` is on (pre-jail, as root);
    /// `None` when it is off or the directory cannot be opened (one warning).
    pub fn open(enabled: bool, data_directory: &[u8]) -> Option<MemoryStore> {
        if !enabled {
            return None;
        }
        let dir_name = String::from_utf8_lossy(data_directory).into_owned();
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        match nix::fcntl::open(dir_name.as_str(), flags, Mode::empty()) {
            Ok(dir) => Some(MemoryStore {
                dir,
                path: format!("{}/{FILE_NAME}", dir_name.trim_end_matches('/')),
                saved: None,
                failing: false,
            }),
            Err(e) => {
                warn!(
                    "{dir_name}: cannot open: {}; destinations will not be remembered",
                    maillog::strerror(&std::io::Error::from(e))
                );
                None
            }
        }
    }

    /// What the previous queue manager remembered; `None` (silently) when there is no file,
    /// `None` with one warning when it is unusable.
    pub fn load(&self) -> Option<Memory> {
        match self.read() {
            Ok(Some(memory)) => Some(memory),
            Ok(None) => None,
            Err(why) => {
                warn!("{}: ignoring remembered destinations: {why}", self.path);
                None
            }
        }
    }

    fn read(&self) -> Result<Option<Memory>, String> {
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
        let fd = match openat(&self.dir, FILE_NAME, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(maillog::strerror(&std::io::Error::from(e))),
        };
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| maillog::strerror(&e).to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        let mut bytes = Vec::new();
        file.take(MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| maillog::strerror(&e).to_string())?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(format!("file is larger than {MAX_BYTES} bytes"));
        }
        memory::decode(&bytes).map(Some)
    }

    /// Writes `memory` atomically; a failure is one warning.
    pub fn save(&mut self, memory: &Memory) {
        match self.write(&memory::encode(memory)) {
            Ok(()) => {
                self.saved = Some(memory.items.clone());
                self.failing = false;
            }
            Err(why) => {
                if !self.failing {
                    warn!("{}: cannot save remembered destinations: {why}", self.path);
                }
                self.failing = true;
            }
        }
    }

    /// The periodic save: only when what is remembered changed since the last one.
    pub fn checkpoint(&mut self, memory: &Memory) {
        if self.saved.as_ref() != Some(&memory.items) {
            self.save(memory);
        }
    }

    fn write(&self, bytes: &[u8]) -> Result<(), String> {
        let errno = |e: nix::errno::Errno| maillog::strerror(&std::io::Error::from(e)).to_string();
        let io = |e: std::io::Error| maillog::strerror(&e).to_string();
        let flags = OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_TRUNC
            | OFlag::O_CLOEXEC
            | OFlag::O_NOFOLLOW;
        let fd =
            openat(&self.dir, TEMP_NAME, flags, Mode::from_bits_truncate(0o600)).map_err(errno)?;
        let mut file = File::from(fd);
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        renameat(&self.dir, TEMP_NAME, &self.dir, FILE_NAME).map_err(errno)?;
        Ok(())
    }
}
