//! Input a hostile user sends is refused with the field it came in, before anything is stored
//! or rendered: line breaks and control characters where a line-based format would read
//! them as a new directive, paths that climb out of where they point, addresses an SSH client
//! reads as options, lists where mappings belong, durations that overflow, sizes that would
//! cost the server memory.

use hostkit_api::AnyObject;
use serde_json::{Value, json};

fn service(spec: Value) -> Value {
    json!({"apiVersion": "hostkit.dev/v1alpha1", "kind": "Service",
           "metadata": {"name": "web"}, "spec": spec})
}

/// The field paths of the problems of an object (decoding or validation).
fn problems(v: Value) -> Vec<String> {
    match AnyObject::from_value(v) {
        Err(e) => vec![format!("{}: {}", e.field, e.message)],
        Ok(o) => o
            .validate()
            .into_iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect(),
    }
}

#[track_caller]
fn refused(v: Value, field: &str) {
    let p = problems(v);
    assert!(
        p.iter().any(|e| e.starts_with(field)),
        "expected a problem at {field}, got {p:?}"
    );
}

fn daemon(extra: Value) -> Value {
    let mut d = json!({"exec": ["/usr/bin/app"]});
    for (k, v) in extra.as_object().unwrap() {
        d[k] = v.clone();
    }
    service(json!({"hosts": ["h1"], "daemon": d}))
}

#[test]
fn line_breaks_cannot_add_unit_directives() {
    let inject = "harmless\n[Service]\nExecStartPre=+/bin/sh -c 'id > /root/x'";
    refused(
        daemon(json!({"description": inject, "isolate": {"profile": "strict_app"}})),
        "spec.daemon.description",
    );
    refused(daemon(json!({"after": [inject]})), "spec.daemon.after[0]");
    refused(
        daemon(json!({"wants": ["x.service\nExecStart=/bin/id"]})),
        "spec.daemon.wants[0]",
    );
    refused(
        daemon(json!({"group": "web\nUser=root"})),
        "spec.daemon.group",
    );
    refused(
        daemon(json!({"exec": ["/bin/app", "a\u{0}b"]})),
        "spec.daemon.exec[1]",
    );
    refused(
        daemon(json!({"workingDirectory": "/srv\u{0}"})),
        "spec.daemon.workingDirectory",
    );
    refused(
        daemon(json!({"environment": {"A": "1\nB=2"}})),
        "spec.daemon.environment.A",
    );
    // A trailing backslash joins the next line of a unit file to this one.
    refused(
        daemon(json!({"description": "harmless\\"})),
        "spec.daemon.description",
    );
    refused(
        daemon(json!({"after": ["network.target\\"]})),
        "spec.daemon.after[0]",
    );
    let job = |j: Value| {
        let mut base = json!({"name": "nightly", "exec": ["/bin/true"],
                              "schedule": {"onCalendar": ["daily"]}});
        for (k, v) in j.as_object().unwrap() {
            base[k] = v.clone();
        }
        service(json!({"hosts": ["h1"], "jobs": [base]}))
    };
    refused(
        job(json!({"schedule": {"onCalendar": ["daily\nExecStart=/bin/id"]}})),
        "spec.jobs[0].schedule.onCalendar[0]",
    );
    refused(
        job(json!({"schedule": {"onCalendar": ["daily \\"]}})),
        "spec.jobs[0].schedule.onCalendar[0]",
    );
    refused(
        job(json!({"description": "a\rb"})),
        "spec.jobs[0].description",
    );
    refused(
        service(json!({"hosts": ["h1"], "env": {"runtime": {"set": {"A": "x\ny"}}}})),
        "spec.env.runtime.set.A",
    );
}

#[test]
fn file_contents_may_hold_line_breaks() {
    let ok = service(json!({"hosts": ["h1"],
        "files": [{"path": "/etc/app/motd", "content": "line 1\nline 2\n"}]}));
    assert_eq!(problems(ok), Vec::<String>::new());
}

