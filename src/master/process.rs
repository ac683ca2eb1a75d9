//! The process set-up a trigger server does before it serves: signal dispositions, the "run by
//! hand" refusal, GENERATION, `chdir(queue_directory)`, the mail_owner sanity check, and the
//! privilege drop (optional chroot) of Postfix's chroot_uid().
//!
//! Each step returns a typed error whose `Display` is the C daemon's `fatal:` text; the caller
//! logs it with `maillog::fatal`.

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{Gid, Uid, User};

use super::lookup;
use super::status::{parse_generation, BadGeneration};
use crate::maillog::strerror;

/// The environment variable master sets to its spawn counter, in octal.
pub const GENERATION_ENV: &str = "GENERATION";

/// Ignores SIGPIPE (a vanished client must not kill us) and SIGXFSZ (a full file system is
/// an error, not a signal), as the trigger server does first thing.
pub fn ignore_signals() -> io::Result<()> {
    for sig in [Signal::SIGPIPE, Signal::SIGXFSZ] {
        // SAFETY: SIG_IGN installs no handler code, so nothing can run in signal context.
        unsafe { signal(sig, SigHandler::SigIgn) }.map_err(io::Error::from)?;
    }
    Ok(())
}

/// A daemon started from a terminal: `fatal: do not run this command by hand`. The C daemon
/// sends this one to stderr as well as to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunByHand;

impl fmt::Display for RunByHand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("do not run this command by hand")
    }
}

impl std::error::Error for RunByHand {}

/// The tty check: in daemon mode (no `-d`) and not stand-alone (`-S`), a terminal on stdin
/// means someone ran the daemon from a shell instead of from master.
pub fn refuse_terminal(
    daemon_mode: bool,
    stand_alone: bool,
    stdin: BorrowedFd<'_>,
) -> Result<(), RunByHand> {
    // SAFETY: isatty only queries the descriptor (TCGETS); an invalid one just gives 0.
    let tty = unsafe { libc::isatty(stdin.as_raw_fd()) } == 1;
    if daemon_mode && !stand_alone && tty {
        Err(RunByHand)
    } else {
        Ok(())
    }
}

/// GENERATION from the environment, octal (0 when master did not set it).
pub fn generation_from_env() -> Result<u32, BadGeneration> {
    generation_from(std::env::var_os(GENERATION_ENV).as_deref())
}

/// GENERATION from a value as the environment holds it.
pub fn generation_from(value: Option<&OsStr>) -> Result<u32, BadGeneration> {
    match value {
        None => Ok(0),
        Some(v) => match v.to_str() {
            Some(text) => parse_generation(text),
            None => Err(BadGeneration(v.to_string_lossy().into_owned())),
        },
    }
}

/// `chdir(queue_directory)` failed: `chdir("<dir>"): <strerror>`.
#[derive(Debug)]
pub struct ChdirError {
    pub dir: Vec<u8>,
    pub err: io::Error,
}

impl fmt::Display for ChdirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chdir(\"{}\"): {}",
            String::from_utf8_lossy(&self.dir),
            strerror(&self.err)
        )
    }
}

impl std::error::Error for ChdirError {}

/// Makes the queue directory the working directory: every queue path is relative to it.
pub fn chdir_queue(queue_directory: &[u8]) -> Result<(), ChdirError> {
    std::env::set_current_dir(Path::new(OsStr::from_bytes(queue_directory))).map_err(|err| {
        ChdirError {
            dir: queue_directory.to_vec(),
            err,
        }
    })
}

/// The uid and gid of a user, looked up once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// mail_params_init's refusals of a bad `mail_owner`, worded like the C daemon
/// (`file <config_dir>/main.cf: parameter mail_owner: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailOwnerError {
    UnknownUser {
        config_dir: String,
        user: String,
    },
    PrivilegedUid {
        config_dir: String,
        user: String,
    },
    PrivilegedGid {
        config_dir: String,
        user: String,
    },
    SharedUid {
        config_dir: String,
        user: String,
        other: String,
    },
}

