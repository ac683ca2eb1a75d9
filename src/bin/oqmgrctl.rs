//! oqmgrctl(1): asks the running queue manager for its live state. See [`oqmgr::ctl`].

use std::ffi::OsString;
use std::io::{self, ErrorKind};

use oqmgr::ctl::{self, CtlError};

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mail_config = std::env::var_os("MAIL_CONFIG");
    let mut out = io::stdout().lock();
    match ctl::run(&args, mail_config.as_deref(), &mut out) {
        Ok(()) => {}
        // A reader that went away (`oqmgrctl status | head`) needs no message.
        Err(CtlError::Output(err)) if err.kind() == ErrorKind::BrokenPipe => std::process::exit(1),
        Err(err) => {
            eprintln!("oqmgrctl: {err}");
            if matches!(err, CtlError::Usage(_)) {
                eprintln!("{}", ctl::USAGE);
            }
            std::process::exit(err.exit_code());
        }
    }
}
