//! The queue manager's file operations on queue files: the open check, moves between queues,
//! time stamps, locking, in-place updates, removal, the bounce/defer logs and the start-up
//! recovery of `active`.
//!
//! Everything is a small synchronous system call (the C daemon blocks on them too) that
//! reports a typed error; the caller decides what is fatal and logs. All paths are relative to
//! [`QueueDir::root`], which the daemon sets to "" after chdir(queue_directory); messages show
//! the relative path, as Postfix does.

use std::borrow::Cow;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, AT_FDCWD};
use nix::sys::stat::{utimensat, FileStat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::id::QueueId;
use super::path::{QueuePaths, ACTIVE, BOUNCE, DEFER, INCOMING, SAVED};
use super::record::Patch;
use super::scan::{QueueScanner, Scan, ScanError};
use super::scan_flags::SCAN_ALL;
use crate::maillog::strerror;

/// Owner read+write+execute: the file is complete (cleanup sets it last).
pub const MODE_READY: u32 = 0o700;
/// Group read: "unthrottle" (flush(8) `send_file`/`send_site`); cleared once the file is read.
pub const MODE_UNTHROTTLE: u32 = 0o040;
/// Group execute: "force-expire" (`postsuper -e/-f`); kept.
pub const MODE_FORCE_EXPIRE: u32 = 0o010;
/// Hard links are only worth a warning when the file has not changed for this long (a rename
/// in progress briefly shows two links).
const LINK_WARNING_AGE_SECS: i64 = 60;
/// Mode of hash subdirectories created on demand.
const SUBDIR_MODE: u32 = 0o700;
/// Seconds a file's mtime may be in the future and still be taken.
const NOT_BEFORE_SLACK_SECS: i64 = 1;

fn not_found(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound
}

/// Whether a file with this mtime must wait ("not before" time in the future): `mtime >
/// now + 1`, unless the scan ignores time stamps (`SCAN_ALL`).
pub fn not_yet_due(mtime: i64, now: i64, scan_flags: u8) -> bool {
    scan_flags & SCAN_ALL == 0 && mtime > now.saturating_add(NOT_BEFORE_SLACK_SECS)
}

/// Which operation a [`FileError`] comes from; it picks the message wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    /// utime(): `update <path> time stamps`.
    SetTime,
    /// open() of a queue file: `open <path>`.
    Open,
    /// fchmod() after reading: `fchmod <path>`.
    Chmod,
    /// In-place record update: `update queue file <path>`.
    Update,
    /// unlink(): `remove <path>`.
    Remove,
}

/// A failed system call on one file.
#[derive(Debug)]
pub struct FileError {
    pub op: FileOp,
    /// Relative to the queue directory, e.g. `active/3F2A11C2B3`.
    pub path: PathBuf,
    pub source: io::Error,
}

impl FileError {
    fn new(op: FileOp, path: PathBuf, source: io::Error) -> FileError {
        FileError { op, path, source }
    }

    /// ENOENT: the file is gone (a warning in most places, not fatal).
    pub fn is_not_found(&self) -> bool {
        not_found(&self.source)
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        let err = strerror(&self.source);
        match self.op {
            FileOp::SetTime => write!(f, "update {path} time stamps: {err}"),
            FileOp::Open => write!(f, "open {path}: {err}"),
            FileOp::Chmod => write!(f, "fchmod {path}: {err}"),
            FileOp::Update => write!(f, "update queue file {path}: {err}"),
            FileOp::Remove => write!(f, "remove {path}: {err}"),
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A failed move of a queue file between queues.
#[derive(Debug)]
pub struct MoveError {
    pub id: QueueId,
    pub from: String,
    pub to: String,
    /// The error of the last attempt (or of creating the missing directories).
    pub source: io::Error,
}

impl MoveError {
    /// ENOENT: the source is gone (a warning; anything else is fatal in Postfix).
    pub fn is_not_found(&self) -> bool {
        not_found(&self.source)
    }
}

impl fmt::Display for MoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // qmgr_move/qmgr_active_defer wording, without the function-name prefix.
        write!(
            f,
            "rename {} from {} to {}: {}",
            self.id,
            self.from,
            self.to,
            strerror(&self.source)
        )
    }
}

impl std::error::Error for MoveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// How a successful move went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renamed {
    /// rename() worked (possibly after creating the target's directories).
    Done,
    /// rename() failed, but the source is gone and the target exists: Postfix assumes an NFS
    /// artefact and carries on, logging this (Display) as info.
    NfsWorkaround { from: PathBuf, to: PathBuf },
}

