//! `rollout.analysis`: the questions the controller asks a Prometheus between waves. The
//! [`Analyst`] trait is what the rollout sees; [`Prometheus`] asks a real one over its
//! HTTP API.

use std::time::Duration;

use serde_json::Value;

/// Answers whether a PromQL query holds now.
#[async_trait::async_trait]
pub trait Analyst: Send + Sync {
    /// `Ok(true)` when the result is a non-empty vector or a non-zero scalar, `Ok(false)`
    /// when it is empty or zero, `Err` with why when Prometheus could not answer.
    async fn holds(&self, url: Option<&str>, query: &str) -> Result<bool, String>;
}

/// Asks `url` (or the default, `hostkit serve --prometheus-url`) at `/api/v1/query`.
pub struct Prometheus {
    default_url: Option<String>,
    client: reqwest::Client,
}

impl Prometheus {
    pub fn new(default_url: Option<String>) -> Prometheus {
        Prometheus {
            default_url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }
}

/// Whether a `/api/v1/query` answer holds.
fn verdict(body: &Value) -> Result<bool, String> {
    if body["status"] != "success" {
        return Err(format!(
            "Prometheus: {}",
            body["error"].as_str().unwrap_or("the query failed")
        ));
    }
    let data = &body["data"];
    match data["resultType"].as_str() {
        Some("vector" | "matrix") => Ok(data["result"].as_array().is_some_and(|r| !r.is_empty())),
        Some("scalar") => Ok(data["result"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v != 0.0)),
        other => Err(format!("Prometheus answered a {other:?} result")),
    }
}

#[async_trait::async_trait]
impl Analyst for Prometheus {
    async fn holds(&self, url: Option<&str>, query: &str) -> Result<bool, String> {
        let Some(base) = url.or(self.default_url.as_deref()) else {
            return Err(
                "no Prometheus to ask: set rollout.analysis[].prometheus.url or hostkit serve --prometheus-url"
                    .into(),
            );
        };
        let answer = self
            .client
            .get(format!("{}/api/v1/query", base.trim_end_matches('/')))
            .query(&[("query", query)])
            .send()
            .await
            .map_err(|e| format!("Prometheus at {base}: {e}"))?;
        let body: Value = answer
            .json()
            .await
            .map_err(|e| format!("Prometheus at {base}: not a query answer: {e}"))?;
        verdict(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_comparison_holds_when_a_series_passes_it() {
        let vector =
            |r: Value| json!({"status": "success", "data": {"resultType": "vector", "result": r}});
        assert_eq!(
            verdict(&vector(json!([{"metric": {}, "value": [1, "0.2"]}]))),
            Ok(true)
        );
        assert_eq!(verdict(&vector(json!([]))), Ok(false));
        let scalar = |v: &str| json!({"status": "success", "data": {"resultType": "scalar", "result": [1, v]}});
        assert_eq!(verdict(&scalar("1")), Ok(true));
        assert_eq!(verdict(&scalar("0")), Ok(false));
        assert_eq!(
            verdict(&json!({"status": "error", "error": "parse error"})),
            Err("Prometheus: parse error".into())
        );
    }
}
