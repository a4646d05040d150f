//! `/auth/v1/tokens`: mint (`POST {name, role}`, the token is in the answer and nowhere
//! else), list (`GET`, no token texts) and revoke (`DELETE …/{id or name}`) stored tokens.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::stored_tokens::parse_role;
use super::{AppState, Caller};
use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRequest {
    name: String,
    role: String,
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let request: CreateRequest = serde_json::from_slice(&body).map_err(|e| {
        Error::BadRequest(format!(
            "a token request is {{\"name\": \"ci\", \"role\": \"admin\" or \"read-only\"}}: {e}"
        ))
    })?;
    let role = parse_role(&request.role)?;
    let minted = state
        .stored
        .create(&request.name, role, &format!("user/{}", caller.user))
        .await?;
    tracing::info!(id = %minted.record.id, name = %minted.record.name, role = %minted.record.role, by = %caller.user, "token created");
    Ok((StatusCode::CREATED, Json(minted)).into_response())
}

pub(super) async fn list(State(state): State<AppState>) -> Result<Response> {
    let items = state.stored.list().await?;
    Ok(Json(json!({"kind": "TokenList", "items": items})).into_response())
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(which): Path<String>,
) -> Result<Response> {
    let record = state.stored.revoke(&which).await?;
    tracing::info!(id = %record.id, name = %record.name, by = %caller.user, "token revoked");
    Ok(Json(record).into_response())
}
