//! What a valid Service is beyond its types: names that resolve (env files, storage,
//! listeners, `${…}` references), paths, accounts, commands that say how they are undone.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::str::FromStr;

use super::*;
use crate::meta::check_dns_label;
use crate::validate::{
    Validator, base64_check, check_argv, check_env_name, check_owner, check_path,
    check_resource_id, check_secret, check_selector, check_user_name, find_references, list,
    unique, walk_strings,
};
use crate::validate::{check_calendar, check_directive_text, check_unit_name};
use crate::values::{check_byte_size, check_percent};

pub(super) fn service(spec: &ServiceSpec, _name: &str, v: &mut Validator) {
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
    if let Some(s) = &spec.source {
        let has_user =
            spec.account.is_some() || spec.daemon.as_ref().is_some_and(|d| d.user.is_some());
        v.scope("source", |v| source::check_source(s, has_user, v));
    }
    c.paths(v);
    c.env(v);
    c.daemon(v);
    c.jobs(v);
    c.commands(v);
    c.caddy_sites(v);
    let listeners: Vec<String> = c.listeners.iter().map(|l| l.to_string()).collect();
    monitors::check_monitors(&spec.monitors, &listeners, false, v);
    if let Some(o) = &spec.observability {
        crate::kinds::observability::check_observability(o, Some(&listeners), v);
    }
    for (i, p) in spec.packages.iter().enumerate() {
        v.check(format!("packages[{i}]"), p.check());
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
        if let Some(r) = &spec.rollout {
            rollout::check_rollout(r, v);
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
                if let Some(b) = &s.backup {
                    v.scope("backup", |v| super::backup::check_backup(b, v));
                }
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
            if let Some(crate::kinds::Network::Policy(p)) = &i.network {
                v.scope("network", |v| {
                    if p.allow.is_empty() && p.deny.is_none() {
                        v.err("", "a network policy needs allow, deny or both".to_string());
                    }
                    for (k, a) in p.allow.iter().enumerate() {
                        v.check(
                            format!("allow[{k}]"),
                            crate::kinds::address_entry(a).map(|_| ()),
                        );
                    }
                    match &p.deny {
                        Some(crate::kinds::AddressList::One(d)) => {
                            v.check("deny", crate::kinds::address_entry(d).map(|_| ()));
                        }
                        Some(crate::kinds::AddressList::Many(ds)) => {
                            for (k, d) in ds.iter().enumerate() {
                                v.check(
                                    format!("deny[{k}]"),
                                    crate::kinds::address_entry(d).map(|_| ()),
                                );
                            }
                        }
                        None => {}
                    }
                });
            }
        });
    }

    fn daemon(&self, v: &mut Validator) {
        let spec = self.spec;
        if let Some(d) = &spec.daemon {
            v.scope("daemon", |v| {
                check_argv("exec", &d.exec, v);
                if let Some(text) = &d.description {
                    check_directive_text("description", text, v);
                }
                for (field, units) in [
                    ("after", &d.after),
                    ("wants", &d.wants),
                    ("requires", &d.requires),
                    ("wantedBy", &d.wanted_by),
                ] {
                    for (k, u) in units.iter().enumerate() {
                        v.check(format!("{field}[{k}]"), check_unit_name(u));
                    }
                }
                if let Some(g) = &d.group {
                    check_user_name("group", g, v);
                }
                if let Some(wd) = &d.working_directory {
                    check_path("workingDirectory", wd, v);
                }
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
                if let Some(l) = &d.logs {
                    super::logs::check_logs(l, v);
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
                if j.name.starts_with(super::BACKUP_JOB_PREFIX) {
                    v.err(
                        "name",
                        format!(
                            "{:?}: job names starting with {:?} are the storage backups' (storage[].backup)",
                            j.name,
                            super::BACKUP_JOB_PREFIX
                        ),
                    );
                }
                check_argv("exec", &j.exec, v);
                self.env_names("env", &j.env, v);
                if let Some(text) = &j.description {
                    check_directive_text("description", text, v);
                }
                if let Some(u) = &j.user {
                    check_user_name("user", u, v);
                }
                if let Some(wd) = &j.working_directory {
                    check_path("workingDirectory", wd, v);
                }
                for (k, c) in j.schedule.on_calendar.iter().enumerate() {
                    v.check(format!("schedule.onCalendar[{k}]"), check_calendar(c));
                }
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
                for (field, value) in [("cwd", &c.cwd), ("creates", &c.creates)] {
                    if let Some(p) = value {
                        check_path(field, p, v);
                    }
                }
                for (k, p) in c.inputs.iter().enumerate() {
                    check_path(format!("inputs[{k}]"), p, v);
                }
                if let Some(u) = &c.user {
                    check_user_name("user", u, v);
                }
                for k in c.environment.keys() {
                    check_env_name(format!("environment.{k}"), k, v);
                }
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
                if !caddy_word(&site.host) {
                    v.err(
                        "host",
                        format!(
                            "{:?} is not a site address such as api.example.com or :8080",
                            site.host
                        ),
                    );
                }
                if let Some(root) = &site.root {
                    check_path("root", root, v);
                }
                if let Some(to) = site.reverse_proxy.as_ref().and_then(|rp| rp.to.as_ref())
                    && !caddy_word(to)
                {
                    v.err(
                        "reverseProxy.to",
                        format!("{to:?} is not an upstream address such as 127.0.0.1:4000"),
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
                let listeners: Vec<String> = self.listeners.iter().map(|l| l.to_string()).collect();
                monitors::check_monitors(&site.monitors, &listeners, true, v);
            });
        }
    }
}

/// One word of a Caddyfile: no whitespace, braces, quotes or comments, which would change
/// the file's structure.
fn caddy_word(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*' | '/' | '[' | ']')
        })
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
        "${{roots.<{}>}}, ${{storage.<{}>}}, ${{service.user}}, ${{service.unit}}, ${{service.name}}, ${{listen.<{}>}}{}",
        crate::kinds::Roots::NAMES.join("|"),
        storage.iter().cloned().collect::<Vec<_>>().join("|"),
        listeners.iter().cloned().collect::<Vec<_>>().join("|"),
        if spec.source.is_some() {
            ", ${source.current}"
        } else {
            ""
        },
    );
    walk_strings(&value, &mut String::new(), &mut |path, s| {
        for reference in find_references(s) {
            let ok = match reference.split_once('.') {
                Some(("roots", r)) => crate::kinds::Roots::NAMES.contains(&r),
                Some(("storage", s)) => storage.contains(s),
                Some(("listen", l)) => listeners.contains(l),
                Some(("service", f)) => matches!(f, "user" | "unit" | "name"),
                Some(("source", "current")) => spec.source.is_some(),
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
