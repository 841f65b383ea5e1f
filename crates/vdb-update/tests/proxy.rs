//! `HTTPProxy*` options: requests go through the proxy with the configured credentials. The
//! proxy is a test double (axum on 127.0.0.1:0) that requires `Proxy-Authorization` and relays
//! to the local mirror.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use common::*;

#[tokio::test]
async fn proxy_with_credentials() {
    let w = Work::new();
    serve_fixture(&w.www(), "test-6.cvd", "test.cvd");
    let m = Mirror::start(&w.www()).await;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(uri.to_string());
            // "user:secret" in base64.
            if headers
                .get("proxy-authorization")
                .and_then(|v| v.to_str().ok())
                != Some("Basic dXNlcjpzZWNyZXQ=")
            {
                return Response::builder().status(407).body(Body::empty()).unwrap();
            }
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let mut req = client.get(uri.to_string());
            for h in ["range", "if-modified-since"] {
                if let Some(v) = headers.get(h) {
                    req = req.header(h, v.to_str().unwrap());
                }
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.bytes().await.unwrap();
            Response::builder()
                .status(status)
                .body(Body::from(body))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let conf = w.conf(
        &[m.url()],
        &format!(
            "HTTPProxyServer http://127.0.0.1\nHTTPProxyPort {port}\n\
             HTTPProxyUsername user\nHTTPProxyPassword secret\n"
        ),
    );
    // A password in a file others can read is refused, as freshclam does.
    let out = run_conf(&conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(9), "{}", text(&out));
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run_conf(&conf, &["--update-db=test"]).await;
    task.abort();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(w.version("test.cvd"), 6);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|u| u == &format!("{}/test.cvd", m.url())));
    assert_eq!(m.requests().len(), 2);
}
