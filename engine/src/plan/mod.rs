//! Plans: desired resources minus what the host has, as ordered, explained changes.
//!
//! Every resource appears in the plan (unchanged ones as `noop`) in execution-graph order,
//! with a fingerprint of the state it was planned against, so that apply can refuse a stale
//! plan. Diffs are unified text for files and keyed for env files; secret values are never
//! shown, only the names of secret keys that change.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Result;
use crate::render::files::parse_dotenv;
use crate::resource::{CommandSpec, Content, Dependency, Edge, FileRole, Resource, Spec};
use crate::secrets::Secrets;
use crate::state::{AccountState, CommandState, FirewallState, HostState, PathState, ReleaseState};

mod compare;
mod order;

use compare::{Planned, plan_one};
pub use order::order;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Delete,
    Noop,
    ReadError,
}

impl Action {
    pub fn symbol(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Delete => '-',
            Action::Noop => '=',
            Action::ReadError => '?',
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub id: String,
    pub owner: String,
    pub action: Action,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Digest of the host state this change was planned against.
    pub fingerprint: String,
    /// Digest of the desired state (spec and content).
    pub desired: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Digest of every change's id, action, state fingerprint and desired digest.
    pub fingerprint: String,
    pub changes: Vec<Change>,
    /// How long reading and planning took (not part of a plan file).
    #[serde(skip)]
    pub timings: crate::timings::Timings,
}

/// Pinned package versions of one host: distribution package name → version. Written by
/// apply (what it installed), read by the next plan (a different installed version is an
/// update back to the pinned one).
pub type PackageLock = BTreeMap<String, String>;

/// A plan with what apply needs and a plan file must not hold: the resources and the
/// materialized file bytes (which may contain secret values). Never serialized.
pub struct Prepared {
    pub plan: Plan,
    pub resources: BTreeMap<String, Resource>,
    pub bytes: BTreeMap<String, Vec<u8>>,
    /// The host's facts from the same read (os, arch, package manager, systemd).
    pub facts: BTreeMap<String, String>,
    /// The package lock this plan honours.
    pub lock: PackageLock,
    /// What the monitors found in the same read (before this plan is applied).
    pub monitors: Vec<crate::monitor::ProbeResult>,
    /// The versions of the read's packages that are installed (distribution name →
    /// version): what a package lock records for packages it does not hold yet.
    pub installed: PackageLock,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("plan", &self.plan)
            .field("bytes", &format_args!("{} files, hidden", self.bytes.len()))
            .finish()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn fingerprint_of(v: &Value) -> String {
    sha256_hex(v.to_string().as_bytes())[..16].to_string()
}

/// What the host holds of `r`: in full (for comparing), and as plans may show it (a
/// secret-bearing resource redacted).
fn views_of(r: &Resource, state: &HostState, secret: bool) -> (Value, Value) {
    let full = current_view(r, state);
    let shown = if secret {
        redacted(full.clone())
    } else {
        full.clone()
    };
    (full, shown)
}

/// A short digest of a desired resource set (secret references, never values): two
/// generations with the same digest ask the host for exactly the same state.
pub fn desired_digest(resources: &[Resource]) -> String {
    fingerprint_of(&serde_json::to_value(resources).expect("resources serialise"))
}

/// A short JSON view of a path's state (never its content).
fn path_view(p: &PathState) -> Value {
    match p {
        PathState::Absent => json!({"exists": false}),
        PathState::Link { target } => json!({"type": "symlink", "to": target}),
        PathState::Directory { owner, group, mode } => {
            json!({"type": "directory", "owner": owner, "group": group, "mode": format!("{mode:04o}")})
        }
        PathState::File {
            owner,
            group,
            mode,
            sha256,
            size,
            ..
        } => {
            json!({"type": "file", "owner": owner, "group": group, "mode": format!("{mode:04o}"), "sha256": sha256, "size": size})
        }
        PathState::Other { what } => json!({"type": what}),
    }
}

/// Whether a resource's content holds secret values (an env file with secrets, a config
/// file with a secret key): its digests are keyed and its views carry no hash or size.
fn holds_secrets(r: &Resource) -> bool {
    matches!(&r.spec, Spec::File { content, .. } if !content.secrets.is_empty())
}

/// A file's view without the hash and size of its content (which would let a reader check a
/// guessed secret offline).
fn redacted(mut view: Value) -> Value {
    if let Some(m) = view.as_object_mut()
        && m.remove("sha256").is_some()
    {
        m.remove("size");
        m.insert(
            "content".into(),
            Value::String("holds secrets; not shown".into()),
        );
    }
    view
}

/// The current state of one resource as JSON (for fingerprints and `before`).
pub fn current_view(r: &Resource, st: &HostState) -> Value {
    if let Some(e) = st.errors.get(&r.id) {
        return json!({"readError": e});
    }
    match &r.spec {
        Spec::File { .. } | Spec::Directory { .. } | Spec::Symlink { .. } => st
            .paths
            .get(&r.id)
            .map(path_view)
            .unwrap_or(json!({"unread": true})),
        Spec::Account { .. } => match st.accounts.get(&r.id) {
            Some(Some(a)) => {
                json!({"exists": true, "home": a.home, "shell": a.shell, "groups": a.groups})
            }
            Some(None) => json!({"exists": false}),
            None => json!({"unread": true}),
        },
        Spec::Unit { name, .. } => {
            serde_json::to_value(st.units.get(name).cloned().unwrap_or_default())
                .unwrap_or(Value::Null)
        }
        Spec::Package { name, system, .. } => {
            let manager = st
                .facts
                .get("packageManager")
                .map(String::as_str)
                .unwrap_or("");
            let installed: BTreeMap<String, Option<String>> =
                crate::packages::resolve(name, system.as_deref(), manager)
                    .into_iter()
                    .map(|n| {
                        let v = st.packages.get(&n).cloned().flatten();
                        (n, v)
                    })
                    .collect();
            json!({"installed": installed})
        }
        Spec::Command(_) => {
            serde_json::to_value(st.commands.get(&r.id).cloned().unwrap_or_default())
                .unwrap_or(Value::Null)
        }
        Spec::Firewall { .. } => {
            serde_json::to_value(st.firewalls.get(&r.id).cloned().unwrap_or_default())
                .unwrap_or(Value::Null)
        }
        Spec::Release(_) => match st.releases.get(&r.id) {
            Some(rel) => serde_json::to_value(rel).unwrap_or(Value::Null),
            None => json!({"unread": true}),
        },
    }
}

/// Computes the plan of `resources` against `state`. `previous` is what was applied before
/// (from the last revision); resources that disappeared from the spec become deletes.
pub fn compute(
    host: &str,
    resources: &[Resource],
    previous: &[Resource],
    state: &HostState,
    secrets: &Secrets,
) -> Result<Prepared> {
    compute_locked(
        host,
        resources,
        previous,
        &PackageLock::new(),
        state,
        secrets,
    )
}

/// [`compute`] with a package lock.
pub fn compute_locked(
    host: &str,
    resources: &[Resource],
    previous: &[Resource],
    lock: &PackageLock,
    state: &HostState,
    secrets: &Secrets,
) -> Result<Prepared> {
    let ordered = order(resources)?;
    let mut bytes = BTreeMap::new();
    for r in resources {
        if let Spec::File { content, .. } = &r.spec {
            bytes.insert(r.id.clone(), secrets.materialize(content)?);
        }
    }
    let mut changes: Vec<Change> = Vec::new();
    let mut action_of: BTreeMap<String, Action> = BTreeMap::new();
    for i in ordered {
        let r = &resources[i];
        let secret = holds_secrets(r);
        let (full, before) = views_of(r, state, secret);
        let mut p = if let Some(e) = state.errors.get(&r.id) {
            Planned {
                action: Action::ReadError,
                reason: e.clone(),
                after: None,
                diff: None,
            }
        } else {
            plan_one(r, state, bytes.get(&r.id), lock)
        };
        // A unit restarts when a file it runs from changed; a firewall reloads when its
        // ruleset file changed.
        if matches!(
            r.spec,
            Spec::Unit { start: true, .. } | Spec::Firewall { .. }
        ) && p.action == Action::Noop
        {
            let changed: Vec<&str> = r
                .depends_on
                .iter()
                .filter(|d| {
                    matches!(
                        d.edge,
                        Edge::UnitFile
                            | Edge::EnvFile
                            | Edge::TimerService
                            | Edge::ExecPath
                            | Edge::Source
                    )
                })
                .filter(|d| matches!(action_of.get(&d.id), Some(Action::Create | Action::Update)))
                .map(|d| d.id.as_str())
                .collect();
            if !changed.is_empty() {
                let verb = if matches!(r.spec, Spec::Firewall { .. }) {
                    "reload"
                } else {
                    "restart"
                };
                p = Planned {
                    action: Action::Update,
                    reason: format!("{verb}: {} changed", changed.join(", ")),
                    after: Some(json!({ verb: true })),
                    diff: None,
                };
            }
        }
        let spec_json = serde_json::to_vec(r)?;
        let content_sha = bytes.get(&r.id).map(|b| Sha256::digest(b).to_vec());
        let desired = secrets.plan_digest(
            secret,
            &[&spec_json, content_sha.as_deref().unwrap_or_default()],
        );
        if secret {
            p.after = p.after.map(redacted);
        }
        action_of.insert(r.id.clone(), p.action);
        changes.push(Change {
            id: r.id.clone(),
            owner: r.owner.clone(),
            action: p.action,
            reason: p.reason,
            before: (p.action != Action::Noop).then_some(before.clone()),
            after: p.after,
            diff: p.diff.filter(|d| !d.is_empty()),
            fingerprint: secrets.plan_digest(secret, &[full.to_string().as_bytes()]),
            desired,
            depends_on: r.depends_on.clone(),
        });
    }
    let desired_ids: BTreeSet<&str> = resources.iter().map(|r| r.id.as_str()).collect();
    let mut all: BTreeMap<String, Resource> = resources
        .iter()
        .map(|r| (r.id.clone(), r.clone()))
        .collect();
    for r in previous.iter().rev() {
        if desired_ids.contains(r.id.as_str()) {
            continue;
        }
        let secret = holds_secrets(r);
        let (full, before) = views_of(r, state, secret);
        let exists = match &r.spec {
            Spec::File { .. } | Spec::Directory { .. } | Spec::Symlink { .. } => {
                !matches!(state.paths.get(&r.id), None | Some(PathState::Absent))
            }
            Spec::Unit { name, .. } => state.units.get(name).is_some_and(|u| u.load == "loaded"),
            Spec::Firewall { .. } => state
                .firewalls
                .get(&r.id)
                .is_some_and(|f| f.loaded.is_some()),
            Spec::Release(_) => state.releases.get(&r.id).is_some_and(|r| r.releases > 0),
            Spec::Account { .. } | Spec::Package { .. } | Spec::Command(_) => false,
        };
        if !exists {
            continue;
        }
        changes.push(Change {
            id: r.id.clone(),
            owner: r.owner.clone(),
            action: Action::Delete,
            reason: "no longer declared".into(),
            before: Some(before.clone()),
            after: Some(json!({"exists": false})),
            diff: None,
            fingerprint: secrets.plan_digest(secret, &[full.to_string().as_bytes()]),
            desired: "deleted".into(),
            depends_on: Vec::new(),
        });
        all.insert(r.id.clone(), r.clone());
    }
    let mut h = Sha256::new();
    h.update(host.as_bytes());
    for c in &changes {
        h.update(format!("{}|{:?}|{}|{}\n", c.id, c.action, c.fingerprint, c.desired).as_bytes());
    }
    Ok(Prepared {
        plan: Plan {
            host: host.to_string(),
            generation: None,
            fingerprint: hex::encode(h.finalize())[..16].to_string(),
            changes,
            timings: Default::default(),
        },
        resources: all,
        bytes,
        facts: state.facts.clone(),
        lock: lock.clone(),
        monitors: state.monitors.clone(),
        installed: state
            .packages
            .iter()
            .filter_map(|(n, v)| Some((n.clone(), v.clone()?)))
            .collect(),
    })
}

/// Reads the host and plans in one go: the desired file hashes go into the read so only
/// differing files come back whole.
pub async fn prepare(
    transport: &dyn crate::transport::Transport,
    resources: &[Resource],
    previous: &[Resource],
    secrets: &Secrets,
) -> Result<Prepared> {
    prepare_locked(
        transport,
        resources,
        previous,
        &PackageLock::new(),
        &[],
        secrets,
    )
    .await
}

/// [`prepare`], running a Service's monitors in the same read.
pub async fn prepare_probed(
    transport: &dyn crate::transport::Transport,
    resources: &[Resource],
    previous: &[Resource],
    probes: &[crate::monitor::Probe],
    secrets: &Secrets,
) -> Result<Prepared> {
    prepare_locked(
        transport,
        resources,
        previous,
        &PackageLock::new(),
        probes,
        secrets,
    )
    .await
}

/// [`prepare`] with a package lock.
pub async fn prepare_locked(
    transport: &dyn crate::transport::Transport,
    resources: &[Resource],
    previous: &[Resource],
    lock: &PackageLock,
    probes: &[crate::monitor::Probe],
    secrets: &Secrets,
) -> Result<Prepared> {
    let mut want = BTreeMap::new();
    for r in resources {
        if let Spec::File { content, .. } = &r.spec {
            want.insert(r.id.clone(), sha256_hex(&secrets.materialize(content)?));
        }
    }
    let mut all: Vec<Resource> = resources.to_vec();
    let ids: BTreeSet<&str> = resources.iter().map(|r| r.id.as_str()).collect();
    all.extend(
        previous
            .iter()
            .filter(|r| !ids.contains(r.id.as_str()))
            .cloned(),
    );
    let t = std::time::Instant::now();
    let state = crate::state::read(transport, &all, &want, probes).await?;
    let read = t.elapsed();
    let t = std::time::Instant::now();
    let mut prepared =
        compute_locked(transport.host(), resources, previous, lock, &state, secrets)?;
    prepared.plan.timings.add("read", read);
    prepared.plan.timings.add("plan", t.elapsed());
    Ok(prepared)
}

impl Plan {
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// True when applying would change nothing (read errors count as "cannot tell").
    pub fn is_empty(&self) -> bool {
        self.changes.iter().all(|c| c.action == Action::Noop)
    }

