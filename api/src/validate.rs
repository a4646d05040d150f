//! Semantic validation: everything serde's typing cannot say.
//!
//! Every check reports the field path (`spec.daemon.isolate.writable[1]`) and what would be
//! valid, and the validator collects all problems instead of stopping at the first, so an
//! operator fixes a manifest in one round instead of one error at a time.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::FieldError;
use crate::kinds::*;
use crate::meta::{LabelSelector, ObjectMeta, ObjectRef, check_label_key};
use crate::values::{PortSpec, SecretRef, check_byte_size, check_percent};

/// Collects field errors under a moving path prefix.
#[derive(Debug, Default)]
pub struct Validator {
    path: String,
    errors: Vec<FieldError>,
}

impl Validator {
    /// Runs `f` with `segment` appended to the path (`spec` → `spec.daemon`).
    pub fn scope(&mut self, segment: impl Display, f: impl FnOnce(&mut Validator)) {
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(&segment.to_string());
        f(self);
        self.path.truncate(len);
    }

    /// Runs `f` for one list element (`storage` → `storage[2]`).
    pub fn index(&mut self, segment: &str, i: usize, f: impl FnOnce(&mut Validator)) {
        self.scope(format!("{segment}[{i}]"), f);
    }

    /// Records a problem with `field` under the current path (`""` for the path itself).
    pub fn err(&mut self, field: impl Display, message: impl Into<String>) {
        let field = field.to_string();
        let full = match (self.path.is_empty(), field.is_empty()) {
            (true, _) => field,
            (false, true) => self.path.clone(),
            (false, false) if field.starts_with('[') => format!("{}{field}", self.path),
            (false, false) => format!("{}.{field}", self.path),
        };
        self.errors.push(FieldError::new(full, message));
    }

    /// Records `Err` results of a check.
    pub fn check(&mut self, field: impl Display, result: Result<(), String>) {
        if let Err(message) = result {
            self.err(field, message);
        }
    }

    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
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

/// Kinds whose names become user, unit and directory names on hosts use the stricter label rule.
fn uses_label_names(kind: &KindInfo) -> bool {
    matches!(kind.kind, "Service" | "Host" | "Project" | "Instance")
}

pub(crate) fn check_meta(kind: &KindInfo, meta: &ObjectMeta, v: &mut Validator) {
    v.scope("metadata", |v| {
        if meta.name.is_empty() {
            v.err("name", "is required");
        } else if uses_label_names(kind) {
            v.check("name", check_dns_label(&meta.name));
        } else {
            v.check("name", check_dns_subdomain(&meta.name));
        }
        for (key, value) in &meta.labels {
            v.check(format!("labels.{key}"), check_label_key(key));
            if value.len() > 63
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                v.err(
                    format!("labels.{key}"),
                    format!(
                        "{value:?} is not a valid label value: at most 63 letters, digits, '-', '_' or '.'"
                    ),
                );
            }
        }
        for key in meta.annotations.keys() {
            v.check(format!("annotations.{key}"), check_label_key(key));
        }
    });
}

pub(crate) fn object_ref(field: &str, r: &ObjectRef, v: &mut Validator) {
    v.scope(field, |v| {
        if find_kind(&r.kind).is_none() {
            v.err(
                "kind",
                format!("unknown kind {:?}; valid: {}", r.kind, kind_list()),
            );
        }
        v.check("name", check_dns_subdomain(&r.name));
    });
}

pub(crate) fn camel_case(field: &str, value: &str, v: &mut Validator) {
    let ok = value.starts_with(|c: char| c.is_ascii_uppercase())
        && value.chars().all(|c| c.is_ascii_alphanumeric());
    if !ok {
        v.err(
            field,
            format!("{value:?} is not a CamelCase word, e.g. DriftDetected"),
        );
    }
}

fn kind_list() -> String {
    KINDS.iter().map(|k| k.kind).collect::<Vec<_>>().join(", ")
}

