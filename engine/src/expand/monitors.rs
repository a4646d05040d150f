//! A Service's `monitors` (and its Caddy sites') as [`Probe`]s: references filled in, a
//! listener turned into the address to request, the daemon's user and sandbox for a
//! command, the file where the apply's start leaves a unit's restart count.

use hostkit_api::kinds::{CaddySite, Monitor, monitor_names};

use super::service::Expander;
use super::*;
use crate::monitor::Probe;

/// Where the apply's start records a unit's `NRestarts` (its mtime is when it started).
pub fn restarts_file(unit: &str) -> String {
    format!("{STATE_DIR}/restarts/{unit}")
}

/// The monitors of one Service, in the order its spec lists them (the Service's own, then
/// each Caddy site's, named `site/monitor`).
pub fn monitors(
    name: &str,
    spec: &ServiceSpec,
    project: Option<&ProjectSpec>,
) -> Result<Vec<crate::monitor::Probe>> {
    let e = Expander::new(name, spec, project);
    let mut out = Vec::new();
    for (m, n) in spec.monitors.iter().zip(monitor_names(&spec.monitors)) {
        out.push(probe(&e, m, n, None, "spec.monitors")?);
    }
    for site in &spec.caddy_sites {
        for (m, n) in site.monitors.iter().zip(monitor_names(&site.monitors)) {
            let n = format!("{}/{n}", site.name);
            out.push(probe(&e, m, n, Some(site), "spec.caddySites.monitors")?);
        }
    }
    Ok(out)
}

/// The address a host reaches a listener at: its own, with a wildcard made loopback.
fn listener_address(e: &Expander<'_>, listener: Option<&str>, field: &str) -> Result<String> {
    let listeners: Vec<&str> = e
        .spec
        .daemon
        .iter()
        .flat_map(|d| d.listen.iter().map(|l| l.name.as_str()))
        .collect();
    let name = match (listener, listeners.as_slice()) {
        (Some(l), _) => l,
        (None, [only]) => only,
        _ => {
            return Err(e.invalid(
                field,
                format!("name one of the listeners: {}", listeners.join(", ")),
            ));
        }
    };
    let address = e.x(&format!("${{listen.{name}}}"))?;
    Ok(address
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "[::1]:"))
}

/// `host:port` of an http(s) URL, for curl's `--resolve`.
fn url_authority(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default = if scheme == "https" { 443 } else { 80 };
    match authority.rsplit_once(':') {
        Some((h, p)) if !authority.ends_with(']') => Some((h.to_string(), p.parse().ok()?)),
        _ => Some((authority.to_string(), default)),
    }
}

fn probe(
    e: &Expander<'_>,
    m: &Monitor,
    name: String,
    site: Option<&CaddySite>,
    field: &str,
) -> Result<Probe> {
    let kind = m
        .kind()
        .ok_or_else(|| e.invalid(field, format!("{name}: a monitor has exactly one kind")))?;
    let timeout = m.timeout();
    let args: Vec<String> = if let Some(s) = &m.systemd {
        let unit = e.x(&s.unit)?;
        vec![
            unit.clone(),
            s.expect.clone().unwrap_or_else(|| "active".into()),
            s.sub_state.clone().unwrap_or_default(),
            s.max_restarts.map(|n| n.to_string()).unwrap_or_default(),
            restarts_file(&unit),
        ]
    } else if let Some(h) = &m.http {
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let url = match (&h.url, &h.listener, site) {
            (Some(url), _, _) => e.x(url)?,
            (None, None, Some(site)) => format!("https://{}{path}", site.host),
            (None, l, _) => format!("http://{}{path}", listener_address(e, l.as_deref(), field)?),
        };
        // A site's monitor checks this host's Caddy, not whatever the name resolves to.
        let resolve = match (site, url_authority(&url)) {
            (Some(site), Some((host, port))) if host == site.host => {
                format!("{host}:{port}:127.0.0.1")
            }
            _ => String::new(),
        };
        vec![
            url,
            h.expect_status.unwrap_or(200).to_string(),
            h.body.clone().unwrap_or_default(),
            resolve,
            timeout.as_secs().max(1).to_string(),
        ]
    } else if let Some(t) = &m.tcp {
        let address = match &t.address {
            Some(a) => e.x(a)?,
            None => listener_address(e, t.listener.as_deref(), field)?,
        };
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| e.invalid(field, format!("{address:?} is not host:port")))?;
        vec![
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port.to_string(),
        ]
    } else if let Some(f) = &m.file {
        let mode = match &f.mode {
            Some(m) => hostkit_api::values::FileMode::parse(m)
                .map_err(|why| e.invalid(format!("{field}.file.mode"), why))?
                .0
                .to_string(),
            None => String::new(),
        };
        vec![
            e.x(&f.path)?,
            mode,
            f.max_age
                .as_ref()
                .map(|d| d.as_std().as_secs().to_string())
                .unwrap_or_default(),
        ]
    } else if let Some(c) = &m.command {
        let mut args = vec![
            c.expect_exit.unwrap_or(0).to_string(),
            timeout.as_secs().max(1).to_string(),
            e.user().unwrap_or_default(),
        ];
        if let Some(iso) = e.spec.daemon.as_ref().and_then(|d| d.isolate.as_ref()) {
            let writable = e.writable(iso)?;
            for (k, v) in systemd::isolate(iso, &writable) {
                args.push("-p".into());
                args.push(format!("{k}={v}"));
            }
        }
        args.push("--".into());
        for a in &c.exec {
            args.push(e.x(a)?);
        }
        args
    } else if let Some(j) = &m.journal {
        let unit = match &j.unit {
            Some(u) => e.x(u)?,
            None if e.spec.daemon.is_some() => e.c.daemon_unit(e.name, e.spec),
            None => {
                return Err(e.invalid(
                    format!("{field}.journal.unit"),
                    "this service has no daemon: name the unit whose journal to read".into(),
                ));
            }
        };
        vec![unit.clone(), j.pattern.clone(), restarts_file(&unit)]
    } else if let Some(p) = &m.prometheus {
        vec![p.query.clone(), p.url.clone().unwrap_or_default()]
    } else {
        return Err(e.invalid(field, format!("{name}: a monitor has exactly one kind")));
    };
    Ok(Probe {
        name,
        kind,
        severity: m.severity(),
        timeout,
        every: m.every(),
        failure_threshold: m.failure_threshold(),
        success_threshold: m.success_threshold(),
        args,
    })
}
