//! Kubernetes-style object metadata, conditions and label selectors.
//!
//! These follow the Kubernetes conventions closely on purpose: operators who read
//! `kubectl get -o yaml` output should recognise every field, and tools that expect
//! `metadata.resourceVersion` or `status.conditions[].observedGeneration` work unchanged.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A point in time, serialised as RFC 3339 in UTC (`2026-11-21T22:47:00Z`).
pub type Time = DateTime<Utc>;

/// Metadata every stored object carries.
///
/// Users set `name`, `labels` and `annotations`; the API server owns the rest and
/// ignores (or rejects, for `resourceVersion` mismatches) values a client sends for them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Unique among objects of one kind: a DNS-1123 name (lowercase letters, digits, `-`, `.`).
    #[serde(default)]
    pub name: String,
    /// Key/value pairs used by selectors (`hostSelector`, `hkctl get -l`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form key/value notes; `hostkit.dev/*` keys are read by HostKit itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Server-set: identifies this incarnation of the object (a re-created object gets a new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Server-set: bumped whenever `spec` changes, never for status or metadata edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Server-set: the store revision of the last write; send it back to update safely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Server-set: when the object was first stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Time>,
    /// Server-set: when deletion was requested; the object stays until its finalizers are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<Time>,
    /// Controllers that must clean up before the object may go away.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Objects this one belongs to (a Revision to its Service, a Host to its Instance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
}

impl ObjectMeta {
    /// Metadata with just a name, the usual starting point in code and tests.
    pub fn named(name: impl Into<String>) -> Self {
        ObjectMeta {
            name: name.into(),
            ..Default::default()
        }
    }

    /// The resourceVersion as a store revision, when the server has set one.
    pub fn revision(&self) -> Option<i64> {
        self.resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
    }
}

/// Points from a dependent object to its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerReference {
    /// Kind of the owner, e.g. `Service`.
    pub kind: String,
    /// Name of the owner.
    pub name: String,
    /// uid of the owner, so a re-created owner with the same name is not mistaken for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// True when the owner is the controller that manages this object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub controller: bool,
}

/// A reference to another object by kind and name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    /// Kind of the object, e.g. `Service`.
    pub kind: String,
    /// Name of the object.
    pub name: String,
    /// uid of the object when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// `True`, `False` or `Unknown`, as in Kubernetes conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// One observation about an object, in the Kubernetes condition shape.
///
/// `lastTransitionTime` changes only when `status` changes, so "how long has this been
/// failing" stays answerable; `observedGeneration` says which spec the observation is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// `Ready`, `Reconciling`, `Stalled`, or a kind's own type such as `Drifted`.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// One CamelCase word a program can match on, e.g. `WindowClosed`.
    #[serde(default)]
    pub reason: String,
    /// A sentence for humans.
    #[serde(default)]
    pub message: String,
    pub last_transition_time: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A True/False condition observed now for `generation`: what every reconciler writes.
    pub fn observed(
        type_: &str,
        ok: bool,
        reason: &str,
        message: impl Into<String>,
        now: Time,
        generation: Option<i64>,
    ) -> Condition {
        Condition {
            type_: type_.into(),
            status: if ok {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            },
            reason: reason.into(),
            message: message.into(),
            last_transition_time: now,
            observed_generation: generation,
        }
    }
}

/// Conditions observed at one moment about one generation: the one setter every reconciler
/// uses, so that they all read the same way:
/// `at.set(&mut status.conditions, "Ready", true, "Converged", message)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observed {
    pub now: Time,
    /// The generation the observation is about (`None` for kinds whose spec is immutable).
    pub generation: Option<i64>,
}

impl Observed {
    pub fn new(now: Time, generation: Option<i64>) -> Observed {
        Observed { now, generation }
    }

