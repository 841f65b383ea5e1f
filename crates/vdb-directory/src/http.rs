//! The HTTP side: the redirector, the mirror list, health and metrics.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use vdb_proto::ErrorCode;
use vdb_proto::paths;
use vdb_service::ApiError;

use crate::membership::{Member, MirrorStatus};
use crate::state::Shared;
use crate::zone::{Rng, weighted_shuffle};

/// `GET /api/v1/mirrors` on the directory.
#[derive(Debug, Serialize)]
struct MirrorList<'a> {
    zone: &'a str,
    serial: u32,
    fail_static: bool,
    /// The manifest serial whose `dns.txt` the TXT records are (none: no manifest every
    /// handed-out mirror serves is known).
    txt_serial: Option<u64>,
    /// The `current.cvd` TXT record as answered.
    txt: Option<String>,
    mirrors: &'a [MirrorStatus],
}

fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    ApiError::status_code(status, code, message).into_response()
}

/// The router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(paths::HEALTH, get(|| async { "ok" }))
        .route(paths::METRICS, get(metrics))
        .route(paths::MIRRORS, get(mirrors))
        .route("/{file}", get(redirect))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(1024))
        .with_state(shared)
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such path: ask for /<file> (a database file name), /api/v1/mirrors, /healthz or /metrics",
    )
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
        .into_response()
}

async fn mirrors(State(shared): State<Arc<Shared>>) -> Response {
    let snap = shared.snapshot();
    axum::Json(MirrorList {
        zone: &shared.config.zone,
        serial: snap.serial,
        fail_static: snap.membership.fail_static,
        txt_serial: snap.membership.txt_serial,
        txt: snap.txt.as_ref().map(|t| t.current.to_string()),
        mirrors: &snap.membership.statuses,
    })
    .into_response()
}

fn file_url(m: &Member, file: &str) -> Option<String> {
    m.base_url
        .as_ref()
        .map(|b| format!("{}/{}", b.trim_end_matches('/'), file))
}

/// The client's address (see [`vdb_service::client_ip`]).
fn client_ip(shared: &Shared, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    vdb_service::client_ip(peer, headers, &shared.config.trusted_proxies)
}

async fn redirect(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    if !vdb_proto::is_safe_file_name(&file) {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::BadName,
            format!("{file:?} is not a database file name"),
        );
    }
    let snap = shared.snapshot();
    let region = shared.region_of(client_ip(&shared, peer, &headers));
    let all: Vec<&Member> = snap
        .membership
        .members
        .iter()
        .filter(|m| m.base_url.is_some())
        .collect();
    let local: Vec<&Member> = match region.as_deref() {
        Some(r) => all
            .iter()
            .copied()
            .filter(|m| m.region.as_deref() == Some(r))
            .collect(),
        None => Vec::new(),
    };
    let mut rng = Rng::new();
    // The client's region first (weighted), then everyone else (weighted) as alternatives.
    let mut order = weighted_shuffle(&local, &mut rng);
    let rest: Vec<&Member> = all
        .iter()
        .copied()
        .filter(|m| !order.iter().any(|o| o.name == m.name))
        .collect();
    order.extend(weighted_shuffle(&rest, &mut rng));
    let Some(best) = order.first() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NoMirror,
            "no mirror is in service right now; try again later",
        );
    };
    let Some(location) = file_url(best, &file) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NoMirror,
            "no mirror URL",
        );
    };
    let mut resp = StatusCode::FOUND.into_response();
    let h = resp.headers_mut();
    let Ok(loc) = HeaderValue::from_str(&location) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::BadMirrorUrl,
            "a mirror's base URL is not a valid header value",
        );
    };
    h.insert(header::LOCATION, loc);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (i, m) in order
        .iter()
        .skip(1)
        .take(shared.config.redirect_alternatives)
        .enumerate()
    {
        if let Some(url) = file_url(m, &file)
            && let Ok(v) = HeaderValue::from_str(&format!("<{url}>; rel=duplicate; pri={}", i + 1))
        {
            h.append(header::LINK, v);
        }
    }
    shared.metrics.redirects.inc();
    resp
}
