//! The tenant's file area: `PUT|GET|DELETE /api/v1/files/{name}` and `GET /api/v1/files`.
//!
//! Inputs too large for a JSON body (a FASTA of thousands of sequences) are uploaded here and
//! named in a task's `files`; the sandbox sees them read-only under `/input`. Files belong to a
//! tenant: another tenant's file is not found (404), never forbidden.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{ApiError, ApiPath, AppState, Caller, DEFAULT_FILE_AREA_BYTES};
use crate::queue::valid_file_name;

fn check_name(name: &str) -> Result<(), ApiError> {
    if valid_file_name(name) {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(format!(
            "file name {name:?}: use 1-128 characters of a-z, A-Z, 0-9, '-', '_', '.', not starting with '.'"
        )))
    }
}

/// `PUT /api/v1/files/{name}`: stores the body (any bytes), replacing a file of that name.
pub async fn put(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(name): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    check_name(&name)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("a file may have at most {} bytes", state.max_file_bytes))
        } else {
            ApiError::InvalidRequest(format!("cannot read the body: {rejection}"))
        }
    })?;
    let area = state
        .tenants
        .config(&tenant.name)
        .and_then(|c| c.file_area_mb)
        .map_or(DEFAULT_FILE_AREA_BYTES, |mb| mb.saturating_mul(1 << 20));
    let used: u64 =
        state.broker.list_files(&tenant.name).await?.iter().filter(|f| f.name != name).map(|f| f.size).sum();
    if used + body.len() as u64 > area {
        return Err(ApiError::PayloadTooLarge(format!(
            "the file area of tenant {} holds {used} of its {area} bytes; this file needs {}",
            tenant.name,
            body.len()
        )));
    }
    let info = state.broker.put_file(&tenant.name, &name, body.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// `GET /api/v1/files/{name}`: the content.
pub async fn get(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name(&name)?;
    let content = state
        .broker
        .get_file(&tenant.name, &name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no file {name}")))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], content))
}

/// `DELETE /api/v1/files/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    check_name(&name)?;
    if state.broker.delete_file(&tenant.name, &name).await? {
        Ok(Json(json!({"name": name, "deleted": true})))
    } else {
        Err(ApiError::NotFound(format!("no file {name}")))
    }
}

/// `GET /api/v1/files`: the tenant's files.
pub async fn list(State(state): State<AppState>, Caller(tenant): Caller) -> Result<Json<Value>, ApiError> {
    let files = state.broker.list_files(&tenant.name).await?;
    let used: u64 = files.iter().map(|f| f.size).sum();
    Ok(Json(json!({"files": files, "used_bytes": used})))
}
