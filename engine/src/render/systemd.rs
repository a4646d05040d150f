//! systemd units and timers.
//!
//! Directives are written in one fixed, documented order ([`SERVICE_ORDER`]) so that a
//! rendered unit only changes when its meaning does, and diffs stay small. Sandbox and
//! resource profiles are HostKit's (reference items 95–105).

use std::collections::BTreeMap;

use hostkit_api::kinds::{
    Isolate, Network, NetworkAccess, ResourceProfile, RestartPolicy, SandboxProfile, Schedule,
    ServiceType,
};

/// A unit being rendered: `(section, directive) → values` in insertion order per section.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Unit {
    pub unit: Vec<(&'static str, String)>,
    pub service: Vec<(&'static str, String)>,
    pub timer: Vec<(&'static str, String)>,
    pub install: Vec<(&'static str, String)>,
}

/// The order of `[Service]` directives. Anything not listed sorts after, by name.
pub const SERVICE_ORDER: &[&str] = &[
    "Type",
    "User",
    "Group",
    "WorkingDirectory",
    "EnvironmentFile",
    "Environment",
    "ExecStartPre",
    "ExecStart",
    "ExecStartPost",
    "ExecStop",
    "Restart",
    "RestartSec",
    "TimeoutStartSec",
    // sandbox
    "NoNewPrivileges",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateNetwork",
    "ProtectSystem",
    "ProtectHome",
    "ProtectClock",
    "ProtectHostname",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "LockPersonality",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "RemoveIPC",
    "SystemCallArchitectures",
    "RestrictAddressFamilies",
    "ReadWritePaths",
    // network policy
    "IPAddressDeny",
    "IPAddressAllow",
    // resources
    "MemoryMax",
    "MemoryHigh",
    "CPUQuota",
    "CPUWeight",
    "TasksMax",
    "IOWeight",
];

/// Quotes one argv word per systemd's command-line rules: `%` and `$` are doubled (so
/// no specifier or variable expansion happens), and a word with whitespace, quotes or
/// backslashes is double-quoted with `\` and `"` escaped.
pub fn quote_arg(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    let needs_quotes = escaped.is_empty()
        || escaped
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'));
    if needs_quotes {
        let mut out = String::from("\"");
        for c in escaped.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    } else {
        escaped
    }
}

/// A whole command line: each word quoted.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| quote_arg(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes an `Environment=` assignment.
pub fn environment(key: &str, value: &str) -> String {
    let assignment = format!("{key}={}", value.replace('%', "%%"));
    if assignment
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\\'))
    {
        format!(
            "\"{}\"",
            assignment.replace('\\', "\\\\").replace('"', "\\\"")
        )
    } else {
        assignment
    }
}

fn yes() -> String {
    "yes".into()
}

/// The sandbox directives of a profile.
pub fn sandbox(profile: SandboxProfile) -> Vec<(&'static str, String)> {
    let web = || {
        vec![
            ("NoNewPrivileges", yes()),
            ("PrivateTmp", yes()),
            ("PrivateDevices", yes()),
            ("ProtectSystem", "full".to_string()),
            ("ProtectHome", yes()),
            (
                "RestrictAddressFamilies",
                "AF_INET AF_INET6 AF_UNIX".to_string(),
            ),
        ]
    };
    let strict = || {
        let mut d = web();
        for (k, v) in d.iter_mut() {
            if *k == "ProtectSystem" {
                *v = "strict".to_string();
            }
        }
        d.extend([
            ("ProtectClock", yes()),
            ("ProtectHostname", yes()),
            ("ProtectKernelTunables", yes()),
            ("ProtectKernelModules", yes()),
            ("ProtectKernelLogs", yes()),
            ("ProtectControlGroups", yes()),
            ("LockPersonality", yes()),
            ("RestrictRealtime", yes()),
            ("RestrictSUIDSGID", yes()),
            ("RemoveIPC", yes()),
            ("SystemCallArchitectures", "native".to_string()),
        ]);
        d
    };
    match profile {
        SandboxProfile::WebService => web(),
        SandboxProfile::StrictWeb | SandboxProfile::StrictApp => strict(),
        SandboxProfile::Untrusted => {
            let mut d = strict();
            d.push(("PrivateNetwork", yes()));
            d
        }
        SandboxProfile::VibeDev => vec![
            ("NoNewPrivileges", yes()),
            ("PrivateTmp", yes()),
            ("ProtectSystem", "full".to_string()),
            ("RestrictSUIDSGID", yes()),
            (
                "RestrictAddressFamilies",
                "AF_INET AF_INET6 AF_UNIX".to_string(),
            ),
        ],
        SandboxProfile::None => vec![],
    }
}

/// `(MemoryMax, CPUQuota, TasksMax)` of a resource profile.
pub fn resources(profile: ResourceProfile) -> (&'static str, &'static str, u32) {
    match profile {
        ResourceProfile::Small => ("512M", "50%", 128),
        ResourceProfile::Medium => ("1G", "100%", 256),
        ResourceProfile::Large => ("2G", "200%", 512),
    }
}

/// The resources a sandbox profile implies when `isolate.resources` is not given.
fn profile_resources(profile: SandboxProfile) -> Option<(&'static str, &'static str, u32)> {
    match profile {
        SandboxProfile::StrictApp => Some(resources(ResourceProfile::Small)),
        SandboxProfile::Untrusted => Some(("1G", "100%", 256)),
        SandboxProfile::VibeDev => Some(("2G", "150%", 512)),
        _ => None,
    }
}

/// The `[Service]` directives of `isolate`. `writable` must already be paths.
pub fn isolate(isolate: &Isolate, writable: &[String]) -> Vec<(&'static str, String)> {
    let profile = isolate.profile.unwrap_or(SandboxProfile::StrictApp);
    let mut d = sandbox(profile);
    if !writable.is_empty() {
        d.push(("ReadWritePaths", writable.join(" ")));
    }
    if isolate.private_network == Some(true) && !d.iter().any(|(k, _)| *k == "PrivateNetwork") {
        d.push(("PrivateNetwork", yes()));
    }
    let (allow, deny): (Vec<String>, Vec<String>) = match &isolate.network {
        Some(Network::Access(NetworkAccess::Loopback)) => {
            (vec!["localhost".into()], vec!["any".into()])
        }
        Some(Network::Policy(p)) => {
            // Checked by the API; an entry that is not an address never reaches the unit.
            let entries = |list: Vec<&str>| -> Vec<String> {
                list.into_iter()
                    .filter_map(|e| hostkit_api::kinds::address_entry(e).ok())
                    .collect()
            };
            (
                entries(p.allow.iter().map(String::as_str).collect()),
                entries(p.deny_entries()),
            )
        }
        Some(Network::Access(NetworkAccess::Any)) | None => (Vec::new(), Vec::new()),
    };
    if !allow.is_empty() || !deny.is_empty() {
        if !deny.is_empty() {
            d.push(("IPAddressDeny", deny.join(" ")));
        }
        if !allow.is_empty() {
            d.push(("IPAddressAllow", allow.join(" ")));
        }
        if !d.iter().any(|(k, _)| *k == "RestrictAddressFamilies") {
            d.push((
                "RestrictAddressFamilies",
                "AF_INET AF_INET6 AF_UNIX".to_string(),
            ));
        }
    }
    let (mut mem, mut cpu, mut tasks) = match isolate.resources {
        Some(r) => {
            let (m, c, t) = resources(r);
            (Some(m.to_string()), Some(c.to_string()), Some(t))
        }
        None => match profile_resources(profile) {
            Some((m, c, t)) => (Some(m.to_string()), Some(c.to_string()), Some(t)),
            None => (None, None, None),
        },
    };
    if let Some(m) = &isolate.memory_max {
        mem = Some(m.clone());
    }
    if let Some(c) = &isolate.cpu_quota {
        cpu = Some(c.clone());
    }
    if let Some(t) = isolate.tasks_max {
        tasks = Some(t);
    }
    if let Some(m) = mem {
        d.push(("MemoryMax", m));
    }
    if let Some(h) = &isolate.memory_high {
        d.push(("MemoryHigh", h.clone()));
    }
    if let Some(c) = cpu {
        d.push(("CPUQuota", c));
    }
    if let Some(t) = tasks {
        d.push(("TasksMax", t.to_string()));
    }
    d
}

/// `daemon.logs` as unit directives (values validated by the API: words and plain paths).
pub fn logs(l: &hostkit_api::kinds::Logs) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(id) = &l.identifier {
        out.push(("SyslogIdentifier", id.clone()));
    }
    if let Some(o) = &l.stdout {
        out.push(("StandardOutput", o.clone()));
    }
    if let Some(e) = &l.stderr {
        out.push(("StandardError", e.clone()));
    }
    if let Some(r) = &l.rate_limit {
        out.push(("LogRateLimitIntervalSec", r.interval.as_str().to_string()));
        out.push(("LogRateLimitBurst", r.burst.to_string()));
    }
    out
}

pub fn restart(policy: RestartPolicy) -> &'static str {
    match policy {
        RestartPolicy::No => "no",
        RestartPolicy::OnSuccess => "on-success",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::OnAbnormal => "on-abnormal",
        RestartPolicy::OnWatchdog => "on-watchdog",
        RestartPolicy::OnAbort => "on-abort",
        RestartPolicy::Always => "always",
    }
}

pub fn service_type(t: ServiceType) -> &'static str {
    match t {
        ServiceType::Simple => "simple",
        ServiceType::Exec => "exec",
        ServiceType::Forking => "forking",
        ServiceType::Oneshot => "oneshot",
        ServiceType::Notify => "notify",
        ServiceType::Idle => "idle",
    }
}