impl fmt::Display for MailOwnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailOwnerError::UnknownUser { config_dir, user } => write!(
                f,
                "file {config_dir}/main.cf: parameter mail_owner: unknown user name value: {user}"
            ),
            MailOwnerError::PrivilegedUid { config_dir, user } => write!(
                f,
                "file {config_dir}/main.cf: parameter mail_owner: user {user} has privileged user ID"
            ),
            MailOwnerError::PrivilegedGid { config_dir, user } => write!(
                f,
                "file {config_dir}/main.cf: parameter mail_owner: user {user} has privileged group ID"
            ),
            MailOwnerError::SharedUid {
                config_dir,
                user,
                other,
            } => write!(
                f,
                "file {config_dir}/main.cf: parameter mail_owner: user {user} has same user ID as {other}"
            ),
        }
    }
}

impl std::error::Error for MailOwnerError {}

/// The `mail_owner` checks every Postfix daemon makes once main.cf is read, with or without
/// `-u`: the user must exist, must not have uid 0 or gid 0, and must not share its uid with an
/// earlier password entry.
pub fn check_mail_owner(config_dir: &str, mail_owner: &str) -> Result<Owner, MailOwnerError> {
    let unknown = || MailOwnerError::UnknownUser {
        config_dir: config_dir.to_string(),
        user: mail_owner.to_string(),
    };
    let user = User::from_name(mail_owner)
        .ok()
        .flatten()
        .ok_or_else(unknown)?;
    if user.uid.is_root() {
        return Err(MailOwnerError::PrivilegedUid {
            config_dir: config_dir.to_string(),
            user: mail_owner.to_string(),
        });
    }
    if user.gid.as_raw() == 0 {
        return Err(MailOwnerError::PrivilegedGid {
            config_dir: config_dir.to_string(),
            user: mail_owner.to_string(),
        });
    }
    if let Ok(Some(first)) = User::from_uid(user.uid) {
        if first.name != mail_owner {
            return Err(MailOwnerError::SharedUid {
                config_dir: config_dir.to_string(),
                user: mail_owner.to_string(),
                other: first.name,
            });
        }
    }
    Ok(Owner {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

/// mail_params_init's checks of the three accounts, in its order (check_default_privs,
/// check_mail_owner, check_sgid_group, check_overlap); the error is the C fatal text. The
/// lookups run in a child (see `lookup`).
pub fn check_accounts(
    config_dir: &str,
    mail_owner: &str,
    default_privs: &str,
    setgid_group: &str,
) -> Result<Owner, String> {
    let check = || check_accounts_here(config_dir, mail_owner, default_privs, setgid_group);
    let ask = |out: &mut Vec<u8>| match check() {
        Ok(owner) => {
            out.push(0);
            lookup::put_u32(out, owner.uid);
            lookup::put_u32(out, owner.gid);
        }
        Err(text) => {
            out.push(1);
            out.extend_from_slice(text.as_bytes());
        }
    };
    let decode = |answer: Vec<u8>| -> Option<Result<Owner, String>> {
        let (&tag, mut rest) = answer.split_first()?;
        match tag {
            0 => {
                let uid = lookup::get_u32(&mut rest)?;
                let gid = lookup::get_u32(&mut rest)?;
                rest.is_empty().then_some(Ok(Owner { uid, gid }))
            }
            1 => String::from_utf8(rest.to_vec()).ok().map(Err),
            _ => None,
        }
    };
    lookup::in_child(&ask)
        .and_then(decode)
        .unwrap_or_else(check)
}

fn check_accounts_here(
    config_dir: &str,
    mail_owner: &str,
    default_privs: &str,
    setgid_group: &str,
) -> Result<Owner, String> {
    let file = format!("file {config_dir}/main.cf");
    let privs = User::from_name(default_privs)
        .ok()
        .flatten()
        .ok_or_else(|| {
            format!("{file}: parameter default_privs: unknown user name value: {default_privs}")
        })?;
    if privs.uid.is_root() {
        return Err(format!(
            "{file}: parameter default_privs: user {default_privs} has privileged user ID"
        ));
    }
    if privs.gid.as_raw() == 0 {
        return Err(format!(
            "{file}: parameter default_privs: user {default_privs} has privileged group ID"
        ));
    }
    let owner = check_mail_owner(config_dir, mail_owner).map_err(|e| e.to_string())?;
    let group = nix::unistd::Group::from_name(setgid_group)
        .ok()
        .flatten()
        .ok_or_else(|| {
            format!("{file}: parameter setgid_group: unknown group name: {setgid_group}")
        })?;
    let sgid = group.gid.as_raw();
    if sgid == 0 {
        return Err(format!(
            "{file}: parameter setgid_group: group {setgid_group} has privileged group ID"
        ));
    }
    if let Ok(Some(first)) = nix::unistd::Group::from_gid(group.gid) {
        if first.name != setgid_group {
            return Err(format!(
                "{file}: parameter setgid_group: group {setgid_group} has same group ID as {}",
                first.name
            ));
        }
    }
    let (privs_uid, privs_gid) = (privs.uid.as_raw(), privs.gid.as_raw());
    if default_privs == mail_owner {
        return Err(format!(
            "{file}: parameters default_privs and mail_owner specify the same user {default_privs}"
        ));
    }
    if privs_uid == owner.uid {
        return Err(format!(
            "{file}: parameters default_privs and mail_owner: users {default_privs} and {mail_owner} have the same user ID: {}",
            owner.uid
        ));
    }
    if privs_gid == owner.gid {
        return Err(format!(
            "{file}: parameters default_privs and mail_owner: users {default_privs} and {mail_owner} have the same group ID: {}",
            owner.gid
        ));
    }
    if privs_gid == sgid {
        return Err(format!(
            "{file}: parameters default_privs and setgid_group: user {default_privs} and group {setgid_group} have the same group ID: {sgid}"
        ));
    }
    if owner.gid == sgid {
        return Err(format!(
            "{file}: parameters mail_owner and setgid_group: user {mail_owner} and group {setgid_group} have the same group ID: {sgid}"
        ));
    }
    Ok(owner)
}

/// A failed step of the privilege drop, worded as Postfix's chroot_uid().
#[derive(Debug)]
pub enum PrivilegeError {
    /// `unknown user: <name>`
    UnknownUser(String),
    /// `setgid(<gid>): <strerror>`
    Setgid(u32, io::Error),
    /// `initgroups: <strerror>`
    Initgroups(io::Error),
    /// `chroot(<dir>): <strerror>`
    Chroot(Vec<u8>, io::Error),
    /// `chdir(/): <strerror>`
    ChdirRoot(io::Error),
    /// `setuid(<uid>): <strerror>`
    Setuid(u32, io::Error),
}

impl fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivilegeError::UnknownUser(name) => write!(f, "unknown user: {name}"),
            PrivilegeError::Setgid(gid, e) => write!(f, "setgid({gid}): {}", strerror(e)),
            PrivilegeError::Initgroups(e) => write!(f, "initgroups: {}", strerror(e)),
            PrivilegeError::Chroot(dir, e) => write!(
                f,
                "chroot({}): {}",
                String::from_utf8_lossy(dir),
                strerror(e)
            ),
            PrivilegeError::ChdirRoot(e) => write!(f, "chdir(/): {}", strerror(e)),
            PrivilegeError::Setuid(uid, e) => write!(f, "setuid({uid}): {}", strerror(e)),
        }
    }
}