#[test]
fn paths_stay_where_they_point() {
    for (bad, why) in [
        ("/etc/p1/../../etc/cron.d/evil", "'..'"),
        ("/", "root folder"),
        ("/etc/x\n", "control character"),
        ("/etc/\u{0}x", "control character"),
        ("/etc//x", "empty part"),
        ("/etc/./x", "\".\""),
        ("/etc/x/", "ends with '/'"),
        ("etc/x", "absolute"),
    ] {
        let p = problems(service(
            json!({"hosts": ["h1"], "files": [{"path": bad, "content": "x"}]}),
        ));
        assert!(
            p.iter()
                .any(|e| e.starts_with("spec.files[0].path") && e.contains(why)),
            "{bad:?}: {p:?}"
        );
    }
    let project = json!({"apiVersion": "hostkit.dev/v1alpha1", "kind": "Project",
        "metadata": {"name": "shop"}, "spec": {"roots": {"data": "/srv/../etc"}}});
    refused(project, "spec.roots.data");
}

#[test]
fn a_host_address_is_a_name_or_an_ip_never_an_option_or_a_command() {
    let host = |address: &str| {
        json!({"apiVersion": "hostkit.dev/v1alpha1", "kind": "Host",
               "metadata": {"name": "h1"}, "spec": {"address": address}})
    };
    for bad in ["-oProxyCommand=id", "$(id)", "a b", "host;id", "", "x..y"] {
        refused(host(bad), "spec.address");
    }
    for good in ["10.0.0.7", "::1", "web-1.example.com", "localhost"] {
        assert_eq!(problems(host(good)), Vec::<String>::new(), "{good}");
    }
}

#[test]
fn a_list_where_a_mapping_belongs_is_refused() {
    refused(
        json!({"apiVersion": "hostkit.dev/v1alpha1", "kind": "Host",
               "metadata": {"name": "h1"}, "spec": {"address": "10.0.0.7", "ssh": []}}),
        "spec.ssh",
    );
    refused(
        json!({"apiVersion": "hostkit.dev/v1alpha1", "kind": "Project",
               "metadata": {"name": "p"}, "spec": {"roots": []}}),
        "spec.roots",
    );
    refused(daemon(json!({"isolate": []})), "spec.daemon.isolate");
    refused(
        service(json!({"hosts": ["h1"], "account": []})),
        "spec.account",
    );
}

#[test]
fn durations_that_overflow_are_refused() {
    for huge in ["100000000d", "18446744073709551615ms"] {
        refused(
            json!({"apiVersion": "hostkit.dev/v1alpha1", "kind": "PolicyWindow",
                   "metadata": {"name": "w"},
                   "spec": {"kind": "deny", "schedule": "0 0 * * *", "duration": huge}}),
            "spec.duration",
        );
    }
}

#[test]
fn sizes_are_bounded() {
    let labels: serde_json::Map<String, Value> = (0..65)
        .map(|i| (format!("l{i}"), Value::String("x".into())))
        .collect();
    let mut many_labels = service(json!({"hosts": ["h1"]}));
    many_labels["metadata"]["labels"] = Value::Object(labels);
    refused(many_labels, "metadata.labels");
    let exec: Vec<Value> = (0..1001).map(|i| Value::String(format!("a{i}"))).collect();
    refused(daemon(json!({"exec": exec})), "spec.daemon.exec");
    refused(
        daemon(json!({"description": "x".repeat(20_000)})),
        "spec.daemon.description",
    );
}

#[test]
fn caddy_words_cannot_open_blocks() {
    let site = |host: &str, to: &str| {
        service(json!({"hosts": ["h1"], "caddySites": [
            {"name": "api", "host": host, "reverseProxy": {"to": to}}]}))
    };
    refused(
        site("api.example.com {", "127.0.0.1:4000"),
        "spec.caddySites[0].host",
    );
    refused(
        site("api.example.com", "127.0.0.1:4000 }\nimport /etc/passwd"),
        "spec.caddySites[0].reverseProxy.to",
    );
    assert_eq!(
        problems(site("api.example.com", "127.0.0.1:4000")),
        Vec::<String>::new()
    );
}

