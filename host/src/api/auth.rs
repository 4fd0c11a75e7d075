//! Who is calling: the bearer token (header, or `?token=` for WebSocket clients that cannot set
//! headers) resolved to a tenant.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::tenant::{Authenticated, Tenant};

/// The authenticated caller of a request. Without a tenants file, the default tenant.
#[derive(Debug, Clone)]
pub struct Caller(pub Tenant);

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn query_token(parts: &Parts) -> Option<&str> {
    parts.uri.query()?.split('&').find_map(|pair| pair.strip_prefix("token="))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).or_else(|| query_token(parts));
        match state.tenants.authenticate(token) {
            Authenticated::Caller(tenant) => Ok(Caller(tenant)),
            Authenticated::Refused if token.is_none() => Err(ApiError::Unauthorized(
                "this host requires a bearer token (Authorization: Bearer TOKEN)".into(),
            )),
            Authenticated::Refused => Err(ApiError::Unauthorized("the token is not valid".into())),
        }
    }
}
