//! Every renderer's output passes the real tool: `systemd-analyze verify` (any stderr is
//! a failure), `nft -c -f` in a throwaway network namespace, `caddy validate`.

use std::path::{Path, PathBuf};
use std::process::Command;

use hostkit_api::kinds::SandboxProfile;
use hostkit_engine::offline::manifests::Desired;
use hostkit_engine::resource::{FileRole, Resource, Spec};

fn examples() -> Desired {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    let mut d = Desired::load(&[dir]).expect("examples load");
    // ExecStart must exist on the checking machine.
    for s in d.services.values_mut() {
        if let Some(daemon) = &mut s.spec.daemon {
            daemon.exec = vec!["/bin/sleep".into(), "100% $HOME \"quoted arg\"".into()];
            daemon.working_directory = None;
        }
        for j in &mut s.spec.jobs {
            j.exec = vec!["/bin/true".into()];
        }
        for c in &mut s.spec.commands {
            c.exec = vec!["/bin/true".into()];
        }
    }
    d
}

fn all_resources(d: &Desired) -> Vec<Resource> {
    d.hosts
        .keys()
        .flat_map(|h| d.resources_for(h).expect("expand"))
        .collect()
}

fn files_of(resources: &[Resource], role: FileRole) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::File {
                path,
                content,
                role: ro,
                ..
            } if *ro == role => Some((path.clone(), content.text.clone())),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn verify_units(dir: &Path, units: &[(String, String)]) {
    assert!(!units.is_empty());
    for (path, text) in units {
        let name = Path::new(path).file_name().unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }
    for (path, text) in units {
        let name = Path::new(path).file_name().unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.join(name))
            .env("SYSTEMD_LOG_LEVEL", "warning")
            .output()
            .expect("systemd-analyze");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Users are created on the target host, not here; everything else must be clean.
        let problems: Vec<&str> = stderr
            .lines()
            .filter(|l| {
                !l.contains("Failed to resolve user")
                    && !l.contains("Failed to resolve group")
                    && !l.contains("Unknown user")
                    && !l.trim().is_empty()
            })
            .collect();
        assert!(
            out.status.success() && problems.is_empty(),
            "{path}:\n{text}\n{stderr}"
        );
    }
}

