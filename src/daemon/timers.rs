//! Timers for the poll loop: a min-heap of deadlines; the poll timeout is the time to the next.
//! Timers can be cancelled (a delivery that ends long before its 5-hour time limit must not
//! leave its timer behind): cancelled entries are skipped when they surface, and the heap is
//! rebuilt once they outnumber the live ones, so memory follows the live timers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::slab::{Id, Slab};

/// A handle to cancel a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerId {
    id: Id,
    seq: u64,
}

#[derive(Debug)]
pub struct Timers<T> {
    /// Deadline, arming order (ties fire first-armed first), slot.
    heap: BinaryHeap<Reverse<(Instant, u64, Id)>>,
    /// The live timers with their arming order: a heap entry that does not match one was
    /// cancelled (the order, unique for the process's life, guards where a slot's generation
    /// could come round again).
    live: Slab<(u64, T)>,
    seq: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            live: Slab::default(),
            seq: 0,
        }
    }
}

impl<T> Timers<T> {
    /// Fires `what` at `at`. Ties fire in the order they were armed.
    pub fn arm(&mut self, at: Instant, what: T) -> TimerId {
        self.seq += 1;
        let id = self.live.insert((self.seq, what));
        self.heap.push(Reverse((at, self.seq, id)));
        TimerId { id, seq: self.seq }
    }

    /// Forgets a timer that has not fired yet (a no-op for one that did).
    pub fn cancel(&mut self, id: TimerId) {
        if !is_live(&self.live, id.seq, id.id) {
            return;
        }
        self.live.remove(id.id);
        if self.heap.len() > 2 * self.live.len() + 64 {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let live = &self.live;
        let entries: Vec<_> = std::mem::take(&mut self.heap)
            .into_iter()
            .filter(|Reverse((_, seq, id))| is_live(live, *seq, *id))
            .collect();
        self.heap = entries.into();
    }

    fn drop_cancelled_head(&mut self) {
        while let Some(Reverse((_, seq, id))) = self.heap.peek() {
            if is_live(&self.live, *seq, *id) {
                return;
            }
            self.heap.pop();
        }
    }

    /// How long poll may sleep: until the next deadline (never negative), or `None` = forever.
    pub fn timeout(&mut self, now: Instant) -> Option<Duration> {
        self.drop_cancelled_head();
        self.heap
            .peek()
            .map(|Reverse((at, _, _))| at.saturating_duration_since(now))
    }

    /// The next timer that is due, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        self.drop_cancelled_head();
        let Reverse((at, _, _)) = self.heap.peek()?;
        if *at > now {
            return None;
        }
        let Reverse((_, _, id)) = self.heap.pop()?;
        self.live.remove(id).map(|(_, what)| what)
    }

    /// Timers armed and not yet fired or cancelled.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Heap entries, cancelled ones included (for tests of the memory bound).
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

/// Whether the heap entry `(seq, id)` is a timer still armed.
fn is_live<T>(live: &Slab<(u64, T)>, seq: u64, id: Id) -> bool {
    live.get(id).is_some_and(|(s, _)| *s == seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_deadline_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.arm(t0 + Duration::from_secs(5), "b");
        t.arm(t0 + Duration::from_secs(1), "a");
        t.arm(t0 + Duration::from_secs(5), "c");
        assert_eq!(t.timeout(t0), Some(Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        assert_eq!(t.pop_due(t0 + Duration::from_secs(1)), Some("a"));
        let later = t0 + Duration::from_secs(9);
        assert_eq!(t.pop_due(later), Some("b"));
        assert_eq!(t.pop_due(later), Some("c"));
        assert!(t.is_empty());
        assert_eq!(t.timeout(later), None);
    }

    #[test]
    fn cancelled_timers_never_fire_and_do_not_pile_up() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let keep = t.arm(t0 + Duration::from_secs(10), 0u32);
        for i in 1..100_000u32 {
            let id = t.arm(t0 + Duration::from_secs(18_000), i);
            t.cancel(id);
        }
        assert_eq!(t.len(), 1);
        assert!(t.heap_len() < 200, "heap {}", t.heap_len());
        // A slot reused by a new timer is not fired by the old entry.
        let a = t.arm(t0 + Duration::from_secs(1), 7);
        t.cancel(a);
        let b = t.arm(t0 + Duration::from_secs(3), 8);
        assert_eq!(t.pop_due(t0 + Duration::from_secs(2)), None);
        assert_eq!(t.pop_due(t0 + Duration::from_secs(3)), Some(8));
        t.cancel(b);
        t.cancel(keep);
        assert!(t.is_empty());
        assert_eq!(t.timeout(t0), None);
    }
}
