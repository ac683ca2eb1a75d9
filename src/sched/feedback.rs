//! Concurrency feedback: how much a destination's window grows after a delivery without
//! trouble and shrinks after one that reports a hop problem (slow start, then additive
//! increase and decrease per `<transport>_destination_concurrency_{positive,negative}_feedback`).

pub use crate::config::transport::Feedback;

/// Postfix's hysteresis is fixed at 1 window slot.
const HYSTERESIS: f64 = Feedback::HYSTERESIS as f64;

/// The window arithmetic of one destination, separated from the queue so that it is testable
/// on its own. `window > 0` is a ready destination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowState {
    pub window: i32,
    pub success: f64,
    pub failure: f64,
    pub fail_cohorts: f64,
}

impl WindowState {
    pub fn new(initial: i32) -> Self {
        WindowState {
            window: initial,
            success: 0.0,
            failure: 0.0,
            fail_cohorts: 0.0,
        }
    }

    /// A delivery without hop trouble on a ready destination: grow the window while it is
    /// below `busy + initial` (never beyond what is in use plus the initial step) and below
    /// the concurrency limit (0 = unlimited). Returns the feedback applied, if any.
    pub fn positive(
        &mut self,
        feedback: Feedback,
        limit: i32,
        initial: i32,
        busy: i32,
    ) -> Option<f64> {
        self.fail_cohorts = 0.0;
        if (limit == 0 || limit > self.window) && self.window < busy + initial {
            let fb = feedback.value(self.window.max(1));
            self.success += fb;
            while self.success + fb / 2.0 >= HYSTERESIS {
                self.window += 1;
                self.success -= HYSTERESIS;
                self.failure = 0.0;
            }
            if limit > 0 && self.window > limit {
                self.window = limit;
            }
            return Some(fb);
        }
        None
    }

    /// A delivery that reported a hop problem: count a failed cohort (1/window) and declare
    /// the destination dead at the cohort limit (0 = never); otherwise shrink the window
    /// (never below 1). Returns true when the destination is now dead.
    pub fn negative(&mut self, feedback: Feedback, cohort_limit: i32) -> bool {
        if self.window <= 0 {
            return false;
        }
        self.fail_cohorts += 1.0 / f64::from(self.window);
        if cohort_limit > 0 && self.fail_cohorts >= f64::from(cohort_limit) {
            self.window = 0;
            return true;
        }
        let fb = feedback.value(self.window.max(1));
        self.failure -= fb;
        while self.failure - fb / 2.0 < 0.0 {
            self.window -= 1;
            self.success = 0.0;
            self.failure += HYSTERESIS;
        }
        if self.window < 1 {
            self.window = 1;
        }
        false
    }

    /// Revival of a dead destination: resume at the number of deliveries still in progress, or
    /// at the initial concurrency.
    pub fn revive(&mut self, busy: i32, initial: i32) {
        self.fail_cohorts = 0.0;
        self.window = if busy > 0 { busy } else { initial };
        self.success = 0.0;
        self.failure = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_grows_one_slot_per_success_up_to_busy_plus_initial() {
        let mut w = WindowState::new(5);
        // Five busy deliveries: room to grow to 10.
        for _ in 0..10 {
            w.positive(Feedback::Constant(1.0), 20, 5, 5);
        }
        assert_eq!(w.window, 10);
        // Idle destination: no growth beyond initial.
        let mut idle = WindowState::new(5);
        idle.positive(Feedback::Constant(1.0), 20, 5, 0);
        assert_eq!(idle.window, 5);
    }

    #[test]
    fn window_never_exceeds_the_limit() {
        let mut w = WindowState::new(19);
        for _ in 0..5 {
            w.positive(Feedback::Constant(1.0), 20, 5, 19);
        }
        assert_eq!(w.window, 20);
    }

    #[test]
    fn default_feedback_one_failure_at_window_one_kills_the_destination() {
        let mut w = WindowState::new(1);
        assert!(w.negative(Feedback::Constant(1.0), 1));
        assert_eq!(w.window, 0);
    }

    #[test]
    fn wider_windows_shrink_until_a_whole_cohort_failed() {
        // As in the C daemon, the first failure after a fresh start costs two slots (the
        // failure credit starts at 0), later ones one slot each; the cohorts 1/4 + 1/2 + 1/1
        // reach the limit on the third.
        let mut w = WindowState::new(4);
        assert!(!w.negative(Feedback::Constant(1.0), 1));
        assert_eq!(w.window, 2);
        assert!(!w.negative(Feedback::Constant(1.0), 1));
        assert_eq!(w.window, 1);
        assert!(w.negative(Feedback::Constant(1.0), 1));
        // Without a cohort limit the window stops at 1.
        let mut w = WindowState::new(3);
        for _ in 0..5 {
            assert!(!w.negative(Feedback::Constant(1.0), 0));
        }
        assert_eq!(w.window, 1);
    }

    #[test]
    fn per_concurrency_feedback_grows_slower() {
        let mut w = WindowState::new(4);
        w.positive(Feedback::PerConcurrency(1.0), 0, 5, 4);
        assert_eq!(w.window, 4);
        w.positive(Feedback::PerConcurrency(1.0), 0, 5, 4);
        w.positive(Feedback::PerConcurrency(1.0), 0, 5, 4);
        assert_eq!(w.window, 4);
        w.positive(Feedback::PerConcurrency(1.0), 0, 5, 4);
        assert_eq!(w.window, 5);
    }

    #[test]
    fn revival_resumes_at_busy_or_initial() {
        let mut w = WindowState::new(0);
        w.revive(3, 5);
        assert_eq!(w.window, 3);
        w.revive(0, 5);
        assert_eq!(w.window, 5);
    }
}
