//! Queue directory scans, as the queue manager walks `incoming` and `deferred`.
//!
//! [`QueueScanner`] streams the names in one queue: readdir order (no sorting), one open
//! directory per nesting level and nothing else in memory, so a queue of any size costs the
//! same. Every entry with a one-character name is entered as a hash subdirectory (that finds
//! files in flat and hashed layouts alike, at any depth); `.` and `..` are skipped; longer
//! names come back as candidate queue ids, unchecked. The caller opens each one by the path
//! the *current* hash settings compute, so a file in the wrong subdirectory is simply not
//! found there.
//!
//! [`Scan`] is the queue manager's state machine around it: scan requests from triggers
//! (flags from [`crate::queue::scan_flags`]) start a scan, or queue a restart for when the
//! running one ends.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::dir::{Dir, OwningIter};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::file::ScannedDir;
use super::scan_flags::{FLUSH_DFXP, SCAN_ALL, SCAN_START};
use crate::maillog::strerror;

/// A directory of the scan could not be opened: the queue itself, or a one-character entry
/// that is not a directory (e.g. a plain file named `3`). Fatal in Postfix.
#[derive(Debug)]
pub struct ScanError {
    /// The directory, relative to the queue directory (e.g. `deferred/3`).
    pub path: PathBuf,
    /// The system error.
    pub source: io::Error,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Postfix's scan_dir wording.
        write!(
            f,
            "scan_dir_push: open directory {}: {}",
            self.path.display(),
            strerror(&self.source)
        )
    }
}

impl std::error::Error for ScanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// One open directory of a scan.
struct OpenDir {
    /// Relative to the queue directory, for messages and for entering subdirectories.
    path: PathBuf,
    fd: OwnedFd,
    entries: OwningIter,
}

/// Streams the candidate queue ids of one queue directory tree (Postfix's
/// `mail_scan_dir_next`). Holds one open directory per level and no names.
pub struct QueueScanner {
    root: PathBuf,
    /// Innermost directory last; empty once the scan has ended.
    stack: Vec<OpenDir>,
}

impl fmt::Debug for QueueScanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueScanner")
            .field("root", &self.root)
            .field(
                "open",
                &self.stack.iter().map(|d| &d.path).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl QueueScanner {
    /// Opens `root/queue` (`root` is the queue directory; "" for the current directory).
    pub fn open(root: &Path, queue: &str) -> Result<QueueScanner, ScanError> {
        let mut scanner = QueueScanner {
            root: root.to_path_buf(),
            stack: Vec::new(),
        };
        scanner.push(PathBuf::from(queue))?;
        Ok(scanner)
    }

    /// Number of directories open right now (1 = the queue itself).
    pub fn open_dirs(&self) -> usize {
        self.stack.len()
    }

    fn push(&mut self, path: PathBuf) -> Result<(), ScanError> {
        let full = self.root.join(&path);
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        // A second descriptor of the same open directory, for the lstat()s relative to it
        // (the reader's own is not lent out).
        let opened = nix::fcntl::open(&full, flags, Mode::empty())
            .map_err(io::Error::from)
            .and_then(|fd| {
                let reader = fd.try_clone()?;
                let dir = Dir::from_fd(reader).map_err(io::Error::from)?;
                Ok((fd, dir))
            });
        match opened {
            Ok((fd, dir)) => {
                self.stack.push(OpenDir {
                    path,
                    fd,
                    entries: dir.into_iter(),
                });
                Ok(())
            }
            Err(source) => Err(ScanError { path, source }),
        }
    }

    /// The directory the last name came from, while it is open: until the next
    /// [`QueueScanner::next_name`].
    pub fn current_dir(&self) -> Option<ScannedDir<'_>> {
        let dir = self.stack.last()?;
        Some(ScannedDir {
            root: &self.root,
            path: &dir.path,
            fd: dir.fd.as_fd(),
        })
    }

    /// The next candidate queue id, or `None` when every directory has been read.
    pub fn next_name(&mut self) -> Result<Option<Vec<u8>>, ScanError> {
        loop {
            let Some(current) = self.stack.last_mut() else {
                return Ok(None);
            };
            match current.entries.next() {
                // A readdir() error ends that directory, as in Postfix (NULL either way).
                None | Some(Err(_)) => {
                    // Closing the directory here keeps at most one handle per level.
                    self.stack.pop();
                }
                Some(Ok(entry)) => {
                    let name = entry.file_name().to_bytes();
                    match name {
                        b"." | b".." => {}
                        [_] => {
                            // One character: a hash subdirectory (not even stat'ed first).
                            let sub = current.path.join(bytes_to_os(name));
                            self.push(sub)?;
                        }
                        _ => return Ok(Some(name.to_vec())),
                    }
                }
            }
        }
    }
}

