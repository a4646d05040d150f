//! Telemetry intent: what a Project's or Service's `observability` says should reach an
//! OpenTelemetry Collector (logs from the journal, metrics a listener serves, traces), and a
//! Host's `otelCollector`, where HostKit writes that collector's config.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{Validator, check_path};
use crate::values::Duration;

/// On a Project (the default for its Services) or a Service (which overrides it field by
/// field; attributes are merged, the Service's winning).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Observability {
    /// The journal of the Service's units goes to the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<bool>,
    /// The collector scrapes a listener of the Service (Prometheus text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsIntent>,
    /// The collector takes OTLP traces on loopback (4317 gRPC, 4318 HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces: Option<bool>,
    /// Resource attributes added to what the Service sends (`deployment.environment: prod`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsIntent {
    /// The Service's listener that serves the metrics.
    pub listener: String,
    /// Default `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

/// Where the host's collector sends, and where HostKit writes its config (a managed file;
/// installing and running the collector itself is not HostKit's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtelCollector {
    /// The OTLP endpoint to export to: `host:port` (gRPC) or an `http(s)://` URL (HTTP).
    pub endpoint: String,
    /// Send without TLS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Default `/etc/otelcol-contrib/config.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
}

impl OtelCollector {
    pub const DEFAULT_CONFIG_PATH: &'static str = "/etc/otelcol-contrib/config.yaml";
}

impl Observability {
    /// This Service's intent over its Project's.
    pub fn over(&self, project: Option<&Observability>) -> Observability {
        let Some(p) = project else {
            return self.clone();
        };
        let mut attributes = p.attributes.clone();
        attributes.extend(self.attributes.clone());
        Observability {
            logs: self.logs.or(p.logs),
            metrics: self.metrics.clone().or_else(|| p.metrics.clone()),
            traces: self.traces.or(p.traces),
            attributes,
        }
    }
}

/// An attribute key as OpenTelemetry spells them: letters, digits, `.`, `_`, `-`.
fn attribute_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 128
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `listeners`: the Service's listener names (none for a Project, which may not name one).
pub(crate) fn check_observability(
    o: &Observability,
    listeners: Option<&[String]>,
    v: &mut Validator,
) {
    v.scope("observability", |v| {
        for k in o.attributes.keys() {
            if !attribute_key(k) {
                v.err(
                    format!("attributes.{k}"),
                    "an attribute key is letters, digits, '.', '_' or '-' (at most 128)",
                );
            }
        }
        if let Some(m) = &o.metrics {
            match listeners {
                None => v.err(
                    "metrics",
                    "a Project cannot name a listener: set metrics on each Service",
                ),
                Some(l) if !l.contains(&m.listener) => v.err(
                    "metrics.listener",
                    format!(
                        "{:?} is not a listener of this service; its listeners: {}",
                        m.listener,
                        if l.is_empty() {
                            "none".into()
                        } else {
                            l.join(", ")
                        }
                    ),
                ),
                Some(_) => {}
            }
            if let Some(p) = &m.path
                && (!p.starts_with('/') || p.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                v.err(
                    "metrics.path",
                    format!("{p:?} is not a URL path (/metrics)"),
                );
            }
        }
    });
}

pub(crate) fn check_collector(c: &OtelCollector, v: &mut Validator) {
    v.scope("otelCollector", |v| {
        let e = &c.endpoint;
        let url = e.starts_with("http://") || e.starts_with("https://");
        let host_port = e.rsplit_once(':').is_some_and(|(h, p)| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
                && p.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if (!url && !host_port) || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
            v.err(
                "endpoint",
                format!("{e:?}: host:port (OTLP gRPC) or an http(s):// URL (OTLP HTTP)"),
            );
        }
        if let Some(p) = &c.config_path {
            check_path("configPath", p, v);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_overrides_its_project_field_by_field() {
        let project = Observability {
            logs: Some(true),
            traces: Some(true),
            attributes: [("env".into(), "prod".into()), ("team".into(), "a".into())].into(),
            ..Default::default()
        };
        let service = Observability {
            traces: Some(false),
            attributes: [("team".into(), "b".into())].into(),
            ..Default::default()
        };
        let o = service.over(Some(&project));
        assert_eq!((o.logs, o.traces), (Some(true), Some(false)));
        assert_eq!(o.attributes["env"], "prod");
        assert_eq!(o.attributes["team"], "b");
    }

    #[test]
    fn endpoints_keys_and_listeners_are_checked() {
        let mut v = Validator::default();
        check_collector(
            &OtelCollector {
                endpoint: "collector; rm -rf".into(),
                config_path: Some("relative".into()),
                ..Default::default()
            },
            &mut v,
        );
        let o = Observability {
            metrics: Some(MetricsIntent {
                listener: "nope".into(),
                path: Some("metrics".into()),
                interval: None,
            }),
            attributes: [("bad key".into(), "x".into())].into(),
            ..Default::default()
        };
        check_observability(&o, Some(&["http".into()]), &mut v);
        let e: Vec<String> = v.into_errors().iter().map(|e| e.to_string()).collect();
        let text = e.join("\n");
        for want in [
            "otelCollector.endpoint",
            "otelCollector.configPath",
            "observability.attributes.bad key",
            "observability.metrics.listener: \"nope\" is not a listener of this service; its listeners: http",
            "observability.metrics.path",
        ] {
            assert!(text.contains(want), "missing {want} in {text}");
        }
    }
}
