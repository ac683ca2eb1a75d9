//! Where a queue file lives, relative to `queue_directory`.
//!
//! Queues named in `hash_queue_names` spread their files over `hash_queue_depth` levels of
//! one-character subdirectories picked by the id's hash key ([`QueueId::hash_key`]), e.g.
//! `deferred/3/3F2A11C2B3`; other queues are flat, e.g. `active/3F2A11C2B3`. Everything here is
//! string work: nothing touches the file system.

use std::fmt;
use std::path::PathBuf;

use super::id::QueueId;

/// New mail from cleanup(8), waiting to be imported.
pub const INCOMING: &str = "incoming";
/// Messages the queue manager has in memory; only the queue manager touches it.
pub const ACTIVE: &str = "active";
/// Messages that could not be delivered yet, waiting for their retry time.
pub const DEFERRED: &str = "deferred";
/// Messages put on hold by the administrator; the queue manager never looks at them.
pub const HOLD: &str = "hold";
/// Files the queue manager could not read as a queue file.
pub const CORRUPT: &str = "corrupt";
/// Per-message logs of bounced recipients, written by bounce(8).
pub const BOUNCE: &str = "bounce";
/// Per-message logs of deferred recipients, written by bounce(8) as the `defer` service.
pub const DEFER: &str = "defer";
/// Per-message delivery traces, written by bounce(8) as the `trace` service.
pub const TRACE: &str = "trace";
/// Per-destination logs of the fast flush service (named by domain, not by queue id).
pub const FLUSH: &str = "flush";
/// Local submissions from postdrop(1), picked up by pickup(8).
pub const MAILDROP: &str = "maildrop";
/// Copies kept by the administrator; not read by any daemon.
pub const SAVED: &str = "saved";

/// Every queue Postfix knows, in no particular order.
pub const ALL_QUEUES: [&str; 11] = [
    INCOMING, ACTIVE, DEFERRED, HOLD, CORRUPT, BOUNCE, DEFER, TRACE, FLUSH, MAILDROP, SAVED,
];

/// Longest valid queue name.
pub const MAX_QUEUE_NAME_LEN: usize = 100;

/// Built-in value of `hash_queue_names`.
pub const DEFAULT_HASH_QUEUE_NAMES: &str = "deferred, defer";
/// Built-in value of `hash_queue_depth`.
pub const DEFAULT_HASH_QUEUE_DEPTH: i64 = 1;

/// Separators of the `hash_queue_names` list (Postfix's `CHARS_COMMA_SP`).
const LIST_SEPARATORS: &[u8] = b", \t\r\n";

/// Hash-key characters of ids Postfix makes: hex digits (the key starts with 5 of them).
const HEX_DIGITS: &[u8] = b"0123456789ABCDEF";
/// Past the 5 hex microseconds a key may go on with inode hex digits or run out (`_`).
const HEX_DIGITS_OR_END: &[u8] = b"0123456789ABCDEF_";
/// Length of the hex microseconds that start every hash key Postfix makes.
const HEX_USECS_LEN: usize = 5;
/// Subdirectory character used when the hash key is shorter than the depth.
const SHORT_KEY_FILLER: char = '_';

/// Whether `name` can be a queue name: 1 to 100 ASCII letters and digits.
pub fn queue_name_ok(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_QUEUE_NAME_LEN
        && name.iter().all(|b| b.is_ascii_alphanumeric())
}

/// A bad hashing setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueuePathError {
    /// `hash_queue_depth` below 1.
    BadDepth(i64),
}

impl fmt::Display for QueuePathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Wording of Postfix's integer parameter check.
            QueuePathError::BadDepth(depth) => {
                write!(f, "invalid hash_queue_depth parameter value {depth} < 1")
            }
        }
    }
}

impl std::error::Error for QueuePathError {}

/// The hashing settings, ready to turn queue ids into paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePaths {
    /// Lower-cased names from `hash_queue_names`.
    hashed_names: Vec<Vec<u8>>,
    depth: usize,
}

impl Default for QueuePaths {
    fn default() -> Self {
        QueuePaths {
            hashed_names: split_names(DEFAULT_HASH_QUEUE_NAMES.as_bytes()),
            depth: 1,
        }
    }
}

impl QueuePaths {
    /// Settings from the values of `hash_queue_names` (comma/space separated, any case) and
    /// `hash_queue_depth` (at least 1).
    pub fn new(
        hash_queue_names: impl AsRef<[u8]>,
        hash_queue_depth: i64,
    ) -> Result<QueuePaths, QueuePathError> {
        let depth = usize::try_from(hash_queue_depth)
            .ok()
            .filter(|&d| d >= 1)
            .ok_or(QueuePathError::BadDepth(hash_queue_depth))?;
        Ok(QueuePaths {
            hashed_names: split_names(hash_queue_names.as_ref()),
            depth,
        })
    }

    /// Levels of subdirectories in a hashed queue.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Whether `queue_name` is listed in `hash_queue_names` (ignoring ASCII case).
    pub fn is_hashed(&self, queue_name: &str) -> bool {
        let wanted = queue_name.as_bytes();
        self.hashed_names
            .iter()
            .any(|name| name.eq_ignore_ascii_case(wanted))
    }

    /// Directory that holds `id` in `queue_name`, e.g. `deferred/6/B` or `active`.
    ///
    /// `queue_name` is one of this module's constants; it is used as given.
    pub fn dir(&self, queue_name: &str, id: &QueueId) -> PathBuf {
        let mut dir = String::with_capacity(queue_name.len() + 2 * self.depth);
        self.push_dir(&mut dir, queue_name, id);
        PathBuf::from(dir)
    }

