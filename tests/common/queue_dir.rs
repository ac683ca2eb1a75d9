//! A throw-away Postfix instance on disk: a queue directory with the standard queues and a
//! config directory whose main.cf points at it, plus helpers to drop and inspect queue files.

use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Cursor, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::queue_file_builder::{BuiltQueueFile, QueueFileBuilder};
use oqmgr::queue::id::QueueId;
use oqmgr::queue::path::QueuePaths;
use oqmgr::queue::record::{Record, RecordReader};

/// Directories created under queue_directory (all mode 0700).
pub const QUEUE_SUBDIRS: [&str; 13] = [
    "incoming", "active", "deferred", "hold", "corrupt", "bounce", "defer", "trace", "flush",
    "saved", "private", "public", "pid",
];

/// Host name written to main.cf and handed to the daemon as POSTLOG_HOSTNAME.
pub const HOSTNAME: &str = "fakehost.localdomain";

/// The tempdir, its queue directory and its config directory.
pub struct FakeQueueDir {
    /// Owns the tree; removed on drop.
    tmp: tempfile::TempDir,
    queue_dir: PathBuf,
    config_dir: PathBuf,
    mail_owner: String,
    paths: QueuePaths,
    params: Vec<(String, String)>,
}

/// A non-root user for `mail_owner`: Postfix refuses a mail_owner with uid 0
/// ("user %s has privileged user ID"), so under root another account is named.
pub fn mail_owner_name() -> String {
    let uid = nix::unistd::getuid();
    if !uid.is_root() {
        if let Ok(Some(user)) = nix::unistd::User::from_uid(uid) {
            return user.name;
        }
    }
    for candidate in ["postfix", "daemon", "bin", "nobody"] {
        if let Ok(Some(user)) = nix::unistd::User::from_name(candidate) {
            if !user.uid.is_root() {
                return user.name;
            }
        }
    }
    "nobody".to_string()
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

static FILE_COUNTER: AtomicU32 = AtomicU32::new(0);

impl FakeQueueDir {
    /// A fresh instance with the default main.cf.
    pub fn new() -> FakeQueueDir {
        FakeQueueDir::with_params(&[])
    }

    /// A fresh instance; `params` are appended to main.cf in order (later ones win).
    pub fn with_params(params: &[(&str, &str)]) -> FakeQueueDir {
        let tmp = tempfile::Builder::new()
            .prefix("oq")
            .tempdir()
            .expect("create tempdir");
        let queue_dir = tmp.path().join("q");
        let config_dir = tmp.path().join("etc");
        fs::create_dir(&queue_dir).expect("mkdir queue dir");
        set_mode(&queue_dir, 0o755).expect("chmod queue dir");
        for sub in QUEUE_SUBDIRS {
            let dir = queue_dir.join(sub);
            fs::create_dir(&dir).expect("mkdir queue subdir");
            set_mode(&dir, 0o700).expect("chmod queue subdir");
        }
        fs::create_dir(&config_dir).expect("mkdir config dir");
        let mail_owner = mail_owner_name();
        let mut dir = FakeQueueDir {
            tmp,
            queue_dir,
            config_dir,
            mail_owner,
            paths: QueuePaths::default(),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        dir.write_main_cf();
        dir
    }

    /// Rewrites main.cf with the base settings and the extra parameters.
    fn write_main_cf(&mut self) {
        let q = self.queue_dir.display().to_string();
        let mut text = String::new();
        text.push_str("# written by tests/common (fake Postfix instance)\n");
        text.push_str("compatibility_level = 3.6\n");
        text.push_str(&format!("queue_directory = {q}\n"));
        text.push_str(&format!("mail_owner = {}\n", self.mail_owner));
        text.push_str(&format!("myhostname = {HOSTNAME}\n"));
        text.push_str(&format!(
            "maillog_file = {}\n",
            self.maillog_file().display()
        ));
        text.push_str(&format!(
            "maillog_file_prefixes = {}\n",
            self.tmp.path().display()
        ));
        for (name, value) in &self.params {
            text.push_str(&format!("{name} = {value}\n"));
        }
        fs::write(self.config_dir.join("main.cf"), text).expect("write main.cf");
        let get = |name: &str| {
            self.params
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let names = get("hash_queue_names").unwrap_or_else(|| "deferred, defer".to_string());
        let depth = get("hash_queue_depth")
            .and_then(|d| d.trim().parse().ok())
            .unwrap_or(1);
        self.paths = QueuePaths::new(names, depth).unwrap_or_default();
    }

    /// Adds (or overrides) a main.cf parameter; a running daemon sees it after a reload.
    pub fn set_param(&mut self, name: &str, value: &str) {
        self.params.push((name.to_string(), value.to_string()));
        self.write_main_cf();
    }

    /// Gives queue_directory and everything under it to mail_owner, for tests that run the
    /// daemon with `-u` as root (it then drops to mail_owner and must still reach its queues).
    /// Without root this changes nothing and returns the error.
    pub fn chown_to_mail_owner(&self) -> io::Result<()> {
        let user = nix::unistd::User::from_name(&self.mail_owner)
            .map_err(io::Error::from)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such mail_owner"))?;
        let mut paths = vec![self.queue_dir.clone()];
        collect_all(&self.queue_dir, &mut paths);
        for path in paths {
            nix::unistd::chown(&path, Some(user.uid), Some(user.gid)).map_err(io::Error::from)?;
        }
        Ok(())
    }

    /// The tempdir root (child output and maillog_file live here).
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub fn queue_dir(&self) -> &Path {
        &self.queue_dir
    }

    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    pub fn mail_owner(&self) -> &str {
        &self.mail_owner
    }

    /// Where the daemon appends log lines when postlogd cannot be reached.
    pub fn maillog_file(&self) -> PathBuf {
        self.tmp.path().join("maillog")
    }

    /// Lines the daemon appended to maillog_file directly (postlog fallback).
    pub fn maillog_file_lines(&self) -> Vec<String> {
        fs::read(self.maillog_file())
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `queue_directory/private/<service>`.
    pub fn private(&self, service: &str) -> PathBuf {
        self.queue_dir.join("private").join(service)
    }

    /// `queue_directory/public/<service>`.
    pub fn public(&self, service: &str) -> PathBuf {
        self.queue_dir.join("public").join(service)
    }

    /// The hashing the instance's main.cf asks for.
    pub fn queue_paths(&self) -> &QueuePaths {
        &self.paths
    }

    /// Absolute path of `id` in `queue` under the configured hashing.
    pub fn path_of(&self, queue: &str, id: &str) -> PathBuf {
        match QueueId::parse(id.as_bytes()) {
            Ok(qid) => self.queue_dir.join(self.paths.path(queue, &qid)),
            Err(_) => self.queue_dir.join(queue).join(id),
        }
    }

    /// A message to drop: a simple queue file from sender and recipients, to be adjusted
    /// with the [`NewMessage`] setters and written with [`NewMessage::write`].
    pub fn message(&self, sender: &[u8], recipients: &[&[u8]]) -> NewMessage<'_> {
        NewMessage {
            dir: self,
            builder: QueueFileBuilder::simple(unix_now(), sender, recipients),
            raw: None,
            queue: "incoming".to_string(),
            mode: 0o700,
            mtime: None,
            id: None,
        }
    }

    /// Drops a ready (0700) message into incoming/ and returns its queue id.
    pub fn drop_message(&self, sender: &[u8], recipients: &[&[u8]]) -> String {
        self.message(sender, recipients).write().0
    }

    /// Queue ids in `queue`, recursing through hashed subdirectories, sorted.
    pub fn list(&self, queue: &str) -> Vec<String> {
        let mut out = Vec::new();
        collect_files(&self.queue_dir.join(queue), &mut out);
        out.sort();
        out
    }

    /// Every queue that holds a file named `id` (normally zero or one).
    pub fn find(&self, id: &str) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for queue in QUEUE_SUBDIRS {
            if matches!(queue, "private" | "public" | "pid") {
                continue;
            }
            let mut files = Vec::new();
            collect_paths(&self.queue_dir.join(queue), &mut files);
            for path in files {
                if path.file_name().is_some_and(|n| n == id) {
                    out.push((queue.to_string(), path));
                }
            }
        }
        out
    }

    /// The queue holding `id`, if exactly one does.
    pub fn queue_of(&self, id: &str) -> Option<String> {
        let found = self.find(id);
        match found.as_slice() {
            [(queue, _)] => Some(queue.clone()),
            _ => None,
        }
    }

    /// The records of a queue file at any path (stops at the first framing error).
    pub fn read_records(path: &Path) -> io::Result<Vec<Record>> {
        let bytes = fs::read(path)?;
        let mut reader = RecordReader::new(Cursor::new(bytes))?;
        let mut out = Vec::new();
        while let Ok(Some(record)) = reader.next_record() {
            out.push(record);
        }
        Ok(out)
    }

    /// The records of `id` in `queue`.
    pub fn records(&self, queue: &str, id: &str) -> io::Result<Vec<Record>> {
        FakeQueueDir::read_records(&self.path_of(queue, id))
    }

    /// Permission bits (low 12) of `id` in `queue`.
    pub fn mode(&self, queue: &str, id: &str) -> io::Result<u32> {
        Ok(fs::symlink_metadata(self.path_of(queue, id))?.mode() & 0o7777)
    }

    /// Modification time of `id` in `queue` as Unix seconds.
    pub fn mtime(&self, queue: &str, id: &str) -> io::Result<i64> {
        Ok(fs::symlink_metadata(self.path_of(queue, id))?.mtime())
    }
}

impl Default for FakeQueueDir {
    fn default() -> Self {
        FakeQueueDir::new()
    }
}

/// Current time in Unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn collect_paths(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_paths(&path, out),
            Ok(_) => out.push(path),
            Err(_) => {}
        }
    }
}

