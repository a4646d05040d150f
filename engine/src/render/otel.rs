//! A host's OpenTelemetry Collector config, from the telemetry intent of the Services on
//! it: a `journald` receiver per Service with logs (its units), `hostmetrics`, a
//! `prometheus` receiver per Service that serves metrics, `otlp` when any sends traces;
//! resource processors carrying `host.name`, `service.name` and the Service's attributes;
//! one exporter to the host's endpoint. Written as JSON, which every YAML reader takes,
//! with keys in a fixed order, so an unchanged intent is an unchanged file.

use std::collections::BTreeMap;

use hostkit_api::kinds::OtelCollector;
use serde_json::{Map, Value, json};

/// One Service's share of the config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceTelemetry {
    pub name: String,
    /// Its units (daemon, jobs), whose journal goes out when `logs`.
    pub units: Vec<String>,
    pub logs: bool,
    pub traces: bool,
    /// Where its metrics are served (`127.0.0.1:9100`), the path, and the scrape interval
    /// in seconds.
    pub metrics: Option<(String, String, u64)>,
    pub attributes: BTreeMap<String, String>,
}

fn resource(attributes: &[(&str, &str)]) -> Value {
    let list: Vec<Value> = attributes
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v, "action": "upsert"}))
        .collect();
    json!({ "attributes": list })
}

/// The config text for `host`.
pub fn collector_config(
    host: &str,
    collector: &OtelCollector,
    services: &[ServiceTelemetry],
) -> String {
    let mut receivers = Map::new();
    let mut processors = Map::new();
    let mut pipelines = Map::new();
    let exporter = if collector.endpoint.starts_with("http://")
        || collector.endpoint.starts_with("https://")
    {
        "otlphttp"
    } else {
        "otlp"
    };
    let mut export = json!({ "endpoint": collector.endpoint });
    if collector.insecure {
        export["tls"] = json!({ "insecure": true });
    }
    processors.insert("batch".into(), json!({}));
    processors.insert("resource/host".into(), resource(&[("host.name", host)]));
    receivers.insert(
        "hostmetrics".into(),
        json!({
            "collection_interval": "30s",
            "scrapers": {"cpu": {}, "disk": {}, "filesystem": {}, "load": {}, "memory": {}, "network": {}}
        }),
    );
    pipelines.insert(
        "metrics/host".into(),
        json!({"receivers": ["hostmetrics"], "processors": ["resource/host", "batch"], "exporters": [exporter]}),
    );
    for s in services {
        let mut attributes: Vec<(&str, &str)> = vec![("service.name", s.name.as_str())];
        attributes.extend(s.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let own = format!("resource/{}", s.name);
        let chain = json!(["resource/host", own, "batch"]);
        let mut used = false;
        if s.logs && !s.units.is_empty() {
            let r = format!("journald/{}", s.name);
            receivers.insert(r.clone(), json!({"units": s.units, "priority": "info"}));
            pipelines.insert(
                format!("logs/{}", s.name),
                json!({"receivers": [r], "processors": chain, "exporters": [exporter]}),
            );
            used = true;
        }
        if let Some((address, path, every)) = &s.metrics {
            let r = format!("prometheus/{}", s.name);
            receivers.insert(
                r.clone(),
                json!({"config": {"scrape_configs": [{
                    "job_name": s.name,
                    "scrape_interval": format!("{every}s"),
                    "metrics_path": path,
                    "static_configs": [{"targets": [address]}]
                }]}}),
            );
            pipelines.insert(
                format!("metrics/{}", s.name),
                json!({"receivers": [r], "processors": chain, "exporters": [exporter]}),
            );
            used = true;
        }
        if used {
            processors.insert(own, resource(&attributes));
        }
    }
    if services.iter().any(|s| s.traces) {
        receivers.insert(
            "otlp".into(),
            json!({"protocols": {"grpc": {"endpoint": "127.0.0.1:4317"}, "http": {"endpoint": "127.0.0.1:4318"}}}),
        );
        pipelines.insert(
            "traces".into(),
            json!({"receivers": ["otlp"], "processors": ["resource/host", "batch"], "exporters": [exporter]}),
        );
    }
    let config = json!({
        "receivers": receivers,
        "processors": processors,
        "exporters": { exporter: export },
        "service": { "pipelines": pipelines }
    });
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    text
}

/// What the collector checks at start: every receiver, processor and exporter a pipeline
/// names is defined, every pipeline has a receiver and an exporter, and its name starts
/// with its signal (`logs`, `metrics`, `traces`).
pub fn check_structure(config: &Value) -> Result<(), String> {
    let pipelines = config
        .pointer("/service/pipelines")
        .and_then(Value::as_object)
        .ok_or("no service.pipelines")?;
    for (name, p) in pipelines {
        let signal = name.split('/').next().unwrap_or("");
        if !matches!(signal, "logs" | "metrics" | "traces") {
            return Err(format!(
                "pipeline {name}: not a logs, metrics or traces pipeline"
            ));
        }
        for (section, required) in [
            ("receivers", true),
            ("processors", false),
            ("exporters", true),
        ] {
            let names = p[section].as_array().cloned().unwrap_or_default();
            if required && names.is_empty() {
                return Err(format!("pipeline {name} has no {section}"));
            }
            for n in names {
                let n = n.as_str().unwrap_or("");
                if config[section].get(n).is_none() {
                    return Err(format!(
                        "pipeline {name} names {section} {n:?}, which is not defined"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Vec<ServiceTelemetry> {
        vec![
            ServiceTelemetry {
                name: "api".into(),
                units: vec!["toys-api.service".into(), "toys-api-backup.timer".into()],
                logs: true,
                traces: true,
                metrics: Some(("127.0.0.1:9100".into(), "/metrics".into(), 15)),
                attributes: [("deployment.environment".to_string(), "prod".to_string())].into(),
            },
            ServiceTelemetry {
                name: "worker".into(),
                units: vec!["toys-worker.service".into()],
                logs: true,
                ..Default::default()
            },
        ]
    }

    #[test]
    fn the_config_matches_its_snapshot_and_its_pipelines_name_only_what_it_defines() {
        let collector = OtelCollector {
            endpoint: "collector.internal:4317".into(),
            insecure: true,
            config_path: None,
        };
        let text = collector_config("edge-1", &collector, &services());
        assert_eq!(text, include_str!("otel_snapshot.json"), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        check_structure(&v).unwrap();
        assert_eq!(
            collector_config("edge-1", &collector, &services()),
            text,
            "the same intent renders the same bytes"
        );
    }

    #[test]
    fn the_structure_check_catches_a_pipeline_naming_what_is_not_defined() {
        let collector = OtelCollector {
            endpoint: "https://otel.example.com".into(),
            ..Default::default()
        };
        let mut v: Value =
            serde_json::from_str(&collector_config("h", &collector, &services())).unwrap();
        assert!(
            v["exporters"].get("otlphttp").is_some(),
            "an URL exports over HTTP"
        );
        check_structure(&v).unwrap();
        v["receivers"]
            .as_object_mut()
            .unwrap()
            .remove("journald/worker");
        assert_eq!(
            check_structure(&v),
            Err(
                "pipeline logs/worker names receivers \"journald/worker\", which is not defined"
                    .into()
            )
        );
    }
}
