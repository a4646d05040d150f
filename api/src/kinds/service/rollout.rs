//! `rollout`: how a new generation reaches the hosts (a canary first, then waves), how
//! long each wave must stay healthy before the next, and what an unhealthy wave does;
//! `status.rollout` says where a rollout is.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Time;
use crate::validate::Validator;
use crate::values::Duration;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// Hosts changed first, alone in their wave: a number or a share (`"10%"`, at least
    /// one host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<HostCount>,
    /// Hosts changed at once in each later wave (default 1): a number or a share (`"25%"`).
    /// A failure stops the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<HostCount>,
    /// How long a wave's monitors must pass before the next wave starts (default: until
    /// they pass once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_for: Option<Duration>,
    /// What a critical monitor failing on a changed host does: `pause` (the default) holds
    /// the rollout until `hkctl rollout resume`; `rollback` runs the down plans of every
    /// host this rollout changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unhealthy: Option<OnUnhealthy>,
    /// Checks the controller makes between waves besides the monitors: each must hold
    /// (for its `for`) before the next wave; one that is false counts as unhealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis: Vec<Analysis>,
    /// Run a host's down plan when its apply fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_rollback: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Analysis {
    pub prometheus: PrometheusAnalysis,
}

/// A PromQL query the controller asks a Prometheus: it holds when the result is a
/// non-empty vector (a comparison keeps only the series that pass it) or a non-zero
/// scalar.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusAnalysis {
    pub query: String,
    /// How long it must hold before the next wave (default: once).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<Duration>,
    /// The Prometheus to ask; default `hostkit serve --prometheus-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// What an analysis last found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    pub query: String,
    /// `None` when Prometheus could not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// Since when it holds without a break.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    pub message: String,
}

/// A number of hosts (`2`) or a share of the Service's hosts (`"25%"`, rounded up).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HostCount {
    Count(u32),
    Share(String),
}

impl HostCount {
    /// How many of `hosts` hosts: at least 1 (and at most all of them).
    pub fn of(&self, hosts: usize) -> usize {
        let n = match self {
            HostCount::Count(n) => *n as usize,
            HostCount::Share(s) => {
                let pct: usize = s
                    .trim()
                    .strip_suffix('%')
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(100);
                (hosts * pct).div_ceil(100)
            }
        };
        n.clamp(1, hosts.max(1))
    }

    fn check(&self, field: &str, v: &mut Validator) {
        match self {
            HostCount::Count(0) => v.err(field, "must be at least 1"),
            HostCount::Count(_) => {}
            HostCount::Share(s) => {
                let ok = s
                    .trim()
                    .strip_suffix('%')
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|p| (1..=100).contains(&p));
                if !ok {
                    v.err(
                        field,
                        format!(
                            "{s:?}: a number of hosts (2) or a share from 1% to 100% (\"25%\")"
                        ),
                    );
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnUnhealthy {
    #[default]
    Pause,
    Rollback,
}

/// Where the rollout of the current generation is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    pub generation: i64,
    /// `Progressing`, `Paused`, `Complete` or `RolledBack`.
    pub phase: String,
    /// The wave being changed or watched, from 1.
    pub wave: u32,
    pub waves: u32,
    /// Hosts that run this generation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts_done: Vec<String>,
    /// Since when every critical monitor of the hosts changed so far passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_since: Option<Time>,
    pub message: String,
    /// The `hostkit.dev/rollout-resume` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<String>,
    /// The `hostkit.dev/rollout-abort` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    /// What `rollout.analysis` last found, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis: Vec<AnalysisStatus>,
}

pub(super) fn check_rollout(r: &Rollout, v: &mut Validator) {
    v.scope("rollout", |v| {
        if let Some(c) = &r.canary {
            c.check("canary", v);
        }
        if let Some(m) = &r.max_parallel {
            m.check("maxParallel", v);
        }
        if let Some(d) = &r.healthy_for
            && d.as_std() > std::time::Duration::from_secs(24 * 3600)
        {
            v.err("healthyFor", "at most 24h");
        }
        for (i, a) in r.analysis.iter().enumerate() {
            v.index("analysis", i, |v| {
                let p = &a.prometheus;
                super::monitors::check_prometheus(&p.query, p.url.as_deref(), v);
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_shares_round_up_to_at_least_one_host() {
        let share = |s: &str| HostCount::Share(s.into());
        assert_eq!(share("10%").of(3), 1);
        assert_eq!(share("25%").of(10), 3);
        assert_eq!(share("100%").of(4), 4);
        assert_eq!(HostCount::Count(5).of(3), 3);
        assert_eq!(HostCount::Count(2).of(3), 2);
        let mut v = Validator::default();
        check_rollout(
            &Rollout {
                canary: Some(share("0%")),
                max_parallel: Some(HostCount::Count(0)),
                ..Default::default()
            },
            &mut v,
        );
        let errors: Vec<String> = v.into_errors().iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("rollout.canary: \"0%\""),
            "{errors:?}"
        );
    }
}
