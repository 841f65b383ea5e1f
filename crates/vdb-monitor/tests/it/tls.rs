//! HTTPS mirrors: certificate validity is part of a check.

use std::path::Path;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::doubles::*;
use crate::*;

/// A CA (`ca.pem`) and a leaf for 127.0.0.1 and localhost (`cert.pem`, `key.pem`) signed by it.
fn make_pki(dir: &Path) {
    let pki = vdb_testkit::pki::TestPki::new();
    pki.write_ca(&dir.join("ca.pem"));
    pki.leaf(&["127.0.0.1", "localhost"]).write(dir);
}

/// Serves the mirror double's data over HTTPS with the leaf certificate: the test kit's PKI
/// files, loaded and served as the roles serve theirs (`vdb_service::Tls`, `vdb_service::serve`).
async fn https_mirror(m: &Mirror, dir: &Path) -> String {
    let tls = vdb_service::Tls::load(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    // Proxy to the plain double so the same data (and faults) are served.
    let plain = m.url.clone();
    let client = reqwest::Client::new();
    let app = Router::new().fallback(get(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let (plain, client) = (plain.clone(), client.clone());
            async move {
                let mut req = client.get(format!("{plain}{}", uri.path()));
                if let Some(r) = headers.get("range") {
                    req = req.header("range", r.clone());
                }
                let resp = req.send().await.unwrap();
                let status = resp.status();
                let mut out = axum::http::Response::builder().status(status.as_u16());
                if let Some(cr) = resp.headers().get("content-range") {
                    out = out.header("content-range", cr.clone());
                }
                out.body(axum::body::Body::from(resp.bytes().await.unwrap()))
                    .unwrap()
            }
        },
    ));
    let limits = vdb_service::Limits::default();
    tokio::spawn(vdb_service::serve(
        tcp,
        app,
        Some(tls),
        limits,
        Default::default(),
    ));
    format!("https://127.0.0.1:{port}")
}

#[tokio::test]
async fn https_mirror_checked_with_its_certificate() {
    let n = net().await;
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let https = https_mirror(&n.m1, pki.path()).await;
    let mut rec = n.m1.record("m1");
    rec.base_urls = vec![n.m1.url.clone(), https];
    n.master.set_registry(vec![rec]);

    // Trusting the network's CA: good over HTTP and HTTPS.
    let mut c = config(n.dir.path(), &n.master, None);
    c.tls_ca_file = Some(pki.path().join("ca.pem"));
    let r = n.monitor_with(c).await;
    let rep = at(&r, &n.clock, T0).await;
    assert_state(&rep, "m1", MirrorState::InService);
    r.shutdown().await;

    // Not trusting it: the HTTPS side fails the check with a certificate error.
    let dir2 = tempfile::tempdir().unwrap();
    let r = n.monitor_with(config(dir2.path(), &n.master, None)).await;
    let rep = at(&r, &n.clock, T0).await;
    let why = &rep.mirrors[0].reason;
    assert!(
        why.contains("https://127.0.0.1") && why.to_lowercase().contains("certificate"),
        "{why}"
    );
    r.shutdown().await;
}
