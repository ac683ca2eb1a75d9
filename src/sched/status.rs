//! The scheduler's live state for `oqmgrctl status` and `metrics`: transports and
//! destinations as the status protocol carries them. Built on request only, from the
//! transport and destination tables (never the messages), and capped in size.

use crate::proto::status::{DestinationStatus, TransportStatus, MAX_DESTINATIONS};

use super::*;

impl Scheduler {
    /// Every transport, in the round-robin order.
    pub fn transport_status(&self) -> Vec<TransportStatus> {
        self.transport_order
            .iter()
            .filter_map(|t| self.transports.get(t.0))
            .map(|x| {
                let (mut busy, mut todo) = (0u64, 0u64);
                for queue in x.queues.iter().filter_map(|q| self.queues.get(q.0)) {
                    busy += u64::from(queue.busy);
                    todo += queue.todo.len() as u64;
                }
                TransportStatus {
                    name: x.name.clone(),
                    connecting: u64::from(x.pending),
                    busy,
                    todo,
                    dead: x.dead,
                    dead_until: if x.dead { x.wake_at } else { 0 },
                    reason: x.dsn.as_ref().map(|d| d.reason.clone()).unwrap_or_default(),
                    rate_delay: u64::try_from(x.limits.transport_rate_delay).unwrap_or(0),
                    destinations: x.queues.len() as u64,
                    deliveries_ok: x.counts.ok,
                    deliveries_deferred: x.counts.deferred,
                    deliveries_crashed: x.counts.crashed,
                    unavailable: x.counts.unavailable,
                }
            })
            .collect()
    }

    /// The destinations, trouble first: dead ones (soonest back first), suspended ones,
    /// then by work in progress and waiting; at most [`MAX_DESTINATIONS`] of them. The
    /// second value is how many there are in all.
    pub fn destination_status(&self) -> (Vec<DestinationStatus>, usize) {
        let mut rows: Vec<(&DestQueue, &Transport)> = self
            .queues
            .iter()
            .filter_map(|(_, q)| Some((q, self.transports.get(q.transport.0)?)))
            .collect();
        let total = rows.len();
        let rank = |q: &DestQueue| {
            if q.dead() {
                0
            } else if q.state.window == SUSPENDED {
                1
            } else {
                2
            }
        };
        rows.sort_by(|(a, _), (b, _)| {
            rank(a)
                .cmp(&rank(b))
                .then_with(|| b.busy.cmp(&a.busy))
                .then_with(|| b.todo.len().cmp(&a.todo.len()))
                .then_with(|| a.name.cmp(&b.name))
        });
        let rows = rows
            .into_iter()
            .take(MAX_DESTINATIONS)
            .map(|(q, t)| DestinationStatus {
                transport: t.name.clone(),
                nexthop: q.nexthop.clone(),
                queue: q.name.clone(),
                window: i64::from(q.state.window),
                window_limit: i64::from(t.limits.dest_concurrency_limit),
                busy: u64::from(q.busy),
                todo: q.todo.len() as u64,
                dead: q.dead(),
                dead_until: if q.dead() || q.state.window == SUSPENDED {
                    q.wake_at
                } else {
                    0
                },
                reason: q.dsn.as_ref().map(|d| d.reason.clone()).unwrap_or_default(),
            })
            .collect();
        (rows, total)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{limits_with, route_to};
    use super::*;
    use crate::proto::deliver::DeliveryReply;
    use crate::proto::msg_stats::Timeval;
    use crate::queue::envelope::Envelope;

    #[test]
    fn a_dead_destination_comes_first_with_its_reason_and_revival_time() {
        let mut s = Scheduler::new(SchedConfig::default(), limits_with(1, 20, 50));
        let (m, _) = s.add_message(b"S1".to_vec(), Envelope::default(), Timeval::default(), 0);
        s.assign(
            100,
            m,
            vec![
                route_to("smtp", "a.lab", "x@a.lab"),
                route_to("smtp", "b.lab", "y@b.lab"),
                route_to("smtp", "b.lab", "z@b.lab"),
            ],
        );
        s.drain();
        let actions = s.take_actions();
        let t = actions
            .iter()
            .find_map(|a| match a {
                Action::Connect { transport, .. } => Some(*transport),
                _ => None,
            })
            .unwrap();
        let (e, r) = s.agent_ready(100, t).unwrap();
        let mut reply = DeliveryReply {
            status: 4,
            ..DeliveryReply::default()
        };
        reply.hop_status.status = b"4.4.1".to_vec();
        reply.hop_status.reason = b"connect to a.lab: Connection refused".to_vec();
        assert_eq!(r.nexthop, b"a.lab");
        s.agent_reply(100, e, Some(&reply));
        let (rows, total) = s.destination_status();
        assert_eq!(
            total, 2,
            "a.lab (dead, nothing waiting for retry) and b.lab"
        );
        assert_eq!(rows[0].nexthop, b"a.lab");
        assert!(rows[0].dead);
        assert_eq!(rows[0].dead_until, 400);
        assert_eq!(
            rows[0].reason,
            b"delivery temporarily suspended: connect to a.lab: Connection refused"
        );
        let smtp = &s.transport_status()[..];
        let smtp = smtp.iter().find(|x| x.name == b"smtp").unwrap();
        assert_eq!((smtp.deliveries_deferred, smtp.deliveries_ok), (1, 0));
        assert_eq!(smtp.todo, 1, "b.lab's entry waits");
    }
}
