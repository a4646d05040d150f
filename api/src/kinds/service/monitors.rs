//! `monitors` (on a Service and on each Caddy site): health checks the controller runs on
//! every host the Service is on, what their results look like in status, and the checks
//! that keep each field in the shape its shell snippet expects.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Time;
use crate::validate::{Validator, check_argv, check_path, check_unit_name};
use crate::values::{Duration, FileMode};

/// How much a failing monitor matters: a `critical` one (the default) makes the Service
/// unhealthy; a `warning` one is reported (status, events, metrics) but does not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    #[default]
    Critical,
}

/// One health check; exactly one of `systemd`, `http`, `tcp`, `file`, `command`, `journal`
/// (each runs on the host, inside the reconcile's state read: no extra connection) or
/// `prometheus` (the controller asks a Prometheus, once per pass, for every host), with
/// the Kubernetes probe semantics for `failureThreshold` and `successThreshold`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Monitor {
    /// The name in status, events and metrics; by default the kind (`http`), or the kind
    /// and its position (`http-2`) when the kind appears more than once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<SystemdMonitor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMonitor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpMonitor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileMonitor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandMonitor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalMonitor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMonitor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// How often it runs between the Service's reconciles (default 10s); each reconcile
    /// runs it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
    /// How long one run may take before it counts as a failure (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Consecutive failures before it reports failing (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    /// Consecutive successes before it reports passing again (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
}

/// A unit's state: `ActiveState` (and `SubState`), and restarts since the last apply
/// started it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemdMonitor {
    pub unit: String,
    /// Expected `ActiveState`, default `active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Expected `SubState` (`running`, `waiting`…), if it matters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_state: Option<String>,
    /// Restarts (systemd's `NRestarts`) since the last apply started the unit, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
}

/// An HTTP request made on the host (with its `curl`): to `url`, or to a listener of the
/// Service (`listener`, default its only one) at `path`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMonitor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// The path on the listener, default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Default 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    /// A substring the response body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// A TCP connect from the host: to a listener of the Service (default its only one) or to
/// `address` (`host:port`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpMonitor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// A path that must exist, optionally with a mode and no older than `maxAge`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileMonitor {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

/// A command run as the Service's user with the daemon's sandbox (a transient unit), which
/// must exit with `expectExit` (default 0).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandMonitor {
    pub exec: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_exit: Option<i32>,
}

/// No journal line of `unit` (default the daemon's) matching the extended regular
/// expression `pattern` since the last apply started the unit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JournalMonitor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub pattern: String,
}

/// A PromQL expression that must hold (a non-empty vector or a non-zero scalar), asked of
/// `url` or of `hostkit serve --prometheus-url` by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusMonitor {
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Monitor {
    pub const KINDS: [&'static str; 7] = [
        "systemd",
        "http",
        "tcp",
        "file",
        "command",
        "journal",
        "prometheus",
    ];

    /// The kind this monitor is (the one section it sets), if exactly one is set.
    pub fn kind(&self) -> Option<&'static str> {
        let set = [
            self.systemd.is_some(),
            self.http.is_some(),
            self.tcp.is_some(),
            self.file.is_some(),
            self.command.is_some(),
            self.journal.is_some(),
            self.prometheus.is_some(),
        ];
        match set.iter().filter(|s| **s).count() {
            1 => set.iter().position(|s| *s).map(|i| Monitor::KINDS[i]),
            _ => None,
        }
    }

    pub fn severity(&self) -> Severity {
        self.severity.unwrap_or_default()
    }

    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold.unwrap_or(3)
    }

    pub fn success_threshold(&self) -> u32 {
        self.success_threshold.unwrap_or(1)
    }

    pub fn every(&self) -> std::time::Duration {
        self.every
            .as_ref()
            .map(|d| d.as_std())
            .unwrap_or(std::time::Duration::from_secs(10))
    }

    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
            .as_ref()
            .map(|d| d.as_std())
            .unwrap_or(std::time::Duration::from_secs(5))
    }
}

/// The names of a list of monitors, explicit or defaulted (`http`, or `http-2` for the
/// second of two).
pub fn monitor_names(monitors: &[Monitor]) -> Vec<String> {
    monitors
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if let Some(n) = &m.name {
                return n.clone();
            }
            let kind = m.kind().unwrap_or("monitor");
            let same = monitors.iter().filter(|o| o.kind() == m.kind()).count();
            if same > 1 {
                let nth = monitors[..=i]
                    .iter()
                    .filter(|o| o.kind() == m.kind())
                    .count();
                format!("{kind}-{nth}")
            } else {
                kind.to_string()
            }
        })
        .collect()
}