impl std::error::Error for PrivilegeError {}

extern "C" {
    /// POSIX tzset(3); the libc crate does not declare it on Linux.
    fn tzset();
}

/// A login's ids and the groups initgroups(3) would give it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Login {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

/// getpwnam(name) and getgrouplist(name, its gid), in a child (see `lookup`).
fn look_up_login(name: &str) -> Option<Login> {
    let here = || {
        let user = User::from_name(name).ok().flatten()?;
        let c_name = CString::new(name).ok()?;
        let mut groups = lookup::group_list(&c_name, user.gid.as_raw());
        // initgroups(3) asks for at most NGROUPS_MAX groups; asked here, in the child, so that
        // the daemon does not map libc's sysconf code for it.
        let limit = nix::unistd::sysconf(nix::unistd::SysconfVar::NGROUPS_MAX)
            .ok()
            .flatten()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0);
        if let Some(limit) = limit {
            groups.truncate(limit);
        }
        Some(Login {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
        })
    };
    let ask = |out: &mut Vec<u8>| {
        if let Some(login) = here() {
            for v in [login.uid, login.gid] {
                lookup::put_u32(out, v);
            }
            for &g in &login.groups {
                lookup::put_u32(out, g);
            }
        }
    };
    let decode = |answer: Vec<u8>| -> Option<Option<Login>> {
        let mut rest = answer.as_slice();
        if rest.is_empty() {
            return Some(None);
        }
        let uid = lookup::get_u32(&mut rest)?;
        let gid = lookup::get_u32(&mut rest)?;
        let mut groups = Vec::with_capacity(rest.len() / 4);
        while !rest.is_empty() {
            groups.push(lookup::get_u32(&mut rest)?);
        }
        Some(Some(Login { uid, gid, groups }))
    };
    lookup::in_child(&ask).and_then(decode).unwrap_or_else(here)
}