#[test]
fn log_directives_take_words_and_plain_paths_only() {
    let logs = |l: Value| daemon(json!({"logs": l}));
    let ok = logs(json!({
        "identifier": "web-api.v2",
        "stdout": "append:/var/log/web/out.log",
        "stderr": "inherit",
        "rateLimit": {"interval": "30s", "burst": 1000},
    }));
    let p = problems(ok);
    assert!(p.is_empty(), "{p:?}");
    for (l, field) in [
        (
            json!({"identifier": "web\nUser=root"}),
            "spec.daemon.logs.identifier",
        ),
        (json!({"identifier": "a b"}), "spec.daemon.logs.identifier"),
        (json!({"stdout": "socket"}), "spec.daemon.logs.stdout"),
        (json!({"stdout": "inherit"}), "spec.daemon.logs.stdout"),
        (
            json!({"stdout": "file:relative.log"}),
            "spec.daemon.logs.stdout",
        ),
        (
            json!({"stdout": "file:/var/log/%n.log"}),
            "spec.daemon.logs.stdout",
        ),
        (
            json!({"stderr": "append:/var/log/../etc/shadow"}),
            "spec.daemon.logs.stderr",
        ),
        (
            json!({"stderr": "file:/var/log/a b"}),
            "spec.daemon.logs.stderr",
        ),
        (
            json!({"rateLimit": {"interval": "30s", "burst": 0}}),
            "spec.daemon.logs.rateLimit.burst",
        ),
        (
            json!({"rateLimit": {"interval": "0s", "burst": 5}}),
            "spec.daemon.logs.rateLimit.interval",
        ),
        (json!({"level": "debug"}), "spec.daemon.logs"),
    ] {
        refused(logs(l), field);
    }
}

#[test]
fn network_policies_take_addresses_and_cidrs_only() {
    let net = |n: Value| daemon(json!({"isolate": {"network": n}}));
    assert!(problems(net(json!("loopback"))).is_empty());
    assert!(
        problems(net(
            json!({"allow": ["loopback", "10.44.0.0/24", "fd00::/8"], "deny": "any"})
        ))
        .is_empty()
    );
    assert!(problems(net(json!({"deny": ["192.0.2.1", "multicast"]}))).is_empty());
    for (bad, field) in [
        (
            json!({"allow": ["loopback", "10.44.0.0/24\nExecStartPre=/bin/sh"]}),
            "spec.daemon.isolate.network.allow[1]",
        ),
        (
            json!({"allow": ["10.44.0.0/33"]}),
            "spec.daemon.isolate.network.allow[0]",
        ),
        (
            json!({"allow": ["10.44.0.0/024"]}),
            "spec.daemon.isolate.network.allow[0]",
        ),
        (
            json!({"deny": "everything"}),
            "spec.daemon.isolate.network.deny",
        ),
        (
            json!({"deny": ["any", "example.com"]}),
            "spec.daemon.isolate.network.deny[1]",
        ),
        (json!({}), "spec.daemon.isolate.network"),
    ] {
        refused(net(bad), field);
    }
    let p = problems(net(json!({"allow": ["10.0.0.0/8", "10.44.0.0/40"]})));
    assert_eq!(
        p,
        [
            "spec.daemon.isolate.network.allow[1]: \"10.44.0.0/40\": the prefix length must be 0 to 32"
        ]
    );
    let p = problems(net(json!({"allow": ["internal"]})));
    assert_eq!(
        p,
        [
            "spec.daemon.isolate.network.allow[0]: \"internal\" is not an address entry: any, loopback, link-local, multicast, an IP address or a CIDR such as 10.44.0.0/24"
        ]
    );
}
