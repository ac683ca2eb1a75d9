//! main.cf and the parameters oqmgr reads.
//!
//! - [`maincf`]: main.cf syntax (logical lines, `name = value`, duplicate warnings);
//! - [`expand`]: `$name` expansion with the Postfix 3.x conditional and relational forms;
//! - [`value`]: int/bool/time/string conversion with Postfix's fatal wording;
//! - [`params`]: the typed table of every parameter oqmgr reads ([`Params`]);
//! - [`transport`]: per-transport lookups (`<transport>_destination_concurrency_limit` ...);
//! - [`domain_list`]: domain match lists (`fast_flush_domains`).
//!
//! [`Config`] ties them together: main.cf entries, then `-o name=value` overrides, then table
//! defaults, looked up and expanded on demand like Postfix's `mail_dict`.

pub mod domain_list;
pub mod expand;
pub mod maincf;
pub mod params;
pub mod transport;
pub mod value;

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

pub use expand::{ExpandError, Expansion};
pub use maincf::{MainCfError, MainCfWarning, NameValueError, ParamDict};
pub use params::{
    param_spec, DefaultValue, ParamOwner, ParamSpec, ParamType, ParamValue, ParamWarning, Params,
    PARAM_TABLE,
};
pub use transport::{Feedback, TransportNotice, TransportParams, TransportWarning};
pub use value::ValueError;

/// Where main.cf lives when `MAIL_CONFIG` is not set.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/postfix";

/// The configuration directory: the value of `MAIL_CONFIG` when set (even if empty, as C
/// `getenv` does), else `/etc/postfix`. The caller passes `std::env::var_os("MAIL_CONFIG")`.
pub fn resolve_config_dir(mail_config_env: Option<&OsStr>) -> PathBuf {
    match mail_config_env {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(DEFAULT_CONFIG_DIR),
    }
}

/// A fatal configuration problem; `Display` is the text after `fatal: `.
#[derive(Debug)]
pub enum ConfigError {
    /// main.cf could not be read: `open <path>: <strerror>`.
    Open { path: String, reason: String },
    /// main.cf syntax.
    MainCf(MainCfError),
    /// A malformed `-o` argument: `invalid "-o <arg>" option value: <reason>`.
    Override {
        argument: Vec<u8>,
        reason: NameValueError,
    },
    /// `$` expansion failed; Postfix logs the expansion error as a warning first
    /// ([`ConfigError::preceding_warning`]).
    Expand(ExpandError),
    /// A value that does not convert or is out of bounds.
    Value(ValueError),
    /// Another init check of mail_params_init (message is the whole fatal text).
    Invalid(String),
}

