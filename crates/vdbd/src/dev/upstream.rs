//! A ClamAV-style upstream for `vdbd dev --upstream DIR`: serves DIR over HTTP the way a
//! ClamAV mirror lays it out, so that master A can follow it.
//!
//! A directory of versioned files (`test-1.cvd` … `test-6.cvd`, `test-2.cdiff` …, as in
//! ClamAV's test fixtures) is served with `<db>.cvd` naming the newest `<db>-<N>.cvd`; a
//! directory laid out like a mirror (`daily.cvd`, `daily-N.cdiff`, as cvdupdate makes) is served
//! as it is. Only flat, safe names are served.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower_http::services::ServeFile;

/// The running upstream server.
pub(crate) struct Server {
    addr: SocketAddr,
    databases: Vec<String>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Indexes `dir` and serves it on 127.0.0.1 (a free port).
    pub(crate) async fn start(dir: &Path) -> Result<Self> {
        let files = index(dir)?;
        let databases: Vec<String> = files
            .keys()
            .filter_map(|n| n.strip_suffix(".cvd"))
            .filter(|n| !n.contains('-'))
            .map(str::to_owned)
            .collect();
        if databases.is_empty() {
            bail!(
                "{}: no ClamAV databases (<db>.cvd or <db>-<N>.cvd) to follow",
                dir.display()
            );
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let app = axum::Router::new()
            .route("/{name}", axum::routing::get(serve))
            .with_state(Arc::new(files));
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            vdb_service::serve(listener, app, None, vdb_service::Limits::default(), stop).await;
        });
        Ok(Self {
            addr,
            databases,
            cancel,
            task,
        })
    }

    /// Its base URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The databases it offers.
    pub(crate) fn databases(&self) -> &[String] {
        &self.databases
    }

    /// Stops it.
    pub(crate) async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Served name → file.
fn index(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    let mut newest: BTreeMap<String, (u32, PathBuf)> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !vdb_proto::is_safe_file_name(&name) {
            continue;
        }
        if let Some((db, v)) = name
            .strip_suffix(".cvd")
            .and_then(|s| s.rsplit_once('-'))
            .and_then(|(db, v)| Some((db.to_owned(), v.parse::<u32>().ok()?)))
            && newest.get(&db).is_none_or(|(best, _)| v > *best)
        {
            newest.insert(db, (v, entry.path()));
        }
        files.insert(name, entry.path());
    }
    for (db, (_, path)) in newest {
        files.entry(format!("{db}.cvd")).or_insert(path);
    }
    Ok(files)
}

async fn serve(
    State(files): State<Arc<BTreeMap<String, PathBuf>>>,
    UrlPath(name): UrlPath<String>,
    req: Request,
) -> Response {
    match files.get(&name) {
        Some(path) => match ServeFile::new(path).oneshot(req).await {
            Ok(r) => r.into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
