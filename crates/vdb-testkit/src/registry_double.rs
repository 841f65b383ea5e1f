//! A double of what the directory reads: a master's registry (`/api/v1/mirrors`), a monitor's
//! verdicts (`/api/v1/verdicts`) and, optionally, a mirror's flat files, on one small axum
//! server. Tests change what it serves while the system under test runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use vdb_proto::{MirrorRecord, MirrorState, MirrorVerdict, VerdictReport};

/// What the double serves.
#[derive(Debug, Default)]
pub struct Served {
    /// The registry (`GET /api/v1/mirrors`).
    pub registry: Vec<MirrorRecord>,
    /// The verdicts (`GET /api/v1/verdicts`, monitor `"double"`).
    pub verdicts: Vec<MirrorVerdict>,
    /// The registry answers 503.
    pub master_down: bool,
    /// The verdicts answer 500.
    pub monitor_down: bool,
    /// Other paths are served from this directory (a mirror double; flat names only, whole
    /// bodies even for a `Range` request).
    pub files: Option<PathBuf>,
    /// Every request: `<path> range=<yes|no>`.
    pub log: Vec<String>,
    /// The verdicts' `generated_at`: one more on every read, as a live monitor's report
    /// moves on with each round (a directory drops verdicts that stop moving).
    pub rounds: i64,
    /// The key that signs the report at `/api/v1/verdicts/signed` (none: that path is 404).
    pub monitor_key: Option<vdb_proto::SecretKey>,
}

/// The running double (the server lives as long as the test's runtime).
#[derive(Debug, Clone)]
pub struct RegistryDouble {
    /// `http://ip:port`.
    pub url: String,
    /// What it serves; change it through [`RegistryDouble::edit`].
    pub served: Arc<Mutex<Served>>,
}

type Shared = Arc<Mutex<Served>>;

async fn answer(State(s): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let mut s = s.lock().expect("double state");
    let path = uri.path().to_owned();
    let ranged = headers.contains_key("range");
    s.log.push(format!(
        "{path} range={}",
        if ranged { "yes" } else { "no" }
    ));
    match path.as_str() {
        "/api/v1/mirrors" if s.master_down => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        "/api/v1/mirrors" => axum::Json(s.registry.clone()).into_response(),
        "/api/v1/verdicts" | "/api/v1/verdicts/signed" if s.monitor_down => {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        "/api/v1/verdicts" => axum::Json(report(&mut s)).into_response(),
        "/api/v1/verdicts/signed" => match s.monitor_key.clone() {
            Some(key) => vdb_proto::Signed::sign(&report(&mut s), &key)
                .to_json()
                .into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        p => {
            let name = p.trim_start_matches('/');
            let safe = !name.is_empty()
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            match &s.files {
                Some(dir) if safe => match std::fs::read(dir.join(name)) {
                    Ok(body) => body.into_response(),
                    Err(_) => StatusCode::NOT_FOUND.into_response(),
                },
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }
    }
}

/// The monitor's report now (its `generated_at` moved on).
fn report(s: &mut Served) -> VerdictReport {
    s.rounds += 1;
    VerdictReport {
        monitor: "double".into(),
        generated_at: s.rounds,
        newest: BTreeMap::new(),
        mirrors: s.verdicts.clone(),
    }
}

impl RegistryDouble {
    /// Starts on 127.0.0.1:0.
    pub async fn start(served: Served) -> Self {
        Self::start_on(served, "127.0.0.1:0").await
    }

    /// Starts on `bind` (e.g. another loopback address).
    pub async fn start_on(served: Served, bind: &str) -> Self {
        let served = Arc::new(Mutex::new(served));
        let app = Router::new()
            .fallback(get(answer))
            .with_state(served.clone());
        let l = tokio::net::TcpListener::bind(bind)
            .await
            .unwrap_or_else(|e| panic!("binding {bind}: {e}"));
        let url = format!("http://{}", l.local_addr().expect("bound address"));
        tokio::spawn(async move { axum::serve(l, app).await });
        Self { url, served }
    }

    /// Changes what is served.
    pub fn edit<R>(&self, f: impl FnOnce(&mut Served) -> R) -> R {
        f(&mut self.served.lock().expect("double state"))
    }

    /// The requests seen so far (`<path> range=<yes|no>`).
    pub fn log(&self) -> Vec<String> {
        self.edit(|s| s.log.clone())
    }
}

/// A registry record with one address, served at `base_url`.
pub fn mirror_record(name: &str, ip: &str, base_url: &str) -> MirrorRecord {
    let mut r = MirrorRecord::new(name, base_url);
    r.addresses = vec![ip.parse().expect("an IP address")];
    r
}

/// A verdict: `name` in `state`, serving these database versions.
pub fn verdict(name: &str, state: MirrorState, serving: &[(&str, u32)]) -> MirrorVerdict {
    MirrorVerdict {
        name: name.into(),
        state,
        serving: serving.iter().map(|(d, v)| ((*d).to_owned(), *v)).collect(),
        serial: None,
        lag_secs: 0,
        last_good: None,
        reason: String::new(),
    }
}
