//! Objects that steer when and how changes reach hosts: `PolicyWindow`, `Rollback`,
//! and the controller-written `Revision` history they act on.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindInfo, KindSpec};
use std::collections::BTreeMap;

use crate::meta::{Condition, LabelExpression, LabelSelector, ObjectRef, Time};
use crate::validate::Validator;
use std::str::FromStr;

use crate::meta::check_dns_label;
use crate::validate::{check_resource_id, check_selector};

use crate::values::Duration;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    #[default]
    Allow,
    Deny,
}

/// A recurring time window that allows or denies applying changes (Argo CD sync-window
/// semantics: no matching window → allowed; deny wins; with allow windows, only inside one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyWindowSpec {
    pub kind: WindowKind,
    /// Cron expression (5 fields) for when the window opens.
    pub schedule: String,
    /// How long it stays open.
    pub duration: Duration,
    /// IANA time zone of `schedule` (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub selector: WindowSelector,
    /// A Rollback or an explicit `hkctl sync --force` may apply despite the window.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual_override: bool,
}

/// Which services and hosts a window applies to; both parts must match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<NamedSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<NamedSelector>,
}

/// Objects by label and/or by name; an object matches if it matches either part given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelExpression>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl NamedSelector {
    /// The label part as a [`LabelSelector`].
    pub fn labels(&self) -> LabelSelector {
        LabelSelector {
            match_labels: self.match_labels.clone(),
            match_expressions: self.match_expressions.clone(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyWindowStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition: Option<Time>,
}

pub const POLICY_WINDOW_INFO: KindInfo = KindInfo {
    kind: "PolicyWindow",
    plural: "policywindows",
    singular: "policywindow",
    short_names: &["pw"],
};

impl KindSpec for PolicyWindowSpec {
    type Status = PolicyWindowStatus;
    const INFO: &'static KindInfo = &POLICY_WINDOW_INFO;

    fn validate(&self, _name: &str, v: &mut Validator) {
        policy_window(self, v);
    }

    fn apply_defaults(&mut self) {
        self.time_zone.get_or_insert_with(|| "UTC".to_string());
    }
}

/// `previous` or a revision number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RevisionTarget {
    Number(u64),
    Named(RevisionAlias),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RevisionAlias {
    Previous,
}

impl Default for RevisionTarget {
    fn default() -> Self {
        RevisionTarget::Named(RevisionAlias::Previous)
    }
}

/// Undo applied changes by running stored down plans.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackSpec {
    /// The Service (or Host) to roll back.
    pub target_ref: TargetRef,
    /// `previous` (default) or a revision number from `hkctl history`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<RevisionTarget>,
    /// Only these resource ids, e.g. `file:/etc/toys/exograph/runtime.env`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
    /// Ignore policy windows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    /// `Service` or `Host`.
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Per host: result and coverage of the down plans.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<RollbackHost>,
    /// The revision the target was at when the rollback started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_revision: Option<u64>,
    /// The revision it goes back to (`previous` resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<u64>,
    /// The Revision written for the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}

/// One host of a Rollback.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackHost {
    pub host: String,
    /// `Pending`, `RolledBack`, `Failed`, or `Skipped` (nothing recorded there).
    pub phase: String,
    /// Revisions whose down plans ran here, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undone: Vec<u64>,
    /// Runs (applies) undone so far; a resumed rollback skips them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<String>,
    #[serde(default)]
    pub coverage: Coverage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How much of what was applied a down plan undoes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Coverage {
    /// Steps that put the previous state back.
    #[serde(default)]
    pub reversible: u32,
    /// `down: noop` steps: nothing to do, on purpose.
    #[serde(default)]
    pub noop: u32,
    /// Steps that cannot be undone, with why (irreversible commands, kept accounts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedStep>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkippedStep {
    pub id: String,
    pub reason: String,
}

pub const ROLLBACK_INFO: KindInfo = KindInfo {
    kind: "Rollback",
    plural: "rollbacks",
    singular: "rollback",
    short_names: &["rb"],
};

impl KindSpec for RollbackSpec {
    const FREE_TEXT: &'static [&'static str] = &["reason"];

    type Status = RollbackStatus;
    const INFO: &'static KindInfo = &ROLLBACK_INFO;

    fn validate(&self, _name: &str, v: &mut Validator) {
        rollback(self, v);
    }

    fn apply_defaults(&mut self) {
        self.to_revision.get_or_insert_with(Default::default);
    }
}

/// A record of one applied spec of a target, written by the controller: the spec, and per
/// host the applies of it with their down plans. Users read Revisions; only the controller
/// writes them (a rollout across hosts adds each host's apply as it happens).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevisionSpec {
    pub target_ref: ObjectRef,
    pub revision: u64,
    /// The target's generation when it was first applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Digest of the desired resources: two revisions with the same digest ask the host
    /// for the same state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_digest: Option<String>,
    /// The target's spec as applied.
    #[serde(default)]
    pub spec_snapshot: serde_json::Value,
    /// Per host: the applies of this spec, each with its changes and down plan (backup
    /// references and sha256s, never content).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<RevisionHost>,
    /// The resources this spec puts on a host, without file contents: what deleting the
    /// target, or a later spec that drops some of them, removes. Recorded so that removal
    /// never depends on expanding the spec again (its Project may be gone by then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<serde_json::Value>,
    /// For a Service with `source`: the commit its release was built from, and the URL
    /// and ref it was resolved from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<RevisionRelease>,
    /// Set on a revision a Rollback wrote: the revision it went back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<u64>,
    /// Who caused it: `hkctl:<user>`, `gitsource/<name>@<commit>`, `rollback/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
}

