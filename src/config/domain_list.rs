//! A domain match list such as `fast_flush_domains` (Postfix's domain_list / match_list with
//! match_hostname): names and `.parent` patterns, `!` negation, `/file/name` contents expanded
//! in-line, first match wins.
//!
//! A lookup table (`type:name`) is given by the caller as a [`Table`] when the list is parsed
//! ([`DomainList::parse_with`]): the daemon loads fixed-string tables at start-up and asks
//! proxymap(8) about `proxy:` tables (see `daemon::tables`); any other table behaves like one
//! that Postfix cannot open (a surrogate whose lookups fail), so a lookup that reaches it
//! reports an error instead of guessing.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

/// Why a table that the caller does not open fails its lookups.
pub const NOT_SUPPORTED: &str = "lookup tables are not supported by this queue manager";

/// What a `type:name` pattern's table answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// A fixed-string table (hash, btree, texthash, inline, ...): its keys as stored. Postfix
    /// looks up the casefolded name without folding it again (tables fold their keys when
    /// they are built), so a key with upper case never matches here either.
    Keys(HashSet<Box<[u8]>>),
    /// `static:`: every lookup finds the table's value.
    Static,
    /// `fail:`: every lookup fails without a warning of its own.
    Fail,
    /// A table that is not available here: each lookup warns `<table> is unavailable.
    /// <reason>` and fails, as Postfix's surrogate for a table it cannot open.
    Unavailable(String),
    /// A table that another process looks up for us (`proxy:`, through proxymap(8)).
    Remote(RemoteTable),
}

impl Table {
    /// DICT_FLAG_FIXED: match_hostname looks up parent domains only in such tables (a
    /// surrogate and `fail:` are pattern tables: only the full name is asked).
    fn fixed(&self) -> bool {
        match self {
            Table::Keys(_) | Table::Static => true,
            Table::Remote(remote) => remote.0.fixed(),
            Table::Fail | Table::Unavailable(_) => false,
        }
    }
}

/// Lookups that another process answers.
pub trait RemoteLookup: Send + Sync {
    /// Whether the table is a fixed-string one (its server's DICT_FLAG_FIXED); asked only
    /// after a lookup succeeded.
    fn fixed(&self) -> bool;
    /// Whether `key` is in the table. Err: the lookup failed; the warnings to log before the
    /// list's own `table lookup problem`.
    fn lookup(&self, key: &[u8]) -> Result<bool, Vec<String>>;
}

/// A shared [`RemoteLookup`]; equal only to itself.
#[derive(Clone)]
pub struct RemoteTable(pub Arc<dyn RemoteLookup>);

impl PartialEq for RemoteTable {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(
            Arc::as_ptr(&self.0).cast::<u8>(),
            Arc::as_ptr(&other.0).cast::<u8>(),
        )
    }
}

impl Eq for RemoteTable {}

impl fmt::Debug for RemoteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RemoteTable")
    }
}

/// One parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// A host or domain name, casefolded; a leading `.` matches subdomains only.
    Name { negated: bool, name: String },
    /// A `type:name` table, or a `/file` that could not be read (an unavailable table).
    Table {
        negated: bool,
        /// `type:name` as Postfix names the table (`non-existent:/path` for a file).
        table: String,
        /// Shared when a list names the same table twice (Postfix opens it once).
        contents: Arc<Table>,
    },
}

/// The outcome of [`DomainList::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainMatch {
    Match,
    NoMatch,
    /// A pattern could not be evaluated; the warnings Postfix logs, in order.
    Error(Vec<String>),
}

/// A parsed domain list (as the C daemon's domain_list_init with MATCH_FLAG_RETURN).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainList {
    /// The parameter name, for warnings (`fast_flush_domains`).
    param: String,
    /// `parent_domain_matches_subdomains` lists the parameter: `example.com` also matches
    /// `sub.example.com`.
    parent_style: bool,
    patterns: Vec<Pattern>,
}

