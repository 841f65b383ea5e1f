//! The mirror's HTTP application: routes, pushes, statistics, health and metrics.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse as _;
use axum::routing::{any, get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use vdb_proto::{Clock, ErrorCode, PublicKey, PushError, PushNotice, ReplayGuard, Signed, paths};

use crate::config::UnknownHost;
use crate::metrics::Metrics;
use crate::stats::{self, Stats};
use crate::store::Snapshot;
use crate::sync::{Current, SyncRequest, read_current};

/// Largest push body accepted (a hub's notice lists its leaves: about 600 fit).
const MAX_PUSH: usize = 64 * 1024;
/// The mirror's own status document.
pub const STATUS_PATH: &str = "/.well-known/vdbnet/mirror-status";

/// Pending sync requests: pushes that arrive while a sync runs collapse into one more sync.
#[derive(Debug, Default)]
pub(crate) struct Trigger {
    pending: Mutex<Option<SyncRequest>>,
    pub(crate) notify: Notify,
}

impl Trigger {
    pub(crate) fn request(&self, want_serial: Option<u64>, forced: bool) {
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let cur = p.get_or_insert_with(SyncRequest::default);
            cur.forced |= forced;
            cur.want_serial = cur.want_serial.max(want_serial);
        }
        self.notify.notify_one();
    }

    /// Whether a sync request waits.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    pub(crate) fn take(&self) -> Option<SyncRequest> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// The last sync's result, for the status document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MirrorStatus {
    /// The mirror's name.
    pub name: String,
    /// Serial of the served manifest (none before the first sync).
    pub serial: Option<u64>,
    /// Database versions served.
    pub databases: std::collections::BTreeMap<String, u32>,
    /// Syncs that completed (any outcome) since start.
    pub syncs: u64,
    /// Syncs that failed since start.
    pub failed_syncs: u64,
    /// The last sync's error, if it failed.
    pub last_error: Option<String>,
}

/// Shared state of the HTTP side.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) name: String,
    pub(crate) hosts: Vec<String>,
    pub(crate) unknown_host: UnknownHost,
    /// `Cache-Control` of mutable names.
    pub(crate) mutable_cache: HeaderValue,
    pub(crate) current: Current,
    pub(crate) local_dir: PathBuf,
    pub(crate) local: crate::local::LocalFiles,
    pub(crate) stats: Arc<Stats>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keys: Vec<PublicKey>,
    pub(crate) guard: Mutex<ReplayGuard>,
    pub(crate) trigger: Arc<Trigger>,
    /// A hub's notice waiting to be relayed to its leaves.
    pub(crate) relay: crate::hub::Pending,
    pub(crate) stats_auth: Option<(String, String)>,
    pub(crate) status: Mutex<MirrorStatus>,
}

/// An error answer with an [`vdb_proto::ApiError`] body.
pub(crate) fn api_error(status: StatusCode, code: ErrorCode, message: &str) -> Response<Body> {
    vdb_service::ApiError::status_code(status, code, message).into_response()
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

impl App {
    pub(crate) fn snapshot(&self) -> Option<Arc<Snapshot>> {
        read_current(&self.current)
    }

    pub(crate) fn host_allowed(&self, h: &HeaderMap) -> bool {
        if self.hosts.is_empty() || self.unknown_host == UnknownHost::Serve {
            return true;
        }
        let Some(host) = h.get(header::HOST).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let host = match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
            _ => host,
        };
        let host = host.trim_end_matches('.');
        self.hosts.iter().any(|n| n.eq_ignore_ascii_case(host))
    }

    fn stats_authorized(&self, h: &HeaderMap) -> bool {
        let Some((user, pass)) = &self.stats_auth else {
            return false;
        };
        let Some(given) = h
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|v| b64_decode(v.trim()))
        else {
            return false;
        };
        let want = format!("{user}:{pass}");
        // Compare digests so that the comparison time does not depend on the lengths either.
        vdb_service::ct_eq(
            vdb_proto::sha256_hex(&given).as_bytes(),
            vdb_proto::sha256_hex(want.as_bytes()).as_bytes(),
        )
    }
}

/// The router of a mirror.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(paths::HEALTH, get(|| async { "ok" }))
        .route(paths::METRICS, get(metrics))
        .route(STATUS_PATH, get(status))
        .route(paths::PUSH, post(push))
        .route("/local_stats", any(local_stats))
        .route("/local_stats/", any(local_stats))
        .fallback(files)
        .with_state(app)
}

async fn metrics(State(app): State<Arc<App>>) -> Response<Body> {
    app.metrics.response(200);
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .body(Body::from(app.metrics.encode()))
        .unwrap_or_default()
}

