//! oqmgr: argv and environment as master(8) hands them, then main.cf, logging, privileges,
//! and the event loop. The start-up order follows Postfix's trigger server.
//!
//! There is no std runtime start-up (`#![no_main]`, C's `main` below). std's would, to print a
//! nicer message on a stack overflow, find the main thread's stack through
//! pthread_getattr_np, which reads /proc/self/maps with stdio and sscanf: that maps about
//! 200 KiB more of libc into a queue manager for its whole life. A stack overflow is then a
//! plain SIGSEGV, as in the C daemon. The rest of std's start-up that matters here is done in
//! `main`: descriptors 0-2 made valid, SIGPIPE ignored (`process::ignore_signals`); std::env
//! gets argv from glibc as before.

// `cargo test --all-targets` builds this file with the test harness's own main: then C's main
// below is left out, and what only it calls is unused.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::os::fd::AsFd;
use std::path::PathBuf;

use oqmgr::config::{resolve_config_dir, Config, Params};
use oqmgr::daemon::{Daemon, Startup};
use oqmgr::maillog::{self, LogTarget};
use oqmgr::master::fds::MasterChannels;
use oqmgr::master::options::DaemonOptions;
use oqmgr::master::process;

/// Where logs go before and after main.cf is read.
fn log_target_from_env() -> LogTarget {
    match std::env::var_os("POSTLOG_SERVICE") {
        Some(socket) => LogTarget::Postlog {
            socket: PathBuf::from(socket),
            hostname: std::env::var("POSTLOG_HOSTNAME").unwrap_or_default(),
            maillog_file: PathBuf::new(),
        },
        None => LogTarget::Syslog {
            facility: libc::LOG_MAIL,
        },
    }
}

fn log_target_from_params(p: &Params) -> LogTarget {
    if p.maillog_file.is_empty() {
        let facility =
            maillog::sink::facility_by_name(&String::from_utf8_lossy(&p.syslog_facility))
                .unwrap_or(libc::LOG_MAIL);
        return LogTarget::Syslog { facility };
    }
    let file = String::from_utf8_lossy(&p.maillog_file).into_owned();
    let prefixes = String::from_utf8_lossy(&p.maillog_file_prefixes).into_owned();
    if !prefixes
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .any(|prefix| file.starts_with(prefix))
    {
        maillog::fatal(&format!(
            "maillog_file value '{file}' does not match any prefix in maillog_file_prefixes"
        ));
    }
    let mut socket = PathBuf::from(String::from_utf8_lossy(&p.queue_directory).into_owned());
    socket.push("public");
    socket.push(String::from_utf8_lossy(&p.postlog_service_name).into_owned());
    LogTarget::Postlog {
        socket,
        hostname: String::from_utf8_lossy(&p.myhostname).into_owned(),
        maillog_file: PathBuf::from(file),
    }
}

/// chdir to queue_directory, then (with -u/-c) drop privileges and chroot, in Postfix's order.
fn enter_queue_directory(options: &DaemonOptions, params: &Params, mail_owner: &str) {
    if let Err(e) = process::chdir_queue(&params.queue_directory) {
        maillog::fatal(&e.to_string());
    }
    let user = options.drop_privileges.then_some(mail_owner);
    let root = options.chroot.then_some(params.queue_directory.as_slice());
    if let Err(e) = process::drop_privileges(user, root) {
        maillog::fatal(&e.to_string());
    }
}

/// Opens /dev/null on any of descriptors 0-2 that is closed, as std's start-up does, so that
/// no socket or file opened later becomes stdin, stdout or stderr.
fn open_standard_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only asks whether `fd` is open; nothing is changed.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // SAFETY: open(2) of a constant path; the lowest free descriptor, `fd`, is the
            // new one and is kept for the life of the process.
            if unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } == -1 {
                std::process::abort();
            }
        }
    }
}

#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    open_standard_fds();
    run()
}

