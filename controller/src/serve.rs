//! `hostkit serve`: one process with the store, the API server and the controller runtime.
//!
//! On first start it creates the data folder, an admin token (`admin.token`, mode 0600)
//! and, unless one exists, an hkctl config for the local user, so `hkctl get services`
//! works right after `hostkit serve` with nothing to configure.

use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hostkit_api::config::ClientConfig;
use rand::RngCore;

use hostkit_api::kinds::{
    GitSourceSpec, HostSpec, InstanceSpec, PolicyWindowSpec, ProjectSpec, RevisionSpec,
    RollbackSpec, ServiceSpec,
};
use hostkit_reconcilers::{Context, Reconcilers, Setup};
use prometheus_client::registry::Registry;

use crate::context::{StoreContext, Wake};
use crate::error::{Error, Result};
use crate::live_plans::ServicePlans;
use crate::objects::Objects;
use crate::runtime::metrics::RuntimeMetrics;
use crate::runtime::{Options, Runtime};
use crate::server::{self, Extras, ServerConfig, TlsFiles, Tokens};
use crate::store::Store;
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::store::etcd::EtcdStore;

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// etcd endpoints; empty means the embedded store in `data_dir`.
    pub etcd: Vec<String>,
    /// Extra tokens (`token,user,role` lines), accepted besides `admin.token`.
    pub tokens_file: Option<PathBuf>,
    pub tls: Option<TlsFiles>,
    pub bookmark_interval: Duration,
    pub event_ttl: Duration,
    /// Where to write an hkctl config if none exists; `None` skips it.
    pub client_config: Option<PathBuf>,
    /// Events kept by the embedded store for watches before compaction.
    pub max_events: i64,
    /// Reconciles running at once (across all objects).
    pub concurrency: usize,
    /// Run the controller runtime (off: API server and store only).
    pub controller: bool,
    /// How long a restarted unit must stay active before an apply goes on.
    pub settle: Duration,
    /// Leader election timings (lease 15 s, renew 10 s, retry 2 s).
    pub leader: crate::runtime::leader::Timings,
    /// Images Instances may boot, by name: a root folder or a `.tar`/`.tar.zst`.
    pub images: Vec<(String, PathBuf)>,
    /// The Prometheus `rollout.analysis` asks by default.
    pub prometheus_url: Option<String>,
}

/// Writes `bytes` to `path` atomically (temp file in the same folder, fsync, rename) at `mode`.
pub fn write_private_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads the admin token, creating a random one on first start.
pub fn ensure_admin_token(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Config(format!("reading {}: {e}", path.display()))),
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private_file(&path, format!("{token}\n").as_bytes(), 0o600)
        .map_err(|e| Error::Config(format!("writing {}: {e}", path.display())))?;
    Ok(token)
}

/// How long `hostkit serve` waits for a predecessor to let go of the embedded store.
const STORE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn open_store(options: &ServeOptions) -> Result<Arc<dyn Store>> {
    if options.etcd.is_empty() {
        let path = options.data_dir.join("store.redb");
        let embedded = EmbeddedOptions {
            max_events: options.max_events,
            ..Default::default()
        };
        Ok(Arc::new(
            EmbeddedStore::open_for_server(&path, embedded, STORE_LOCK_WAIT).await?,
        ))
    } else {
        Ok(Arc::new(EtcdStore::connect(&options.etcd).await?))
    }
}

/// The URL a local client should use for `listen`.
pub fn client_url(listen: SocketAddr, tls: bool) -> String {
    let host = if listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        listen.ip().to_string()
    };
    let host = if listen.is_ipv6() && !listen.ip().is_unspecified() {
        format!("[{host}]")
    } else {
        host
    };
    format!(
        "{}://{host}:{}",
        if tls { "https" } else { "http" },
        listen.port()
    )
}

/// Every kind the controller watches, each reconciled by its own reconciler.
fn control_every_kind(runtime: &Runtime, r: Arc<Reconcilers>) {
    runtime.control::<ProjectSpec>(r.clone());
    runtime.control::<HostSpec>(r.clone());
    runtime.control::<ServiceSpec>(r.clone());
    runtime.control::<PolicyWindowSpec>(r.clone());
    runtime.control::<RevisionSpec>(r.clone());
    runtime.control::<RollbackSpec>(r.clone());
    runtime.control::<InstanceSpec>(r.clone());
    runtime.control::<GitSourceSpec>(r);
}

