//! Timers for the poll loop: a min-heap of deadlines; the poll timeout is the time to the next.
//! Timers can be cancelled (a delivery that ends long before its 5-hour time limit must not
//! leave its timer behind): cancelled entries are skipped when they surface, and the heap is
//! rebuilt once they outnumber the live ones, so memory follows the live timers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A handle to cancel a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerId {
    slot: usize,
    seq: u64,
}

#[derive(Debug)]
pub struct Timers<T> {
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    /// Per slot: the sequence number of the timer that owns it, and its value.
    slots: Vec<Option<(u64, T)>>,
    free: Vec<usize>,
    seq: u64,
    live: usize,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            live: 0,
        }
    }
}

impl<T> Timers<T> {
    /// Fires `what` at `at`. Ties fire in the order they were armed.
    pub fn arm(&mut self, at: Instant, what: T) -> TimerId {
        self.seq += 1;
        let seq = self.seq;
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some((seq, what));
                i
            }
            None => {
                self.slots.push(Some((seq, what)));
                self.slots.len() - 1
            }
        };
        self.live += 1;
        self.heap.push(Reverse((at, seq, slot)));
        TimerId { slot, seq }
    }

    /// Forgets a timer that has not fired yet (a no-op for one that did).
    pub fn cancel(&mut self, id: TimerId) {
        if matches!(self.slots.get(id.slot), Some(Some((seq, _))) if *seq == id.seq) {
            self.slots[id.slot] = None;
            self.free.push(id.slot);
            self.live -= 1;
            if self.heap.len() > 2 * self.live + 64 {
                self.compact();
            }
        }
    }

    fn compact(&mut self) {
        let slots = &self.slots;
        let entries: Vec<_> = std::mem::take(&mut self.heap)
            .into_iter()
            .filter(|Reverse((_, seq, slot))| {
                matches!(slots.get(*slot), Some(Some((s, _))) if s == seq)
            })
            .collect();
        self.heap = entries.into();
    }

    fn drop_cancelled_head(&mut self) {
        while let Some(Reverse((_, seq, slot))) = self.heap.peek() {
            if matches!(self.slots.get(*slot), Some(Some((s, _))) if s == seq) {
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
        let Reverse((_, _, slot)) = self.heap.pop()?;
        let (_, what) = self.slots.get_mut(slot)?.take()?;
        self.free.push(slot);
        self.live -= 1;
        Some(what)
    }

    /// Timers armed and not yet fired or cancelled.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Heap entries, cancelled ones included (for tests of the memory bound).
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }
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
