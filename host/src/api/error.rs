//! The API's error type: one variant per `error.kind` clients see.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::queue::BrokerError;

/// An API error, rendered as `{"error": {"kind", "message"}}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_json`: the body is not JSON or not of the expected shape.
    #[error("{0}")]
    InvalidJson(String),
    /// 400 `invalid_request`: a field has an unacceptable value.
    #[error("{0}")]
    InvalidRequest(String),
    /// 401 `unauthorized`: no token, or a token nobody holds.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`: the tenant may not use this plugin or queue.
    #[error("{0}")]
    Forbidden(String),
    /// 429 `rate_limited`: over the tenant's submit rate; retry after the given seconds.
    #[error("{message}")]
    RateLimited {
        /// What happened.
        message: String,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// 404 `unknown_plugin`.
    #[error("{0}")]
    UnknownPlugin(String),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 405 `method_not_allowed`.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409 `conflict`.
    #[error("{0}")]
    Conflict(String),
    /// 413 `payload_too_large`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 503 `unavailable`: the broker cannot be reached.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The `error.kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::UnknownPlugin(_) => "unknown_plugin",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) | ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UnknownPlugin(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl ApiError {
    /// The error's JSON, `{"error": {"kind", "message"}}`: a response's body, or one item of a
    /// batch reply.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"kind": self.kind(), "message": self.to_string()}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(self.body());
        let mut response = (self.status(), body).into_response();
        match &self {
            ApiError::Unavailable(_) => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::RateLimited { retry_after_secs, .. } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::NotFound(id) => ApiError::NotFound(format!("no task {id}")),
            BrokerError::Conflict(m) => ApiError::Conflict(m),
            BrokerError::Storage(m) => {
                tracing::warn!(error = %m, "broker unavailable");
                ApiError::Unavailable("the task store is unavailable; try again".into())
            }
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::InvalidRequest(format!("bad query string: {}", e.body_text()))
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        ApiError::InvalidRequest(format!("bad path: {}", e.body_text()))
    }
}
