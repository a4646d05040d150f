//! Projects are conventions (roots, prefixes, a firewall), not host state: nothing to
//! converge of their own. A change wakes their Services and the Services' Hosts (project
//! firewalls are applied by the Host reconciler).

use std::sync::Arc;

use hostkit_api::kinds::{Object, ProjectSpec};

use crate::{Action, ObjectKey, Reconciler, Reconcilers, Result, dependents};

#[async_trait::async_trait]
impl Reconciler<ProjectSpec> for Reconcilers {
    async fn reconcile(&self, _project: Arc<Object<ProjectSpec>>) -> Result<Action> {
        Ok(Action::AwaitChange)
    }

    fn dependents(
        &self,
        before: Option<&Object<ProjectSpec>>,
        after: Option<&Object<ProjectSpec>>,
    ) -> Vec<ObjectKey> {
        dependents::of_project(self.ctx.as_ref(), before, after)
    }
}
