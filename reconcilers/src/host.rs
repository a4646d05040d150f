//! The Host reconciler's logic: connect, read facts, keep `Reachable`/`Ready` and
//! `lastSeen`, and plan and apply the host's own resources (firewall, bootstrap packages,
//! runtimes) like a service's.

use chrono::{DateTime, Utc};
use hostkit_api::kinds::{Firewall, HostFacts, HostSpec, HostStatus, PolicyWindowSpec};
use hostkit_api::meta::{Condition, ConditionStatus, find_condition, set_condition};

use crate::apply::{self, ApplyOptions};
use crate::plan;
use crate::secrets::Secrets;
use crate::service::{Failure, Hosts, Note};
use crate::{Error, expand, windows};

/// `status.lastSeen` moves at most this often (seconds).
pub const LAST_SEEN_EVERY_SECS: i64 = 60;

pub struct Input<'a> {
    pub name: &'a str,
    pub spec: &'a HostSpec,
    pub generation: i64,
    pub status: HostStatus,
    /// Firewalls of the Projects whose services run here.
    pub project_firewalls: Vec<(String, Firewall)>,
    /// Windows apply to the host's own resources when they select the host and no
    /// particular services.
    pub windows: &'a [(String, PolicyWindowSpec)],
    /// Host labels, for window selectors.
    pub labels: &'a std::collections::BTreeMap<String, String>,
    pub now: DateTime<Utc>,
    pub secrets: &'a Secrets,
    pub settle: std::time::Duration,
    /// Plan and report, but apply nothing (a rollback of this host is running).
    pub hold: Option<String>,
    /// Resource ids a Rollback with `only` put back: left out of plans until the spec
    /// changes, so that the next reconcile does not re-apply what was rolled back.
    pub held: Vec<String>,
}

pub struct Outcome {
    pub status: HostStatus,
    pub notes: Vec<Note>,
    pub reachable: bool,
    pub failure: Option<Failure>,
    /// When a window that holds the host's changes opens or closes.
    pub wake_at: Option<DateTime<Utc>>,
    /// An apply of new desired resources, for the host's history (corrective applies are
    /// not history).
    pub run: Option<crate::history::Run>,
    /// Digest of the desired resources.
    pub digest: String,
}

fn set(
    status: &mut HostStatus,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
    generation: i64,
) {
    let c = Condition::observed(type_, ok, reason, message, now, Some(generation));
    set_condition(&mut status.conditions, c);
}

