//! The lookup tables the C queue manager opens at start-up (`mydestination` through
//! resolve_local_init, `fast_flush_domains` through flush_init) and watches: before it takes a
//! trigger, trigger_server's pre_accept asks dict_changed_name whether one of them changed on
//! disk, and if so logs `table <type:name>(0,lock|utf8_request) has changed -- restarting` and
//! exits, so that master starts a queue manager that sees the new table.
//!
//! We watch the same files the same way (the contents of fast_flush_domains' tables are read
//! once at start-up, see `daemon::tables`): opened before the privilege drop and chroot, then
//! fstat()ed, so a table rebuilt by postmap (a new mtime, or a new file whose old one has no
//! links left) restarts us as it restarts the C daemon, and the new process reads the new
//! contents. Only the file-based types have a file to watch (hash, btree, lmdb, cdb); the others
//! never change in dict_changed_name's eyes either (texthash and inline are in-memory tables
//! there too: a changed texthash file is read by the next queue manager, not this one).

use std::fs::File;
use std::os::unix::fs::MetadataExt;

/// How match_list registers a table it opens (`type:name(open flags,dict flags)`: O_RDONLY,
/// DICT_FLAG_LOCK | DICT_FLAG_UTF8_REQUEST), the name dict_changed_name reports.
const REGISTERED_AS: &str = "(0,lock|utf8_request)";

/// One watched table.
struct Watched {
    /// `type:name(0,lock|utf8_request)`, as the C daemon names it in its log line.
    name: String,
    file: File,
    mtime: i64,
}

/// The watched tables (normally none: Debian's defaults name no table).
#[derive(Default)]
pub struct TableWatch {
    tables: Vec<Watched>,
}

/// The file dict_open keeps open for a table of this type, if the type has one.
fn watched_file(table: &str) -> Option<String> {
    let (kind, path) = table.split_once(':')?;
    let suffix = match kind {
        "hash" | "btree" => ".db",
        "lmdb" => ".lmdb",
        "cdb" => ".cdb",
        _ => return None,
    };
    Some(format!("{path}{suffix}"))
}

impl TableWatch {
    /// Opens the files of `tables` (`type:name` items of the lists). A table that cannot be
    /// opened is not watched: the C daemon's stand-in for an unavailable table never changes.
    pub fn open<'a>(tables: impl IntoIterator<Item = &'a str>) -> TableWatch {
        let mut watch = TableWatch::default();
        for name in tables {
            let registered = format!("{name}{REGISTERED_AS}");
            if watch.tables.iter().any(|t| t.name == registered) {
                continue;
            }
            let Some(path) = watched_file(name) else {
                continue;
            };
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let Ok(meta) = file.metadata() else {
                continue;
            };
            watch.tables.push(Watched {
                name: registered,
                file,
                mtime: meta.mtime(),
            });
        }
        watch
    }

    /// dict_changed_name: the first table whose file has a new mtime or no link left.
    pub fn changed(&self) -> Option<&str> {
        self.tables
            .iter()
            .find(|t| {
                t.file
                    .metadata()
                    .map_or(true, |m| m.mtime() != t.mtime || m.nlink() == 0)
            })
            .map(|t| t.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_file_based_tables_are_watched_by_their_database_file() {
        assert_eq!(
            watched_file("hash:/etc/postfix/x"),
            Some("/etc/postfix/x.db".into())
        );
        assert_eq!(watched_file("lmdb:/a/b"), Some("/a/b.lmdb".into()));
        assert_eq!(watched_file("cdb:/a/b"), Some("/a/b.cdb".into()));
        assert_eq!(watched_file("regexp:/etc/postfix/re"), None);
        assert_eq!(watched_file("proxy:hash:/x"), None);
        assert_eq!(watched_file("example.com"), None);
    }

    #[test]
    fn a_rebuilt_or_replaced_table_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("dest");
        let db = dir.path().join("dest.db");
        std::fs::write(&db, b"v1").unwrap();
        let table = format!("hash:{}", base.display());
        let name = format!("{table}(0,lock|utf8_request)");
        let watch = TableWatch::open([table.as_str(), "hash:/no/such/table", "example.com"]);
        assert_eq!(watch.changed(), None);
        // postmap in place: a new mtime.
        let old = std::fs::metadata(&db).unwrap().mtime();
        let new = std::time::UNIX_EPOCH + std::time::Duration::from_secs((old - 60) as u64);
        std::fs::File::options()
            .write(true)
            .open(&db)
            .unwrap()
            .set_modified(new)
            .unwrap();
        assert_eq!(watch.changed(), Some(name.as_str()));
        // A table replaced by a new file: the open one has no link left.
        std::fs::write(&db, b"v1").unwrap();
        let watch = TableWatch::open([table.as_str()]);
        std::fs::remove_file(&db).unwrap();
        std::fs::write(&db, b"v2").unwrap();
        assert_eq!(watch.changed(), Some(name.as_str()));
    }
}
