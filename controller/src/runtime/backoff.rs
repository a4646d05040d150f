//! How long to wait after something failed: a reconcile (1 s doubling to 5 min, per
//! object, reset by success or a new generation) and a watch (800 ms doubling to 30 s,
//! reset once a watch stayed up for 2 minutes). Both are jittered ±10 %, so objects and
//! replicas that failed together do not retry together.

use std::time::Duration;

pub use hostkit_reconcilers::jitter;

/// 1 s·2ⁿ⁻¹ capped at 5 min, jittered.
pub fn error_backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(9);
    jitter(Duration::from_secs(secs.min(300)))
}

/// Reconnect delays: 800 ms doubling to 30 s, ±10 % jitter.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(800);
    pub const MAX: Duration = Duration::from_secs(30);
    /// A watch up this long counts as recovered: the next failure starts from `FIRST`.
    pub const STABLE: Duration = Duration::from_secs(120);

    pub(super) fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    pub(super) fn failed(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        jitter(d)
    }

    pub(super) fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_backoff_doubles_and_caps_at_five_minutes() {
        let d1 = error_backoff(1).as_secs_f64();
        assert!((0.9..=1.1).contains(&d1), "{d1}");
        let d4 = error_backoff(4).as_secs_f64();
        assert!((7.2..=8.8).contains(&d4), "{d4}");
        let d20 = error_backoff(20).as_secs_f64();
        assert!((270.0..=330.0).contains(&d20), "{d20}");
    }
}
