//! The records the queue manager writes itself, without a delivery agent, and the synchronous
//! clients that write them: a recipient deferred while even the retry transport is unavailable
//! (Postfix's defer_append) and a discarded double bounce (sent). By the message's trace flags
//! the record goes to verify(8) (MTA_VRFY: address probes), trace(8) (USR_VRFY: `sendmail -bv`;
//! RECORD: `sendmail -v`), defer(8), and flush(8) for fast_flush_domains.
//!
//! Like the C daemon these block: each request waits at most ipc_timeout (qmgr_ipc_timeout)
//! per read or write, and a verify(8) that cannot be reached is retried until it answers, so
//! only the watchdog ends a queue manager stuck on it, as it would end the C one.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use log::{info, warn};

use super::Daemon;
use crate::config::domain_list::{self, DomainList, DomainMatch};
use crate::config::{Config, Params};
use crate::proto::attr::{AttrDecoder, AttrList, AttrMessage};
use crate::proto::bounce::{AppendRequest, StatusReply};
use crate::proto::dsn::Dsn;
use crate::proto::flush::{flush_status, FlushAdd};
use crate::proto::protocol::Protocol;
use crate::proto::recipient::Recipient;
use crate::proto::verify::{recipient_status, VerifyReply, VerifyUpdate};
use crate::queue::envelope::{
    DEL_REQ_FLAG_MTA_VRFY, DEL_REQ_FLAG_RECORD, DEL_REQ_FLAG_REC_DLY_SENT, DEL_REQ_FLAG_USR_VRFY,
    DSN_NOTIFY_SUCCESS,
};
use crate::sched::MessageRef;

/// DSN NOTIFY=DELAY (dsn_mask.h).
const DSN_NOTIFY_DELAY: u32 = 8;
/// verify(8)'s `status` for a recorded update (VRFY_STAT_OK).
const VRFY_STAT_OK: i32 = 0;

/// fast_flush_domains, parsed once at start-up as the C daemon's flush_init does.
#[derive(Debug, Default)]
pub struct FlushDomains {
    list: DomainList,
    /// Compatibility level below 2 with neither relay_domains nor fast_flush_domains set:
    /// the implicit `$mydestination` is announced per domain (warn_compat_break_flush_domains).
    compat_notice: bool,
}

impl FlushDomains {
    /// The lookup tables the list names.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.list.tables()
    }

    /// Reads the list (and any `/file` in it, and its lookup tables through `opener`) and logs
    /// its parse warnings; a bare `!` is fatal as in Postfix.
    pub fn init(
        config: &Config,
        params: &Params,
        opener: &mut super::tables::Opener,
    ) -> FlushDomains {
        let parent = domain_list::parent_style(
            &params.parent_domain_matches_subdomains,
            "fast_flush_domains",
        );
        let list = match DomainList::parse_with(
            "fast_flush_domains",
            &params.fast_flush_domains,
            parent,
            &mut |table| opener.open(table),
        ) {
            Ok((list, warnings)) => {
                for w in warnings {
                    warn!("{w}");
                }
                list
            }
            Err(e) => super::fatal(&e.to_string()),
        };
        let level2 = crate::config::expand::compatibility_level(b"2").unwrap_or(0);
        let compat_notice = crate::config::expand::compatibility_level(&params.compatibility_level)
            .is_some_and(|level| level < level2)
            && config.explicit("relay_domains").is_none()
            && config.explicit("fast_flush_domains").is_none();
        FlushDomains {
            list,
            compat_notice,
        }
    }
}

/// Why a synchronous exchange ended early; its text is what Postfix's `%m` would show.
#[derive(Debug)]
pub(super) enum ExchangeError {
    Io(std::io::Error),
    /// The peer closed the connection (no errno in C: `Success`).
    Eof,
    /// An attribute stream Postfix would refuse.
    Malformed,
}

