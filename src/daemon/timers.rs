//! Timers for the poll loop: a min-heap of deadlines; the poll timeout is the time to the next.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A pending timer: fires `what` at `at`. Ties fire in the order they were armed.
#[derive(Debug)]
pub struct Timers<T> {
    heap: BinaryHeap<Reverse<(Instant, u64, Slot)>>,
    values: Vec<Option<T>>,
    free: Vec<usize>,
    seq: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
struct Slot(usize);

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            values: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

impl<T> Timers<T> {
    pub fn arm(&mut self, at: Instant, what: T) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.values[i] = Some(what);
                i
            }
            None => {
                self.values.push(Some(what));
                self.values.len() - 1
            }
        };
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, Slot(slot))));
    }

    /// How long poll may sleep: until the next deadline (never negative), or `None` = forever.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((at, _, _))| at.saturating_duration_since(now))
    }

    /// The next timer that is due, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        let Reverse((at, _, _)) = self.heap.peek()?;
        if *at > now {
            return None;
        }
        let Reverse((_, _, Slot(i))) = self.heap.pop()?;
        self.free.push(i);
        self.values.get_mut(i).and_then(Option::take)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
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
}
