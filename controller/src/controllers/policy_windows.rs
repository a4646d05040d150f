//! The PolicyWindow reconciler: publishes whether a window is open and requeues at its
//! next transition.

use super::*;

impl Controllers {
    pub(super) async fn reconcile_window(&self, v: Value) -> Result<Action, Failure> {
        let kind = kind_of("policywindows");
        let o = typed::<PolicyWindowSpec>(&v)?;
        let now = (self.clock)();
        let st = windows::state(&o.metadata.name, &o.spec, now)
            .map_err(|e| Failure::Terminal(e.to_string()))?;
        self.metrics
            .window_open
            .get_or_create(&WindowLabels {
                window: o.metadata.name.clone(),
            })
            .set(st.open as i64);
        let mut status = o.status.clone().unwrap_or_default();
        if status.open != Some(st.open) || status.next_transition != st.next_transition {
            status.open = Some(st.open);
            status.next_transition = st.next_transition;
            self.write_status(
                kind,
                &v,
                serde_json::to_value(&status).expect("status serialises"),
            )
            .await;
        }
        Ok(match st.next_transition {
            Some(t) => {
                Action::Requeue((t - now).to_std().unwrap_or_default() + Duration::from_millis(50))
            }
            None => Action::AwaitChange,
        })
    }
}
