//! oqmgrctl(1): asks the running queue manager of a Postfix instance for its live state.
//!
//! The program finds the instance as every Postfix command does (`-c`, else `MAIL_CONFIG`,
//! else /etc/postfix), reads `queue_directory` and `mail_owner` from its main.cf, connects
//! to `<queue_directory>/private/oqmgr-status` (see [`crate::proto::status`]), sends
//! `{request=status}` and reads the answer into a [`Snapshot`]. Then it prints it:
//! - [`render`]: a table for people, like qshape;
//! - [`json`]: one JSON object, written by hand (no serde at run time);
//! - [`metrics`]: the Prometheus text exposition format 0.0.4.
//!
//! Only root and the mail_owner can reach `private/`, so the kernel does the access check.

pub mod json;
pub mod metrics;
pub mod render;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{resolve_config_dir, Config};
use crate::proto::attr::{AttrDecoder, AttrMessage};
use crate::proto::status::{Snapshot, SnapshotError, SnapshotReader, StatusRequest, STATUS_SOCKET};

/// The synopsis, printed with every usage error.
pub const USAGE: &str = "usage: oqmgrctl [-c config_dir] status [--json] | metrics";

/// How long the whole exchange may take (each read and write, and all of them together).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// An answer larger than this is refused: the server caps its destination list, so only a
/// broken or foreign server sends more.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// What to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The table for people.
    Status,
    /// `status --json`.
    StatusJson,
    /// The Prometheus exposition.
    Metrics,
    /// `-h`/`--help`: the synopsis on standard output.
    Help,
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `-c config_dir`, which overrides `MAIL_CONFIG`.
    pub config_dir: Option<PathBuf>,
    pub command: Command,
}

impl Args {
    /// Parses the arguments after the program name: options, then the command and its own
    /// options. An `Err` is the problem, to be printed before [`USAGE`].
    pub fn parse(args: &[OsString]) -> Result<Args, String> {
        let mut config_dir = None;
        let mut rest = args.iter();
        let command = loop {
            let Some(arg) = rest.next() else {
                return Err("missing command".into());
            };
            match arg.as_bytes() {
                b"-h" | b"--help" => {
                    return Ok(Args {
                        config_dir,
                        command: Command::Help,
                    })
                }
                b"-c" => match rest.next() {
                    Some(dir) => config_dir = Some(PathBuf::from(dir)),
                    None => return Err("option -c needs a config_dir".into()),
                },
                [b'-', b'c', dir @ ..] => {
                    config_dir = Some(PathBuf::from(OsStr::from_bytes(dir)));
                }
                [b'-', ..] => return Err(format!("unknown option {}", arg.to_string_lossy())),
                _ => break arg,
            }
        };
        let options: Vec<&OsString> = rest.collect();
        let command = match (command.to_str(), options.as_slice()) {
            (Some("status"), []) => Command::Status,
            (Some("status"), [json]) if json.as_os_str() == "--json" => Command::StatusJson,
            (Some("metrics"), []) => Command::Metrics,
            (Some("status" | "metrics"), [extra, ..]) => {
                return Err(format!("unexpected argument {}", extra.to_string_lossy()))
            }
            _ => return Err(format!("unknown command {}", command.to_string_lossy())),
        };
        Ok(Args {
            config_dir,
            command,
        })
    }
}

/// The Postfix instance being asked: what its main.cf says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub config_dir: PathBuf,
    pub queue_directory: PathBuf,
    pub mail_owner: String,
}

impl Instance {
    /// Reads `<config_dir>/main.cf`: `-c` first, else `MAIL_CONFIG`, else /etc/postfix.
    pub fn load(
        config_dir: Option<&Path>,
        mail_config_env: Option<&OsStr>,
    ) -> Result<Instance, CtlError> {
        let config_dir = match config_dir {
            Some(dir) => dir.to_path_buf(),
            None => resolve_config_dir(mail_config_env),
        };
        let no_overrides: &[&[u8]] = &[];
        let config = Config::load(&config_dir, no_overrides)
            .map_err(|err| CtlError::Config(err.to_string()))?;
        let get = |name: &str| -> Result<String, CtlError> {
            let value = config
                .get(name)
                .map_err(|err| CtlError::Config(err.to_string()))?
                .unwrap_or_default();
            Ok(String::from_utf8_lossy(&value).into_owned())
        };
        Ok(Instance {
            queue_directory: PathBuf::from(get("queue_directory")?),
            mail_owner: get("mail_owner")?,
            config_dir,
        })
    }

    /// `<queue_directory>/private/oqmgr-status`.
    pub fn status_socket(&self) -> PathBuf {
        self.queue_directory.join(STATUS_SOCKET)
    }
}

/// Why oqmgrctl gives up; `Display` is the text after `oqmgrctl: `.
#[derive(Debug)]
pub enum CtlError {
    /// A bad command line (exit status 2).
    Usage(String),
    /// main.cf could not be read or expanded.
    Config(String),
    /// The kernel refused the connection: not root and not the mail_owner.
    PermissionDenied { mail_owner: String },
    /// No socket, or nobody listening on it.
    NotRunning { socket: PathBuf },
    /// Another connect failure.
    Connect { socket: PathBuf, reason: String },
    /// No complete answer within [`TIMEOUT`].
    Timeout { socket: PathBuf },
    /// A read or write failed.
    Io { socket: PathBuf, reason: String },
    /// The answer does not follow the status protocol.
    Malformed { socket: PathBuf, detail: String },
    /// The server closed the connection before `{kind=end}`.
    Truncated { socket: PathBuf },
    /// Standard output could not be written.
    Output(io::Error),
}