impl ConfigError {
    /// The warning Postfix logs just before this fatal error, if any.
    pub fn preceding_warning(&self) -> Option<String> {
        match self {
            ConfigError::Expand(err) if err.fatal_message().is_some() => Some(err.to_string()),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Open { path, reason } => write!(f, "open {path}: {reason}"),
            ConfigError::MainCf(err) => err.fmt(f),
            ConfigError::Override { argument, reason } => write!(
                f,
                "invalid \"-o {}\" option value: {reason}",
                String::from_utf8_lossy(argument)
            ),
            ConfigError::Expand(err) => match err.fatal_message() {
                Some(message) => f.write_str(message),
                None => err.fmt(f),
            },
            ConfigError::Value(err) => err.fmt(f),
            ConfigError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ValueError> for ConfigError {
    fn from(err: ValueError) -> Self {
        ConfigError::Value(err)
    }
}

impl From<ExpandError> for ConfigError {
    fn from(err: ExpandError) -> Self {
        ConfigError::Expand(err)
    }
}

/// The configuration a daemon sees: main.cf entries and `-o` overrides (raw), backed by the
/// defaults of [`PARAM_TABLE`]. Values are expanded (recursively) when read.
#[derive(Debug, Clone)]
pub struct Config {
    config_dir: String,
    dict: ParamDict,
    hostname: Vec<u8>,
    warnings: Vec<MainCfWarning>,
}

impl Config {
    /// A configuration with an empty main.cf (only `config_directory` and defaults).
    pub fn new(config_dir: &str, hostname: &[u8]) -> Config {
        let mut dict = ParamDict::new();
        dict.insert(b"config_directory".to_vec(), config_dir.as_bytes().to_vec());
        Config {
            config_dir: config_dir.to_string(),
            dict,
            hostname: hostname.to_vec(),
            warnings: Vec::new(),
        }
    }

    /// Builds the configuration from main.cf text (read from `<config_dir>/main.cf`) and `-o`
    /// arguments (`name=value`, applied in order after main.cf). `hostname` is what
    /// gethostname() returns; it feeds the `myhostname` default.
    pub fn from_main_cf<S: AsRef<[u8]>>(
        config_dir: &str,
        main_cf: &[u8],
        overrides: &[S],
        hostname: &[u8],
    ) -> Result<Config, ConfigError> {
        let mut config = Config::new(config_dir, hostname);
        let path = format!("{config_dir}/main.cf");
        config.warnings =
            maincf::load_main_cf(&mut config.dict, &path, main_cf).map_err(ConfigError::MainCf)?;
        for argument in overrides {
            config.apply_override(argument.as_ref())?;
        }
        Ok(config)
    }

    /// Reads `<config_dir>/main.cf` and applies `overrides`, using this host's name.
    pub fn load<S: AsRef<[u8]>>(config_dir: &Path, overrides: &[S]) -> Result<Config, ConfigError> {
        let dir = config_dir.to_string_lossy().into_owned();
        let path = format!("{dir}/main.cf");
        let text = std::fs::read(&path).map_err(|err| ConfigError::Open {
            path: path.clone(),
            reason: crate::maillog::strerror(&err),
        })?;
        Config::from_main_cf(&dir, &text, overrides, &host_name())
    }

    /// Applies one `-o name=value` argument (trigger_server's `-o`).
    pub fn apply_override(&mut self, argument: &[u8]) -> Result<(), ConfigError> {
        let (name, value) =
            maincf::split_name_value(argument).map_err(|reason| ConfigError::Override {
                argument: argument.to_vec(),
                reason,
            })?;
        self.dict.insert(name.to_vec(), value.to_vec());
        Ok(())
    }

    /// Stores a raw value, as mail_conf_update() does (e.g. `process_name`, `service_name`).
    pub fn set(&mut self, name: &str, value: &[u8]) {
        self.dict.insert(name.as_bytes().to_vec(), value.to_vec());
    }

    /// The configuration directory this was built for.
    pub fn config_dir(&self) -> &str {
        &self.config_dir
    }

    /// Warnings from reading main.cf (duplicates, leading whitespace).
    pub fn warnings(&self) -> &[MainCfWarning] {
        &self.warnings
    }

    /// The raw value set in main.cf or by `-o`/[`Config::set`], without defaults.
    pub fn explicit(&self, name: &str) -> Option<&[u8]> {
        self.dict.get(name.as_bytes()).map(Vec::as_slice)
    }

    /// The raw (unexpanded) value: explicit, else the table default, else `None`.
    pub fn raw(&self, name: &[u8]) -> Option<Cow<'_, [u8]>> {
        self.raw_lookup(name, true)
    }

    /// `function_defaults` off hides the computed myhostname/mydomain defaults, which breaks
    /// the cycle between the two.
    fn raw_lookup(&self, name: &[u8], function_defaults: bool) -> Option<Cow<'_, [u8]>> {
        if let Some(value) = self.dict.get(name) {
            return Some(Cow::Borrowed(value.as_slice()));
        }
        let spec = std::str::from_utf8(name).ok().and_then(param_spec)?;
        match spec.default {
            DefaultValue::Text(text) => Some(Cow::Borrowed(text.as_bytes())),
            _ if !function_defaults => None,
            DefaultValue::MyHostname => Some(Cow::Owned(self.default_myhostname())),
            DefaultValue::MyDomain => Some(Cow::Owned(self.default_mydomain())),
        }
    }

    /// check_myhostname(): the host name, qualified with main.cf's `$mydomain` or
    /// `localdomain` when it has no dot.
    fn default_myhostname(&self) -> Vec<u8> {
        if self.hostname.contains(&b'.') {
            return self.hostname.clone();
        }
        let domain = match self.dict.get(&b"mydomain"[..]) {
            Some(raw) => self
                .expand_with(raw, false)
                .unwrap_or_else(|_| b"localdomain".to_vec()),
            None => b"localdomain".to_vec(),
        };
        let mut name = self.hostname.clone();
        name.push(b'.');
        name.extend_from_slice(&domain);
        name
    }

    /// check_mydomainname(): what follows the first dot of `$myhostname`, else `localdomain`.
    fn default_mydomain(&self) -> Vec<u8> {
        let host = match self.dict.get(&b"myhostname"[..]) {
            Some(raw) => self.expand_with(raw, false).unwrap_or_default(),
            None => self.default_myhostname(),
        };
        match memchr::memchr(b'.', &host) {
            Some(dot) => host[dot + 1..].to_vec(),
            None => b"localdomain".to_vec(),
        }
    }

    fn expand_with(&self, text: &[u8], function_defaults: bool) -> Result<Vec<u8>, ExpandError> {
        let lookup = |name: &[u8]| -> Option<Vec<u8>> {
            self.raw_lookup(name, function_defaults)
                .map(Cow::into_owned)
        };
        expand::expand(text, &lookup, true).map(|e| e.value)
    }

    /// Expands `text` recursively against this configuration (mail_conf_eval).
    pub fn expand(&self, text: &[u8]) -> Result<Vec<u8>, ConfigError> {
        Ok(self.expand_with(text, true)?)
    }

    /// The expanded value of `name` (explicit or table default), `None` when unknown.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, ConfigError> {
        match self.raw(name.as_bytes()) {
            Some(raw) => Ok(Some(self.expand(&raw)?)),
            None => Ok(None),
        }
    }

