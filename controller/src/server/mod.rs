//! The HTTP API: Kubernetes-style REST under `/apis/hostkit.dev/v1alpha1`, watches as
//! newline-delimited JSON with bookmarks, bearer-token auth, optional TLS, and the
//! `/healthz`, `/readyz`, `/metrics` endpoints.

pub mod auth;
mod handlers;
mod memory;
pub mod metrics;
pub mod stored_tokens;
mod token_handlers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::{Error, Result};
use crate::objects::Objects;
pub use auth::{Caller, Role, Tokens};
use metrics::{Metrics, RequestLabels, VerbLabels};
pub use stored_tokens::StoredTokens;

/// Certificate and key files (PEM) for HTTPS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Computes the live plan of a Service (`GET …/services/{name}/plan`): answered by
/// whoever runs the server, so the API server itself knows nothing of hosts.
#[async_trait::async_trait]
pub trait LivePlans: Send + Sync {
    /// A `PlanList` (`{kind, plans, text}`) for Service `name`, or only its host `host`.
    async fn plan(&self, name: &str, host: Option<&str>) -> Result<serde_json::Value>;
    /// The same for a proposed Service (decoded and validated, not stored).
    async fn plan_proposed(
        &self,
        service: &hostkit_api::kinds::Service,
        host: Option<&str>,
    ) -> Result<serde_json::Value>;
}

/// What `GET …/services/{name}/logs` asked for (validated by the server: numbers and
/// names only).
#[derive(Clone, Debug, Default)]
pub struct LogRequest {
    pub host: Option<String>,
    pub follow: bool,
    pub since: Option<Duration>,
    pub tail: Option<u32>,
    pub unit: Option<String>,
}

/// Reads a Service's journal on its hosts: answered by whoever runs the server (the API
/// server itself never talks to hosts).
#[async_trait::async_trait]
pub trait ServiceLogs: Send + Sync {
    /// Lines as they come (`[host] line`), until every host's reader ends.
    async fn logs(
        &self,
        name: &str,
        request: &LogRequest,
    ) -> Result<tokio::sync::mpsc::Receiver<String>>;
}

/// What `…/services/{name}/backups` asked for (the storage, the host, and for a restore
/// the snapshot id), checked again by whoever answers it.
#[derive(Clone, Debug, Default)]
pub struct BackupRequest {
    pub storage: String,
    pub host: Option<String>,
}

/// A Service's storage snapshots on its hosts: answered by whoever runs the server.
#[async_trait::async_trait]
pub trait ServiceBackups: Send + Sync {
    async fn list(&self, name: &str, r: &BackupRequest) -> Result<serde_json::Value>;
    async fn run(&self, name: &str, r: &BackupRequest) -> Result<serde_json::Value>;
    async fn restore(
        &self,
        name: &str,
        r: &BackupRequest,
        id: &str,
        dry_run: bool,
    ) -> Result<serde_json::Value>;
}

/// Adds metric families to the server's registry.
pub type RegisterMetrics = Arc<dyn Fn(&mut prometheus_client::registry::Registry) + Send + Sync>;

/// What the server serves besides the object API, supplied by whoever runs it.
#[derive(Clone, Default)]
pub struct Extras {
    /// Registers more metrics beside the server's (the controller's runtime and
    /// reconcilers), so `/metrics` shows them all.
    pub metrics: Option<RegisterMetrics>,
    /// Live plans for `hkctl plan`; without them the endpoint answers 405.
    pub plans: Option<Arc<dyn LivePlans>>,
    /// Journals for `hkctl logs`; without them the endpoint answers 405.
    pub logs: Option<Arc<dyn ServiceLogs>>,
    /// Storage snapshots for `hkctl backup`; without them the endpoint answers 405.
    pub backups: Option<Arc<dyn ServiceBackups>>,
    /// Whether the controller beside the server can make progress; `/readyz` fails with its
    /// reason when it cannot.
    pub health: Option<Health>,
}