/// What the last runs of one monitor on one host found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitorStatus {
    pub name: String,
    pub kind: String,
    pub severity: Severity,
    /// `None` until it passed `successThreshold` times or failed `failureThreshold` times
    /// in a row (or when the host could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    pub message: String,
    /// When `ok` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<Time>,
    /// Consecutive results like the last one.
    #[serde(default)]
    pub streak: u32,
    /// Whether the last run passed.
    #[serde(default)]
    pub last_ok: bool,
}

fn positive(field: &str, d: &Option<Duration>, v: &mut Validator) {
    if let Some(d) = d
        && d.as_std().is_zero()
    {
        v.err(field, "must be longer than 0s");
    }
}

/// A word a unit property holds (`active`, `running`): letters, digits and `-`.
fn state_word(field: &str, value: &Option<String>, v: &mut Validator) {
    if let Some(s) = value
        && (s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        v.err(
            field,
            format!("{s:?} is not a unit state: letters, digits and '-' (e.g. active, running)"),
        );
    }
}

/// `host:port` with a port in 1..=65535 and a host of letters, digits, `.`, `-`, `:`.
fn host_port(text: &str) -> Result<(), String> {
    let bad = || format!("{text:?} is not host:port (e.g. 127.0.0.1:8080)");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        || !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(bad());
    }
    Ok(())
}

/// `listeners`: the Service's listener names, which `listener:` may name. On a Caddy site
/// (`site`), an `http` monitor without `url` or `listener` requests the site itself.
pub(super) fn check_monitors(
    monitors: &[Monitor],
    listeners: &[String],
    site: bool,
    v: &mut Validator,
) {
    let names = monitor_names(monitors);
    for (i, m) in monitors.iter().enumerate() {
        v.index("monitors", i, |v| check_monitor(m, listeners, site, v));
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            v.err(
                format!("monitors[{i}].name"),
                format!("{n:?} names two monitors; give each a distinct name"),
            );
        }
    }
}

/// A PromQL query (one line) and the Prometheus to ask (an http(s) URL), as a
/// `prometheus` monitor or a rollout analysis names them.
pub(super) fn check_prometheus(query: &str, url: Option<&str>, v: &mut Validator) {
    if query.trim().is_empty() || query.chars().any(|c| c.is_control()) {
        v.err("prometheus.query", "one line of PromQL");
    }
    if let Some(u) = url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        v.err(
            "prometheus.url",
            format!("{u:?} is not an http:// or https:// URL"),
        );
    }
}