pub async fn reconcile(input: Input<'_>, hosts: &dyn Hosts) -> Outcome {
    let (now, generation) = (input.now, input.generation);
    let mut status = input.status.clone();
    status.observed_generation = Some(generation);
    let was_reachable =
        find_condition(&status.conditions, "Reachable").map(|c| c.status == ConditionStatus::True);
    let mut notes = Vec::new();
    let fail = |mut status: HostStatus,
                mut notes: Vec<Note>,
                message: String,
                terminal: bool,
                reachable: bool| {
        if !reachable {
            set(
                &mut status,
                "Reachable",
                false,
                "Unreachable",
                message.clone(),
                now,
                generation,
            );
            if was_reachable != Some(false) {
                notes.push(Note {
                    warning: true,
                    reason: "Unreachable",
                    message: message.clone(),
                });
            }
        }
        set(
            &mut status,
            "Ready",
            false,
            if reachable {
                "ApplyFailed"
            } else {
                "Unreachable"
            },
            message.clone(),
            now,
            generation,
        );
        Outcome {
            status,
            notes,
            reachable,
            failure: Some(Failure { terminal, message }),
            wake_at: None,
            run: None,
            digest: String::new(),
        }
    };
    let projects: Vec<(&str, &Firewall)> = input
        .project_firewalls
        .iter()
        .map(|(n, f)| (n.as_str(), f))
        .collect();
    let resources = match expand::host_with_projects(input.name, input.spec, &projects) {
        Ok(r) => r,
        Err(e) => return fail(status, notes, e.to_string(), true, true),
    };
    let t = match hosts.transport(input.name, input.spec).await {
        Ok(t) => t,
        Err(e) => {
            let terminal = matches!(
                e,
                Error::HostKey { .. } | Error::Auth { .. } | Error::Invalid { .. }
            );
            return fail(status, notes, e.to_string(), terminal, false);
        }
    };
    let _guard = hosts.lock(input.name).await;
    let mut prepared = match plan::prepare(t.as_ref(), &resources, &[], input.secrets).await {
        Ok(p) => p,
        Err(e) => {
            hosts.forget(input.name);
            return fail(status, notes, e.to_string(), false, false);
        }
    };
    prepared
        .plan
        .changes
        .retain(|c| !input.held.contains(&c.id));
    let f = &prepared.facts;
    status.facts = Some(HostFacts {
        os_id: f.get("osId").cloned(),
        os_version: f.get("osVersion").cloned().filter(|v| !v.is_empty()),
        arch: f.get("arch").cloned(),
        package_manager: f.get("packageManager").cloned(),
        systemd_version: f.get("systemdVersion").cloned().filter(|v| !v.is_empty()),
        hostname: f.get("hostname").cloned(),
    });
    // Heartbeats are coarse (a minute), as Kubernetes node leases are: a status write per
    // host per resync would be most of the store's write load for no news.
    if status
        .last_seen
        .is_none_or(|t| now - t >= chrono::Duration::seconds(LAST_SEEN_EVERY_SECS))
    {
        status.last_seen = Some(now);
    }
    set(
        &mut status,
        "Reachable",
        true,
        "Connected",
        format!("read {} resource(s) in one round trip", resources.len()),
        now,
        generation,
    );
    if was_reachable == Some(false) {
        notes.push(Note {
            warning: false,
            reason: "Reachable",
            message: "the host answers again".into(),
        });
    }
    let digest = plan::desired_digest(&resources);
    let on_hold = input.spec.paused || input.hold.is_some();
    if prepared.plan.is_empty() {
        status.applied_digest = Some(digest.clone());
    }
    let decision = if prepared.plan.is_empty() || on_hold {
        None
    } else {
        let none = std::collections::BTreeMap::new();
        match windows::decide(input.windows, ("", &none), (input.name, input.labels), now) {
            Ok(d) => Some(d),
            Err(e) => return fail(status, notes, e.to_string(), true, true),
        }
    };
    let wake_at = decision.as_ref().and_then(|d| d.until);
    let blocked = decision
        .as_ref()
        .filter(|d| !d.allowed)
        .map(|d| d.message.clone());
    set(
        &mut status,
        "WindowBlocked",
        blocked.is_some(),
        if blocked.is_some() {
            "WindowClosed"
        } else {
            "NotBlocked"
        },
        blocked.clone().unwrap_or_else(|| "apply is allowed".into()),
        now,
        generation,
    );
    if let Some(why) = &blocked {
        notes.push(Note {
            warning: false,
            reason: "WindowBlocked",
            message: format!("{}: {why}", prepared.plan.summary()),
        });
    }
    let mut run = None;
    if !prepared.plan.is_empty() && !on_hold && blocked.is_none() {
        let corrective = status.applied_digest.as_deref() == Some(digest.as_str());
        let opts = ApplyOptions::new(format!(
            "host-{}-g{generation}-{}",
            input.name,
            now.format("%Y%m%dT%H%M%S")
        ));
        let mut opts = opts;
        opts.settle = input.settle;
        let result = apply::apply(t.as_ref(), &prepared, &opts).await;
        if let Ok(a) = &result {
            let changed = a.count(apply::Status::Applied) > 0;
            if corrective || !changed {
                // A repair is not history: its backups of the drifted files have no use.
                crate::service::discard_backups(Some(&t), &a.revision).await;
            } else {
                run = Some(crate::history::Run::from_applied(a, now));
            }
            if a.ok {
                status.applied_digest = Some(digest.clone());
            }
        }
        match result {
            Ok(a) if a.ok => notes.push(Note {
                warning: false,
                reason: "Applied",
                message: format!(
                    "applied {} change(s) of the host's own resources",
                    a.results.len()
                ),
            }),
            Ok(a) => {
                let msg = a.error.unwrap_or_default();
                notes.push(Note {
                    warning: true,
                    reason: "ApplyFailed",
                    message: msg.clone(),
                });
                let mut out = fail(status, notes, msg, false, true);
                out.run = run;
                out.digest = digest;
                return out;
            }
            Err(e) => {
                hosts.forget(input.name);
                return fail(status, notes, e.to_string(), false, false);
            }
        }
    }
    let pending = (on_hold || blocked.is_some()) && !prepared.plan.is_empty();
    set(
        &mut status,
        "Ready",
        !pending,
        if !pending {
            "Converged"
        } else if on_hold {
            "Paused"
        } else {
            "WindowClosed"
        },
        if pending {
            match &input.hold {
                Some(why) => format!("{why}; {}", prepared.plan.summary()),
                None => prepared.plan.summary(),
            }
        } else {
            "reachable, and its own resources are applied".into()
        },
        now,
        generation,
    );
    Outcome {
        status,
        notes,
        reachable: true,
        failure: None,
        wake_at,
        run,
        digest,
    }
}
