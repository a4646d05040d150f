//! `GET …/services/{name}/plan` answered by the Service reconciler's live plan, and
//! `GET …/services/{name}/logs` by its journal reader, through the store-backed context;
//! their errors become API statuses (a host that fails is a 502, never a store error).

use std::sync::Arc;

use hostkit_reconcilers::Context;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::server::{BackupRequest, LivePlans, LogRequest, ServiceBackups, ServiceLogs};

pub struct ServicePlans(pub Arc<dyn Context>);

#[async_trait::async_trait]
impl LivePlans for ServicePlans {
    async fn plan(&self, name: &str, host: Option<&str>) -> Result<Value> {
        hostkit_reconcilers::service::live_plan::plan_list(self.0.as_ref(), name, host)
            .await
            .map_err(status_of)
    }

    async fn plan_proposed(
        &self,
        service: &hostkit_api::kinds::Service,
        host: Option<&str>,
    ) -> Result<Value> {
        hostkit_reconcilers::service::live_plan::proposed_plan_list(
            self.0.as_ref(),
            service.name(),
            &service.spec,
            host,
        )
        .await
        .map_err(status_of)
    }
}

#[async_trait::async_trait]
impl ServiceLogs for ServicePlans {
    async fn logs(
        &self,
        name: &str,
        r: &LogRequest,
    ) -> Result<tokio::sync::mpsc::Receiver<String>> {
        let query = hostkit_reconcilers::service::logs::LogQuery {
            host: r.host.clone(),
            follow: r.follow,
            since: r.since,
            tail: r.tail,
            unit: r.unit.clone(),
        };
        hostkit_reconcilers::service::logs::logs(self.0.as_ref(), name, &query)
            .await
            .map_err(status_of)
    }
}

/// Backups through the store-backed context, restoring under the reconcilers' apply lock
/// of the host.
pub struct Backups {
    pub ctx: Arc<dyn Context>,
    pub hosts: hostkit_reconcilers::SharedHosts,
}

#[async_trait::async_trait]
impl ServiceBackups for Backups {
    async fn list(&self, name: &str, r: &BackupRequest) -> Result<Value> {
        hostkit_reconcilers::service::backups::list(self.ctx.as_ref(), name, &query(r))
            .await
            .map_err(status_of)
    }

    async fn run(&self, name: &str, r: &BackupRequest) -> Result<Value> {
        hostkit_reconcilers::service::backups::run(self.ctx.as_ref(), name, &query(r))
            .await
            .map_err(status_of)
    }

    async fn restore(
        &self,
        name: &str,
        r: &BackupRequest,
        id: &str,
        dry_run: bool,
    ) -> Result<Value> {
        hostkit_reconcilers::service::backups::restore(
            self.ctx.as_ref(),
            self.hosts.as_ref(),
            name,
            &query(r),
            id,
            dry_run,
        )
        .await
        .map_err(status_of)
    }
}

fn query(r: &BackupRequest) -> hostkit_reconcilers::service::backups::BackupQuery {
    hostkit_reconcilers::service::backups::BackupQuery {
        storage: r.storage.clone(),
        host: r.host.clone(),
    }
}

/// What a live plan's failure means to the client.
fn status_of(e: hostkit_reconcilers::Error) -> Error {
    use hostkit_reconcilers::Error as R;
    match e {
        R::NotFound { kind, name } => Error::NotFound { kind, name },
        R::Store(message) => Error::Store(crate::store::StoreError::Unavailable(message)),
        e if e.is_bad_request() => Error::BadRequest(e.to_string()),
        e => Error::Upstream(e.to_string()),
    }
}