/// A list that cannot be used at all (Postfix's fatal errors while parsing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainListError(pub String);

impl fmt::Display for DomainListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Postfix's casefold(): UTF-8 lower case, or ASCII lower case for other bytes.
fn casefold(text: &[u8]) -> String {
    match std::str::from_utf8(text) {
        Ok(s) => s.to_lowercase(),
        Err(_) => String::from_utf8_lossy(&text.to_ascii_lowercase()).into_owned(),
    }
}

/// Splits at commas and white space; `{...}` groups stay one token (mystrtokq).
fn tokens(text: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut depth = 0usize;
    for (i, &b) in text.iter().enumerate() {
        let separator = depth == 0 && matches!(b, b',' | b' ' | b'\t' | b'\r' | b'\n');
        match b {
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if separator {
            if let Some(s) = start.take() {
                out.push(&text[s..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// match_parent_style(): whether `param` is listed in `parent_domain_matches_subdomains`.
pub fn parent_style(parent_domain_matches_subdomains: &[u8], param: &str) -> bool {
    tokens(parent_domain_matches_subdomains)
        .iter()
        .any(|t| t.eq_ignore_ascii_case(param.as_bytes()))
}

impl DomainList {
    /// Parses `value` of parameter `param`, reading `/file/name` patterns now (the C daemon
    /// does it in its pre-init, before the privilege drop). Warnings (e.g. a trailing comment)
    /// are returned for the caller to log.
    pub fn parse(
        param: &str,
        value: &[u8],
        parent_style: bool,
    ) -> Result<(DomainList, Vec<String>), DomainListError> {
        let mut unavailable = |_: &str| Arc::new(Table::Unavailable(NOT_SUPPORTED.to_string()));
        DomainList::parse_with(param, value, parent_style, &mut unavailable)
    }

    /// [`DomainList::parse`], with `open` giving each `type:name` table's contents when the
    /// parse reaches it (the order in which Postfix opens them).
    pub fn parse_with(
        param: &str,
        value: &[u8],
        parent_style: bool,
        open: &mut dyn FnMut(&str) -> Arc<Table>,
    ) -> Result<(DomainList, Vec<String>), DomainListError> {
        let mut list = DomainList {
            param: param.to_string(),
            parent_style,
            patterns: Vec::new(),
        };
        let mut warnings = Vec::new();
        list.parse_into(value, false, &mut warnings, 0, open)?;
        Ok((list, warnings))
    }

    fn parse_into(
        &mut self,
        value: &[u8],
        negated_outer: bool,
        warnings: &mut Vec<String>,
        depth: usize,
        open: &mut dyn FnMut(&str) -> Arc<Table>,
    ) -> Result<(), DomainListError> {
        let all = tokens(value);
        for (i, token) in all.iter().enumerate() {
            if token.first() == Some(&b'#') {
                let rest: Vec<String> = all[i + 1..]
                    .iter()
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .collect();
                warnings.push(format!(
                    "{}: comment at end of line is not supported: {} {}",
                    self.param,
                    String::from_utf8_lossy(token),
                    rest.join(" ")
                ));
                break;
            }
            let bangs = token.iter().take_while(|&&b| b == b'!').count();
            let negated = negated_outer ^ (bangs % 2 == 1);
            let item = &token[bangs..];
            if item.is_empty() {
                return Err(DomainListError(format!(
                    "{}: no pattern after '!'",
                    self.param
                )));
            }
            let text = String::from_utf8_lossy(item).into_owned();
            if item.first() == Some(&b'/') {
                match std::fs::read(&text) {
                    // A file that includes itself would recurse forever in Postfix too; stop.
                    Ok(contents) if depth < 16 => {
                        for line in contents.split(|&b| b == b'\n') {
                            if line.first() != Some(&b'#') {
                                self.parse_into(line, negated, warnings, depth + 1, open)?;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => self.patterns.push(Pattern::Table {
                        negated,
                        table: format!("non-existent:{text}"),
                        contents: Arc::new(Table::Unavailable(format!(
                            "open file {text}: {}",
                            crate::maillog::strerror(&e)
                        ))),
                    }),
                }
            } else if item.first() != Some(&b'[') && item.contains(&b':') {
                let contents = open(&text);
                self.patterns.push(Pattern::Table {
                    negated,
                    table: text,
                    contents,
                });
            } else {
                self.patterns.push(Pattern::Name {
                    negated,
                    name: casefold(item),
                });
            }
        }
        Ok(())
    }

    /// The `type:name` lookup tables the list names (the C daemon opens them).
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().filter_map(|p| match p {
            Pattern::Table { table, .. } if !table.starts_with("non-existent:") => {
                Some(table.as_str())
            }
            _ => None,
        })
    }

    /// True when the list has no patterns (nothing can match).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Matches a host or domain name: the first pattern that matches decides (a negated one
    /// means no match); a table that fails ends the search with an error.
    pub fn lookup(&self, name: &[u8]) -> DomainMatch {
        let name = casefold(name);
        for pattern in &self.patterns {
            let (negated, found) = match pattern {
                Pattern::Name { negated, name: p } => (negated, self.name_matches(&name, p)),
                Pattern::Table {
                    negated,
                    table,
                    contents,
                } => match self.table_matches(name.as_bytes(), table, contents) {
                    Ok(found) => (negated, found),
                    Err(warnings) => return DomainMatch::Error(warnings),
                },
            };
            if found {
                return if *negated {
                    DomainMatch::NoMatch
                } else {
                    DomainMatch::Match
                };
            }
        }
        DomainMatch::NoMatch
    }

    /// match_hostname with a table: the whole name, then (fixed-string tables only) each
    /// parent domain, `example.com` with parent style and `.example.com` without; a found key
    /// matches whatever its value, a failed lookup ends the search with its warnings.
    fn table_matches(
        &self,
        name: &[u8],
        table: &str,
        contents: &Table,
    ) -> Result<bool, Vec<String>> {
        let mut start = 0;
        while start < name.len() {
            if start == 0 || contents.fixed() {
                let entry = &name[start..];
                match contents {
                    Table::Keys(keys) if keys.contains(entry) => return Ok(true),
                    Table::Keys(_) => {}
                    Table::Static => return Ok(true),
                    Table::Fail => {
                        return Err(vec![format!(
                            "{}: {table}: table lookup problem",
                            self.param
                        )])
                    }
                    Table::Unavailable(reason) => {
                        return Err(vec![
                            format!("{table} is unavailable. {reason}"),
                            format!("{}: {table}: table lookup problem", self.param),
                        ])
                    }
                    Table::Remote(remote) => match remote.0.lookup(entry) {
                        Ok(true) => return Ok(true),
                        Ok(false) => {}
                        Err(mut warnings) => {
                            warnings.push(format!("{}: {table}: table lookup problem", self.param));
                            return Err(warnings);
                        }
                    },
                }
            }
            // The next dot after the entry's first byte; parent style skips past it.
            let Some(dot) = memchr::memchr(b'.', &name[start + 1..]) else {
                break;
            };
            start += 1 + dot + usize::from(self.parent_style);
        }
        Ok(false)
    }

    /// match_hostname without tables: equal, or a parent domain (parent style), or a
    /// `.domain` pattern that ends the name.
    fn name_matches(&self, name: &str, pattern: &str) -> bool {
        if name == pattern {
            return true;
        }
        if name.len() <= pattern.len() || !name.ends_with(pattern) {
            return false;
        }
        let cut = name.len() - pattern.len();
        if self.parent_style {
            name.as_bytes().get(cut - 1) == Some(&b'.')
        } else {
            pattern.starts_with('.')
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(value: &str, parent: bool) -> DomainList {
        DomainList::parse("fast_flush_domains", value.as_bytes(), parent)
            .unwrap()
            .0
    }

    #[test]
    fn names_parents_and_negation() {
        let l = list("!private.d1.lab, D1.lab .d2.lab", true);
        assert_eq!(l.lookup(b"d1.lab"), DomainMatch::Match);
        assert_eq!(l.lookup(b"MX.D1.LAB"), DomainMatch::Match);
        assert_eq!(l.lookup(b"private.d1.lab"), DomainMatch::NoMatch);
        assert_eq!(l.lookup(b"xd1.lab"), DomainMatch::NoMatch);
        // As in match_hostname: with parent style a `.domain` pattern matches only names
        // with an empty label before it.
        assert_eq!(l.lookup(b"a.d2.lab"), DomainMatch::NoMatch);
        assert_eq!(l.lookup(b"a..d2.lab"), DomainMatch::Match);
        assert_eq!(l.lookup(b"d3.lab"), DomainMatch::NoMatch);
    }

    #[test]
    fn without_parent_style_only_dot_patterns_match_subdomains() {
        let l = list("d1.lab, .d2.lab", false);
        assert_eq!(l.lookup(b"mx.d1.lab"), DomainMatch::NoMatch);
        assert_eq!(l.lookup(b"mx.d2.lab"), DomainMatch::Match);
    }

    #[test]
    fn parent_style_follows_the_parameter_list() {
        assert!(parent_style(
            b"debug_peer_list,fast_flush_domains",
            "fast_flush_domains"
        ));
        assert!(!parent_style(
            b"relay_domains mynetworks",
            "fast_flush_domains"
        ));
    }

    #[test]
    fn empty_list_matches_nothing() {
        let l = list("", true);
        assert!(l.is_empty());
        assert_eq!(l.lookup(b"d1.lab"), DomainMatch::NoMatch);
    }

    #[test]
    fn files_are_read_in_line_and_unreadable_ones_fail_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("domains");
        std::fs::write(&file, "# comment\nd1.lab\n!d2.lab d3.lab\n").unwrap();
        // `!/file` negates every item of the file: `!d2.lab` in it matches again.
        let l = list(&format!("!{}", file.display()), true);
        assert_eq!(l.lookup(b"d1.lab"), DomainMatch::NoMatch);
        assert_eq!(l.lookup(b"d2.lab"), DomainMatch::Match);
        let l = list(&format!("{} d2.lab", file.display()), true);
        assert_eq!(l.lookup(b"d2.lab"), DomainMatch::NoMatch);
        assert_eq!(l.lookup(b"sub.d3.lab"), DomainMatch::Match);

        let missing = dir.path().join("missing");
        let l = list(&format!("d1.lab {}", missing.display()), true);
        assert_eq!(l.lookup(b"d1.lab"), DomainMatch::Match);
        assert_eq!(
            l.lookup(b"d9.lab"),
            DomainMatch::Error(vec![
                format!(
                    "non-existent:{0} is unavailable. open file {0}: No such file or directory",
                    missing.display()
                ),
                format!(
                    "fast_flush_domains: non-existent:{}: table lookup problem",
                    missing.display()
                ),
            ])
        );
    }

    #[test]
    fn tables_fail_lookups_and_bare_bang_is_an_error() {
        let l = list("hash:/etc/postfix/relay", true);
        assert!(matches!(l.lookup(b"d1.lab"), DomainMatch::Error(_)));
        assert!(DomainList::parse("fast_flush_domains", b"d1.lab, !", true).is_err());
        let (_, warnings) =
            DomainList::parse("fast_flush_domains", b"d1.lab # note", true).unwrap();
        assert_eq!(
            warnings,
            vec!["fast_flush_domains: comment at end of line is not supported: # note"]
        );
    }

    /// A list whose tables hold `keys` (any `type:name` but `static:` and `fail:`).
    fn with_tables(value: &str, parent: bool, keys: &[&str]) -> DomainList {
        let keys: HashSet<Box<[u8]>> = keys.iter().map(|k| Box::from(k.as_bytes())).collect();
        let mut open = |spec: &str| {
            Arc::new(match spec.split_once(':').map(|(t, _)| t) {
                Some("static") => Table::Static,
                Some("fail") => Table::Fail,
                Some("regexp") => Table::Unavailable(NOT_SUPPORTED.into()),
                _ => Table::Keys(keys.clone()),
            })
        };
        DomainList::parse_with("fast_flush_domains", value.as_bytes(), parent, &mut open)
            .unwrap()
            .0
    }

    #[test]
    fn tables_match_the_name_then_parent_domains_in_the_list_style() {
        let l = with_tables("hash:/t", true, &["d1.lab", ".d2.lab"]);
        assert_eq!(l.lookup(b"D1.LAB"), DomainMatch::Match);
        assert_eq!(l.lookup(b"mx.a.d1.lab"), DomainMatch::Match);
        assert_eq!(l.lookup(b"xd1.lab"), DomainMatch::NoMatch);
        // Parent style asks `d2.lab` and `lab`, never `.d2.lab`.
        assert_eq!(l.lookup(b"mx.d2.lab"), DomainMatch::NoMatch);
        assert_eq!(l.lookup(b"d1.lab."), DomainMatch::NoMatch);
        // Without parent style: `.d2.lab`, `.lab`, never `d1.lab`.
        let l = with_tables("hash:/t", false, &["d1.lab", ".d2.lab"]);
        assert_eq!(l.lookup(b"d1.lab"), DomainMatch::Match);
        assert_eq!(l.lookup(b"mx.d1.lab"), DomainMatch::NoMatch);
        assert_eq!(l.lookup(b"mx.d2.lab"), DomainMatch::Match);
        assert_eq!(l.lookup(b"a.b.d2.lab"), DomainMatch::Match);
        assert_eq!(l.lookup(b"d2.lab"), DomainMatch::NoMatch);
        // A key with a trailing dot matches only a name with one.
        let l = with_tables("hash:/t", true, &["d1.lab."]);
        assert_eq!(l.lookup(b"d1.lab"), DomainMatch::NoMatch);
        assert_eq!(l.lookup(b"mx.d1.lab."), DomainMatch::Match);
        // Keys are not folded at lookup: upper case in a table never matches.
        let l = with_tables("texthash:/t", true, &["D1.lab"]);
        assert_eq!(l.lookup(b"D1.lab"), DomainMatch::NoMatch);
        // An empty name asks no table.
        let l = with_tables("fail:x", true, &[]);
        assert_eq!(l.lookup(b""), DomainMatch::NoMatch);
    }

    #[test]
    fn negated_tables_and_first_match_wins_with_names_and_tables_mixed() {
        let l = with_tables("!hash:/t, d1.lab, .lab", true, &["private.d1.lab"]);
        assert_eq!(l.lookup(b"private.d1.lab"), DomainMatch::NoMatch);
        assert_eq!(l.lookup(b"mx.private.d1.lab"), DomainMatch::NoMatch);
        assert_eq!(l.lookup(b"d1.lab"), DomainMatch::Match);
        let l = with_tables("!d1.lab hash:/t", true, &["d1.lab", "d2.lab"]);
        assert_eq!(l.lookup(b"mx.d1.lab"), DomainMatch::NoMatch);
        assert_eq!(l.lookup(b"mx.d2.lab"), DomainMatch::Match);
        // `!!` is no negation.
        let l = with_tables("!!hash:/t", true, &["d1.lab"]);
        assert_eq!(l.lookup(b"d1.lab"), DomainMatch::Match);
    }

    /// A remote table holding `keys`, recording what it is asked.
    struct Remote {
        fixed: bool,
        keys: Vec<&'static str>,
        fail: bool,
        asked: std::sync::Mutex<Vec<String>>,
    }

    impl RemoteLookup for Remote {
        fn fixed(&self) -> bool {
            self.fixed
        }

        fn lookup(&self, key: &[u8]) -> Result<bool, Vec<String>> {
            let key = String::from_utf8_lossy(key).into_owned();
            let found = self.keys.iter().any(|k| *k == key);
            self.asked.lock().unwrap().push(key);
            if self.fail {
                return Err(vec!["dict_proxy_lookup: service proxymap: Success".into()]);
            }
            Ok(found)
        }
    }

    fn with_remote(value: &str, remote: &Arc<Remote>) -> DomainList {
        let table = Table::Remote(RemoteTable(remote.clone()));
        let mut open = |_: &str| Arc::new(table.clone());
        DomainList::parse_with("fast_flush_domains", value.as_bytes(), true, &mut open)
            .unwrap()
            .0
    }

    #[test]
    fn remote_tables_ask_parents_only_when_fixed() {
        let remote = |fixed, fail| {
            Arc::new(Remote {
                fixed,
                keys: vec!["d1.lab"],
                fail,
                asked: Default::default(),
            })
        };
        let fixed = remote(true, false);
        let l = with_remote("proxy:hash:/t", &fixed);
        assert_eq!(l.lookup(b"MX.D1.lab"), DomainMatch::Match);
        assert_eq!(l.lookup(b"d2.lab"), DomainMatch::NoMatch);
        assert_eq!(
            *fixed.asked.lock().unwrap(),
            ["mx.d1.lab", "d1.lab", "d2.lab", "lab"]
        );
        // A pattern table (regexp, pcre, ...) is asked the whole name only.
        let pattern = remote(false, false);
        let l = with_remote("proxy:regexp:/r", &pattern);
        assert_eq!(l.lookup(b"mx.d1.lab"), DomainMatch::NoMatch);
        assert_eq!(l.lookup(b"d1.lab"), DomainMatch::Match);
        assert_eq!(*pattern.asked.lock().unwrap(), ["mx.d1.lab", "d1.lab"]);
        // A failed lookup ends the search, its warnings before the list's.
        let failing = remote(true, true);
        let l = with_remote("proxy:hash:/t d2.lab", &failing);
        assert_eq!(
            l.lookup(b"d2.lab"),
            DomainMatch::Error(vec![
                "dict_proxy_lookup: service proxymap: Success".into(),
                "fast_flush_domains: proxy:hash:/t: table lookup problem".into(),
            ])
        );
        assert_eq!(*failing.asked.lock().unwrap(), ["d2.lab"]);
        // Tables compare by identity.
        assert_eq!(
            RemoteTable(fixed.clone()),
            RemoteTable(fixed.clone() as Arc<dyn RemoteLookup>)
        );
        assert_ne!(RemoteTable(fixed), RemoteTable(pattern));
    }

    #[test]
    fn static_matches_fail_and_unavailable_tables_end_the_search() {
        let l = with_tables("static:all", true, &[]);
        assert_eq!(l.lookup(b"any.where"), DomainMatch::Match);
        // A name before the failing table still matches; the table's failure ends the rest.
        let l = with_tables("d1.lab fail:x d2.lab", true, &[]);
        assert_eq!(l.lookup(b"d1.lab"), DomainMatch::Match);
        assert_eq!(
            l.lookup(b"d2.lab"),
            DomainMatch::Error(vec![
                "fast_flush_domains: fail:x: table lookup problem".into()
            ])
        );
        let l = with_tables("hash:/t regexp:/r d2.lab", true, &["d1.lab"]);
        assert_eq!(l.lookup(b"d1.lab"), DomainMatch::Match);
        assert_eq!(
            l.lookup(b"d2.lab"),
            DomainMatch::Error(vec![
                format!("regexp:/r is unavailable. {NOT_SUPPORTED}"),
                "fast_flush_domains: regexp:/r: table lookup problem".into(),
            ])
        );
        assert_eq!(l.tables().collect::<Vec<_>>(), ["hash:/t", "regexp:/r"]);
    }
}
