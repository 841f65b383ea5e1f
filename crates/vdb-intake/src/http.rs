//! The intake's HTTP side: the public form (no JavaScript), the submission API, the
//! submitter's status page, and the team's API behind the admin token.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequestParts, Multipart, Path, Query, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use vdb_proto::sample::{
    self, MAX_DETECTION_NAME, MAX_EMAIL, MAX_NOTE, Resolve, SampleState, SubmissionReceipt,
    SubmissionStatus, TrackingId, paths,
};

use crate::intake::{ErrorCode, Intake, Meta, Refusal, bad_input, internal, refusal};
use crate::limit::Refused;
use crate::quarantine::Staged;

type S = State<Arc<Intake>>;

/// Room for the multipart framing and the text fields around the file.
const FORM_OVERHEAD: u64 = 64 << 10;

/// The router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
pub(crate) fn router(intake: Arc<Intake>) -> Router {
    let body_limit = usize::try_from(intake.config.limits.max_sample_bytes + FORM_OVERHEAD)
        .unwrap_or(usize::MAX);
    Router::new()
        .route("/", get(form_page))
        .route(
            paths::FORM,
            post(submit_form).layer(DefaultBodyLimit::max(body_limit)),
        )
        .route(
            paths::SAMPLES,
            post(submit_api)
                .get(list)
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .route("/api/v1/samples/{sha}", get(show))
        .route("/api/v1/samples/{sha}/quarantine", get(quarantine))
        .route("/api/v1/samples/{sha}/resolve", post(resolve))
        .route("/api/v1/submissions/{id}", get(status_json))
        .route("/status/{id}", get(status_page))
        .route("/api/v1/status", get(role_status))
        .route(vdb_proto::paths::HEALTH, get(|| async { "ok" }))
        .with_state(intake)
}

/// The client's address (see [`vdb_service::client_ip`]).
fn client_ip(intake: &Intake, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    vdb_service::client_ip(peer, headers, &intake.config.limits.trusted_proxies)
}

// ---------------------------------------------------------------------------------------------
// Submissions.

/// Admission, reading and filing of one submission (shared by the form and the API); a
/// refusal is counted and logged.
async fn submission(
    intake: &Arc<Intake>,
    ip: IpAddr,
    headers: &HeaderMap,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<SubmissionReceipt, Refusal> {
    let result: Result<SubmissionReceipt, Refusal> = async {
        let limits = &intake.config.limits;
        let _permit = intake
            .limiter
            .admit(ip, intake.clock.now())
            .map_err(|r| match r {
                Refused::Hourly(after) => refusal(
                    429,
                    ErrorCode::RateLimited,
                    format!(
                        "too many submissions from your address (at most {} an hour); try again in {after} s",
                        limits.submissions_per_hour
                    ),
                )
                .with_retry_after(u32::try_from(after.max(1)).unwrap_or(u32::MAX)),
                Refused::Concurrent => refusal(
                    429,
                    ErrorCode::TooManyUploads,
                    "your address already has uploads in progress; wait for them to finish",
                )
                .with_retry_after(10),
                Refused::Busy => refusal(503, ErrorCode::Busy, "the intake is busy; try again in a minute")
                    .with_retry_after(30),
            })?;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limits.max_sample_bytes + FORM_OVERHEAD) {
            return Err(too_large(limits.max_sample_bytes));
        }
        intake.check_quota(0)?;
        let mp = mp.map_err(|e| bad_form(e.body_text()))?;
        let timeout = Duration::from_secs(limits.upload_timeout_secs);
        let (staged, meta) = tokio::time::timeout(timeout, read_form(intake, mp))
            .await
            .map_err(|_| {
                refusal(
                    408,
                    ErrorCode::UploadTimeout,
                    format!("the upload took longer than {} s", timeout.as_secs()),
                )
            })??;
        intake.accept(staged, meta, ip).await
    }
    .await;
    if let Err(r) = &result {
        intake.refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(client = %ip, code = %r.code(), "submission refused");
    }
    result
}

fn too_large(cap: u64) -> Refusal {
    refusal(
        413,
        ErrorCode::TooLarge,
        format!("the sample is larger than {cap} bytes (the intake's limit)"),
    )
}

fn bad_form(e: impl std::fmt::Display) -> Refusal {
    refusal(
        400,
        ErrorCode::BadForm,
        format!("unreadable multipart form: {e}"),
    )
}

/// Reads the multipart form: `file` streamed into the quarantine's staging area, the text
/// fields bounded and checked. Fields may come in any order; an error drops what was staged.
async fn read_form(intake: &Arc<Intake>, mut mp: Multipart) -> Result<(Staged, Meta), Refusal> {
    let mut staged = None;
    let mut meta = Meta::default();
    while let Some(mut field) = mp
        .next_field()
        .await
        .map_err(|e| multipart_error(intake, e))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" => {
                if staged.is_some() {
                    return Err(refusal(
                        400,
                        ErrorCode::TwoFiles,
                        "send one file per submission",
                    ));
                }
                let file_name = field.file_name().unwrap_or_default().to_owned();
                sample::check_file_name(&file_name).map_err(bad_input)?;
                staged = Some(receive(intake, &mut field).await?);
                meta.file_name = Some(file_name).filter(|n| !n.is_empty());
            }
            "detection" => {
                let t = text(
                    intake,
                    &mut field,
                    MAX_DETECTION_NAME,
                    ErrorCode::BadDetectionName,
                )
                .await?;
                let t = t.trim();
                if !t.is_empty() {
                    sample::check_detection_name(t).map_err(bad_input)?;
                    meta.claimed = Some(t.to_owned());
                }
            }
            "note" => {
                let t = text(intake, &mut field, MAX_NOTE, ErrorCode::BadNote).await?;
                sample::check_note(&t).map_err(bad_input)?;
                meta.note = t;
            }
            "email" => {
                let t = text(intake, &mut field, MAX_EMAIL, ErrorCode::BadEmail).await?;
                let t = t.trim();
                if !t.is_empty() {
                    sample::check_email(t).map_err(bad_input)?;
                    meta.email = Some(t.to_owned());
                }
            }
            _ => {
                return Err(refusal(
                    400,
                    ErrorCode::UnknownField,
                    "the form has the fields file, detection, note and email only",
                ));
            }
        }
    }
    let staged = staged.ok_or_else(|| {
        refusal(
            400,
            ErrorCode::NoFile,
            "choose a file to send (form field `file`)",
        )
    })?;
    Ok((staged, meta))
}

