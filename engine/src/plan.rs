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

use crate::render::files::parse_dotenv;
use crate::resource::{CommandSpec, Content, Dependency, Edge, FileRole, Resource, Spec};
use crate::secrets::Secrets;
use crate::state::{AccountState, CommandState, FirewallState, HostState, PathState};
use crate::{Error, Result};

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

/// A short digest of a desired resource set (secret references, never values): two
/// generations with the same digest ask the host for exactly the same state.
pub fn desired_digest(resources: &[Resource]) -> String {
    fingerprint_of(&serde_json::to_value(resources).expect("resources serialise"))
}

/// Orders resources so that every dependency comes first; rejects duplicate ids,
/// dependencies on undeclared ids, and cycles.
pub fn order(resources: &[Resource]) -> Result<Vec<usize>> {
    let mut index = BTreeMap::new();
    for (i, r) in resources.iter().enumerate() {
        if index.insert(r.id.as_str(), i).is_some() {
            return Err(Error::Graph(format!(
                "{} is declared twice (by {} and {})",
                r.id,
                resources[index[r.id.as_str()]].owner,
                r.owner
            )));
        }
    }
    for r in resources {
        for d in &r.depends_on {
            if !index.contains_key(d.id.as_str()) {
                return Err(Error::Graph(format!(
                    "{} depends on {} ({:?}), which is not declared",
                    r.id, d.id, d.edge
                )));
            }
        }
    }
    // Kahn's algorithm, taking ready resources in declaration order for stable plans.
    let mut indegree: Vec<usize> = resources.iter().map(|r| r.depends_on.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); resources.len()];
    for (i, r) in resources.iter().enumerate() {
        for d in &r.depends_on {
            dependents[index[d.id.as_str()]].push(i);
        }
    }
    // Among ready resources, units go last: all unit files are then written before the
    // first unit starts, so one daemon-reload serves them all.
    let rank = |i: usize| (matches!(resources[i].spec, Spec::Unit { .. }) as u8, i);
    let mut ready: BTreeSet<(u8, usize)> = (0..resources.len())
        .filter(|&i| indegree[i] == 0)
        .map(rank)
        .collect();
    let mut out = Vec::with_capacity(resources.len());
    while let Some((_, i)) = ready.pop_first() {
        out.push(i);
        for &j in &dependents[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(rank(j));
            }
        }
    }
    if out.len() != resources.len() {
        let stuck: Vec<&str> = (0..resources.len())
            .filter(|i| indegree[*i] > 0)
            .map(|i| resources[i].id.as_str())
            .collect();
        return Err(Error::Graph(format!(
            "dependency cycle among: {}",
            stuck.join(", ")
        )));
    }
    Ok(out)
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
        Spec::Package { name } => {
            let manager = st
                .facts
                .get("packageManager")
                .map(String::as_str)
                .unwrap_or("");
            let installed: BTreeMap<String, Option<String>> = crate::packages::names(name, manager)
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
    }
}

