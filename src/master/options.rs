//! Postfix's generic daemon options, as master(8) passes them to a trigger service.
//!
//! master builds argv as `<command> -l -t unix -u [-n name] [-o name=value]... [-v]`; option
//! parsing stops at the first word that is not an option (Postfix asks getopt for that), and
//! leftover words are refused later, when the first trigger arrives, as the C daemon does.

use std::fmt;

/// How the trigger listener on fd 6 is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    /// A listening UNIX stream socket: accept, one read, close.
    Unix,
    /// A FIFO opened read-write: read directly.
    Fifo,
    /// A socket over which master passes accepted connections.
    Pass,
}

impl ServiceType {
    fn parse(word: &str) -> Option<ServiceType> {
        match word.to_ascii_lowercase().as_str() {
            "unix" => Some(ServiceType::Unix),
            "fifo" => Some(ServiceType::Fifo),
            "pass" => Some(ServiceType::Pass),
            _ => None,
        }
    }
}

/// The generic daemon options, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonOptions {
    /// `basename(argv[0])`: the logging process name (`qmgr`, `oqmgr`).
    pub process_name: String,
    /// `-n`, else the process name.
    pub service_name: String,
    /// `-c`: chroot into queue_directory.
    pub chroot: bool,
    /// Cleared by `-d`: daemon mode refuses a terminal on stdin.
    pub daemon_mode: bool,
    /// `-D`: run debugger_command on ourselves (accepted, ignored).
    pub debug_me: bool,
    /// `-l`: master runs at most one of us (required: this is a solitary service).
    pub process_limit_one: bool,
    /// `-z`: process limit 0.
    pub process_limit_zero: bool,
    /// `-o name=value` (and `-i`/`-m` as `max_idle=`/`max_use=`), in order, unsplit (the
    /// config layer splits and applies them).
    pub overrides: Vec<String>,
    /// `-s`: the number of listen descriptors starting at fd 6.
    pub socket_count: u32,
    /// `-S`: stand-alone mode, one trigger from stdin.
    pub stand_alone: bool,
    /// `-t`: the listener type; required unless `-S` (set by [`DaemonOptions::check_service`]).
    pub service_type: Option<ServiceType>,
    /// The `-t` word as given.
    transport_word: Option<String>,
    /// `-u`: drop privileges to mail_owner.
    pub drop_privileges: bool,
    /// `-v` count.
    pub verbose: u32,
    /// `-V`: also log to stderr.
    pub log_to_stderr: bool,
    /// Words after the options; any one of them is fatal at the first trigger.
    pub leftover: Vec<String>,
}

/// A refusal, worded as the C trigger server's `fatal:` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionError {
    /// An option letter the trigger server does not know, or one missing its argument.
    InvalidOption(char),
    /// `-s` with a non-positive or non-numeric count.
    InvalidSocketCount(String),
    /// Neither `-t` nor `-S`.
    NoTransportType,
    /// `-t` with an unknown type.
    UnsupportedTransportType(String),
    /// A solitary service started without `-l`.
    RequiresProcessLimitOne(String),
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::InvalidOption(c) => write!(f, "invalid option: {c}"),
            OptionError::InvalidSocketCount(s) => write!(f, "invalid socket_count: {s}"),
            OptionError::NoTransportType => write!(f, "no transport type specified"),
            OptionError::UnsupportedTransportType(t) => {
                write!(f, "unsupported transport type: {t}")
            }
            OptionError::RequiresProcessLimitOne(s) => {
                write!(f, "service {s} requires a process limit of 1")
            }
        }
    }
}

impl std::error::Error for OptionError {}

/// Options that take an argument, as in the trigger server's option string.
const WITH_ARGUMENT: &[u8] = b"imnost";
/// Options without one.
const FLAGS: &[u8] = b"cdDlSuvVz";