/// Absolute paths, or paths starting with a `${…}` reference that expands to one.
fn check_path(field: impl Display, path: &str, v: &mut Validator) {
    if !(path.starts_with('/') || path.starts_with("${")) {
        v.err(
            field,
            format!("{path:?} is not an absolute path (start with / or a ${{roots.X}} reference)"),
        );
    }
}

fn check_user_name(field: impl Display, name: &str, v: &mut Validator) {
    if name.starts_with("${") {
        return;
    }
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if !ok {
        v.err(field, format!(
            "{name:?} is not a valid user or group name: lowercase letters, digits, '_' and '-', \
             starting with a letter or '_', at most 32 characters"
        ));
    }
}

fn check_owner(owner: &Option<String>, group: &Option<String>, v: &mut Validator) {
    if let Some(o) = owner {
        check_user_name("owner", o, v);
    }
    if let Some(g) = group {
        check_user_name("group", g, v);
    }
}

fn check_argv(field: &str, argv: &[String], v: &mut Validator) {
    match argv.first() {
        None => v.err(
            field,
            "must name a command: a list like [/usr/bin/program, --flag]",
        ),
        Some(cmd) if cmd.is_empty() => v.err(format!("{field}[0]"), "the command is empty"),
        Some(_) => {}
    }
}

fn check_env_name(field: impl Display, name: &str, v: &mut Validator) {
    let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        v.err(field, format!(
            "{name:?} is not an environment variable name: letters, digits and '_', not starting with a digit"
        ));
    }
}

fn check_secret(field: impl Display, s: &SecretRef, v: &mut Validator) {
    v.check(field, s.check());
}

fn unique<'a>(field: &str, names: impl Iterator<Item = &'a str>, v: &mut Validator) {
    let mut seen = BTreeSet::new();
    for (i, n) in names.enumerate() {
        if !seen.insert(n) {
            v.err(
                format!("{field}[{i}].name"),
                format!("{n:?} is declared twice"),
            );
        }
    }
}

fn check_selector(field: &str, s: &LabelSelector, v: &mut Validator) {
    v.scope(field, |v| {
        for key in s.match_labels.keys() {
            v.check(format!("matchLabels.{key}"), check_label_key(key));
        }
        for (i, e) in s.match_expressions.iter().enumerate() {
            v.index("matchExpressions", i, |v| {
                v.check("key", check_label_key(&e.key));
                use crate::meta::LabelOperator::*;
                match e.operator {
                    In | NotIn if e.values.is_empty() => {
                        v.err("values", "In and NotIn need at least one value")
                    }
                    Exists | DoesNotExist if !e.values.is_empty() => {
                        v.err("values", "Exists and DoesNotExist take no values")
                    }
                    _ => {}
                }
            });
        }
    });
}

pub(crate) fn service(spec: &ServiceSpec, _name: &str, v: &mut Validator) {
    let c = ServiceCheck {
        spec,
        storage_names: spec.storage.iter().map(|s| s.name.as_str()).collect(),
        listeners: spec
            .daemon
            .iter()
            .flat_map(|d| d.listen.iter().map(|l| l.name.as_str()))
            .collect(),
    };
    c.placement(v);
    c.account(v);
    c.paths(v);
    c.env(v);
    c.daemon(v);
    c.jobs(v);
    c.commands(v);
    c.caddy_sites(v);
    for (i, m) in spec.monitors.iter().enumerate() {
        v.index("monitors", i, |v| monitor(m, v));
    }
    for (i, p) in spec.packages.iter().enumerate() {
        v.check(format!("packages[{i}]"), check_package(p));
    }
    references(spec, v);
}

/// A Service's spec, with the names its parts refer to each other by.
struct ServiceCheck<'a> {
    spec: &'a ServiceSpec,
    storage_names: BTreeSet<&'a str>,
    listeners: BTreeSet<&'a str>,
}