impl fmt::Display for Renamed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Renamed::Done => f.write_str("renamed"),
            Renamed::NfsWorkaround { from, to } => write!(
                f,
                "sane_rename({},{}): worked around spurious NFS error",
                from.display(),
                to.display()
            ),
        }
    }
}

/// What the open check ([`QueueDir::open_ok`]) found.
#[derive(Debug)]
pub enum OpenCheck {
    /// The name is not a valid queue id: skipped silently.
    BadId,
    /// No such file (at the path the hash settings give): skipped silently.
    Missing,
    /// lstat() failed otherwise: skipped with a warning (Display).
    StatFailed { path: PathBuf, source: io::Error },
    /// Not a regular file: skipped with a warning (Display).
    NotRegular { path: PathBuf, uid: u32 },
    /// Owner bits are not rwx (cleanup still writing, or marked corrupt): skipped silently.
    NotReady { path: PathBuf, mode: u32 },
    /// Ready to be opened.
    Ready(ReadyFile),
}

impl OpenCheck {
    /// The file, if it passed.
    pub fn ready(self) -> Option<ReadyFile> {
        match self {
            OpenCheck::Ready(file) => Some(file),
            _ => None,
        }
    }

    /// The warning Postfix logs for this outcome, if any (including the hard-link warning of a
    /// ready file).
    pub fn warning(&self) -> Option<String> {
        match self {
            OpenCheck::StatFailed { path, source } => {
                Some(format!("{}: {}", path.display(), strerror(source)))
            }
            OpenCheck::NotRegular { path, uid } => {
                Some(format!("{}: uid {uid}: not a regular file", path.display()))
            }
            OpenCheck::Ready(file) => file.link_warning(),
            OpenCheck::BadId | OpenCheck::Missing | OpenCheck::NotReady { .. } => None,
        }
    }
}

/// A queue file that passed the open check, with what lstat() said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyFile {
    pub id: QueueId,
    /// Relative to the queue directory.
    pub path: PathBuf,
    /// Full st_mode (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub nlink: u64,
    /// The "not before" time.
    pub mtime: i64,
    pub ctime: i64,
    /// More than one link and unchanged for over a minute at check time.
    stale_links: bool,
}

impl ReadyFile {
    /// Bit 0040: revive this message's dead transports and queues, ignore defer_transports.
    pub fn unthrottle(&self) -> bool {
        self.mode & MODE_UNTHROTTLE != 0
    }

    /// Bit 0010: expire the message now.
    pub fn force_expire(&self) -> bool {
        self.mode & MODE_FORCE_EXPIRE != 0
    }

    /// Whether the file must wait for its mtime (see [`not_yet_due`]).
    pub fn not_yet_due(&self, now: i64, scan_flags: u8) -> bool {
        not_yet_due(self.mtime, now, scan_flags)
    }

    /// `<path>: uid N: file has N links`, for a multiply linked file older than a minute.
    pub fn link_warning(&self) -> Option<String> {
        self.stale_links.then(|| {
            format!(
                "{}: uid {}: file has {} links",
                self.path.display(),
                self.uid,
                self.nlink
            )
        })
    }
}

/// Why an active file could not be opened and locked.
#[derive(Debug)]
pub enum LockError {
    /// open() failed (ENOENT: warning `open active ID: ...`; else fatal).
    Open(FileError),
    /// Someone else holds the lock: the file is still being delivered.
    Locked { id: QueueId },
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Open(err) => err.fmt(f),
            // Logged as info by Postfix.
            LockError::Locked { id } => write!(f, "{id}: skipped, still being delivered"),
        }
    }
}

impl std::error::Error for LockError {}

/// Result of removing a file whose absence is normal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Removed,
    /// ENOENT.
    NotFound,
}

/// What the end-of-batch check of `bounce/<id>` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceLog {
    /// No bounce log (or it cannot be stat'ed).
    Absent,
    /// It was empty and has been removed.
    RemovedEmpty,
    /// It has this many bytes: ask bounce(8) to flush it.
    NonEmpty(u64),
}

