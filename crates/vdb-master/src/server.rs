//! The master's HTTP API.

use std::sync::Arc;
pub use vdb_proto::{Drain, Timeline, UPLOAD_HEADER};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tower::ServiceExt as _;
use vdb_proto::{ApiError, MirrorRecord, Signed, UploadAccepted, UploadTicket, paths};

use crate::gate::Refusal;
use crate::history::{RegistryEntry, ReleaseRow};
use crate::master::{Master, Origin, blocking};
use crate::replicate::{ReleaseEntry, ReleasePage};

type S = State<Arc<Master>>;

/// An error answer.
pub(crate) struct Api(StatusCode, ApiError);

impl Api {
    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            ApiError {
                code: code.to_owned(),
                message: message.into(),
            },
        )
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(500, "internal", e.to_string())
    }
}

impl From<Refusal> for Api {
    fn from(r: Refusal) -> Self {
        Self::new(r.status, r.code, r.message)
    }
}

impl IntoResponse for Api {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn require_admin(m: &Master, headers: &HeaderMap) -> Result<(), Api> {
    let Some(want) = &m.config.admin_token else {
        return Err(Api::new(
            403,
            "admin_disabled",
            "the admin API is off (no admin_token in the master config)",
        ));
    };
    match bearer(headers) {
        Some(got) if vdb_service::ct_eq(got.as_bytes(), want.as_bytes()) => Ok(()),
        Some(_) => Err(Api::new(403, "bad_token", "the admin token is wrong")),
        None => Err(Api::new(
            401,
            "no_token",
            "send Authorization: Bearer <admin token>",
        )),
    }
}

/// The router.
pub(crate) fn router(m: Arc<Master>) -> Router {
    let upload_limit = m.config.max_file_size;
    Router::new()
        .route(paths::HEALTH, get(|| async { "ok" }))
        .route(paths::METRICS, get(metrics))
        .route(vdb_proto::MANIFEST_PATH, get(manifest))
        .route(
            "/api/v1/objects/{sha}",
            put(upload).get(object).layer(DefaultBodyLimit::max(
                usize::try_from(upload_limit).unwrap_or(usize::MAX),
            )),
        )
        .route(paths::RELEASES, post(submit).get(releases_after))
        .route("/api/v1/releases/{id}", get(release))
        .route("/api/v1/history", get(history))
        .route(paths::MIRRORS, get(mirrors).post(mirror_add))
        .route(
            "/api/v1/mirrors/{name}",
            get(mirror_show).put(mirror_update).delete(mirror_remove),
        )
        .route("/api/v1/mirrors/{name}/drain", post(mirror_drain))
        .route("/api/v1/registry", get(registry))
        .route("/api/v1/replicate", post(poke))
        .route("/api/v1/status", get(status))
        .fallback(|| async { Api::new(404, "not_found", "no such endpoint") })
        .layer(DefaultBodyLimit::max(1 << 20))
        .with_state(m)
}

async fn metrics(State(m): S) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.metrics.encode(),
    )
}

async fn manifest(State(m): S) -> Result<Response, Api> {
    match m.current() {
        Some(c) => Ok((
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            c.json,
        )
            .into_response()),
        None => Err(Api::new(
            404,
            "no_manifest",
            "this master has not signed a manifest yet",
        )),
    }
}