fn multipart_error(intake: &Intake, e: axum::extract::multipart::MultipartError) -> Refusal {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(intake.config.limits.max_sample_bytes)
    } else {
        bad_form(e.body_text())
    }
}

/// A text field, at most `max` bytes of UTF-8.
async fn text(
    intake: &Intake,
    field: &mut Field<'_>,
    max: usize,
    code: ErrorCode,
) -> Result<String, Refusal> {
    let mut buf = Vec::new();
    while let Some(c) = field
        .chunk()
        .await
        .map_err(|e| multipart_error(intake, e))?
    {
        if buf.len() + c.len() > max {
            return Err(refusal(
                400,
                code,
                format!(
                    "the field `{}` is longer than {max} bytes",
                    field.name().unwrap_or("?")
                ),
            ));
        }
        buf.extend_from_slice(&c);
    }
    String::from_utf8(buf).map_err(|_| refusal(400, code, "the field is not UTF-8 text"))
}

/// Streams the file field into the staging area, never holding more than a few chunks, and
/// stops at the cap. Nothing is left behind on refusal.
async fn receive(intake: &Arc<Intake>, field: &mut Field<'_>) -> Result<Staged, Refusal> {
    let cap = intake.config.limits.max_sample_bytes;
    let q = intake.quarantine.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Staged>> {
        let mut w = q.writer()?;
        while let Some(chunk) = rx.blocking_recv() {
            if chunk.is_empty() {
                return w.finish().map(Some);
            }
            w.write(&chunk)?;
        }
        Ok(None) // abandoned: the temporary file is removed with `w`
    });
    let mut total = 0u64;
    let read = async {
        while let Some(c) = field
            .chunk()
            .await
            .map_err(|e| multipart_error(intake, e))?
        {
            if c.is_empty() {
                continue;
            }
            total += c.len() as u64;
            if total > cap {
                return Err(too_large(cap));
            }
            if tx.send(c).await.is_err() {
                return Err(internal("the staging writer stopped"));
            }
        }
        if total == 0 {
            return Err(refusal(400, ErrorCode::EmptyFile, "the file is empty"));
        }
        tx.send(Bytes::new())
            .await
            .map_err(|_| internal("the staging writer stopped"))
    };
    let result = read.await;
    drop(tx);
    let staged = writer.await.map_err(internal)?;
    result?;
    staged
        .map_err(internal)?
        .ok_or_else(|| internal("the upload was not staged"))
}

