//! The intake suite's harness: `vdbd intake` as a process with its ready line, the `vdb`
//! binary, a webhook sink; the browser is the test kit's (`vdb_testkit::browser`).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) const ADMIN_TOKEN: &str = "intake-admin-token-0123456789";

pub(crate) const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/clamav"
);

/// The EICAR test file.
pub(crate) const EICAR: &[u8] =
    br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

pub(crate) use vdb_testkit::browser::{Browser, tool};

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

pub(crate) fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `vdbd intake` as a process: SIGKILLed and reaped on drop; its log tail on failure.
pub(crate) struct Intake {
    child: Child,
    log: PathBuf,
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
        let log = dir.join("intake.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vdbd"))
            .args(["intake", "--config"])
            .arg(config)
            .env("VDB_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut r = BufReader::new(stdout);
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let mut me = Self {
            child,
            log,
            url: String::new(),
        };
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "vdbd intake gave no ready line ({e}): {line:?}\n{}",
                me.tail()
            )
        });
        assert_eq!(ready["role"], "intake", "{ready}");
        me.url = ready["http"]
            .as_str()
            .expect("http in the ready line")
            .to_owned();
        me
    }

    pub(crate) fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- intake log (tail):\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.tail());
        }
    }
}

/// Polls `f` until it returns `Some`, up to `secs` seconds (for states the intake reports).
pub(crate) async fn wait_for<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
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
    wait_for("triage", 120, || async {
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
