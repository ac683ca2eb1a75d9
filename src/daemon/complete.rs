//! A message's last delivery is done (the C daemon's qmgr_active_done chain): bounce flush if
//! there is a bounce log, more recipients if the file holds more, trace flush for success
//! notices, then for deferred mail either the return to sender (expired) or a delay warning,
//! and finally unlink (`removed`) or a move to deferred/ with the back-off time stamp.
//! bounce/defer/trace requests are asynchronous: other mail keeps moving while they run
//! ([`super::notify`] drives their connections and reports back to `notify_result`).

use crate::proto::attr::AttrMessage;
use log::{info, warn};

use super::{fatal, Daemon};
use crate::proto::bounce::{bounce_flags, BounceCommand, FlushRequest};
use crate::proto::dsn::Dsn;
use crate::proto::recipient::Recipient;
use crate::queue::file::{BounceLog, OpenCheck, Removed};
use crate::queue::id::QueueId;
use crate::queue::path::{ACTIVE, BOUNCE, DEFERRED};
use crate::queue::record::Patch;
use crate::sched::complete::{deferred_until, expiry, wants_trace_flush, warning_due, Expiry};
use crate::sched::MessageRef;

/// Which report a bounce-daemon request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// bounce(8): non-delivery notices for the bounce log.
    Bounce,
    /// trace(8): success notices / delivery records.
    Trace,
    /// defer(8) flush: the message expired; return it.
    Expire,
    /// defer(8) warn: delay notice.
    Warn,
}

impl Daemon {
    fn queue_id_of(&self, m: MessageRef) -> Option<QueueId> {
        QueueId::parse(&self.sched.message(m)?.queue_id).ok()
    }

    /// Action::MessageDone: step 1, the bounce log.
    pub(super) fn message_done(&mut self, now: u64, m: MessageRef) {
        if self.loading.contains_key(&m) {
            // Its next batch is being routed; the scheduler reports it done again when the
            // new entries are finished.
            return;
        }
        let Some(id) = self.queue_id_of(m) else {
            self.sched.remove_message(m);
            return;
        };
        match self.qdir.check_bounce_log(&id) {
            Ok(BounceLog::NonEmpty(_)) => self.start_notify(now, m, Step::Bounce),
            Ok(_) => self.after_bounce(now, m),
            Err(e) => fatal(&format!(
                "remove {BOUNCE} {id}: {}",
                crate::maillog::strerror(&e.source)
            )),
        }
    }

    /// Step 2-3: a deferred file an agent marked corrupt goes to corrupt/; more recipients are
    /// read; else on to the trace flush.
    fn after_bounce(&mut self, now: u64, m: MessageRef) {
        let Some(id) = self.queue_id_of(m) else {
            return;
        };
        let Some(msg) = self.sched.message(m) else {
            return;
        };
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        if msg.deferred {
            // mail_open_ok's verdict, with its warnings (link count, not a regular file).
            let check = self.qdir.open_ok(ACTIVE, id.as_bytes(), now_i);
            if let Some(w) = check.warning() {
                warn!("{w}");
            }
            if !matches!(check, OpenCheck::Ready(_)) {
                self.corrupt(&id);
                self.sched.remove_message(m);
                return;
            }
        }
        if msg.envelope.resume_offset.is_some() {
            if !self.read_more_recipients(now, m) {
                self.corrupt(&id);
                self.sched.remove_message(m);
            }
            return;
        }
        if wants_trace_flush(msg.envelope.trace_flags, msg.envelope.size.qmgr_flags) {
            self.start_notify(now, m, Step::Trace);
            return;
        }
        self.after_trace(now, m);
    }

    /// Step 4: deferred mail expires or gets its delay warning.
    fn after_trace(&mut self, now: u64, m: MessageRef) {
        let Some(msg) = self.sched.message(m) else {
            return;
        };
        if msg.deferred {
            let env = &msg.envelope;
            let force = msg.qflags & crate::sched::message_flags::FORCE_EXPIRE != 0;
            match expiry(
                now,
                env.create_time,
                env.sender.is_empty(),
                force,
                &self.lifetimes,
            ) {
                Expiry::Expired(status) => {
                    info!(
                        "{}: from=<{}>, status={status}, returned to sender",
                        String::from_utf8_lossy(&msg.queue_id),
                        self.log_address(&env.sender)
                    );
                    self.start_notify(now, m, Step::Expire);
                    return;
                }
                Expiry::Young => {
                    if warning_due(now, env.warn.map(|w| w.time)) {
                        self.start_notify(now, m, Step::Warn);
                        return;
                    }
                }
            }
        }
        self.finish(now, m);
    }

