//! The intake suite's harness: `vdbd intake` as a process with its ready line, the `vdb`
//! binary, a webhook sink; the browser is the test kit's (`vdb_testkit::browser`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

pub(crate) const ADMIN_TOKEN: &str = "intake-admin-token-0123456789";

pub(crate) const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/clamav"
);

/// The EICAR test file.
pub(crate) const EICAR: &[u8] =
    br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

use vdb_testkit::Proc;
pub(crate) use vdb_testkit::browser::{Browser, tool};
pub(crate) use vdb_testkit::{output_text as text, wait_for_async};

/// A workspace binary beside `vdbd` (`cargo test --workspace` builds them all).
pub(crate) fn exe(name: &str) -> PathBuf {
    vdb_testkit::exe_beside(env!("CARGO_BIN_EXE_vdbd"), name)
}

/// Runs `vdb ARGS…`.
pub(crate) fn vdb(args: &[&str]) -> Output {
    Command::new(exe("vdb"))
        .args(args)
        .output()
        .expect("vdb runs")
}

/// `vdbd intake` as a process (the test kit's [`Proc`]: a bounded wait for its ready line,
/// SIGKILLed and reaped on drop, its log tail on failure).
pub(crate) struct Intake {
    _proc: Proc,
    pub(crate) url: String,
}

impl Intake {
    /// Writes `intake.toml` in `dir` (data under `dir/data`, plus `extra` TOML) and starts it.
    pub(crate) fn start(dir: &Path, extra: &str) -> Self {
        let config = dir.join("intake.toml");
        std::fs::write(
            &config,
            format!(
                "name = \"test-intake\"\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\nadmin_token = {ADMIN_TOKEN:?}\n{extra}",
                dir.join("data").display().to_string(),
            ),
        )
        .unwrap();
        Self::start_with(dir, &config)
    }

    /// Starts `vdbd intake --config <config>`, logging to `dir/intake.log`.
    pub(crate) fn start_with(dir: &Path, config: &Path) -> Self {
        let proc = Proc::start_role(
            env!("CARGO_BIN_EXE_vdbd"),
            "intake",
            config,
            &dir.join("intake.log"),
        );
        let ready = proc.ready();
        assert_eq!(ready.role(), "intake", "{}", ready.json());
        assert_eq!(ready.json()["event"], "ready", "{}", ready.json());
        let url = ready.http_url();
        assert_eq!(ready.json()["http"], url.as_str(), "{}", ready.json());
        Self { _proc: proc, url }
    }
}

/// A submitter's status (JSON).
pub(crate) async fn status(base: &str, id: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}/api/v1/submissions/{id}"))
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// Waits until triage has run and returns the status.
pub(crate) async fn scanned(base: &str, id: &str) -> Value {
    wait_for_async("triage", 120, || async {
        let (code, v) = status(base, id).await;
        (code == 200 && v["scanned"] == true).then_some(v)
    })
    .await
}

/// Submits bytes through the API (multipart), with a file name; returns status and body.
pub(crate) async fn submit(base: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
    let form = reqwest::multipart::Form::new().part("file", part);
    vdb_testkit::http::post_form(&format!("{base}/api/v1/samples"), form).await
}

// -------------------------------------------------------------------------------------------------
// Sinks for notifications.

/// A webhook receiver: every JSON body POSTed to it.
pub(crate) async fn webhook_sink() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(v);
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, rx)
}

/// Waits for the next message of a sink.
pub(crate) async fn next<T>(rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} within 60 s"))
        .unwrap_or_else(|| panic!("the {what} sink closed"))
}