impl ExchangeError {
    pub(super) fn text(&self) -> String {
        match self {
            // A read or write that hit SO_RCVTIMEO/SO_SNDTIMEO: Postfix's timed I/O says this.
            ExchangeError::Io(e)
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                "Connection timed out".to_string()
            }
            ExchangeError::Io(e) => crate::maillog::strerror(e),
            ExchangeError::Eof | ExchangeError::Malformed => "Success".to_string(),
        }
    }

    pub(super) fn is(&self, errno: i32) -> bool {
        matches!(self, ExchangeError::Io(e) if e.raw_os_error() == Some(errno))
    }
}

/// One blocking connection to a Postfix service, read as attribute lists.
pub(super) struct SyncConn {
    stream: UnixStream,
    decoder: AttrDecoder,
    pending: Vec<AttrList>,
}

impl SyncConn {
    /// Connects to `path` (relative to the queue directory) with ipc_timeout on every read
    /// and write (mail_connect + timed_ipc_setup).
    pub(super) fn connect(path: &str, timeout: Duration) -> std::io::Result<SyncConn> {
        let stream = UnixStream::connect(path)?;
        let timeout = Some(timeout.max(Duration::from_secs(1)));
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        Ok(SyncConn {
            stream,
            decoder: AttrDecoder::default(),
            pending: Vec::new(),
        })
    }

    pub(super) fn read_list(&mut self) -> Result<AttrList, ExchangeError> {
        let mut buf = [0u8; 4096];
        loop {
            if !self.pending.is_empty() {
                return Ok(self.pending.remove(0));
            }
            // The watchdog's alarm interrupts a blocking read: read again.
            let n = match self.stream.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(ExchangeError::Io(e)),
            };
            if n == 0 {
                return Err(ExchangeError::Eof);
            }
            let lists = self
                .decoder
                .feed(buf.get(..n).unwrap_or(&[]))
                .map_err(|_| ExchangeError::Malformed)?;
            self.pending.extend(lists);
        }
    }

    pub(super) fn send(&mut self, bytes: &[u8]) -> Result<(), ExchangeError> {
        self.stream.write_all(bytes).map_err(ExchangeError::Io)
    }

    /// Whether the server sent something nobody asked for, or closed the connection
    /// (clnt_stream_access's readable() test before it reuses a connection).
    pub(super) fn has_input(&self) -> bool {
        if !self.pending.is_empty() || !self.decoder.is_idle() {
            return true;
        }
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&self.stream),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
            Ok(n) => n > 0,
            Err(_) => true,
        }
    }

    pub(super) fn expect_announcement(&mut self, protocol: Protocol) -> Result<(), ExchangeError> {
        let list = self.read_list()?;
        protocol
            .check_announcement(&list)
            .map_err(|_| ExchangeError::Malformed)
    }
}

/// One request and its `{status}` reply, as Postfix's mail_command_client: a new connection
/// per request, each failing stage warned about; -1 when the exchange failed.
fn command_client(path: &str, protocol: Protocol, request: &[u8], timeout: Duration) -> i32 {
    let mut conn = match SyncConn::connect(path, timeout) {
        Ok(c) => c,
        Err(e) => {
            warn!("connect to {path}: {}", crate::maillog::strerror(&e));
            return -1;
        }
    };
    if let Err(e) = conn.expect_announcement(protocol) {
        warn!("read {path} socket: {}", e.text());
        return -1;
    }
    if let Err(e) = conn.send(request) {
        warn!("write {path} socket: {}", e.text());
        return -1;
    }
    match conn.read_list().and_then(|list| {
        StatusReply::decode(&list)
            .map(|r| r.status)
            .map_err(|_| ExchangeError::Malformed)
    }) {
        Ok(status) => status,
        Err(e) => {
            warn!("write/read {path} socket: {}", e.text());
            -1
        }
    }
}

/// `<id>: <service> service failure`: how Postfix's status clients report a service that did
/// not take a record.
fn service_failure(id: &str, service: &[u8]) {
    warn!("{id}: {} service failure", String::from_utf8_lossy(service));
}