/// A tolerated problem while moving `active` back to `incoming` at start-up.
#[derive(Debug)]
pub enum RecoverWarning {
    /// A name in `active` that is not a queue id; left alone.
    BadId(Vec<u8>),
    /// The file vanished before its time stamps were set (ENOENT).
    TimeStamps(FileError),
    /// The file vanished before it was renamed (ENOENT).
    Rename(MoveError),
}

impl fmt::Display for RecoverWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoverWarning::BadId(name) => write!(
                f,
                "qmgr_move: ignored: queue {ACTIVE} id {}",
                String::from_utf8_lossy(name)
            ),
            RecoverWarning::TimeStamps(err) => write!(f, "qmgr_move: {err}"),
            RecoverWarning::Rename(err) => write!(f, "qmgr_move: {err}"),
        }
    }
}

/// A fatal problem while moving `active` back to `incoming`.
#[derive(Debug)]
pub enum RecoverError {
    Scan(ScanError),
    TimeStamps(FileError),
    Rename(MoveError),
}

impl fmt::Display for RecoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoverError::Scan(err) => err.fmt(f),
            RecoverError::TimeStamps(err) => write!(f, "qmgr_move: {err}"),
            RecoverError::Rename(err) => write!(f, "qmgr_move: {err}"),
        }
    }
}

impl std::error::Error for RecoverError {}

/// What start-up recovery has to say as it goes.
#[derive(Debug)]
pub enum RecoverNote {
    /// A `warning:` line.
    Warning(RecoverWarning),
    /// A rename that needed the NFS work-around (an info line).
    Renamed(Renamed),
}

/// The directory a scan has open: its path relative to the scan's root, and its descriptor.
#[derive(Debug, Clone, Copy)]
pub struct ScannedDir<'a> {
    pub root: &'a Path,
    pub path: &'a Path,
    pub fd: BorrowedFd<'a>,
}

/// What the queue manager uses of lstat()/stat(), from the plain system calls (std's
/// metadata calls statx(), which costs the kernel more per call).
struct FileMeta {
    mode: u32,
    uid: u32,
    nlink: u64,
    size: u64,
    mtime: i64,
    ctime: i64,
}

impl FileMeta {
    // The libc field types differ between architectures (nlink_t, off_t): widen them all.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn from_stat(st: &FileStat) -> FileMeta {
        FileMeta {
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            nlink: st.st_nlink as u64,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: st.st_mtime as i64,
            ctime: st.st_ctime as i64,
        }
    }

    fn lstat(path: &Path) -> io::Result<FileMeta> {
        nix::sys::stat::lstat(path)
            .map(|st| FileMeta::from_stat(&st))
            .map_err(io::Error::from)
    }

    fn stat(path: &Path) -> io::Result<FileMeta> {
        nix::sys::stat::stat(path)
            .map(|st| FileMeta::from_stat(&st))
            .map_err(io::Error::from)
    }

    fn lstat_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<FileMeta> {
        nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(|st| FileMeta::from_stat(&st))
            .map_err(io::Error::from)
    }

    fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

/// The queue directory: where it is and how its queues are hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDir {
    /// "" in the daemon (it has chdir'ed there); a temporary directory in tests.
    pub root: PathBuf,
    pub paths: QueuePaths,
    /// dont_remove: files are renamed into `saved/` instead of unlinked.
    save_removed: bool,
}

impl QueueDir {
    pub fn new(root: impl Into<PathBuf>, paths: QueuePaths) -> QueueDir {
        QueueDir {
            root: root.into(),
            paths,
            save_removed: false,
        }
    }

    /// With `dont_remove` non-zero, every removal renames the file into `saved/` instead.
    pub fn with_dont_remove(mut self, dont_remove: bool) -> QueueDir {
        self.save_removed = dont_remove;
        self
    }