    /// Step 5: unlink, or back to deferred/ until the back-off time.
    fn finish(&mut self, now: u64, m: MessageRef) {
        let Some(msg) = self.sched.remove_message(m) else {
            return;
        };
        let Ok(id) = QueueId::parse(&msg.queue_id) else {
            return;
        };
        if msg.deferred {
            let until = deferred_until(now, msg.envelope.create_time, &self.lifetimes);
            self.move_back(now, &id, DEFERRED, until - now);
        } else {
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
    }

    fn start_notify(&mut self, now: u64, m: MessageRef, step: Step) {
        let Some(msg) = self.sched.message(m) else {
            return;
        };
        let env = &msg.envelope;
        let verp = env
            .verp_delimiters
            .clone()
            .filter(|_| !self.params.disable_verp_bounces);
        let (service, command, flags, what) = match step {
            Step::Bounce => (
                &self.params.bounce_service_name,
                if verp.is_some() {
                    BounceCommand::Verp
                } else {
                    BounceCommand::Flush
                },
                bounce_flags::KEEP,
                if verp.is_some() { "verp" } else { "bounce" },
            ),
            Step::Trace => (
                &self.params.trace_service_name,
                BounceCommand::Trace,
                env.trace_flags as u32,
                "trace",
            ),
            Step::Expire => (
                &self.params.defer_service_name,
                if verp.is_some() {
                    BounceCommand::Verp
                } else {
                    BounceCommand::Flush
                },
                bounce_flags::DELRCPT,
                if verp.is_some() { "verp" } else { "bounce" },
            ),
            Step::Warn => (
                &self.params.defer_service_name,
                BounceCommand::Warn,
                bounce_flags::KEEP,
                "delay warning",
            ),
        };
        let request = FlushRequest {
            command,
            flags,
            queue_name: ACTIVE.as_bytes().to_vec(),
            queue_id: msg.queue_id.clone(),
            encoding: env.attrs.encoding().to_vec(),
            smtputf8: env.smtputf8 as u32,
            sender: env.sender.clone(),
            envelope_id: env.attrs.dsn_envid().to_vec(),
            ret_flags: env.dsn_ret as u32,
            verp_delimiters: if command == BounceCommand::Verp {
                verp
            } else {
                None
            },
        }
        .to_bytes();
        let service = service.clone();
        self.connect_notify(now, m, step, &service, request, what);
    }

    /// A bounce/defer/trace request ended with `status` (0 = done); continue the chain.
    pub(super) fn notify_result(
        &mut self,
        now: u64,
        m: MessageRef,
        step: Step,
        what: &str,
        status: i32,
    ) {
        let Some(msg) = self.sched.message_mut(m) else {
            return;
        };
        if status != 0 {
            info!(
                "{}: status=deferred ({what} failed)",
                String::from_utf8_lossy(&msg.queue_id)
            );
        }
        let id = QueueId::parse(&msg.queue_id).ok();
        match step {
            Step::Bounce => {
                msg.deferred |= status != 0;
                self.after_bounce(now, m);
            }
            Step::Trace => {
                msg.deferred |= status != 0;
                if status == 0 {
                    if let (Some(offset), Some(id)) = (msg.envelope.trace_flags_offset, &id) {
                        self.patch(id, &Patch::kill_record(offset));
                    }
                }
                self.after_trace(now, m);
            }
            Step::Expire => {
                msg.deferred = status != 0;
                self.finish(now, m);
            }
            Step::Warn => {
                if status == 0 {
                    if let (Some(w), Some(id)) = (msg.envelope.warn, &id) {
                        msg.envelope.warn = None;
                        self.patch(id, &Patch::delay_warning_sent(w.offset));
                    }
                }
                self.finish(now, m);
            }
        }
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
        if self.defer_append(m, recipient, dsn) != 0 {
            if let Some(msg) = self.sched.message_mut(m) {
                msg.deferred = true;
            }
        }
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
        if self.sent(m, recipient, &dsn) != 0 {
            if let Some(msg) = self.sched.message_mut(m) {
                msg.deferred = true;
            }
            return;
        }
        if let Some(id) = self.queue_id_of(m) {
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
            sec: msg.envelope.arrival_time.sec,
            usec: msg.envelope.arrival_time.usec,
        };
        let a = (secs(&msg.active_arrival) - secs(&arrival)).max(0.0);
        let b = (secs(&now) - secs(&msg.active_arrival)).max(0.0);
        let limit = u32::try_from(self.params.delay_logging_resolution_limit).unwrap_or(2);
        let orig = if !r.original.is_empty() && !r.original.eq_ignore_ascii_case(&r.address) {
            format!(", orig_to=<{}>", self.log_address(&r.original))
        } else {
            String::new()
        };
        info!(
            "{}: to=<{}>{orig}, relay=none, delay={}, delays={}/{}/0/0, dsn={}, status={status} ({})",
            String::from_utf8_lossy(&msg.queue_id),
            self.log_address(&r.address),
            crate::maillog::delay::format(a + b, limit),
            crate::maillog::delay::format(a, limit),
            crate::maillog::delay::format(b, limit),
            String::from_utf8_lossy(&dsn.status),
            String::from_utf8_lossy(&dsn.reason)
        );
    }
}
