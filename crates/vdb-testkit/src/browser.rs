//! Headless Chromium through WebDriver (`chromedriver`): pages as a person and an assistive
//! technology see them (elements, text, accessible names and roles, forms, screenshots). The one
//! browser driver of the suites (the intake's form, the monitor's status page).

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A tool a suite needs: its absolute path, or a failure naming where it comes from (never a
/// skip; `scripts/test-deps.sh` installs every one).
pub fn tool(name: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .expect("sh runs");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && !path.is_empty(),
        "{name} is not installed: scripts/test-deps.sh installs it (Debian packages: clamav for \
         clamscan, chromium and chromium-driver for the browser, python3)"
    );
    PathBuf::from(path)
}

/// A `chromedriver` process and one headless Chromium session, both ended on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: TempProfile,
}

/// Chromium's profile directory, removed on drop.
struct TempProfile(PathBuf);

impl Drop for TempProfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with its default window.
    pub async fn start() -> Self {
        Self::launch(&[]).await
    }

    /// Starts chromedriver and a headless Chromium with a `width`×`height` window, one device
    /// pixel per CSS pixel and no scroll bars (screenshots of a known size).
    pub async fn with_window(width: u32, height: u32) -> Self {
        Self::launch(&[
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            format!("--window-size={width},{height}"),
        ])
        .await
    }

    async fn launch(extra_args: &[String]) -> Self {
        let chromium = tool("chromium");
        // chromedriver takes a port number only: a free one, released just before it starts.
        let port = crate::free_port("127.0.0.1");
        let mut driver = Command::new(tool("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let stdout = driver.stdout.take().expect("piped stdout");
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
        let started =
            tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)).is_ok())
                .await
                .expect("the waiting thread runs");
        if !started {
            let _ = driver.kill();
            panic!("chromedriver did not start within 60 s");
        }
        let profile =
            std::env::temp_dir().join(format!("vdb-chromium-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&profile).expect("a profile directory");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("an HTTP client");
        let base = format!("http://127.0.0.1:{port}");
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-sync",
            "--disable-component-update",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra_args.iter().cloned());
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let v = answer(http.post(format!("{base}/session")).json(&caps)).await;
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_owned();
        Self {
            driver,
            base,
            session,
            http,
            _profile: TempProfile(profile),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v = answer(req).await;
        assert!(
            v["value"]["error"].is_null(),
            "WebDriver {path} failed: {v}"
        );
        v["value"].clone()
    }

    async fn get_str(&self, path: &str) -> String {
        self.call(reqwest::Method::GET, path, None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Opens `url` and waits for the page to load (WebDriver's default page-load strategy).
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The URL the browser shows.
    pub async fn current_url(&self) -> String {
        self.get_str("/url").await
    }

    /// The page's HTML.
    pub async fn source(&self) -> String {
        self.get_str("/source").await
    }

    /// The first element matching `css` (a WebDriver element id); fails if there is none.
    pub async fn find(&self, css: &str) -> String {
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

    /// Every element matching `css`.
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        self.elements("/elements", css).await
    }

    /// Every element matching `css` inside element `parent`.
    pub async fn find_in(&self, parent: &str, css: &str) -> Vec<String> {
        self.elements(&format!("/element/{parent}/elements"), css)
            .await
    }

    async fn elements(&self, path: &str, css: &str) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                path,
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .unwrap_or_else(|| panic!("elements {css}: {v}"))
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Types into the field `css` (for `<input type=file>`, the text is the file's path).
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Clicks the element `css`.
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// The visible text of the element `css`.
    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.text_of(&e).await
    }

    /// An attribute of the element `css`.
    pub async fn attr(&self, css: &str, name: &str) -> String {
        let e = self.find(css).await;
        self.attr_of(&e, name).await
    }

    /// The visible text of element `e`.
    pub async fn text_of(&self, e: &str) -> String {
        self.get_str(&format!("/element/{e}/text")).await
    }

    /// An attribute of element `e`.
    pub async fn attr_of(&self, e: &str, name: &str) -> String {
        self.get_str(&format!("/element/{e}/attribute/{name}"))
            .await
    }

    /// Element `e`'s accessible name, as the browser computes it for assistive technology.
    pub async fn accessible_name(&self, e: &str) -> String {
        self.get_str(&format!("/element/{e}/computedlabel")).await
    }

    /// Element `e`'s computed ARIA role.
    pub async fn role(&self, e: &str) -> String {
        self.get_str(&format!("/element/{e}/computedrole")).await
    }

    /// Element `e`'s rectangle: (x, y, width, height) in CSS pixels.
    pub async fn rect(&self, e: &str) -> (f64, f64, f64, f64) {
        let v = self
            .call(reqwest::Method::GET, &format!("/element/{e}/rect"), None)
            .await;
        let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("rect {k}: {v}"));
        (f("x"), f("y"), f("width"), f("height"))
    }

    /// The viewport's size in device pixels (what a screenshot holds), asked of the browser.
    pub async fn viewport(&self) -> (u32, u32) {
        let v = self
            .call(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({
                    "script": "return [Math.round(innerWidth * devicePixelRatio), Math.round(innerHeight * devicePixelRatio)]",
                    "args": [],
                })),
            )
            .await;
        let n = |i: usize| v[i].as_u64().unwrap_or_else(|| panic!("viewport: {v}")) as u32;
        (n(0), n(1))
    }

    /// A PNG screenshot of element `e` (scrolled into view).
    pub async fn element_screenshot(&self, e: &str) -> Vec<u8> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{e}/screenshot"),
                None,
            )
            .await;
        png_of(&v)
    }

    /// A PNG screenshot of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        png_of(&self.call(reqwest::Method::GET, "/screenshot", None).await)
    }
}

/// Sends a WebDriver request and reads its JSON answer.
async fn answer(req: reqwest::RequestBuilder) -> Value {
    req.send()
        .await
        .expect("chromedriver answers")
        .json()
        .await
        .expect("a JSON answer")
}

fn png_of(v: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("a base64 PNG"))
        .expect("the screenshot is base64")
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session (and its Chromium), then the driver.
        let _ = Command::new("curl")
            .args([
                "-s",
                "-m",
                "10",
                "-X",
                "DELETE",
                &format!("{}/session/{}", self.base, self.session),
            ])
            .output();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