fn run() -> ! {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let verbose_env = std::env::var_os("MAIL_VERBOSE").is_some();
    let debug_env = std::env::var_os("RUST_LOG").is_some();
    if let Err(e) = process::ignore_signals() {
        maillog::fatal(&format!("signal: {}", maillog::strerror(&e)));
    }
    let process_name = DaemonOptions::process_name_of(argv.first().map_or("oqmgr", String::as_str));
    let logtag = std::env::var("MAIL_LOGTAG").unwrap_or_else(|_| "postfix".to_string());
    if debug_env {
        // Foreground debugging: RUST_LOG=debug oqmgr ... (never set by master).
        env_logger::init();
    } else {
        maillog::init(
            &format!("{logtag}/{process_name}"),
            log_target_from_env(),
            false,
            verbose_env,
            true,
        );
    }

    let mut options =
        DaemonOptions::parse(&argv).unwrap_or_else(|e| maillog::fatal(&e.to_string()));
    let config_dir = resolve_config_dir(std::env::var_os("MAIL_CONFIG").as_deref());
    let config = Config::load(&config_dir, &options.overrides).unwrap_or_else(|e| {
        if let Some(w) = e.preceding_warning() {
            log::warn!("{w}");
        }
        maillog::fatal(&e.to_string())
    });
    for w in config.warnings() {
        log::warn!("{w}");
    }
    let mut params = Params::from_config(&config).unwrap_or_else(|e| {
        if let Some(w) = e.preceding_warning() {
            log::warn!("{w}");
        }
        maillog::fatal(&e.to_string())
    });
    let verbose = verbose_env || options.verbose > 0;
    let syslog_name = String::from_utf8_lossy(&params.syslog_name).into_owned();
    if !debug_env {
        maillog::init(
            &format!("{syslog_name}/{}", options.process_name),
            log_target_from_params(&params),
            options.log_to_stderr,
            verbose,
            params.smtputf8_enable,
        );
    }
    // mail_params_init's account checks come before the trigger server refuses a terminal.
    let mail_owner = String::from_utf8_lossy(&params.mail_owner).into_owned();
    if let Err(text) = process::check_accounts(
        config.config_dir(),
        &mail_owner,
        &String::from_utf8_lossy(&params.default_privs),
        &String::from_utf8_lossy(&params.setgid_group),
    ) {
        maillog::fatal(&text);
    }
    if process::refuse_terminal(
        options.daemon_mode,
        options.stand_alone,
        std::io::stdin().as_fd(),
    )
    .is_err()
    {
        eprintln!(
            "{}: fatal: do not run this command by hand",
            options.process_name
        );
        maillog::fatal("do not run this command by hand");
    }
    // Then, with the parameter tables read, the solitary check and the transport type.
    if let Err(e) = options.check_service() {
        maillog::fatal(&e.to_string());
    }
    if options.service_type == Some(oqmgr::master::options::ServiceType::Pass) {
        maillog::fatal("unsupported transport type: pass");
    }
    let generation =
        process::generation_from_env().unwrap_or_else(|e| maillog::fatal(&e.to_string()));
    if options.stand_alone {
        enter_queue_directory(&options, &params, &mail_owner);
        post_init_warnings(&mut params);
        oqmgr::daemon::stand_alone(&options, &params);
    }
    let master = MasterChannels::inherit(options.socket_count).unwrap_or_else(|e| {
        maillog::fatal(&format!("master descriptors: {}", maillog::strerror(&e)))
    });
    let pre_jail = oqmgr::daemon::pre_jail_init(&config, &params);
    enter_queue_directory(&options, &params, &mail_owner);
    post_init_warnings(&mut params);
    Daemon::new(Startup {
        options,
        config,
        params,
        master,
        generation,
        pre_jail,
    })
    .run()
}

/// The C daemon's post-init adjustments (after the chroot and privilege drop), with their
/// warnings.
fn post_init_warnings(params: &mut Params) {
    for w in params.apply_post_init() {
        log::warn!("{w}");
    }
}

// The unwinder (std's backtraces) from libgcc_eh.a instead of libgcc_s.so: with panic=abort it
// never runs unless a panic prints a backtrace, and not loading libgcc_s spares every
// queue manager ~100 KiB of RSS. `-bundle` leaves it to the final link, ahead of std's
// `-lgcc_s`, which --as-needed then drops.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[link(name = "gcc_eh", kind = "static", modifiers = "-bundle")]
extern "C" {}