    /// Sets a True/False condition; true when anything visible changed.
    pub fn set(
        &self,
        conditions: &mut Vec<Condition>,
        type_: &str,
        ok: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> bool {
        let c = Condition::observed(type_, ok, reason, message, self.now, self.generation);
        set_condition(conditions, c)
    }
}

impl Observed {
    /// Sets a condition to `Unknown`: what it is about was not observed (a host that was
    /// not read), with `reason` and `message` saying why.
    pub fn set_unknown(
        &self,
        conditions: &mut Vec<Condition>,
        type_: &str,
        reason: &str,
        message: impl Into<String>,
    ) -> bool {
        let mut c = Condition::observed(type_, false, reason, message, self.now, self.generation);
        c.status = ConditionStatus::Unknown;
        set_condition(conditions, c)
    }
}

/// Sets `cond` in `conditions`, keeping `lastTransitionTime` when the status did not change.
///
/// Returns true when anything visible changed, so callers can skip a status write.
pub fn set_condition(conditions: &mut Vec<Condition>, cond: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(existing) => {
            let transition = if existing.status == cond.status {
                existing.last_transition_time
            } else {
                cond.last_transition_time
            };
            let updated = Condition {
                last_transition_time: transition,
                ..cond
            };
            if *existing == updated {
                false
            } else {
                *existing = updated;
                true
            }
        }
        None => {
            conditions.push(cond);
            true
        }
    }
}

/// Finds the condition of one type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Selects objects by labels, with the Kubernetes `matchLabels`/`matchExpressions` semantics.
///
/// An empty selector matches everything, as in Kubernetes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Every pair must be present with exactly this value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Every expression must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelExpression>,
}

/// One set-based requirement of a [`LabelSelector`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelExpression {
    pub key: String,
    pub operator: LabelOperator,
    /// Required for `In` and `NotIn`, empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LabelOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelExpression {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            LabelOperator::In => value.is_some_and(|v| self.values.contains(v)),
            LabelOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
        }
    }
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| e.matches(labels))
    }

    /// Parses the kubectl `-l` syntax: `tier=search,env!=dev,role in (a,b),!legacy,team`.
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut selector = LabelSelector::default();
        for clause in split_selector(text) {
            let clause = clause.trim();
            if clause.is_empty() {
                continue;
            }
            let expr = parse_clause(clause)?;
            match expr {
                Clause::Equals(k, v) => {
                    selector.match_labels.insert(k, v);
                }
                Clause::Expr(e) => selector.match_expressions.push(e),
            }
        }
        Ok(selector)
    }

    /// Renders the selector back into the kubectl `-l` syntax (used in query strings).
    pub fn to_query(&self) -> String {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for e in &self.match_expressions {
            parts.push(match e.operator {
                LabelOperator::In => format!("{} in ({})", e.key, e.values.join(",")),
                LabelOperator::NotIn => format!("{} notin ({})", e.key, e.values.join(",")),
                LabelOperator::Exists => e.key.clone(),
                LabelOperator::DoesNotExist => format!("!{}", e.key),
            });
        }
        parts.join(",")
    }
}

enum Clause {
    Equals(String, String),
    Expr(LabelExpression),
}

/// Splits on commas that are not inside `( … )`.
fn split_selector(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_clause(clause: &str) -> Result<Clause, String> {
    let bad = || {
        format!(
            "label selector clause {clause:?} is not one of key=value, key==value, key!=value, \
             key in (a,b), key notin (a,b), key, !key"
        )
    };
    if let Some(key) = clause.strip_prefix('!') {
        let key = key.trim();
        check_label_key(key).map_err(|_| bad())?;
        return Ok(Clause::Expr(LabelExpression {
            key: key.to_string(),
            operator: LabelOperator::DoesNotExist,
            values: vec![],
        }));
    }
    if let Some((k, v)) = clause.split_once("!=") {
        let (k, v) = (k.trim(), v.trim());
        check_label_key(k).map_err(|_| bad())?;
        return Ok(Clause::Expr(LabelExpression {
            key: k.to_string(),
            operator: LabelOperator::NotIn,
            values: vec![v.to_string()],
        }));
    }
    if let Some((k, v)) = clause.split_once("==").or_else(|| clause.split_once('=')) {
        let (k, v) = (k.trim(), v.trim());
        check_label_key(k).map_err(|_| bad())?;
        return Ok(Clause::Equals(k.to_string(), v.to_string()));
    }
    let words: Vec<&str> = clause.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let rest = words[1].trim();
        let (op, list) = if let Some(list) = rest.strip_prefix("notin") {
            (LabelOperator::NotIn, list)
        } else if let Some(list) = rest.strip_prefix("in") {
            (LabelOperator::In, list)
        } else {
            return Err(bad());
        };
        let list = list.trim();
        let inner = list
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(bad)?;
        check_label_key(words[0]).map_err(|_| bad())?;
        return Ok(Clause::Expr(LabelExpression {
            key: words[0].to_string(),
            operator: op,
            values: inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect(),
        }));
    }
    check_label_key(clause).map_err(|_| bad())?;
    Ok(Clause::Expr(LabelExpression {
        key: clause.to_string(),
        operator: LabelOperator::Exists,
        values: vec![],
    }))
}