/// Why something the server depends on cannot make progress, if it cannot.
pub type Health = Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras")
            .field("metrics", &self.metrics.is_some())
            .field("plans", &self.plans.is_some())
            .field("health", &self.health.is_some())
            .finish()
    }
}

/// Everything the API server needs besides the objects.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub extras: Extras,
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub tokens: Tokens,
    /// How often an idle watch gets a BOOKMARK with the current resourceVersion.
    pub bookmark_interval: Duration,
}

#[derive(Clone)]
pub(crate) struct AppState {
    objects: Objects,
    tokens: Arc<Tokens>,
    /// Tokens in the store, honoured by every replica (after `tokens`, which are this
    /// replica's own: its admin.token and tokens file).
    stored: StoredTokens,
    metrics: Arc<Metrics>,
    bookmark_interval: Duration,
    plans: Option<Arc<dyn LivePlans>>,
    logs: Option<Arc<dyn ServiceLogs>>,
    backups: Option<Arc<dyn ServiceBackups>>,
    health: Option<Health>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.to_status();
        let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (code, axum::Json(status)).into_response()
    }
}

/// The API router, without a listener (tests drive it directly).
pub fn router(objects: Objects, tokens: Tokens, bookmark_interval: Duration) -> Router {
    router_with(objects, tokens, bookmark_interval, Extras::default())
}

