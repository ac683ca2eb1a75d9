//! main.cf syntax: logical lines and `name = value` entries (util/readlline.c,
//! util/split_nameval.c, util/dict.c dict_load_fp in Postfix 3.7).
//!
//! Pure over bytes: the caller reads the file and hands in its contents plus the path used in
//! messages. Values are stored unexpanded; see [`super::expand`].

use std::collections::BTreeMap;
use std::fmt;

/// Parameter name -> raw (unexpanded) value, as Postfix's `mail_dict` holds them.
pub type ParamDict = BTreeMap<Vec<u8>, Vec<u8>>;

pub(crate) use crate::cnum::is_space as is_c_space;

/// A non-fatal finding while reading main.cf; `Display` is Postfix's warning text (without the
/// `warning: ` prefix the logger adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainCfWarning {
    /// A logical line that starts with whitespace (only possible before the first entry).
    LeadingWhitespace { path: String, text: Vec<u8> },
    /// A later entry replaced an earlier, different value.
    Overriding {
        path: String,
        line: usize,
        name: Vec<u8>,
        old_value: Vec<u8>,
    },
}

impl fmt::Display for MainCfWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MainCfWarning::LeadingWhitespace { path, text } => {
                let shown = c_str(text);
                let cut = &shown[..shown.len().min(30)];
                let more = if text.len() > 30 { "..." } else { "" };
                write!(
                    f,
                    "{path}: logical line must not start with whitespace: \"{}{more}\"",
                    String::from_utf8_lossy(cut)
                )
            }
            MainCfWarning::Overriding {
                path,
                line,
                name,
                old_value,
            } => write!(
                f,
                "{path}, line {line}: overriding earlier entry: {}={}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(old_value)
            ),
        }
    }
}

/// Why a `name = value` text could not be split (split_nameval's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameValueError {
    MissingName,
    MissingEquals,
}

impl fmt::Display for NameValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameValueError::MissingName => "missing attribute name",
            NameValueError::MissingEquals => "missing '=' after attribute name",
        })
    }
}

/// A fatal main.cf syntax error. `Display`:
/// `<path>, line N: missing '=' after attribute name: "<logical line>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MainCfError {
    pub path: String,
    pub line: usize,
    pub reason: NameValueError,
    pub text: Vec<u8>,
}

impl fmt::Display for MainCfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, line {}: {}: \"{}\"",
            self.path,
            self.line,
            self.reason,
            String::from_utf8_lossy(c_str(&self.text))
        )
    }
}

impl std::error::Error for MainCfError {}

/// The bytes up to the first NUL: what C string functions see.
fn c_str(bytes: &[u8]) -> &[u8] {
    match memchr::memchr(0, bytes) {
        Some(end) => &bytes[..end],
        None => bytes,
    }
}

/// One logical line: the physical line number of its first non-comment line, and its text
/// (continuation lines appended without their newlines, leading blanks kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    pub line: usize,
    pub text: Vec<u8>,
}

/// Splits `input` into logical lines like readllines(): comment (`#` after optional blanks),
/// empty and all-blank lines are dropped, also inside a continuation; a line starting with
/// whitespace continues the previous one. Logical lines that start with whitespace are reported
/// and skipped.
pub fn logical_lines(path: &str, input: &[u8]) -> (Vec<LogicalLine>, Vec<MainCfWarning>) {
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let mut pos = 0usize;
    let mut lineno = 0usize;
    loop {
        let mut buf: Vec<u8> = Vec::new();
        let mut first_line = 0usize;
        loop {
            let start = buf.len();
            let rest = input.get(pos..).unwrap_or_default();
            let (physical, hit_newline) = match memchr::memchr(b'\n', rest) {
                Some(end) => (&rest[..end], true),
                None => (rest, false),
            };
            pos += physical.len() + usize::from(hit_newline);
            buf.extend_from_slice(physical);
            if hit_newline || !physical.is_empty() {
                lineno += 1;
            }
            match physical.iter().position(|&b| !is_c_space(b)) {
                None => buf.truncate(start),
                Some(at) if physical[at] == b'#' => buf.truncate(start),
                Some(_) if start == 0 => first_line = lineno,
                Some(_) => {}
            }
            if !hit_newline {
                break;
            }
            if !buf.is_empty() {
                match input.get(pos) {
                    Some(&next) if next == b'#' || is_c_space(next) => {}
                    _ => break,
                }
            }
        }
        match buf.first() {
            None => break,
            Some(&first) if is_c_space(first) => {
                warnings.push(MainCfWarning::LeadingWhitespace {
                    path: path.to_string(),
                    text: buf,
                });
            }
            Some(_) => lines.push(LogicalLine {
                line: first_line,
                text: buf,
            }),
        }
    }
    (lines, warnings)
}

/// Splits `name = value` like split_nameval(): the name is the first run of non-blank, non-`=`
/// bytes; blanks around `=` are optional; the value is trimmed on both sides. Text after a NUL
/// is ignored, as in C.
pub fn split_name_value(text: &[u8]) -> Result<(&[u8], &[u8]), NameValueError> {
    let text = c_str(text);
    let name_start = text
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(text.len());
    let after_blanks = &text[name_start..];
    if matches!(after_blanks.first(), None | Some(b'=')) {
        return Err(NameValueError::MissingName);
    }
    let name_len = after_blanks
        .iter()
        .position(|&b| is_c_space(b) || b == b'=')
        .unwrap_or(after_blanks.len());
    let name = &after_blanks[..name_len];
    let rest = &after_blanks[name_len..];
    let eq_at = rest
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(rest.len());
    if rest.get(eq_at) != Some(&b'=') {
        return Err(NameValueError::MissingEquals);
    }
    let value = trim_c_space(&rest[eq_at + 1..]);
    Ok((name, value))
}