impl ServiceCheck<'_> {
    /// Project, target hosts and rollout.
    fn placement(&self, v: &mut Validator) {
        let spec = self.spec;
        if let Some(p) = &spec.project {
            v.check("project", check_dns_label(p));
        }
        match (spec.hosts.is_empty(), &spec.host_selector) {
            (true, None) => v.err(
                "hosts",
                "name the target hosts with `hosts: [name]` or `hostSelector`",
            ),
            (false, Some(_)) => v.err(
                "hostSelector",
                "use either `hosts` or `hostSelector`, not both",
            ),
            _ => {}
        }
        for (i, h) in spec.hosts.iter().enumerate() {
            v.check(format!("hosts[{i}]"), check_dns_label(h));
        }
        if let Some(s) = &spec.host_selector {
            check_selector("hostSelector", s, v);
        }
        if let Some(r) = &spec.rollout
            && r.max_parallel == Some(0)
        {
            v.err("rollout.maxParallel", "must be at least 1");
        }
    }

    fn account(&self, v: &mut Validator) {
        let spec = self.spec;
        if let Some(a) = &spec.account {
            v.scope("account", |v| {
                if let Some(n) = &a.name {
                    check_user_name("name", n, v);
                }
                if let Some(h) = &a.home {
                    check_path("home", h, v);
                }
                for (i, g) in a.groups.iter().enumerate() {
                    check_user_name(format!("groups[{i}]"), g, v);
                }
            });
        }
    }

    /// Storage, directories, files, symlinks and config files.
    fn paths(&self, v: &mut Validator) {
        let spec = self.spec;
        unique("storage", spec.storage.iter().map(|s| s.name.as_str()), v);
        for (i, s) in spec.storage.iter().enumerate() {
            v.index("storage", i, |v| {
                v.check("name", check_dns_label(&s.name));
                match &s.path {
                    Some(p) => check_path("path", p, v),
                    None if !crate::kinds::Roots::NAMES.contains(&s.name.as_str()) => v.err(
                        "name",
                        format!(
                            "{:?} is not a root name ({}); give it an explicit `path`",
                            s.name,
                            crate::kinds::Roots::NAMES.join(", ")
                        ),
                    ),
                    None => {}
                }
                check_owner(&s.owner, &s.group, v);
            });
        }
        for (i, d) in spec.directories.iter().enumerate() {
            v.index("directories", i, |v| {
                check_path("path", &d.path, v);
                check_owner(&d.owner, &d.group, v);
            });
        }
        for (i, f) in spec.files.iter().enumerate() {
            v.index("files", i, |v| {
                check_path("path", &f.path, v);
                check_owner(&f.owner, &f.group, v);
                match (&f.content, &f.content_base64) {
                    (Some(_), Some(_)) => v.err(
                        "contentBase64",
                        "use either `content` or `contentBase64`, not both",
                    ),
                    (None, None) => v.err(
                        "content",
                        "is required (or `contentBase64` for binary content)",
                    ),
                    (None, Some(b)) => {
                        use base64_check::is_base64;
                        if !is_base64(b) {
                            v.err(
                                "contentBase64",
                                "is not valid base64 (standard alphabet, with padding)",
                            );
                        }
                    }
                    _ => {}
                }
            });
        }
        for (i, l) in spec.symlinks.iter().enumerate() {
            v.index("symlinks", i, |v| {
                check_path("path", &l.path, v);
                if l.to.is_empty() {
                    v.err("to", "is required: the link's target");
                }
                check_owner(&l.owner, &l.group, v);
            });
        }
        for (i, c) in spec.config_files.iter().enumerate() {
            v.index("configFiles", i, |v| {
                check_path("path", &c.path, v);
                check_owner(&c.owner, &c.group, v);
                if !c.content.is_object() {
                    v.err("content", "must be a mapping of keys to values");
                }
                for (k, s) in &c.secrets {
                    check_secret(format!("secrets.{k}"), s, v);
                }
            });
        }
    }

    fn env(&self, v: &mut Validator) {
        let spec = self.spec;
        for (name, e) in &spec.env {
            v.scope(format!("env.{name}"), |v| {
                if check_dns_label(name).is_err() {
                    v.err(
                        "",
                        format!("env file name {name:?} must be lowercase letters, digits and '-'"),
                    );
                }
                if let Some(p) = &e.path {
                    check_path("path", p, v);
                }
                check_owner(&e.owner, &e.group, v);
                for key in e.set.keys() {
                    check_env_name(format!("set.{key}"), key, v);
                }
                for (key, s) in &e.secrets {
                    check_env_name(format!("secrets.{key}"), key, v);
                    check_secret(format!("secrets.{key}"), s, v);
                    if e.set.contains_key(key) {
                        v.err(
                            format!("secrets.{key}"),
                            format!("{key} is also in `set`; a key is either public or secret"),
                        );
                    }
                }
            });
        }
    }

    /// Each name in `names` (the `env` of a daemon, job or command) is an env file.
    fn env_names(&self, field: &str, names: &[String], v: &mut Validator) {
        for (i, n) in names.iter().enumerate() {
            if !self.spec.env.contains_key(n) {
                v.err(
                    format!("{field}[{i}]"),
                    format!(
                        "{n:?} is not an env file of this service; declared: {}",
                        list(self.spec.env.keys())
                    ),
                );
            }
        }
    }

    fn isolate(&self, i: &crate::kinds::Isolate, v: &mut Validator) {
        v.scope("isolate", |v| {
            for (k, w) in i.writable.iter().enumerate() {
                if !w.starts_with('/')
                    && !w.starts_with("${")
                    && !self.storage_names.contains(w.as_str())
                {
                    v.err(
                        format!("writable[{k}]"),
                        format!(
                            "{w:?} is neither a storage name ({}) nor an absolute path",
                            list(self.storage_names.iter())
                        ),
                    );
                }
            }
            for (field, value) in [("memoryMax", &i.memory_max), ("memoryHigh", &i.memory_high)] {
                if let Some(m) = value {
                    v.check(field, check_byte_size(m));
                }
            }
            if let Some(c) = &i.cpu_quota {
                v.check("cpuQuota", check_percent(c));
            }
        });
    }

    fn daemon(&self, v: &mut Validator) {
        let spec = self.spec;
        if let Some(d) = &spec.daemon {
            v.scope("daemon", |v| {
                check_argv("exec", &d.exec, v);
                self.env_names("env", &d.env, v);
                for k in d.environment.keys() {
                    check_env_name(format!("environment.{k}"), k, v);
                }
                if let Some(i) = &d.isolate {
                    self.isolate(i, v);
                }
                unique("listen", d.listen.iter().map(|l| l.name.as_str()), v);
                for (k, l) in d.listen.iter().enumerate() {
                    v.index("listen", k, |v| {
                        v.check("name", check_dns_label(&l.name));
                        if l.port == 0 {
                            v.err("port", "must be 1-65535");
                        }
                        if let Some(on) = &l.on
                            && on != "loopback"
                            && on != "any"
                            && IpAddr::from_str(on).is_err()
                        {
                            v.err(
                                "on",
                                format!("{on:?} is not loopback, any, or an IP address"),
                            );
                        }
                    });
                }
                if let Some(u) = &d.user {
                    check_user_name("user", u, v);
                }
            });
        }
    }

    fn jobs(&self, v: &mut Validator) {
        let spec = self.spec;
        unique("jobs", spec.jobs.iter().map(|j| j.name.as_str()), v);
        for (i, j) in spec.jobs.iter().enumerate() {
            v.index("jobs", i, |v| {
                v.check("name", check_dns_label(&j.name));
                check_argv("exec", &j.exec, v);
                self.env_names("env", &j.env, v);
                if let Some(iso) = &j.isolate {
                    self.isolate(iso, v);
                }
                let s = &j.schedule;
                if s.on_calendar.is_empty()
                    && s.on_boot_sec.is_none()
                    && s.on_unit_active_sec.is_none()
                    && s.on_active_sec.is_none()
                {
                    v.err(
                        "schedule",
                        "needs at least one of onCalendar, onBootSec, onUnitActiveSec, onActiveSec",
                    );
                }
            });
        }
    }

    fn commands(&self, v: &mut Validator) {
        let spec = self.spec;
        unique("commands", spec.commands.iter().map(|c| c.name.as_str()), v);
        for (i, c) in spec.commands.iter().enumerate() {
            v.index("commands", i, |v| {
                v.check("name", check_dns_label(&c.name));
                check_argv("exec", &c.exec, v);
                self.env_names("env", &c.env, v);
                for (k, d) in c.depends_on.iter().enumerate() {
                    v.check(format!("dependsOn[{k}]"), check_resource_id(d));
                }
                match &c.down {
                None => v.err(
                    "down",
                    "every command must say how it is undone: noop, irreversible, or {exec: [...]}",
                ),
                Some(CommandDown::Exec(e)) => check_argv("down.exec", &e.exec, v),
                Some(_) => {}
            }
            });
        }
    }

    fn caddy_sites(&self, v: &mut Validator) {
        let spec = self.spec;
        unique(
            "caddySites",
            spec.caddy_sites.iter().map(|c| c.name.as_str()),
            v,
        );
        for (i, site) in spec.caddy_sites.iter().enumerate() {
            v.index("caddySites", i, |v| {
                v.check("name", check_dns_label(&site.name));
                if site.host.is_empty() || site.host.contains(char::is_whitespace) {
                    v.err(
                        "host",
                        format!(
                            "{:?} is not a site address such as api.example.com",
                            site.host
                        ),
                    );
                }
                for (k, e) in site.encode.iter().enumerate() {
                    if !matches!(e.as_str(), "zstd" | "gzip") {
                        v.err(
                            format!("encode[{k}]"),
                            format!("{e:?} is not one of zstd, gzip"),
                        );
                    }
                }
                if let Some(rp) = &site.reverse_proxy {
                    match (&rp.listener, &rp.to) {
                        (Some(l), None) if !self.listeners.contains(l.as_str()) => v.err(
                            "reverseProxy.listener",
                            format!(
                                "{l:?} is not a listener of this service's daemon; declared: {}",
                                list(self.listeners.iter())
                            ),
                        ),
                        (None, None) => v.err(
                            "reverseProxy",
                            "needs `listener` (a daemon listener name) or `to` (an address)",
                        ),
                        (Some(_), Some(_)) => {
                            v.err("reverseProxy", "use either `listener` or `to`, not both")
                        }
                        _ => {}
                    }
                } else if !site.file_server {
                    v.err(
                        "reverseProxy",
                        "a site needs `reverseProxy` or `fileServer: true`",
                    );
                }
                for (k, m) in site.monitors.iter().enumerate() {
                    v.index("monitors", k, |v| monitor(m, v));
                }
            });
        }
    }
}

