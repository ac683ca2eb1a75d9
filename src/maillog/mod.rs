//! Logging the way Postfix 3.7 daemons log: to syslog with tag `<syslog_name>/<process>[pid]`,
//! or, when `maillog_file` is set, as one datagram per line to postlogd on `public/postlog`.
//!
//! The `log` facade carries our messages: `info!`, `warn!` (`warning: `), `error!` (`error: `);
//! [`fatal`] logs `fatal: ` and exits 1 as `msg_fatal` does. `debug!`/`trace!` are Postfix's
//! verbose (`-v`) logging and come out as info lines.
//!
//! [`line`] holds the pure formatting; [`sink`] the backends.

pub mod delay;
pub mod emergency;
pub mod line;
pub mod sink;

pub use line::Severity;
pub use sink::{init, LogTarget};

/// The strerror() text of an I/O error, as Postfix's `%m` prints it (without Rust's
/// ` (os error N)` suffix).
pub fn strerror(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// Logs `fatal: <text>` and exits with status 1, like Postfix's `msg_fatal`.
pub fn fatal(text: &str) -> ! {
    sink::emit(Severity::Fatal, text);
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn strerror_is_c_wording_without_the_rust_suffix() {
        let err = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(strerror(&err), "No such file or directory");
    }
}