async fn status(State(app): State<Arc<App>>) -> Response<Body> {
    let mut s = app.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(snap) = app.snapshot() {
        s.serial = Some(snap.manifest.serial);
        s.databases = snap
            .manifest
            .databases
            .iter()
            .map(|(k, v)| (k.clone(), v.version))
            .collect();
    }
    axum::Json(s).into_response()
}

async fn push(State(app): State<Arc<App>>, req: Request<Body>) -> Response<Body> {
    let refuse = |status: StatusCode, code: ErrorCode, msg: String| {
        tracing::warn!(code = code.as_str(), reason = %msg, "push refused");
        app.metrics.push(code.as_str());
        app.metrics.response(status.as_u16());
        api_error(status, code, &msg)
    };
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_PUSH).await else {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("a push notice is at most {MAX_PUSH} bytes"),
        );
    };
    let signed = match Signed::<PushNotice>::from_json(&body) {
        Ok(s) => s,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, ErrorCode::Malformed, e.to_string()),
    };
    let notice = match signed.verify(&app.keys) {
        Ok(n) => n,
        Err(e) => {
            return refuse(
                StatusCode::FORBIDDEN,
                ErrorCode::BadSignature,
                e.to_string(),
            );
        }
    };
    let now = app.clock.now();
    let accepted = app
        .guard
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .accept(&notice, now);
    if let Err(e) = accepted {
        let (status, code) = match e {
            PushError::Replay(_) => (StatusCode::CONFLICT, ErrorCode::Replay),
            PushError::Stale { .. } => (StatusCode::BAD_REQUEST, ErrorCode::Stale),
            PushError::WrongNetwork(_) => (StatusCode::BAD_REQUEST, ErrorCode::WrongNetwork),
            PushError::BadNonce => (StatusCode::BAD_REQUEST, ErrorCode::BadNonce),
        };
        return refuse(status, code, e.to_string());
    }
    if let Some(held) = app.snapshot().map(|s| s.manifest.serial)
        && notice.serial < held
    {
        return refuse(
            StatusCode::CONFLICT,
            ErrorCode::OlderSerial,
            format!(
                "push names serial {} but this mirror holds {held} (rollback refused)",
                notice.serial
            ),
        );
    }
    tracing::info!(master = %notice.master, serial = notice.serial, forced = notice.forced, leaves = notice.leaves.len(), "push accepted");
    // A hub's notice lists its leaves; a leaf gets that same notice relayed, and finds itself
    // in the list: only the hub relays (a leaf relaying would send every leaf's notice to
    // every other leaf).
    if !notice.leaves.is_empty() && !notice.leaves.iter().any(|l| l.name == app.name) {
        // This mirror is the hub: the same signed notice goes to its leaves after its switch.
        app.relay.put(crate::hub::Relay {
            serial: notice.serial,
            body: String::from_utf8_lossy(&body).into_owned(),
            leaves: notice.leaves.clone(),
        });
    }
    app.trigger.request(Some(notice.serial), notice.forced);
    app.metrics.push("accepted");
    app.metrics.response(202);
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({"accepted": true, "serial": notice.serial})),
    )
        .into_response()
}

async fn local_stats(
    State(app): State<Arc<App>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let json = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "format=json"));
    if app.stats_auth.is_none() {
        return api_error(
            StatusCode::NOT_FOUND,
            ErrorCode::StatsDisabled,
            "statistics are off: set stats_user and stats_password in the mirror config",
        );
    }
    if !app.stats_authorized(&headers) {
        return vdb_service::ApiError::new(
            vdb_service::ErrorKind::Unauthorized("local_stats"),
            ErrorCode::Unauthorized,
            "statistics need the mirror's credentials",
        )
        .into_response();
    }
    let st = app.stats.clone();
    let rows = match tokio::task::spawn_blocking(move || st.rows()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "statistics query failed");
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::StatsFailed,
                "the statistics database failed; see the mirror's log",
            );
        }
        Err(_) => {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::StatsFailed,
                "internal error",
            );
        }
    };
    if json {
        axum::Json(rows).into_response()
    } else {
        Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::from(stats::html(&app.name, &rows)))
            .unwrap_or_default()
    }
}

async fn files(State(app): State<Arc<App>>, req: Request<Body>) -> Response<Body> {
    crate::files::serve(&app, req)
        .response()
        .await
        .map(Body::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(b64_decode("dTpw").unwrap(), b"u:p");
        assert_eq!(b64_decode("YWRtaW46c2VjcmV0").unwrap(), b"admin:secret");
        assert!(b64_decode("**").is_none());
    }
}
