//! A seeded simulation of weeks of queue management on a virtual clock: queue files with
//! recipient batches, agents that deliver, bounce, defer, crash or cannot be reached, a
//! bounce/defer/trace daemon that sometimes fails, corrupt files, and a deferred queue whose
//! mail comes back when its back-off time is over, until it is delivered or expires.
//!
//! After every step the scheduler's invariants are checked; at the end, every recipient was
//! settled exactly once per stay in the active queue, every stay ended exactly once, and the
//! completion kept the C daemon's rules: notices only when due and at most one of each kind
//! per pass, expiry and delay warnings by the clock, back-off times between the bounds.

use std::collections::HashMap;

use super::complete::Lifetimes;
use super::tests::{limits_with, route_to, Rng};
use super::*;
use crate::proto::deliver::{request_flags, DeliveryReply, DeliveryRequest};
use crate::proto::msg_stats::Timeval;
use crate::queue::envelope::{Envelope, WarnRecord};

const T0: u64 = 1_000_000_000;
const WARN_OFFSET: u64 = 33;
const TRACE_OFFSET: u64 = 44;

/// What became of one recipient in one stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Bounced,
    Deferred,
}

/// A queue file as the simulated disk holds it.
#[derive(Debug)]
struct MailFile {
    id: String,
    create_time: i64,
    sender_empty: bool,
    /// The `W` record's time; `None` once the warning is marked sent (or never asked).
    warn: Option<i64>,
    trace: bool,
    force_expire: bool,
    /// Recipients not yet done, by address.
    pending: Vec<String>,
    bounce_log: bool,
    /// Deferred: not to be taken before this time.
    until: u64,
    state: FileState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileState {
    Deferred,
    Active(MessageRef),
    Removed,
    Corrupt,
}

/// One stay of a message in the active queue.
#[derive(Debug, Default)]
struct Stay {
    file: usize,
    batches: Vec<Vec<String>>,
    settled: HashMap<String, Vec<Outcome>>,
    deferred: bool,
    /// Notices asked in the current completion pass.
    notices: Vec<NoticeService>,
    warn_asked: bool,
    expire_asked: bool,
    trace_asked: bool,
    returned: bool,
}

struct World {
    rng: Rng,
    now: u64,
    s: Scheduler,
    lifetimes: Lifetimes,
    files: Vec<MailFile>,
    stays: HashMap<MessageRef, Stay>,
    pending: Vec<TransportRef>,
    busy: Vec<(EntryRef, DeliveryRequest)>,
    batch_size: usize,
    /// Counts, for the test's own sanity.
    delivered: usize,
    expired: usize,
    warned: usize,
}

fn recipient(address: &str) -> (Recipient, route::Route) {
    let domain = address.rsplit('@').next().unwrap_or("");
    let transport = if domain == "d0.lab" { "local" } else { "smtp" };
    route_to(transport, domain, address)
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
        let lifetimes = Lifetimes {
            max_queue_lifetime: 3600 * (6 + rng.below(48)),
            bounce_queue_lifetime: 3600 * (1 + rng.below(6)),
            min_backoff: 300,
            max_backoff: 4000,
        };
        let cfg = SchedConfig {
            lifetimes,
            refill_below: [2, 5, 20_000][rng.below(3) as usize],
            // Half the worlds jitter their back-off (from the seed, so the world's own
            // draws stay as they were); the bounds checked in `end` hold either way.
            backoff_jitter: [0, 0, 30, 50][(seed >> 8) as usize % 4],
            random_seed: seed,
            ..SchedConfig::default()
        };
        let initial = 1 + rng.below(5) as i32;
        let rcpt_limit = [1, 2, 50][rng.below(3) as usize];
        let s = Scheduler::new(cfg, limits_with(initial, 20, rcpt_limit));
        let mut files = Vec::new();
        for i in 0..1 + rng.below(30) {
            let age = rng.below(3 * 86400) as i64;
            let create_time = T0 as i64 - age;
            let pending = (0..1 + rng.below(8))
                .map(|r| format!("u{i}x{r}@d{}.lab", rng.below(4)))
                .collect();
            files.push(MailFile {
                id: format!("M{i}"),
                create_time,
                sender_empty: rng.below(5) == 0,
                warn: (rng.below(3) == 0).then(|| create_time + 3600 * rng.below(8) as i64),
                trace: rng.below(4) == 0,
                force_expire: rng.below(25) == 0,
                pending,
                bounce_log: false,
                until: T0 + rng.below(600),
                state: FileState::Deferred,
            });
        }
        World {
            batch_size: 1 + rng.below(4) as usize,
            rng,
            now: T0,
            s,
            lifetimes,
            files,
            stays: HashMap::new(),
            pending: Vec::new(),
            busy: Vec::new(),
            delivered: 0,
            expired: 0,
            warned: 0,
        }
    }