/// Label keys: an optional DNS prefix and `/`, then up to 63 of `[A-Za-z0-9._-]`.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            check_dns_subdomain(prefix)?;
            name
        }
        None => key,
    };
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key:?} is not a valid label key: up to 63 letters, digits, '-', '_' or '.', \
             starting and ending with a letter or digit, optionally after a DNS prefix and '/'"
        ))
    }
}

/// DNS-1123 subdomain: lowercase letters, digits, `-` and `.`, at most 253 characters.
pub fn check_dns_subdomain(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| dns_label_ok(label, 63));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: use lowercase letters, digits, '-' and '.', starting \
             and ending with a letter or digit, at most 253 characters (DNS-1123)"
        ))
    }
}

/// DNS-1123 label: lowercase letters, digits and `-`, at most 63 characters.
pub fn check_dns_label(name: &str) -> Result<(), String> {
    if dns_label_ok(name, 63) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: use lowercase letters, digits and '-', starting and \
             ending with a letter or digit, at most 63 characters (DNS-1123 label)"
        ))
    }
}

fn dns_label_ok(label: &str, max: usize) -> bool {
    !label.is_empty()
        && label.len() <= max
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selector_syntax_round_trips_and_matches() {
        let s = LabelSelector::parse("tier=search,env!=dev,role in (a, b),!legacy,team").unwrap();
        assert_eq!(
            s.match_labels.get("tier").map(String::as_str),
            Some("search")
        );
        assert_eq!(s.match_expressions.len(), 4);
        let yes = labels(&[("tier", "search"), ("role", "b"), ("team", "x")]);
        assert!(s.matches(&yes));
        let legacy = labels(&[
            ("tier", "search"),
            ("role", "b"),
            ("team", "x"),
            ("legacy", "1"),
        ]);
        assert!(!s.matches(&legacy));
        let dev = labels(&[
            ("tier", "search"),
            ("role", "a"),
            ("team", "x"),
            ("env", "dev"),
        ]);
        assert!(!s.matches(&dev));
        let again = LabelSelector::parse(&s.to_query()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn selector_rejects_garbage() {
        let err = LabelSelector::parse("tier in a,b").unwrap_err();
        assert!(err.contains("key in (a,b)"), "{err}");
        assert!(LabelSelector::parse("bad key=1").is_err());
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::default().matches(&labels(&[("a", "b")])));
        assert!(LabelSelector::parse("").unwrap().matches(&BTreeMap::new()));
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let t0 = "2026-01-01T00:00:00Z".parse::<Time>().unwrap();
        let t1 = "2026-01-01T00:05:00Z".parse::<Time>().unwrap();
        let mut conds = vec![];
        let ready = |status, msg: &str, t| Condition {
            type_: "Ready".into(),
            status,
            reason: "Applied".into(),
            message: msg.into(),
            last_transition_time: t,
            observed_generation: Some(1),
        };
        assert!(set_condition(
            &mut conds,
            ready(ConditionStatus::True, "ok", t0)
        ));
        assert!(!set_condition(
            &mut conds,
            ready(ConditionStatus::True, "ok", t1)
        ));
        assert_eq!(conds[0].last_transition_time, t0);
        assert!(set_condition(
            &mut conds,
            ready(ConditionStatus::True, "still ok", t1)
        ));
        assert_eq!(conds[0].last_transition_time, t0);
        assert!(set_condition(
            &mut conds,
            ready(ConditionStatus::False, "bad", t1)
        ));
        assert_eq!(conds[0].last_transition_time, t1);
    }
}

/// The body of every API error, in the Kubernetes `Status` shape, so clients can tell a
/// conflict (retry) from invalid input (fix the manifest) without parsing prose.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiStatus {
    pub kind: String,
    /// `Success` or `Failure`.
    pub status: String,
    pub message: String,
    /// CamelCase: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, `Expired`,
    /// `RequestEntityTooLarge`, `Unauthorized`, `Forbidden`, `InternalError`.
    pub reason: String,
    pub code: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<crate::FieldError>,
}
