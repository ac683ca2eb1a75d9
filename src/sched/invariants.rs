//! The scheduler's bookkeeping, checked: what the C daemon would `msg_panic` over if it found
//! it broken. Run after every step of the seeded simulation (and callable from any test).

use std::collections::{HashMap, HashSet};

use super::transport::MAX_PENDING;
use super::*;

impl Scheduler {
    /// Every count agrees with the objects it counts, every reference points at a live
    /// object, and nothing that needs a timer to move on lacks one. `Err` names the first
    /// broken rule.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_entries()?;
        self.check_queues()?;
        self.check_transports()?;
        self.check_messages()?;
        Ok(())
    }

    fn check_entries(&self) -> Result<(), String> {
        let mut recipients = 0;
        for (id, entry) in self.entries.iter() {
            recipients += entry.recipients.len();
            if self.messages.get(entry.message.0).is_none() {
                return Err(format!("entry {id:?} of a freed message"));
            }
            let Some(queue) = self.queues.get(entry.queue.0) else {
                return Err(format!("entry {id:?} in a freed queue"));
            };
            let waiting = queue.todo.iter().filter(|e| e.0 == id).count();
            match (entry.busy, waiting) {
                (true, 0) | (false, 1) => {}
                (busy, n) => {
                    return Err(format!(
                        "entry {id:?} busy={busy} is {n} times on its queue's todo list"
                    ))
                }
            }
            if entry.recipients.is_empty() {
                return Err(format!("entry {id:?} without recipients"));
            }
        }
        if recipients != self.recipient_count {
            return Err(format!(
                "recipient_count {} but entries hold {recipients}",
                self.recipient_count
            ));
        }
        Ok(())
    }

    fn check_queues(&self) -> Result<(), String> {
        let mut busy: HashMap<Id, u32> = HashMap::new();
        for (_, entry) in self.entries.iter() {
            if entry.busy {
                *busy.entry(entry.queue.0).or_default() += 1;
            }
        }
        for (id, queue) in self.queues.iter() {
            let name = String::from_utf8_lossy(&queue.name);
            for e in &queue.todo {
                match self.entries.get(e.0) {
                    Some(entry) if entry.queue.0 == id => {}
                    Some(_) => return Err(format!("queue {name}: todo entry of another queue")),
                    None => return Err(format!("queue {name}: freed entry on the todo list")),
                }
            }
            let counted = busy.get(&id).copied().unwrap_or(0);
            if queue.busy != counted {
                return Err(format!(
                    "queue {name}: busy {} but {counted} busy entries",
                    queue.busy
                ));
            }
            let Some(transport) = self.transports.get(queue.transport.0) else {
                return Err(format!("queue {name} of a freed transport"));
            };
            if transport.by_name.get(&queue.name) != Some(&DestRef(id)) {
                return Err(format!("queue {name} not found by its name"));
            }
            if !transport.queues.contains(&DestRef(id)) {
                return Err(format!("queue {name} not on its transport's list"));
            }
            if !self.transport_order.contains(&queue.transport) {
                return Err(format!(
                    "queue {name}: its transport is off the round-robin list"
                ));
            }
            if queue.ready() && queue.empty() {
                return Err(format!("queue {name}: ready and empty but not forgotten"));
            }
            if queue.dead() != queue.dsn.is_some() {
                return Err(format!(
                    "queue {name}: dead without a reason, or vice versa"
                ));
            }
            let revival = if queue.dead() {
                Some(Timer::ReviveQueue(DestRef(id), queue.timer_seq))
            } else if queue.state.window == SUSPENDED {
                Some(Timer::ResumeQueue(DestRef(id), queue.timer_seq))
            } else {
                None
            };
            if let Some(timer) = revival.filter(|t| !self.deadlines.holds(*t)) {
                return Err(format!("queue {name}: no timer to end its {timer:?}"));
            }
        }
        Ok(())
    }

    fn check_transports(&self) -> Result<(), String> {
        let order: HashSet<TransportRef> = self.transport_order.iter().copied().collect();
        if order.len() != self.transport_order.len() || order.len() != self.transports.len() {
            return Err("transport round-robin list does not hold each transport once".into());
        }
        for (id, transport) in self.transports.iter() {
            let name = String::from_utf8_lossy(&transport.name);
            if self.transport_by_name.get(&transport.name) != Some(&TransportRef(id)) {
                return Err(format!("transport {name} not found by its name"));
            }
            if transport.queues.len() != transport.by_name.len() {
                return Err(format!("transport {name}: queue list and names disagree"));
            }
            for q in &transport.queues {
                match self.queues.get(q.0) {
                    Some(queue) if queue.transport.0 == id => {}
                    _ => return Err(format!("transport {name}: a queue not its own")),
                }
            }
            if transport.pending > MAX_PENDING {
                return Err(format!("transport {name}: {} pending", transport.pending));
            }
            if transport.dead != transport.dsn.is_some() {
                return Err(format!(
                    "transport {name}: dead without a reason, or vice versa"
                ));
            }
            let timer = Timer::ReviveTransport(TransportRef(id), transport.timer_seq);
            if transport.dead && !self.deadlines.holds(timer) {
                return Err(format!("transport {name}: dead with no timer to revive it"));
            }
        }
        Ok(())
    }

    fn check_messages(&self) -> Result<(), String> {
        let mut refs: HashMap<Id, u32> = HashMap::new();
        for (_, entry) in self.entries.iter() {
            *refs.entry(entry.message.0).or_default() += 1;
        }
        let mut probes = 0;
        for (id, msg) in self.messages.iter() {
            let name = String::from_utf8_lossy(&msg.queue_id);
            let counted = refs.get(&id).copied().unwrap_or(0);
            if msg.refcount != counted {
                return Err(format!(
                    "message {name}: refcount {} but {counted} entries",
                    msg.refcount
                ));
            }
            if msg.completion.is_some() && (msg.refcount > 0 || msg.routing) {
                return Err(format!("message {name}: completing with deliveries to go"));
            }
            if msg.routing && msg.reading {
                return Err(format!("message {name}: routing and reading at once"));
            }
            if msg.is_verify_probe() {
                probes += 1;
            }
        }
        if probes != self.verify_pending {
            return Err(format!(
                "verify_pending {} but {probes} probes",
                self.verify_pending
            ));
        }
        Ok(())
    }
}