    /// The one-line summary, Terraform-style.
    pub fn summary(&self) -> String {
        format!(
            "Plan: {} to create, {} to update, {} to delete, {} read errors, {} unchanged",
            self.count(Action::Create),
            self.count(Action::Update),
            self.count(Action::Delete),
            self.count(Action::ReadError),
            self.count(Action::Noop)
        )
    }

    /// The human format: the summary, then a `+ ~ - ?` line per change with its reason and
    /// an indented diff.
    pub fn render(&self, diffs: bool) -> String {
        self.render_with(diffs, false)
    }

    /// Like [`Plan::render`]; with `unchanged`, also a `=` line per unchanged resource.
    pub fn render_with(&self, diffs: bool, unchanged: bool) -> String {
        let mut out = format!("host {}: {}\n", self.host, self.summary());
        for c in self
            .changes
            .iter()
            .filter(|c| unchanged || c.action != Action::Noop)
        {
            out.push_str(&format!(
                "  {} {}  ({})\n",
                c.action.symbol(),
                c.id,
                c.reason
            ));
            if diffs && let Some(d) = &c.diff {
                for line in d.lines() {
                    out.push_str(&format!("      {line}\n"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, deps: &[&str]) -> Resource {
        let mut r = Resource::new(
            id,
            "Service/t",
            Spec::Package {
                name: id.into(),
                system: None,
                version: None,
                update: false,
            },
        );
        for d in deps {
            r.depends(*d, Edge::DependsOn);
        }
        r
    }

    #[test]
    fn order_respects_edges_and_rejects_bad_graphs() {
        let rs = vec![r("c", &["b"]), r("b", &["a"]), r("a", &[])];
        let o: Vec<&str> = order(&rs)
            .unwrap()
            .into_iter()
            .map(|i| rs[i].id.as_str())
            .collect();
        assert_eq!(o, ["a", "b", "c"]);
        let dup = vec![r("a", &[]), r("a", &[])];
        assert!(
            order(&dup)
                .unwrap_err()
                .to_string()
                .contains("declared twice")
        );
        let missing = vec![r("a", &["zzz"])];
        assert!(order(&missing).unwrap_err().to_string().contains("zzz"));
        let cycle = vec![r("a", &["b"]), r("b", &["a"]), r("c", &[])];
        let e = order(&cycle).unwrap_err().to_string();
        assert!(
            e.contains("cycle") && e.contains("a") && !e.contains("c,"),
            "{e}"
        );
    }

    /// A read-only user sees the plan: for a file holding secrets it shows neither the
    /// content's hash nor its size, and its digests are keyed, so a guessed secret cannot be
    /// confirmed offline.
    #[test]
    fn a_secret_bearing_file_shows_no_hash_and_its_digests_are_keyed() {
        use crate::resource::{Content, Escape, FileRole, SecretSlot};
        use crate::state::PathState;
        let reference = hostkit_api::values::SecretRef::Env("TOKEN".into());
        let mut content = Content::text(format!("TOKEN={}\n", Content::placeholder("TOKEN")));
        content.secrets.insert(
            "TOKEN".into(),
            SecretSlot {
                reference: reference.clone(),
                escape: Escape::Dotenv,
            },
        );
        let file = Resource::new(
            "file:/etc/app.env",
            "Service/app",
            Spec::File {
                path: "/etc/app.env".into(),
                content,
                owner: "root".into(),
                group: "root".into(),
                mode: 0o600,
                role: FileRole::Env,
            },
        );
        let mut state = HostState::default();
        state.paths.insert(
            file.id.clone(),
            PathState::File {
                owner: "root".into(),
                group: "root".into(),
                mode: 0o600,
                sha256: "0".repeat(64),
                size: 13,
                content: None,
            },
        );
        let plan_with = |secrets: &Secrets| {
            let p = compute("h", std::slice::from_ref(&file), &[], &state, secrets).unwrap();
            p.plan.changes[0].clone()
        };
        let keyed = Secrets::keyed().with(reference.clone(), "hunter2");
        let c = plan_with(&keyed);
        let shown = serde_json::to_string(&c).unwrap();
        assert!(!shown.contains(&"0".repeat(64)), "{shown}");
        assert!(c.before.as_ref().unwrap().get("size").is_none());
        assert!(c.after.as_ref().unwrap().get("sha256").is_none());
        let other = plan_with(&Secrets::keyed().with(reference.clone(), "hunter2"));
        assert_ne!(c.desired, other.desired, "another key, another digest");
        assert_ne!(c.fingerprint, other.fingerprint);
        let plain = Secrets::default().with(reference, "hunter2");
        assert_eq!(
            plan_with(&plain).desired,
            plan_with(&plain).desired,
            "offline: stable"
        );
    }
}
