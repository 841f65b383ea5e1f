//! The intake in process on 127.0.0.1:0, without a scanner: the form, the API, the status, the
//! team's API, dedupe, the bounds on fields, and a restart.

use std::sync::Arc;

use serde_json::Value;

const TOKEN: &str = "team-token-0123456789";

async fn start(dir: &std::path::Path) -> vdb_intake::Running {
    let mut c = vdb_intake::Config::new(dir);
    c.admin_token = Some(TOKEN.into());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    vdb_intake::start_on(c, l, Arc::new(vdb_proto::SystemClock))
        .await
        .unwrap()
}

async fn submit(base: &str, form: reqwest::multipart::Form) -> (u16, Value) {
    vdb_testkit::http::post_form(&format!("{base}/api/v1/samples"), form).await
}

fn file(bytes: &[u8], name: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name.to_owned()),
    )
}

async fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::Client::new().get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn form_api_status_team_api_and_dedupe() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let base = running.base_url();

    let page = reqwest::get(format!("{base}/")).await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains("enctype=\"multipart/form-data\"") && html.contains("type=\"file\""));
    assert!(!html.contains("<script"), "works without JavaScript");
    assert!(csp.contains("default-src 'none'"), "{csp}");

    let sample = b"not detected by anything 0123456789".to_vec();
    let sha = vdb_proto::sha256_hex(&sample);
    let form = file(&sample, "a.exe")
        .text("detection", "Win.Test.Claimed-1")
        .text("note", "line one\nline two")
        .text("email", "someone@example.org");
    let (code, r1) = submit(&base, form).await;
    assert_eq!(code, 200, "{r1}");
    assert_eq!(r1["sha256"], sha.as_str());
    assert_eq!(r1["duplicate"], false);
    let id = r1["tracking_id"].as_str().unwrap().to_owned();
    let (code, st) = get(&format!("{base}/api/v1/submissions/{id}"), None).await;
    assert_eq!(code, 200);
    assert_eq!(st["state"], "received");
    assert_eq!(st["scanned"], false, "no scanner configured");
    // The status page never leaks its URL.
    let r = reqwest::get(format!("{base}/status/{id}")).await.unwrap();
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.text().await.unwrap().contains(&sha));

    let (code, r2) = submit(&base, file(&sample, "b.exe")).await;
    assert_eq!((code, &r2["duplicate"]), (200, &Value::Bool(true)));

    // The team's API needs the token.
    assert_eq!(get(&format!("{base}/api/v1/samples"), None).await.0, 401);
    assert_eq!(
        get(
            &format!("{base}/api/v1/samples"),
            Some("wrong-token-wrong!!")
        )
        .await
        .0,
        403
    );
    let (code, list) = get(&format!("{base}/api/v1/samples"), Some(TOKEN)).await;
    assert_eq!(code, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, rec) = get(&format!("{base}/api/v1/samples/{sha}"), Some(TOKEN)).await;
    assert_eq!(rec["submission_count"], 2);
    assert_eq!(rec["submissions"][0]["claimed"], "Win.Test.Claimed-1");
    assert_eq!(rec["submissions"][0]["note"], "line one\nline two");
    assert_eq!(rec["submissions"][1]["file_name"], "b.exe");
    let zip = reqwest::Client::new()
        .get(format!("{base}/api/v1/samples/{sha}/quarantine"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(zip.headers()["content-type"], "application/zip");
    let bytes = zip.bytes().await.unwrap();
    assert!(bytes.starts_with(b"PK\x03\x04"));
    assert!(!bytes.windows(sample.len()).any(|w| w == sample.as_slice()));
    assert_eq!(
        get(
            &format!("{base}/api/v1/samples/{}", "f".repeat(64)),
            Some(TOKEN)
        )
        .await
        .0,
        404
    );
    assert_eq!(
        get(&format!("{base}/api/v1/samples/..%2f..%2fx"), Some(TOKEN))
            .await
            .1["code"],
        "bad_sha256"
    );

    // Resolve.
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/samples/{sha}/resolve"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"db": "daily", "version": 27545, "detection": "Win.Test.New-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, st) = get(&format!("{base}/api/v1/submissions/{id}"), None).await;
    assert_eq!(st["state"], "signature_published");
    assert_eq!(st["published"]["version"], 27545);
    let bad = reqwest::Client::new()
        .post(format!("{base}/api/v1/samples/{sha}/resolve"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"db": "../daily", "version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    // A restart keeps everything.
    running.shutdown().await;
    let running = start(dir.path()).await;
    let base = running.base_url();
    let (code, st) = get(&format!("{base}/api/v1/submissions/{id}"), None).await;
    assert_eq!(
        (code, &st["state"]),
        (200, &Value::from("signature_published"))
    );
    running.shutdown().await;
}

#[tokio::test]
async fn bad_fields_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let base = running.base_url();
    let cases = [
        (
            file(b"x", "a.exe").text("detection", "<script>"),
            "bad_detection_name",
        ),
        (
            file(b"x", "a.exe").text("email", "a@b.org\r\nBcc: c@d.org"),
            "bad_email",
        ),
        (file(b"x", "a.exe").text("note", "\u{7}"), "bad_note"),
        (
            file(b"x", "a.exe").text("note", "n".repeat(5000)),
            "bad_note",
        ),
        (file(b"x", "a.exe").text("colour", "blue"), "unknown_field"),
        (
            file(b"x", "a.exe").part(
                "file",
                reqwest::multipart::Part::bytes(b"y".to_vec()).file_name("b"),
            ),
            "two_files",
        ),
        (
            reqwest::multipart::Form::new().text("note", "no file"),
            "no_file",
        ),
        (file(b"x", "dir/a.exe"), "name_with_path"),
        (file(b"x", "a\tb"), "name_with_control"),
        (file(b"", "a.exe"), "empty_file"),
    ];
    for (form, want) in cases {
        let (code, v) = submit(&base, form).await;
        assert_eq!((code, v["code"].as_str()), (400, Some(want)), "{v}");
    }
    let (_, list) = get(&format!("{base}/api/v1/samples"), Some(TOKEN)).await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    let (_, status) = get(&format!("{base}/api/v1/status"), None).await;
    assert_eq!(status["staging_files"], 0, "{status}");
    assert_eq!(status["refused"], 10, "{status}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("quarantine"))
            .unwrap()
            .count(),
        0
    );
    running.shutdown().await;
}
