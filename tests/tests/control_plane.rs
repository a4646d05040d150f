//! End to end: the real `hostkit serve` (embedded store, then a real etcd) and every hkctl
//! verb, as an operator would use them.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use hostkit_e2e::etcd::EtcdServer;
use hostkit_e2e::server::{Hostkit, ServeOptions, examples_dir, stderr, stdout};
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

const API: &str = "/apis/hostkit.dev/v1alpha1";

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let server = hostkit_e2e::server::Hostkit::embedded();
                super::$name(server, None).await;
            })*
        }
        mod etcd {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let etcd = tokio::task::spawn_blocking(hostkit_e2e::etcd::EtcdServer::start).await.unwrap();
                let server = hostkit_e2e::server::Hostkit::with_etcd(&etcd.url);
                super::$name(server, Some(etcd)).await;
            })*
        }
    };
}

both_backends!(
    every_hkctl_verb,
    restart_keeps_objects_and_resumes_watches,
    concurrent_updates_one_wins_the_other_conflicts,
    finalizers_hold_deletion_until_released,
);

async fn every_hkctl_verb(s: Hostkit, _etcd: Option<EtcdServer>) {
    let examples = examples_dir().display().to_string();
    // apply: every shared example, unchanged.
    let o = s.hkctl(&["apply", "-f", &examples]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for line in [
        "service/exograph created",
        "host/elixir-toys created",
        "project/toys created",
        "policywindow/weeknights created",
        "rollback/exograph-undo created",
        "gitsource/infra created",
        "instance/demo-vm created",
        "service/api created",
        "service/hex-mirror created",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let o = s.hkctl(&["apply", "-f", &examples]);
    assert!(
        stdout(&o).lines().all(|l| l.ends_with(" unchanged")),
        "{}",
        stdout(&o)
    );

    // get: table, wide, selectors, name, json, yaml.
    let o = s.hkctl(&["get", "services"]);
    let table = stdout(&o);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME ") && header.ends_with("AGE"),
        "{table}"
    );
    assert!(
        header.contains("READY") && header.contains("STATUS"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 4, "{table}");
    let o = s.hkctl(&["get", "svc", "-l", "tier=search", "-o", "name"]);
    assert_eq!(stdout(&o), "service/exograph\n");
    let o = s.hkctl(&["get", "svc", "-o", "wide"]);
    assert!(
        stdout(&o).lines().next().unwrap().contains("PROJECT"),
        "{}",
        stdout(&o)
    );
    let o = s.hkctl(&["get", "svc", "exograph", "-o", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["spec"]["daemon"]["restart"], "on-failure");
    assert_eq!(v["metadata"]["generation"], 1);
    let o = s.hkctl(&["get", "hosts", "-o", "yaml"]);
    assert!(
        stdout(&o).contains("kind: List") && stdout(&o).contains("address: elixir.toys"),
        "{}",
        stdout(&o)
    );
    for short in ["host", "inst", "pw", "rb", "rev", "gs", "svc"] {
        assert!(s.hkctl(&["get", short]).status.success(), "get {short}");
    }

    // events and describe.
    let event = json!({
        "apiVersion": "hostkit.dev/v1alpha1", "kind": "Event", "metadata": {"name": "exograph.e2e"},
        "spec": {"involvedObject": {"kind": "Service", "name": "exograph"}, "type": "Warning",
                 "reason": "DriftDetected", "message": "file:/etc/toys/exograph/runtime.env changed", "source": "e2e"}
    });
    let r = http()
        .post(format!("{}{API}/events", s.url))
        .bearer_auth(&s.token)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let o = s.hkctl(&["describe", "service", "exograph"]);
    let d = stdout(&o);
    assert!(
        d.contains("Name:         exograph") && d.contains("Conditions:") && d.contains("Events:"),
        "{d}"
    );
    assert!(
        d.contains("DriftDetected") && d.contains("runtime.env changed"),
        "{d}"
    );
    let o = s.hkctl(&["events", "--for", "service/exograph"]);
    assert!(
        stdout(&o).contains("service/exograph") && stdout(&o).contains("DriftDetected"),
        "{}",
        stdout(&o)
    );

    // diff: nothing, then a change (exit 1 with a unified diff).
    let toys = examples_dir().join("toys.yaml");
    let o = s.hkctl(&["diff", "-f", toys.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let changed = s.dir().join("toys.yaml");
    std::fs::write(
        &changed,
        std::fs::read_to_string(&toys)
            .unwrap()
            .replace("\"4200\"", "\"4300\""),
    )
    .unwrap();
    let o = s.hkctl(&["diff", "-f", changed.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("-    - \"4200\"\n+    - \"4300\""),
        "{}",
        stdout(&o)
    );
    let o = s.hkctl(&["apply", "-f", changed.to_str().unwrap(), "--dry-run=server"]);
    assert!(
        stdout(&o).contains("service/exograph configured (server dry run)"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        s.hkctl(&["diff", "-f", changed.to_str().unwrap()])
            .status
            .code(),
        Some(1),
        "dry run stored nothing"
    );
    let o = s.hkctl(&["apply", "-f", changed.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("service/exograph configured"),
        "{}",
        stdout(&o)
    );
    let v: Value =
        serde_json::from_slice(&s.hkctl(&["get", "svc/exograph", "-o", "json"]).stdout).unwrap();
    assert_eq!(v["metadata"]["generation"], 2);

    // bad input: named file, line, object and field; the good document still applies.
    let bad = s.dir().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata:\n  name: fine\n---\napiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  hosts: [a]\n  daemon:\n    exec: [/bin/x]\n    restart: sometimes\n",
    )
    .unwrap();
    let o = s.hkctl(&["apply", "-f", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("project/fine created"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("bad.yaml:14: Service/broken spec.daemon.restart: \"sometimes\" is not one of no, on-success, on-failure"),
        "{}",
        stderr(&o)
    );
    assert!(
        !s.hkctl(&["get", "svc", "broken"]).status.success(),
        "nothing of the bad document was stored"
    );

    // delete, then get fails with the server's message.
    let o = s.hkctl(&["delete", "svc", "api"]);
    assert_eq!(stdout(&o), "service/api deleted\n");
    let o = s.hkctl(&["get", "svc", "api"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).matches("Service \"api\" not found").count(),
        1,
        "said once: {}",
        stderr(&o)
    );
    // Found and missing names together: the found one is printed, the missing one is an
    // error, and the exit code says something was missing (as kubectl).
    let o = s.hkctl(&["get", "svc", "exograph", "api"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("exograph"), "{}", stdout(&o));
    assert_eq!(stderr(&o).matches("not found").count(), 1, "{}", stderr(&o));
    let o = s.hkctl(&["delete", "-f", toys.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("service/exograph deleted")
            && stdout(&o).contains("project/toys deleted"),
        "{}",
        stdout(&o)
    );

    // explain, version, completion.
    let o = s.hkctl(&["explain", "service.spec.daemon.restart"]);
    assert!(stdout(&o).contains("on-failure"), "{}", stdout(&o));
    let o = s.hkctl(&["version"]);
    assert!(stdout(&o).contains("Server Version: "), "{}", stdout(&o));
    let o = s.hkctl(&["completion", "bash"]);
    assert!(stdout(&o).contains("_hkctl"), "bash completion script");
}

async fn restart_keeps_objects_and_resumes_watches(mut s: Hostkit, _etcd: Option<EtcdServer>) {
    let o = s.hkctl(&["apply", "-f", &examples_dir().display().to_string()]);
    assert!(o.status.success());
    let list: Value = http()
        .get(format!("{}{API}/services", s.url))
        .bearer_auth(&s.token)
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
    s.restart();
    let o = s.hkctl(&["get", "svc", "-o", "name"]);
    assert_eq!(
        stdout(&o),
        "service/api\nservice/exograph\nservice/hex-mirror\n"
    );
    // A watch from the resourceVersion taken before the restart sees what happened after it.
    let o = s.hkctl(&["delete", "svc", "api"]);
    assert!(o.status.success());
    let mut resp = http()
        .get(format!(
            "{}{API}/services?watch=1&resourceVersion={rv}",
            s.url
        ))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !buf.contains("\"DELETED\"") {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("a DELETED event")
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
    let deleted: Value =
        serde_json::from_str(buf.lines().find(|l| l.contains("\"DELETED\"")).unwrap()).unwrap();
    assert_eq!(deleted["object"]["metadata"]["name"], "api");
}

async fn concurrent_updates_one_wins_the_other_conflicts(s: Hostkit, _etcd: Option<EtcdServer>) {
    let o = s.hkctl(&[
        "apply",
        "-f",
        examples_dir().join("toys.yaml").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let url = format!("{}{API}/services/exograph", s.url);
    let current: Value = http()
        .get(&url)
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let put = |port: &str| {
        let mut body = current.clone();
        body["spec"]["daemon"]["exec"][4] = json!(port);
        http().put(&url).bearer_auth(&s.token).json(&body).send()
    };
    let (a, b) = tokio::join!(put("5001"), put("5002"));
    let mut codes = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    codes.sort();
    assert_eq!(codes, [200, 409]);
    let stale = put("5003").await.unwrap();
    assert_eq!(stale.status(), 409);
    let status: Value = stale.json().await.unwrap();
    assert_eq!(status["reason"], "Conflict");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("get it again and retry"),
        "{status}"
    );
}

/// etcd compaction (`etcdctl compact`) reaches API clients as 410 Expired: re-list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watch_from_a_compacted_revision_is_told_to_relist() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap();
    let s = Hostkit::with_etcd(&etcd.url);
    let first = s.hkctl(&[
        "apply",
        "-f",
        examples_dir().join("toys.yaml").to_str().unwrap(),
    ]);
    assert!(first.status.success());
    let url = format!("{}{API}/services/exograph", s.url);
    let old: Value = http()
        .get(&url)
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old_rv = old["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut current = old.clone();
    for i in 0..30 {
        current["spec"]["daemon"]["exec"][4] = json!(format!("{}", 6000 + i));
        current = http()
            .put(&url)
            .bearer_auth(&s.token)
            .json(&current)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    }
    let head: i64 = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let store =
        hostkit_controller::store::etcd::EtcdStore::connect(std::slice::from_ref(&etcd.url))
            .await
            .unwrap();
    hostkit_controller::store::Store::compact(&store, head)
        .await
        .unwrap();
    let r = http()
        .get(format!(
            "{}{API}/services?watch=1&resourceVersion={old_rv}",
            s.url
        ))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["reason"], "Expired");
    assert!(
        status["message"].as_str().unwrap().contains("too old"),
        "{status}"
    );
    assert!(
        status["message"].as_str().unwrap().contains("re-list"),
        "{status}"
    );
}

async fn finalizers_hold_deletion_until_released(s: Hostkit, _etcd: Option<EtcdServer>) {
    let manifest = s.dir().join("p.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata:\n  name: held\n  finalizers: [hostkit.dev/cleanup]\n",
    )
    .unwrap();
    assert!(
        s.hkctl(&["apply", "-f", manifest.to_str().unwrap()])
            .status
            .success()
    );
    let waiting = s
        .hkctl_command(&["delete", "project", "held", "--wait", "--timeout", "20s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("{}{API}/projects/held", s.url);
    let mut marked = None;
    for _ in 0..100 {
        let v: Value = http()
            .get(&url)
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["metadata"]["deletionTimestamp"].is_string() {
            marked = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut v = marked.expect("delete sets deletionTimestamp while a finalizer is there");
    v["metadata"]["finalizers"] = json!([]);
    let r = http()
        .put(&url)
        .bearer_auth(&s.token)
        .json(&v)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = tokio::task::spawn_blocking(move || waiting.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("project/held deletion requested") && text.contains("project/held deleted"),
        "{text}"
    );
    let r = http().get(&url).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// The embedded store's bounded history: a watch older than the last N events is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_watch_history_is_bounded() {
    let s = Hostkit::start(ServeOptions {
        etcd: None,
        controller: false,
        extra_args: vec!["--watch-history".into(), "10".into()],
        ..Default::default()
    });
    assert!(
        s.hkctl(&[
            "apply",
            "-f",
            examples_dir().join("toys.yaml").to_str().unwrap()
        ])
        .status
        .success()
    );
    let url = format!("{}{API}/services/exograph", s.url);
    let mut current: Value = http()
        .get(&url)
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old_rv = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..15 {
        current["spec"]["daemon"]["exec"][4] = json!(format!("{}", 7000 + i));
        current = http()
            .put(&url)
            .bearer_auth(&s.token)
            .json(&current)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    }
    let r = http()
        .get(format!(
            "{}{API}/services?watch=1&resourceVersion={old_rv}",
            s.url
        ))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let recent = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .unwrap()
        - 3;
    let r = http()
        .get(format!(
            "{}{API}/services?watch=1&resourceVersion={recent}",
            s.url
        ))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// `hkctl get -w` prints the table, then a row per change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_changes_as_they_happen() {
    let s = Hostkit::embedded();
    assert!(
        s.hkctl(&[
            "apply",
            "-f",
            examples_dir().join("toys.yaml").to_str().unwrap()
        ])
        .status
        .success()
    );
    let mut watcher = s
        .hkctl_command(&["get", "svc", "-w"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(first.starts_with("NAME"), "{first}");
    assert!(
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap()
            .starts_with("exograph")
    );
    assert!(
        s.hkctl(&[
            "apply",
            "-f",
            examples_dir().join("full-host.yaml").to_str().unwrap()
        ])
        .status
        .success()
    );
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.starts_with("api ")) {
        seen.push(
            rx.recv_timeout(Duration::from_secs(10))
                .expect("a row for the new service"),
        );
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
}

/// Tokens: none → 401, read-only → may read but not write (403), admin → may write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_separate_readers_from_writers() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "# e2e\nreader-token-0123456789,reader,read-only\nwriter-token-0123456789,writer,admin\n",
    )
    .unwrap();
    let s = Hostkit::start(ServeOptions {
        etcd: None,
        controller: false,
        extra_args: vec!["--tokens".into(), tokens.display().to_string()],
        ..Default::default()
    });
    let list = format!("{}{API}/projects", s.url);
    assert_eq!(http().get(&list).send().await.unwrap().status(), 401);
    assert_eq!(
        http()
            .get(&list)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http()
            .get(&list)
            .bearer_auth("reader-token-0123456789")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let body =
        json!({"apiVersion": "hostkit.dev/v1alpha1", "kind": "Project", "metadata": {"name": "p"}});
    let r = http()
        .post(&list)
        .bearer_auth("reader-token-0123456789")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http()
        .post(&list)
        .bearer_auth("writer-token-0123456789")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // hkctl reports the server's answer and fails.
    let o = s
        .hkctl_command(&[
            "apply",
            "-f",
            examples_dir().join("toys.yaml").to_str().unwrap(),
        ])
        .env("HKCTL_TOKEN", "reader-token-0123456789")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("may only read"), "{}", stderr(&o));
    // /healthz, /readyz and /metrics need no token.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            http()
                .get(format!("{}{path}", s.url))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let metrics = http()
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "hostkit_api_requests_total{verb=\"POST\",resource=\"projects\",code=\"403\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("hostkit_build_info"), "{metrics}");
    assert!(
        metrics.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
}

/// HTTPS with a given certificate; hkctl trusts it through the config's CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let s = Hostkit::start(ServeOptions {
        etcd: None,
        controller: false,
        extra_args: vec![
            "--tls-cert".into(),
            cert_path.display().to_string(),
            "--tls-key".into(),
            key_path.display().to_string(),
        ],
        ..Default::default()
    });
    let config = std::fs::read_to_string(s.config_path()).unwrap();
    assert!(
        config.contains(&format!("https://127.0.0.1:{}", s.port)),
        "{config}"
    );
    assert!(config.contains("certificateAuthority"), "{config}");
    let mut ok = false;
    for _ in 0..50 {
        let o = s.hkctl(&[
            "apply",
            "-f",
            examples_dir().join("toys.yaml").to_str().unwrap(),
        ]);
        if o.status.success() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "hkctl works over HTTPS");
    let o = s.hkctl(&["get", "svc", "-o", "name"]);
    assert_eq!(stdout(&o), "service/exograph\n");
    // A client without the CA refuses the certificate.
    let no_ca = dir.path().join("no-ca.yaml");
    std::fs::write(
        &no_ca,
        format!("server: https://127.0.0.1:{}\ntoken: {}\n", s.port, s.token),
    )
    .unwrap();
    let o = s
        .hkctl_command(&["get", "svc"])
        .env("HKCTL_CONFIG", &no_ca)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot reach"), "{}", stderr(&o));
}

/// Two servers on one etcd see each other's writes and watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_etcd_share_objects_and_watches() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap();
    let a = Hostkit::with_etcd(&etcd.url);
    let b = Hostkit::with_etcd(&etcd.url);
    let mut resp = http()
        .get(format!("{}{API}/services?watch=1", b.url))
        .bearer_auth(&b.token)
        .send()
        .await
        .unwrap();
    assert!(
        a.hkctl(&[
            "apply",
            "-f",
            examples_dir().join("toys.yaml").to_str().unwrap()
        ])
        .status
        .success()
    );
    let o = b.hkctl(&["get", "svc", "-o", "name"]);
    assert_eq!(stdout(&o), "service/exograph\n");
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !buf.contains("\"ADDED\"") {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("B sees A's write")
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(buf.contains("exograph"), "{buf}");
}

/// A log file gets plain text: colour codes only when stderr is a terminal.
#[test]
fn the_server_log_has_no_colour_codes_when_it_is_a_file() {
    let s = Hostkit::start(ServeOptions {
        env: vec![("RUST_LOG".into(), "info".into())],
        ..Default::default()
    });
    let log = s.log();
    assert!(log.contains("listening"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in the log file:\n{log:?}"
    );
}