    /// Deletes the file at `path` (relative), or with dont_remove renames it to
    /// `saved/<file name>`, appending `+` while that name is taken, as Postfix's REMOVE()
    /// (global/remove.c) does for every queue file and log the queue manager removes.
    fn discard(&self, path: &Path) -> io::Result<()> {
        if !self.save_removed {
            return fs::remove_file(self.full(path));
        }
        let mut name = path.file_name().unwrap_or(path.as_os_str()).to_os_string();
        // Like REMOVE(), stat() decides whether a name is taken (a dangling link is not).
        while fs::metadata(self.full(&Path::new(SAVED).join(&name))).is_ok() {
            name.push("+");
        }
        fs::rename(self.full(path), self.full(&Path::new(SAVED).join(name)))
    }

    /// Path of `id` in `queue`, relative to the queue directory (as logged).
    pub fn path(&self, queue: &str, id: &QueueId) -> PathBuf {
        self.paths.path(queue, id)
    }

    /// A (not yet started) scan of `queue` in this directory.
    pub fn scan(&self, queue: &str) -> Scan {
        Scan::new(self.root.clone(), queue)
    }

    /// Where the system calls go.
    fn full<'a>(&self, relative: &'a Path) -> Cow<'a, Path> {
        // The daemon's root is "" (it works in the queue directory): no copy then.
        if self.root.as_os_str().is_empty() {
            Cow::Borrowed(relative)
        } else {
            Cow::Owned(self.root.join(relative))
        }
    }

    /// Postfix's mail_open_ok: may the queue manager open `name` in `queue`? `now` is for the
    /// hard-link warning's age test.
    pub fn open_ok(&self, queue: &str, name: &[u8], now: i64) -> OpenCheck {
        self.open_ok_in(queue, name, now, None)
    }

    /// [`QueueDir::open_ok`] for a name a scan has just read: when the file's path (as the
    /// hash settings give it) lies in the directory the scan has open (`scanned`, from
    /// [`Scan::current_dir`]), the lstat() goes relative to that descriptor, so the kernel
    /// walks one path component instead of two or three. Same file, same verdict.
    pub fn open_ok_in(
        &self,
        queue: &str,
        name: &[u8],
        now: i64,
        scanned: Option<ScannedDir<'_>>,
    ) -> OpenCheck {
        let Ok(id) = QueueId::parse(name) else {
            return OpenCheck::BadId;
        };
        let dir = self.paths.dir(queue, &id);
        // Plain byte comparisons: Path's == walks components, which showed in the profile.
        let in_scanned = scanned.filter(|s| {
            s.root.as_os_str() == self.root.as_os_str() && s.path.as_os_str() == dir.as_os_str()
        });
        let mut path = dir;
        path.push(id.as_str());
        let meta = match in_scanned {
            Some(s) => FileMeta::lstat_at(s.fd, id.as_str()),
            None => FileMeta::lstat(&self.full(&path)),
        };
        let meta = match meta {
            Ok(meta) => meta,
            Err(err) if not_found(&err) => return OpenCheck::Missing,
            Err(source) => return OpenCheck::StatFailed { path, source },
        };
        if !meta.is_file() {
            return OpenCheck::NotRegular {
                path,
                uid: meta.uid,
            };
        }
        if meta.mode & 0o700 != MODE_READY {
            return OpenCheck::NotReady {
                path,
                mode: meta.mode,
            };
        }
        let stale_links = meta.nlink > 1 && meta.ctime < now.saturating_sub(LINK_WARNING_AGE_SECS);
        OpenCheck::Ready(ReadyFile {
            id,
            path,
            mode: meta.mode,
            uid: meta.uid,
            nlink: meta.nlink,
            mtime: meta.mtime,
            ctime: meta.ctime,
            stale_links,
        })
    }

    /// Moves `id` from queue `from` to queue `to` (Postfix's mail_queue_rename): on failure,
    /// creates the target's missing directories (mode 0700) and tries once more.
    pub fn rename(&self, id: &QueueId, from: &str, to: &str) -> Result<Renamed, MoveError> {
        let old = self.path(from, id);
        let new = self.path(to, id);
        let error = |source| MoveError {
            id: id.clone(),
            from: from.to_string(),
            to: to.to_string(),
            source,
        };
        match self.sane_rename(&old, &new) {
            Ok(done) => return Ok(done),
            Err(_first) => {}
        }
        if let Some(parent) = new.parent() {
            self.make_dirs(parent).map_err(error)?;
        }
        self.sane_rename(&old, &new).map_err(error)
    }

    /// rename(), forgiving the failure when the source is gone and the target is there.
    fn sane_rename(&self, old: &Path, new: &Path) -> io::Result<Renamed> {
        let (old_full, new_full) = (self.full(old), self.full(new));
        match fs::rename(&old_full, &new_full) {
            Ok(()) => Ok(Renamed::Done),
            Err(err) => {
                if fs::metadata(&old_full).is_err() && fs::metadata(&new_full).is_ok() {
                    Ok(Renamed::NfsWorkaround {
                        from: old.to_path_buf(),
                        to: new.to_path_buf(),
                    })
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Creates each missing directory of `relative` (mode 0700), parents first; a
    /// non-directory in the way is ENOTDIR.
    fn make_dirs(&self, relative: &Path) -> io::Result<()> {
        let mut dir = self.root.clone();
        for part in relative.components() {
            dir.push(part);
            match fs::metadata(&dir) {
                Ok(meta) if meta.is_dir() => continue,
                Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
                Err(err) if !not_found(&err) => return Err(err),
                Err(_) => {}
            }
            match fs::DirBuilder::new().mode(SUBDIR_MODE).create(&dir) {
                Ok(()) => {}
                // Lost a race with another process: fine if it made a directory.
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    if !fs::metadata(&dir)?.is_dir() {
                        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Whether `id` in `queue` is there and no regular file (lstat(), never following).
    fn is_not_regular(&self, queue: &str, id: &QueueId) -> bool {
        FileMeta::lstat(&self.full(&self.path(queue, id))).is_ok_and(|m| !m.is_file())
    }

    /// Sets atime and mtime of `id` in `queue` to `secs` (whole seconds, like utime()). A
    /// symlink gets its own time stamps: its target, perhaps outside the queue, is never
    /// touched (C's utime() follows it; the start-up recovery of `active` then dates it).
    pub fn set_time(&self, queue: &str, id: &QueueId, secs: i64) -> Result<(), FileError> {
        let path = self.path(queue, id);
        let time = TimeSpec::new(secs, 0);
        utimensat(
            AT_FDCWD,
            &*self.full(&path),
            &time,
            &time,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|errno| FileError::new(FileOp::SetTime, path, io::Error::from(errno)))
    }

    /// Opens `id` in `queue` read-write and takes an exclusive non-blocking flock(), as the
    /// queue manager does before reading a message. The lock lasts until the file is closed.
    /// O_NOFOLLOW: a symlink swapped in after the open check is never followed out of the
    /// queue (ELOOP, a fatal open error as any other but ENOENT; the next queue manager's
    /// check then finds it is not a regular file).
    pub fn open_locked(&self, queue: &str, id: &QueueId) -> Result<File, LockError> {
        let path = self.path(queue, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.full(&path))
            .map_err(|err| LockError::Open(FileError::new(FileOp::Open, path, err)))?;
        loop {
            // SAFETY: flock() on a descriptor we own for the duration of the call; no memory
            // is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(file);
            }
            // Postfix retries interrupted calls and treats every other failure as "locked".
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return Err(LockError::Locked { id: id.clone() });
            }
        }
    }

    /// Writes `patch` into `id` in `queue`: open read-write (no lock, never through a
    /// symlink), seek, write, close.
    pub fn apply_patch(&self, queue: &str, id: &QueueId, patch: &Patch) -> Result<(), FileError> {
        let path = self.path(queue, id);
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(self.full(&path))?;
            file.seek(SeekFrom::Start(patch.offset))?;
            file.write_all(&patch.bytes)?;
            file.flush()
        };
        write().map_err(|err| FileError::new(FileOp::Update, path.clone(), err))
    }

    /// Unlinks `id` in `queue` (or saves it: dont_remove); a missing file is
    /// [`Removed::NotFound`], not an error.
    pub fn remove(&self, queue: &str, id: &QueueId) -> Result<Removed, FileError> {
        let path = self.path(queue, id);
        match self.discard(&path) {
            Ok(()) => Ok(Removed::Removed),
            Err(err) if not_found(&err) => Ok(Removed::NotFound),
            Err(err) => Err(FileError::new(FileOp::Remove, path, err)),
        }
    }

    /// Size of the log `id` in `log_queue` (`bounce` or `defer`); `None` when stat() fails
    /// for any reason, as Postfix treats that as "no log".
    pub fn log_size(&self, log_queue: &str, id: &QueueId) -> Option<u64> {
        FileMeta::stat(&self.full(&self.path(log_queue, id)))
            .ok()
            .map(|meta| meta.size)
    }

    /// The end-of-batch bounce log check: an empty `bounce/<id>` is removed (any failure,
    /// ENOENT included, is fatal in Postfix: `remove bounce ID: ...`).
    pub fn check_bounce_log(&self, id: &QueueId) -> Result<BounceLog, FileError> {
        match self.log_size(BOUNCE, id) {
            None => Ok(BounceLog::Absent),
            Some(0) => {
                let path = self.path(BOUNCE, id);
                self.discard(&path)
                    .map_err(|err| FileError::new(FileOp::Remove, path, err))?;
                Ok(BounceLog::RemovedEmpty)
            }
            Some(size) => Ok(BounceLog::NonEmpty(size)),
        }
    }

    /// Removes `defer/<hash>/<id>` when a message is loaded (absence is normal).
    pub fn remove_defer_log(&self, id: &QueueId) -> Result<Removed, FileError> {
        self.remove(DEFER, id)
    }

    /// Start-up: every file in `active` (searched like a queue scan) gets atime = mtime =
    /// `now` and moves to `incoming`. No mode check. Invalid names and files that vanish are
    /// warnings; other failures stop the recovery. Each warning (and the NFS work-around of a
    /// rename) goes to `note` as it happens, as the C daemon's qmgr_move logs it, so none is
    /// lost when a later failure is fatal. Returns how many files moved.
    pub fn recover_active(
        &self,
        now: i64,
        note: &mut dyn FnMut(RecoverNote),
    ) -> Result<usize, RecoverError> {
        let mut moved = 0;
        let mut scanner = QueueScanner::open(&self.root, ACTIVE).map_err(RecoverError::Scan)?;
        while let Some(name) = scanner.next_name().map_err(RecoverError::Scan)? {
            let Ok(id) = QueueId::parse(&name) else {
                note(RecoverNote::Warning(RecoverWarning::BadId(name)));
                continue;
            };
            // Postfix skips the time stamps for a zero time; `now` is never zero in practice.
            if now > 0 {
                match self.set_time(ACTIVE, &id, now) {
                    Ok(()) => {}
                    Err(err) if err.is_not_found() => {
                        note(RecoverNote::Warning(RecoverWarning::TimeStamps(err)));
                        continue;
                    }
                    // A symlink (or other non-file) that is not ours to date (EPERM: the
                    // mail_owner may not set a root-owned link's times) moves undated: the
                    // scan of incoming then finds it is not a regular file. C's utime()
                    // follows the link instead, and dies on a target it may not date.
                    Err(_) if self.is_not_regular(ACTIVE, &id) => {}
                    Err(err) => return Err(RecoverError::TimeStamps(err)),
                }
            }
            match self.rename(&id, ACTIVE, INCOMING) {
                Ok(renamed) => {
                    moved += 1;
                    if matches!(renamed, Renamed::NfsWorkaround { .. }) {
                        note(RecoverNote::Renamed(renamed));
                    }
                }
                Err(err) if err.is_not_found() => {
                    note(RecoverNote::Warning(RecoverWarning::Rename(err)));
                }
                Err(err) => return Err(RecoverError::Rename(err)),
            }
        }
        Ok(moved)
    }
}

/// Clears the unthrottle bit (0040) of an open queue file whose lstat() mode was `mode`,
/// keeping every other bit (0010 included). Returns whether it changed anything; `path` is
/// for the error message only.
pub fn clear_unthrottle(file: &File, mode: u32, path: &Path) -> Result<bool, FileError> {
    if mode & MODE_UNTHROTTLE == 0 {
        return Ok(false);
    }
    let new_mode = mode & !MODE_UNTHROTTLE & 0o7777;
    file.set_permissions(fs::Permissions::from_mode(new_mode))
        .map_err(|err| FileError::new(FileOp::Chmod, path.to_path_buf(), err))?;
    Ok(true)
}

#[cfg(test)]
mod tests;