/// A file name from readdir as a path component.
fn bytes_to_os(name: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(name)
}

/// A name a scan produced, with the scan's flags at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    /// The file name as read (not yet checked as a queue id).
    pub name: Vec<u8>,
    /// Flags of the scan that found it (SCAN_ALL, FLUSH_DFXP, ... from
    /// [`crate::queue::scan_flags`]); they become the message's flags.
    pub flags: u8,
}

/// The scan state of one queue (Postfix's `QMGR_SCAN`).
///
/// * [`Scan::request`] with `SCAN_START` opens a scan now when none runs; during a scan it
///   makes the scan start over once it ends.
/// * `SCAN_ALL` and `FLUSH_DFXP` also apply to the scan in progress.
/// * Every requested flag is kept for the next scan. `FLUSH_ONCE` is only remembered here;
///   reviving dead transports and queues is the caller's job when it sees that flag.
#[derive(Debug)]
pub struct Scan {
    root: PathBuf,
    queue: String,
    /// Flags of the running (or last) scan.
    flags: u8,
    /// Flags collected for the next scan.
    next_flags: u8,
    scanner: Option<QueueScanner>,
}

impl Scan {
    /// An idle scan of `root/queue` (the daemon passes "" as root).
    pub fn new(root: impl Into<PathBuf>, queue: &str) -> Scan {
        Scan {
            root: root.into(),
            queue: queue.to_string(),
            flags: 0,
            next_flags: 0,
            scanner: None,
        }
    }

    /// The queue this scan reads.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Whether a scan is in progress (its directory is open).
    pub fn running(&self) -> bool {
        self.scanner.is_some()
    }

    /// Flags of the scan in progress (or of the last one).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Flags collected for the next scan; `SCAN_START` here means a restart is pending.
    pub fn pending_flags(&self) -> u8 {
        self.next_flags
    }

    /// Records a scan request (a trigger); starts the scan now when asked to and idle.
    ///
    /// The only error is failing to open the queue directory (fatal in Postfix).
    pub fn request(&mut self, flags: u8) -> Result<(), ScanError> {
        if self.running() {
            self.flags |= flags & (SCAN_ALL | FLUSH_DFXP);
        }
        self.next_flags |= flags;
        if !self.running() && flags & SCAN_START != 0 {
            self.next_flags &= !SCAN_START;
            self.start()?;
        }
        Ok(())
    }

    /// The next name to try, restarting the scan at its end if a start was requested
    /// meanwhile. `None` means nothing right now.
    pub fn next_entry(&mut self) -> Result<Option<ScanEntry>, ScanError> {
        if let Some(scanner) = self.scanner.as_mut() {
            if let Some(name) = scanner.next_name()? {
                return Ok(Some(self.entry(name)));
            }
            self.scanner = None;
        }
        if self.next_flags & SCAN_START != 0 {
            self.start()?;
            // A restarted scan that is empty stays "running" until the next call, as in
            // Postfix (its directory handle is closed only by the next call).
            if let Some(scanner) = self.scanner.as_mut() {
                if let Some(name) = scanner.next_name()? {
                    return Ok(Some(self.entry(name)));
                }
            }
        }
        Ok(None)
    }