/// Runs until `shutdown` resolves.
pub async fn run(
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    prepare_data_dir(&options.data_dir)?;
    let admin_token = ensure_admin_token(&options.data_dir)?;
    let tokens = load_tokens(&options, &admin_token)?;
    let store = open_store(&options).await?;
    // Every replica honours every replica's admin.token: each one registers its own.
    crate::server::StoredTokens::new(store.clone())
        .register(
            &admin_token,
            "bootstrap-admin",
            crate::server::Role::Admin,
            &format!("hostkit serve ({})", options.data_dir.display()),
        )
        .await?;
    let backend = store.backend();
    write_client_config(&options, &admin_token)?;
    let objects = Objects::new(store.clone(), options.event_ttl);
    let controller = Controller::start(&options, objects.clone(), store);
    let stop = controller.stop.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: no new reconciles; waiting for in-flight ones");
        crate::readiness::tell("STOPPING=1");
        let _ = stop.send(true);
    };
    let config = ServerConfig {
        extras: controller.extras(),
        listen: options.listen,
        tls: options.tls.clone(),
        tokens,
        bookmark_interval: options.bookmark_interval,
    };
    let tls = options.tls.is_some();
    let data_dir = options.data_dir.clone();
    let served = server::serve(config, objects, shutdown, move |addr| {
        tracing::info!(
            url = %client_url(addr, tls),
            store = backend,
            data_dir = %data_dir.display(),
            "hostkit API server listening"
        );
        // Only now can a client talk to it: `systemctl start` returns here.
        crate::readiness::tell("READY=1");
    })
    .await;
    controller.stopped().await;
    served
}

/// Creates the data folder, readable by this user only.
fn prepare_data_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| Error::Config(format!("creating data dir {}: {e}", dir.display())))
}

/// The admin token plus those of `--tokens`.
fn load_tokens(options: &ServeOptions, admin_token: &str) -> Result<Tokens> {
    let mut tokens = Tokens::single_admin(admin_token);
    if let Some(file) = &options.tokens_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::Config(format!("reading {}: {e}", file.display())))?;
        tokens = tokens.merge(Tokens::parse(&file.display().to_string(), &text)?)?;
    }
    Ok(tokens)
}

/// Writes an hkctl config for the local user, unless one exists (a failure only warns).
fn write_client_config(options: &ServeOptions, admin_token: &str) -> Result<()> {
    let Some(path) = options.client_config.as_ref().filter(|p| !p.exists()) else {
        return Ok(());
    };
    let config = ClientConfig {
        server: client_url(options.listen, options.tls.is_some()),
        token: Some(admin_token.to_string()),
        certificate_authority: options.tls.as_ref().map(|t| t.cert.clone()),
    };
    let text = serde_saphyr::to_string(&config).map_err(|e| Error::Config(e.to_string()))?;
    match write_private_file(path, text.as_bytes(), 0o600) {
        Ok(()) => tracing::info!(path = %path.display(), "wrote hkctl config"),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not write hkctl config")
        }
    }
    Ok(())
}

/// The controller side of the process: watchers and caches on every replica, workers
/// while this one leads.
struct Controller {
    ctx: Arc<dyn Context>,
    /// The reconcilers' SSH connections and per-host apply locks (a restore holds one).
    hosts: hostkit_reconcilers::SharedHosts,
    /// The runtime, for its health (`None` with `--controllers none`).
    runtime: Option<Arc<Runtime>>,
    runtime_metrics: RuntimeMetrics,
    reconciler_metrics: hostkit_reconcilers::Metrics,
    /// Flipped at shutdown: no new reconciles.
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    campaign: Option<tokio::task::JoinHandle<()>>,
    /// Releases the leader lease, once in-flight reconciles finished.
    release: tokio::sync::watch::Sender<bool>,
}

