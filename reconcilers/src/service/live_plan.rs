//! `hkctl plan service/NAME`: what applying the Service would change on its hosts now.
//! Each selected host (or just one) is read over a fresh SSH connection and planned;
//! nothing is applied, and the controller's own connections and locks are not touched.

use hostkit_api::kinds::{HostSpec, ProjectSpec, ServiceSpec};
use hostkit_engine::plan::{self, Plan};
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
    let project = match &svc.spec.project {
        Some(p) => Some(ctx.fetch::<ProjectSpec>(p).await?.spec),
        None => None,
    };
    let resources = hostkit_engine::expand::service(name, &svc.spec, project.as_ref())?;
    let secrets = Secrets::keyed();
    let mut plans = Vec::new();
    for h in ctx
        .list_stored(<HostSpec as hostkit_api::KindSpec>::INFO)
        .await?
    {
        let Some(hname) = h.pointer("/metadata/name").and_then(|n| n.as_str()) else {
            continue;
        };
        let host = decode::<HostSpec>(h.clone(), hname)?;
        if !svc.spec.selects(host.name(), &host.metadata.labels)
            || only_host.is_some_and(|o| o != host.name())
        {
            continue;
        }
        let opts = SshOptions::from_host(host.name(), &host.spec, &secrets)?;
        let ssh = Ssh::connect(&opts).await?;
        let prepared = plan::prepare(&ssh, &resources, &[], &secrets).await?;
        plans.push(prepared.plan);
    }
    if let Some(h) = only_host
        && plans.is_empty()
    {
        return Err(Error::Invalid {
            object: format!("Service/{name}"),
            field: "host".into(),
            message: format!("does not run on host {h}"),
        });
    }
    Ok(plans)
}

/// [`live_plan`] as the API answers it: `{kind: PlanList, plans, text}`.
pub async fn plan_list(
    ctx: &dyn Context,
    name: &str,
    only_host: Option<&str>,
) -> Result<serde_json::Value> {
    let plans = live_plan(ctx, name, only_host).await?;
    let text: String = plans.iter().map(|p| p.render(true)).collect();
    Ok(serde_json::json!({"kind": "PlanList", "plans": plans, "text": text}))
}
