//! Opening the lookup tables of fast_flush_domains (and mydestination) at start-up, as the C
//! daemon's flush_init and resolve_local_init do before the privilege drop and chroot.
//!
//! We cannot link Postfix's table libraries (Berkeley DB and the rest), so the contents of a
//! fixed-string table are read once with Postfix's own tool, `postmap -f -s type:name` run as a
//! child: `-s` prints every `key<TAB>value`, and `-f` opens the table without case folding, as
//! match_list opens it (texthash and inline keep their keys as written, hash and btree as
//! postmap stored them). The keys are kept in memory; a lookup then matches as
//! match_hostname (see [`crate::config::domain_list`]).
//!
//! `proxy:type:name` tables are not read: each lookup asks proxymap(8), as the C daemon does
//! (see [`super::proxymap`]), so they work whatever their type (regexp, ldap, mysql, ...).
//!
//! Other types that `postmap -s` cannot list (regexp, pcre, cidr, socketmap, ldap, mysql,
//! ...), tables with more than [`MAX_KEYS`] keys or [`MAX_BYTES`] of output, and a `postmap`
//! that fails in any other way leave the table unavailable: its lookups warn and fail (the
//! flush(8) request is not made), as before. A table that Postfix itself cannot open (no
//! `.db` file, an unknown type) gets the reason and the start-up `error:` line that Postfix's
//! surrogate table gives. `static:` always matches and `fail:` always fails, without a child.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, warn};

use super::proxymap::{ProxyClient, ProxyTable};
use crate::config::domain_list::{RemoteTable, Table, NOT_SUPPORTED};
use crate::config::{Config, Params};

/// The most keys a table may have to be loaded (about 60 MB of memory for short keys).
pub const MAX_KEYS: usize = 1_000_000;
/// The most `postmap -s` output read for one table.
pub const MAX_BYTES: usize = 64 << 20;
/// How long `postmap -s` may take (it waits for a writer's lock on a db file).
const TIME_LIMIT: Duration = Duration::from_secs(30);
/// The most of postmap's standard error kept (its warnings are relayed).
const MAX_STDERR: usize = 64 << 10;

/// The prefix of a table that proxymap(8) looks up.
const PROXY: &str = "proxy:";

/// How a table type is opened here.
enum Kind {
    Static,
    Fail,
    /// Listed with `postmap -s`; the file Postfix opens, when a missing one is known to give
    /// Postfix's `open database <file>: ...` reason.
    Dump(Option<String>),
    Unsupported,
}

fn kind(spec: &str) -> Kind {
    let Some((kind, name)) = spec.split_once(':') else {
        return Kind::Unsupported;
    };
    match kind {
        "static" => Kind::Static,
        "fail" => Kind::Fail,
        "hash" | "btree" => Kind::Dump(Some(format!("{name}.db"))),
        "texthash" => Kind::Dump(Some(name.to_string())),
        "cdb" | "lmdb" | "inline" => Kind::Dump(None),
        _ => Kind::Unsupported,
    }
}

/// What a `postmap -s` run gave.
enum Dump {
    /// Its standard output and error, after a zero exit.
    Listed(Vec<u8>, Vec<u8>),
    /// It failed; its standard error.
    Failed(Vec<u8>),
    /// It could not run, or gave too much, or took too long: the reason for lookups.
    Refused(String),
}

/// Opens tables by their `type:name`, each once (the C daemon registers a table once, however
/// many lists name it).
pub struct Opener {
    postmap: String,
    config_dir: String,
    opened: HashMap<String, Arc<Table>>,
    /// Tables only checked ([`Opener::check`]).
    checked: HashSet<String>,
    max_keys: usize,
    max_bytes: usize,
    /// The proxymap connection all `proxy:` tables share (it connects when first used).
    proxy: Arc<ProxyClient>,
    proxy_used: bool,
}

