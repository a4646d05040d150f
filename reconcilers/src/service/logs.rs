//! `hkctl logs service/NAME`: the journal of a Service's units on its hosts, read by the
//! controller over SSH (the client needs no SSH credentials), several hosts merged as their
//! lines come, each prefixed `[host]` as `kubectl logs --prefix` does.
//!
//! Nothing a client sends reaches the host's shell as text: the units are the Service's
//! own (a `--unit` that is not one of them is refused), the time is a number, the host is
//! one the Service selects.

use std::time::Duration;

use hostkit_api::kinds::{ProjectSpec, ServiceSpec};
use hostkit_engine::secrets::Secrets;
use hostkit_engine::transport::sh_quote;
use hostkit_engine::transport::ssh::Ssh;
use tokio::sync::mpsc;

use crate::{Context, Error, Result};

/// What to read.
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    /// Only this host.
    pub host: Option<String>,
    /// Keep reading new lines (`journalctl -f`).
    pub follow: bool,
    /// Only lines newer than this.
    pub since: Option<Duration>,
    /// The last this many lines of each host (default 100).
    pub tail: Option<u32>,
    /// One unit: its name, or the name of one of the Service's jobs.
    pub unit: Option<String>,
}

/// The Service's service units (daemon and jobs), as the host knows them.
fn units_of(name: &str, spec: &ServiceSpec, project: Option<&ProjectSpec>) -> Vec<String> {
    let c = hostkit_engine::naming::Conventions::new(project);
    spec.daemon
        .iter()
        .map(|_| c.daemon_unit(name, spec))
        .chain(
            spec.jobs
                .iter()
                .map(|j| c.unit(name, None, Some(&j.name), ".service")),
        )
        .collect()
}

/// The journalctl command for `units` (already checked to be the Service's own).
fn journal_command(units: &[String], q: &LogQuery, now: chrono::DateTime<chrono::Utc>) -> String {
    let mut cmd = String::from("exec journalctl --no-pager --quiet -o short-iso");
    for u in units {
        cmd.push_str(" -u ");
        cmd.push_str(&sh_quote(u));
    }
    cmd.push_str(&format!(" -n {}", q.tail.unwrap_or(100)));
    if let Some(since) = q.since {
        let at = now - chrono::Duration::from_std(since).unwrap_or(chrono::Duration::zero());
        cmd.push_str(&format!(" --since @{}", at.timestamp()));
    }
    if q.follow {
        cmd.push_str(" -f");
    }
    cmd.push('\n');
    cmd
}

/// Starts reading; the lines arrive on the receiver, which ends when every host's reader
/// has (at once without `follow`; when the client goes away with it).
pub async fn logs(ctx: &dyn Context, name: &str, q: &LogQuery) -> Result<mpsc::Receiver<String>> {
    let svc = ctx.fetch::<ServiceSpec>(name).await?;
    let project = match &svc.spec.project {
        Some(p) => Some(ctx.fetch::<ProjectSpec>(p).await?.spec),
        None => None,
    };
    let all = units_of(name, &svc.spec, project.as_ref());
    let units = match &q.unit {
        None => all.clone(),
        Some(u) => {
            let job_unit = |job: &str| {
                hostkit_engine::naming::Conventions::new(project.as_ref()).unit(
                    name,
                    None,
                    Some(job),
                    ".service",
                )
            };
            let wanted = if all.contains(u) {
                u.clone()
            } else {
                job_unit(u)
            };
            if !all.contains(&wanted) {
                return Err(Error::Invalid {
                    object: format!("Service/{name}"),
                    field: "unit".into(),
                    message: format!(
                        "{u:?} is not one of its units or jobs; its units: {}",
                        all.join(", ")
                    ),
                });
            }
            vec![wanted]
        }
    };
    if units.is_empty() {
        return Err(Error::Invalid {
            object: format!("Service/{name}"),
            field: "spec".into(),
            message: "it runs no unit (no daemon, no job): there is no journal to read".into(),
        });
    }
    let secrets = Secrets::keyed();
    let targets =
        super::live_plan::ssh_targets(ctx, name, &svc.spec, q.host.as_deref(), &secrets).await?;
    if targets.is_empty() {
        return Err(Error::Invalid {
            object: format!("Service/{name}"),
            field: "host".into(),
            message: "selects no Host".into(),
        });
    }
    let command = journal_command(&units, q, ctx.now());
    let (tx, rx) = mpsc::channel(256);
    for opts in targets {
        let tx = tx.clone();
        let command = command.clone();
        tokio::spawn(async move {
            let host = opts.name.clone();
            let (lines, mut from_host) = mpsc::channel::<String>(64);
            let reader = async {
                let ssh = Ssh::connect(&opts).await?;
                ssh.stream_lines(&command, lines).await
            };
            // Ends when the host's reader ends, or at once when the client goes away
            // (which closes the SSH channel; journalctl on the host ends at its next line).
            // `move`: the receiver goes with it, so its end is seen by the reader.
            let prefix = host.clone();
            let errors = tx.clone();
            let forward = async move {
                loop {
                    tokio::select! {
                        line = from_host.recv() => match line {
                            Some(line) => {
                                if tx.send(format!("[{prefix}] {line}")).await.is_err() {
                                    return;
                                }
                            }
                            None => return,
                        },
                        _ = tx.closed() => return,
                    }
                }
            };
            let (read, ()) = tokio::join!(reader, forward);
            if let Err(e) = read {
                let _ = errors.send(format!("[{host}] error: {e}")).await;
            }
        });
    }
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_command_quotes_units_and_takes_only_numbers_from_the_query() {
        let q = LogQuery {
            follow: true,
            since: Some(Duration::from_secs(3600)),
            tail: Some(5),
            ..Default::default()
        };
        let now = chrono::DateTime::from_timestamp(1_000_000, 0).unwrap();
        let cmd = journal_command(&["web.service".into(), "a b;$(x).service".into()], &q, now);
        assert_eq!(
            cmd,
            "exec journalctl --no-pager --quiet -o short-iso -u web.service -u 'a b;$(x).service' -n 5 --since @996400 -f\n"
        );
    }
}