async fn upload(
    state: S,
    path: Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Api> {
    let m = Arc::clone(&state.0);
    let r = upload_inner(state, path, headers, body).await;
    match &r {
        Ok(_) => m.metrics.upload("ok"),
        Err(e) => {
            m.metrics.upload(&e.1.code);
            tracing::warn!(code = %e.1.code, reason = %e.1.message, "upload refused");
        }
    }
    r
}

async fn upload_inner(
    State(m): S,
    Path(sha): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Api> {
    if !crate::objects::is_sha256(&sha) {
        return Err(Api::new(
            400,
            "bad_address",
            "the object address must be a lower-case hex SHA-256",
        ));
    }
    let ticket = headers
        .get(UPLOAD_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Api::new(
                401,
                "no_ticket",
                format!("send a signed upload ticket in the {UPLOAD_HEADER} header"),
            )
        })?;
    let env = Signed::<UploadTicket>::from_json(ticket.as_bytes())
        .map_err(|e| Api::new(400, "bad_ticket", e.to_string()))?;
    let signer = env.signer();
    if !m.policy.is_publisher(&signer) {
        return Err(Api::new(
            403,
            "unknown_key",
            format!("{signer} is not a publisher key of this master"),
        ));
    }
    let t = env
        .verify(&[signer])
        .map_err(|e| Api::new(403, "bad_signature", e.to_string()))?;
    let now = m.clock.now();
    if t.sha256 != sha {
        return Err(Api::new(
            400,
            "bad_ticket",
            "the ticket is for another object",
        ));
    }
    if (t.issued_at - now).abs() > m.config.statement_window_secs {
        return Err(Api::new(
            409,
            "replay",
            format!(
                "upload ticket issued at {} is outside the window around now ({now})",
                t.issued_at
            ),
        ));
    }
    if t.size > m.config.max_file_size {
        return Err(Api::new(
            413,
            "too_large",
            format!(
                "object is {} bytes, over the limit of {} bytes",
                t.size, m.config.max_file_size
            ),
        ));
    }
    let mut up = m.objects.begin(t.size).map_err(Api::internal)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Api::new(400, "bad_body", e.to_string()))?;
        up.write(&chunk).map_err(|e| match e {
            crate::objects::ObjectError::TooLarge(_) => Api::new(
                413,
                "too_large",
                format!("body is larger than the {} bytes the ticket states", t.size),
            ),
            e => Api::internal(e),
        })?;
    }
    let sha2 = sha.clone();
    let objects = m.objects.clone();
    let size = blocking(move || objects.finish(up, &sha2))
        .await
        .map_err(|e| match e {
            crate::objects::ObjectError::HashMismatch { .. } => {
                Api::new(400, "hash_mismatch", e.to_string())
            }
            e => Api::internal(e),
        })?;
    if size != t.size {
        return Err(Api::new(
            400,
            "size_mismatch",
            format!("received {size} bytes, the ticket states {}", t.size),
        ));
    }
    tracing::info!(object = %sha, size, publisher = %signer, "object uploaded");
    Ok((
        StatusCode::CREATED,
        axum::Json(UploadAccepted { sha256: sha, size }),
    )
        .into_response())
}