/// Strips leading and trailing C whitespace.
pub(crate) fn trim_c_space(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_c_space(b))
        .map_or(start, |at| at + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Loads main.cf text into `dict` like dict_load_fp(): later entries win, with a warning when
/// the value changes (also against entries already in `dict`, e.g. `config_directory`).
/// The first syntax error is fatal.
pub fn load_main_cf(
    dict: &mut ParamDict,
    path: &str,
    input: &[u8],
) -> Result<Vec<MainCfWarning>, MainCfError> {
    let (lines, mut warnings) = logical_lines(path, input);
    for logical in lines {
        let (name, value) = split_name_value(&logical.text).map_err(|reason| MainCfError {
            path: path.to_string(),
            line: logical.line,
            reason,
            text: logical.text.clone(),
        })?;
        if let Some(old) = dict.get(name) {
            if old.as_slice() != value {
                warnings.push(MainCfWarning::Overriding {
                    path: path.to_string(),
                    line: logical.line,
                    name: name.to_vec(),
                    old_value: old.clone(),
                });
            }
        }
        dict.insert(name.to_vec(), value.to_vec());
    }
    Ok(warnings)
}

/// Parses a whole main.cf into a fresh dictionary.
pub fn parse_main_cf(
    path: &str,
    input: &[u8],
) -> Result<(ParamDict, Vec<MainCfWarning>), MainCfError> {
    let mut dict = ParamDict::new();
    let warnings = load_main_cf(&mut dict, path, input)?;
    Ok((dict, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (ParamDict, Vec<String>) {
        let (dict, warnings) = parse_main_cf("/etc/postfix/main.cf", text.as_bytes()).unwrap();
        (dict, warnings.iter().map(|w| w.to_string()).collect())
    }

    fn get<'a>(dict: &'a ParamDict, name: &str) -> &'a str {
        std::str::from_utf8(dict.get(name.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn name_value_with_trimming_and_optional_blanks() {
        let (dict, warnings) = parse("a=1\nb =  two words  \nc\t=\t\r\nd= x = y\n");
        assert!(warnings.is_empty());
        assert_eq!(get(&dict, "a"), "1");
        assert_eq!(get(&dict, "b"), "two words");
        assert_eq!(get(&dict, "c"), "");
        assert_eq!(get(&dict, "d"), "x = y");
    }

    #[test]
    fn continuation_keeps_leading_blanks_and_skips_comments_and_blank_lines() {
        let (dict, _) = parse("a = one\n  two\n# comment\n\n   \n\tthree\n   # indented comment\nb = x # not a comment\n");
        assert_eq!(get(&dict, "a"), "one  two\tthree");
        assert_eq!(get(&dict, "b"), "x # not a comment");
    }

    #[test]
    fn last_line_without_newline_and_crlf() {
        let (dict, _) = parse("a = 1\r\nb = 2");
        assert_eq!(get(&dict, "a"), "1");
        assert_eq!(get(&dict, "b"), "2");
    }

    #[test]
    fn later_entry_wins_with_warning_only_when_value_differs() {
        let (dict, warnings) = parse("a = 1\nb = x\na = 2\nb = x\n");
        assert_eq!(get(&dict, "a"), "2");
        assert_eq!(
            warnings,
            ["/etc/postfix/main.cf, line 3: overriding earlier entry: a=1"]
        );
    }

    #[test]
    fn leading_whitespace_logical_line_is_warned_and_skipped() {
        let (dict, warnings) =
            parse("# header\n   leading = x and a rather long tail text\na = 1\n");
        assert_eq!(dict.len(), 1);
        assert_eq!(
            warnings,
            ["/etc/postfix/main.cf: logical line must not start with whitespace: \"   leading = x and a rather lo...\""]
        );
    }

    #[test]
    fn missing_equals_is_fatal_with_postfix_wording_and_first_line_number() {
        let err =
            parse_main_cf("/etc/postfix/main.cf", b"a = 1\n\n# c\nbad line\n  here\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/postfix/main.cf, line 4: missing '=' after attribute name: \"bad line  here\""
        );
        let err = parse_main_cf("m", b"= value\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "m, line 1: missing attribute name: \"= value\""
        );
    }

    #[test]
    fn line_numbers_count_comment_and_continuation_lines() {
        let mut dict = ParamDict::new();
        dict.insert(b"config_directory".to_vec(), b"/etc/postfix".to_vec());
        let warnings = load_main_cf(
            &mut dict,
            "p",
            b"#1\na = 1\n  2\n\nconfig_directory = /x\na = 3\n",
        )
        .unwrap();
        let texts: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            texts,
            [
                "p, line 5: overriding earlier entry: config_directory=/etc/postfix",
                "p, line 6: overriding earlier entry: a=1  2"
            ]
        );
    }

    #[test]
    fn split_name_value_cases() {
        assert_eq!(split_name_value(b" a = b "), Ok((&b"a"[..], &b"b"[..])));
        assert_eq!(split_name_value(b"a"), Err(NameValueError::MissingEquals));
        assert_eq!(
            split_name_value(b"a b = c"),
            Err(NameValueError::MissingEquals)
        );
        assert_eq!(split_name_value(b"   "), Err(NameValueError::MissingName));
        assert_eq!(split_name_value(b"a=b\0c"), Ok((&b"a"[..], &b"b"[..])));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = parse_main_cf("p", &input);
        }

        #[test]
        fn arbitrary_line_soup_never_panics(input in "[a-z =#\t\n\r]{0,200}") {
            let _ = parse_main_cf("p", input.as_bytes());
        }
    }
}
