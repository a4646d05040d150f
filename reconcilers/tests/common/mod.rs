//! What the Service reconciler's tests share: hosts that are this machine's real shell
//! (the `Local` transport, HostKit's own folder in a temp dir), a recorder for status,
//! events and history, and a pass driven on an injected clock.
#![allow(dead_code)] // each test file uses its own part of it

pub use std::collections::BTreeMap;
pub use std::sync::{Arc, Mutex};

pub use chrono::{DateTime, TimeZone, Utc};
pub use hostkit_api::kinds::{HostSpec, PolicyWindowSpec, ServiceSpec, ServiceStatus};
pub use hostkit_api::meta::ConditionStatus;
pub use hostkit_engine::hosts::Hosts;
pub use hostkit_engine::resource::Resource;
pub use hostkit_engine::run::Run as HistoryRun;
pub use hostkit_engine::secrets::Secrets;
pub use hostkit_engine::transport::{Local, Output, Transport};
pub use hostkit_reconcilers::Note;
pub use hostkit_reconcilers::revision::history::History;
pub use hostkit_reconcilers::service::rollout::{self as service, Input, Report, Sink, Target};
pub use serde_json::json;

/// A host: the local shell, optionally failing every apply script, optionally meeting the
/// other hosts of its wave at a barrier before applying (which proves they run at once).
/// HostKit's own folder (`/var/lib/hostkit`: backups, journals, stamps) lives in a temp dir.
pub struct TestTransport {
    pub name: String,
    pub state: std::path::PathBuf,
    pub local: Local,
    pub fail_apply: bool,
    /// Runs apply scripts, then reports the connection lost (as a controller that died
    /// mid-apply never hears the answer).
    pub lose_answers: std::sync::atomic::AtomicBool,
    pub barrier: Option<Arc<tokio::sync::Barrier>>,
    pub applies: Arc<Mutex<Vec<String>>>,
    /// Every script it was sent: each is one round trip to a real host.
    pub execs: std::sync::atomic::AtomicUsize,
}

impl TestTransport {
    /// What `/hk-host/` in a spec is on this host.
    pub fn root(&self) -> std::path::PathBuf {
        self.state.join("root")
    }
}

pub fn is_apply(script: &str) -> bool {
    script.contains("HK_BEGIN")
}

#[async_trait::async_trait]
impl Transport for TestTransport {
    fn host(&self) -> &str {
        &self.name
    }

    async fn run(&self, script: &str) -> hostkit_engine::Result<Output> {
        self.execs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if is_apply(script) {
            self.applies.lock().unwrap().push(self.name.clone());
            if let Some(b) = &self.barrier {
                let waited =
                    tokio::time::timeout(std::time::Duration::from_secs(10), b.wait()).await;
                assert!(
                    waited.is_ok(),
                    "{}: the rest of its wave never came",
                    self.name
                );
            }
            if self.fail_apply {
                return Ok(Output {
                    status: 0,
                    stdout: b"HK_BEGIN 0\nno space left on device\nHK_END 0 1\n".to_vec(),
                    ..Default::default()
                });
            }
        }
        let state = format!("{}/", self.state.display());
        // `/hk-host/…` is this host's own folder: files there differ from host to host.
        let own = format!("{}/", self.root().display());
        let out = self
            .local
            .run(
                &script
                    .replace("/var/lib/hostkit/", &state)
                    .replace("/hk-host/", &own)
                    // The folder itself, too (a files step moves into it by name).
                    .replace("/hk-host", own.trim_end_matches('/')),
            )
            .await
            .map(|mut o| {
                // The host reports its own paths as the spec names them.
                let text = String::from_utf8_lossy(&o.stdout).replace(&own, "/hk-host/");
                o.stdout = text.into_bytes();
                o
            });
        if is_apply(script) && self.lose_answers.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(hostkit_engine::Error::Transport {
                host: self.name.clone(),
                message: "connection lost".into(),
            });
        }
        out
    }
}

#[derive(Default)]
pub struct TestHosts {
    pub state: Option<tempfile::TempDir>,
    pub transports: BTreeMap<String, Arc<TestTransport>>,
    pub locks: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub applies: Arc<Mutex<Vec<String>>>,
}

impl TestHosts {
    pub fn add(
        &mut self,
        name: &str,
        fail_apply: bool,
        barrier: Option<Arc<tokio::sync::Barrier>>,
    ) {
        let state = self
            .state
            .get_or_insert_with(|| tempfile::tempdir().unwrap())
            .path()
            .join(name);
        std::fs::create_dir_all(state.join("root")).unwrap();
        self.transports.insert(
            name.into(),
            Arc::new(TestTransport {
                state,
                name: name.into(),
                local: Local::new(name, false),
                fail_apply,
                lose_answers: Default::default(),
                barrier,
                applies: self.applies.clone(),
                execs: Default::default(),
            }),
        );
    }

    pub fn lose_answers(&self, name: &str, lose: bool) {
        self.transports[name]
            .lose_answers
            .store(lose, std::sync::atomic::Ordering::SeqCst);
    }