    /// The deferred-queue scan: files whose time has come enter the active queue.
    fn import_due(&mut self) {
        for f in 0..self.files.len() {
            let file = &self.files[f];
            if file.state != FileState::Deferred || file.until > self.now {
                continue;
            }
            let batches: Vec<Vec<String>> = file
                .pending
                .chunks(self.batch_size)
                .map(<[String]>::to_vec)
                .collect();
            let envelope = Envelope {
                sender: if file.sender_empty {
                    Box::default()
                } else {
                    b"s@x"[..].into()
                },
                create_time: file.create_time,
                warn: file.warn.map(|time| WarnRecord {
                    offset: WARN_OFFSET,
                    time,
                }),
                trace_flags: if file.trace {
                    request_flags::RECORD as i32
                } else {
                    0
                },
                trace_flags_offset: file.trace.then_some(TRACE_OFFSET),
                resume_offset: (batches.len() > 1).then_some(1),
                recipients: batches
                    .first()
                    .map(|b| b.iter().map(|a| recipient(a).0).collect())
                    .unwrap_or_default(),
                ..Envelope::default()
            };
            let qflags = if file.force_expire {
                message_flags::FORCE_EXPIRE
            } else {
                0
            };
            let (m, recipients) = self.s.add_message(
                file.id.clone().into_bytes(),
                envelope,
                Timeval::default(),
                qflags,
            );
            self.files[f].state = FileState::Active(m);
            self.stays.insert(
                m,
                Stay {
                    file: f,
                    batches,
                    ..Stay::default()
                },
            );
            self.route(m, recipients);
        }
    }

    fn route(&mut self, m: MessageRef, recipients: Vec<Recipient>) {
        let routes: Vec<_> = recipients
            .into_iter()
            .map(|r| recipient(&String::from_utf8_lossy(r.address())))
            .collect();
        self.s.assign(self.now, m, routes);
    }

    fn stay(&mut self, m: MessageRef) -> Result<&mut Stay, String> {
        self.stays.get_mut(&m).ok_or_else(|| {
            format!("an action for a message that is not in the active queue: {m:?}")
        })
    }

    fn settle(&mut self, m: MessageRef, address: &[u8], outcome: Outcome) -> Result<(), String> {
        let address = String::from_utf8_lossy(address).into_owned();
        let stay = self.stay(m)?;
        stay.settled
            .entry(address.clone())
            .or_default()
            .push(outcome);
        stay.deferred |= outcome == Outcome::Deferred;
        let f = stay.file;
        match outcome {
            Outcome::Delivered | Outcome::Bounced => {
                self.files[f].pending.retain(|a| *a != address);
                self.files[f].bounce_log |= outcome == Outcome::Bounced;
                self.delivered += 1;
            }
            Outcome::Deferred => {}
        }
        Ok(())
    }

    /// Carries out the scheduler's actions as the event loop would, with a random world.
    /// Returns how many there were.
    fn run_actions(&mut self) -> Result<usize, String> {
        let mut count = 0;
        loop {
            let actions = self.s.take_actions();
            if actions.is_empty() {
                return Ok(count);
            }
            count += actions.len();
            for action in actions {
                self.act(action)?;
                self.s.check_invariants()?;
            }
        }
    }