impl CtlError {
    /// The process exit status: 2 for usage errors, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Usage(problem) => write!(f, "{problem}"),
            CtlError::Config(text) => write!(f, "fatal: {text}"),
            CtlError::PermissionDenied { mail_owner } => write!(
                f,
                "permission denied: only root and the mail_owner ({mail_owner}) may ask the queue manager"
            ),
            CtlError::NotRunning { socket } => write!(
                f,
                "no queue manager answers on {}: oqmgr (this Rust queue manager) is not running for this instance, or the qmgr service runs Postfix's C qmgr/oqmgr, which has no status socket",
                socket.display()
            ),
            CtlError::Connect { socket, reason } => {
                write!(f, "connect to {}: {reason}", socket.display())
            }
            CtlError::Timeout { socket } => write!(
                f,
                "the queue manager did not answer on {} within {} seconds",
                socket.display(),
                TIMEOUT.as_secs()
            ),
            CtlError::Io { socket, reason } => write!(f, "{}: {reason}", socket.display()),
            CtlError::Malformed { socket, detail } => write!(
                f,
                "malformed answer from the queue manager on {}: {detail}",
                socket.display()
            ),
            CtlError::Truncated { socket } => write!(
                f,
                "the queue manager on {} closed the connection before its answer was complete",
                socket.display()
            ),
            CtlError::Output(err) => write!(f, "write to standard output: {err}"),
        }
    }
}

impl std::error::Error for CtlError {}

fn is_timeout(err: &io::Error) -> bool {
    matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Asks the queue manager listening on `socket` for a snapshot, within `timeout` in all.
/// `mail_owner` only words the permission error.
pub fn query(socket: &Path, mail_owner: &str, timeout: Duration) -> Result<Snapshot, CtlError> {
    let mut stream = UnixStream::connect(socket).map_err(|err| match err.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => CtlError::PermissionDenied {
            mail_owner: mail_owner.to_string(),
        },
        Some(libc::ENOENT | libc::ECONNREFUSED | libc::ENOTDIR) => CtlError::NotRunning {
            socket: socket.to_path_buf(),
        },
        _ => CtlError::Connect {
            socket: socket.to_path_buf(),
            reason: crate::maillog::strerror(&err),
        },
    })?;
    let io_error = |err: io::Error| {
        if is_timeout(&err) {
            CtlError::Timeout {
                socket: socket.to_path_buf(),
            }
        } else {
            CtlError::Io {
                socket: socket.to_path_buf(),
                reason: crate::maillog::strerror(&err),
            }
        }
    };
    let deadline = Instant::now() + timeout;
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| CtlError::Timeout {
                socket: socket.to_path_buf(),
            })
    };
    stream
        .set_write_timeout(Some(remaining()?))
        .map_err(io_error)?;
    stream
        .write_all(&StatusRequest.to_bytes())
        .map_err(io_error)?;

    let malformed = |detail: String| CtlError::Malformed {
        socket: socket.to_path_buf(),
        detail,
    };
    let mut decoder = AttrDecoder::default();
    let mut reader = SnapshotReader::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        stream
            .set_read_timeout(Some(remaining()?))
            .map_err(io_error)?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(io_error(err)),
        };
        if n == 0 {
            return Err(CtlError::Truncated {
                socket: socket.to_path_buf(),
            });
        }
        total += n;
        if total > MAX_ANSWER_BYTES {
            return Err(malformed(format!(
                "the answer exceeds {MAX_ANSWER_BYTES} bytes"
            )));
        }
        let mut input = buf.get(..n).unwrap_or_default();
        while !input.is_empty() {
            let (used, list) = decoder
                .push(input)
                .map_err(|err| malformed(err.warning("the status socket")))?;
            input = input.get(used..).unwrap_or_default();
            let Some(list) = list else { continue };
            let done = reader.push(&list).map_err(|err| match err {
                SnapshotError::Malformed(what) => malformed(what),
                SnapshotError::Truncated => CtlError::Truncated {
                    socket: socket.to_path_buf(),
                },
            })?;
            if done {
                return reader.finish().map_err(|err| malformed(err.to_string()));
            }
        }
    }
}

/// The whole program: parses `args` (without the program name), asks the instance's queue
/// manager and writes the chosen rendering to `out`.
pub fn run(
    args: &[OsString],
    mail_config_env: Option<&OsStr>,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let args = Args::parse(args).map_err(CtlError::Usage)?;
    let text = match args.command {
        Command::Help => format!("{USAGE}\n"),
        command => {
            let instance = Instance::load(args.config_dir.as_deref(), mail_config_env)?;
            let snapshot = query(&instance.status_socket(), &instance.mail_owner, TIMEOUT)?;
            match command {
                Command::StatusJson => json::snapshot(&snapshot),
                Command::Metrics => metrics::exposition(&snapshot),
                _ => render::table(&snapshot, &render::local_time),
            }
        }
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CtlError::Output)
}

#[cfg(test)]
mod tests;
