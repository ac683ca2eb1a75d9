//! The parameters oqmgr reads: its own table (oqmgr/qmgr.c main()) and the generic ones the
//! daemon skeleton reads for it (global/mail_params.c), with Postfix 3.7.11 defaults as
//! Debian 12's `postconf -d` shows them.
//!
//! One macro invocation declares the table ([`PARAM_TABLE`]), the typed struct ([`Params`]) and
//! the enumeration ([`Params::to_table`]), so the three cannot drift apart.

use std::fmt;

use super::{Config, ConfigError};

/// How a parameter's value is converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Decimal int; `min`/`max` bounds (0 = none).
    Int,
    /// `yes`/`no`.
    Bool,
    /// Seconds; the default's unit letter applies to a bare number.
    Time,
    /// Expanded text; `min`/`max` are length bounds (0 = none).
    Str,
}

/// Where a default comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// A fixed (unexpanded) text, as `postconf -d` shows it.
    Text(&'static str),
    /// The host name, with `.$mydomain` (main.cf) or `.localdomain` appended when it has no dot.
    MyHostname,
    /// What follows the first dot of `$myhostname`, else `localdomain`.
    MyDomain,
}

/// Who reads the parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamOwner {
    /// oqmgr's own tables (facts 2.5).
    Oqmgr,
    /// The generic parameters every daemon reads (mail_params_init).
    Generic,
    /// oqmgr's extensions, unknown to Postfix (`oqmgr_*`: `postconf` calls them unused).
    Extension,
}

/// One row of the parameter table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub param_type: ParamType,
    pub default: DefaultValue,
    pub min: i32,
    pub max: i32,
    pub owner: ParamOwner,
}

/// A typed parameter value, for enumeration and dumps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    Int(i32),
    Bool(bool),
    /// Seconds.
    Time(i32),
    Str(Vec<u8>),
}

impl fmt::Display for ParamValue {
    /// The form `postconf` accepts back: `20000`, `yes`, `300s`, text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(n) => write!(f, "{n}"),
            ParamValue::Bool(b) => f.write_str(if *b { "yes" } else { "no" }),
            ParamValue::Time(s) => write!(f, "{s}s"),
            ParamValue::Str(s) => f.write_str(&String::from_utf8_lossy(s)),
        }
    }
}

/// A post-init adjustment (oqmgr's qmgr_post_init); `Display` is the warning text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamWarning {
    /// qmgr_message_recipient_limit was raised to qmgr_message_active_limit.
    RecipientLimitRaised,
    /// bounce_queue_lifetime was lowered to maximal_queue_lifetime.
    BounceLifetimeLowered,
}

impl fmt::Display for ParamWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamWarning::RecipientLimitRaised => "qmgr_message_recipient_limit is smaller than qmgr_message_active_limit - adjusting qmgr_message_recipient_limit",
            ParamWarning::BounceLifetimeLowered => "bounce_queue_lifetime is larger than maximal_queue_lifetime - adjusting bounce_queue_lifetime",
        })
    }
}

macro_rules! field_type {
    (Int) => { i32 };
    (Bool) => { bool };
    (Time) => { i32 };
    (Str) => { Vec<u8> };
}