#[test]
fn every_rendered_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = examples();
    let mut units = files_of(&all_resources(&d), FileRole::Unit);
    // Every sandbox profile, with the resource and network options.
    let base = d.services["exograph"].clone();
    for (i, profile) in [
        SandboxProfile::WebService,
        SandboxProfile::StrictWeb,
        SandboxProfile::StrictApp,
        SandboxProfile::Untrusted,
        SandboxProfile::VibeDev,
        SandboxProfile::None,
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = base.clone();
        let iso = s.spec.daemon.as_mut().unwrap().isolate.as_mut().unwrap();
        iso.profile = Some(profile);
        iso.memory_high = Some("256M".into());
        iso.cpu_quota = Some("75%".into());
        iso.tasks_max = Some(64);
        iso.private_network = Some(i % 2 == 0);
        s.spec.daemon.as_mut().unwrap().name = Some(format!("profile-{i}.service"));
        d.services.insert(format!("p{i}"), s);
    }
    // Logging directives, each target kind once.
    for (i, (stdout, stderr)) in [
        ("journal", "inherit"),
        ("null", "journal"),
        ("file:/var/log/hk/out.log", "append:/var/log/hk/err.log"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = base.clone();
        let daemon = s.spec.daemon.as_mut().unwrap();
        daemon.name = Some(format!("logs-{i}.service"));
        daemon.logs = Some(
            serde_json::from_value(serde_json::json!({
                "identifier": format!("hk-logs-{i}"),
                "stdout": stdout,
                "stderr": stderr,
                "rateLimit": {"interval": "30s", "burst": 500},
            }))
            .unwrap(),
        );
        d.services.insert(format!("l{i}"), s);
    }
    // Network policies: a CIDR allow list under `deny: any`, and a deny list alone.
    for (i, network) in [
        serde_json::json!({"allow": ["loopback", "10.44.0.0/24", "fd00::/8"], "deny": "any"}),
        serde_json::json!({"deny": ["192.0.2.0/24", "multicast"]}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = base.clone();
        let daemon = s.spec.daemon.as_mut().unwrap();
        daemon.name = Some(format!("net-{i}.service"));
        daemon.isolate.as_mut().unwrap().network = Some(serde_json::from_value(network).unwrap());
        d.services.insert(format!("n{i}"), s);
    }
    units.extend(files_of(&all_resources(&d), FileRole::Unit));
    units.sort();
    units.dedup();
    assert!(units.len() >= 15, "{}", units.len());
    let unit = |name: &str| {
        units
            .iter()
            .find(|(p, _)| p.ends_with(name))
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("{name} rendered"))
    };
    let net = unit("net-0.service");
    for line in [
        "IPAddressDeny=any",
        "IPAddressAllow=localhost 10.44.0.0/24 fd00::/8",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ] {
        assert!(net.lines().any(|l| l == line), "{line} in\n{net}");
    }
    let net = unit("net-1.service");
    assert!(
        net.lines()
            .any(|l| l == "IPAddressDeny=192.0.2.0/24 multicast"),
        "{net}"
    );
    assert!(!net.contains("IPAddressAllow="), "{net}");
    let logged = units
        .iter()
        .find(|(p, _)| p.ends_with("logs-2.service"))
        .map(|(_, t)| t.clone())
        .expect("the logging unit");
    for line in [
        "SyslogIdentifier=hk-logs-2",
        "StandardOutput=file:/var/log/hk/out.log",
        "StandardError=append:/var/log/hk/err.log",
        "LogRateLimitIntervalSec=30s",
        "LogRateLimitBurst=500",
    ] {
        assert!(logged.lines().any(|l| l == line), "{line} in\n{logged}");
    }
    verify_units(dir.path(), &units);
    // The check can fail: a bad directive value is reported.
    let bad = dir.path().join("bad.service");
    std::fs::write(
        &bad,
        "[Service]\nExecStart=/bin/true\nProtectSystem=sometimes\n",
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ProtectSystem")
            || String::from_utf8_lossy(&out.stderr).contains("protect system")
    );
}

#[test]
fn every_rendered_ruleset_passes_nft_check() {
    let d = examples();
    let rulesets = files_of(&all_resources(&d), FileRole::Firewall);
    assert!(!rulesets.is_empty());
    let dir = tempfile::tempdir().unwrap();
    for (i, (path, text)) in rulesets.iter().enumerate() {
        let f = dir.path().join(format!("{i}.nft"));
        std::fs::write(&f, text).unwrap();
        let out = Command::new("unshare")
            .args(["-n", "nft", "-c", "-f"])
            .arg(&f)
            .output()
            .expect("unshare nft");
        assert!(
            out.status.success(),
            "{path}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A bad ruleset is caught by the same check (so the check can fail).
    let bad = dir.path().join("bad.nft");
    std::fs::write(
        &bad,
        "table inet hostkit { chain input { tcp dport 99999 accept; } }\n",
    )
    .unwrap();
    let out = Command::new("unshare")
        .args(["-n", "nft", "-c", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn every_rendered_caddy_site_passes_caddy_validate() {
    let d = examples();
    let sites = files_of(&all_resources(&d), FileRole::Caddy);
    assert!(!sites.is_empty());
    let dir = tempfile::tempdir().unwrap();
    for (i, (path, text)) in sites.iter().enumerate() {
        let f = dir.path().join(format!("{i}.caddyfile"));
        std::fs::write(&f, text).unwrap();
        let out = Command::new("caddy")
            .args(["validate", "--adapter", "caddyfile", "--config"])
            .arg(&f)
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .env("HOME", dir.path())
            .output()
            .expect("caddy");
        assert!(
            out.status.success(),
            "{path}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