    /// Host `name`'s own folder, which specs name `/hk-host/`.
    pub fn root(&self, name: &str) -> std::path::PathBuf {
        self.transports[name].root()
    }

    /// How many scripts host `name` was sent so far.
    pub fn execs(&self, name: &str) -> usize {
        self.transports[name]
            .execs
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn applied(&self) -> Vec<String> {
        let mut v = self.applies.lock().unwrap().clone();
        v.sort();
        v
    }
}

#[async_trait::async_trait]
impl Hosts for TestHosts {
    async fn transport(
        &self,
        name: &str,
        _spec: &HostSpec,
    ) -> hostkit_engine::Result<Arc<dyn Transport>> {
        match self.transports.get(name) {
            Some(t) => Ok(t.clone()),
            // A host that was never added is one that does not answer.
            None => Err(hostkit_engine::Error::Transport {
                host: name.into(),
                message: "connection refused".into(),
            }),
        }
    }
    fn forget(&self, _name: &str) {}
    async fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self
            .locks
            .lock()
            .unwrap()
            .entry(name.into())
            .or_default()
            .clone();
        m.lock_owned().await
    }
}

/// Status, events and history in memory. History numbers a new digest one past the last,
/// as Revisions do.
#[derive(Default)]
pub struct Recorder {
    pub notes: Mutex<Vec<Note>>,
    pub runs: Mutex<Vec<(String, HistoryRun)>>,
    /// (number, digest, resources) per revision.
    pub revisions: Mutex<Vec<(u64, String, Vec<Resource>)>>,
    /// (host, number) of each run in `runs`.
    pub placed: Mutex<Vec<(String, u64)>>,
    /// `lastHandledRequestedAt` of each status published, in order.
    pub stamps: Mutex<Vec<Option<String>>>,
}

#[async_trait::async_trait]
impl Sink for Recorder {
    async fn publish(&self, status: &ServiceStatus, notes: &[Note]) {
        self.notes.lock().unwrap().extend_from_slice(notes);
        self.stamps
            .lock()
            .unwrap()
            .push(status.last_handled_requested_at.clone());
    }
}

#[async_trait::async_trait]
impl History for Recorder {
    async fn begin(
        &self,
        host: &str,
        run: &HistoryRun,
        digest: &str,
        resources: &[Resource],
    ) -> hostkit_reconcilers::Result<u64> {
        assert!(run.pending, "begin records a pending run");
        let mut revs = self.revisions.lock().unwrap();
        let n = match revs.last() {
            Some((n, d, _)) if d == digest => *n,
            last => {
                let n = last.map_or(1, |(n, _, _)| n + 1);
                revs.push((n, digest.into(), resources.to_vec()));
                n
            }
        };
        self.runs.lock().unwrap().push((host.into(), run.clone()));
        self.placed.lock().unwrap().push((host.into(), n));
        Ok(n)
    }
    async fn complete(
        &self,
        host: &str,
        run: &HistoryRun,
        _n: u64,
    ) -> hostkit_reconcilers::Result<()> {
        let mut runs = self.runs.lock().unwrap();
        let r = runs
            .iter_mut()
            .find(|(h, r)| h == host && r.id == run.id)
            .expect("completes a run it began");
        r.1 = run.clone();
        Ok(())
    }
    async fn forget(&self, host: &str, id: &str, _n: u64) -> hostkit_reconcilers::Result<()> {
        let mut runs = self.runs.lock().unwrap();
        let mut placed = self.placed.lock().unwrap();
        while let Some(i) = runs.iter().position(|(h, r)| h == host && r.id == id) {
            runs.remove(i);
            placed.remove(i);
        }
        Ok(())
    }
    async fn pending(&self, host: &str) -> hostkit_reconcilers::Result<Vec<(u64, HistoryRun)>> {
        let runs = self.runs.lock().unwrap();
        let placed = self.placed.lock().unwrap();
        Ok(runs
            .iter()
            .zip(placed.iter())
            .filter(|((h, r), _)| h == host && r.pending)
            .map(|((_, r), (_, n))| (*n, r.clone()))
            .collect())
    }
    async fn applied(
        &self,
        _host: &str,
        digest: Option<&str>,
    ) -> hostkit_reconcilers::Result<Option<Vec<Resource>>> {
        let revs = self.revisions.lock().unwrap();
        Ok(revs
            .iter()
            .rev()
            .find(|(_, d, _)| Some(d.as_str()) == digest)
            .map(|(_, _, r)| r.clone()))
    }
    async fn runs_of(
        &self,
        host: &str,
        digest: &str,
    ) -> hostkit_reconcilers::Result<Vec<HistoryRun>> {
        Ok(self.runs_in(host, digest))
    }
}

impl Recorder {
    /// See [`History::runs_of`].
    fn runs_in(&self, host: &str, digest: &str) -> Vec<HistoryRun> {
        let revs = self.revisions.lock().unwrap();
        let runs = self.runs.lock().unwrap();
        let placed = self.placed.lock().unwrap();
        runs.iter()
            .zip(placed.iter())
            .filter(|((h, r), (_, n))| {
                h == host && !r.pending && revs.iter().any(|(m, d, _)| m == n && d == digest)
            })
            .map(|((_, r), _)| r.clone())
            .collect()
    }

