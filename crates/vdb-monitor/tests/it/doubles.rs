//! Test doubles: a master (registry, manifest, objects), mirrors that can freeze, tamper,
//! roll back and go down, a webhook sink, an SMTP sink and a peer monitor.

use std::collections::{BTreeMap, HashMap};

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use vdb_proto::{MANIFEST_PATH, MirrorRecord, Signed, sha256_hex};
use vdb_testkit::serve;

pub(crate) const NETWORK: &str = "testnet";
pub(crate) const T0: i64 = 1_800_000_000;

pub(crate) use vdb_testkit::fixtures::read as fixture;
pub(crate) use vdb_testkit::keys::master_key;

/// A release: the signed manifest envelope and every file's bytes.
#[derive(Clone)]
pub(crate) struct Release {
    pub(crate) envelope: String,
    pub(crate) files: BTreeMap<String, Vec<u8>>,
}

/// Release `version` (2..=6) of database `test`, manifest serial = version.
pub(crate) fn release(version: u32, issued_at: i64) -> Release {
    release_with_signs(version, issued_at, false)
}

/// [`release`], with ClamAV 1.5's `.sign` files of its CVD and cdiffs when `signs`.
pub(crate) fn release_with_signs(version: u32, issued_at: i64, signs: bool) -> Release {
    let mut files = BTreeMap::new();
    if signs {
        let cvd_sign = format!("test-{version}.cvd.sign");
        files.insert(cvd_sign.clone(), fixture(&cvd_sign));
        for k in 2..=version {
            let n = format!("test-{k}.cdiff.sign");
            files.insert(n.clone(), fixture(&n));
        }
    }
    files.insert(
        "test.cvd".to_owned(),
        fixture(&format!("test-{version}.cvd")),
    );
    for k in 2..=version {
        files.insert(
            format!("test-{k}.cdiff"),
            fixture(&format!("test-{k}.cdiff")),
        );
    }
    files.insert(
        "timestamp".to_owned(),
        format!("{issued_at}\n").into_bytes(),
    );
    let files_list: Vec<(String, Vec<u8>)> = files.clone().into_iter().collect();
    let mut manifest = vdb_testkit::keys::manifest(
        NETWORK,
        u64::from(version),
        issued_at,
        &[("test", version)],
        &files_list,
    );
    manifest.master = "a".into();
    manifest.expires_at = issued_at + 30 * 86400;
    Release {
        envelope: Signed::sign(&manifest, &master_key()).to_json(),
        files,
    }
}

// ---- master ----

#[derive(Default)]
pub(crate) struct MasterData {
    pub(crate) manifest: Option<String>,
    pub(crate) registry: Vec<MirrorRecord>,
    pub(crate) objects: HashMap<String, Vec<u8>>,
}

#[derive(Clone)]
pub(crate) struct Master {
    pub(crate) url: String,
    pub(crate) data: Arc<Mutex<MasterData>>,
}

impl Master {
    pub(crate) async fn start() -> Self {
        let data = Arc::new(Mutex::new(MasterData::default()));
        let app = Router::new()
            .route(
                MANIFEST_PATH,
                get(|State(d): State<Arc<Mutex<MasterData>>>| async move {
                    match d.lock().unwrap().manifest.clone() {
                        Some(m) => m.into_response(),
                        None => StatusCode::NOT_FOUND.into_response(),
                    }
                }),
            )
            .route(
                "/api/v1/mirrors",
                get(|State(d): State<Arc<Mutex<MasterData>>>| async move {
                    axum::Json(d.lock().unwrap().registry.clone())
                }),
            )
            .route(
                "/api/v1/objects/{sha}",
                get(
                    |State(d): State<Arc<Mutex<MasterData>>>, Path(sha): Path<String>| async move {
                        match d.lock().unwrap().objects.get(&sha) {
                            Some(b) => b.clone().into_response(),
                            None => StatusCode::NOT_FOUND.into_response(),
                        }
                    },
                ),
            )
            .with_state(data.clone());
        let addr = serve(app).await;
        Self {
            url: format!("http://{addr}"),
            data,
        }
    }

    pub(crate) fn publish(&self, r: &Release) {
        let mut d = self.data.lock().unwrap();
        d.manifest = Some(r.envelope.clone());
        for b in r.files.values() {
            d.objects.insert(sha256_hex(b), b.clone());
        }
    }