/// Every file and directory below `dir`.
fn collect_all(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        out.push(path.clone());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_all(&path, out);
        }
    }
}

fn collect_files(dir: &Path, out: &mut Vec<String>) {
    let mut paths = Vec::new();
    collect_paths(dir, &mut paths);
    out.extend(
        paths
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned()),
    );
}

/// A queue file about to be dropped; see [`FakeQueueDir::message`].
pub struct NewMessage<'a> {
    dir: &'a FakeQueueDir,
    builder: QueueFileBuilder,
    raw: Option<Vec<u8>>,
    queue: String,
    mode: u32,
    mtime: Option<SystemTime>,
    id: Option<String>,
}

impl NewMessage<'_> {
    /// Edits the queue file contents (add records, change SIZE flags, ...).
    pub fn edit(mut self, f: impl FnOnce(&mut QueueFileBuilder)) -> Self {
        f(&mut self.builder);
        self
    }

    /// Replaces the contents with these bytes (garbage, truncated files).
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.raw = Some(bytes.to_vec());
        self
    }

    /// The queue to write to (default `incoming`); hashed queues get their subdirectory.
    pub fn queue(mut self, queue: &str) -> Self {
        self.queue = queue.to_string();
        self
    }

    /// File mode (default 0700 = ready; 0600 = cleanup still writing).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Gives the file atime = mtime = now + `secs` ("not before" time).
    pub fn mtime_in(mut self, secs: i64) -> Self {
        let now = SystemTime::now();
        let delta = Duration::from_secs(secs.unsigned_abs());
        self.mtime = Some(if secs >= 0 { now + delta } else { now - delta });
        self
    }

    /// Uses this queue id instead of one made from time and inode.
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_string());
        self
    }

    /// Writes the file like cleanup does (temp name, then rename to the id) and returns the
    /// queue id and the built file (offsets of its records).
    pub fn write(self) -> (String, BuiltQueueFile) {
        let built = self.builder.build();
        let bytes = self.raw.clone().unwrap_or_else(|| built.bytes.clone());
        // Made outside the queues so a running daemon never sees a half-written name.
        let tmp_path = self.dir.root().join(format!(
            "new-{}-{}",
            std::process::id(),
            FILE_COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp_path)
            .expect("create queue file");
        file.write_all(&bytes).expect("write queue file");
        file.sync_all().expect("sync queue file");
        let meta = file.metadata().expect("stat queue file");
        let id = self.id.clone().unwrap_or_else(|| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            QueueId::make(now.as_secs(), now.subsec_micros(), meta.ino(), false)
                .map(|q| q.as_str().to_string())
                .expect("make queue id")
        });
        set_mode(&tmp_path, self.mode).expect("chmod queue file");
        if let Some(t) = self.mtime {
            set_times(&file, t);
        }
        drop(file);
        let dest = self.dir.path_of(&self.queue, &id);
        if let Some(parent) = dest.parent() {
            if !parent.exists() {
                fs::create_dir_all(parent).expect("mkdir hash dir");
                let _ = set_mode(parent, 0o700);
            }
        }
        fs::rename(&tmp_path, &dest).expect("rename queue file");
        (id, built)
    }
}

fn set_times(file: &File, t: SystemTime) {
    let times = FileTimes::new().set_accessed(t).set_modified(t);
    file.set_times(times).expect("set queue file times");
}