    fn act(&mut self, action: Action) -> Result<(), String> {
        let now = self.now;
        match action {
            Action::Connect { transport, .. } => self.pending.push(transport),
            Action::DeferRecipient {
                message, recipient, ..
            } => {
                self.settle(message, recipient.address(), Outcome::Deferred)?;
                self.s.recorded(message, -1);
            }
            Action::DiscardRecipient { message, recipient } => {
                self.settle(message, recipient.address(), Outcome::Delivered)?;
                self.s.recorded(message, 0);
            }
            Action::Warn(_) | Action::Info(_) => {}
            Action::CheckBounceLog { message, .. } => {
                let stay = self.stay(message)?;
                stay.notices.clear();
                let f = stay.file;
                let present = self.files[f].bounce_log;
                self.s.bounce_log_checked(now, message, present);
            }
            Action::CheckQueueFile { message, .. } => {
                if !self.stay(message)?.deferred {
                    return Err("file checked for mail that was not deferred".into());
                }
                let usable = self.rng.below(60) != 0;
                self.s.queue_file_checked(now, message, usable);
            }
            Action::Notify {
                message,
                service,
                request,
            } => self.notify(message, service, &request)?,
            Action::ReadRecipients { message, start, .. } => {
                let stay = self.stay(message)?;
                let index = start as usize;
                let Some(batch) = stay.batches.get(index).cloned() else {
                    return Err(format!("read of batch {index} that does not exist"));
                };
                let next = (index + 1 < stay.batches.len()).then_some(start + 1);
                if self.rng.below(40) == 0 {
                    self.s.batch_unreadable(now, message);
                } else {
                    self.s.batch_read(message, next);
                    let recipients = batch.iter().map(|a| recipient(a).0).collect();
                    self.route(message, recipients);
                }
            }
            Action::Patch { queue_id, patch } => {
                // The only patches of the completion: the trace record killed after a good
                // trace flush, the W record marked sent after a good delay warning.
                let id = String::from_utf8_lossy(&queue_id);
                let file = self
                    .files
                    .iter()
                    .find(|f| f.id == id)
                    .ok_or("no such file")?;
                let FileState::Active(m) = file.state else {
                    return Err("a patch for a file not in the active queue".into());
                };
                let stay = self.stays.get(&m).ok_or("no stay")?;
                let good = match patch.offset {
                    WARN_OFFSET => stay.warn_asked && file.warn.is_none(),
                    TRACE_OFFSET => stay.trace_asked,
                    _ => false,
                };
                if !good {
                    return Err(format!("unexpected patch {patch:?}"));
                }
            }
            Action::Remove { queue_id } => self.end(&queue_id, FileState::Removed, None)?,
            Action::MoveToDeferred { queue_id, until } => {
                self.end(&queue_id, FileState::Deferred, Some(until))?
            }
            Action::Corrupt { queue_id } => self.end(&queue_id, FileState::Corrupt, None)?,
        }
        Ok(())
    }

    fn notify(
        &mut self,
        m: MessageRef,
        service: NoticeService,
        request: &crate::proto::bounce::FlushRequest,
    ) -> Result<(), String> {
        use crate::proto::bounce::BounceCommand;
        let now = self.now;
        let lifetimes = self.lifetimes;
        let status = if self.rng.below(8) == 0 { -1 } else { 0 };
        let stay = self.stay(m)?;
        if stay.notices.contains(&service) && service != NoticeService::Defer {
            return Err(format!("a second {service:?} notice in one pass"));
        }
        stay.notices.push(service);
        let f = stay.file;
        let file = &self.files[f];
        let (bounce_log, trace, warn, sender_empty, create_time, force_expire) = (
            file.bounce_log,
            file.trace,
            file.warn,
            file.sender_empty,
            file.create_time,
            file.force_expire,
        );
        let stay = self.stays.get_mut(&m).ok_or("stay gone")?;
        match (service, request.command) {
            (NoticeService::Bounce, _) => {
                if !bounce_log {
                    return Err("a bounce notice without a bounce log".into());
                }
                if status == 0 {
                    self.files[f].bounce_log = false;
                } else {
                    stay.deferred = true;
                }
            }
            (NoticeService::Trace, _) => {
                if !trace || stay.trace_asked {
                    return Err("a trace notice not asked for, or twice".into());
                }
                stay.trace_asked = true;
                stay.deferred |= status != 0;
            }
            (NoticeService::Defer, BounceCommand::Warn) => {
                let due = matches!(warn, Some(w) if w > 0 && now as i64 >= w - 1);
                if !stay.deferred || !due || stay.warn_asked || stay.expire_asked {
                    return Err("a delay warning that is not due".into());
                }
                stay.warn_asked = true;
                if status == 0 {
                    self.files[f].warn = None;
                    self.warned += 1;
                }
            }
            (NoticeService::Defer, _) => {
                let old = expired_by_age(&lifetimes, now, sender_empty, create_time);
                if !stay.deferred || !(old || force_expire) || stay.expire_asked {
                    return Err("an expiry that is not due".into());
                }
                stay.expire_asked = true;
                if status == 0 {
                    stay.returned = true;
                    self.expired += 1;
                }
            }
        }
        self.s.notice_done(now, m, status);
        Ok(())
    }