async fn submit_api(
    State(intake): S,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<axum::Json<SubmissionReceipt>, Refusal> {
    Ok(axum::Json(
        submission(&intake, client_ip(&intake, peer, &headers), &headers, mp).await?,
    ))
}

async fn submit_form(
    State(intake): S,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    mp: Result<Multipart, MultipartRejection>,
) -> Response {
    match submission(&intake, client_ip(&intake, peer, &headers), &headers, mp).await {
        Ok(r) => page(
            StatusCode::OK,
            "Sample received",
            &format!(
                "<p>Thank you. Your sample (SHA-256 <code>{sha}</code>, {size} bytes) is in quarantine \
                 for the signature team{dup}.</p>\
                 <p>Your tracking id is <strong id=\"tracking-id\">{id}</strong>. Keep it: it is the only \
                 way to see what becomes of your sample.</p>\
                 <p><a id=\"status-link\" href=\"{path}\">Status of your submission</a></p>",
                sha = r.sha256,
                size = r.size,
                dup = if r.duplicate {
                    " (someone sent the same file before; your submission was added to it)"
                } else {
                    ""
                },
                id = r.tracking_id,
                path = r.status_path,
            ),
        ),
        Err(r) => {
            let mut resp = page(
                r.status(),
                "Submission refused",
                &format!(
                    "<p id=\"error\" data-code=\"{code}\">{msg}</p><p><a href=\"/\">Back to the form</a></p>",
                    code = r.code(),
                    msg = esc(r.message())
                ),
            );
            if let Some(s) = r.retry_after() {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            resp
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The submitter's status.

fn lookup(intake: &Intake, id: &str) -> Result<SubmissionStatus, Refusal> {
    let id = TrackingId::parse(id).map_err(bad_input)?;
    intake.store.status(&id).map_err(internal)?.ok_or_else(|| {
        refusal(
            404,
            ErrorCode::UnknownTrackingId,
            "no submission has this tracking id",
        )
    })
}

async fn status_json(State(intake): S, Path(id): Path<String>) -> Result<Response, Refusal> {
    let s = lookup(&intake, &id)?;
    let mut r = axum::Json(s).into_response();
    private(r.headers_mut());
    Ok(r)
}

async fn status_page(State(intake): S, Path(id): Path<String>) -> Response {
    let s = match lookup(&intake, &id) {
        Ok(s) => s,
        Err(r) => {
            return page(
                r.status(),
                "Unknown submission",
                &format!(
                    "<p id=\"error\" data-code=\"{}\">{}</p>",
                    r.code(),
                    esc(r.message())
                ),
            );
        }
    };
    let state = match (&s.state, &s.published, &s.detected_as) {
        (SampleState::SignaturePublished, Some(p), _) => format!(
            "Signature published: <strong>{} version {}</strong>{} detects it.",
            esc(&p.db),
            p.version,
            p.detection
                .as_deref()
                .map(|d| format!(" (as <code>{}</code>)", esc(d)))
                .unwrap_or_default()
        ),
        (SampleState::AlreadyDetected, _, Some(d)) => format!(
            "Already detected: the network's databases detect it as <code>{}</code>.",
            esc(d)
        ),
        _ if !s.scanned => "Received: in quarantine, being checked.".to_owned(),
        _ => "Received: in quarantine; the signature team will look at it.".to_owned(),
    };
    let received = httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(s.received_at).unwrap_or(0)),
    );
    let mut r = page(
        StatusCode::OK,
        "Your submission",
        &format!(
            "<p id=\"state\" data-state=\"{state_code}\">{state}</p>\
             <table><tr><th>SHA-256</th><td><code>{sha}</code></td></tr>\
             <tr><th>Size</th><td>{size} bytes</td></tr>\
             <tr><th>Received</th><td>{received}</td></tr></table>",
            state_code = serde_json::to_value(s.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            sha = s.sha256,
            size = s.size,
        ),
    );
    private(r.headers_mut());
    r
}

/// A page whose URL holds a tracking id: never cached, never sent on as a referrer.
fn private(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

// ---------------------------------------------------------------------------------------------
// The team's API.

/// Checks the admin token (compared in constant time).
fn require_admin(intake: &Intake, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(want) = &intake.config.admin_token else {
        return Err(refusal(
            403,
            ErrorCode::AdminDisabled,
            "the team's API is off (no admin_token in the intake config)",
        ));
    };
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match got {
        Some(got) if vdb_service::ct_eq(got.as_bytes(), want.as_bytes()) => Ok(()),
        Some(_) => Err(refusal(
            403,
            ErrorCode::BadToken,
            "the admin token is wrong",
        )),
        None => Err(refusal(
            401,
            ErrorCode::NoToken,
            "send Authorization: Bearer <admin token>",
        )),
    }
}

fn check_sha(sha: &str) -> Result<(), Refusal> {
    if sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(refusal(
            400,
            ErrorCode::BadSha256,
            "not a SHA-256 (64 lower-case hex digits)",
        ))
    }
}

/// The team's API: `Authorization: Bearer <admin token>`, checked before anything else.
struct Admin;

impl FromRequestParts<Arc<Intake>> for Admin {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut Parts,
        intake: &Arc<Intake>,
    ) -> Result<Self, Self::Rejection> {
        require_admin(intake, &parts.headers).map(|()| Self)
    }
}

/// A sample's SHA-256 from the path, checked.
struct SampleSha(String);

impl<St: Send + Sync> FromRequestParts<St> for SampleSha {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let Path(sha) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| refusal(400, ErrorCode::BadSha256, e.body_text()))?;
        check_sha(&sha)?;
        Ok(Self(sha))
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    state: Option<SampleState>,
}

async fn list(State(intake): S, _: Admin, Query(q): Query<ListQuery>) -> Result<Response, Refusal> {
    let rows = intake
        .store
        .list(q.limit.unwrap_or(100).min(10_000), q.state)
        .map_err(internal)?;
    Ok(axum::Json(rows).into_response())
}

async fn show(State(intake): S, _: Admin, SampleSha(sha): SampleSha) -> Result<Response, Refusal> {
    let rec = intake
        .store
        .show(&sha)
        .map_err(internal)?
        .ok_or_else(|| refusal(404, ErrorCode::UnknownSample, "no sample with this SHA-256"))?;
    Ok(axum::Json(rec).into_response())
}

async fn quarantine(
    State(intake): S,
    _: Admin,
    SampleSha(sha): SampleSha,
) -> Result<Response, Refusal> {
    if !intake.store.has(&sha).map_err(internal)? {
        return Err(refusal(
            404,
            ErrorCode::UnknownSample,
            "no sample with this SHA-256",
        ));
    }
    let file = intake.quarantine.open_zip(&sha).map_err(internal)?;
    let len = file.metadata().map_err(internal)?.len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(file),
    ));
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{sha}.zip\""),
            ),
        ],
        body,
    )
        .into_response())
}

