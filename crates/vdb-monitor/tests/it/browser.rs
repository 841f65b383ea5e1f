//! Headless Chromium through WebDriver (`chromedriver`): the status page as a person and an
//! assistive technology see it (elements, accessible names and roles, screenshots).
//!
//! The same protocol as `crates/vdbd/tests/intake/harness.rs` (the intake's form); the page
//! itself runs no script, only the test asks the browser for its window's size.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A `chromedriver` process and one headless Chromium session, both ended on drop.
pub(crate) struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// An absolute path to a tool the test needs, or a failure naming its package (never a skip).
fn tool(name: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .expect("sh runs");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && !path.is_empty(),
        "{name} is not installed: scripts/test-deps.sh installs it (Debian packages chromium \
         and chromium-driver)"
    );
    path
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`×`height` window.
    pub(crate) async fn start(width: u32, height: u32) -> Self {
        let chromium = tool("chromium");
        // chromedriver takes a port number only: a free one, released just before it starts.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = Command::new(tool("chromedriver"))
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
        let started =
            tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)).is_ok())
                .await
                .unwrap();
        if !started {
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
                         "--disable-component-update", "--hide-scrollbars",
                         "--force-device-scale-factor=1",
                         format!("--window-size={width},{height}"),
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

    /// Opens `url` and waits for the page to load (WebDriver's default page-load strategy).
    pub(crate) async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Every element matching `css` (WebDriver element ids).
    pub(crate) async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .unwrap_or_else(|| panic!("elements {css}: {v}"))
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_owned())
            .collect()
    }

    /// Elements matching `css` inside element `parent`.
    pub(crate) async fn find_in(&self, parent: &str, css: &str) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/element/{parent}/elements"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .unwrap_or_else(|| panic!("elements {css}: {v}"))
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_owned())
            .collect()
    }

    async fn element_str(&self, e: &str, what: &str) -> String {
        self.call(reqwest::Method::GET, &format!("/element/{e}/{what}"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The rendered text of an element.
    pub(crate) async fn text_of(&self, e: &str) -> String {
        self.element_str(e, "text").await
    }

    /// An element's accessible name, as the browser computes it for assistive technology.
    pub(crate) async fn accessible_name(&self, e: &str) -> String {
        self.element_str(e, "computedlabel").await
    }

    /// An element's computed ARIA role.
    pub(crate) async fn role(&self, e: &str) -> String {
        self.element_str(e, "computedrole").await
    }

    /// An attribute of an element.
    pub(crate) async fn attr(&self, e: &str, name: &str) -> String {
        self.element_str(e, &format!("attribute/{name}")).await
    }

    /// An element's rectangle: (x, y, width, height) in CSS pixels.
    pub(crate) async fn rect(&self, e: &str) -> (f64, f64, f64, f64) {
        let v = self
            .call(reqwest::Method::GET, &format!("/element/{e}/rect"), None)
            .await;
        let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("rect {k}: {v}"));
        (f("x"), f("y"), f("width"), f("height"))
    }

    /// The viewport's size in device pixels (what a screenshot holds), asked of the browser.
    pub(crate) async fn viewport(&self) -> (u32, u32) {
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
        (v[0].as_u64().unwrap() as u32, v[1].as_u64().unwrap() as u32)
    }

    /// A PNG screenshot of one element (scrolled into view).
    pub(crate) async fn element_screenshot(&self, e: &str) -> Vec<u8> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{e}/screenshot"),
                None,
            )
            .await;
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("the screenshot is base64")
    }

    /// A PNG screenshot of the viewport.
    pub(crate) async fn screenshot(&self) -> Vec<u8> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("the screenshot is base64")
    }
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

/// A decoded PNG: width, height and RGBA pixels.
pub(crate) struct Image {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) rgba: Vec<u8>,
}

impl Image {
    /// Decodes a PNG (any colour type Chromium writes) to 8-bit RGBA.
    pub(crate) fn decode(png_bytes: &[u8]) -> Self {
        let mut d = png::Decoder::new(std::io::Cursor::new(png_bytes));
        d.set_transformations(
            png::Transformations::normalize_to_color8() | png::Transformations::ALPHA,
        );
        let mut r = d.read_info().expect("a PNG header");
        let mut buf = vec![0; r.output_buffer_size().expect("a sane PNG size")];
        let info = r.next_frame(&mut buf).expect("PNG pixels");
        buf.truncate(info.buffer_size());
        assert_eq!(
            info.color_type,
            png::ColorType::Rgba,
            "RGBA after the transformations"
        );
        Self {
            width: info.width,
            height: info.height,
            rgba: buf,
        }
    }

    /// The pixel at (x, y) as RGB.
    pub(crate) fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 4) as usize;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]]
    }

    /// Pixels within `tol` of `rgb` in each channel, in the rectangle (x, y, w, h).
    pub(crate) fn count_near(&self, rgb: [u8; 3], tol: u8, area: (u32, u32, u32, u32)) -> usize {
        let (x0, y0, w, h) = area;
        let mut n = 0;
        for y in y0..(y0 + h).min(self.height) {
            for x in x0..(x0 + w).min(self.width) {
                let p = self.rgb(x, y);
                if p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= tol) {
                    n += 1;
                }
            }
        }
        n
    }

    /// Distinct colours (a blank or one-colour screenshot has one or two).
    pub(crate) fn colours(&self) -> usize {
        let mut set = std::collections::HashSet::new();
        for p in self.rgba.chunks_exact(4) {
            set.insert([p[0], p[1], p[2]]);
        }
        set.len()
    }
}