async fn object(
    State(m): S,
    Path(sha): Path<String>,
    req: axum::extract::Request,
) -> Result<Response, Api> {
    let headers = req.headers();
    if !m.config.pull_tokens.is_empty() {
        let ok = bearer(headers).is_some_and(|got| {
            m.config.pull_tokens.iter().fold(false, |acc, t| {
                acc | vdb_service::ct_eq(got.as_bytes(), t.as_bytes())
            })
        });
        if !ok {
            return Err(Api::new(
                401,
                "no_token",
                "objects need Authorization: Bearer <pull token>",
            ));
        }
    }
    if !crate::objects::is_sha256(&sha) || !m.is_servable(&sha) {
        return Err(Api::new(
            404,
            "no_object",
            "no released object with this address",
        ));
    }
    let path = m.objects.path(&sha).map_err(Api::internal)?;
    // ServeFile answers HEAD, Range (a mirror or monitor reading a CVD header) and
    // If-Modified-Since. Large reads: a whole CVD goes to every mirror at each release, and
    // each chunk is one trip to the blocking pool (the default is 64 KiB).
    let mut resp = tower_http::services::ServeFile::new(path)
        .with_buf_chunk_size(512 * 1024)
        .oneshot(req)
        .await
        .map_err(Api::internal)?
        .map(Body::new);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

async fn submit(State(m): S, body: axum::body::Bytes) -> Result<Response, Api> {
    let a = m.submit(&body, Origin::Publisher).await?;
    Ok((StatusCode::OK, axum::Json(a)).into_response())
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}
fn default_limit() -> i64 {
    100
}

async fn releases_after(
    State(m): S,
    Query(q): Query<After>,
) -> Result<axum::Json<ReleasePage>, Api> {
    let h = m.history.clone();
    let rows = blocking(move || h.accepted_after(q.after, q.limit.clamp(1, 1000)))
        .await
        .map_err(Api::internal)?;
    Ok(axum::Json(ReleasePage {
        releases: rows
            .into_iter()
            .map(|r| ReleaseEntry {
                seq: r.seq,
                envelope: r.envelope,
            })
            .collect(),
    }))
}

async fn release(State(m): S, Path(id): Path<String>) -> Result<axum::Json<Timeline>, Api> {
    let h = m.history.clone();
    let t = blocking(
        move || -> Result<Option<Timeline>, crate::history::HistoryError> {
            let Some(release) = h.accepted(&id)? else {
                return Ok(None);
            };
            let pushes = match release.serial {
                Some(s) => h.pushes_since(s)?,
                None => Vec::new(),
            };
            let mut acks: Vec<(String, u64, i64)> = Vec::new();
            for p in &pushes {
                if let Some(at) = p.acked_at
                    && !acks.iter().any(|(n, _, _)| *n == p.mirror)
                {
                    acks.push((p.mirror.clone(), p.serial, at));
                }
            }
            Ok(Some(Timeline {
                release,
                pushes,
                acks,
            }))
        },
    )
    .await
    .map_err(Api::internal)?;
    t.map(axum::Json)
        .ok_or_else(|| Api::new(404, "no_release", "no accepted release with this id"))
}

#[derive(Deserialize)]
struct Limit {
    #[serde(default = "default_limit")]
    limit: i64,
}

async fn history(State(m): S, Query(q): Query<Limit>) -> Result<axum::Json<Vec<ReleaseRow>>, Api> {
    let h = m.history.clone();
    Ok(axum::Json(
        blocking(move || h.recent(q.limit.clamp(1, 1000)))
            .await
            .map_err(Api::internal)?,
    ))
}

async fn mirrors(State(m): S) -> Result<axum::Json<Vec<MirrorRecord>>, Api> {
    let h = m.history.clone();
    Ok(axum::Json(
        blocking(move || h.mirrors()).await.map_err(Api::internal)?,
    ))
}

async fn registry(State(m): S) -> Result<axum::Json<Vec<RegistryEntry>>, Api> {
    let h = m.history.clone();
    Ok(axum::Json(
        blocking(move || h.registry())
            .await
            .map_err(Api::internal)?,
    ))
}

async fn find(m: &Master, name: &str) -> Result<Option<RegistryEntry>, Api> {
    let h = m.history.clone();
    let all = blocking(move || h.registry())
        .await
        .map_err(Api::internal)?;
    Ok(all.into_iter().find(|e| e.record.name == name))
}

async fn mirror_show(
    State(m): S,
    Path(name): Path<String>,
) -> Result<axum::Json<MirrorRecord>, Api> {
    match find(&m, &name).await? {
        Some(e) if !e.deleted => Ok(axum::Json(e.record)),
        _ => Err(Api::new(
            404,
            "no_mirror",
            format!("no mirror named {name:?}"),
        )),
    }
}

fn check_record(r: &MirrorRecord) -> Result<(), Api> {
    if !vdb_proto::is_safe_db_name(&r.name) {
        return Err(Api::new(
            400,
            "bad_record",
            "mirror names are [a-z0-9_-], 1-64 characters",
        ));
    }
    for u in r.push_url.iter().chain(&r.base_urls) {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(Api::new(
                400,
                "bad_record",
                format!("URL {u:?} must start with http:// or https://"),
            ));
        }
    }
    Ok(())
}

async fn write_mirror(m: &Master, record: MirrorRecord, deleted: bool) -> Result<(), Api> {
    let prev = find(m, &record.name).await?.map_or(0, |e| e.updated_at);
    let entry = RegistryEntry {
        record,
        updated_at: m.clock.now().max(prev + 1),
        deleted,
    };
    tracing::info!(mirror = %entry.record.name, deleted, "registry changed");
    let h = m.history.clone();
    blocking(move || h.put_mirror(&entry))
        .await
        .map_err(Api::internal)?;
    Ok(())
}

