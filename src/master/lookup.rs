//! Account lookups (getpwnam, getgrnam, getgrouplist, ...) asked in a short-lived child.
//!
//! The first lookup maps NSS modules into the process as nsswitch.conf names them: on Debian,
//! `group: files systemd` makes initgroups load libnss_systemd with libcap and libm, and the
//! lookups touch libc's NSS and file-parsing code. A queue manager that stays up for months
//! would keep all of that mapped (about 0.5 MiB of RSS) for a few calls at start-up. A child
//! forked for them asks the same libc with the same files, so the answers are the same, and
//! takes those mappings with it when it exits. When no child can be had (fork fails, the child
//! dies), the caller asks here, as before.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;

/// Ends a complete answer, so that a child that died half-way is told from one that finished.
const TRAILER: u8 = 0xa5;

/// Runs `ask` in a forked child and returns what it wrote; `None` when that failed, and the
/// caller should run `ask` itself.
pub fn in_child(ask: &dyn Fn(&mut Vec<u8>)) -> Option<Vec<u8>> {
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
    // SAFETY: fork(2) through nix. The child only runs `ask` (libc's NSS lookups and malloc,
    // which glibc keeps usable across fork, even from a threaded test harness), writes to the
    // pipe and _exits; the daemon itself is single-threaded at start-up.
    match unsafe { nix::unistd::fork() }.ok()? {
        ForkResult::Child => {
            drop(read_end);
            child(ask, write_end)
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut answer = Vec::new();
            let read = std::fs::File::from(read_end).read_to_end(&mut answer);
            // With SIGCHLD ignored (inherited through exec) the kernel reaps the child and
            // waitpid fails with ECHILD: the trailer alone says the answer is whole.
            let _ = waitpid(child, None);
            match (read, answer.pop()) {
                (Ok(_), Some(TRAILER)) => Some(answer),
                _ => None,
            }
        }
    }
}

fn child(ask: &dyn Fn(&mut Vec<u8>), pipe: OwnedFd) -> ! {
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut answer = Vec::new();
        ask(&mut answer);
        answer.push(TRAILER);
        std::fs::File::from(pipe).write_all(&answer).is_ok()
    }));
    let status = i32::from(ok.ok() != Some(true));
    // SAFETY: _exit(2) ends the child without running the parent's exit handlers or flushing
    // stdio buffers that it shares with the parent.
    unsafe { libc::_exit(status) }
}

/// Appends `v` to an answer.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Takes a u32 off the front of an answer.
pub fn get_u32(input: &mut &[u8]) -> Option<u32> {
    let (head, rest) = input.split_first_chunk::<4>()?;
    *input = rest;
    Some(u32::from_le_bytes(*head))
}

/// getgrouplist(3): `gid` and the groups that list `user` as a member, as every NSS service
/// that nsswitch.conf names for them answers; what initgroups(3) gives to setgroups(2).
pub fn group_list(user: &std::ffi::CStr, gid: u32) -> Vec<u32> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut n = libc::c_int::try_from(groups.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `groups` holds `n` writable gid_t; getgrouplist writes at most `n` of them
        // and stores the number it found in `n`.
        let rc = unsafe { libc::getgrouplist(user.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        let found = usize::try_from(n).unwrap_or(0);
        if rc >= 0 || found <= groups.len() {
            groups.truncate(found.min(groups.len()));
            return groups;
        }
        groups.resize(found, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_answers() {
        let answer = in_child(&|out: &mut Vec<u8>| {
            put_u32(out, std::process::id());
            out.extend_from_slice(b"hi");
        })
        .unwrap();
        let mut input = answer.as_slice();
        assert_ne!(get_u32(&mut input), Some(std::process::id()));
        assert_eq!(input, b"hi");
        assert_eq!(get_u32(&mut input), None);
    }

    #[test]
    fn a_child_that_dies_gives_no_answer() {
        let answer = in_child(&|_: &mut Vec<u8>| {
            // SAFETY: ends the child at once, as a crash in an NSS module would.
            unsafe { libc::_exit(3) }
        });
        assert_eq!(answer, None);
        let answer = in_child(&|_: &mut Vec<u8>| panic!("lookup failed"));
        assert_eq!(answer, None);
    }

    #[test]
    fn group_list_starts_with_the_given_group() {
        let root = std::ffi::CString::new("root").unwrap();
        let groups = group_list(&root, 0);
        assert_eq!(groups.first(), Some(&0));
        let nobody = std::ffi::CString::new("no-such-user-oqmgr").unwrap();
        assert_eq!(group_list(&nobody, 4242), vec![4242]);
    }
}