    /// The runs history keeps now (pending or not).
    pub fn kept(&self) -> Vec<(String, HistoryRun)> {
        self.runs.lock().unwrap().clone()
    }
}

pub fn target(name: &str) -> Target {
    Target {
        name: name.into(),
        spec: serde_json::from_value(json!({"address": "127.0.0.1"})).unwrap(),
        labels: BTreeMap::new(),
        lock: Default::default(),
    }
}

pub fn spec(
    dir: &std::path::Path,
    version: &str,
    hosts: &[&str],
    max_parallel: u32,
) -> ServiceSpec {
    serde_json::from_value(json!({
        "hosts": hosts,
        "rollout": {"maxParallel": max_parallel},
        "files": [{"path": dir.join("version.txt"), "content": format!("{version}\n")}],
    }))
    .unwrap()
}

pub fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0).unwrap()
}

pub struct Run<'a> {
    pub spec: &'a ServiceSpec,
    pub hosts: &'a [&'a str],
    pub status: ServiceStatus,
    pub windows: &'a [(String, PolicyWindowSpec)],
    pub now: DateTime<Utc>,
    pub generation: i64,
}

pub async fn reconcile(run: Run<'_>, hosts: &TestHosts, sink: &Recorder) -> Report {
    reconcile_asked(run, None, hosts, sink).await
}

/// [`reconcile`] of a Service whose `hostkit.dev/requestedAt` is `requested`.
pub async fn reconcile_asked(
    run: Run<'_>,
    requested: Option<&str>,
    hosts: &TestHosts,
    sink: &Recorder,
) -> Report {
    reconcile_annotated(
        run,
        Asked {
            requested,
            ..Default::default()
        },
        hosts,
        sink,
    )
    .await
}

/// What the Service's annotations ask of a pass (`hkctl reconcile`, `hkctl rollout`).
#[derive(Default)]
pub struct Asked<'a> {
    pub requested: Option<&'a str>,
    pub resume: Option<&'a str>,
    pub abort: Option<&'a str>,
    /// The Prometheus `rollout.analysis` asks.
    pub prometheus: Option<&'a str>,
}

pub async fn reconcile_annotated(
    run: Run<'_>,
    asked: Asked<'_>,
    hosts: &TestHosts,
    sink: &Recorder,
) -> Report {
    let labels = BTreeMap::new();
    let secrets = Secrets::default();
    let analyst =
        hostkit_reconcilers::analysis::Prometheus::new(asked.prometheus.map(String::from));
    service::reconcile(
        Input {
            name: "web",
            labels: &labels,
            spec: run.spec,
            generation: run.generation,
            project: None,
            targets: run.hosts.iter().map(|h| target(h)).collect(),
            status: run.status,
            windows: run.windows,
            now: run.now,
            secrets: &secrets,
            settle: std::time::Duration::ZERO,
            hold: None,
            recheck_hold: None,
            held: Vec::new(),
            revisions: Vec::new(),
            requested: asked.requested.map(String::from),
            resume: asked.resume.map(String::from),
            abort: asked.abort.map(String::from),
            analyst: &analyst,
            source: Default::default(),
        },
        hosts,
        sink,
        sink,
    )
    .await
}

pub fn condition(status: &ServiceStatus, type_: &str) -> (ConditionStatus, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"));
    (c.status, c.reason.clone())
}

/// A real Prometheus scraping a test exporter whose `test_errors` gauge the test sets.
pub struct PromWithExporter {
    prometheus: std::process::Child,
    port: u16,
    errors: Arc<std::sync::atomic::AtomicU64>,
    _dir: tempfile::TempDir,
}

impl Drop for PromWithExporter {
    fn drop(&mut self) {
        let _ = self.prometheus.kill();
        let _ = self.prometheus.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PromWithExporter {
    pub fn start() -> PromWithExporter {
        use std::io::{Read, Write};
        let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let exporter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let exporter_port = exporter.local_addr().unwrap().port();
        let gauge = errors.clone();
        std::thread::spawn(move || {
            for s in exporter.incoming() {
                let Ok(mut s) = s else { continue };
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                let body = format!(
                    "# TYPE test_errors gauge\ntest_errors {}\n",
                    gauge.load(std::sync::atomic::Ordering::SeqCst)
                );
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: exporter\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
            ),
        )
        .unwrap();
        let prometheus = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus");
        PromWithExporter {
            prometheus,
            port,
            errors,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until Prometheus answers `query` with a series (it scrapes every second).
    pub async fn wait_for(&self, query: &str) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            let answer = match client
                .get(format!("{}/api/v1/query", self.url()))
                .query(&[("query", query)])
                .send()
                .await
            {
                Ok(r) => r.json::<serde_json::Value>().await.ok(),
                Err(_) => None,
            };
            if answer.is_some_and(|a| {
                a["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            }) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("Prometheus never answered {query:?} with a series");
    }

    pub async fn set_errors(&self, n: u64) {
        self.errors.store(n, std::sync::atomic::Ordering::SeqCst);
        self.wait_for(&format!("test_errors == {n}")).await;
    }
}