macro_rules! param_table {
    ($( [$owner:ident] $( $(#[$doc:meta])* $name:ident : $ty:ident = $default:expr, $min:expr, $max:expr; )* )*) => {
        /// Every parameter oqmgr reads, in the order the C daemon reads them (generic first,
        /// then oqmgr's int, str, bool and time tables), then our extensions.
        pub static PARAM_TABLE: &[ParamSpec] = &[
            $( $( ParamSpec {
                name: stringify!($name),
                param_type: ParamType::$ty,
                default: $default,
                min: $min,
                max: $max,
                owner: ParamOwner::$owner,
            }, )* )*
        ];

        /// Typed values of every parameter in [`PARAM_TABLE`] (times in seconds, strings
        /// expanded). Field names are the parameter names.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Params {
            $( $( $(#[$doc])* pub $name: field_type!($ty), )* )*
        }

        impl Params {
            /// Reads and converts every parameter from `config`, in table order; the first
            /// bad value is the fatal error the C daemon would report.
            fn read_all(config: &Config) -> Result<Params, ConfigError> {
                Ok(Params {
                    $( $( $name: read_typed::<field_type!($ty)>(config, stringify!($name))?, )* )*
                })
            }

            /// Every parameter with its typed value, in table order (for `-p` style dumps).
            pub fn to_table(&self) -> Vec<(&'static str, ParamValue)> {
                vec![ $( $( (stringify!($name), ParamValue::$ty(self.$name.clone())), )* )* ]
            }
        }
    };
}

/// Reading one table parameter as the Rust type of its field.
trait ReadTyped: Sized {
    fn read(config: &Config, spec: &ParamSpec) -> Result<Self, ConfigError>;
}

impl ReadTyped for i32 {
    fn read(config: &Config, spec: &ParamSpec) -> Result<Self, ConfigError> {
        match spec.param_type {
            ParamType::Time => config.get_time(spec.name, default_text(spec), spec.min, spec.max),
            _ => {
                let default = default_text(spec).parse::<i32>().unwrap_or(0);
                config.get_int(spec.name, default, spec.min, spec.max)
            }
        }
    }
}

impl ReadTyped for bool {
    fn read(config: &Config, spec: &ParamSpec) -> Result<Self, ConfigError> {
        config.get_bool_expr(spec.name, default_text(spec))
    }
}

impl ReadTyped for Vec<u8> {
    fn read(config: &Config, spec: &ParamSpec) -> Result<Self, ConfigError> {
        config.get_table_str(spec)
    }
}

fn default_text(spec: &ParamSpec) -> &'static str {
    match spec.default {
        DefaultValue::Text(text) => text,
        DefaultValue::MyHostname | DefaultValue::MyDomain => "",
    }
}

// Not inlined: read_all calls it once per parameter, and inlined copies made read_all alone
// ~70 KiB of start-up-only code (more of the binary mapped into every queue manager).
#[inline(never)]
fn read_typed<T: ReadTyped>(config: &Config, name: &str) -> Result<T, ConfigError> {
    let spec = param_spec(name)
        .ok_or_else(|| ConfigError::Invalid(format!("unknown parameter {name}")))?;
    T::read(config, spec)
}

use DefaultValue::{MyDomain, MyHostname, Text};

param_table! {
    [Generic]
    /// Postfix compatibility level (`0` by default; Debian's main.cf sets `3.6`).
    compatibility_level: Str = Text("0"), 0, 0;
    mail_version: Str = Text("3.7.11"), 1, 0;
    syslog_facility: Str = Text("mail"), 1, 0;
    multi_instance_name: Str = Text(""), 0, 0;
    /// Non-empty: log through postlogd instead of syslog.
    maillog_file: Str = Text(""), 0, 0;
    maillog_file_prefixes: Str = Text("/var, /dev/stdout"), 1, 0;
    postlog_service_name: Str = Text("postlog"), 1, 0;
    smtputf8_enable: Bool = Text("${{$compatibility_level} <level {1} ? {no} : {yes}}"), 0, 0;
    myhostname: Str = MyHostname, 1, 0;
    mydomain: Str = MyDomain, 1, 0;
    mail_name: Str = Text("Postfix"), 1, 0;
    syslog_name: Str = Text("${multi_instance_name?{$multi_instance_name}:{postfix}}"), 1, 0;
    mail_owner: Str = Text("postfix"), 1, 0;
    setgid_group: Str = Text("postdrop"), 1, 0;
    default_privs: Str = Text("nobody"), 1, 0;
    mydestination: Str = Text("$myhostname, localhost.$mydomain, localhost"), 0, 0;
    myorigin: Str = Text("$myhostname"), 1, 0;
    relayhost: Str = Text(""), 0, 0;
    daemon_directory: Str = Text("/usr/lib/postfix/sbin"), 1, 0;
    command_directory: Str = Text("/usr/sbin"), 1, 0;
    data_directory: Str = Text("/var/lib/postfix"), 1, 0;
    meta_directory: Str = Text("/etc/postfix"), 1, 0;
    queue_directory: Str = Text("/var/spool/postfix"), 1, 0;
    double_bounce_sender: Str = Text("double-bounce"), 1, 0;
    hash_queue_names: Str = Text("deferred, defer"), 1, 0;
    recipient_delimiter: Str = Text(""), 0, 0;
    relay_domains: Str = Text("${{$compatibility_level} <level {2} ? {$mydestination} : {}}"), 0, 0;
    fast_flush_domains: Str = Text("$relay_domains"), 0, 0;
    /// Lists whose `example.com` also matches `sub.example.com` (match_parent_style).
    parent_domain_matches_subdomains: Str = Text("debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains,smtpd_access_maps"), 0, 0;
    default_verp_delimiters: Str = Text("+="), 2, 2;
    verp_delimiter_filter: Str = Text("-=+"), 1, 0;
    bounce_service_name: Str = Text("bounce"), 1, 0;
    defer_service_name: Str = Text("defer"), 1, 0;
    rewrite_service_name: Str = Text("rewrite"), 1, 0;
    error_service_name: Str = Text("error"), 1, 0;
    /// Reached as `public/$flush_service_name` (all other services are `private/`).
    flush_service_name: Str = Text("flush"), 1, 0;
    address_verify_service_name: Str = Text("verify"), 1, 0;
    trace_service_name: Str = Text("trace"), 1, 0;
    /// Where `proxy:` tables are looked up (`private/$proxymap_service_name`).
    proxymap_service_name: Str = Text("proxymap"), 1, 0;
    info_log_address_format: Str = Text("external"), 1, 0;
    /// Target for flow-control tokens.
    default_process_limit: Int = Text("100"), 1, 0;
    max_use: Int = Text("100"), 1, 0;
    /// Non-zero: queue files are renamed into `saved/` instead of unlinked (global/remove.c).
    dont_remove: Int = Text("0"), 0, 0;
    hash_queue_depth: Int = Text("1"), 1, 0;
    delay_logging_resolution_limit: Int = Text("2"), 0, 6;
    soft_bounce: Bool = Text("no"), 0, 0;
    owner_request_special: Bool = Text("yes"), 0, 0;
    address_verify_negative_cache: Bool = Text("yes"), 0, 0;
    helpful_warnings: Bool = Text("yes"), 0, 0;
    enable_long_queue_ids: Bool = Text("no"), 0, 0;
    max_idle: Time = Text("100s"), 1, 0;
    /// Replaced by qmgr_ipc_timeout in post-init ([`Params::apply_post_init`]).
    ipc_timeout: Time = Text("3600s"), 1, 0;
    ipc_idle: Time = Text("5s"), 1, 0;
    ipc_ttl: Time = Text("1000s"), 1, 0;
    /// Delivery agent connect/reply timers.
    daemon_timeout: Time = Text("18000s"), 1, 0;
    /// 0..10 s; > 0 enables flow-control tokens.
    in_flow_delay: Time = Text("1s"), 0, 10;

    [Oqmgr]
    qmgr_message_active_limit: Int = Text("20000"), 1, 0;
    qmgr_message_recipient_limit: Int = Text("20000"), 1, 0;
    initial_destination_concurrency: Int = Text("5"), 1, 0;
    default_destination_concurrency_limit: Int = Text("20"), 0, 0;
    default_destination_recipient_limit: Int = Text("50"), 0, 0;
    qmgr_fudge_factor: Int = Text("100"), 10, 100;
    local_destination_recipient_limit: Int = Text("1"), 0, 0;
    local_destination_concurrency_limit: Int = Text("2"), 0, 0;
    default_destination_concurrency_failed_cohort_limit: Int = Text("1"), 0, 0;
    address_verify_pending_request_limit: Int = Text("5000"), 1, 0;
    defer_transports: Str = Text(""), 0, 0;
    default_destination_concurrency_positive_feedback: Str = Text("1"), 1, 0;
    default_destination_concurrency_negative_feedback: Str = Text("1"), 1, 0;
    default_filter_nexthop: Str = Text(""), 0, 0;
    disable_verp_bounces: Bool = Text("no"), 0, 0;
    destination_concurrency_feedback_debug: Bool = Text("no"), 0, 0;
    confirm_delay_cleared: Bool = Text("no"), 0, 0;
    queue_run_delay: Time = Text("300s"), 1, 0;
    minimal_backoff_time: Time = Text("300s"), 1, 0;
    maximal_backoff_time: Time = Text("4000s"), 1, 0;
    maximal_queue_lifetime: Time = Text("5d"), 0, 8640000;
    bounce_queue_lifetime: Time = Text("5d"), 0, 8640000;
    transport_retry_time: Time = Text("60s"), 1, 0;
    qmgr_clog_warn_time: Time = Text("300s"), 0, 0;
    default_transport_rate_delay: Time = Text("0s"), 0, 0;
    default_destination_rate_delay: Time = Text("0s"), 0, 0;
    qmgr_daemon_timeout: Time = Text("1000s"), 1, 0;
    qmgr_ipc_timeout: Time = Text("60s"), 1, 0;

    [Extension]
    /// Percent (0..50) by which a deferred message's back-off is randomly stretched or
    /// shrunk; 0 keeps the C daemon's back-off.
    oqmgr_backoff_jitter: Int = Text("0"), 0, 50;
    /// oqmgr's own (not Postfix's; `postconf` calls it unused): keep what was learned about
    /// destinations across a restart, in `$data_directory/oqmgr-memory`.
    oqmgr_remember_destinations: Bool = Text("no"), 0, 0;
}

/// The table row for `name`.
pub fn param_spec(name: &str) -> Option<&'static ParamSpec> {
    PARAM_TABLE.iter().find(|spec| spec.name == name)
}

/// syslog facility names Postfix accepts on Linux (util/msg_syslog.c).
const SYSLOG_FACILITIES: &[&[u8]] = &[
    b"auth",
    b"authpriv",
    b"cron",
    b"daemon",
    b"ftp",
    b"kern",
    b"lpr",
    b"mail",
    b"news",
    b"syslog",
    b"user",
    b"uucp",
    b"local0",
    b"local1",
    b"local2",
    b"local3",
    b"local4",
    b"local5",
    b"local6",
    b"local7",
];

impl Params {
    /// Reads every parameter (fatal errors as the C daemon words them), then applies the
    /// sanity checks of mail_params_init. Post-init adjustments are separate:
    /// [`Params::apply_post_init`].
    pub fn from_config(config: &Config) -> Result<Params, ConfigError> {
        // Checked first, as other defaults compare against it.
        let level: Vec<u8> = read_typed(config, "compatibility_level")?;
        if super::expand::compatibility_level(&level).is_none() {
            return Err(ConfigError::Invalid(format!(
                "malformed compatibility level syntax: \"{}\"",
                String::from_utf8_lossy(&level)
            )));
        }
        let params = Params::read_all(config)?;
        params.validate(config)?;
        Ok(params)
    }

    fn validate(&self, config: &Config) -> Result<(), ConfigError> {
        let show = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let main_cf = format!("{}/main.cf", config.config_dir());
        if !SYSLOG_FACILITIES.contains(&self.syslog_facility.as_slice()) {
            return Err(ConfigError::Invalid(format!(
                "file {main_cf}: parameter syslog_facility: unrecognized value: {}",
                show(&self.syslog_facility)
            )));
        }
        if self.myhostname.eq_ignore_ascii_case(&self.relayhost) {
            return Err(ConfigError::Invalid(format!(
                "myhostname and relayhost parameter settings must not be identical: {}",
                show(&self.myhostname)
            )));
        }
        if self
            .myorigin
            .iter()
            .any(|b| matches!(b, b',' | b' ' | b'\t' | b'\r' | b'\n'))
        {
            return Err(ConfigError::Invalid(format!(
                "myorigin parameter setting must not contain multiple values: {}",
                show(&self.myorigin)
            )));
        }
        let delims = &self.default_verp_delimiters;
        let problem = if delims.len() != 2 {
            Some("bad VERP delimiter character count")
        } else if !self.verp_delimiter_filter.contains(&delims[0]) {
            Some("bad first VERP delimiter character")
        } else if !self.verp_delimiter_filter.contains(&delims[1]) {
            Some("bad second VERP delimiter character")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ConfigError::Invalid(format!(
                "file {main_cf}: parameters default_verp_delimiters and verp_delimiter_filter: {problem}"
            )));
        }
        // The table's minimum 0 means "no bound": a negative jitter is refused here.
        if self.oqmgr_backoff_jitter < 0 {
            return Err(ConfigError::Value(super::value::ValueError::IntTooSmall {
                name: "oqmgr_backoff_jitter".to_string(),
                value: self.oqmgr_backoff_jitter,
                min: 0,
            }));
        }
        Ok(())
    }

    /// qmgr_post_init(): raise the recipient limit to the active limit, lower the bounce
    /// lifetime to the queue lifetime (each with its warning), and use qmgr_ipc_timeout as
    /// the process-wide ipc_timeout.
    pub fn apply_post_init(&mut self) -> Vec<ParamWarning> {
        let mut warnings = Vec::new();
        if self.qmgr_message_recipient_limit < self.qmgr_message_active_limit {
            warnings.push(ParamWarning::RecipientLimitRaised);
            self.qmgr_message_recipient_limit = self.qmgr_message_active_limit;
        }
        if self.bounce_queue_lifetime > self.maximal_queue_lifetime {
            warnings.push(ParamWarning::BounceLifetimeLowered);
            self.bounce_queue_lifetime = self.maximal_queue_lifetime;
        }
        self.ipc_timeout = self.qmgr_ipc_timeout;
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(main_cf: &str) -> Config {
        Config::from_main_cf("/etc/postfix", main_cf.as_bytes(), &[] as &[&str], b"vm").unwrap()
    }

    #[test]
    fn table_has_every_oqmgr_parameter_once() {
        let oqmgr = PARAM_TABLE
            .iter()
            .filter(|s| s.owner == ParamOwner::Oqmgr)
            .count();
        assert_eq!(oqmgr, 28);
        let extensions = PARAM_TABLE
            .iter()
            .filter(|s| s.owner == ParamOwner::Extension)
            .count();
        assert_eq!(extensions, 2);
        for spec in PARAM_TABLE {
            let same = PARAM_TABLE.iter().filter(|s| s.name == spec.name).count();
            assert_eq!(same, 1, "{}", spec.name);
        }
        let params = Params::from_config(&config("")).unwrap();
        assert_eq!(params.to_table().len(), PARAM_TABLE.len());
    }

    #[test]
    fn extensions_are_named_oqmgr_and_bounded() {
        for spec in PARAM_TABLE {
            let ours = spec.name.starts_with("oqmgr_");
            assert_eq!(ours, spec.owner == ParamOwner::Extension, "{}", spec.name);
        }
        let p = Params::from_config(&config("")).unwrap();
        assert_eq!(p.oqmgr_backoff_jitter, 0);
        let p = Params::from_config(&config("oqmgr_backoff_jitter = 50\n")).unwrap();
        assert_eq!(p.oqmgr_backoff_jitter, 50);
        let err = Params::from_config(&config("oqmgr_backoff_jitter = 51\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid oqmgr_backoff_jitter parameter value 51 > 50"
        );
        let err = Params::from_config(&config("oqmgr_backoff_jitter = -1\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid oqmgr_backoff_jitter parameter value -1 < 0"
        );
    }

    #[test]
    fn defaults() {
        let p = Params::from_config(&config("")).unwrap();
        assert_eq!(p.qmgr_message_active_limit, 20000);
        assert_eq!(p.address_verify_pending_request_limit, 5000);
        assert_eq!(p.maximal_queue_lifetime, 5 * 86400);
        assert_eq!(p.minimal_backoff_time, 300);
        assert_eq!(p.myhostname, b"vm.localdomain");
        assert_eq!(p.mydomain, b"localdomain");
        assert_eq!(p.myorigin, b"vm.localdomain");
        assert_eq!(p.syslog_name, b"postfix");
        assert_eq!(
            p.relay_domains,
            b"vm.localdomain, localhost.localdomain, localhost"
        );
        assert!(!p.smtputf8_enable);
        assert_eq!(p.in_flow_delay, 1);
        let p = Params::from_config(&config("compatibility_level = 3.6\n")).unwrap();
        assert!(p.smtputf8_enable);
        assert_eq!(p.relay_domains, b"");
        assert_eq!(p.fast_flush_domains, b"");
    }

    #[test]
    fn units_and_bounds() {
        let p = Params::from_config(&config(
            "maximal_queue_lifetime = 3\nbounce_queue_lifetime = 1h\nqueue_run_delay = 2m\n",
        ))
        .unwrap();
        assert_eq!(p.maximal_queue_lifetime, 3 * 86400);
        assert_eq!(p.bounce_queue_lifetime, 3600);
        assert_eq!(p.queue_run_delay, 120);
        let err = Params::from_config(&config("qmgr_fudge_factor = 5\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid qmgr_fudge_factor parameter value 5 < 10"
        );
        let err = Params::from_config(&config("maximal_queue_lifetime = 101\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid maximal_queue_lifetime: 8726400 (max 8640000)"
        );
        let err = Params::from_config(&config("in_flow_delay = 11s\n")).unwrap_err();
        assert_eq!(err.to_string(), "invalid in_flow_delay: 11 (max 10)");
        let err = Params::from_config(&config("soft_bounce = maybe\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad boolean configuration: soft_bounce = maybe"
        );
        let err = Params::from_config(&config(
            "default_destination_concurrency_positive_feedback =\n",
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad string length 0 < 1: default_destination_concurrency_positive_feedback = "
        );
    }

    #[test]
    fn init_checks() {
        let cases = [
            ("compatibility_level = x\n", "malformed compatibility level syntax: \"x\""),
            ("syslog_facility = nope\n", "file /etc/postfix/main.cf: parameter syslog_facility: unrecognized value: nope"),
            ("relayhost = VM.localdomain\n", "myhostname and relayhost parameter settings must not be identical: vm.localdomain"),
            ("myorigin = a, b\n", "myorigin parameter setting must not contain multiple values: a, b"),
            ("default_verp_delimiters = +x\n", "file /etc/postfix/main.cf: parameters default_verp_delimiters and verp_delimiter_filter: bad second VERP delimiter character"),
        ];
        for (main_cf, want) in cases {
            assert_eq!(
                Params::from_config(&config(main_cf))
                    .unwrap_err()
                    .to_string(),
                want
            );
        }
    }

    #[test]
    fn post_init_adjustments() {
        let mut p = Params::from_config(&config(
            "qmgr_message_recipient_limit = 10\nqmgr_message_active_limit = 100\nbounce_queue_lifetime = 6d\nmaximal_queue_lifetime = 2d\n",
        ))
        .unwrap();
        let warnings: Vec<String> = p.apply_post_init().iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings,
            [
                "qmgr_message_recipient_limit is smaller than qmgr_message_active_limit - adjusting qmgr_message_recipient_limit",
                "bounce_queue_lifetime is larger than maximal_queue_lifetime - adjusting bounce_queue_lifetime",
            ]
        );
        assert_eq!(p.qmgr_message_recipient_limit, 100);
        assert_eq!(p.bounce_queue_lifetime, 2 * 86400);
        assert_eq!(p.ipc_timeout, 60);
        let mut p = Params::from_config(&config("")).unwrap();
        assert!(p.apply_post_init().is_empty());
    }

    #[test]
    fn dump_format() {
        let p = Params::from_config(&config("")).unwrap();
        let table = p.to_table();
        let find = |name: &str| {
            table
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
                .unwrap()
        };
        assert_eq!(find("maximal_queue_lifetime"), "432000s");
        assert_eq!(find("soft_bounce"), "no");
        assert_eq!(find("hash_queue_names"), "deferred, defer");
        assert_eq!(find("qmgr_fudge_factor"), "100");
    }
}