/// setgroups(2) as initgroups(3) calls it: fewer groups while the kernel says EINVAL.
fn set_groups(groups: &[u32]) -> Result<(), PrivilegeError> {
    let gids: Vec<Gid> = groups.iter().map(|&g| Gid::from_raw(g)).collect();
    let mut n = gids.len();
    loop {
        match nix::unistd::setgroups(&gids[..n]) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EINVAL) if n > 1 => n -= 1,
            Err(e) => return Err(PrivilegeError::Initgroups(e.into())),
        }
    }
}

/// Restricts the process as chroot_uid() does, in its order: look `user` up, setgid to its
/// primary group, initgroups, then (with `root_dir`, i.e. `-c`) chroot + chdir("/"), and
/// last setuid. The time zone is loaded first, while /etc/localtime is still reachable.
/// `None` for both does nothing (no `-u`, no `-c`).
pub fn drop_privileges(user: Option<&str>, root_dir: Option<&[u8]>) -> Result<(), PrivilegeError> {
    // SAFETY: tzset only reads TZ and the zone files into libc's own state; we are still
    // single-threaded at start-up, so no localtime call runs concurrently.
    unsafe { tzset() };
    let account = match user {
        Some(name) => {
            let found =
                look_up_login(name).ok_or_else(|| PrivilegeError::UnknownUser(name.to_string()))?;
            nix::unistd::setgid(Gid::from_raw(found.gid))
                .map_err(|e| PrivilegeError::Setgid(found.gid, e.into()))?;
            set_groups(&found.groups)?;
            Some(Uid::from_raw(found.uid))
        }
        None => None,
    };
    if let Some(dir) = root_dir {
        nix::unistd::chroot(OsStr::from_bytes(dir))
            .map_err(|e| PrivilegeError::Chroot(dir.to_vec(), e.into()))?;
        nix::unistd::chdir("/").map_err(|e| PrivilegeError::ChdirRoot(e.into()))?;
    }
    if let Some(uid) = account {
        nix::unistd::setuid(uid).map_err(|e| PrivilegeError::Setuid(uid.as_raw(), e.into()))?;
    }
    Ok(())
}