    /// The directory the last entry came from, while it is open (see
    /// [`QueueScanner::current_dir`]).
    pub fn current_dir(&self) -> Option<ScannedDir<'_>> {
        self.scanner.as_ref()?.current_dir()
    }

    fn entry(&self, name: Vec<u8>) -> ScanEntry {
        ScanEntry {
            name,
            flags: self.flags,
        }
    }

    /// Opens the scan with the collected flags. On a restart those still include
    /// `SCAN_START`, as in Postfix.
    fn start(&mut self) -> Result<(), ScanError> {
        self.flags = self.next_flags;
        self.next_flags = 0;
        self.scanner = Some(QueueScanner::open(&self.root, &self.queue)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::scan_flags::FLUSH_ONCE;
    use std::collections::BTreeSet;
    use std::fs;

    fn touch(path: &Path) {
        fs::write(path, b"").unwrap();
    }

    fn drain(scan: &mut Scan) -> Vec<ScanEntry> {
        let mut out = Vec::new();
        while let Some(entry) = scan.next_entry().unwrap() {
            out.push(entry);
        }
        out
    }

    #[test]
    fn scanner_descends_one_char_names_and_returns_longer_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path().join("deferred");
        fs::create_dir_all(q.join("A/B")).unwrap();
        touch(&q.join("TOPLEVEL1"));
        touch(&q.join("A/AB1234"));
        touch(&q.join("A/B/AB5678"));
        let mut scanner = QueueScanner::open(tmp.path(), "deferred").unwrap();
        let mut names = BTreeSet::new();
        while let Some(name) = scanner.next_name().unwrap() {
            assert!(names.insert(name), "duplicate");
        }
        let want: BTreeSet<Vec<u8>> = [&b"TOPLEVEL1"[..], b"AB1234", b"AB5678"]
            .iter()
            .map(|n| n.to_vec())
            .collect();
        assert_eq!(names, want);
        assert_eq!(scanner.open_dirs(), 0);
        assert_eq!(scanner.next_name().unwrap(), None);
    }

    #[test]
    fn one_char_plain_file_is_an_open_error_like_postfix() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("incoming")).unwrap();
        touch(&tmp.path().join("incoming/X"));
        let mut scanner = QueueScanner::open(tmp.path(), "incoming").unwrap();
        let err = scanner.next_name().unwrap_err();
        assert_eq!(
            err.to_string(),
            "scan_dir_push: open directory incoming/X: Not a directory"
        );
    }

    #[test]
    fn missing_queue_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let err = QueueScanner::open(tmp.path(), "incoming").unwrap_err();
        assert_eq!(
            err.to_string(),
            "scan_dir_push: open directory incoming: No such file or directory"
        );
        let mut scan = Scan::new(tmp.path(), "incoming");
        assert!(scan.request(SCAN_START).is_err());
        assert!(!scan.running());
    }

    #[test]
    fn flags_without_start_wait_for_the_next_scan() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("deferred")).unwrap();
        touch(&tmp.path().join("deferred/ABCDEF"));
        let mut scan = Scan::new(tmp.path(), "deferred");
        scan.request(SCAN_ALL | FLUSH_ONCE | FLUSH_DFXP).unwrap();
        assert!(!scan.running());
        assert_eq!(scan.next_entry().unwrap(), None);
        scan.request(SCAN_START).unwrap();
        assert!(scan.running());
        // A fresh start drops SCAN_START from the scan's flags.
        assert_eq!(scan.flags(), SCAN_ALL | FLUSH_ONCE | FLUSH_DFXP);
        assert_eq!(scan.pending_flags(), 0);
        let entries = drain(&mut scan);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].flags, SCAN_ALL | FLUSH_ONCE | FLUSH_DFXP);
        assert!(!scan.running());
    }

    #[test]
    fn scan_all_and_dfxp_reach_the_running_scan_other_flags_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("incoming")).unwrap();
        for name in ["AAAAAA", "BBBBBB", "CCCCCC"] {
            touch(&tmp.path().join("incoming").join(name));
        }
        let mut scan = Scan::new(tmp.path(), "incoming");
        scan.request(SCAN_START).unwrap();
        let first = scan.next_entry().unwrap().unwrap();
        assert_eq!(first.flags, 0);
        scan.request(SCAN_ALL | FLUSH_ONCE | FLUSH_DFXP).unwrap();
        let second = scan.next_entry().unwrap().unwrap();
        assert_eq!(second.flags, SCAN_ALL | FLUSH_DFXP);
        assert_eq!(scan.pending_flags(), SCAN_ALL | FLUSH_ONCE | FLUSH_DFXP);
    }

    #[test]
    fn start_during_a_scan_restarts_it_with_start_in_its_flags() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("incoming")).unwrap();
        touch(&tmp.path().join("incoming/AAAAAA"));
        let mut scan = Scan::new(tmp.path(), "incoming");
        scan.request(SCAN_START).unwrap();
        assert_eq!(scan.next_entry().unwrap().unwrap().name, b"AAAAAA");
        scan.request(SCAN_START).unwrap();
        assert_eq!(scan.pending_flags(), SCAN_START);
        // End of the first pass: the restart yields the same file again.
        let again = scan.next_entry().unwrap().unwrap();
        assert_eq!(again.name, b"AAAAAA");
        assert_eq!(again.flags, SCAN_START);
        assert_eq!(scan.next_entry().unwrap(), None);
        assert!(!scan.running());
    }

    #[test]
    fn empty_restart_stays_running_until_the_next_call() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("incoming")).unwrap();
        let mut scan = Scan::new(tmp.path(), "incoming");
        scan.request(SCAN_START).unwrap();
        assert!(scan.running());
        scan.request(SCAN_START).unwrap();
        assert_eq!(scan.next_entry().unwrap(), None);
        assert!(scan.running(), "restarted, directory open");
        assert_eq!(scan.next_entry().unwrap(), None);
        assert!(!scan.running());
    }
}