impl Opener {
    /// Runs `$command_directory/postmap -c $config_directory`.
    pub fn new(config: &Config, params: &Params) -> Opener {
        Opener {
            postmap: format!(
                "{}/postmap",
                String::from_utf8_lossy(&params.command_directory)
            ),
            config_dir: config.config_dir().to_string(),
            opened: HashMap::new(),
            checked: HashSet::new(),
            max_keys: MAX_KEYS,
            max_bytes: MAX_BYTES,
            proxy: Arc::new(ProxyClient::new(params)),
            proxy_used: false,
        }
    }

    /// The proxymap connection of the `proxy:` tables opened, if any was.
    pub fn proxy_client(&self) -> Option<Arc<ProxyClient>> {
        self.proxy_used.then(|| self.proxy.clone())
    }

    /// The table's contents for lookups (logging what Postfix logs when it opens it).
    pub fn open(&mut self, spec: &str) -> Arc<Table> {
        if let Some(table) = self.opened.get(spec) {
            return table.clone();
        }
        let table = Arc::new(self.load(spec));
        self.opened.insert(spec.to_string(), table.clone());
        table
    }

    /// A table of a list that is never looked up here (mydestination): only what Postfix
    /// logs when it opens it, for a missing database file; its contents are not read.
    pub fn check(&mut self, spec: &str) {
        // The C daemon's open of a proxied table asks proxymap (a table it does not serve is
        // fatal), whatever the list.
        if spec.starts_with(PROXY) {
            self.open(spec);
            return;
        }
        if self.opened.contains_key(spec) || !self.checked.insert(spec.to_string()) {
            return;
        }
        if let Some(reason) = missing(spec) {
            error!("{reason}");
        }
    }

    fn load(&mut self, spec: &str) -> Table {
        if let Some(name) = spec.strip_prefix(PROXY) {
            self.proxy_used = true;
            let table = ProxyTable::open(self.proxy.clone(), name);
            return Table::Remote(RemoteTable(Arc::new(table)));
        }
        match kind(spec) {
            Kind::Static => return Table::Static,
            Kind::Fail => return Table::Fail,
            Kind::Unsupported => return Table::Unavailable(NOT_SUPPORTED.to_string()),
            Kind::Dump(_) => {}
        }
        if let Some(reason) = missing(spec) {
            error!("{reason}");
            return Table::Unavailable(reason);
        }
        match self.dump(spec) {
            Dump::Listed(out, err) => {
                relay_warnings(spec, &err);
                self.keys(&out)
            }
            Dump::Failed(err) => {
                relay_warnings(spec, &err);
                match fatal_text(&err) {
                    // postmap's own limits (no sequence operation), not the table's.
                    Some(text) if text.starts_with("table ") || text.contains("sequence") => {
                        Table::Unavailable(NOT_SUPPORTED.to_string())
                    }
                    // What Postfix's surrogate table says (and logs) when it cannot open it.
                    Some(text) => {
                        error!("{text}");
                        Table::Unavailable(text)
                    }
                    None => Table::Unavailable(NOT_SUPPORTED.to_string()),
                }
            }
            Dump::Refused(reason) => Table::Unavailable(reason),
        }
    }

    /// The keys of `postmap -s` output (`key<TAB>value` lines), within the limits.
    fn keys(&self, out: &[u8]) -> Table {
        let mut keys = HashSet::new();
        for line in out.split(|&b| b == b'\n') {
            let key = line.split(|&b| b == b'\t').next().unwrap_or_default();
            // match_hostname never asks for an empty key.
            if key.is_empty() {
                continue;
            }
            if keys.len() >= self.max_keys {
                return Table::Unavailable(format!(
                    "tables of more than {} keys are not supported by this queue manager",
                    self.max_keys
                ));
            }
            keys.insert(Box::<[u8]>::from(key));
        }
        Table::Keys(keys)
    }