/// Basename of argv[0], as Postfix's process name.
fn basename(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

impl DaemonOptions {
    /// The process name Postfix logs under: basename of argv[0].
    pub fn process_name_of(argv0: &str) -> String {
        match basename(argv0) {
            "" => "oqmgr".to_string(),
            name => name.to_string(),
        }
    }

    /// Parses argv (including argv[0]) with POSIX getopt semantics: clustered flags (`-lu`),
    /// attached or separate arguments (`-tunix`, `-t unix`), `--` ends the options, and the
    /// first non-option word ends them too.
    pub fn parse<S: AsRef<str>>(argv: &[S]) -> Result<DaemonOptions, OptionError> {
        let process_name =
            Self::process_name_of(argv.first().map(|s| s.as_ref()).unwrap_or("oqmgr"));
        let mut opts = DaemonOptions {
            service_name: process_name.clone(),
            process_name,
            chroot: false,
            daemon_mode: true,
            debug_me: false,
            process_limit_one: false,
            process_limit_zero: false,
            overrides: Vec::new(),
            socket_count: 1,
            stand_alone: false,
            service_type: None,
            transport_word: None,
            drop_privileges: false,
            verbose: 0,
            log_to_stderr: false,
            leftover: Vec::new(),
        };
        let mut i = 1;
        while i < argv.len() {
            let word = argv[i].as_ref();
            if word == "--" {
                i += 1;
                break;
            }
            if word.len() < 2 || !word.starts_with('-') {
                break;
            }
            let letters = &word.as_bytes()[1..];
            let mut j = 0;
            while j < letters.len() {
                let c = letters[j];
                if FLAGS.contains(&c) {
                    match c {
                        b'c' => opts.chroot = true,
                        b'd' => opts.daemon_mode = false,
                        b'D' => opts.debug_me = true,
                        b'l' => opts.process_limit_one = true,
                        b'S' => opts.stand_alone = true,
                        b'u' => opts.drop_privileges = true,
                        b'v' => opts.verbose = opts.verbose.saturating_add(1),
                        b'V' => opts.log_to_stderr = true,
                        _ => opts.process_limit_zero = true, // 'z'
                    }
                    j += 1;
                    continue;
                }
                if !WITH_ARGUMENT.contains(&c) {
                    return Err(OptionError::InvalidOption(char::from(c)));
                }
                // The argument is the rest of this word, or else the next word.
                let value = if j + 1 < letters.len() {
                    String::from_utf8_lossy(&letters[j + 1..]).into_owned()
                } else {
                    i += 1;
                    match argv.get(i) {
                        Some(v) => v.as_ref().to_string(),
                        None => return Err(OptionError::InvalidOption(char::from(c))),
                    }
                };
                match c {
                    // As mail_conf_update(max_idle|max_use): main.cf overrides in argv order,
                    // checked with every other parameter (a queue manager ignores both).
                    b'i' => opts.overrides.push(format!("max_idle={value}")),
                    b'm' => opts.overrides.push(format!("max_use={value}")),
                    b'n' => opts.service_name = value,
                    b'o' => opts.overrides.push(value),
                    b's' => {
                        let n = i64::from(crate::cnum::atoi(value.as_bytes()));
                        if n <= 0 || n > i64::from(u32::MAX) {
                            return Err(OptionError::InvalidSocketCount(value));
                        }
                        opts.socket_count = n as u32;
                    }
                    _ => opts.transport_word = Some(value), // 't'
                }
                break;
            }
            i += 1;
        }
        opts.leftover = argv[i.min(argv.len())..]
            .iter()
            .map(|s| s.as_ref().to_string())
            .collect();
        Ok(opts)
    }

    /// The checks the trigger server makes once the configuration is read and a terminal on
    /// stdin was refused, in its order: the solitary-service check, then the transport type.
    pub fn check_service(&mut self) -> Result<(), OptionError> {
        if self.stand_alone {
            return Ok(());
        }
        if !self.process_limit_one {
            return Err(OptionError::RequiresProcessLimitOne(
                self.service_name.clone(),
            ));
        }
        let word = self
            .transport_word
            .clone()
            .ok_or(OptionError::NoTransportType)?;
        self.service_type =
            Some(ServiceType::parse(&word).ok_or(OptionError::UnsupportedTransportType(word))?);
        Ok(())
    }

    /// The C daemon's refusal of a leftover argv word, made when the first trigger arrives.
    pub fn unexpected_argument(&self) -> Option<String> {
        self.leftover
            .first()
            .map(|w| format!("unexpected command-line argument: {w}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_master_argv_is_accepted() {
        let mut o = DaemonOptions::parse(&["qmgr", "-l", "-t", "unix", "-u"]).unwrap();
        o.check_service().unwrap();
        assert_eq!(o.process_name, "qmgr");
        assert_eq!(o.service_name, "qmgr");
        assert_eq!(o.service_type, Some(ServiceType::Unix));
        assert!(o.process_limit_one && o.drop_privileges && o.daemon_mode && !o.chroot);
        assert!(o.leftover.is_empty());
        assert_eq!(o.unexpected_argument(), None);
    }

    #[test]
    fn our_command_in_a_qmgr_row_gets_the_service_name_from_dash_n() {
        let mut o = DaemonOptions::parse(&[
            "/usr/lib/postfix/sbin/oqmgr",
            "-l",
            "-n",
            "qmgr",
            "-t",
            "fifo",
            "-u",
            "-c",
            "-o",
            "qmgr_message_active_limit=100",
            "-oin_flow_delay=0",
            "-v",
            "-v",
        ])
        .unwrap();
        o.check_service().unwrap();
        assert_eq!(o.process_name, "oqmgr");
        assert_eq!(o.service_name, "qmgr");
        assert_eq!(o.service_type, Some(ServiceType::Fifo));
        assert!(o.chroot);
        assert_eq!(o.verbose, 2);
        assert_eq!(
            o.overrides,
            vec!["qmgr_message_active_limit=100", "in_flow_delay=0"]
        );
    }

    #[test]
    fn clustered_flags_and_attached_arguments() {
        let mut o = DaemonOptions::parse(&["qmgr", "-lutUNIX", "-dV"]).unwrap();
        o.check_service().unwrap();
        assert_eq!(o.service_type, Some(ServiceType::Unix));
        assert!(o.drop_privileges && !o.daemon_mode && o.log_to_stderr);
    }

    #[test]
    fn options_stop_at_the_first_word_and_leftovers_are_refused_later() {
        let o = DaemonOptions::parse(&["qmgr", "-l", "-t", "unix", "extra", "-u"]).unwrap();
        assert!(!o.drop_privileges);
        assert_eq!(o.leftover, vec!["extra", "-u"]);
        assert_eq!(
            o.unexpected_argument().unwrap(),
            "unexpected command-line argument: extra"
        );
    }

    #[test]
    fn refusals_have_the_c_wording() {
        let service = |argv: &[&str]| {
            let mut o = DaemonOptions::parse(argv).unwrap();
            o.check_service().unwrap_err().to_string()
        };
        assert_eq!(
            service(&["qmgr", "-t", "unix"]),
            "service qmgr requires a process limit of 1"
        );
        assert_eq!(
            service(&["oqmgr", "-n", "qmgr", "-z"]),
            "service qmgr requires a process limit of 1"
        );
        assert_eq!(service(&["qmgr", "-l"]), "no transport type specified");
        assert_eq!(
            service(&["qmgr", "-l", "-t", "inet"]),
            "unsupported transport type: inet"
        );
        let e = DaemonOptions::parse(&["qmgr", "-l", "-x"]).unwrap_err();
        assert_eq!(e.to_string(), "invalid option: x");
        let e = DaemonOptions::parse(&["qmgr", "-l", "-s", "0", "-t", "unix"]).unwrap_err();
        assert_eq!(e.to_string(), "invalid socket_count: 0");
        let e = DaemonOptions::parse(&["qmgr", "-l", "-t"]).unwrap_err();
        assert_eq!(e.to_string(), "invalid option: t");
    }

    #[test]
    fn stand_alone_needs_no_type_or_limit() {
        let mut o = DaemonOptions::parse(&["qmgr", "-S"]).unwrap();
        o.check_service().unwrap();
        assert!(o.stand_alone);
        assert_eq!(o.service_type, None);
    }

    #[test]
    fn dash_i_and_m_are_max_idle_and_max_use_in_argv_order() {
        let o = DaemonOptions::parse(&["qmgr", "-o", "max_use=5", "-m", "0", "-i", "7s"]).unwrap();
        assert_eq!(o.overrides, vec!["max_use=5", "max_use=0", "max_idle=7s"]);
    }

    #[test]
    fn socket_count_uses_atoi() {
        let o = DaemonOptions::parse(&["qmgr", "-l", "-t", "unix", "-s", "2x"]).unwrap();
        assert_eq!(o.socket_count, 2);
    }
}