impl Controller {
    fn start(options: &ServeOptions, objects: Objects, store: Arc<dyn Store>) -> Controller {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let runtime_metrics = RuntimeMetrics::default();
        let reconciler_metrics = hostkit_reconcilers::Metrics::default();
        let runtime = Runtime::new(objects.clone(), runtime_metrics.clone());
        let wake: Wake = {
            let runtime = runtime.clone();
            Arc::new(move |key, after| runtime.wake(key, after))
        };
        let ctx: Arc<dyn Context> = Arc::new(StoreContext::new(
            objects,
            runtime.cache.clone(),
            Arc::new(chrono::Utc::now),
            wake,
        ));
        let reconcilers = Arc::new(Reconcilers::new(
            ctx.clone(),
            reconciler_metrics.clone(),
            Setup {
                settle: options.settle,
                data_dir: options.data_dir.clone(),
                images: options.images.clone(),
                prometheus_url: options.prometheus_url.clone(),
            },
        ));
        let hosts = reconcilers.hosts();
        control_every_kind(&runtime, reconcilers);
        let (lead_tx, mut lead_rx) = tokio::sync::watch::channel(false);
        // The lease is released only after in-flight reconciles finished: released at the
        // first signal, another controller could take over and change a host this one is
        // still changing.
        let (release, release_rx) = tokio::sync::watch::channel(false);
        let identity = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "hostkit".into()),
            std::process::id(),
            options.listen.port()
        );
        let campaign = options.controller.then(|| {
            tokio::spawn(crate::runtime::leader::campaign(
                store,
                identity,
                options.leader,
                lead_tx,
                release_rx,
            ))
        });
        let leader_gauge = runtime_metrics.leader.clone();
        let mut leader_watch = lead_rx.clone();
        tokio::spawn(async move {
            while leader_watch.changed().await.is_ok() {
                leader_gauge.set(*leader_watch.borrow() as i64);
            }
        });
        let _ = lead_rx.borrow_and_update();
        let run_controller = options.controller;
        let concurrency = options.concurrency;
        let health = run_controller.then(|| runtime.clone());
        let task = tokio::spawn(async move {
            if run_controller {
                runtime.run(Options { concurrency }, lead_rx, stop_rx).await
            }
        });
        Controller {
            ctx,
            hosts,
            runtime: health,
            runtime_metrics,
            reconciler_metrics,
            stop,
            task,
            campaign,
            release,
        }
    }

    /// What the API server serves for the controller: its metrics and live plans.
    fn extras(&self) -> Extras {
        let (runtime, reconcilers) = (
            self.runtime_metrics.clone(),
            self.reconciler_metrics.clone(),
        );
        Extras {
            metrics: Some(Arc::new(move |r: &mut Registry| {
                runtime.register(r);
                reconcilers.register(r);
            })),
            // Plans and logs connect to hosts: only a server that runs controllers does.
            plans: self.runtime.is_some().then(|| {
                Arc::new(ServicePlans(self.ctx.clone())) as Arc<dyn crate::server::LivePlans>
            }),
            logs: self.runtime.is_some().then(|| {
                Arc::new(ServicePlans(self.ctx.clone())) as Arc<dyn crate::server::ServiceLogs>
            }),
            backups: self.runtime.is_some().then(|| {
                Arc::new(crate::live_plans::Backups {
                    ctx: self.ctx.clone(),
                    hosts: self.hosts.clone(),
                }) as Arc<dyn crate::server::ServiceBackups>
            }),
            health: self
                .runtime
                .clone()
                .map(|rt| Arc::new(move || rt.health.check()) as crate::server::Health),
        }
    }

    /// Waits for in-flight reconciles (after `stop`), then releases the leader lease.
    async fn stopped(self) {
        if tokio::time::timeout(Duration::from_secs(120), self.task)
            .await
            .is_err()
        {
            tracing::warn!("an in-flight reconcile did not finish within 120 s");
        }
        let _ = self.release.send(true);
        if let Some(campaign) = self.campaign
            && tokio::time::timeout(Duration::from_secs(5), campaign)
                .await
                .is_err()
        {
            tracing::warn!("could not release the leader lease within 5 s; it expires on its own");
        }
    }
}