    /// get_mail_conf_int(): the value of `name`, else `default`; then bounds (0 = none).
    pub fn get_int(
        &self,
        name: &str,
        default: i32,
        min: i32,
        max: i32,
    ) -> Result<i32, ConfigError> {
        match self.get(name)? {
            Some(value) => Ok(value::to_int(name, &value, min, max)?),
            None => {
                value::check_int(name, default, min, max)?;
                Ok(default)
            }
        }
    }

    /// get_mail_conf_bool() / _nbool(): the value of `name`, else the expanded `default`.
    pub fn get_bool_expr(&self, name: &str, default: &str) -> Result<bool, ConfigError> {
        let text = match self.get(name)? {
            Some(value) => value,
            None => self.expand(default.as_bytes())?,
        };
        Ok(value::to_bool(name, &text)?)
    }

    /// get_mail_conf_time(): seconds; a bare number takes the unit of `default` (e.g. `5d`).
    pub fn get_time(
        &self,
        name: &str,
        default: &str,
        min: i32,
        max: i32,
    ) -> Result<i32, ConfigError> {
        let default_expanded = self.expand(default.as_bytes())?;
        let unit = value::default_time_unit(&default_expanded).unwrap_or(b's');
        let text = match self.get(name)? {
            Some(value) => value,
            None => default_expanded,
        };
        Ok(value::to_time(name, &text, unit, min, max)?)
    }

    /// get_mail_conf_time2(): like [`Config::get_time`] with a default already in seconds and
    /// an explicit default unit (per-transport parameters use `s`).
    pub fn get_time_or_seconds(
        &self,
        name: &str,
        default_seconds: i32,
        unit: u8,
        min: i32,
        max: i32,
    ) -> Result<i32, ConfigError> {
        match self.get(name)? {
            Some(text) => Ok(value::to_time(name, &text, unit, min, max)?),
            None => {
                value::check_time(name, default_seconds, min, max)?;
                Ok(default_seconds)
            }
        }
    }

    /// get_mail_conf_str(): the value of `name`, else the expanded `default`; length bounds.
    pub fn get_str(
        &self,
        name: &str,
        default: &[u8],
        min: i32,
        max: i32,
    ) -> Result<Vec<u8>, ConfigError> {
        let text = match self.get(name)? {
            Some(value) => value,
            None => self.expand(default)?,
        };
        value::check_str(name, &text, min, max)?;
        Ok(text)
    }

    fn get_table_str(&self, spec: &ParamSpec) -> Result<Vec<u8>, ConfigError> {
        self.get_str(spec.name, b"", spec.min, spec.max)
    }
}