/// [`router`] with what the server serves besides the object API.
pub fn router_with(
    objects: Objects,
    tokens: Tokens,
    bookmark_interval: Duration,
    extras: Extras,
) -> Router {
    let register = extras.metrics.clone();
    let state = AppState {
        metrics: Arc::new(Metrics::with(objects.store().backend(), |r| {
            if let Some(register) = register {
                register(r)
            }
        })),
        plans: extras.plans,
        logs: extras.logs,
        backups: extras.backups,
        health: extras.health,
        stored: StoredTokens::new(objects.store().clone()),
        objects,
        tokens: Arc::new(tokens),
        bookmark_interval,
    };
    let api = "/apis/hostkit.dev/v1alpha1";
    Router::new()
        .route(api, get(handlers::discovery))
        .route(
            &format!("{api}/{{plural}}"),
            get(handlers::list_or_watch).post(handlers::create),
        )
        .route(
            &format!("{api}/{{plural}}/{{name}}"),
            get(handlers::get_one)
                .put(handlers::replace)
                .patch(handlers::apply)
                .delete(handlers::delete),
        )
        .route(
            &format!("{api}/services/{{name}}/plan"),
            get(handlers::plan).post(handlers::plan_proposed),
        )
        .route(
            &format!("{api}/services/{{name}}/logs"),
            get(handlers::logs),
        )
        .route(
            &format!("{api}/services/{{name}}/backups"),
            get(handlers::backups).post(handlers::backup_action),
        )
        .route(
            &format!("{api}/{{plural}}/{{name}}/status"),
            get(handlers::get_one).put(handlers::replace_status),
        )
        .route(
            "/auth/v1/tokens",
            get(token_handlers::list).post(token_handlers::create),
        )
        .route(
            "/auth/v1/tokens/{which}",
            axum::routing::delete(token_handlers::revoke),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .route(
            "/version",
            get(|| async { axum::Json(serde_json::json!({"version": env!("CARGO_PKG_VERSION")})) }),
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(middleware::from_fn(memory::trim_after_large_bodies))
        // Bodies are checked against the 1 MiB object limit by the handlers, which answer with
        // a Status; this outer limit only stops absurd uploads early.
        .layer(DefaultBodyLimit::max(8 * 1024 * 1024))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(
        Duration::from_secs(2),
        state.objects.store().current_revision(),
    )
    .await
    {
        Ok(Ok(rev)) => {
            state.metrics.store_revision.set(rev.max(0) as u64);
            match state.health.as_ref().map(|h| h()) {
                Some(Err(why)) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("controller: {why}"),
                )
                    .into_response(),
                _ => "ok".into_response(),
            }
        }
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "store: no answer within 2s",
        )
            .into_response(),
    }
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    if let Ok(rev) = state.objects.store().current_revision().await {
        state.metrics.store_revision.set(rev.max(0) as u64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// The verb and resource a request is counted under: only names the API has (a kind's
/// plural, a route of the server, an HTTP method it serves), anything else `other`, so that
/// a client sending random paths cannot grow `/metrics` without bound.
fn request_labels(request: &Request) -> (&'static str, &'static str, bool) {
    let watch = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=1" || p == "watch=true"));
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str());
    let resource = match request
        .uri()
        .path()
        .strip_prefix("/apis/hostkit.dev/v1alpha1/")
    {
        Some(rest) => rest
            .split('/')
            .next()
            .and_then(hostkit_api::kinds::kind_by_plural)
            .map_or("other", |k| k.plural),
        None => match matched {
            Some("/healthz") => "healthz",
            Some("/readyz") => "readyz",
            Some("/metrics") => "metrics",
            Some("/version") => "version",
            Some("/apis/hostkit.dev/v1alpha1") => "discovery",
            _ => "other",
        },
    };
    let verb = match request.method().as_str() {
        _ if watch => "WATCH",
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        _ => "OTHER",
    };
    (verb, resource, watch)
}

/// Checks the bearer token; read-only callers may only GET.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return Error::Unauthorized.into_response();
    };
    let caller = match state.tokens.authenticate(presented) {
        Some(c) => c,
        None => match state.stored.authenticate(presented).await {
            Ok(Some(c)) => c,
            Ok(None) => return Error::Unauthorized.into_response(),
            Err(e) => return e.into_response(),
        },
    };
    // Tokens are credentials: only admins read or change them.
    let managing_tokens = request.uri().path().starts_with("/auth/");
    // Planning a proposed Service stores nothing: a reviewer's read-only token may.
    let planning = request.method() == Method::POST && request.uri().path().ends_with("/plan");
    if caller.role == Role::ReadOnly
        && ((request.method() != Method::GET && !planning) || managing_tokens)
    {
        return Error::Forbidden { user: caller.user }.into_response();
    }
    let actor = format!("user/{}", caller.user);
    request.extensions_mut().insert(caller);
    crate::objects::as_actor(actor, next.run(request)).await
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let (verb, resource, watch) = request_labels(&request);
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            verb: verb.to_string(),
            resource: resource.to_string(),
            code: response.status().as_u16().to_string(),
        })
        .inc();
    if !watch {
        state
            .metrics
            .latency
            .get_or_create(&VerbLabels {
                verb: verb.to_string(),
            })
            .observe(start.elapsed().as_secs_f64());
    }
    response
}

/// Serves the API until `shutdown` resolves; returns once in-flight requests are done.
pub async fn serve(
    config: ServerConfig,
    objects: Objects,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(SocketAddr) + Send + 'static,
) -> Result<()> {
    let app = router_with(
        objects,
        config.tokens,
        config.bookmark_interval,
        config.extras,
    );
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let h = handle.clone();
    tokio::spawn(async move {
        if let Some(addr) = h.listening().await {
            on_listening(addr);
        }
    });
    let service = app.into_make_service();
    let result = match config.tls {
        Some(tls) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(|e| {
                    Error::Config(format!(
                        "loading TLS certificate {} and key {}: {e}",
                        tls.cert.display(),
                        tls.key.display()
                    ))
                })?;
            axum_server::bind_rustls(config.listen, rustls)
                .handle(handle)
                .serve(service)
                .await
        }
        None => {
            axum_server::bind(config.listen)
                .handle(handle)
                .serve(service)
                .await
        }
    };
    result.map_err(|e| Error::Config(format!("serving on {}: {e}", config.listen)))
}
