//! Control-plane benchmark: prints figures, asserts nothing about speed.
//!
//! For the embedded store and for a real etcd, with the real binaries (release build):
//! - `hkctl apply -f` of 1,000 Service objects: objects/s;
//! - write-to-watch-event latency (one write at a time, time until its event arrives): p50/p99;
//! - RSS of `hostkit serve` holding 10,000 objects.
//!
//! Beside them, measured in the same run: raw etcd (etcd-client puts, 16 in flight, and
//! etcd's own RSS with the same 10,000 objects), the floor any etcd-backed API sits on.
//!
//! Run: `cargo bench -p hostkit-e2e --bench store` (prints a table; see docs/benchmarks.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hostkit_controller::store::Store;
use hostkit_controller::store::etcd::EtcdStore;
use hostkit_e2e::etcd::EtcdServer;
use hostkit_e2e::server::{Hostkit, stderr};
use serde_json::{Value, json};

fn service(i: usize) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata:\n  name: svc-{i:05}\n  labels:\n    tier: bench\nspec:\n  hosts: [host-{h}]\n  storage:\n    - name: data\n      mode: \"0750\"\n  env:\n    runtime:\n      set:\n        PORT: \"{port}\"\n      secrets:\n        TOKEN: {{env: BENCH_TOKEN}}\n  daemon:\n    exec: [/usr/local/bin/app, --port, \"{port}\"]\n    env: [runtime]\n    isolate:\n      writable: [data]\n      network: loopback\n",
        h = i % 10,
        port = 4000 + i % 1000,
    )
}

fn manifest(
    dir: &std::path::Path,
    name: &str,
    range: std::ops::Range<usize>,
) -> std::path::PathBuf {
    let text: Vec<String> = range.map(service).collect();
    let path = dir.join(name);
    std::fs::write(&path, text.join("---\n")).unwrap();
    path
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn etcd_pid(port_url: &str) -> Option<u32> {
    // The harness's etcd is our child's child of nobody else: find it by its client URL.
    for entry in std::fs::read_dir("/proc").ok()? {
        let entry = entry.ok()?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.starts_with("etcd") && cmdline.contains(port_url) {
            return Some(pid);
        }
    }
    None
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

struct Figures {
    apply_per_sec: f64,
    p50: Duration,
    p99: Duration,
    rss_10k: f64,
}

async fn measure(server: &Hostkit) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let first = manifest(dir.path(), "first.yaml", 0..1000);
    let start = Instant::now();
    let o = server.hkctl(&["apply", "-f", first.to_str().unwrap()]);
    let elapsed = start.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    let apply_per_sec = 1000.0 / elapsed.as_secs_f64();

    // Write-to-watch latency, one write at a time.
    let http = reqwest::Client::new();
    let api = format!("{}/apis/hostkit.dev/v1alpha1/services", server.url);
    let list: Value = http
        .get(&api)
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = http
        .get(format!("{api}?watch=1&resourceVersion={rv}"))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    let mut chunks = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut samples = Vec::new();
    for i in 0..500 {
        let name = format!("svc-{i:05}");
        let mut object: Value = http
            .get(format!("{api}/{name}"))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        object["spec"]["daemon"]["exec"][2] = json!(format!("{}", 9000 + i));
        let t0 = Instant::now();
        let r = http
            .put(format!("{api}/{name}"))
            .bearer_auth(&server.token)
            .json(&object)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        'event: loop {
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let v: Value = serde_json::from_slice(&line).unwrap();
                if v["type"] == "MODIFIED" && v["object"]["metadata"]["name"] == name.as_str() {
                    samples.push(t0.elapsed());
                    break 'event;
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), chunks.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            buf.extend_from_slice(&chunk);
        }
    }
    samples.sort();

    // 10,000 objects held.
    let rest = manifest(dir.path(), "rest.yaml", 1000..10_000);
    let o = server.hkctl(&["apply", "-f", rest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = server.hkctl(&["get", "svc", "-o", "name"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 10_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    Figures {
        apply_per_sec,
        p50: percentile(&samples, 0.50),
        p99: percentile(&samples, 0.99),
        rss_10k: rss_mib(server.pid().unwrap()),
    }
}

async fn raw_etcd_puts(url: &str) -> f64 {
    let store = Arc::new(EtcdStore::connect(&[url.to_string()]).await.unwrap());
    let value = serde_json::to_vec(&json!({"spec": service(0)})).unwrap();
    let start = Instant::now();
    futures::stream::iter(0..1000)
        .map(|i| {
            let store = store.clone();
            let value = value.clone();
            async move {
                store
                    .create(&format!("/raw/{i:05}"), value, None)
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    1000.0 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "HostKit control-plane benchmark ({} cores)\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    let embedded = Hostkit::embedded();
    let e = measure(&embedded).await;
    drop(embedded);

    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap();
    let server = Hostkit::with_etcd(&etcd.url);
    let t = measure(&server).await;
    let etcd_rss = etcd_pid(&etcd.url).map(rss_mib).unwrap_or(f64::NAN);
    drop(server);
    let raw = raw_etcd_puts(&etcd.url).await;

    println!(
        "{:<44} {:>12} {:>12} {:>14}",
        "figure", "embedded", "etcd", "peer: raw etcd"
    );
    println!(
        "{:<44} {:>12.0} {:>12.0} {:>14.0}",
        "hkctl apply, 1,000 objects (objects/s)", e.apply_per_sec, t.apply_per_sec, raw
    );
    println!(
        "{:<44} {:>12.2} {:>12.2} {:>14}",
        "write → watch event p50 (ms)",
        e.p50.as_secs_f64() * 1e3,
        t.p50.as_secs_f64() * 1e3,
        "-"
    );
    println!(
        "{:<44} {:>12.2} {:>12.2} {:>14}",
        "write → watch event p99 (ms)",
        e.p99.as_secs_f64() * 1e3,
        t.p99.as_secs_f64() * 1e3,
        "-"
    );
    println!(
        "{:<44} {:>12.1} {:>12.1} {:>14.1}",
        "RSS of hostkit serve, 10,000 objects (MiB)", e.rss_10k, t.rss_10k, etcd_rss
    );
    println!(
        "\npeer column: etcd-client creates with 16 in flight (objects/s) and etcd's own RSS holding the same objects."
    );
    println!(
        "targets: >= 1000 objects/s embedded; watch p99 < 10 ms; < 150 MiB RSS at 10,000 objects."
    );
}