impl Daemon {
    fn ipc_timeout(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.params.ipc_timeout).unwrap_or(60))
    }

    fn private_path(service: &[u8]) -> String {
        format!("private/{}", String::from_utf8_lossy(service))
    }

    /// One record for a defer or trace log: an append request to `service`, its status.
    fn append_to(
        &self,
        service: &[u8],
        flags: i32,
        queue_id: &[u8],
        rcpt: &Recipient,
        dsn: &Dsn,
    ) -> i32 {
        let request = AppendRequest {
            flags: flags as u32,
            queue_id: queue_id.to_vec(),
            recipient: rcpt.clone(),
            dsn: dsn.clone(),
        }
        .to_bytes();
        command_client(
            &Self::private_path(service),
            Protocol::DeliveryStatus,
            &request,
            self.ipc_timeout(),
        )
    }

    /// The message's queue id (for log lines and requests) and trace flags.
    fn record_context(&self, m: MessageRef) -> Option<(String, Vec<u8>, i32)> {
        let msg = self.sched.message(m)?;
        Some((
            String::from_utf8_lossy(msg.queue_id()).into_owned(),
            msg.queue_id().to_vec(),
            msg.envelope().trace_flags,
        ))
    }

    /// A recipient is deferred without an agent, as Postfix's defer_append: a DSN that is not
    /// a valid 4.x.x becomes 4.0.0 (with a warning). Non-zero: the message stays deferred.
    pub(super) fn defer_append(&mut self, m: MessageRef, rcpt: &Recipient, dsn: &Dsn) -> i32 {
        let mut dsn = dsn.clone();
        if dsn.status.first() != Some(&b'4') || !crate::sched::route::dsn_valid(&dsn.status) {
            warn!(
                "defer_append: ignoring dsn code \"{}\"",
                String::from_utf8_lossy(&dsn.status)
            );
            dsn.status = b"4.0.0".to_vec();
        }
        self.defer_append_intern(m, rcpt, &dsn)
    }

    /// defer_append_intern: a probe updates verify(8), `sendmail -bv` traces, other mail goes
    /// to the defer log (logged `deferred`), to trace(8) too when recorded, and to flush(8)
    /// when the recipient's domain is a fast-flush domain. Ordinary mail always stays deferred.
    fn defer_append_intern(&mut self, m: MessageRef, rcpt: &Recipient, dsn: &Dsn) -> i32 {
        let Some((id, queue_id, flags)) = self.record_context(m) else {
            return -1;
        };
        let mut my_dsn = dsn.clone();
        if flags & DEL_REQ_FLAG_MTA_VRFY != 0 {
            my_dsn.action = b"undeliverable".to_vec();
            return self.verify_append(m, rcpt, &my_dsn, recipient_status::DEFER);
        }
        if flags & DEL_REQ_FLAG_USR_VRFY != 0 {
            my_dsn.action = b"undeliverable".to_vec();
            return self.trace_append(m, rcpt, &my_dsn);
        }
        my_dsn.action = b"delayed".to_vec();
        let defer = &self.params.defer_service_name;
        if self.append_to(defer, flags, &queue_id, rcpt, &my_dsn) != 0 {
            service_failure(&id, defer);
        }
        self.log_recipient(m, rcpt, &my_dsn, "deferred");
        if flags & DEL_REQ_FLAG_RECORD != 0 && self.trace_append(m, rcpt, &my_dsn) != 0 {
            service_failure(&id, &self.params.trace_service_name);
        }
        if let Some(at) = rcpt.address().iter().rposition(|&b| b == b'@') {
            let site = &rcpt.address()[at + 1..];
            if !site.is_empty() {
                match self.flush_add(site, &queue_id) {
                    flush_status::OK | flush_status::DENY => {}
                    _ => service_failure(&id, &self.params.flush_service_name),
                }
            }
        }
        -1
    }

    /// A recipient is done without an agent, as Postfix's sent(): a probe updates verify(8),
    /// `sendmail -bv` traces, other mail is traced when recorded or when it asked for success
    /// notices, then logged `sent`. A trace that fails turns into a deferral (4.3.0).
    /// Zero: the recipient may be marked done.
    pub(super) fn sent(&mut self, m: MessageRef, rcpt: &Recipient, dsn: &Dsn) -> i32 {
        let Some((id, _, flags)) = self.record_context(m) else {
            return -1;
        };
        let mut my_dsn = dsn.clone();
        if my_dsn.status.first() != Some(&b'2') || !crate::sched::route::dsn_valid(&my_dsn.status) {
            warn!(
                "sent: ignoring dsn code \"{}\"",
                String::from_utf8_lossy(&my_dsn.status)
            );
            my_dsn.status = b"2.0.0".to_vec();
        }
        if flags & DEL_REQ_FLAG_MTA_VRFY != 0 {
            my_dsn.action = b"deliverable".to_vec();
            return self.verify_append(m, rcpt, &my_dsn, recipient_status::OK);
        }
        if flags & DEL_REQ_FLAG_USR_VRFY != 0 {
            my_dsn.action = b"deliverable".to_vec();
            return self.trace_append(m, rcpt, &my_dsn);
        }
        if my_dsn.action.is_empty() {
            my_dsn.action = b"delivered".to_vec();
        }
        let record_all = flags & DEL_REQ_FLAG_RECORD != 0;
        let record_delayed = flags & DEL_REQ_FLAG_REC_DLY_SENT != 0
            && (rcpt.notify_flags == 0 || rcpt.notify_flags & DSN_NOTIFY_DELAY != 0);
        let recorded = !(record_all || record_delayed) || self.trace_append(m, rcpt, &my_dsn) == 0;
        let notified = recorded
            && (rcpt.notify_flags & DSN_NOTIFY_SUCCESS as u32 == 0
                || self.trace_append(m, rcpt, &my_dsn) == 0);
        if notified {
            self.log_recipient(m, rcpt, &my_dsn, "sent");
            return 0;
        }
        my_dsn.reason = format!(
            "{id}: {} service failed",
            String::from_utf8_lossy(&self.params.trace_service_name)
        )
        .into_bytes();
        my_dsn.status = b"4.3.0".to_vec();
        self.defer_append(m, rcpt, &my_dsn)
    }

    /// trace_append: the recipient's record goes to trace(8); logged when it answers a
    /// `sendmail -bv` (with the DSN action as status). Non-zero on failure (warned).
    fn trace_append(&mut self, m: MessageRef, rcpt: &Recipient, dsn: &Dsn) -> i32 {
        let Some((id, queue_id, flags)) = self.record_context(m) else {
            return -1;
        };
        // Postfix prefixes the reason with "delivery via <relay>: " unless the relay is
        // `none`, which it always is here.
        let trace = &self.params.trace_service_name;
        if self.append_to(trace, flags, &queue_id, rcpt, dsn) != 0 {
            service_failure(&id, trace);
            return -1;
        }
        if flags & DEL_REQ_FLAG_USR_VRFY != 0 {
            let status = String::from_utf8_lossy(&dsn.action).into_owned();
            self.log_recipient(m, rcpt, dsn, &status);
        }
        0
    }

    /// verify_append: a probe's result goes to verify(8), for the original address and, when
    /// different, the final one; without address_verify_negative_cache a failure is only
    /// logged (`undeliverable-but-not-cached`). Logged with the DSN action as status.
    fn verify_append(&mut self, m: MessageRef, rcpt: &Recipient, dsn: &Dsn, status: u32) -> i32 {
        let Some((id, _, _)) = self.record_context(m) else {
            return -1;
        };
        let mut action = dsn.action.clone();
        let mut req_stat = VRFY_STAT_OK;
        if self.params.address_verify_negative_cache || status == recipient_status::OK {
            let mut conn: Option<SyncConn> = None;
            if !rcpt.original().is_empty() {
                req_stat = self.verify_update(&mut conn, rcpt.original(), status, &dsn.reason);
            }
            if req_stat == VRFY_STAT_OK && rcpt.address() != rcpt.original() {
                req_stat = self.verify_update(&mut conn, rcpt.address(), status, &dsn.reason);
            }
        } else {
            action = b"undeliverable-but-not-cached".to_vec();
        }
        if req_stat == VRFY_STAT_OK {
            let status = String::from_utf8_lossy(&action).into_owned();
            self.log_recipient(m, rcpt, dsn, &status);
            0
        } else {
            service_failure(&id, &self.params.address_verify_service_name);
            -1
        }
    }

    /// verify_clnt_update: one update on the verify(8) connection, reconnecting and retrying
    /// every second until verify(8) answers; its `status` is returned.
    fn verify_update(
        &self,
        conn: &mut Option<SyncConn>,
        address: &[u8],
        status: u32,
        reason: &[u8],
    ) -> i32 {
        let service = String::from_utf8_lossy(&self.params.address_verify_service_name);
        let request = VerifyUpdate {
            address: address.to_vec(),
            recipient_status: status,
            reason: reason.to_vec(),
        }
        .to_bytes();
        loop {
            let result = self.verify_stream(conn).and_then(|c| {
                c.send(&request)?;
                let list = c.read_list()?;
                VerifyReply::decode(&list)
                    .map(|r| r.status)
                    .map_err(|_| ExchangeError::Malformed)
            });
            match result {
                Ok(status) => return status,
                Err(e) => {
                    if !e.is(libc::EPIPE) && !e.is(libc::ENOENT) {
                        warn!("problem talking to service {service}: {}", e.text());
                    }
                }
            }
            *conn = None;
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The open verify(8) connection, or a new one after its announcement (clnt_stream_access
    /// with mail_connect_wait: ten more tries ten seconds apart, then fatal).
    fn verify_stream<'c>(
        &self,
        conn: &'c mut Option<SyncConn>,
    ) -> Result<&'c mut SyncConn, ExchangeError> {
        if conn.is_none() {
            let path = Self::private_path(&self.params.address_verify_service_name);
            let mut count = 0;
            let mut fresh = loop {
                match SyncConn::connect(&path, self.ipc_timeout()) {
                    Ok(c) => break c,
                    Err(e) => {
                        count += 1;
                        let text = format!(
                            "connect #{count} to subsystem {path}: {}",
                            crate::maillog::strerror(&e)
                        );
                        if count > 10 {
                            super::fatal(&text);
                        }
                        warn!("{text}");
                        std::thread::sleep(Duration::from_secs(10));
                    }
                }
            };
            fresh.expect_announcement(Protocol::AddressVerification)?;
            *conn = Some(fresh);
        }
        conn.as_mut().ok_or(ExchangeError::Eof)
    }

    /// flush_add: a fast-flush domain's deferred mail is logged by flush(8) (`public/`).
    /// FLUSH_STAT_DENY for other domains, FLUSH_STAT_FAIL when the list cannot be evaluated.
    fn flush_add(&self, site: &[u8], queue_id: &[u8]) -> i32 {
        match self.flush_domains.list.lookup(site) {
            DomainMatch::NoMatch => flush_status::DENY,
            DomainMatch::Error(warnings) => {
                for w in warnings {
                    warn!("{w}");
                }
                flush_status::FAIL
            }
            DomainMatch::Match => {
                if self.flush_domains.compat_notice {
                    info!(
                        "using backwards-compatible default setting relay_domains=$mydestination to update fast-flush logfile for domain \"{}\"",
                        String::from_utf8_lossy(site)
                    );
                }
                let request = FlushAdd {
                    site: site.to_vec(),
                    queue_id: queue_id.to_vec(),
                }
                .to_bytes();
                let path = format!(
                    "public/{}",
                    String::from_utf8_lossy(&self.params.flush_service_name)
                );
                command_client(&path, Protocol::QueueFlush, &request, self.ipc_timeout())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_errors_read_like_errno() {
        let timeout = ExchangeError::Io(std::io::Error::from(ErrorKind::WouldBlock));
        assert_eq!(timeout.text(), "Connection timed out");
        assert_eq!(ExchangeError::Eof.text(), "Success");
        let enoent = ExchangeError::Io(std::io::Error::from_raw_os_error(libc::ENOENT));
        assert!(enoent.is(libc::ENOENT));
        assert_eq!(enoent.text(), "No such file or directory");
    }

    #[test]
    fn command_client_warns_and_fails_without_a_server() {
        assert_eq!(
            command_client(
                "/nonexistent/private/defer",
                Protocol::DeliveryStatus,
                b"",
                Duration::from_secs(1)
            ),
            -1
        );
    }
}