fn check_package(p: &Package) -> Result<(), String> {
    let name = p.name();
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a package name (letters, digits, '-', '_', '.', '+')"
        ))
    }
}

/// Resource ids are `kind:name`, e.g. `file:/etc/toys/exograph/runtime.env`.
pub fn check_resource_id(id: &str) -> Result<(), String> {
    match id.split_once(':') {
        Some((kind, name))
            if !kind.is_empty()
                && !name.is_empty()
                && kind
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '-') =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{id:?} is not a resource id: write kind:name, e.g. file:/etc/app/app.toml or command:migrate"
        )),
    }
}

fn monitor(m: &Monitor, v: &mut Validator) {
    let kinds = [
        m.systemd.is_some(),
        m.http.is_some(),
        m.filesystem.is_some(),
        m.command.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        v.err(
            "",
            "a monitor has exactly one of systemd, http, filesystem, command",
        );
    }
    if let Some(h) = &m.http
        && !(h.url.starts_with("http://") || h.url.starts_with("https://"))
    {
        v.err(
            "http.url",
            format!("{:?} is not an http:// or https:// URL", h.url),
        );
    }
    if let Some(c) = &m.command {
        check_argv("command.exec", &c.exec, v);
    }
}

/// The `${…}` references a service may use, given its storage and listeners.
fn references(spec: &ServiceSpec, v: &mut Validator) {
    let Ok(value) = serde_json::to_value(spec) else {
        return;
    };
    let storage: BTreeSet<String> = spec.storage.iter().map(|s| s.name.clone()).collect();
    let listeners: BTreeSet<String> = spec
        .daemon
        .iter()
        .flat_map(|d| d.listen.iter().map(|l| l.name.clone()))
        .collect();
    let valid = format!(
        "${{roots.<{}>}}, ${{storage.<{}>}}, ${{service.user}}, ${{service.unit}}, ${{service.name}}, ${{listen.<{}>}}",
        crate::kinds::Roots::NAMES.join("|"),
        storage.iter().cloned().collect::<Vec<_>>().join("|"),
        listeners.iter().cloned().collect::<Vec<_>>().join("|"),
    );
    walk_strings(&value, &mut String::new(), &mut |path, s| {
        for reference in find_references(s) {
            let ok = match reference.split_once('.') {
                Some(("roots", r)) => crate::kinds::Roots::NAMES.contains(&r),
                Some(("storage", s)) => storage.contains(s),
                Some(("listen", l)) => listeners.contains(l),
                Some(("service", f)) => matches!(f, "user" | "unit" | "name"),
                _ => false,
            };
            if !ok {
                v.err(
                    path,
                    format!("unknown reference ${{{reference}}}; valid references: {valid}"),
                );
            }
        }
    });
}