    /// Runs `postmap -f -s` on the table, reading its output within the limits.
    fn dump(&self, spec: &str) -> Dump {
        let child = Command::new(&self.postmap)
            .args(["-f", "-s", "-c", &self.config_dir, spec])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                return Dump::Refused(format!(
                    "cannot run {}: {}",
                    self.postmap,
                    crate::maillog::strerror(&e)
                ))
            }
        };
        let mut streams = [
            child
                .stdout
                .take()
                .map(|s| std::fs::File::from(std::os::fd::OwnedFd::from(s))),
            child
                .stderr
                .take()
                .map(|s| std::fs::File::from(std::os::fd::OwnedFd::from(s))),
        ];
        let mut out = Vec::new();
        let mut err = Vec::new();
        let deadline = Instant::now() + TIME_LIMIT;
        let mut refused = None;
        let mut buf = vec![0u8; 64 << 10];
        while refused.is_none() && streams.iter().any(Option::is_some) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                refused = Some(format!(
                    "{} -s took more than {} s",
                    self.postmap,
                    TIME_LIMIT.as_secs()
                ));
                break;
            }
            let mut fds: Vec<nix::poll::PollFd<'_>> = streams
                .iter()
                .flatten()
                .map(|f| nix::poll::PollFd::new(f.as_fd(), nix::poll::PollFlags::POLLIN))
                .collect();
            let timeout =
                nix::poll::PollTimeout::try_from(left).unwrap_or(nix::poll::PollTimeout::MAX);
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    refused = Some(format!("poll: {}", e.desc()));
                    break;
                }
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(true)).collect();
            drop(fds);
            let mut ready = ready.into_iter();
            for (i, slot) in streams.iter_mut().enumerate() {
                let Some(file) = slot else { continue };
                if ready.next() != Some(true) {
                    continue;
                }
                match file.read(&mut buf) {
                    Ok(0) => *slot = None,
                    Ok(n) if i == 0 => {
                        out.extend_from_slice(&buf[..n]);
                        if out.len() > self.max_bytes {
                            refused = Some(format!(
                                "tables of more than {} bytes are not supported by this queue manager",
                                self.max_bytes
                            ));
                        }
                    }
                    Ok(n) => {
                        let room = MAX_STDERR.saturating_sub(err.len());
                        err.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => *slot = None,
                }
            }
        }
        if let Some(reason) = refused {
            // Only the child we started, by its own id.
            let _ = child.kill();
            let _ = child.wait();
            return Dump::Refused(reason);
        }
        drop(streams);
        match child.wait() {
            Ok(status) if status.success() => Dump::Listed(out, err),
            // SIGCHLD ignored: the kernel reaped it; a fatal error says it failed.
            Err(_) if fatal_text(&err).is_none() => Dump::Listed(out, err),
            _ => Dump::Failed(err),
        }
    }
}

/// Postfix's reason for a table whose database file does not exist (dict_db_open,
/// dict_thash_open): `open database <file>: <error>`.
fn missing(spec: &str) -> Option<String> {
    let Kind::Dump(Some(file)) = kind(spec) else {
        return None;
    };
    match std::fs::metadata(&file) {
        Ok(_) => None,
        Err(e) => Some(format!(
            "open database {file}: {}",
            crate::maillog::strerror(&e)
        )),
    }
}

/// postmap's lines `postmap: <level>: <text>` at `level`.
fn postmap_lines<'a>(err: &'a [u8], level: &'a str) -> impl Iterator<Item = String> + 'a {
    let prefix = format!("postmap: {level}: ");
    err.split(|&b| b == b'\n').filter_map(move |line| {
        line.strip_prefix(prefix.as_bytes())
            .map(|text| String::from_utf8_lossy(text).into_owned())
    })
}

fn fatal_text(err: &[u8]) -> Option<String> {
    postmap_lines(err, "fatal").last()
}