fn parse_record(body: &[u8]) -> Result<MirrorRecord, Api> {
    let r: MirrorRecord =
        serde_json::from_slice(body).map_err(|e| Api::new(400, "bad_record", e.to_string()))?;
    check_record(&r)?;
    Ok(r)
}

async fn mirror_add(
    State(m): S,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Api> {
    require_admin(&m, &headers)?;
    let r = parse_record(&body)?;
    if find(&m, &r.name).await?.is_some_and(|e| !e.deleted) {
        return Err(Api::new(
            409,
            "exists",
            format!("mirror {:?} is already registered (use update)", r.name),
        ));
    }
    write_mirror(&m, r.clone(), false).await?;
    // A new mirror syncs at once.
    if r.push_url.is_some() && m.ready.load(std::sync::atomic::Ordering::SeqCst) {
        let serial = m.serial();
        let (mm, rec) = (Arc::clone(&m), r.clone());
        m.tasks
            .spawn(async move { crate::push::push_one(&mm, rec, serial, false).await });
    }
    Ok((StatusCode::CREATED, axum::Json(r)).into_response())
}

async fn mirror_update(
    State(m): S,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::Json<MirrorRecord>, Api> {
    require_admin(&m, &headers)?;
    let r = parse_record(&body)?;
    if r.name != name {
        return Err(Api::new(
            400,
            "bad_record",
            "the record's name differs from the URL's",
        ));
    }
    if find(&m, &name).await?.is_none_or(|e| e.deleted) {
        return Err(Api::new(
            404,
            "no_mirror",
            format!("no mirror named {name:?}"),
        ));
    }
    write_mirror(&m, r.clone(), false).await?;
    Ok(axum::Json(r))
}

async fn mirror_remove(
    State(m): S,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, Api> {
    require_admin(&m, &headers)?;
    match find(&m, &name).await? {
        Some(e) if !e.deleted => {
            write_mirror(&m, e.record, true).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(Api::new(
            404,
            "no_mirror",
            format!("no mirror named {name:?}"),
        )),
    }
}

async fn mirror_drain(
    State(m): S,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::Json<MirrorRecord>, Api> {
    require_admin(&m, &headers)?;
    let d: Drain = if body.is_empty() {
        Drain { drained: true }
    } else {
        serde_json::from_slice(&body).map_err(|e| Api::new(400, "bad_request", e.to_string()))?
    };
    match find(&m, &name).await? {
        Some(e) if !e.deleted => {
            let mut r = e.record;
            r.drained = d.drained;
            write_mirror(&m, r.clone(), false).await?;
            Ok(axum::Json(r))
        }
        _ => Err(Api::new(
            404,
            "no_mirror",
            format!("no mirror named {name:?}"),
        )),
    }
}

/// `GET /api/v1/status`: what this master holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The master's name.
    pub name: String,
    /// The network.
    pub network: String,
    /// Caught up with the peers (takes releases, signs and pushes).
    pub ready: bool,
    /// Serial of the current manifest (0 before the first).
    pub serial: u64,
    /// Highest serial seen from a peer.
    pub peer_serial: u64,
    /// Current version of each database.
    pub databases: std::collections::BTreeMap<String, u32>,
}

async fn status(State(m): S) -> axum::Json<Status> {
    let cur = m.current();
    axum::Json(Status {
        name: m.config.name.clone(),
        network: m.config.network.clone(),
        ready: m.ready.load(std::sync::atomic::Ordering::SeqCst),
        serial: cur.as_ref().map_or(0, |c| c.manifest.serial),
        peer_serial: m.peer_serial.load(std::sync::atomic::Ordering::SeqCst),
        databases: cur
            .map(|c| {
                c.manifest
                    .databases
                    .iter()
                    .map(|(k, v)| (k.clone(), v.version))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

async fn poke(State(m): S) -> StatusCode {
    m.replicate_now.notify_one();
    StatusCode::ACCEPTED
}