    /// [`QueuePaths::dir`] appended to `out` as one string (no allocation per level).
    fn push_dir(&self, out: &mut String, queue_name: &str, id: &QueueId) {
        out.push_str(queue_name);
        if self.is_hashed(queue_name) {
            id.with_hash_key(|key| {
                for level in 0..self.depth {
                    let c = key.get(level).map_or(SHORT_KEY_FILLER, |&b| char::from(b));
                    out.push('/');
                    out.push(c);
                }
            });
        }
    }

    /// Path of the file for `id` in `queue_name`, e.g. `deferred/3/3F2A11C2B3`.
    pub fn path(&self, queue_name: &str, id: &QueueId) -> PathBuf {
        let name = id.as_str();
        let mut path = String::with_capacity(queue_name.len() + 2 * self.depth + 1 + name.len());
        self.push_dir(&mut path, queue_name, id);
        path.push('/');
        path.push_str(name);
        PathBuf::from(path)
    }

    /// Every hash subdirectory that files with Postfix-made ids can land in, parents before
    /// children (e.g. `deferred/0` .. `deferred/F` at depth 1); nothing for a flat queue.
    ///
    /// Postfix itself creates these on demand; this list is for pre-creating them. It grows as
    /// 16^depth, so iterate rather than collect when the depth is large.
    pub fn hash_dirs(&self, queue_name: &str) -> HashDirs {
        let depth = if self.is_hashed(queue_name) {
            self.depth
        } else {
            0
        };
        HashDirs {
            queue_name: queue_name.to_string(),
            depth,
            counters: vec![0],
        }
    }
}

/// Iterator over a hashed queue's subdirectories, level by level (see
/// [`QueuePaths::hash_dirs`]).
#[derive(Debug, Clone)]
pub struct HashDirs {
    queue_name: String,
    /// 0 when exhausted or flat.
    depth: usize,
    /// One digit index per level of the next directory to yield.
    counters: Vec<usize>,
}

/// Characters a hash key can have at `level` (0-based).
fn level_alphabet(level: usize) -> &'static [u8] {
    if level < HEX_USECS_LEN {
        HEX_DIGITS
    } else {
        HEX_DIGITS_OR_END
    }
}

impl Iterator for HashDirs {
    type Item = PathBuf;

    fn next(&mut self) -> Option<PathBuf> {
        if self.counters.len() > self.depth {
            return None;
        }
        let mut dir = PathBuf::from(&self.queue_name);
        for (level, &index) in self.counters.iter().enumerate() {
            let ch = level_alphabet(level).get(index).copied().unwrap_or(b'_');
            dir.push(char::from(ch).to_string());
        }
        // Advance like an odometer; on overflow go one level deeper.
        let mut level = self.counters.len();
        loop {
            if level == 0 {
                let deeper = self.counters.len() + 1;
                self.counters = vec![0; deeper];
                break;
            }
            level -= 1;
            let Some(index) = self.counters.get_mut(level) else {
                break;
            };
            *index += 1;
            if *index < level_alphabet(level).len() {
                break;
            }
            *index = 0;
        }
        Some(dir)
    }
}

/// Lower-cased, non-empty items of a comma/space separated list.
fn split_names(list: &[u8]) -> Vec<Vec<u8>> {
    list.split(|b| LIST_SEPARATORS.contains(b))
        .filter(|name| !name.is_empty())
        .map(|name| name.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> QueueId {
        QueueId::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn default_hashes_deferred_and_defer_one_level() {
        let paths = QueuePaths::default();
        assert_eq!(paths, QueuePaths::new(DEFAULT_HASH_QUEUE_NAMES, 1).unwrap());
        let qid = id("3F2A11C2B3");
        assert_eq!(
            paths.path(DEFERRED, &qid),
            PathBuf::from("deferred/3/3F2A11C2B3")
        );
        assert_eq!(paths.path(DEFER, &qid), PathBuf::from("defer/3/3F2A11C2B3"));
        for flat in [INCOMING, ACTIVE, HOLD, CORRUPT, BOUNCE, TRACE, MAILDROP] {
            assert_eq!(
                paths.path(flat, &qid),
                PathBuf::from(flat).join("3F2A11C2B3")
            );
        }
    }

    #[test]
    fn depth_below_one_is_refused_with_postfix_wording() {
        let err = QueuePaths::new("deferred", 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid hash_queue_depth parameter value 0 < 1"
        );
        assert!(QueuePaths::new("deferred", -3).is_err());
    }

    #[test]
    fn queue_names_validity() {
        for name in ALL_QUEUES {
            assert!(queue_name_ok(name.as_bytes()), "{name}");
        }
        assert!(queue_name_ok(&[b'q'; 100]));
        assert!(!queue_name_ok(&[b'q'; 101]));
        for bad in [&b""[..], b"a_b", b"a/b", b"..", b"a b", b"\xc3\xa9"] {
            assert!(!queue_name_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn hash_dirs_of_depth_one_are_the_16_hex_digits() {
        let dirs: Vec<PathBuf> = QueuePaths::default().hash_dirs(DEFERRED).collect();
        assert_eq!(dirs.len(), 16);
        assert_eq!(dirs.first(), Some(&PathBuf::from("deferred/0")));
        assert_eq!(dirs.last(), Some(&PathBuf::from("deferred/F")));
        assert_eq!(QueuePaths::default().hash_dirs(ACTIVE).count(), 0);
    }
}
