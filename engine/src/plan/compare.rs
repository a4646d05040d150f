//! What each resource needs: desired against current, per kind, with the reason and the
//! diff a plan shows (keys only for env files; secret values never).

use super::*;

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

pub(super) struct Planned {
    pub(super) action: Action,
    pub(super) reason: String,
    pub(super) after: Option<Value>,
    pub(super) diff: Option<String>,
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
pub(super) fn plan_one(
    r: &Resource,
    st: &HostState,
    bytes: Option<&Vec<u8>>,
    lock: &PackageLock,
) -> Planned {
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
        Spec::Package {
            name,
            system,
            version,
            ..
        } => plan_package(name, system.as_deref(), version.as_deref(), st, lock),
        Spec::Unit { name, start, .. } => plan_unit(name, *start, st),
        Spec::Command(c) => plan_command(c, st.commands.get(&r.id).cloned().unwrap_or_default()),
        Spec::Firewall { .. } => {
            plan_firewall(st.firewalls.get(&r.id).cloned().unwrap_or_default())
        }
        Spec::Release(rel) => plan_release(rel, st.releases.get(&r.id)),
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

fn plan_package(
    name: &str,
    system: Option<&str>,
    version: Option<&str>,
    st: &HostState,
    lock: &PackageLock,
) -> Planned {
    let manager = st
        .facts
        .get("packageManager")
        .map(String::as_str)
        .unwrap_or("");
    let names = crate::packages::resolve(name, system, manager);
    if let Some(why) = unplannable(name, &names, version, manager) {
        return change(Action::ReadError, why, None, None);
    }
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !matches!(st.packages.get(*n), Some(Some(_))))
        .collect();
    let pinned = crate::packages::pins(&names, version, lock);
    let off: Vec<String> = names
        .iter()
        .filter_map(|n| {
            let installed = st.packages.get(n).cloned().flatten()?;
            match (pinned.get(n), version) {
                (Some(pin), _) if installed != *pin => {
                    Some(format!("{n} {installed} installed, locked {pin}"))
                }
                (None, Some(want)) if !crate::packages::version_matches(want, &installed) => {
                    Some(format!("{n} {installed} installed, wants {want}"))
                }
                _ => None,
            }
        })
        .collect();
    let after = json!({"installed": true, "version": version, "locked": pinned});
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
    } else if !off.is_empty() {
        change(Action::Update, off.join("; "), Some(after), None)
    } else {
        noop()
    }
}

/// Why a package cannot be installed as asked on this host, before anything runs: a
/// version for a name that stands for several packages, or one the manager cannot choose.
fn unplannable(
    name: &str,
    names: &[String],
    version: Option<&str>,
    manager: &str,
) -> Option<String> {
    if let Some(bad) = names.iter().find(|n| !crate::packages::is_plain_word(n)) {
        return Some(format!("{bad:?} is not a package name"));
    }
    let want = version?;
    if names.len() > 1 {
        return Some(format!(
            "version {want:?} needs one package, and {name} is {} packages under {manager} ({}): name the one with `as:`",
            names.len(),
            names.join(" ")
        ));
    }
    match manager {
        "pacman" => Some(format!(
            "version {want:?}: pacman installs only the version its repositories carry; leave `version` out on this host"
        )),
        "apk" if want.contains('?') || want.trim_end_matches('*').contains('*') => Some(format!(
            "version {want:?}: apk chooses a version exactly or by prefix (`2.6.*`), not by other globs"
        )),
        _ => None,
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

/// A release is made once per commit: there (complete) is a no-op; otherwise the first
/// release is a create and any later one an update (the host already runs one).
fn plan_release(r: &crate::release::ReleaseSpec, st: Option<&ReleaseState>) -> Planned {
    let st = st.cloned().unwrap_or_default();
    if st.present {
        return noop();
    }
    let steps = match r.build.len() {
        0 => String::new(),
        n => format!(" and build it ({n} step(s))"),
    };
    let reason = format!("fetch {} from {}{steps}", r.short(), r.git);
    let action = if st.releases == 0 {
        Action::Create
    } else {
        Action::Update
    };
    change(action, reason, Some(json!({"commit": r.commit})), None)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn host(manager: &str, installed: &[(&str, &str)]) -> HostState {
        let mut st = HostState::default();
        st.facts.insert("packageManager".into(), manager.into());
        for (n, v) in installed {
            st.packages.insert(n.to_string(), Some(v.to_string()));
        }
        st
    }

    #[test]
    fn a_package_plans_by_version_and_lock_and_refuses_what_no_manager_can_do() {
        let none = PackageLock::new();
        let st = host("apt-get", &[("hk-demo", "2.6.1-1")]);
        let p = plan_package("hk-demo", None, Some("2.6.*"), &st, &none);
        assert_eq!(p.action, Action::Noop);
        let p = plan_package("hk-demo", None, Some("1.*"), &st, &none);
        assert_eq!(
            (p.action, p.reason.as_str()),
            (Action::Update, "hk-demo 2.6.1-1 installed, wants 1.*")
        );
        // A lock the glob still accepts pins the version; one it does not is stale.
        let lock: PackageLock = [("hk-demo".to_string(), "2.6.3-1".to_string())].into();
        let p = plan_package("hk-demo", None, Some("2.6.*"), &st, &lock);
        assert_eq!(p.reason, "hk-demo 2.6.1-1 installed, locked 2.6.3-1");
        let p = plan_package("hk-demo", None, Some("2.6.1*"), &st, &lock);
        assert_eq!(p.action, Action::Noop, "{}", p.reason);
        // `as:` replaces the semantic name.
        let p = plan_package("demo", Some("hk-demo"), None, &st, &none);
        assert_eq!(p.action, Action::Noop, "{}", p.reason);
        let p = plan_package("demo", None, None, &st, &none);
        assert_eq!(p.reason, "not installed: demo");

        let p = plan_package(
            "build-essential",
            None,
            Some("1.*"),
            &host("dnf", &[]),
            &none,
        );
        assert_eq!(p.action, Action::ReadError);
        assert!(
            p.reason
                .contains("build-essential is 3 packages under dnf (gcc gcc-c++ make)"),
            "{}",
            p.reason
        );
        let p = plan_package("tree", None, Some("2.*"), &host("pacman", &[]), &none);
        assert_eq!(p.action, Action::ReadError);
        assert!(
            p.reason.contains("pacman installs only the version"),
            "{}",
            p.reason
        );
        let p = plan_package("tree", None, Some("2.*.1"), &host("apk", &[]), &none);
        assert_eq!(p.action, Action::ReadError);
        let p = plan_package("tree", None, Some("2.*"), &host("apk", &[]), &none);
        assert_eq!(p.action, Action::Create);
        let p = plan_package("x; reboot", None, None, &host("apt-get", &[]), &none);
        assert_eq!(p.action, Action::ReadError, "{}", p.reason);
    }
}