/// Replaces secret values in `text` by `<secret KEY>`, using the template's lines: a line
/// of `current` that starts like a template line holding a placeholder is redacted.
fn redact(template: &Content, current: &str) -> String {
    let mut prefixes = Vec::new();
    for line in template.text.lines() {
        for key in template.secrets.keys() {
            let p = Content::placeholder(key);
            if let Some(pos) = line.find(&p) {
                prefixes.push((
                    line[..pos].to_string(),
                    line.replace(&p, &format!("<secret {key}>")),
                ));
            }
        }
    }
    current
        .lines()
        .map(|l| {
            prefixes
                .iter()
                .find(|(p, _)| !p.trim().is_empty() && l.starts_with(p.as_str()))
                .map(|(_, shown)| shown.clone())
                .unwrap_or_else(|| l.to_string())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn shown_desired(content: &Content) -> String {
    let mut t = content.text.clone();
    for key in content.secrets.keys() {
        t = t.replace(&Content::placeholder(key), &format!("<secret {key}>"));
    }
    t
}

fn unified(before: &str, after: &str, path: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (host)"), &format!("{path} (desired)"))
        .to_string()
}

/// Keyed diff of two env files; secret keys by name only.
fn keyed_env(before: &str, after: &str, secrets: &BTreeSet<String>) -> String {
    let b = parse_dotenv(before);
    let a = parse_dotenv(after);
    let mut out = String::new();
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    for k in keys {
        let secret = secrets.contains(k.as_str());
        match (b.get(k), a.get(k)) {
            (None, Some(_)) if secret => out.push_str(&format!("+ {k} (secret)\n")),
            (None, Some(v)) => out.push_str(&format!("+ {k}={v}\n")),
            (Some(_), None) => out.push_str(&format!("- {k}\n")),
            (Some(x), Some(y)) if x != y && secret => {
                out.push_str(&format!("~ {k} (secret changed)\n"))
            }
            (Some(x), Some(y)) if x != y => out.push_str(&format!("~ {k}: {x} → {y}\n")),
            _ => {}
        }
    }
    out
}

struct Planned {
    action: Action,
    reason: String,
    after: Option<Value>,
    diff: Option<String>,
}

/// No change.
fn noop() -> Planned {
    Planned {
        action: Action::Noop,
        reason: "up to date".into(),
        after: None,
        diff: None,
    }
}

/// A planned change.
fn change(action: Action, reason: String, after: Option<Value>, diff: Option<String>) -> Planned {
    Planned {
        action,
        reason,
        after,
        diff,
    }
}

/// The change one resource needs on the host as read.
fn plan_one(r: &Resource, st: &HostState, bytes: Option<&Vec<u8>>, lock: &PackageLock) -> Planned {
    match &r.spec {
        Spec::File {
            path,
            content,
            owner,
            group,
            mode,
            role,
        } => {
            let want = WantFile {
                path,
                content,
                owner,
                group,
                mode: *mode,
                role: *role,
                bytes: bytes.expect("prepare materializes every file"),
            };
            plan_file(&want, st.paths.get(&r.id))
        }
        Spec::Directory {
            owner, group, mode, ..
        } => plan_directory(owner, group, *mode, st.paths.get(&r.id)),
        Spec::Symlink { to, .. } => plan_symlink(to, st.paths.get(&r.id)),
        Spec::Account {
            home,
            shell,
            groups,
            ..
        } => plan_account(home, shell, groups, st.accounts.get(&r.id)),
        Spec::Package { name } => plan_package(name, st, lock),
        Spec::Unit { name, start, .. } => plan_unit(name, *start, st),
        Spec::Command(c) => plan_command(c, st.commands.get(&r.id).cloned().unwrap_or_default()),
        Spec::Firewall { .. } => {
            plan_firewall(st.firewalls.get(&r.id).cloned().unwrap_or_default())
        }
    }
}

/// A file as the spec wants it.
struct WantFile<'a> {
    path: &'a String,
    content: &'a Content,
    owner: &'a String,
    group: &'a String,
    mode: u32,
    role: FileRole,
    /// The materialized content (secrets resolved).
    bytes: &'a Vec<u8>,
}

fn plan_file(want: &WantFile<'_>, current: Option<&PathState>) -> Planned {
    let WantFile {
        path,
        content,
        owner,
        group,
        ref mode,
        ref role,
        bytes,
    } = *want;
    let sha = sha256_hex(bytes);
    let after = json!({"type": "file", "owner": owner, "group": group, "mode": format!("{mode:04o}"), "sha256": sha, "size": bytes.len()});
    let desired_text = || (!content.base64).then(|| shown_desired(content));
    match current {
        None | Some(PathState::Absent) => {
            let diff = desired_text().map(|t| unified("", &t, path));
            change(Action::Create, "does not exist".into(), Some(after), diff)
        }
        Some(PathState::File {
            owner: o,
            group: g,
            mode: m,
            sha256,
            content: current,
            ..
        }) => {
            let mut reasons = Vec::new();
            if sha256 != &sha {
                reasons.push("content differs".to_string());
            }
            if o != owner || g != group {
                reasons.push(format!("owner {o}:{g}, want {owner}:{group}"));
            }
            if m != mode {
                reasons.push(format!("mode {m:04o}, want {mode:04o}"));
            }
            if reasons.is_empty() {
                return noop();
            }
            let diff = (sha256 != &sha)
                .then(|| content_diff(path, content, *role, bytes, current.as_deref()));
            change(Action::Update, reasons.join("; "), Some(after), diff)
        }
        Some(other) => change(
            Action::Update,
            format!(
                "is a {}, want a file",
                path_view(other)["type"].as_str().unwrap_or("?")
            ),
            Some(after),
            None,
        ),
    }
}

/// What changes in a file's content, as the plan shows it: a unified diff, keys only for
/// env files, secrets never.
fn content_diff(
    path: &str,
    content: &Content,
    role: FileRole,
    bytes: &[u8],
    current: Option<&[u8]>,
) -> String {
    let desired_text = (!content.base64).then(|| shown_desired(content));
    match (
        current.and_then(|c| String::from_utf8(c.to_vec()).ok()),
        desired_text,
    ) {
        (Some(cur), Some(want)) => {
            if role == FileRole::Env {
                let secrets: BTreeSet<String> = content.secrets.keys().cloned().collect();
                let want_real = String::from_utf8_lossy(bytes).into_owned();
                keyed_env(&cur, &want_real, &secrets)
            } else if content.secrets.is_empty() {
                unified(&cur, &want, path)
            } else {
                let shown = unified(&redact(content, &cur), &want, path);
                if shown.is_empty() {
                    "a secret value changed (not shown)\n".to_string()
                } else {
                    shown
                }
            }
        }
        _ => "binary or large file: content differs\n".into(),
    }
}

fn plan_directory(
    owner: &String,
    group: &String,
    mode: u32,
    current: Option<&PathState>,
) -> Planned {
    let mode = &mode;
    let after =
        json!({"type": "directory", "owner": owner, "group": group, "mode": format!("{mode:04o}")});
    match current {
        None | Some(PathState::Absent) => {
            change(Action::Create, "does not exist".into(), Some(after), None)
        }
        Some(PathState::Directory {
            owner: o,
            group: g,
            mode: m,
        }) => {
            let mut reasons = Vec::new();
            if o != owner || g != group {
                reasons.push(format!("owner {o}:{g}, want {owner}:{group}"));
            }
            if m != mode {
                reasons.push(format!("mode {m:04o}, want {mode:04o}"));
            }
            if reasons.is_empty() {
                noop()
            } else {
                change(Action::Update, reasons.join("; "), Some(after), None)
            }
        }
        Some(other) => change(
            Action::ReadError,
            format!(
                "is a {}, want a directory; HostKit does not replace it",
                path_view(other)["type"].as_str().unwrap_or("?")
            ),
            None,
            None,
        ),
    }
}

fn plan_symlink(to: &String, current: Option<&PathState>) -> Planned {
    let after = json!({"type": "symlink", "to": to});
    match current {
        None | Some(PathState::Absent) => {
            change(Action::Create, "does not exist".into(), Some(after), None)
        }
        Some(PathState::Link { target }) if target == to => noop(),
        Some(PathState::Link { target }) => change(
            Action::Update,
            format!("points to {target}, want {to}"),
            Some(after),
            None,
        ),
        Some(_) => change(
            Action::ReadError,
            "exists and is not a symlink; HostKit does not replace it".into(),
            None,
            None,
        ),
    }
}

fn plan_account(
    home: &String,
    shell: &String,
    groups: &[String],
    current: Option<&Option<AccountState>>,
) -> Planned {
    let after = json!({"exists": true, "home": home, "shell": shell, "groups": groups});
    match current {
        None | Some(None) => change(Action::Create, "does not exist".into(), Some(after), None),
        Some(Some(a)) => {
            let mut reasons = Vec::new();
            if &a.home != home {
                reasons.push(format!("home {}, want {home}", a.home));
            }
            if &a.shell != shell {
                reasons.push(format!("shell {}, want {shell}", a.shell));
            }
            let missing: Vec<&String> = groups.iter().filter(|g| !a.groups.contains(g)).collect();
            if !missing.is_empty() {
                reasons.push(format!("not in groups {missing:?}"));
            }
            if reasons.is_empty() {
                noop()
            } else {
                change(Action::Update, reasons.join("; "), Some(after), None)
            }
        }
    }
}

fn plan_package(name: &str, st: &HostState, lock: &PackageLock) -> Planned {
    let manager = st
        .facts
        .get("packageManager")
        .map(String::as_str)
        .unwrap_or("");
    let names = crate::packages::names(name, manager);
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !matches!(st.packages.get(*n), Some(Some(_))))
        .collect();
    let off_lock: Vec<String> = names
        .iter()
        .filter_map(|n| {
            let installed = st.packages.get(n).cloned().flatten()?;
            let pinned = lock.get(n)?;
            (installed != *pinned).then(|| format!("{n} {installed}, locked {pinned}"))
        })
        .collect();
    let pinned: BTreeMap<&String, &String> = names
        .iter()
        .filter_map(|n| Some((n, lock.get(n)?)))
        .collect();
    let after = json!({"installed": true, "locked": pinned});
    if !missing.is_empty() {
        change(
            Action::Create,
            format!(
                "not installed: {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Some(after),
            None,
        )
    } else if !off_lock.is_empty() {
        change(Action::Update, off_lock.join("; "), Some(after), None)
    } else {
        noop()
    }
}

fn plan_unit(name: &str, start: bool, st: &HostState) -> Planned {
    let start = &start;
    let u = st.units.get(name).cloned().unwrap_or_default();
    let after = json!({"enabled": "enabled", "active": if *start { "active" } else { "inactive" }});
    if u.load != "loaded" {
        return change(
            Action::Create,
            "not installed yet".into(),
            Some(after),
            None,
        );
    }
    let mut reasons = Vec::new();
    if u.enabled != "enabled" {
        reasons.push(format!(
            "is {}, want enabled",
            if u.enabled.is_empty() {
                "disabled"
            } else {
                &u.enabled
            }
        ));
    }
    if *start && u.active != "active" {
        reasons.push(format!("is {}, want active", u.active));
    }
    if reasons.is_empty() {
        noop()
    } else {
        change(Action::Update, reasons.join("; "), Some(after), None)
    }
}

fn plan_command(c: &CommandSpec, cs: CommandState) -> Planned {
    let want_stamp = format!("{} {}", c.stamp, cs.inputs);
    let after = json!({"ran": true, "stamp": want_stamp});
    if let Some(false) = cs.created {
        return change(
            Action::Create,
            format!("{} does not exist", c.creates.as_deref().unwrap_or("")),
            Some(after),
            None,
        );
    }
    if cs.created == Some(true) {
        return noop();
    }
    if let Some(ok) = cs.unless_ok {
        return if ok {
            noop()
        } else {
            change(
                Action::Create,
                "the unless test fails".into(),
                Some(after),
                None,
            )
        };
    }
    match &cs.stamp {
        None => change(Action::Create, "never ran".into(), Some(after), None),
        Some(s) if *s == want_stamp => noop(),
        Some(_) => change(
            Action::Update,
            "its command or inputs changed since the last run".into(),
            Some(after),
            None,
        ),
    }
}

fn plan_firewall(fw: FirewallState) -> Planned {
    let after = json!({"loaded": true});
    match (&fw.loaded, &fw.stamp) {
        (None, _) => change(
            Action::Create,
            "table is not loaded".into(),
            Some(after),
            None,
        ),
        (Some(l), Some(s)) if s.split_whitespace().next() == Some(l.as_str()) => noop(),
        (Some(_), _) => change(
            Action::Update,
            "the loaded table differs from what HostKit loaded".into(),
            Some(after),
            None,
        ),
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
        let before = current_view(r, state);
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
                        Edge::UnitFile | Edge::EnvFile | Edge::TimerService | Edge::ExecPath
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
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(r)?);
        if let Some(b) = bytes.get(&r.id) {
            h.update(Sha256::digest(b));
        }
        let desired = hex::encode(h.finalize())[..16].to_string();
        action_of.insert(r.id.clone(), p.action);
        changes.push(Change {
            id: r.id.clone(),
            owner: r.owner.clone(),
            action: p.action,
            reason: p.reason,
            before: (p.action != Action::Noop).then_some(before.clone()),
            after: p.after,
            diff: p.diff.filter(|d| !d.is_empty()),
            fingerprint: fingerprint_of(&before),
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
        let before = current_view(r, state);
        let exists = match &r.spec {
            Spec::File { .. } | Spec::Directory { .. } | Spec::Symlink { .. } => {
                !matches!(state.paths.get(&r.id), None | Some(PathState::Absent))
            }
            Spec::Unit { name, .. } => state.units.get(name).is_some_and(|u| u.load == "loaded"),
            Spec::Firewall { .. } => state
                .firewalls
                .get(&r.id)
                .is_some_and(|f| f.loaded.is_some()),
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
            fingerprint: fingerprint_of(&before),
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
        },
        resources: all,
        bytes,
        facts: state.facts.clone(),
        lock: lock.clone(),
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
    prepare_locked(transport, resources, previous, &PackageLock::new(), secrets).await
}

/// [`prepare`] with a package lock.
pub async fn prepare_locked(
    transport: &dyn crate::transport::Transport,
    resources: &[Resource],
    previous: &[Resource],
    lock: &PackageLock,
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
    let state = crate::state::read(transport, &all, &want).await?;
    compute_locked(transport.host(), resources, previous, lock, &state, secrets)
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
        let mut r = Resource::new(id, "Service/t", Spec::Package { name: id.into() });
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

    #[test]
    fn keyed_env_diff_names_secret_keys_only() {
        let secrets: BTreeSet<String> = ["DB".to_string()].into();
        let d = keyed_env(
            "PORT=\"1\"\nDB=\"old-pw\"\nGONE=\"x\"\n",
            "PORT=\"2\"\nDB=\"new-pw\"\nNEW=\"y\"\n",
            &secrets,
        );
        assert!(d.contains("~ PORT: 1 → 2"));
        assert!(d.contains("~ DB (secret changed)"));
        assert!(d.contains("- GONE") && d.contains("+ NEW=y"));
        assert!(!d.contains("pw"), "{d}");
    }
}