/// This host's name from gethostname(), empty if it cannot be read.
fn host_name() -> Vec<u8> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is a valid writable buffer of the length passed; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast::<libc::c_char>(), buf.len()) };
    if rc != 0 {
        return Vec::new();
    }
    let end = memchr::memchr(0, &buf).unwrap_or(buf.len());
    buf[..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(main_cf: &str, overrides: &[&str]) -> Config {
        Config::from_main_cf("/etc/postfix", main_cf.as_bytes(), overrides, b"vm").unwrap()
    }

    fn get(config: &Config, name: &str) -> String {
        String::from_utf8(config.get(name).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn config_dir_resolution() {
        assert_eq!(resolve_config_dir(None), PathBuf::from("/etc/postfix"));
        assert_eq!(
            resolve_config_dir(Some(OsStr::new("/tmp/x"))),
            PathBuf::from("/tmp/x")
        );
    }

    #[test]
    fn main_cf_then_overrides_then_defaults() {
        let c = config(
            "queue_run_delay = 100s\ndefer_transports = smtp\n",
            &[
                "defer_transports=relay",
                "x = $queue_run_delay/$minimal_backoff_time",
            ],
        );
        assert_eq!(get(&c, "defer_transports"), "relay");
        assert_eq!(get(&c, "x"), "100s/300s");
        assert_eq!(get(&c, "config_directory"), "/etc/postfix");
        assert_eq!(c.get("no_such_parameter").unwrap(), None);
        assert_eq!(c.explicit("queue_run_delay"), Some(&b"100s"[..]));
        assert_eq!(c.explicit("minimal_backoff_time"), None);
    }

    #[test]
    fn bad_override_is_typed_error() {
        let err = Config::from_main_cf("/etc/postfix", b"", &["novalue"], b"vm").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid \"-o novalue\" option value: missing '=' after attribute name"
        );
    }

    #[test]
    fn main_cf_error_and_config_directory_warning() {
        let err = Config::from_main_cf("/d", b"x y\n", &[] as &[&str], b"vm").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/d/main.cf, line 1: missing '=' after attribute name: \"x y\""
        );
        let c =
            Config::from_main_cf("/d", b"config_directory = /e\n", &[] as &[&str], b"vm").unwrap();
        assert_eq!(
            c.warnings()[0].to_string(),
            "/d/main.cf, line 1: overriding earlier entry: config_directory=/d"
        );
    }

    #[test]
    fn hostname_defaults() {
        let c = config("mydomain = example.com\n", &[]);
        assert_eq!(get(&c, "myhostname"), "vm.example.com");
        let c = config("myhostname = mx.example.org\n", &[]);
        assert_eq!(get(&c, "mydomain"), "example.org");
        let c = Config::from_main_cf("/d", b"", &[] as &[&str], b"a.b.c").unwrap();
        assert_eq!(get(&c, "myhostname"), "a.b.c");
        assert_eq!(get(&c, "mydomain"), "b.c");
        // A cycle through the function defaults terminates.
        let c = config("myhostname = $mydomain\n", &[]);
        assert_eq!(get(&c, "myhostname"), "localdomain");
        let c = config("mydomain = $myhostname\n", &[]);
        assert_eq!(get(&c, "myhostname"), "vm.");
    }

    #[test]
    fn expansion_errors_are_fatal_with_preceding_warning() {
        let c = config("a = ${b\n", &[]);
        let err = c.get("a").unwrap_err();
        assert_eq!(
            err.to_string(),
            "dictionary mail_dict: macro processing error"
        );
        assert_eq!(
            err.preceding_warning().unwrap(),
            "truncated macro reference: \"${b\""
        );
    }

    #[test]
    fn typed_getters() {
        let c = config("i = 7\nt = 3\nb = YES\ns = abc\nlt = 2h\n", &[]);
        assert_eq!(c.get_int("i", 1, 0, 0).unwrap(), 7);
        assert_eq!(c.get_int("missing", 9, 0, 0).unwrap(), 9);
        assert_eq!(c.get_time("t", "5d", 0, 0).unwrap(), 3 * 86400);
        assert_eq!(c.get_time("missing", "5d", 0, 0).unwrap(), 5 * 86400);
        assert_eq!(c.get_time_or_seconds("lt", 0, b's', 0, 0).unwrap(), 7200);
        assert_eq!(c.get_time_or_seconds("t", 0, b's', 0, 0).unwrap(), 3);
        assert!(c.get_bool_expr("b", "no").unwrap());
        assert_eq!(
            c.get_str("s", b"", 0, 2).unwrap_err().to_string(),
            "bad string length 3 > 2: s = abc"
        );
        assert_eq!(
            c.get_str("missing", b"$mail_name", 1, 0).unwrap(),
            b"Postfix"
        );
    }

    #[test]
    fn load_reads_main_cf_from_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Config::load(dir.path(), &[] as &[&str]).unwrap_err();
        assert_eq!(
            missing.to_string(),
            format!(
                "open {}/main.cf: No such file or directory",
                dir.path().display()
            )
        );
        std::fs::write(dir.path().join("main.cf"), "queue_run_delay = 5m\n").unwrap();
        let c = Config::load(dir.path(), &["qmgr_fudge_factor=50"]).unwrap();
        let p = Params::from_config(&c).unwrap();
        assert_eq!(p.queue_run_delay, 300);
        assert_eq!(p.qmgr_fudge_factor, 50);
    }
}
