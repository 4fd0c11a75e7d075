//! The dashboard: one page at `/` for operators (the queue at a glance, submit, cancel) and
//! process engineers (a run's event log, the CVD thickness curve with its warnings, the DFT SCF
//! convergence), live over the WebSocket streams, after the CVD and ADR queue notes.
//!
//! The page is plain HTML, CSS and one ES module written by hand and built into the binary with
//! `include_str!`: no framework, no build step and no CDN, because many labs have no internet. It
//! uses only the public API (REST under `/api/v1`, WebSocket under `/ws`) with the caller's
//! token, so it can do nothing that `curl` could not; serving it needs no token.
//!
//! Caching: the page is `no-cache` (revalidated on every load, so an upgraded host serves its new
//! page at once) and names each asset with a hash of its content (`/assets/app.js?v=1a2b3c4d5e6f`).
//! An asset asked for under its current hash may be kept for a year (`immutable`); asked for
//! without it, it is revalidated like the page. Everything carries a strong `ETag` and answers a
//! matching `If-None-Match` with 304. A `Content-Security-Policy` allows only this origin, so
//! that even a mistake in escaping cannot load or run anything from elsewhere.

use std::sync::LazyLock;

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiError;

/// One file the dashboard serves under `/assets/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("dashboard/style.css"),
    },
    Asset { name: "icon.svg", content_type: "image/svg+xml", body: include_str!("dashboard/icon.svg") },
];

const INDEX_HTML: &str = include_str!("dashboard/index.html");

/// How long a browser may keep an asset asked for under its content hash.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For the page, and assets asked for without their hash: keep, but ask before each use.
const REVALIDATE: &str = "no-cache";

const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The first 12 hex digits of the SHA-256 of `body`: the version in asset URLs and the ETag.
fn content_hash(body: &str) -> String {
    hex::encode(&Sha256::digest(body.as_bytes())[..6])
}

/// The page with each asset URL versioned by its hash, and the page's own hash.
struct Built {
    index: String,
    index_hash: String,
    asset_hashes: Vec<String>,
}

static BUILT: LazyLock<Built> = LazyLock::new(|| {
    let asset_hashes: Vec<String> = ASSETS.iter().map(|a| content_hash(a.body)).collect();
    let mut index = INDEX_HTML.to_owned();
    for (asset, hash) in ASSETS.iter().zip(&asset_hashes) {
        let plain = format!("\"/assets/{}\"", asset.name);
        index = index.replace(&plain, &format!("\"/assets/{}?v={hash}\"", asset.name));
    }
    let index_hash = content_hash(&index);
    Built { index, index_hash, asset_hashes }
});

/// True when `If-None-Match` names `etag` (or is `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|list| {
        list.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
    })
}

fn respond(
    headers: &HeaderMap,
    content_type: &'static str,
    cache_control: &'static str,
    hash: &str,
    body: &'static str,
) -> Response {
    let etag = format!("\"{hash}\"");
    let mut response = if not_modified(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `GET /`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    let built = &*BUILT;
    let mut response =
        respond(&headers, "text/html; charset=utf-8", REVALIDATE, &built.index_hash, built.index.as_str());
    let out = response.headers_mut();
    out.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `GET /assets/{name}[?v=HASH]`: a script, style sheet or icon of the page.
pub async fn asset(
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (asset, hash) = ASSETS
        .iter()
        .zip(&BUILT.asset_hashes)
        .find(|(asset, _)| asset.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no dashboard asset {name:?}")))?;
    let versioned = query.as_deref().is_some_and(|q| q.split('&').any(|pair| pair == format!("v={hash}")));
    let cache_control = if versioned { IMMUTABLE } else { REVALIDATE };
    Ok(respond(&headers, asset.content_type, cache_control, hash, asset.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_every_asset_with_its_content_hash() {
        let built = &*BUILT;
        for (asset, hash) in ASSETS.iter().zip(&built.asset_hashes) {
            assert!(
                built.index.contains(&format!("/assets/{}?v={hash}", asset.name)),
                "index.html does not link {} (or links it under another path)",
                asset.name
            );
        }
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\", W/\"abc\""));
        assert!(not_modified(&headers, "\"abc\""));
        assert!(!not_modified(&headers, "\"abd\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&headers, "\"abc\""));
        assert!(!not_modified(&HeaderMap::new(), "\"abc\""));
    }
}
