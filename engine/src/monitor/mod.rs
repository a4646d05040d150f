//! Monitors on a host: a Service's `monitors` resolved to [`Probe`]s (each a call of one
//! shell snippet with its arguments), run inside the state read's single round trip (or
//! alone, between reconciles), and what each run found.

use std::time::Duration;

use base64::Engine;
use hostkit_api::kinds::Severity;

use crate::transport::Transport;
use crate::{Error, Result};

mod script;

pub use script::script;

/// One monitor of one Service, ready to run on a host.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// Unique within the Service (`http`, `http-2`, `api/http` for a Caddy site's).
    pub name: String,
    /// `systemd`, `http`, `tcp`, `file`, `command`, `journal` (run on the host) or
    /// `prometheus` (asked by the controller; `args` are the query and the url).
    pub kind: &'static str,
    pub severity: Severity,
    pub timeout: Duration,
    pub every: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    /// The snippet's arguments, in the order [`script`] passes them.
    pub args: Vec<String>,
}

impl Probe {
    /// Whether the host runs it (all but `prometheus`, which the controller asks).
    pub fn on_host(&self) -> bool {
        self.kind != "prometheus"
    }
}

/// What one run of a probe found.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    pub name: String,
    pub ok: bool,
    /// One line: what was seen (`hello.service is active/running`, `GET …: 500, want 200`).
    pub message: String,
    pub duration: Duration,
}

/// Longest message kept from a probe's output (a status field, not a log).
const MAX_MESSAGE: usize = 300;

/// Reads the `M` records of a script's output, one result per probe the host runs; a
/// probe without one (the script was cut short) is a failure that says so.
pub fn parse(probes: &[Probe], out: &str) -> Vec<ProbeResult> {
    let mut found: Vec<Option<ProbeResult>> = vec![None; probes.len()];
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let ["M", index, rc, ms, message] = f.as_slice() else {
            continue;
        };
        let Some(i) = index.parse::<usize>().ok().filter(|i| *i < probes.len()) else {
            continue;
        };
        let text = base64::engine::general_purpose::STANDARD
            .decode(message)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut message: String = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let ok = *rc == "0";
        if message.is_empty() {
            message = if ok {
                "passed".into()
            } else {
                format!("failed (exit {rc})")
            };
        }
        found[i] = Some(ProbeResult {
            name: probes[i].name.clone(),
            ok,
            message,
            duration: Duration::from_millis(ms.parse().unwrap_or(0)),
        });
    }
    found
        .into_iter()
        .zip(probes)
        .filter(|(_, p)| p.on_host())
        .map(|(r, p)| {
            r.unwrap_or_else(|| ProbeResult {
                name: p.name.clone(),
                ok: false,
                message: "no result: the host's script ended before this monitor ran".into(),
                duration: Duration::ZERO,
            })
        })
        .collect()
}

/// Runs only the probes, in one round trip (the monitors' own `every` between reconciles).
pub async fn run(transport: &dyn Transport, probes: &[Probe]) -> Result<Vec<ProbeResult>> {
    if !probes.iter().any(Probe::on_host) {
        return Ok(Vec::new());
    }
    let out = transport.run(&script(probes)).await?;
    if out.status != 0 && !out.stdout_text().contains("M\t") {
        return Err(Error::Read {
            host: transport.host().into(),
            message: format!("the monitors did not run: {}", out.stderr_text().trim()),
        });
    }
    Ok(parse(probes, &out.stdout_text()))
}
