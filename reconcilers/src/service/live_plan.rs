//! `hkctl plan service/NAME`: what applying the Service would change on its hosts now, and
//! `hkctl plan -f`: the same for a proposed Service that is not stored (a pull request's).
//! Each selected host (or just one) is read over a fresh SSH connection and planned;
//! nothing is applied, and the controller's own connections and locks are not touched.
//! Each plan comes with its down plan's coverage: what of it a Rollback could undo.

use hostkit_api::kinds::{HostSpec, ProjectSpec, ServiceSpec};
use hostkit_engine::plan::{self, Plan, Prepared};
use hostkit_engine::secrets::Secrets;
use hostkit_engine::transport::ssh::{Ssh, SshOptions};

use crate::context::decode;
use crate::{Context, Error, Result};

/// The live plans of Service `name`, one per selected host (or only `only_host`).
pub async fn live_plan(
    ctx: &dyn Context,
    name: &str,
    only_host: Option<&str>,
) -> Result<Vec<Plan>> {
    let svc = ctx.fetch::<ServiceSpec>(name).await?;
    let prepared = prepared_of(ctx, name, &svc.spec, only_host).await?;
    Ok(prepared.into_iter().map(|p| p.plan).collect())
}

/// The prepared plans of Service `name` if its spec were `spec`.
async fn prepared_of(
    ctx: &dyn Context,
    name: &str,
    spec: &ServiceSpec,
    only_host: Option<&str>,
) -> Result<Vec<Prepared>> {
    let project = match &spec.project {
        Some(p) => Some(ctx.fetch::<ProjectSpec>(p).await?.spec),
        None => None,
    };
    let secrets = Secrets::keyed();
    let resolved = match spec.source.clone() {
        Some(source) => {
            let s = secrets.clone();
            let r = tokio::task::spawn_blocking(move || {
                hostkit_engine::release::resolve::resolve_once(&source, &s)
            })
            .await
            .map_err(|e| Error::Retry(format!("the resolve task failed: {e}")))??;
            Some(r)
        }
        None => None,
    };
    let resources =
        hostkit_engine::expand::service_at(name, spec, project.as_ref(), resolved.as_ref())?;
    let mut plans = Vec::new();
    for opts in ssh_targets(ctx, name, spec, only_host, &secrets).await? {
        let ssh = Ssh::connect(&opts).await?;
        plans.push(plan::prepare(&ssh, &resources, &[], &secrets).await?);
    }
    Ok(plans)
}

/// How to reach each stored Host that `spec` selects (or only `only_host`, which must be
/// one of them): what a live read of the Service (its plan, its journal) connects to,
/// over fresh connections that leave the controller's own alone.
pub(super) async fn ssh_targets(
    ctx: &dyn Context,
    name: &str,
    spec: &ServiceSpec,
    only_host: Option<&str>,
    secrets: &Secrets,
) -> Result<Vec<SshOptions>> {
    let mut targets = Vec::new();
    for h in ctx
        .list_stored(<HostSpec as hostkit_api::KindSpec>::INFO)
        .await?
    {
        let Some(hname) = h.pointer("/metadata/name").and_then(|n| n.as_str()) else {
            continue;
        };
        let host = decode::<HostSpec>(h.clone(), hname)?;
        if spec.selects(host.name(), &host.metadata.labels)
            && only_host.is_none_or(|o| o == host.name())
        {
            targets.push(SshOptions::from_host(host.name(), &host.spec, secrets)?);
        }
    }
    if let Some(h) = only_host
        && targets.is_empty()
    {
        return Err(Error::Invalid {
            object: format!("Service/{name}"),
            field: "host".into(),
            message: format!("does not run on host {h}"),
        });
    }
    Ok(targets)
}

/// [`live_plan`] as the API answers it: `{kind: PlanList, plans, text, coverage}`.
pub async fn plan_list(
    ctx: &dyn Context,
    name: &str,
    only_host: Option<&str>,
) -> Result<serde_json::Value> {
    let svc = ctx.fetch::<ServiceSpec>(name).await?;
    Ok(list_of(
        &prepared_of(ctx, name, &svc.spec, only_host).await?,
    ))
}

/// The plan list of a proposed Service (`spec`, already validated by the API server),
/// stored or not: what applying it would change now.
pub async fn proposed_plan_list(
    ctx: &dyn Context,
    name: &str,
    spec: &ServiceSpec,
    only_host: Option<&str>,
) -> Result<serde_json::Value> {
    Ok(list_of(&prepared_of(ctx, name, spec, only_host).await?))
}

fn list_of(prepared: &[Prepared]) -> serde_json::Value {
    let plans: Vec<&Plan> = prepared.iter().map(|p| &p.plan).collect();
    let text: String = plans.iter().map(|p| p.render(true)).collect();
    let coverage: Vec<serde_json::Value> = prepared
        .iter()
        .map(|p| {
            let c = &hostkit_engine::down::DownPlan::provisional("proposed", p).coverage;
            serde_json::json!({
                "host": p.plan.host,
                "reversible": c.reversible,
                "noop": c.noop,
                "skipped": c.skipped.iter().map(|(id, why)| serde_json::json!({"id": id, "warning": why})).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({"kind": "PlanList", "plans": plans, "text": text, "coverage": coverage})
}
