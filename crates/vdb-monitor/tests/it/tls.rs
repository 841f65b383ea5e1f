//! HTTPS mirrors: certificate validity is part of a check.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::doubles::*;
use crate::*;

/// A CA (`ca.pem`) and a leaf for 127.0.0.1 and localhost (`cert.pem`, `key.pem`) signed by it.
fn make_pki(dir: &Path) {
    let pki = vdb_testkit::pki::TestPki::new();
    pki.write_ca(&dir.join("ca.pem"));
    pki.leaf(&["127.0.0.1", "localhost"]).write(dir);
}

struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((s, a)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(t) = self.acceptor.accept(s).await {
                return (t, a);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves the mirror double's data over HTTPS with the leaf certificate.
async fn https_mirror(m: &Mirror, dir: &Path) -> String {
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut &std::fs::read(dir.join("cert.pem")).unwrap()[..])
            .collect::<Result<_, _>>()
            .unwrap();
    let key = rustls_pemfile::private_key(&mut &std::fs::read(dir.join("key.pem")).unwrap()[..])
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(cfg)),
    };
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
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
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