/// The names inside `${…}` in `s`; an unclosed `${` is returned whole so it is reported.
pub fn find_references(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            None => {
                out.push(after);
                break;
            }
        }
    }
    out
}

fn walk_strings(value: &serde_json::Value, path: &mut String, f: &mut impl FnMut(&str, &str)) {
    match value {
        serde_json::Value::String(s) => f(path, s),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk_strings(item, path, f);
                path.truncate(len);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk_strings(item, path, f);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn list<T: Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| i.to_string()).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

pub(crate) fn project(spec: &ProjectSpec, v: &mut Validator) {
    v.scope("roots", |v| {
        for (name, value) in spec.roots.entries() {
            if let Some(p) = value
                && !p.starts_with('/')
            {
                v.err(name, format!("{p:?} is not an absolute path"));
            }
        }
    });
    v.scope("prefixes", |v| {
        for (name, value) in [("user", &spec.prefixes.user), ("unit", &spec.prefixes.unit)] {
            if let Some(p) = value
                && !p
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                v.err(
                    name,
                    format!("{p:?} may only hold lowercase letters, digits, '-' and '_'"),
                );
            }
        }
    });
    if let Some(fw) = &spec.firewall {
        v.scope("firewall", |v| firewall(fw, v));
    }
}

pub(crate) fn host(spec: &HostSpec, v: &mut Validator) {
    if spec.address.is_empty() || spec.address.contains(char::is_whitespace) {
        v.err(
            "address",
            format!("{:?} is not a host name or IP address", spec.address),
        );
    }
    v.scope("ssh", |v| ssh(&spec.ssh, v));
    if let Some(fw) = &spec.firewall {
        v.scope("firewall", |v| firewall(fw, v));
    }
    if let Some(b) = &spec.bootstrap {
        v.scope("bootstrap", |v| {
            for (i, p) in b.packages.iter().enumerate() {
                v.check(format!("packages[{i}]"), check_package(p));
            }
            if let Some(m) = &b.mise {
                for (field, value) in [
                    ("mise.path", &m.path),
                    ("mise.systemDataDir", &m.system_data_dir),
                ] {
                    if let Some(p) = value {
                        check_path(field, p, v);
                    }
                }
                for (tool, version) in &m.tools {
                    if version.is_empty() {
                        v.err(
                            format!("mise.tools.{tool}"),
                            "needs a version, e.g. \"29.0.2\"",
                        );
                    }
                }
            }
        });
    }
}

