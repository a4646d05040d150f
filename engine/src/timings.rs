//! How long each phase of working on a host took (connect, read, plan, apply script, unit
//! start, settle): what `hostkit plan/apply --timings` prints and what the controller's
//! `hostkit_reconcile_phase_seconds` observes, so the time of a converge can be placed.

use std::time::Duration;

/// Phases in the order they happened; a phase seen twice adds up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings(pub Vec<(&'static str, Duration)>);

impl Timings {
    pub fn add(&mut self, phase: &'static str, d: Duration) {
        match self.0.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, total)) => *total += d,
            None => self.0.push((phase, d)),
        }
    }

    pub fn extend(&mut self, other: &Timings) {
        for (p, d) in &other.0 {
            self.add(p, *d);
        }
    }

    /// `connect 12 ms, read 40 ms, plan 3 ms`.
    pub fn render(&self) -> String {
        self.0
            .iter()
            .map(|(p, d)| format!("{p} {:.0} ms", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
