//! A small local harness for the intake suite (to move onto the shared test kit): `vdbd intake`
//! as a process with its ready line, the `vdb` binary, a WebDriver session on headless Chromium
//! through `chromedriver`, a webhook sink and an SMTP sink.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub(crate) const ADMIN_TOKEN: &str = "intake-admin-token-0123456789";

pub(crate) const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/clamav"
);

/// The EICAR test file.
pub(crate) const EICAR: &[u8] =
    br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A tool the suite needs: its absolute path, or a failure (never a skip).
pub(crate) fn tool(name: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .expect("sh runs");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && !path.is_empty(),
        "{name} is not installed: .ci/run installs it (Debian package: clamav for clamscan, \
         chromium and chromium-driver for the browser, python3 for the ZIP check)"
    );
    PathBuf::from(path)
}

/// A workspace binary beside `vdbd` (`cargo test --workspace` builds them all).
pub(crate) fn exe(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_vdbd")).with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (or `cargo build -p vdb-cli` first)",
        p.display()
    );
    p
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
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/samples"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

// -------------------------------------------------------------------------------------------------
// Headless Chromium through WebDriver.

/// A `chromedriver` process and one headless Chromium session.
pub(crate) struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    pub(crate) async fn start() -> Self {
        let driver_exe = tool("chromedriver");
        let chromium = tool("chromium");
        // chromedriver takes a port number only: a free one, released just before it starts.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = Command::new(driver_exe)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = driver.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if line.contains("started successfully") {
                    let _ = tx.send(());
                }
                line.clear();
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = driver.kill();
            panic!("chromedriver did not start within 60 s");
        }
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-background-networking", "--disable-sync",
                         "--disable-component-update",
                         format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_owned();
        Self {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(
            v["value"]["error"].is_null(),
            "WebDriver {path} failed: {v}"
        );
        v["value"].clone()
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub(crate) async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's HTML.
    pub(crate) async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    /// Types into a field (for `<input type=file>`, the text is the file's path).
    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub(crate) async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// The visible text of an element.
    pub(crate) async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// An attribute of an element.
    pub(crate) async fn attr(&self, css: &str, name: &str) -> String {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{e}/attribute/{name}"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session (and its Chromium), then the driver.
        let _ = std::process::Command::new("curl")
            .args([
                "-s",
                "-X",
                "DELETE",
                &format!("{}/session/{}", self.base, self.session),
            ])
            .output();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
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