fn check_monitor(m: &Monitor, listeners: &[String], site: bool, v: &mut Validator) {
    if m.kind().is_none() {
        v.err(
            "",
            format!("a monitor has exactly one of {}", Monitor::KINDS.join(", ")),
        );
    }
    if let Some(n) = &m.name
        && (n.is_empty()
            || n.len() > 63
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        v.err(
            "name",
            format!("{n:?}: 1 to 63 letters, digits, '-', '_' or '.'"),
        );
    }
    positive("every", &m.every, v);
    positive("timeout", &m.timeout, v);
    if m.timeout
        .as_ref()
        .is_some_and(|t| t.as_std().as_secs() > 300)
    {
        v.err(
            "timeout",
            "at most 5m: a monitor runs inside the state read",
        );
    }
    for (field, n) in [
        ("failureThreshold", m.failure_threshold),
        ("successThreshold", m.success_threshold),
    ] {
        if n == Some(0) {
            v.err(field, "at least 1");
        }
    }
    let listener = |field: &str, l: &Option<String>, v: &mut Validator| match l {
        Some(l) if !listeners.contains(l) => v.err(
            field,
            format!(
                "{l:?} is not a listener of this service; its listeners: {}",
                if listeners.is_empty() {
                    "none".to_string()
                } else {
                    listeners.join(", ")
                }
            ),
        ),
        None if listeners.len() != 1 => v.err(
            field,
            format!(
                "name the listener to check (this service has {}), or give {}",
                listeners.len(),
                if field.starts_with("http") {
                    "url"
                } else {
                    "address"
                }
            ),
        ),
        _ => {}
    };
    if let Some(s) = &m.systemd {
        v.check("systemd.unit", check_unit_name(&s.unit));
        state_word("systemd.expect", &s.expect, v);
        state_word("systemd.subState", &s.sub_state, v);
    }
    if let Some(h) = &m.http {
        match &h.url {
            Some(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://"))
                    || url.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    v.err(
                        "http.url",
                        format!("{url:?} is not an http:// or https:// URL"),
                    );
                }
                if h.listener.is_some() || h.path.is_some() {
                    v.err("http", "url, or listener and path: not both");
                }
            }
            None if site && h.listener.is_none() => {}
            None => listener("http.listener", &h.listener, v),
        }
        if let Some(p) = &h.path
            && (!p.starts_with('/') || p.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            v.err("http.path", format!("{p:?} is not a URL path (/health)"));
        }
        if let Some(s) = h.expect_status
            && !(100..=599).contains(&s)
        {
            v.err("http.expectStatus", format!("{s} is not an HTTP status"));
        }
        if let Some(b) = &h.body
            && (b.is_empty() || b.contains('\n'))
        {
            v.err("http.body", "one line of text the body must contain");
        }
    }
    if let Some(t) = &m.tcp {
        match &t.address {
            Some(a) => {
                v.check("tcp.address", host_port(a));
                if t.listener.is_some() {
                    v.err("tcp", "address or listener: not both");
                }
            }
            None => listener("tcp.listener", &t.listener, v),
        }
    }
    if let Some(f) = &m.file {
        check_path("file.path", &f.path, v);
        if let Some(mode) = &f.mode
            && let Err(e) = FileMode::parse(mode)
        {
            v.err("file.mode", e);
        }
        positive("file.maxAge", &f.max_age, v);
    }
    if let Some(c) = &m.command {
        check_argv("command.exec", &c.exec, v);
    }
    if let Some(p) = &m.prometheus {
        check_prometheus(&p.query, p.url.as_deref(), v);
    }
    if let Some(j) = &m.journal {
        if let Some(u) = &j.unit {
            v.check("journal.unit", check_unit_name(u));
        }
        if j.pattern.is_empty() || j.pattern.contains('\n') {
            v.err(
                "journal.pattern",
                "one line: an extended regular expression (grep -E)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str, listeners: &[&str]) -> Vec<String> {
        let monitors: Vec<Monitor> = serde_saphyr::from_str(yaml).unwrap();
        let listeners: Vec<String> = listeners.iter().map(|s| s.to_string()).collect();
        let mut v = Validator::default();
        check_monitors(&monitors, &listeners, false, &mut v);
        v.into_errors().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn default_names_are_the_kind_or_the_kind_and_its_place() {
        let monitors: Vec<Monitor> = serde_saphyr::from_str(
            "[{http: {listener: a}}, {systemd: {unit: x.service}}, {http: {url: 'http://h/'}}, {name: mine, tcp: {}}]",
        )
        .unwrap();
        assert_eq!(
            monitor_names(&monitors),
            ["http-1", "systemd", "http-2", "mine"]
        );
    }

    #[test]
    fn every_field_is_checked_for_the_snippet_it_lands_in() {
        let e = errors(
            r#"
- {systemd: {unit: "x.service; rm -rf /", expect: "act ive"}}
- {http: {listener: nope, path: "no-slash", expectStatus: 700}}
- {tcp: {address: "host"}}
- {file: {path: relative, mode: "999"}, failureThreshold: 0}
- {command: {exec: []}, timeout: 10m}
- {journal: {pattern: ""}}
- {http: {url: "http://a/"}, tcp: {address: "a:1"}}
- {name: x, http: {url: "ftp://a"}}
- {name: x, tcp: {listener: web}}
"#,
            &["web"],
        );
        let text = e.join("\n");
        for want in [
            "monitors[0].systemd.unit",
            "monitors[0].systemd.expect",
            "monitors[1].http.listener: \"nope\" is not a listener of this service; its listeners: web",
            "monitors[1].http.path",
            "monitors[1].http.expectStatus",
            "monitors[2].tcp.address",
            "monitors[3].file.path",
            "monitors[3].file.mode",
            "monitors[3].failureThreshold",
            "monitors[4].command.exec",
            "monitors[4].timeout",
            "monitors[5].journal.pattern",
            "monitors[6]: a monitor has exactly one of systemd, http, tcp, file, command, journal, prometheus",
            "monitors[7].http.url",
            "monitors[8].name: \"x\" names two monitors",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn a_listener_is_needed_when_the_service_has_several() {
        let e = errors("[{http: {path: /health}}]", &["a", "b"]);
        assert!(
            e[0].contains("name the listener to check (this service has 2), or give url"),
            "{e:?}"
        );
        assert!(errors("[{http: {path: /health}}]", &["a"]).is_empty());
    }
}
