//! A Host's collector config as a managed file: the telemetry intent of each Service on
//! the host (over its Project's), turned into the receivers and pipelines
//! [`crate::render::otel`] writes.

use hostkit_api::kinds::{Observability, OtelCollector};

use super::*;
use crate::render::otel::{self, ServiceTelemetry};

/// The collector config file of Host `name`, when it declares `otelCollector` and at least
/// one of its Services says what to send (`None` otherwise: no file).
pub fn telemetry(
    name: &str,
    spec: &HostSpec,
    services: &[(&str, &ServiceSpec, Option<&ProjectSpec>)],
) -> Result<Option<Resource>> {
    let Some(collector) = &spec.otel_collector else {
        return Ok(None);
    };
    let mut shares = Vec::new();
    for (service, s, project) in services {
        let project_intent = project.and_then(|p| p.observability.as_ref());
        let intent = match &s.observability {
            Some(o) => o.over(project_intent),
            None => match project_intent {
                Some(p) => Observability::default().over(Some(p)),
                None => continue,
            },
        };
        let c = Conventions::new(*project);
        let mut units = Vec::new();
        if s.daemon.is_some() {
            units.push(c.daemon_unit(service, s));
        }
        for job in &s.jobs {
            units.push(c.unit(service, None, Some(&job.name), ".service"));
        }
        let metrics = match &intent.metrics {
            Some(m) => {
                let address = c
                    .expand(service, s, &format!("${{listen.{}}}", m.listener))?
                    .replace("0.0.0.0:", "127.0.0.1:")
                    .replace("[::]:", "[::1]:");
                let every = m
                    .interval
                    .as_ref()
                    .map_or(30, |d| d.as_std().as_secs().max(1));
                Some((
                    address,
                    m.path.clone().unwrap_or_else(|| "/metrics".into()),
                    every,
                ))
            }
            None => None,
        };
        shares.push(ServiceTelemetry {
            name: service.to_string(),
            units,
            logs: intent.logs.unwrap_or(false),
            traces: intent.traces.unwrap_or(false),
            metrics,
            attributes: intent.attributes,
        });
    }
    if shares.is_empty() {
        return Ok(None);
    }
    shares.sort_by(|a, b| a.name.cmp(&b.name));
    let text = otel::collector_config(name, collector, &shares);
    let parsed: serde_json::Value = serde_json::from_str(&text)?;
    otel::check_structure(&parsed).map_err(|message| Error::Invalid {
        object: format!("Host/{name}"),
        field: "spec.otelCollector".into(),
        message,
    })?;
    let path = collector
        .config_path
        .clone()
        .unwrap_or_else(|| OtelCollector::DEFAULT_CONFIG_PATH.into());
    Ok(Some(Resource::new(
        Resource::file_id(&path),
        &format!("Host/{name}"),
        Spec::File {
            path,
            content: Content::text(text),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            role: FileRole::Config,
        },
    )))
}

#[cfg(test)]
mod tests {
    use crate::offline::manifests::Desired;
    use crate::render::otel::check_structure;
    use crate::resource::Spec;

    const MANIFESTS: &str = r#"
apiVersion: hostkit.dev/v1alpha1
kind: Project
metadata: {name: toys}
spec:
  prefixes: {unit: toys-}
  observability: {logs: true, attributes: {deployment.environment: prod, team: core}}
---
apiVersion: hostkit.dev/v1alpha1
kind: Host
metadata: {name: edge}
spec:
  address: 127.0.0.1
  otelCollector: {endpoint: "127.0.0.1:4317", insecure: true, configPath: /etc/otel/config.yaml}
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {name: api}
spec:
  project: toys
  hosts: [edge]
  daemon:
    exec: [/opt/api/bin/api]
    listen: [{name: http, port: 4000}, {name: metrics, port: 9100, on: any}]
  jobs:
    - {name: backup, exec: [/opt/api/bin/backup], schedule: {onCalendar: [daily]}}
  observability: {traces: true, metrics: {listener: metrics}, attributes: {team: api}}
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {name: quiet}
spec:
  hosts: [edge]
  daemon: {exec: [/bin/sleep, infinity]}
"#;

    #[test]
    fn a_hosts_services_over_their_projects_make_its_collector_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, MANIFESTS).unwrap();
        let d = Desired::load(&[path]).unwrap();
        let resources = d.resources_for("edge").unwrap();
        let file = resources
            .iter()
            .find(|r| r.id == "file:/etc/otel/config.yaml")
            .expect("the collector config is one of the host's files");
        assert_eq!(file.owner, "Host/edge");
        let Spec::File { content, mode, .. } = &file.spec else {
            panic!("{:?}", file.spec)
        };
        let text = &content.text;
        assert_eq!(*mode, 0o644);
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        check_structure(&v).unwrap();
        assert_eq!(
            v["receivers"]["journald/api"]["units"],
            serde_json::json!(["toys-api.service", "toys-api-backup.service"])
        );
        assert_eq!(
            v["receivers"]["prometheus/api"]["config"]["scrape_configs"][0]["static_configs"][0]["targets"]
                [0],
            "127.0.0.1:9100",
            "a wildcard listener is scraped on loopback"
        );
        let attributes = v["processors"]["resource/api"]["attributes"].to_string();
        assert!(
            attributes.contains("\"prod\"") && attributes.contains("\"api\""),
            "{attributes}"
        );
        assert!(
            !attributes.contains("\"core\""),
            "the Service's team wins: {attributes}"
        );
        assert!(v["service"]["pipelines"].get("traces").is_some());
        assert!(
            v["receivers"].get("journald/quiet").is_none(),
            "a Service with no intent (and no Project's) sends nothing"
        );
    }
}
