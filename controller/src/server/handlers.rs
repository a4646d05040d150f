//! REST handlers: request parsing and response shaping only; semantics live in [`Objects`].

use std::convert::Infallible;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hostkit_api::kinds::{KINDS, KindInfo, kind_by_plural};
use hostkit_api::meta::LabelSelector;
use hostkit_api::{API_VERSION, MAX_OBJECT_BYTES};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::error::{Error, Result};
use crate::objects::{DeleteOptions, FieldSelector, ObjectEvent, Patch, Selectors};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Params {
    label_selector: Option<String>,
    field_selector: Option<String>,
    watch: Option<String>,
    resource_version: Option<String>,
    dry_run: Option<String>,
    field_manager: Option<String>,
    propagation_policy: Option<String>,
    #[serde(rename = "allowWatchBookmarks")]
    _allow_watch_bookmarks: Option<String>,
}

impl Params {
    fn parse(raw: Option<String>) -> Result<Params> {
        match raw {
            None => Ok(Params::default()),
            Some(q) => serde_urlencoded::from_str(&q)
                .map_err(|e| Error::BadRequest(format!("query string: {e}"))),
        }
    }

    fn dry_run(&self) -> Result<bool> {
        match self.dry_run.as_deref() {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(Error::BadRequest(format!(
                "dryRun={other:?} is not supported; use dryRun=All"
            ))),
        }
    }

    /// `propagationPolicy`: `Background` (the default) cleans the hosts, `Orphan` leaves them.
    fn orphan(&self) -> Result<bool> {
        match self.propagation_policy.as_deref() {
            None | Some("Background") | Some("Foreground") => Ok(false),
            Some("Orphan") => Ok(true),
            Some(other) => Err(Error::BadRequest(format!(
                "propagationPolicy={other:?} is not one of Background, Foreground, Orphan"
            ))),
        }
    }

    fn watch(&self) -> Result<bool> {
        match self.watch.as_deref() {
            None | Some("" | "0" | "false") => Ok(false),
            Some("1" | "true") => Ok(true),
            Some(other) => Err(Error::BadRequest(format!(
                "watch={other:?} is not one of true, false, 1, 0"
            ))),
        }
    }

    fn resource_version(&self) -> Result<Option<i64>> {
        match self.resource_version.as_deref() {
            None | Some("") => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(rv) if rv >= 0 => Ok(Some(rv)),
                _ => Err(Error::BadRequest(format!(
                    "resourceVersion {v:?} is not a store revision (a whole number from 0 to {})",
                    i64::MAX
                ))),
            },
        }
    }

    fn selectors(&self, kind: &KindInfo) -> Result<Selectors> {
        Ok(Selectors {
            labels: self
                .label_selector
                .as_deref()
                .map(LabelSelector::parse)
                .transpose()
                .map_err(Error::BadRequest)?,
            fields: self
                .field_selector
                .as_deref()
                .map(|f| {
                    let selector = FieldSelector::parse(f)?;
                    selector.check(kind)?;
                    Ok::<_, Error>(selector)
                })
                .transpose()?,
        })
    }
}

/// Refuses API writes to kinds only the controller writes.
fn writable(kind: &KindInfo) -> Result<()> {
    if kind.kind == "Revision" {
        return Err(Error::NotAllowed(
            "Revisions are written by the controller; list them with `hkctl history \
             service/NAME`, read one with `hkctl get rev NAME -o yaml`"
                .into(),
        ));
    }
    Ok(())
}

