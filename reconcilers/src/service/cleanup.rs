//! Deleting a Service: it is undone on every host it was applied to. Its files are
//! removed and its units stopped; directories are kept unless `rollback: deleteIfCreated`;
//! accounts and packages are kept. Hosts whose Host object is gone are skipped with a
//! warning (nothing can reach them).

use hostkit_engine::apply::{self, ApplyOptions};
use hostkit_engine::hosts::Hosts;
use hostkit_engine::plan::{self, Action};
use hostkit_engine::run;

use super::rollout::{Input, Sink, resources};
use crate::{Error, Note, Result};

/// Undoes the Service of `input` on its hosts; `known_hosts` are the Hosts that exist.
pub async fn cleanup(
    input: Input<'_>,
    known_hosts: &[String],
    hosts: &dyn Hosts,
    sink: &dyn Sink,
) -> Result<()> {
    let resources = resources(&input).map_err(|f| Error::Retry(f.message))?;
    let mut notes = Vec::new();
    for h in input
        .status
        .hosts
        .iter()
        .filter(|h| h.last_applied_generation.is_some())
    {
        let Some(target) = input.targets.iter().find(|t| t.name == h.host) else {
            if !known_hosts.contains(&h.host) {
                notes.push(Note::warning(
                    "HostGone",
                    format!(
                        "Host/{} no longer exists; its files were left as they are",
                        h.host
                    ),
                ));
            }
            continue;
        };
        let t = hosts.transport(&target.name, &target.spec).await?;
        let _guard = hosts.lock(&target.name).await;
        let prepared = plan::prepare(t.as_ref(), &[], &resources, input.secrets).await?;
        let opts = ApplyOptions::new(format!(
            "{}-delete-{}",
            input.name,
            input.now.format("%Y%m%dT%H%M%S")
        ));
        let applied = apply::apply(t.as_ref(), &prepared, &opts).await?;
        // The object is going: nothing will ever undo this removal.
        run::discard_backups(t.as_ref(), &applied.revision).await;
        if !applied.ok {
            return Err(Error::Retry(applied.error.unwrap_or_default()));
        }
        notes.push(Note::normal(
            "CleanedUp",
            format!(
                "{}: removed {} resource(s)",
                target.name,
                prepared.plan.count(Action::Delete)
            ),
        ));
    }
    sink.publish(&input.status, &notes).await;
    Ok(())
}