/// The `[Timer]` directives of a schedule, for `unit`.
pub fn timer(schedule: &Schedule, unit: &str) -> Vec<(&'static str, String)> {
    let mut d = Vec::new();
    for c in &schedule.on_calendar {
        d.push(("OnCalendar", c.clone()));
    }
    if let Some(v) = &schedule.on_boot_sec {
        d.push(("OnBootSec", v.as_str().to_string()));
    }
    if let Some(v) = &schedule.on_active_sec {
        d.push(("OnActiveSec", v.as_str().to_string()));
    }
    if let Some(v) = &schedule.on_unit_active_sec {
        d.push(("OnUnitActiveSec", v.as_str().to_string()));
    }
    if schedule.persistent {
        d.push(("Persistent", "true".to_string()));
    }
    if let Some(v) = &schedule.randomized_delay_sec {
        d.push(("RandomizedDelaySec", v.as_str().to_string()));
    }
    d.push(("Unit", unit.to_string()));
    d
}

/// Calendar helpers for the common schedules, in `OnCalendar=` syntax.
pub mod calendar {
    pub fn hourly_at(minute: u8) -> String {
        format!("*-*-* *:{minute:02}:00")
    }
    pub fn daily_at(hour: u8, minute: u8) -> String {
        format!("*-*-* {hour:02}:{minute:02}:00")
    }
    pub fn weekly_at(day: &str, hour: u8, minute: u8) -> String {
        format!("{day} *-*-* {hour:02}:{minute:02}:00")
    }
}