async fn resolve(
    State(intake): S,
    _: Admin,
    SampleSha(sha): SampleSha,
    body: Bytes,
) -> Result<Response, Refusal> {
    let r: Resolve = serde_json::from_slice(&body)
        .map_err(|e| refusal(400, ErrorCode::BadRequest, format!("resolve body: {e}")))?;
    Ok(axum::Json(intake.resolve(&sha, r)?).into_response())
}

async fn role_status(State(intake): S) -> Response {
    let engine = match (
        &intake.config.scanner.clamd,
        &intake.config.scanner.database,
    ) {
        (Some(_), _) => "clamd",
        (None, Some(_)) => "clamscan",
        (None, None) => "none",
    };
    axum::Json(serde_json::json!({
        "role": "intake",
        "name": intake.config.name,
        "scanner": engine,
        "max_sample_bytes": intake.config.limits.max_sample_bytes,
        "accepted": intake.accepted.load(Ordering::Relaxed),
        "refused": intake.refused.load(Ordering::Relaxed),
        "pending_scans": intake.pending_scans.load(Ordering::SeqCst),
        "staging_files": intake.quarantine.staging_count(),
    }))
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// HTML.

/// HTML-escapes text.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:sans-serif;max-width:42em;margin:2em auto;padding:0 1em}}\
         label{{display:block;margin-top:1em}}input,textarea{{width:100%}}th{{text-align:left;padding-right:1em}}\
         code{{word-break:break-all}}</style></head><body><h1>{title}</h1>{body}</body></html>"
    );
    let mut r = (status, Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn form_page(State(intake): S) -> Response {
    let mb = intake.config.limits.max_sample_bytes as f64 / f64::from(1 << 20);
    page(
        StatusCode::OK,
        "Send a sample to the signature team",
        &format!(
            "<p>If the network's databases do not detect a file you believe is malicious, send it \
             here. It is kept in quarantine for the signature team and checked against the \
             current databases at once. Never send samples to the mailing lists.</p>\
             <form method=\"post\" action=\"{action}\" enctype=\"multipart/form-data\">\
             <label for=\"file\">File (at most {mb:.0} MiB)</label>\
             <input id=\"file\" name=\"file\" type=\"file\" required>\
             <label for=\"detection\">Detection name, if another scanner named it (optional)</label>\
             <input id=\"detection\" name=\"detection\" maxlength=\"{MAX_DETECTION_NAME}\">\
             <label for=\"note\">Where did it come from? (optional)</label>\
             <textarea id=\"note\" name=\"note\" rows=\"4\" maxlength=\"{MAX_NOTE}\"></textarea>\
             <label for=\"email\">Your e-mail, to hear when a release detects it (optional)</label>\
             <input id=\"email\" name=\"email\" type=\"email\" maxlength=\"{MAX_EMAIL}\">\
             <p><button id=\"send\" type=\"submit\">Send</button></p></form>",
            action = paths::FORM,
        ),
    )
}