fn ssh(s: &Ssh, v: &mut Validator) {
    if let Some(u) = &s.user {
        check_user_name("user", u, v);
    }
    if s.port == Some(0) {
        v.err("port", "must be 1-65535");
    }
    if let Some(p) = &s.password {
        check_secret("password", p, v);
    }
    if let Some(k) = &s.host_key {
        match (k.policy, &k.key) {
            (HostKeyPolicy::Pinned, None) => v.err(
                "hostKey.key",
                "policy pinned needs the public key, e.g. \"ssh-ed25519 AAAA…\"",
            ),
            (HostKeyPolicy::Pinned, Some(key))
                if !key.starts_with("ssh-") && !key.starts_with("ecdsa-") =>
            {
                v.err(
                    "hostKey.key",
                    "expected an OpenSSH public key such as \"ssh-ed25519 AAAA…\"",
                )
            }
            (HostKeyPolicy::Strict | HostKeyPolicy::AcceptNew, Some(_)) => {
                v.err("hostKey.key", "a key is only used with policy pinned")
            }
            _ => {}
        }
    }
    if let Some(r) = &s.retry
        && r.attempts == Some(0)
    {
        v.err("retry.attempts", "must be at least 1 (1 means no retry)");
    }
}

fn firewall(fw: &Firewall, v: &mut Validator) {
    if let Some(p) = &fw.path {
        check_path("path", p, v);
    }
    for (i, r) in fw.rules.iter().enumerate() {
        v.index("rules", i, |v| {
            let m = match (&r.allow, &r.deny) {
                (Some(m), None) | (None, Some(m)) => m,
                _ => {
                    v.err("", "a rule has exactly one of allow or deny");
                    return;
                }
            };
            let field = if r.allow.is_some() { "allow" } else { "deny" };
            if m.tcp.is_empty() && m.udp.is_empty() && !m.icmp && !m.all {
                v.err(
                    field,
                    "match something: tcp: [ports], udp: [ports], icmp: true or all: true",
                );
            }
            for (proto, ports) in [("tcp", &m.tcp), ("udp", &m.udp)] {
                for (k, p) in ports.iter().enumerate() {
                    v.check(
                        format!("{field}.{proto}[{k}]"),
                        PortSpec::bounds(p).map(|_| ()),
                    );
                }
            }
            if let Some(from) = &r.from {
                for (k, src) in from.list().into_iter().enumerate() {
                    v.check(format!("from[{k}]"), check_source(src));
                }
            }
        });
    }
}

