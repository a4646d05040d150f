//! HTTP client of the HostKit API. Error statuses become [`Error::Server`] with the
//! server's own message, so hkctl prints what the server said, not a transport code.

use std::time::Duration;

use futures::{Stream, StreamExt};
use hostkit_api::config::ClientConfig;
use hostkit_api::kinds::KindInfo;
use hostkit_api::meta::ApiStatus;
use serde_json::Value;

use crate::{Error, Result};

const API: &str = "/apis/hostkit.dev/v1alpha1";

/// A connection to one API server.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// One line of a watch stream.
#[derive(Clone, Debug)]
pub struct WatchLine {
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    pub type_: String,
    pub object: Value,
}

/// How a `PATCH` body is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PatchType {
    /// JSON merge patch: objects merge, `null` removes, lists are replaced.
    Merge,
    /// JSON patch: a list of operations (`add`, `remove`, `replace`, `test`, …).
    Json,
}

impl PatchType {
    fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
        }
    }
}

/// Filters for list and watch.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

impl Client {
    pub fn new(config: &ClientConfig) -> Result<Client> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("hkctl/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &config.certificate_authority {
            let pem = std::fs::read(ca).map_err(|source| Error::Io {
                path: ca.display().to_string(),
                source,
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Error::Config(format!("{}: not a PEM certificate: {e}", ca.display()))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))?;
        Ok(Client {
            base: config.server.clone(),
            token: config.token.clone(),
            http,
        })
    }

    pub fn server(&self) -> &str {
        &self.base
    }

    fn url(&self, kind: &KindInfo, name: Option<&str>) -> String {
        match name {
            Some(n) => format!("{}{API}/{}/{}", self.base, kind.plural, n),
            None => format!("{}{API}/{}", self.base, kind.plural),
        }
    }