/// The source commit of a Revision (kept when the controller caches it slim: pruning and
/// a rollback while the git server is down read it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevisionRelease {
    pub git: String,
    /// `tag v1.4.2`, `branch main` or `commit <id>`.
    #[serde(rename = "ref")]
    pub ref_: String,
    pub commit: String,
}

/// The applies of one revision on one host, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevisionHost {
    pub host: String,
    /// Each apply: `{id, time, ok, changes: [{id, action, status}], down: {steps, coverage}}`,
    /// with `pending: true` from just before it starts until its outcome is recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevisionStatus {}

pub const REVISION_INFO: KindInfo = KindInfo {
    kind: "Revision",
    plural: "revisions",
    singular: "revision",
    short_names: &["rev"],
};

impl KindSpec for RevisionSpec {
    /// Written by the controller: the spec snapshot holds file contents, runs hold output.
    const FREE_TEXT: &'static [&'static str] = &["**"];

    type Status = RevisionStatus;
    const INFO: &'static KindInfo = &REVISION_INFO;

    fn validate(&self, _name: &str, v: &mut Validator) {
        super::check_object_ref("targetRef", &self.target_ref, v);
        if self.revision == 0 {
            v.err("revision", "revision numbers start at 1");
        }
    }
}

fn policy_window(spec: &PolicyWindowSpec, v: &mut Validator) {
    let fields = spec.schedule.split_whitespace().count();
    if fields != 5 {
        v.err("schedule", format!(
            "{:?} is not a 5-field cron expression (minute hour day-of-month month day-of-week), e.g. \"0 22 * * 1-5\"",
            spec.schedule
        ));
    } else if let Err(e) = croner::Cron::from_str(&spec.schedule) {
        v.err(
            "schedule",
            format!("{:?} is not a valid cron expression: {e}", spec.schedule),
        );
    }
    if spec.duration.as_std().is_zero() {
        v.err("duration", "must be longer than zero");
    }
    if let Some(tz) = &spec.time_zone
        && chrono_tz::Tz::from_str(tz).is_err()
    {
        v.err(
            "timeZone",
            format!("{tz:?} is not an IANA time zone such as UTC or Europe/Berlin"),
        );
    }
    v.scope("selector", |v| {
        for (field, sel) in [
            ("services", &spec.selector.services),
            ("hosts", &spec.selector.hosts),
        ] {
            if let Some(s) = sel {
                check_selector(field, &s.labels(), v);
                for (i, n) in s.names.iter().enumerate() {
                    v.check(format!("{field}.names[{i}]"), check_dns_label(n));
                }
            }
        }
    });
}

fn rollback(spec: &RollbackSpec, v: &mut Validator) {
    v.scope("targetRef", |v| {
        if !matches!(spec.target_ref.kind.as_str(), "Service" | "Host") {
            v.err(
                "kind",
                format!(
                    "{:?} cannot be rolled back; valid: Service, Host",
                    spec.target_ref.kind
                ),
            );
        }
        v.check("name", check_dns_label(&spec.target_ref.name));
    });
    if spec.to_revision == Some(RevisionTarget::Number(0)) {
        v.err("toRevision", "revision numbers start at 1; or use previous");
    }
    for (i, id) in spec.only.iter().enumerate() {
        v.check(format!("only[{i}]"), check_resource_id(id));
    }
}