/// `any`, an IPv4/IPv6 address, or a CIDR.
pub fn check_source(src: &str) -> Result<(), String> {
    if src == "any" {
        return Ok(());
    }
    let (addr, prefix) = match src.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (src, None),
    };
    let ip = IpAddr::from_str(addr).map_err(|_| {
        format!("{src:?} is not any, an IP address, or a CIDR such as 10.44.0.0/24")
    })?;
    if let Some(p) = prefix {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match p.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => return Err(format!("{src:?}: prefix length must be 0-{max}")),
        }
    }
    Ok(())
}

pub(crate) fn policy_window(spec: &PolicyWindowSpec, v: &mut Validator) {
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

pub(crate) fn rollback(spec: &RollbackSpec, v: &mut Validator) {
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

pub(crate) fn git_source(spec: &GitSourceSpec, v: &mut Validator) {
    match (&spec.url, &spec.directory) {
        (Some(url), None) => {
            let schemes = ["ssh://", "https://", "http://", "git://", "file://"];
            if !schemes.iter().any(|s| url.starts_with(s)) {
                v.err("url", format!("{url:?} is not a git URL; valid schemes: ssh://, https://, http://, git://, file://"));
            }
        }
        (None, Some(dir)) => check_path("directory", dir, v),
        (None, None) => v.err(
            "url",
            "name a repository with `url` or a folder with `directory`",
        ),
        (Some(_), Some(_)) => v.err("directory", "use either `url` or `directory`, not both"),
    }
    if let Some(r) = &spec.ref_ {
        let set = [&r.branch, &r.tag, &r.commit]
            .iter()
            .filter(|x| x.is_some())
            .count();
        if set != 1 {
            v.err("ref", "give exactly one of branch, tag, commit");
        }
        if let Some(c) = &r.commit
            && (c.len() < 7 || !c.chars().all(|ch| ch.is_ascii_hexdigit()))
        {
            v.err(
                "ref.commit",
                format!("{c:?} is not a commit id (7-40 hex digits)"),
            );
        }
    }
    if let Some(p) = &spec.path
        && (p.starts_with('/') || p.split('/').any(|seg| seg == ".."))
    {
        v.err(
            "path",
            format!("{p:?} must be a folder inside the repository (relative, no '..')"),
        );
    }
    if let Some(a) = &spec.auth {
        for (field, s) in [
            ("sshKey", &a.ssh_key),
            ("knownHosts", &a.known_hosts),
            ("token", &a.token),
        ] {
            if let Some(s) = s {
                check_secret(format!("auth.{field}"), s, v);
            }
        }
    }
}

pub(crate) fn instance(spec: &InstanceSpec, v: &mut Validator) {
    if !matches!(spec.backend.name.as_str(), "nspawn" | "incus") {
        v.err(
            "backend.name",
            format!(
                "{:?} is not a backend; valid: nspawn, incus",
                spec.backend.name
            ),
        );
    }
    if spec.image.is_empty() {
        v.err(
            "image",
            "is required: a registered image name such as debian-bookworm",
        );
    }
    unique("expose", spec.expose.iter().map(|e| e.name.as_str()), v);
    for (i, e) in spec.expose.iter().enumerate() {
        v.index("expose", i, |v| {
            if e.host == 0 {
                v.err("host", "must be 1-65535");
            }
            if e.guest == 0 {
                v.err("guest", "must be 1-65535");
            }
        });
    }
    v.scope("host", |v| {
        for key in spec.host.labels.keys() {
            v.check(format!("labels.{key}"), check_label_key(key));
        }
        v.scope("ssh", |v| ssh(&spec.host.ssh, v));
    });
}

mod base64_check {
    /// Standard-alphabet base64 with padding; whitespace between lines allowed.
    pub fn is_base64(s: &str) -> bool {
        let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !clean.len().is_multiple_of(4) {
            return false;
        }
        let pad = clean.iter().rev().take_while(|b| **b == b'=').count();
        pad <= 2
            && clean[..clean.len() - pad]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_dns_label("exograph").is_ok());
        assert!(check_dns_label("elixir-toys").is_ok());
        for bad in ["Exograph", "-a", "a-", "a_b", "a.b", ""] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
        assert!(check_dns_subdomain("exograph.17a").is_ok());
        assert!(check_dns_subdomain("a..b").is_err());
    }

    #[test]
    fn references_are_found() {
        assert_eq!(
            find_references("${roots.source}/x/${storage.data}"),
            vec!["roots.source", "storage.data"]
        );
        assert_eq!(find_references("plain"), Vec::<&str>::new());
        assert_eq!(find_references("${unclosed"), vec!["unclosed"]);
    }

    #[test]
    fn sources() {
        for ok in ["any", "10.44.0.0/24", "192.0.2.1", "2001:db8::/32", "::1"] {
            assert!(check_source(ok).is_ok(), "{ok}");
        }
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/x", ""] {
            assert!(check_source(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resource_ids() {
        assert!(check_resource_id("file:/etc/toys/exograph/runtime.env").is_ok());
        assert!(check_resource_id("command:migrate").is_ok());
        assert!(check_resource_id("/etc/x").is_err());
        assert!(check_resource_id("File:/x").is_err());
    }

    #[test]
    fn base64() {
        assert!(base64_check::is_base64("aGVsbG8="));
        assert!(!base64_check::is_base64("aGVsbG8"));
        assert!(!base64_check::is_base64("a*=="));
    }
}