    async fn send(&self, mut request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.map_err(|e| Error::Unreachable {
            server: self.base.clone(),
            message: error_chain(&e),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let code = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ApiStatus>(&body) {
            Ok(status) => {
                let mut message = status.message;
                if let Some(details) = status.details
                    && details.causes.len() > 1
                {
                    message = details
                        .causes
                        .iter()
                        .map(|c| {
                            format!(
                                "{}/{} {c}",
                                details.kind.as_deref().unwrap_or(""),
                                details.name.as_deref().unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                }
                Error::Server {
                    code,
                    reason: status.reason,
                    message,
                }
            }
            Err(_) => Error::Server {
                code,
                reason: String::new(),
                message: format!("HTTP {code}: {}", body.trim()),
            },
        })
    }

    async fn json(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(Value, reqwest::header::HeaderMap, u16)> {
        let response = self.send(request).await?;
        let headers = response.headers().clone();
        let code = response.status().as_u16();
        let value = response
            .json::<Value>()
            .await
            .map_err(|e| Error::Protocol(e.to_string()))?;
        Ok((value, headers, code))
    }

    /// The live plan of a Service, computed by the server now.
    pub async fn plan(&self, name: &str, host: Option<&str>) -> Result<Value> {
        let mut url = format!("{}{API}/services/{name}/plan", self.base);
        if let Some(h) = host {
            url.push_str(&format!("?host={h}"));
        }
        Ok(self.json(self.http.get(url)).await?.0)
    }

    /// The live plan of a proposed Service (`body`), computed by the server now; nothing
    /// is stored.
    pub async fn plan_proposed(
        &self,
        name: &str,
        body: &Value,
        host: Option<&str>,
    ) -> Result<Value> {
        let mut request = self
            .http
            .post(format!("{}{API}/services/{name}/plan", self.base))
            .json(body);
        if let Some(h) = host {
            request = request.query(&[("host", h)]);
        }
        Ok(self.json(request).await?.0)
    }

    /// The journal of a Service's units on its hosts, as the server streams it: each
    /// chunk of text as it arrives.
    pub async fn logs(
        &self,
        name: &str,
        query: &[(&str, String)],
    ) -> Result<impl Stream<Item = Result<bytes::Bytes>> + use<>> {
        let response = self
            .send(
                self.http
                    .get(format!("{}{API}/services/{name}/logs", self.base))
                    .query(query),
            )
            .await?;
        Ok(response
            .bytes_stream()
            .map(|c| c.map_err(|e| Error::Protocol(format!("log stream: {e}")))))
    }

    /// `GET …/services/{name}/backups` (a list, or a restore's steps).
    pub async fn backups(&self, name: &str, query: &[(&str, String)]) -> Result<Value> {
        let url = format!("{}{API}/services/{name}/backups", self.base);
        Ok(self.json(self.http.get(url).query(query)).await?.0)
    }

    /// `POST …/services/{name}/backups` (take a snapshot now, or restore one).
    pub async fn backup_action(&self, name: &str, query: &[(&str, String)]) -> Result<Value> {
        let url = format!("{}{API}/services/{name}/backups", self.base);
        Ok(self.json(self.http.post(url).query(query)).await?.0)
    }

    pub async fn get(&self, kind: &KindInfo, name: &str) -> Result<Value> {
        Ok(self
            .json(self.http.get(self.url(kind, Some(name))))
            .await?
            .0)
    }

    /// Every matching object and the list's resourceVersion.
    pub async fn list(
        &self,
        kind: &KindInfo,
        options: &ListOptions,
    ) -> Result<(Vec<Value>, String)> {
        let mut query = Vec::new();
        if let Some(l) = &options.label_selector {
            query.push(("labelSelector", l.clone()));
        }
        if let Some(f) = &options.field_selector {
            query.push(("fieldSelector", f.clone()));
        }
        let (v, _, _) = self
            .json(self.http.get(self.url(kind, None)).query(&query))
            .await?;
        let rv = v
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("0")
            .to_string();
        let items = match v.get("items") {
            Some(Value::Array(items)) => items.clone(),
            _ => return Err(Error::Protocol("a list without items".into())),
        };
        Ok((items, rv))
    }

    /// Server-side apply; returns the object and `created`, `configured` or `unchanged`.
    pub async fn apply(
        &self,
        kind: &KindInfo,
        name: &str,
        body: &Value,
        dry_run: bool,
    ) -> Result<(Value, String)> {
        let mut request = self
            .http
            .patch(self.url(kind, Some(name)))
            .query(&[("fieldManager", "hkctl")])
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/apply-patch+json",
            )
            .json(body);
        if dry_run {
            request = request.query(&[("dryRun", "All")]);
        }
        let (v, headers, _) = self.json(request).await?;
        let outcome = headers
            .get("x-hostkit-apply")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("configured")
            .to_string();
        Ok((v, outcome))
    }

    /// A merge patch (RFC 7386) or JSON patch (RFC 6902) of an existing object; the server
    /// applies it to the object as stored now and validates the result.
    pub async fn patch(
        &self,
        kind: &KindInfo,
        name: &str,
        patch_type: PatchType,
        body: &Value,
        dry_run: bool,
    ) -> Result<Value> {
        let mut request = self
            .http
            .patch(self.url(kind, Some(name)))
            .header(reqwest::header::CONTENT_TYPE, patch_type.content_type())
            .json(body);
        if dry_run {
            request = request.query(&[("dryRun", "All")]);
        }
        Ok(self.json(request).await?.0)
    }

    /// The kinds the server serves (`GET /apis/hostkit.dev/v1alpha1`).
    pub async fn discovery(&self) -> Result<Value> {
        Ok(self
            .json(self.http.get(format!("{}{API}", self.base)))
            .await?
            .0)
    }

    /// Creates an object with POST.
    pub async fn create(&self, kind: &KindInfo, body: &Value) -> Result<Value> {
        self.create_with(kind, body, false).await
    }

    /// [`Self::create`], or only validated by the server with `dry_run`.
    pub async fn create_with(&self, kind: &KindInfo, body: &Value, dry_run: bool) -> Result<Value> {
        let mut request = self.http.post(self.url(kind, None)).json(body);
        if dry_run {
            request = request.query(&[("dryRun", "All")]);
        }
        Ok(self.json(request).await?.0)
    }

    /// Replaces an object with PUT (compare-and-swap when it carries a resourceVersion).
    pub async fn replace(&self, kind: &KindInfo, name: &str, body: &Value) -> Result<Value> {
        Ok(self
            .json(self.http.put(self.url(kind, Some(name))).json(body))
            .await?
            .0)
    }

    /// Deletes (`orphan`: the hosts keep what the object put there). True when gone now.
    pub async fn delete(
        &self,
        kind: &KindInfo,
        name: &str,
        dry_run: bool,
        orphan: bool,
    ) -> Result<(Value, bool)> {
        let mut request = self.http.delete(self.url(kind, Some(name)));
        if dry_run {
            request = request.query(&[("dryRun", "All")]);
        }
        if orphan {
            request = request.query(&[("propagationPolicy", "Orphan")]);
        }
        let (v, _, code) = self.json(request).await?;
        Ok((v, code != 202))
    }

    /// Watches a kind; without `resource_version` the current objects come first as ADDED.
    pub async fn watch(
        &self,
        kind: &KindInfo,
        resource_version: Option<&str>,
        options: &ListOptions,
    ) -> Result<impl Stream<Item = Result<WatchLine>> + use<>> {
        let mut query = vec![("watch", "1".to_string())];
        if let Some(rv) = resource_version {
            query.push(("resourceVersion", rv.to_string()));
        }
        if let Some(l) = &options.label_selector {
            query.push(("labelSelector", l.clone()));
        }
        if let Some(f) = &options.field_selector {
            query.push(("fieldSelector", f.clone()));
        }
        let response = self
            .send(self.http.get(self.url(kind, None)).query(&query))
            .await?;
        let bytes = response.bytes_stream();
        Ok(futures::stream::unfold(
            (bytes, Vec::<u8>::new()),
            |(mut bytes, mut buf)| async move {
                loop {
                    if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        let parsed = serde_json::from_slice::<Value>(&line)
                            .map_err(|e| Error::Protocol(format!("watch line: {e}")))
                            .map(|v| WatchLine {
                                type_: v
                                    .get("type")
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                                    .to_string(),
                                object: v.get("object").cloned().unwrap_or(Value::Null),
                            });
                        return Some((parsed, (bytes, buf)));
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                        Some(Err(e)) => {
                            return Some((
                                Err(Error::Protocol(format!("watch stream: {e}"))),
                                (bytes, buf),
                            ));
                        }
                        None => return None,
                    }
                }
            },
        ))
    }

    /// The server's version string.
    pub async fn server_version(&self) -> Result<String> {
        let (v, _, _) = self
            .json(self.http.get(format!("{}/version", self.base)))
            .await?;
        Ok(v.get("version")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string())
    }
}

/// The error and its causes on one line (reqwest hides the useful part in the source chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
