//! The conditions a Service pass ends with: a pure function of how it went (what drifted,
//! what failed, what a window or a pause held back), so each combination is one match arm.

/// `Drifted`'s status, reason and message for the hosts that drifted.
pub(super) fn drift_condition(drifted: &[String], repaired: bool) -> (bool, &'static str, String) {
    if drifted.is_empty() {
        let reason = if repaired { "DriftRepaired" } else { "InSync" };
        (false, reason, "hosts match the applied generation".into())
    } else {
        (
            true,
            "DriftDetected",
            format!("drift on {}", drifted.join(", ")),
        )
    }
}

/// How a reconcile ended, as the final conditions see it.
pub(super) struct Outcome {
    pub(super) generation: i64,
    pub(super) hosts: usize,
    pub(super) remaining_drift: Vec<String>,
    /// Some host had drifted when planned (and may have been repaired since).
    pub(super) drifted_before: bool,
    pub(super) converged: bool,
    pub(super) stopped: Option<String>,
    pub(super) blocked: Vec<String>,
    pub(super) paused: Option<String>,
    pub(super) applied_ok: bool,
    pub(super) auto_rolled_back: bool,
    /// Hosts a health-gated rollout holds back for now, with why.
    pub(super) gated: Vec<String>,
    /// The health gate took the changed hosts back (unhealthy, or aborted): why.
    pub(super) rolled_back: Option<String>,
}

impl Outcome {
    /// The final conditions, as (type, status, reason, message): a pure function of how the
    /// reconcile ended.
    pub(super) fn conditions(&self) -> Vec<(&'static str, bool, &'static str, String)> {
        let g = self.generation;
        let mut out = Vec::new();
        let (drifted, reason, message) =
            drift_condition(&self.remaining_drift, self.drifted_before);
        out.push(("Drifted", drifted, reason, message));
        let blocked = !self.blocked.is_empty() && self.paused.is_none();
        out.push((
            "WindowBlocked",
            blocked,
            if blocked {
                "WindowClosed"
            } else {
                "NotBlocked"
            },
            if self.blocked.is_empty() {
                "apply is allowed".into()
            } else {
                self.blocked.join("; ")
            },
        ));
        if let Some(why) = &self.rolled_back {
            out.push(("Applied", false, "RolledBack", why.clone()));
            out.push(("Stalled", true, "RolledBack", why.clone()));
            out.push(("Ready", false, "RolledBack", why.clone()));
            out.push((
                "Reconciling",
                false,
                "RolledBack",
                "waiting for a spec change".into(),
            ));
            return out;
        }
        let gated = !self.gated.is_empty() && self.stopped.is_none() && self.paused.is_none();
        match (&self.stopped, &self.paused) {
            (None, None) if gated => out.push((
                "Applied",
                false,
                "RolloutProgressing",
                self.gated.join("; "),
            )),
            (Some(msg), _) => {
                out.push(("Applied", false, "ApplyFailed", msg.clone()));
                if self.auto_rolled_back {
                    out.push(("Stalled", true, "AutoRolledBack", msg.clone()));
                }
            }
            (None, _) if self.converged => out.push((
                "Applied",
                true,
                "Applied",
                format!("generation {g} is applied on every host"),
            )),
            (None, Some(why)) => out.push(("Applied", false, "Paused", why.clone())),
            (None, None) => out.push(("Applied", false, "WindowClosed", self.blocked.join("; "))),
        }
        let ready = self.converged && self.stopped.is_none() && self.applied_ok;
        let reason = if ready {
            "Converged"
        } else if self.stopped.is_some() {
            "ApplyFailed"
        } else if self.paused.is_some() {
            "Paused"
        } else if gated {
            "RolloutProgressing"
        } else {
            "ChangesPending"
        };
        let message = if ready {
            format!("generation {g} runs on {} host(s)", self.hosts)
        } else if gated {
            self.gated.join("; ")
        } else {
            self.stopped
                .clone()
                .unwrap_or_else(|| self.blocked.join("; "))
        };
        out.push(("Ready", ready, reason, message));
        let (reason, message) = if ready {
            ("UpToDate", "nothing pending")
        } else if self.stopped.is_some() {
            ("Failed", "changes pending")
        } else if gated {
            (
                "RolloutProgressing",
                "the next wave waits for the health gate",
            )
        } else {
            ("Waiting", "changes pending")
        };
        out.push((
            "Reconciling",
            !ready && self.stopped.is_none(),
            reason,
            message.into(),
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(f: impl FnOnce(&mut Outcome)) -> Vec<(&'static str, bool, &'static str, String)> {
        let mut o = Outcome {
            generation: 3,
            hosts: 2,
            remaining_drift: Vec::new(),
            drifted_before: false,
            converged: true,
            stopped: None,
            blocked: Vec::new(),
            paused: None,
            applied_ok: true,
            auto_rolled_back: false,
            gated: Vec::new(),
            rolled_back: None,
        };
        f(&mut o);
        o.conditions()
    }

    fn get<'a>(
        cs: &'a [(&'static str, bool, &'static str, String)],
        t: &str,
    ) -> &'a (&'static str, bool, &'static str, String) {
        cs.iter().find(|c| c.0 == t).unwrap()
    }

    #[test]
    fn each_way_a_pass_ends_reads_as_its_own_conditions() {
        let ok = ended(|_| {});
        assert!(get(&ok, "Ready").1);
        assert_eq!(get(&ok, "Ready").3, "generation 3 runs on 2 host(s)");
        assert_eq!(get(&ok, "Drifted").2, "InSync");

        let repaired = ended(|o| o.drifted_before = true);
        assert_eq!(get(&repaired, "Drifted").2, "DriftRepaired");

        let failed = ended(|o| {
            o.stopped = Some("h1: exit status 1".into());
            o.applied_ok = false;
            o.auto_rolled_back = true;
        });
        assert_eq!(get(&failed, "Ready").2, "ApplyFailed");
        assert_eq!(get(&failed, "Applied").3, "h1: exit status 1");
        assert_eq!(get(&failed, "Stalled").2, "AutoRolledBack");
        assert_eq!(get(&failed, "Reconciling").2, "Failed");

        let held = ended(|o| {
            o.converged = false;
            o.blocked = vec!["h1: deny window w is open".into()];
        });
        assert!(get(&held, "WindowBlocked").1);
        assert_eq!(get(&held, "Applied").2, "WindowClosed");
        assert_eq!(get(&held, "Ready").2, "ChangesPending");

        let paused = ended(|o| {
            o.converged = false;
            o.paused = Some("spec.paused: plans only".into());
            o.blocked = vec!["h1: spec.paused: plans only".into()];
        });
        assert!(!get(&paused, "WindowBlocked").1, "a pause is not a window");
        assert_eq!(get(&paused, "Ready").2, "Paused");
    }
}
