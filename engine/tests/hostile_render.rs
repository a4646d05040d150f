//! Arbitrary text in every string field of a Service that lands in a unit file, a timer, an
//! env file or a Caddyfile: it is either refused by validation with an error naming that
//! field, or it renders into files whose structure (sections, directives, variables, blocks)
//! is exactly what the same Service renders with harmless text. No generated string adds,
//! removes or joins a directive.

use hostkit_api::AnyObject;
use hostkit_api::kinds::ServiceSpec;
use hostkit_engine::resource::{Resource, Spec};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The fields under test: a JSON pointer into the spec and the field path errors use.
const FIELDS: &[(&str, &str)] = &[
    ("/daemon/description", "spec.daemon.description"),
    ("/daemon/after/0", "spec.daemon.after[0]"),
    ("/daemon/wants/0", "spec.daemon.wants[0]"),
    ("/daemon/requires/0", "spec.daemon.requires[0]"),
    ("/daemon/wantedBy/0", "spec.daemon.wantedBy[0]"),
    ("/daemon/user", "spec.daemon.user"),
    ("/daemon/group", "spec.daemon.group"),
    ("/daemon/workingDirectory", "spec.daemon.workingDirectory"),
    ("/daemon/exec/1", "spec.daemon.exec[1]"),
    (
        "/daemon/environment/GREETING",
        "spec.daemon.environment.GREETING",
    ),
    ("/jobs/0/description", "spec.jobs[0].description"),
    ("/jobs/0/exec/1", "spec.jobs[0].exec[1]"),
    (
        "/jobs/0/schedule/onCalendar/0",
        "spec.jobs[0].schedule.onCalendar[0]",
    ),
    ("/env/runtime/set/GREETING", "spec.env.runtime.set.GREETING"),
    ("/caddySites/0/host", "spec.caddySites[0].host"),
    (
        "/caddySites/0/reverseProxy/to",
        "spec.caddySites[0].reverseProxy.to",
    ),
];

fn base() -> Value {
    json!({
        "hosts": ["h1"],
        "env": {"runtime": {"set": {"GREETING": "hello"}}},
        "daemon": {
            "description": "the web service",
            "after": ["network-online.target"],
            "wants": ["network-online.target"],
            "requires": ["db.service"],
            "wantedBy": ["multi-user.target"],
            "user": "web",
            "group": "web",
            "workingDirectory": "/srv/web",
            "exec": ["/usr/bin/web", "--port"],
            "environment": {"GREETING": "hello"},
            "env": ["runtime"]
        },
        "jobs": [{"name": "nightly", "description": "nightly cleanup",
                  "exec": ["/usr/bin/clean", "--all"],
                  "schedule": {"onCalendar": ["daily"]}}],
        "caddySites": [{"name": "web", "host": "web.example.com",
                        "reverseProxy": {"to": "127.0.0.1:4000"}}]
    })
}

/// Decodes and validates; `Err` holds the problems' field paths.
fn accept(spec: Value) -> Result<ServiceSpec, Vec<String>> {
    let object = json!({"apiVersion": "hostkit.dev/v1alpha1", "kind": "Service",
                        "metadata": {"name": "web"}, "spec": spec});
    let any = AnyObject::from_value(object).map_err(|e| vec![e.field])?;
    let errors = any.validate();
    if !errors.is_empty() {
        return Err(errors.into_iter().map(|e| e.field).collect());
    }
    match any {
        AnyObject::Service(s) => Ok(s.spec),
        _ => unreachable!("decoded as a Service"),
    }
}

/// The structure of a rendered file: for unit files the `[Section]` and `Key=` sequence, for
/// env files the variable names, for Caddyfiles the lines with their leading word and
/// braces. Values are left out: they may differ, the structure may not.
fn structure(path: &str, text: &str) -> Vec<String> {
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    if path.ends_with(".service") || path.ends_with(".timer") {
        lines
            .map(|l| match l.split_once('=') {
                _ if l.starts_with('[') => l.to_string(),
                Some((k, _)) => format!("{k}="),
                None => format!("a line that is no directive: {l:?}"),
            })
            .collect()
    } else if path.ends_with(".env") {
        lines
            .map(|l| {
                l.split_once('=')
                    .map(|(k, _)| k.to_string())
                    .unwrap_or_else(|| format!("junk {l:?}"))
            })
            .collect()
    } else {
        // A Caddyfile line: its directive (indented lines) or the site line, how many words
        // it has and how many braces.
        lines
            .map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                let head = if l.starts_with('\t') {
                    words[0]
                } else {
                    "site"
                };
                format!("{head} {} {}", words.len(), l.matches(['{', '}']).count())
            })
            .collect()
    }
}

/// Every rendered file's structure, by file name (paths may differ with the text).
fn rendered(spec: &ServiceSpec) -> Result<Vec<Vec<String>>, String> {
    let resources: Vec<Resource> =
        hostkit_engine::expand::service("web", spec, None).map_err(|e| e.to_string())?;
    Ok(resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::File { path, content, .. } => Some(structure(path, &content.text)),
            _ => None,
        })
        .collect())
}

fn check(pointer: &str, field: &str, text: &str) -> Result<(), TestCaseError> {
    let mut spec = base();
    *spec
        .pointer_mut(pointer)
        .expect("the field exists in the base spec") = Value::String(text.to_string());
    let want = rendered(&accept(base()).unwrap()).unwrap();
    match accept(spec) {
        Err(fields) => prop_assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{text:?} in {field} was refused, but the errors name {fields:?}"
        ),
        Ok(s) => match rendered(&s) {
            // The renderer refused what validation let through: also no injection.
            Err(_) => {}
            Ok(got) => prop_assert_eq!(
                got,
                want,
                "{:?} in {} changed the files' structure",
                text,
                field
            ),
        },
    }
    Ok(())
}

/// Text a hostile user would try: line breaks, control characters, NUL, backslashes, quotes,
/// braces, `%` specifiers, `$` expansions, shell metacharacters, and plain Unicode.
fn hostile() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("\n".to_string()),
        Just("\r".to_string()),
        Just("\u{0}".to_string()),
        Just("\\".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("%n".to_string()),
        Just("$(id)".to_string()),
        Just("[Service]".to_string()),
        Just("ExecStartPre=+/bin/id".to_string()),
        Just(" ".to_string()),
        Just(";".to_string()),
        Just("#".to_string()),
        Just("\u{2028}".to_string()),
        "[a-z0-9.@:_-]{1,8}".prop_map(String::from),
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(pieces, 0..8).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn no_string_field_adds_or_joins_a_directive(i in 0..FIELDS.len(), text in hostile()) {
        let (pointer, field) = FIELDS[i];
        check(pointer, field, &text)?;
    }
}

#[test]
fn the_issue_s_injection_is_refused_where_it_came_in() {
    let inject = "harmless\n[Service]\nExecStartPre=+/bin/sh -c 'id > /root/x'";
    for (pointer, field) in FIELDS {
        let mut spec = base();
        *spec.pointer_mut(pointer).unwrap() = Value::String(inject.into());
        let fields = accept(spec).unwrap_err();
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{field}: {fields:?}"
        );
    }
}