    /// A stay ends: the file is removed, deferred or corrupt.
    fn end(&mut self, queue_id: &[u8], to: FileState, until: Option<u64>) -> Result<(), String> {
        let id = String::from_utf8_lossy(queue_id).into_owned();
        let Some(f) = self.files.iter().position(|x| x.id == id) else {
            return Err(format!("{id}: not a file"));
        };
        let FileState::Active(m) = self.files[f].state else {
            return Err(format!("{id}: ended twice"));
        };
        let stay = self.stays.remove(&m).ok_or("no stay")?;
        let file = &mut self.files[f];
        // Every recipient of the batches read was settled exactly once.
        for (address, outcomes) in &stay.settled {
            if outcomes.len() != 1 {
                return Err(format!("{id}: {address} settled {outcomes:?}"));
            }
        }
        if to == FileState::Corrupt {
            file.state = FileState::Corrupt;
            return Ok(());
        }
        for address in stay.batches.iter().flatten() {
            if !stay.settled.contains_key(address) {
                return Err(format!("{id}: {address} never tried"));
            }
        }
        match to {
            FileState::Removed => {
                if (stay.deferred || !file.pending.is_empty()) && !stay.returned {
                    return Err(format!("{id}: removed with mail to go: {:?}", file.pending));
                }
                if file.trace && !stay.trace_asked {
                    return Err(format!("{id}: done without the trace flush"));
                }
                file.state = FileState::Removed;
            }
            _ => {
                let until = until.ok_or("no until")?;
                let age_bounds = until >= self.now + self.lifetimes.min_backoff
                    && until <= self.now + self.lifetimes.max_backoff;
                if !age_bounds {
                    return Err(format!("{id}: back-off until {until} at {}", self.now));
                }
                if !stay.deferred {
                    return Err(format!("{id}: deferred without a deferral"));
                }
                let old = expired_by_age(
                    &self.lifetimes,
                    self.now,
                    file.sender_empty,
                    file.create_time,
                );
                if (old || file.force_expire) && !stay.expire_asked {
                    return Err(format!("{id}: expired but not returned"));
                }
                let warn_due = matches!(file.warn, Some(w) if w > 0 && self.now as i64 >= w - 1);
                if warn_due && !stay.warn_asked && !stay.expire_asked {
                    return Err(format!("{id}: the delay warning was due"));
                }
                file.until = until;
                file.state = FileState::Deferred;
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<bool, String> {
        // As each pass of the event loop: connections for whatever waits, until none is new.
        loop {
            self.s.drain();
            if self.run_actions()? == 0 {
                break;
            }
        }
        if self.pending.is_empty() && self.busy.is_empty() {
            // Only the clock can make progress: the next timer or deferred file.
            let next_file = self
                .files
                .iter()
                .filter(|f| f.state == FileState::Deferred)
                .map(|f| f.until)
                .min();
            let next = [self.s.poll_timeout(), next_file]
                .into_iter()
                .flatten()
                .min();
            let Some(at) = next else {
                if self.s.message_count() != 0 {
                    let stuck: Vec<String> = self
                        .s
                        .messages
                        .iter()
                        .map(|(_, x)| {
                            format!(
                                "{} refcount {} routing {} reading {} completion {:?} resume {:?}",
                                String::from_utf8_lossy(&x.queue_id),
                                x.refcount,
                                x.routing,
                                x.reading,
                                x.completion,
                                x.envelope.resume_offset
                            )
                        })
                        .collect();
                    let entries: Vec<String> = self
                        .s
                        .entries
                        .iter()
                        .map(|(_, e)| {
                            let q = self.s.queues.get(e.queue.0).unwrap();
                            let t = self.s.transports.get(q.transport.0).unwrap();
                            format!(
                                "busy {} queue {} window {} qbusy {} todo {} dsn {:?} transport {} dead {} rate_lock {} pending {}",
                                e.busy,
                                String::from_utf8_lossy(&q.name),
                                q.state.window,
                                q.busy,
                                q.todo.len(),
                                q.dsn.as_ref().map(|d| String::from_utf8_lossy(&d.reason).into_owned()),
                                String::from_utf8_lossy(&t.name),
                                t.dead,
                                t.rate_lock,
                                t.pending
                            )
                        })
                        .collect();
                    return Err(format!("stuck: {stuck:?} {entries:?}"));
                }
                return Ok(false);
            };
            self.now = self.now.max(at);
            self.s.handle_timeout(self.now);
            self.import_due();
            return Ok(true);
        }
        let now = self.now;
        match self.rng.below(10) {
            0..=3 if !self.pending.is_empty() => {
                let i = self.rng.below(self.pending.len() as u64) as usize;
                let t = self.pending.remove(i);
                if self.rng.below(25) == 0 {
                    self.s.agent_unavailable(now, t);
                } else if let Some(delivery) = self.s.agent_ready(now, t) {
                    self.busy.push(delivery);
                }
            }
            4..=8 if !self.busy.is_empty() => {
                let i = self.rng.below(self.busy.len() as u64) as usize;
                let (e, req) = self.busy.remove(i);
                if self.rng.below(30) == 0 {
                    // The write failed: the entry goes back and will be sent again.
                    self.s.request_failed(now, e);
                } else {
                    self.reply(e, &req)?;
                }
            }
            _ => {
                self.now += self.rng.below(120);
                self.s.handle_timeout(self.now);
                self.import_due();
            }
        }
        self.s.check_invariants()?;
        Ok(true)
    }

    fn reply(&mut self, e: EntryRef, req: &DeliveryRequest) -> Result<(), String> {
        let id = String::from_utf8_lossy(&req.queue_id).into_owned();
        let Some(FileState::Active(m)) = self.files.iter().find(|f| f.id == id).map(|f| f.state)
        else {
            return Err(format!(
                "{id}: a delivery for a message not in the active queue"
            ));
        };
        let (reply, outcome) = match self.rng.below(12) {
            0 => (None, Outcome::Deferred),
            1 | 2 => (Some(defer_reply("4.4.1", "refused")), Outcome::Deferred),
            3 => (Some(defer_reply("", "")), Outcome::Deferred),
            4 => (Some(DeliveryReply::default()), Outcome::Bounced),
            _ => (Some(DeliveryReply::default()), Outcome::Delivered),
        };
        for r in &req.recipients {
            self.settle(m, r.address(), outcome)?;
        }
        self.s.agent_reply(self.now, e, reply.as_ref());
        Ok(())
    }
}

/// Whether deferred mail is older than its lifetime (bounce_queue_lifetime for bounces).
fn expired_by_age(l: &Lifetimes, now: u64, sender_empty: bool, create_time: i64) -> bool {
    let lifetime = if sender_empty {
        l.bounce_queue_lifetime
    } else {
        l.max_queue_lifetime
    };
    now as i64 >= create_time + lifetime as i64
}

fn defer_reply(status: &str, reason: &str) -> DeliveryReply {
    let mut reply = DeliveryReply {
        status: 4,
        ..DeliveryReply::default()
    };
    reply.hop_status.status = status.as_bytes().to_vec();
    reply.hop_status.reason = reason.as_bytes().to_vec();
    reply
}

/// Runs one seeded world to its end. Err names the first broken rule.
pub(super) fn simulate(seed: u64) -> Result<(), String> {
    let mut w = World::new(seed);
    w.import_due();
    w.run_actions()?;
    for _ in 0..400_000 {
        if !w.step()? {
            break;
        }
    }
    if let Some(f) = w
        .files
        .iter()
        .find(|f| matches!(f.state, FileState::Active(_)))
    {
        return Err(format!("{} never left the active queue", f.id));
    }
    if let Some(f) = w.files.iter().find(|f| f.state == FileState::Deferred) {
        return Err(format!("{} still deferred at the end of time", f.id));
    }
    if w.s.recipient_count() != 0 || w.s.message_count() != 0 {
        return Err("the scheduler still holds mail".into());
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
    /// Whatever the agents and the bounce daemon do, every recipient is settled exactly once
    /// per stay, every stay ends once, and the completion keeps the C daemon's rules.
    #[test]
    fn no_mail_is_lost_or_duplicated_whatever_the_agents_do(seed in proptest::prelude::any::<u64>()) {
        if let Err(e) = simulate(seed) {
            proptest::prop_assert!(false, "seed {seed}: {e}");
        }
    }
}

#[test]
fn the_simulated_weeks_see_expiry_warnings_and_bounces() {
    // Across seeds, the paths the property test is about are all taken.
    let (mut expired, mut warned, mut delivered) = (0, 0, 0);
    for seed in 0..40 {
        let mut w = World::new(seed);
        w.import_due();
        w.run_actions()
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        while w.step().unwrap_or_else(|e| panic!("seed {seed}: {e}")) {}
        expired += w.expired;
        warned += w.warned;
        delivered += w.delivered;
    }
    assert!(
        expired > 0 && warned > 0 && delivered > 0,
        "{expired} {warned} {delivered}"
    );
}

/// Thirty thousand more worlds (`cargo test --release -- --ignored sweep`, about 30 s).
#[test]
#[ignore]
fn sweep() {
    for seed in 0..30_000u64 {
        if let Err(e) = simulate(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) {
            panic!("seed {seed}: {e}");
        }
    }
}