fn kind_of(plural: &str) -> Result<&'static KindInfo> {
    kind_by_plural(plural).ok_or_else(|| Error::NotFound {
        kind: "resource type".into(),
        name: format!(
            "{plural} (known: {})",
            KINDS
                .iter()
                .map(|k| k.plural)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// Decodes a request body as JSON, or YAML when the content type says so. Never panics.
pub(crate) fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value> {
    let value = parse_value(headers, body)?;
    if !value.is_object() {
        return Err(Error::BadRequest("request body must be an object".into()));
    }
    Ok(value)
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
}

/// [`parse_body`] for bodies that may be any JSON value (a JSON patch is a list).
fn parse_value(headers: &HeaderMap, body: &[u8]) -> Result<Value> {
    if body.len() > MAX_OBJECT_BYTES {
        return Err(Error::TooLarge(body.len()));
    }
    let content_type = content_type(headers);
    let value: Value = if content_type.contains("yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|_| Error::BadRequest("request body is not UTF-8".into()))?;
        serde_saphyr::from_str(text)
            .map_err(|e| Error::BadRequest(format!("request body is not valid YAML: {e}")))?
    } else {
        hostkit_api::decode::parse_json(body)
            .map_err(|e| Error::BadRequest(format!("request body is not valid JSON: {e}")))?
    };
    Ok(value)
}

pub(super) async fn discovery() -> Json<Value> {
    let resources: Vec<Value> = KINDS
        .iter()
        .map(|k| {
            json!({"name": k.plural, "singularName": k.singular, "kind": k.kind, "shortNames": k.short_names})
        })
        .collect();
    Json(json!({"kind": "APIResourceList", "groupVersion": API_VERSION, "resources": resources}))
}

pub(super) async fn list_or_watch(
    State(state): State<AppState>,
    Path(plural): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let kind = kind_of(&plural)?;
    let params = Params::parse(query)?;
    let selectors = params.selectors(kind)?;
    if params.watch()? {
        return watch(state, kind, params.resource_version()?, selectors).await;
    }
    // Written item by item: a 10,000-object list costs its JSON text, not 10,000 trees.
    let mut items = Vec::with_capacity(64 * 1024);
    let mut first = true;
    let revision = state
        .objects
        .list_each(kind, &selectors, |v| {
            if !first {
                items.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut items, &v).expect("JSON values serialise");
        })
        .await?;
    let mut body = format!(
        r#"{{"apiVersion":"{API_VERSION}","kind":"{}List","metadata":{{"resourceVersion":"{revision}"}},"items":["#,
        kind.kind
    )
    .into_bytes();
    body.extend_from_slice(&items);
    body.extend_from_slice(b"]}");
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

fn event_line(type_: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": type_, "object": object}))
        .expect("JSON values serialise");
    line.push(b'\n');
    Bytes::from(line)
}

/// Streams changes as NDJSON. Without a resourceVersion the current objects come first as
/// ADDED (kubectl's `get -w`); a resourceVersion too old for the store's history is 410.
async fn watch(
    state: AppState,
    kind: &'static KindInfo,
    from: Option<i64>,
    selectors: Selectors,
) -> Result<Response> {
    let (initial, after) = match from {
        Some(rv) if rv > 0 => (Vec::new(), rv),
        _ => {
            let (items, rev) = state.objects.list(kind, &selectors).await?;
            (items, rev)
        }
    };
    let events = state
        .objects
        .watch(kind, after, selectors, Some(state.bookmark_interval))
        .await?;
    let metrics = state.metrics.clone();
    metrics.watches.inc();
    struct Open(std::sync::Arc<super::metrics::Metrics>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.watches.dec();
        }
    }
    let guard = Open(metrics);
    let initial = futures::stream::iter(
        initial
            .into_iter()
            .map(|v| Ok::<_, Infallible>(event_line("ADDED", &v))),
    );
    let kind_name = kind.kind;
    let live = events
        .scan(false, move |failed, event| {
            if *failed {
                return futures::future::ready(None);
            }
            let line = match event {
                Ok(ObjectEvent::Added(v)) => event_line("ADDED", &v),
                Ok(ObjectEvent::Modified(v)) => event_line("MODIFIED", &v),
                Ok(ObjectEvent::Deleted(v)) => event_line("DELETED", &v),
                Ok(ObjectEvent::Bookmark(rev)) => event_line(
                    "BOOKMARK",
                    &json!({"apiVersion": API_VERSION, "kind": kind_name, "metadata": {"resourceVersion": rev.to_string()}}),
                ),
                Err(e) => {
                    *failed = true;
                    event_line("ERROR", &serde_json::to_value(e.to_status()).expect("status serialises"))
                }
            };
            futures::future::ready(Some(Ok::<_, Infallible>(line)))
        })
        .map(move |line| {
            let _keep = &guard;
            line
        });
    let body = Body::from_stream(initial.chain(live));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response())
}

pub(super) async fn get_one(
    State(state): State<AppState>,
    Path(path): Path<Vec<(String, String)>>,
) -> Result<Json<Value>> {
    let (plural, name) = plural_and_name(&path)?;
    let kind = kind_of(&plural)?;
    Ok(Json(state.objects.get(kind, &name).await?))
}

fn plural_and_name(path: &[(String, String)]) -> Result<(String, String)> {
    let find = |k: &str| {
        path.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    match (find("plural"), find("name")) {
        (Some(p), Some(n)) => Ok((p, n)),
        _ => Err(Error::BadRequest(
            "expected /apis/hostkit.dev/v1alpha1/{plural}/{name}".into(),
        )),
    }
}

pub(super) async fn create(
    State(state): State<AppState>,
    Path(plural): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let kind = kind_of(&plural)?;
    writable(kind)?;
    let params = Params::parse(query)?;
    let body = parse_body(&headers, &body)?;
    let created = state.objects.create(kind, body, params.dry_run()?).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(super) async fn replace(
    State(state): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>> {
    let kind = kind_of(&plural)?;
    writable(kind)?;
    let params = Params::parse(query)?;
    let body = parse_body(&headers, &body)?;
    Ok(Json(
        state
            .objects
            .update(kind, &name, body, params.dry_run()?)
            .await?,
    ))
}

pub(super) async fn replace_status(
    State(state): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>> {
    let kind = kind_of(&plural)?;
    let params = Params::parse(query)?;
    let body = parse_body(&headers, &body)?;
    Ok(Json(
        state
            .objects
            .update_status(kind, &name, body, params.dry_run()?)
            .await?,
    ))
}

/// `PATCH`: server-side apply (an apply-patch body: create or update, and say which), or a
/// merge or JSON patch of an existing object.
pub(super) async fn apply(
    State(state): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let kind = kind_of(&plural)?;
    writable(kind)?;
    let params = Params::parse(query)?;
    let content_type = content_type(&headers);
    if !content_type.starts_with("application/apply-patch") {
        let patch = Patch::parse(content_type, parse_value(&headers, &body)?)?;
        let object = state
            .objects
            .patch(kind, &name, &patch, params.dry_run()?)
            .await?;
        return Ok(Json(object).into_response());
    }
    let body = parse_body(&headers, &body)?;
    if let Some(manager) = &params.field_manager {
        tracing::debug!(manager, kind = kind.kind, name, "apply");
    }
    let (object, outcome) = state
        .objects
        .apply(kind, &name, body, params.dry_run()?)
        .await?;
    let code = if outcome == crate::objects::ApplyOutcome::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, [("x-hostkit-apply", outcome.as_str())], Json(object)).into_response())
}

pub(super) async fn delete(
    State(state): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let kind = kind_of(&plural)?;
    let params = Params::parse(query)?;
    let (object, gone) = state
        .objects
        .delete(
            kind,
            &name,
            DeleteOptions {
                precondition: params.resource_version()?,
                dry_run: params.dry_run()?,
                orphan: params.orphan()?,
            },
        )
        .await?;
    let code = if gone {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(object)).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanParams {
    host: Option<String>,
}

/// The query string of an endpoint with its own few parameters (unknown ones refused).
fn query_of<T: Default + serde::de::DeserializeOwned>(raw: Option<String>) -> Result<T> {
    match raw {
        None => Ok(T::default()),
        Some(q) => serde_urlencoded::from_str(&q)
            .map_err(|e| Error::BadRequest(format!("query string: {e}"))),
    }
}

fn planner(state: &AppState) -> Result<&std::sync::Arc<dyn super::LivePlans>> {
    state.plans.as_ref().ok_or_else(|| {
        Error::NotAllowed(
            "this server runs no controllers (--controllers none): live plans are computed by a server that does"
                .into(),
        )
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogParams {
    host: Option<String>,
    follow: Option<bool>,
    since: Option<String>,
    tail: Option<u32>,
    unit: Option<String>,
}

/// `GET …/services/{name}/logs[?host=H&follow=true&since=1h&tail=N&unit=U]`: the journal of
/// the Service's units on its hosts, streamed as text lines `[host] line`.
pub(super) async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params: LogParams = query_of(query)?;
    let reader = state.logs.as_ref().ok_or_else(|| {
        Error::NotAllowed(
            "this server runs no controllers (--controllers none): logs are read by a server that does"
                .into(),
        )
    })?;
    let since = params
        .since
        .as_deref()
        .map(hostkit_api::values::Duration::parse_std)
        .transpose()
        .map_err(|e| Error::BadRequest(format!("since: {e}")))?;
    let request = super::LogRequest {
        host: params.host,
        follow: params.follow.unwrap_or(false),
        since,
        tail: params.tail,
        unit: params.unit,
    };
    let lines = reader.logs(&name, &request).await?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(lines)
        .map(|line| Ok::<_, Infallible>(Bytes::from(format!("{line}\n"))));
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupParams {
    storage: Option<String>,
    host: Option<String>,
    /// GET: the steps of restoring this snapshot (nothing is changed).
    restore: Option<String>,
    /// POST: `run` or `restore`.
    op: Option<String>,
    /// POST with `op=restore`: the snapshot.
    id: Option<String>,
}

fn backup_request(
    state: &AppState,
    params: &BackupParams,
) -> Result<(
    std::sync::Arc<dyn super::ServiceBackups>,
    super::BackupRequest,
)> {
    let answerer = state.backups.clone().ok_or_else(|| {
        Error::NotAllowed(
            "this server runs no controllers (--controllers none): backups are read by a server that does"
                .into(),
        )
    })?;
    let storage = params
        .storage
        .clone()
        .ok_or_else(|| Error::BadRequest("storage: name the storage (?storage=NAME)".into()))?;
    Ok((
        answerer,
        super::BackupRequest {
            storage,
            host: params.host.clone(),
        },
    ))
}

/// `GET …/services/{name}/backups?storage=S[&host=H]`: the snapshots on each host, newest
/// first; with `&restore=ID`, the steps restoring it would take (nothing changes).
pub(super) async fn backups(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params: BackupParams = query_of(query)?;
    if params.op.is_some() || params.id.is_some() {
        return Err(Error::BadRequest(
            "op and id are for POST; GET lists, or shows a restore with ?restore=ID".into(),
        ));
    }
    let (answerer, request) = backup_request(&state, &params)?;
    let value = match &params.restore {
        Some(id) => answerer.restore(&name, &request, id, true).await?,
        None => answerer.list(&name, &request).await?,
    };
    Ok(Json(value).into_response())
}

/// `POST …/services/{name}/backups?storage=S[&host=H]&op=run` takes a snapshot now;
/// `&op=restore&id=ID` restores one (on one host).
pub(super) async fn backup_action(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params: BackupParams = query_of(query)?;
    let (answerer, request) = backup_request(&state, &params)?;
    let value = match (params.op.as_deref(), params.id.as_deref()) {
        (Some("run"), None) => answerer.run(&name, &request).await?,
        (Some("restore"), Some(id)) => answerer.restore(&name, &request, id, false).await?,
        (Some("restore"), None) => {
            return Err(Error::BadRequest("op=restore needs id=SNAPSHOT".into()));
        }
        (op, _) => {
            return Err(Error::BadRequest(format!(
                "op must be run or restore (with id), not {:?}",
                op.unwrap_or("")
            )));
        }
    };
    Ok(Json(value).into_response())
}

/// `POST …/services/{name}/plan[?host=H]` with a Service: the live plan of that proposed
/// Service, validated as an apply would and never stored.
pub(super) async fn plan_proposed(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let params: PlanParams = query_of(query)?;
    let planner = planner(&state)?;
    let kind = kind_of("services")?;
    let body = parse_body(&headers, &body)?;
    let object = state.objects.decode(kind, body, Some(&name))?;
    let hostkit_api::kinds::AnyObject::Service(service) = object else {
        return Err(Error::BadRequest(format!(
            "only a Service can be planned here; the body is a {}",
            object.info().kind
        )));
    };
    let list = planner
        .plan_proposed(&service, params.host.as_deref())
        .await?;
    Ok(Json(list).into_response())
}

/// `GET …/services/{name}/plan[?host=H]`: the live plan, computed now, nothing applied.
pub(super) async fn plan(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params: PlanParams = query_of(query)?;
    let planner = planner(&state)?;
    let list = planner.plan(&name, params.host.as_deref()).await?;
    Ok(Json(list).into_response())
}
