//! Deleting a Service: it is undone on every host it was applied to, from what its
//! Revisions recorded there, never from expanding the spec again (its Project may be
//! deleted in the same breath, and the paths would come out different). Its files are
//! removed and its units stopped; directories are kept unless `rollback: deleteIfCreated`;
//! accounts and packages are kept. Hosts whose Host object is gone are skipped with a
//! warning (nothing can reach them).

use hostkit_api::kinds::HostSpec;
use hostkit_engine::apply::{self, ApplyOptions};
use hostkit_engine::hosts::Hosts;
use hostkit_engine::plan::{self, Action};

use super::rollout::{Input, Sink, resources};
use crate::revision::history::{self, History};
use crate::{Error, Note, Result};

/// A host a Service may have left something on.
#[derive(Clone, Debug)]
pub struct Applied {
    pub host: String,
    /// The Host object's spec (`None`: the Host is gone).
    pub spec: Option<HostSpec>,
    /// The digest the host last converged to.
    pub digest: Option<String>,
}

/// Undoes the Service of `input` on the hosts in `on`.
pub async fn cleanup(
    input: Input<'_>,
    on: &[Applied],
    hosts: &dyn Hosts,
    sink: &dyn Sink,
    history: &dyn History,
) -> Result<()> {
    let mut notes = Vec::new();
    for a in on {
        let Some(spec) = &a.spec else {
            notes.push(Note::warning(
                "HostGone",
                format!(
                    "Host/{} no longer exists; its files were left as they are",
                    a.host
                ),
            ));
            continue;
        };
        let t = hosts.transport(&a.host, spec).await?;
        let _guard = hosts.lock(&a.host).await;
        // An apply a crash interrupted is history too: what it changed goes as well.
        notes.extend(history::settle_on(history, &a.host, t.as_ref()).await?);
        let applied = match history.applied(&a.host, a.digest.as_deref()).await? {
            Some(recorded) => recorded,
            // Applied before Revisions recorded resources: the spec is all there is.
            None => resources(&input).map_err(|f| Error::Retry(f.message))?,
        };
        let prepared = plan::prepare(t.as_ref(), &[], &applied, input.secrets).await?;
        let mut opts = ApplyOptions::new(hostkit_engine::naming::run_id(
            &format!("{}-delete", input.name),
            input.now,
        ));
        // The object is going: nothing will ever undo this removal.
        opts.backups = false;
        let done = apply::apply(t.as_ref(), &prepared, &opts).await?;
        if !done.ok {
            return Err(Error::Retry(done.error.unwrap_or_default()));
        }
        notes.push(Note::normal(
            "CleanedUp",
            format!(
                "{}: removed {} resource(s)",
                a.host,
                prepared.plan.count(Action::Delete)
            ),
        ));
    }
    sink.publish(&input.status, &notes).await;
    Ok(())
}