impl Unit {
    /// The unit file text: sections in the order Unit, Service, Timer, Install; `[Service]`
    /// directives in [`SERVICE_ORDER`]; repeated directives keep their relative order.
    ///
    /// Refuses a value the format cannot hold as one directive (defence in depth behind
    /// validation): a control character (a line break would start a new directive) or a
    /// trailing backslash (it would continue the value onto the next line).
    pub fn render(&self) -> Result<String, String> {
        for (k, v) in self
            .unit
            .iter()
            .chain(&self.service)
            .chain(&self.timer)
            .chain(&self.install)
        {
            if let Some(c) = v.chars().find(|c| *c != '\t' && c.is_control()) {
                return Err(format!("{k}= would hold the control character {c:?}"));
            }
            if v.ends_with('\\') {
                return Err(format!(
                    "{k}= would end with a backslash and continue onto the next line"
                ));
            }
        }
        let mut out = String::from("# Managed by HostKit. Local edits are reported as drift.\n");
        let mut section = |name: &str, items: &[(&'static str, String)], order: Option<&[&str]>| {
            if items.is_empty() {
                return;
            }
            out.push_str(&format!("\n[{name}]\n"));
            let mut items: Vec<(usize, &(&'static str, String))> =
                items.iter().enumerate().collect();
            if let Some(order) = order {
                let rank = |k: &str| order.iter().position(|o| *o == k).unwrap_or(order.len());
                items.sort_by(|(ia, a), (ib, b)| {
                    (
                        rank(a.0),
                        if rank(a.0) == order.len() { a.0 } else { "" },
                        *ia,
                    )
                        .cmp(&(
                            rank(b.0),
                            if rank(b.0) == order.len() { b.0 } else { "" },
                            *ib,
                        ))
                });
            }
            for (_, (k, v)) in items {
                out.push_str(&format!("{k}={v}\n"));
            }
        };
        section("Unit", &self.unit, None);
        section("Service", &self.service, Some(SERVICE_ORDER));
        section("Timer", &self.timer, None);
        section("Install", &self.install, None);
        Ok(out)
    }
}

/// Groups `(key, value)` pairs for tests and callers that want a map view.
pub fn directives(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines() {
        if let Some((k, v)) = line.split_once('=')
            && !line.starts_with('#')
        {
            map.entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_quoted_per_systemd_rules() {
        assert_eq!(quote_arg("/usr/bin/env"), "/usr/bin/env");
        assert_eq!(quote_arg("a b"), "\"a b\"");
        assert_eq!(quote_arg("Api.Release.migrate()"), "Api.Release.migrate()");
        assert_eq!(quote_arg("100%"), "100%%");
        assert_eq!(quote_arg("$HOME"), "$$HOME");
        assert_eq!(quote_arg("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(quote_arg(""), "\"\"");
        assert_eq!(environment("A", "x y"), "\"A=x y\"");
    }

    #[test]
    fn strict_app_is_strict_web_plus_small_resources() {
        let d = isolate(&Isolate::default(), &[]);
        let keys: Vec<&str> = d.iter().map(|(k, _)| *k).collect();
        for k in [
            "ProtectSystem",
            "RestrictSUIDSGID",
            "RemoveIPC",
            "ProtectClock",
        ] {
            assert!(keys.contains(&k), "{k} missing");
        }
        assert!(d.contains(&("ProtectSystem", "strict".into())));
        assert!(d.contains(&("MemoryMax", "512M".into())));
        assert!(d.contains(&("CPUQuota", "50%".into())));
        assert!(d.contains(&("TasksMax", "128".into())));
        let web = sandbox(SandboxProfile::WebService);
        assert!(web.contains(&("ProtectSystem", "full".into())));
        assert!(!web.iter().any(|(k, _)| *k == "RemoveIPC"));
        assert!(sandbox(SandboxProfile::None).is_empty());
        let untrusted = isolate(
            &Isolate {
                profile: Some(SandboxProfile::Untrusted),
                ..Default::default()
            },
            &[],
        );
        assert!(untrusted.contains(&("PrivateNetwork", "yes".into())));
        assert!(untrusted.contains(&("MemoryMax", "1G".into())));
    }

    #[test]
    fn loopback_network_denies_everything_but_localhost() {
        let d = isolate(
            &Isolate {
                network: Some(Network::Access(NetworkAccess::Loopback)),
                memory_max: Some("256M".into()),
                resources: Some(ResourceProfile::Large),
                ..Default::default()
            },
            &["/srv/a".into()],
        );
        assert!(d.contains(&("IPAddressDeny", "any".into())));
        assert!(d.contains(&("IPAddressAllow", "localhost".into())));
        assert!(
            d.contains(&("MemoryMax", "256M".into())),
            "override wins over profile"
        );
        assert!(d.contains(&("CPUQuota", "200%".into())));
        assert!(d.contains(&("ReadWritePaths", "/srv/a".into())));
    }

    #[test]
    fn service_directives_follow_the_documented_order() {
        let unit = Unit {
            unit: vec![("Description", "x".into())],
            service: vec![
                ("MemoryMax", "1G".into()),
                ("ExecStart", "/bin/true".into()),
                ("Zeta", "1".into()),
                ("User", "a".into()),
                ("Alpha", "1".into()),
            ],
            install: vec![("WantedBy", "multi-user.target".into())],
            ..Default::default()
        };
        let text = unit.render().unwrap();
        let order: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        assert_eq!(
            order,
            [
                "Description",
                "User",
                "ExecStart",
                "MemoryMax",
                "Alpha",
                "Zeta",
                "WantedBy"
            ]
        );
    }

    #[test]
    fn calendar_helpers() {
        assert_eq!(calendar::hourly_at(5), "*-*-* *:05:00");
        assert_eq!(calendar::daily_at(3, 30), "*-*-* 03:30:00");
        assert_eq!(calendar::weekly_at("Mon", 4, 0), "Mon *-*-* 04:00:00");
    }

    #[test]
    fn a_value_that_would_add_or_join_a_line_is_refused() {
        for bad in [
            "harmless\n[Service]\nExecStartPre=+/bin/id",
            "a\rb",
            "x\u{0}",
            "ends with \\",
        ] {
            let u = Unit {
                unit: vec![("Description", bad.to_string())],
                ..Default::default()
            };
            assert!(u.render().is_err(), "{bad:?}");
        }
        let tab = Unit {
            unit: vec![("Description", "a\tb".to_string())],
            ..Default::default()
        };
        assert!(tab.render().is_ok(), "a tab is only whitespace");
    }
}