/// The real and effective ids after a drop, for a verbose log line or a test.
pub fn current_ids() -> (Uid, Gid) {
    (nix::unistd::geteuid(), nix::unistd::getegid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    #[test]
    fn generation_defaults_to_zero_and_is_octal() {
        assert_eq!(generation_from(None), Ok(0));
        assert_eq!(generation_from(Some(OsStr::new("13"))), Ok(11));
        assert_eq!(
            generation_from(Some(OsStr::new("x1")))
                .unwrap_err()
                .to_string(),
            "bad generation: x1"
        );
        assert!(generation_from(Some(OsStr::from_bytes(b"\xff"))).is_err());
    }

    #[test]
    fn chdir_error_has_the_c_wording() {
        let err = ChdirError {
            dir: b"/var/spool/nowhere".to_vec(),
            err: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            err.to_string(),
            "chdir(\"/var/spool/nowhere\"): No such file or directory"
        );
    }

    #[test]
    fn chdir_to_a_missing_queue_fails() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("spool");
        let err = chdir_queue(missing.as_os_str().as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "chdir(\"{}\"): No such file or directory",
                missing.display()
            )
        );
    }

    #[test]
    fn unknown_user_is_refused() {
        let err = drop_privileges(Some("no-such-user-oqmgr"), None).unwrap_err();
        assert_eq!(err.to_string(), "unknown user: no-such-user-oqmgr");
        let err = check_mail_owner("/etc/postfix", "no-such-user-oqmgr").unwrap_err();
        assert_eq!(
            err.to_string(),
            "file /etc/postfix/main.cf: parameter mail_owner: unknown user name value: no-such-user-oqmgr"
        );
    }

    #[test]
    fn a_login_from_the_child_is_what_libc_says_here() {
        let found = look_up_login("root").unwrap();
        let root = User::from_name("root").unwrap().unwrap();
        assert_eq!(
            (found.uid, found.gid),
            (root.uid.as_raw(), root.gid.as_raw())
        );
        let groups = nix::unistd::getgrouplist(c"root", root.gid).unwrap();
        let groups: Vec<u32> = groups.iter().map(|g| g.as_raw()).collect();
        assert_eq!(found.groups, groups);
        assert_eq!(look_up_login("no-such-user-oqmgr"), None);
    }

    #[test]
    fn root_is_refused_as_mail_owner() {
        assert_eq!(
            check_mail_owner("/etc/postfix", "root")
                .unwrap_err()
                .to_string(),
            "file /etc/postfix/main.cf: parameter mail_owner: user root has privileged user ID"
        );
    }

    #[test]
    fn an_ordinary_user_passes_the_check() {
        let owner = check_mail_owner("/etc/postfix", "nobody").unwrap();
        assert_eq!(owner.uid, 65534);
    }

    #[test]
    fn privilege_errors_have_the_c_wording() {
        let eperm = || io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(
            PrivilegeError::Setgid(105, eperm()).to_string(),
            "setgid(105): Operation not permitted"
        );
        assert_eq!(
            PrivilegeError::Initgroups(eperm()).to_string(),
            "initgroups: Operation not permitted"
        );
        assert_eq!(
            PrivilegeError::Chroot(b"/var/spool/postfix".to_vec(), eperm()).to_string(),
            "chroot(/var/spool/postfix): Operation not permitted"
        );
        assert_eq!(
            PrivilegeError::ChdirRoot(eperm()).to_string(),
            "chdir(/): Operation not permitted"
        );
        assert_eq!(
            PrivilegeError::Setuid(102, eperm()).to_string(),
            "setuid(102): Operation not permitted"
        );
    }

    #[test]
    fn nothing_to_drop_is_a_no_op() {
        let before = current_ids();
        drop_privileges(None, None).unwrap();
        assert_eq!(current_ids(), before);
    }

    #[test]
    fn a_pipe_on_stdin_is_not_a_terminal() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert_eq!(refuse_terminal(true, false, r.as_fd()), Ok(()));
    }

    #[test]
    fn a_terminal_on_stdin_is_refused_in_daemon_mode_only() {
        // SAFETY: posix_openpt returns a new descriptor (or -1), which we own at once.
        let raw = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
        if raw < 0 {
            return; // no pty support in this sandbox
        }
        // SAFETY: `raw` was just returned by posix_openpt and is owned by nothing else.
        let tty = unsafe { OwnedFd::from_raw_fd(raw) };
        let err = refuse_terminal(true, false, tty.as_fd()).unwrap_err();
        assert_eq!(err.to_string(), "do not run this command by hand");
        assert_eq!(refuse_terminal(false, false, tty.as_fd()), Ok(()));
        assert_eq!(refuse_terminal(true, true, tty.as_fd()), Ok(()));
    }

    /// Runs one test of this binary in a child process with `OQMGR_TEST_CHILD` set.
    fn run_child(test: &str, jail: &Path) -> std::process::Output {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env("OQMGR_TEST_CHILD", jail)
            .output()
            .unwrap()
    }

    /// The child half of `root_drops_to_nobody_with_chroot`.
    #[test]
    fn child_drop_to_nobody() {
        let Some(jail) = std::env::var_os("OQMGR_TEST_CHILD") else {
            return;
        };
        let root = jail.as_bytes().to_vec();
        chdir_queue(&root).unwrap();
        drop_privileges(Some("nobody"), Some(&root)).unwrap();
        let (uid, gid) = current_ids();
        assert_eq!((uid.as_raw(), gid.as_raw()), (65534, 65534));
        assert_eq!(nix::unistd::getuid().as_raw(), 65534);
        assert_eq!(
            nix::unistd::getgroups().unwrap(),
            vec![Gid::from_raw(65534)]
        );
        // Inside the jail: the queue directory is "/".
        assert!(Path::new("/active").is_dir());
        assert_eq!(std::env::current_dir().unwrap(), Path::new("/"));
        // And root is gone for good.
        assert!(nix::unistd::setuid(Uid::from_raw(0)).is_err());
        println!("DROPPED-OK");
    }

    #[test]
    fn root_drops_to_nobody_with_chroot() {
        if !nix::unistd::geteuid().is_root() || User::from_name("nobody").ok().flatten().is_none() {
            return;
        }
        // The parent owns the jail, so it can still clean it up.
        let jail = tempfile::tempdir().unwrap();
        std::fs::create_dir(jail.path().join("active")).unwrap();
        let out = run_child("master::process::tests::child_drop_to_nobody", jail.path());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("DROPPED-OK"), "{stdout}");
    }

    #[test]
    fn signals_are_ignored() {
        ignore_signals().unwrap();
        // SAFETY: querying with a null new action changes nothing.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: `old` is a valid sigaction to write into; the new action pointer is null.
        let rc = unsafe { libc::sigaction(libc::SIGXFSZ, std::ptr::null(), &mut old) };
        assert_eq!(rc, 0);
        assert_eq!(old.sa_sigaction, libc::SIG_IGN);
    }

    fn accounts(owner: &str, privs: &str, group: &str) -> Result<Owner, String> {
        check_accounts("/etc/postfix", owner, privs, group)
    }

    #[test]
    fn default_privs_and_setgid_group_are_checked_in_the_c_order() {
        // Debian's accounts: postfix (uid 102, group postfix), nobody/nogroup, group postdrop.
        if User::from_name("postfix").ok().flatten().is_none()
            || nix::unistd::Group::from_name("postdrop")
                .ok()
                .flatten()
                .is_none()
        {
            return;
        }
        assert!(accounts("postfix", "nobody", "postdrop").is_ok());
        // default_privs is looked at before mail_owner.
        assert_eq!(
            accounts("no-such-user-oqmgr", "no-such-privs-oqmgr", "postdrop").unwrap_err(),
            "file /etc/postfix/main.cf: parameter default_privs: unknown user name value: no-such-privs-oqmgr"
        );
        assert_eq!(
            accounts("postfix", "root", "postdrop").unwrap_err(),
            "file /etc/postfix/main.cf: parameter default_privs: user root has privileged user ID"
        );
        // mail_owner before setgid_group.
        assert_eq!(
            accounts("root", "nobody", "no-such-group-oqmgr").unwrap_err(),
            "file /etc/postfix/main.cf: parameter mail_owner: user root has privileged user ID"
        );
        assert_eq!(
            accounts("postfix", "nobody", "no-such-group-oqmgr").unwrap_err(),
            "file /etc/postfix/main.cf: parameter setgid_group: unknown group name: no-such-group-oqmgr"
        );
        assert_eq!(
            accounts("postfix", "nobody", "root").unwrap_err(),
            "file /etc/postfix/main.cf: parameter setgid_group: group root has privileged group ID"
        );
        assert_eq!(
            accounts("nobody", "nobody", "postdrop").unwrap_err(),
            "file /etc/postfix/main.cf: parameters default_privs and mail_owner specify the same user nobody"
        );
        let nogroup = nix::unistd::Group::from_gid(Gid::from_raw(65534))
            .ok()
            .flatten();
        if let Some(nogroup) = nogroup {
            assert_eq!(
                accounts("postfix", "nobody", &nogroup.name).unwrap_err(),
                format!("file /etc/postfix/main.cf: parameters default_privs and setgid_group: user nobody and group {0} have the same group ID: 65534", nogroup.name)
            );
        }
        let postfix_gid = User::from_name("postfix").unwrap().unwrap().gid;
        if let Some(group) = nix::unistd::Group::from_gid(postfix_gid).ok().flatten() {
            assert_eq!(
                accounts("postfix", "nobody", &group.name).unwrap_err(),
                format!("file /etc/postfix/main.cf: parameters mail_owner and setgid_group: user postfix and group {0} have the same group ID: {1}", group.name, postfix_gid)
            );
        }
    }
}