/// The warnings that opening the table gives (a texthash line in the wrong format, a database
/// older than its source file): the C daemon logs them when it opens the table. postmap's own
/// `table <type:name>...` complaints about `-s` results are not the daemon's.
fn relay_warnings(spec: &str, err: &[u8]) {
    let own = format!("table {spec}");
    for text in postmap_lines(err, "warning") {
        if !text.starts_with(&own) {
            warn!("{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An opener on a config directory with an empty main.cf, when postmap is installed.
    fn opener(dir: &std::path::Path) -> Option<Opener> {
        if !std::path::Path::new("/usr/sbin/postmap").exists() {
            eprintln!("skipped: no /usr/sbin/postmap");
            return None;
        }
        std::fs::write(dir.join("main.cf"), "").unwrap();
        let config = Config::new(&dir.to_string_lossy(), b"host.lab");
        let params = Params::from_config(&config).unwrap();
        Some(Opener::new(&config, &params))
    }

    fn postmap(dir: &std::path::Path, spec: &str) {
        let status = Command::new("/usr/sbin/postmap")
            .arg("-c")
            .arg(dir)
            .arg(spec)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn keys(table: &Table) -> Vec<String> {
        let Table::Keys(keys) = table else {
            panic!("not loaded: {table:?}");
        };
        let mut keys: Vec<String> = keys
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn hash_texthash_and_inline_tables_are_loaded_as_postfix_opens_them() {
        let dir = tempfile::tempdir().unwrap();
        let Some(mut opener) = opener(dir.path()) else {
            return;
        };
        let source = dir.path().join("relay");
        std::fs::write(&source, "d1.lab OK\nD2.Lab OK\n.d3.lab x\n").unwrap();
        let hash = format!("hash:{}", source.display());
        postmap(dir.path(), &hash);
        // postmap folds keys when it builds a hash table.
        assert_eq!(keys(&opener.open(&hash)), [".d3.lab", "d1.lab", "d2.lab"]);
        // texthash reads the file as written (match_list opens it without folding).
        let text = format!("texthash:{}", source.display());
        assert_eq!(keys(&opener.open(&text)), [".d3.lab", "D2.Lab", "d1.lab"]);
        let inline = "inline:{d1.lab=ok, {d5.lab = x y}}";
        assert_eq!(keys(&opener.open(inline)), ["d1.lab", "d5.lab"]);
        // Opened once: the same contents for a second mention.
        assert!(Arc::ptr_eq(&opener.open(&hash), &opener.open(&hash)));
    }

    #[test]
    fn other_types_and_failures_leave_the_table_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let Some(mut opener) = opener(dir.path()) else {
            return;
        };
        let missing = dir.path().join("missing");
        assert_eq!(
            *opener.open(&format!("hash:{}", missing.display())),
            Table::Unavailable(format!(
                "open database {}.db: No such file or directory",
                missing.display()
            ))
        );
        let source = dir.path().join("re");
        std::fs::write(&source, "/^d1\\.lab$/ OK\n").unwrap();
        for spec in [
            format!("regexp:{}", source.display()),
            format!("pcre:{}", source.display()),
            format!("cidr:{}", source.display()),
            "socketmap:inet:127.0.0.1:9:x".to_string(),
        ] {
            assert_eq!(
                *opener.open(&spec),
                Table::Unavailable(NOT_SUPPORTED.into()),
                "{spec}"
            );
        }
        assert_eq!(*opener.open("static:yes"), Table::Static);
        assert_eq!(*opener.open("fail:x"), Table::Fail);
        // A type that this Postfix lacks: its reason, as the C daemon's surrogate gives it.
        if !std::path::Path::new("/usr/lib/postfix/postfix-cdb.so").exists() {
            assert_eq!(
                *opener.open("cdb:/no/such"),
                Table::Unavailable("unsupported dictionary type: cdb".into())
            );
        }
        // A postmap that is not there.
        opener.postmap = "/no/such/postmap".into();
        assert!(matches!(
            &*opener.open("inline:{a=b}"),
            Table::Unavailable(r) if r.starts_with("cannot run /no/such/postmap")
        ));
    }

    #[test]
    fn too_large_tables_are_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let Some(mut opener) = opener(dir.path()) else {
            return;
        };
        opener.max_keys = 2;
        assert!(matches!(&*opener.open("inline:{a=1, b=2}"), Table::Keys(k) if k.len() == 2));
        assert!(matches!(
            &*opener.open("inline:{a=1, b=2, c=3}"),
            Table::Unavailable(r) if r.contains("more than 2 keys")
        ));
        opener.max_bytes = 8;
        assert!(matches!(
            &*opener.open("inline:{aaaa=1, bbbb=2}"),
            Table::Unavailable(r) if r.contains("more than 8 bytes")
        ));
    }
}
