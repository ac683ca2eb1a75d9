//! The event loop's half of a message's completion: the scheduler's completion chain
//! ([`crate::sched::complete`]) decides, this module carries out its actions against the
//! queue directory and reports back (is there a bounce log, is the file still usable), and
//! writes what the C daemon writes at the end: `removed`, the move to deferred/ or corrupt/.
//! bounce/defer/trace requests are asynchronous: other mail keeps moving while they run.

use crate::proto::attr::AttrMessage;
use log::{info, warn};

use super::{fatal, Daemon};
use crate::proto::dsn::Dsn;
use crate::proto::recipient::Recipient;
use crate::queue::file::{BounceLog, OpenCheck, Removed};
use crate::queue::id::QueueId;
use crate::queue::path::{ACTIVE, BOUNCE, DEFERRED};
use crate::queue::record::Patch;
use crate::sched::{MessageRef, NoticeService};

impl Daemon {
    /// Action::CheckBounceLog: the first step of the completion.
    pub(super) fn check_bounce_log(&mut self, now: u64, m: MessageRef, queue_id: &[u8]) {
        let Ok(id) = QueueId::parse(queue_id) else {
            return;
        };
        match self.qdir.check_bounce_log(&id) {
            Ok(BounceLog::NonEmpty(_)) => self.sched.bounce_log_checked(now, m, true),
            Ok(_) => self.sched.bounce_log_checked(now, m, false),
            Err(e) => fatal(&format!(
                "remove {BOUNCE} {id}: {}",
                crate::maillog::strerror(&e.source)
            )),
        }
    }

    /// Action::CheckQueueFile: mail_open_ok's verdict on a deferred message's file, with its
    /// warnings (link count, not a regular file).
    pub(super) fn check_queue_file(&mut self, now: u64, m: MessageRef, queue_id: &[u8]) {
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        let check = self.qdir.open_ok(ACTIVE, queue_id, now_i);
        if let Some(w) = check.warning() {
            warn!("{w}");
        }
        let usable = matches!(check, OpenCheck::Ready(_));
        self.sched.queue_file_checked(now, m, usable);
    }

    /// Action::Notify: a request to bounce(8), defer(8) or trace(8).
    pub(super) fn notify(
        &mut self,
        now: u64,
        m: MessageRef,
        service: NoticeService,
        request: &crate::proto::bounce::FlushRequest,
    ) {
        let name = match service {
            NoticeService::Bounce => &self.params.bounce_service_name,
            NoticeService::Defer => &self.params.defer_service_name,
            NoticeService::Trace => &self.params.trace_service_name,
        };
        let name = name.clone();
        self.connect_notify(now, m, &name, request.to_bytes());
    }

    /// Action::Remove: the message is done.
    pub(super) fn remove_file(&mut self, queue_id: &[u8]) {
        let Ok(id) = QueueId::parse(queue_id) else {
            return;
        };
        match self.qdir.remove(ACTIVE, &id) {
            Ok(Removed::Removed) => info!("{id}: removed"),
            Ok(Removed::NotFound) => warn!(
                "qmgr_active_done_3_generic: remove {id} from {ACTIVE}: No such file or directory"
            ),
            Err(e) => fatal(&format!(
                "qmgr_active_done_3_generic: remove {id} from {ACTIVE}: {}",
                crate::maillog::strerror(&e.source)
            )),
        }
    }

    /// Action::MoveToDeferred: back to deferred/ until the back-off time.
    pub(super) fn defer_file(&mut self, now: u64, queue_id: &[u8], until: u64) {
        if let Ok(id) = QueueId::parse(queue_id) {
            self.move_back(now, &id, DEFERRED, until.saturating_sub(now));
        }
    }

    /// Action::Patch.
    pub(super) fn patch_file(&mut self, queue_id: &[u8], patch: &Patch) {
        if let Ok(id) = QueueId::parse(queue_id) {
            self.patch(&id, patch);
        }
    }

    /// Action::Corrupt.
    pub(super) fn corrupt_file(&mut self, queue_id: &[u8]) {
        if let Ok(id) = QueueId::parse(queue_id) {
            self.corrupt(&id);
        }
    }

    pub(super) fn notify_result(&mut self, now: u64, m: MessageRef, status: i32) {
        self.sched.notice_done(now, m, status);
        self.run_actions(now);
    }

    fn patch(&self, id: &QueueId, patch: &Patch) {
        if let Err(e) = self.qdir.apply_patch(ACTIVE, id, patch) {
            fatal(&e.to_string());
        }
    }

    /// The retry service is dead too: the recipient's deferral is recorded without an agent,
    /// as the C daemon's qmgr_defer_recipient (`message->flags |= defer_append(...)`): the
    /// message stays deferred unless a probe's or `sendmail -bv`'s record was taken.
    pub(super) fn defer_recipient(&mut self, m: MessageRef, recipient: &Recipient, dsn: &Dsn) {
        let status = self.defer_append(m, recipient, dsn);
        self.sched.recorded(m, status);
    }

    /// A double bounce to the local double-bounce address, as the C daemon's
    /// qmgr_message_resolve: recorded through sent(), then marked done in the file; when the
    /// record fails the recipient stays and the message is deferred.
    pub(super) fn discard_recipient(&mut self, m: MessageRef, recipient: &Recipient) {
        let dsn = Dsn {
            status: b"2.0.0".to_vec(),
            reason: b"undeliverable postmaster notification discarded".to_vec(),
            ..Dsn::default()
        };
        let status = self.sent(m, recipient, &dsn);
        self.sched.recorded(m, status);
        if status != 0 {
            return;
        }
        let id = self
            .sched
            .message(m)
            .and_then(|x| QueueId::parse(x.queue_id()).ok());
        if let Some(id) = id {
            self.patch(&id, &Patch::mark_recipient_done(recipient.offset));
        }
    }

    /// `<id>: to=<rcpt>, [orig_to=<orig>, ]relay=none, delay=D, delays=a/b/0/0, dsn=X, status=S (reason)`.
    pub(super) fn log_recipient(&self, m: MessageRef, r: &Recipient, dsn: &Dsn, status: &str) {
        let Some(msg) = self.sched.message(m) else {
            return;
        };
        let now = super::now_timeval();
        let secs = |t: &crate::proto::msg_stats::Timeval| t.sec as f64 + t.usec as f64 / 1e6;
        let arrival = crate::proto::msg_stats::Timeval {
            sec: msg.envelope().arrival_time.sec,
            usec: msg.envelope().arrival_time.usec,
        };
        let a = (secs(&msg.active_arrival()) - secs(&arrival)).max(0.0);
        let b = (secs(&now) - secs(&msg.active_arrival())).max(0.0);
        let limit = u32::try_from(self.params.delay_logging_resolution_limit).unwrap_or(2);
        let orig = if !r.original().is_empty() && !r.original().eq_ignore_ascii_case(r.address()) {
            format!(", orig_to=<{}>", self.log_address(r.original()))
        } else {
            String::new()
        };
        info!(
            "{}: to=<{}>{orig}, relay=none, delay={}, delays={}/{}/0/0, dsn={}, status={status} ({})",
            String::from_utf8_lossy(msg.queue_id()),
            self.log_address(r.address()),
            crate::maillog::delay::format(a + b, limit),
            crate::maillog::delay::format(a, limit),
            crate::maillog::delay::format(b, limit),
            String::from_utf8_lossy(&dsn.status),
            String::from_utf8_lossy(&dsn.reason)
        );
    }
}