    pub(crate) fn set_registry(&self, r: Vec<MirrorRecord>) {
        self.data.lock().unwrap().registry = r;
    }
}

// ---- mirror ----

#[derive(Default)]
pub(crate) struct MirrorData {
    pub(crate) release: Option<Release>,
    /// Answer 503 to everything.
    pub(crate) down: bool,
    /// Files served instead of the release's (tampering).
    pub(crate) overrides: HashMap<String, Vec<u8>>,
    pub(crate) hits: usize,
}

#[derive(Clone)]
pub(crate) struct Mirror {
    pub(crate) url: String,
    pub(crate) data: Arc<Mutex<MirrorData>>,
}

async fn mirror_get(
    State(d): State<Arc<Mutex<MirrorData>>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let mut d = d.lock().unwrap();
    d.hits += 1;
    if d.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let Some(r) = d.release.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let path = uri.path();
    let name = path.trim_start_matches('/');
    if path == MANIFEST_PATH {
        return d
            .overrides
            .get(name)
            .cloned()
            .unwrap_or_else(|| r.envelope.into_bytes())
            .into_response();
    }
    let Some(body) = d.overrides.get(name).or_else(|| r.files.get(name)).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if headers
        .get(header::RANGE)
        .is_some_and(|v| v == "bytes=0-511")
        && body.len() > 512
    {
        let total = body.len();
        return (
            StatusCode::PARTIAL_CONTENT,
            [(header::CONTENT_RANGE, format!("bytes 0-511/{total}"))],
            Bytes::copy_from_slice(&body[..512]),
        )
            .into_response();
    }
    body.into_response()
}

impl Mirror {
    pub(crate) async fn start() -> Self {
        let data = Arc::new(Mutex::new(MirrorData::default()));
        let app = Router::new()
            .fallback(get(mirror_get))
            .with_state(data.clone());
        let addr = serve(app).await;
        Self {
            url: format!("http://{addr}"),
            data,
        }
    }

    pub(crate) fn sync(&self, r: &Release) {
        self.data.lock().unwrap().release = Some(r.clone());
    }

    pub(crate) fn set_down(&self, down: bool) {
        self.data.lock().unwrap().down = down;
    }

    pub(crate) fn tamper(&self, name: &str, bytes: Vec<u8>) {
        self.data
            .lock()
            .unwrap()
            .overrides
            .insert(name.into(), bytes);
    }

    pub(crate) fn record(&self, name: &str) -> MirrorRecord {
        let mut r = MirrorRecord::new(name, self.url.clone());
        r.region = Some("europe".into());
        r.country = Some("DE".into());
        r.admin_contact = Some(format!("admin@{name}.example"));
        r
    }
}

// ---- webhook sink ----

#[derive(Clone)]
pub(crate) struct Webhook {
    pub(crate) url: String,
    pub(crate) bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Answer 500 (and record nothing) while set.
    pub(crate) failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Webhook {
    pub(crate) async fn start() -> Self {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, f) = (bodies.clone(), failing.clone());
        let app = Router::new().route(
            "/hook",
            post(move |body: Bytes| async move {
                if f.load(std::sync::atomic::Ordering::SeqCst) {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                b.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                StatusCode::NO_CONTENT
            }),
        );
        let addr = serve(app).await;
        Self {
            url: format!("http://{addr}/hook"),
            bodies,
            failing,
        }
    }

    /// (mirror, kind, level) of every hit, in order.
    pub(crate) fn hits(&self) -> Vec<(String, String, i64)> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["mirror"].as_str().unwrap().to_owned(),
                    b["kind"].as_str().unwrap().to_owned(),
                    b["level"].as_i64().unwrap(),
                )
            })
            .collect()
    }
}

// ---- peer monitor ----

/// A peer monitor whose (local) verdicts the test sets.
pub(crate) async fn peer(report: Arc<Mutex<vdb_proto::VerdictReport>>) -> String {
    let app = Router::new()
        .route(
            "/api/v1/verdicts",
            get(
                |State(r): State<Arc<Mutex<vdb_proto::VerdictReport>>>| async move {
                    axum::Json(r.lock().unwrap().clone())
                },
            ),
        )
        .with_state(report);
    format!("http://{}/api/v1/verdicts", serve(app).await)
}
